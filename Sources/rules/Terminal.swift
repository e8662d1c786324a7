#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where output goes, and whether it may be coloured: only on a terminal,
/// never with `NO_COLOR` set or `TERM=dumb`.
enum Terminal {
    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    static var colorOnStderr: Bool { colorAllowed(on: 2) }
    static var colorOnStdout: Bool { colorAllowed(on: 1) }

    static func colorAllowed(on fd: Int32) -> Bool {
        if let v = getenv("NO_COLOR"), v.pointee != 0 { return false }
        if let t = getenv("TERM"), String(cString: t) == "dumb" { return false }
        return isTerminal(fd)
    }

    static func writeOut(_ s: String) { write(fd: 1, s) }
    static func writeErr(_ s: String) { write(fd: 2, s) }

    static func write(fd: Int32, _ s: String) {
        var s = s
        _ = s.withUTF8 { writeAll(fd: fd, UnsafeRawBufferPointer($0)) }
    }

    /// Writes all of `p`; false when the system refuses (disk full, …).
    @discardableResult
    static func writeAll(fd: Int32, _ p: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        while off < p.count {
            let n = Glibc.write(fd, p.baseAddress! + off, p.count - off)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    /// Opens an event stream (`-` is stdin) and names it for messages;
    /// nil, after saying why, when it cannot be read.
    static func openEvents(_ path: String) -> (fd: Int32, name: String)? {
        if path == "-" { return (0, "<stdin>") }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            writeErr("rules: cannot read events \(path): \(String(cString: strerror(errno)))\n")
            return nil
        }
        return (fd, path)
    }

    /// Writes a whole file; nil on success, else the system's reason.
    static func writeFile(_ path: String, _ bytes: [UInt8]) -> String? {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { return String(cString: strerror(errno)) }
        let ok = bytes.withUnsafeBytes { writeAll(fd: fd, $0) }
        let closed = close(fd) == 0
        return ok && closed ? nil : String(cString: strerror(errno))
    }

    /// Reads a whole file; nil with the system's reason on failure.
    static func readFile(_ path: String) -> Result<[UInt8], SystemError> {
        let fd = path == "-" ? 0 : open(path, O_RDONLY)
        if fd < 0 { return .failure(SystemError(message: String(cString: strerror(errno)))) }
        defer { if fd != 0 { close(fd) } }
        var st = stat()
        if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { return .failure(SystemError(message: "is a directory")) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return .failure(SystemError(message: String(cString: strerror(errno)))) }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return .success(bytes)
    }
}

/// Exit codes, documented in `rules --help` and the README.
enum ExitCode {
    static let ok: Int32 = 0
    /// A policy error, unreadable input, or a failing check.
    static let failure: Int32 = 1
    /// The command line itself is wrong.
    static let usage: Int32 = 2
    /// `--max-rejects` stopped the run: too many lines were rejected.
    static let tooManyRejects: Int32 = 3
}

struct SystemError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
