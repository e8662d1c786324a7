#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RulesCore

/// One TCP connection to one Redis server: commands written as RESP,
/// replies read back in the order sent. Pipelining is the caller's: write
/// many commands, then read as many replies. Every wait is bounded
/// (`timeout`), so a server that stops answering is an error, not a hang.
package final class RedisConnection {
    package let host: String
    package let port: Int
    private var fd: Int32
    private var reader = RESPReader()
    private var chunk = [UInt8](repeating: 0, count: 1 << 18)
    private var timeout: Double

    /// Why the connection cannot be used (it is closed): the server is not
    /// there, went away, stopped answering, or sent what is not RESP.
    package struct Failure: Error, CustomStringConvertible {
        package let description: String
        /// Whether trying again may help (a server restarting), or not (a
        /// wrong password, a server that does not speak RESP).
        package var retryable = true
    }

    /// Connects, within `timeout` seconds, and authenticates with
    /// `password` when one is given.
    package init(host: String, port: Int, timeout: Double = 5, password: String? = nil) throws(Failure) {
        self.host = host
        self.port = port
        self.timeout = timeout
        fd = try Self.connect(host: host, port: port, timeout: timeout)
        setTimeout(timeout)
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        if let password {
            var w = RESPWriter()
            w.command(["AUTH", password])
            let answer = try exchange(w, replies: 1)[0]
            if case .error(let e) = answer {
                close()
                throw Failure(description: "\(host):\(port) refused the password (--password-file): \(e)", retryable: false)
            }
        }
    }

    deinit { close() }

    package var isOpen: Bool { fd >= 0 }

    package func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// How long a read or a write may wait: longer than any `BLOCK` a
    /// command asks the server to wait.
    package func setTimeout(_ seconds: Double) {
        timeout = seconds
        guard fd >= 0 else { return }
        let s = max(seconds, 0.001)
        var t = timeval(tv_sec: .init(s), tv_usec: .init((s - s.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends the commands in `writer`, then reads `replies` replies.
    package func exchange(_ writer: RESPWriter, replies: Int) throws(Failure) -> [RESPValue] {
        try send(writer.bytes)
        var answers: [RESPValue] = []
        answers.reserveCapacity(replies)
        for _ in 0..<replies { answers.append(try reply()) }
        return answers
    }

    package func send(_ bytes: [UInt8]) throws(Failure) {
        guard fd >= 0 else { throw Failure(description: "the connection to \(host):\(port) is closed") }
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw broken("cannot send to") }
            sent += n
        }
    }

    /// The next reply, waiting for its bytes.
    package func reply() throws(Failure) -> RESPValue {
        try read { r throws(RESPReader.Malformed) in try r.next() }
    }

    /// The next reply's bytes as they came (`RESPReader.nextRaw`).
    package func rawReply() throws(Failure) -> [UInt8] {
        try read { r throws(RESPReader.Malformed) in try r.nextRaw() }
    }

    /// What `take` makes of the reader once enough bytes have arrived.
    private func read<T>(_ take: (inout RESPReader) throws(RESPReader.Malformed) -> T?) throws(Failure) -> T {
        while true {
            do {
                if let value = try take(&reader) { return value }
            } catch {
                close()
                throw Failure(description: "\(host):\(port): \(error)", retryable: false)
            }
            guard fd >= 0 else { throw Failure(description: "the connection to \(host):\(port) is closed") }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n == 0 {
                close()
                throw Failure(description: "\(host):\(port) closed the connection")
            }
            if n < 0 { throw broken(errno == EAGAIN || errno == EWOULDBLOCK ? "no answer in \(Self.seconds(timeout)) from" : "cannot read from") }
            reader.append(chunk[0..<n])
        }
    }

    private func broken(_ what: String) -> Failure {
        let reason = errno == EAGAIN || errno == EWOULDBLOCK ? "" : ": " + String(cString: strerror(errno))
        close()
        return Failure(description: "\(what) \(host):\(port)\(reason)")
    }

    private static func seconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s)) s" : "\(s) s"
    }

    /// A connected socket, tried at each of the host's addresses in turn.
    private static func connect(host: String, port: Int, timeout: Double) throws(Failure) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw Failure(description: "cannot find the host \(host): \(String(cString: gai_strerror(status)))", retryable: status == EAI_AGAIN)
        }
        defer { freeaddrinfo(list) }
        var reason = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let info = next {
            next = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
            if fd < 0 { reason = String(cString: strerror(errno)); continue }
            if let failure = connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen, timeout: timeout) {
                reason = failure
                Glibc.close(fd)
                continue
            }
            return fd
        }
        throw Failure(description: "cannot connect to \(host):\(port): \(reason)")
    }

    /// nil once `fd` is connected; otherwise why not. The connect does not
    /// block: it is waited for with `poll`, `timeout` seconds at most.
    private static func connect(_ fd: Int32, _ address: UnsafeMutablePointer<sockaddr>, _ length: socklen_t, timeout: Double) -> String? {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        if Glibc.connect(fd, address, length) == 0 { return nil }
        guard errno == EINPROGRESS else { return String(cString: strerror(errno)) }
        var ready = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let n = poll(&ready, 1, Int32(max(1, timeout * 1000)))
        if n == 0 { return "no answer in \(seconds(timeout))" }
        if n < 0 { return String(cString: strerror(errno)) }
        var error: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size)
        return error == 0 ? nil : String(cString: strerror(error))
    }
}
