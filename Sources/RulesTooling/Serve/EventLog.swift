#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RulesCore

/// The service's append-only log of acknowledged bodies (`--data DIR`,
/// `DIR/events.log`): a body is written and synced to disk before it is
/// applied and answered, so that after `kill -9` at any moment every
/// acknowledged body is there, and a body whose answer was lost is there
/// whole or not at all.
///
/// File: `RULESLOG` and a version (4 bytes), then records: the body's length
/// (4 bytes) and FNV-1a checksum (8 bytes, both little-endian), then the
/// body. On open, records are read back until the first that is cut short
/// or does not match its checksum — a write a crash interrupted, never
/// acknowledged — and the file is cut there.
package final class EventLog {
    static let magic = Array("RULESLOG".utf8)
    static let version: UInt32 = 1

    private let fd: Int32
    package let path: String
    /// Where the last whole record ends: a failed append is cut back to it,
    /// so that no garbage sits before the next record.
    private var size = 0
    /// Set when a failed append could not be cut back: nothing more is
    /// written (an acknowledgement after garbage could be lost on replay).
    package private(set) var broken: String? = nil

    package struct Failure: Error, CustomStringConvertible {
        package let description: String
    }

    /// Opens (or creates) the log in `directory`, creating the directory;
    /// `replay` receives each intact body in order. Returns the log and how
    /// many bytes of a cut record were dropped from its end.
    package static func open(in directory: String, replay: ([UInt8]) -> Void) throws -> (EventLog, dropped: Int) {
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw Failure(description: "cannot create \(directory): \(String(cString: strerror(errno)))")
        }
        let path = directory + "/events.log"
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Failure(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        let bytes: [UInt8]
        do { bytes = try readAll(fd, path) } catch { close(fd); throw error }
        let log = EventLog(fd: fd, path: path)
        if bytes.isEmpty {
            var header = magic
            withUnsafeBytes(of: version.littleEndian) { header += $0 }
            try log.write(header)
            try log.sync()
            log.size = header.count
            return (log, 0)
        }
        guard bytes.count >= 12, Array(bytes[0..<8]) == magic else {
            close(fd)
            throw Failure(description: "\(path) is not a rules event log")
        }
        var at = 12
        while at + 12 <= bytes.count {
            let length = Int(UInt32(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt32.self) }))
            let sum = UInt64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at + 4, as: UInt64.self) })
            guard at + 12 + length <= bytes.count else { break }
            let body = Array(bytes[(at + 12)..<(at + 12 + length)])
            guard Hashing.fnv1a(body) == sum else { break }
            replay(body)
            at += 12 + length
        }
        let dropped = bytes.count - at
        if dropped > 0 && ftruncate(fd, off_t(at)) != 0 {
            throw Failure(description: "cannot cut the interrupted record off \(path): \(String(cString: strerror(errno)))")
        }
        log.size = at
        return (log, dropped)
    }

    private static func readAll(_ fd: Int32, _ path: String) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var offset: off_t = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, offset) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { return bytes }
            bytes += chunk[0..<n]
            offset += off_t(n)
        }
    }

    /// Every acknowledged body, in order, read again from the file (a past
    /// state: `GET /v1/report?as_of=`).
    package func bodies(_ body: ([UInt8]) -> Void) throws {
        let bytes = Array(try Self.readAll(fd, path).prefix(size))
        var at = 12
        while at + 12 <= bytes.count {
            let length = Int(UInt32(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt32.self) }))
            guard at + 12 + length <= bytes.count else { return }
            body(Array(bytes[(at + 12)..<(at + 12 + length)]))
            at += 12 + length
        }
    }

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Appends a body and syncs it to disk: when this returns, the body
    /// survives a crash. Throws (the body is then not acknowledged) when the
    /// disk is full or the file cannot be written.
    package func append(_ body: [UInt8]) throws {
        if let broken { throw Failure(description: broken) }
        var record: [UInt8] = []
        record.reserveCapacity(body.count + 12)
        withUnsafeBytes(of: UInt32(body.count).littleEndian) { record += $0 }
        withUnsafeBytes(of: Hashing.fnv1a(body).littleEndian) { record += $0 }
        record += body
        do {
            try write(record)
            try sync()
            size += record.count
        } catch {
            if ftruncate(fd, off_t(size)) != 0 || fsync(fd) != 0 {
                broken = "\(path) could not be cut back after a failed write; nothing more is accepted"
            }
            throw error
        }
    }

    private func write(_ bytes: [UInt8]) throws {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))") }
            written += n
        }
    }

    private func sync() throws {
        guard fsync(fd) == 0 else { throw Failure(description: "cannot sync \(path) to disk: \(String(cString: strerror(errno)))") }
    }
}
