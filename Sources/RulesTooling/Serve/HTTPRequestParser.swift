/// Reads HTTP/1.1 requests from the bytes of one connection as they arrive
/// (RFC 9112): `append` what was read, then take requests with `next()`
/// until it says more bytes are needed. Pipelined requests come out one by
/// one; a request split over many reads waits for the rest.
///
/// What it accepts: a request line `METHOD /path[?query] HTTP/1.x` (empty
/// lines before it are skipped), header fields `name: value`, a body by
/// `Content-Length` or `Transfer-Encoding: chunked` (extensions and
/// trailers read and ignored), CRLF or bare LF line ends. What it refuses,
/// with the status the RFC names: a malformed line or field (400), an
/// HTTP/1.1 request without `Host` (400), both or conflicting lengths (400),
/// another transfer coding (501), another version (505), a request line
/// over `maxTarget` (414), a header section over `maxHeader` (431), a body
/// over `maxBody` (413). After an error the connection cannot be read on:
/// the caller answers and closes it.
package struct HTTPRequestParser {
    package struct Limits: Sendable {
        package var maxTarget = 8 << 10
        package var maxHeader = 64 << 10
        package var maxBody = 64 << 20
        /// Seconds a connection may sit idle, and a request take to arrive
        /// whole (`--idle-timeout`; the connection enforces it).
        package var idleSeconds = 60
        package init() {}
    }

    let limits: Limits
    private var buffer: [UInt8] = []
    private var start = 0
    /// A request whose header section is read, waiting for its body.
    private var pending: (request: HTTPRequest, framing: Framing)? = nil
    private var failed: HTTPError? = nil

    private enum Framing {
        case length(Int)
        case chunked
    }

    package init(limits: Limits = Limits()) { self.limits = limits }

    /// Bytes read from the connection.
    package mutating func append(_ bytes: some Collection<UInt8>) {
        if start > 0 && start > buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Whether a request has begun and is not whole yet (a connection that
    /// closes now cut it).
    package var isInside: Bool { pending != nil || buffer[start...].contains { $0 != 0x0D && $0 != 0x0A } }

    /// The next whole request, an error, or nil when more bytes are needed.
    /// Once an error is returned it is returned again.
    package mutating func next() -> Result<HTTPRequest, HTTPError>? {
        if let failed { return .failure(failed) }
        do {
            if pending == nil {
                guard let head = try readHead() else { return nil }
                pending = head
            }
            guard let body = try readBody(pending!.framing) else { return nil }
            var request = pending!.request
            request.body = body
            pending = nil
            return .success(request)
        } catch let e as HTTPError {
            failed = e
            return .failure(e)
        } catch {
            return nil
        }
    }

    /// Whether the request waiting for its body asked for `100 Continue`.
    package var expectsContinue: Bool {
        pending?.request.header("Expect")?.lowercased() == "100-continue"
    }

    // MARK: - The header section

    /// The end of the line that starts at `from` (the index of its LF), or
    /// nil when it has not arrived.
    private func lineEnd(from: Int) -> Int? {
        var i = from
        while i < buffer.count {
            if buffer[i] == 0x0A { return i }
            i += 1
        }
        return nil
    }

    /// The bytes of a line without its CR.
    private func line(_ from: Int, _ end: Int) -> ArraySlice<UInt8> {
        end > from && buffer[end - 1] == 0x0D ? buffer[from..<(end - 1)] : buffer[from..<end]
    }

    private mutating func readHead() throws -> (HTTPRequest, Framing)? {
        // Empty lines before a request are skipped (RFC 9112, 2.2).
        while start < buffer.count && (buffer[start] == 0x0A || (buffer[start] == 0x0D && start + 1 < buffer.count && buffer[start + 1] == 0x0A)) {
            start += buffer[start] == 0x0D ? 2 : 1
        }
        // The limit is on the line itself, its CR and LF aside.
        guard let firstEnd = lineEnd(from: start) else {
            if buffer.count - start > limits.maxTarget + 1 { throw HTTPError(status: 414, message: "the request line is longer than \(limits.maxTarget) bytes") }
            return nil
        }
        if line(start, firstEnd).count > limits.maxTarget { throw HTTPError(status: 414, message: "the request line is longer than \(limits.maxTarget) bytes") }
        // The whole header section first: nothing is taken before it is here.
        var fields: [(Int, Int)] = []
        var at = firstEnd + 1
        while true {
            guard let end = lineEnd(from: at) else {
                if buffer.count - start > limits.maxHeader { throw HTTPError(status: 431, message: "the header section is larger than \(limits.maxHeader) bytes") }
                return nil
            }
            if line(at, end).isEmpty { break }
            fields.append((at, end))
            at = end + 1
            if at - start > limits.maxHeader { throw HTTPError(status: 431, message: "the header section is larger than \(limits.maxHeader) bytes") }
        }
        var request = try requestLine(line(start, firstEnd))
        for (from, end) in fields { request.headers.append(try field(line(from, end))) }
        start = at + 1 + (at < buffer.count && buffer[at] == 0x0D ? 1 : 0)
        if request.minorVersion == 1 && request.header("Host") == nil {
            throw HTTPError(status: 400, message: "an HTTP/1.1 request needs a Host header")
        }
        return (request, try framing(request))
    }

    private static let tchar: [Bool] = {
        var t = [Bool](repeating: false, count: 256)
        for c in Array("!#$%&'*+-.^_`|~".utf8) { t[Int(c)] = true }
        for c in UInt8(ascii: "0")...UInt8(ascii: "9") { t[Int(c)] = true }
        for c in UInt8(ascii: "a")...UInt8(ascii: "z") { t[Int(c)] = true }
        for c in UInt8(ascii: "A")...UInt8(ascii: "Z") { t[Int(c)] = true }
        return t
    }()

    private func requestLine(_ bytes: ArraySlice<UInt8>) throws -> HTTPRequest {
        let parts = bytes.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw HTTPError(status: 400, message: "the request line is not `METHOD /path HTTP/1.1`")
        }
        let (method, target, version) = (parts[0], parts[1], parts[2])
        guard !method.isEmpty, method.allSatisfy({ Self.tchar[Int($0)] }) else {
            throw HTTPError(status: 400, message: "the method is not a token")
        }
        guard version.count == 8, version.starts(with: Array("HTTP/".utf8)), version[version.startIndex + 6] == UInt8(ascii: "."),
              let major = digit(version[version.startIndex + 5]), let minor = digit(version[version.startIndex + 7]) else {
            throw HTTPError(status: 400, message: "the version is not `HTTP/1.1`")
        }
        guard major == 1, minor <= 1 else { throw HTTPError(status: 505, message: "only HTTP/1.0 and HTTP/1.1 are served") }
        guard target.first == UInt8(ascii: "/"), target.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw HTTPError(status: 400, message: "the request target is not a path starting with `/`")
        }
        let text = String(decoding: target, as: UTF8.self)
        let pathPart = target.split(separator: UInt8(ascii: "?"), maxSplits: 1, omittingEmptySubsequences: false)
        var segments: [String] = []
        for raw in pathPart[0].split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst() {
            segments.append(try Self.percentDecoded(raw, plusIsSpace: false))
        }
        var query: [(String, String)] = []
        if pathPart.count > 1 {
            for pair in pathPart[1].split(separator: UInt8(ascii: "&")) where !pair.isEmpty {
                let kv = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
                query.append((try Self.percentDecoded(kv[0], plusIsSpace: true),
                              try Self.percentDecoded(kv.count > 1 ? kv[1] : [], plusIsSpace: true)))
            }
        }
        return HTTPRequest(method: String(decoding: method, as: UTF8.self), target: text, segments: segments, query: query,
                           minorVersion: minor, headers: [], body: [])
    }

    private func digit(_ c: UInt8) -> Int? { c >= 0x30 && c <= 0x39 ? Int(c - 0x30) : nil }

    /// `%XX` decoded; the result must be UTF-8.
    static func percentDecoded<C: Collection>(_ raw: C, plusIsSpace: Bool) throws -> String where C.Element == UInt8 {
        var out: [UInt8] = []
        var i = raw.startIndex
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x37
            case 0x61...0x66: return c - 0x57
            default: return nil
            }
        }
        while i != raw.endIndex {
            let c = raw[i]
            if c == UInt8(ascii: "%") {
                let a = raw.index(after: i)
                guard a != raw.endIndex, raw.index(after: a) != raw.endIndex,
                      let hi = hex(raw[a]), let lo = hex(raw[raw.index(after: a)]) else {
                    throw HTTPError(status: 400, message: "a `%` in the request target is not followed by two hex digits")
                }
                out.append(hi << 4 | lo)
                i = raw.index(after: raw.index(after: a))
                continue
            }
            out.append(plusIsSpace && c == UInt8(ascii: "+") ? 0x20 : c)
            i = raw.index(after: i)
        }
        guard let s = String(validating: out, as: UTF8.self) else {
            throw HTTPError(status: 400, message: "the request target decodes to bytes that are not UTF-8")
        }
        return s
    }

    private func field(_ bytes: ArraySlice<UInt8>) throws -> (name: String, value: String) {
        if let first = bytes.first, first == 0x20 || first == 0x09 {
            throw HTTPError(status: 400, message: "a header line starts with whitespace (obsolete line folding)")
        }
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else {
            throw HTTPError(status: 400, message: "a header line has no `:`")
        }
        let name = bytes[bytes.startIndex..<colon]
        guard !name.isEmpty, name.allSatisfy({ Self.tchar[Int($0)] }) else {
            throw HTTPError(status: 400, message: "a header name is not a token (no space before the `:`)")
        }
        var value = bytes[(colon + 1)...]
        while let f = value.first, f == 0x20 || f == 0x09 { value = value.dropFirst() }
        while let l = value.last, l == 0x20 || l == 0x09 { value = value.dropLast() }
        guard value.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }) else {
            throw HTTPError(status: 400, message: "a header value holds a control character")
        }
        return (String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self))
    }

    /// How the body is delimited (RFC 9112, 6.3).
    private func framing(_ request: HTTPRequest) throws -> Framing {
        let lengths = request.headers.filter { $0.name.lowercased() == "content-length" }.map(\.value)
        let codings = request.headers.filter { $0.name.lowercased() == "transfer-encoding" }.map(\.value)
        if !codings.isEmpty {
            guard lengths.isEmpty else {
                throw HTTPError(status: 400, message: "a request has both Content-Length and Transfer-Encoding")
            }
            let all = codings.flatMap { $0.split(separator: ",") }.map { String($0).trimmingCharacters(in: " \t").lowercased() }
            guard all == ["chunked"] else { throw HTTPError(status: 501, message: "only the chunked transfer coding is understood") }
            return .chunked
        }
        guard let first = lengths.first else { return .length(0) }
        let values = Set(lengths.flatMap { $0.split(separator: ",") }.map { String($0).trimmingCharacters(in: " \t") })
        guard values.count == 1, let text = values.first, !text.isEmpty, text.count <= 18, text.allSatisfy(\.isASCII),
              text.allSatisfy(\.isNumber), let n = Int(text) else {
            throw HTTPError(status: 400, message: "Content-Length is not one number: \(first)")
        }
        if n > limits.maxBody { throw HTTPError(status: 413, message: "the body is \(n) bytes, more than the limit of \(limits.maxBody)") }
        return .length(n)
    }

    // MARK: - The body

    private mutating func readBody(_ framing: Framing) throws -> [UInt8]? {
        switch framing {
        case .length(let n):
            guard buffer.count - start >= n else { return nil }
            defer { start += n }
            return Array(buffer[start..<(start + n)])
        case .chunked:
            return try readChunked()
        }
    }

    /// A whole chunked body, or nil when it has not all arrived (nothing is
    /// taken until it has).
    private mutating func readChunked() throws -> [UInt8]? {
        var at = start
        var body: [UInt8] = []
        while true {
            guard let end = lineEnd(from: at) else { return nil }
            var size = line(at, end)
            if let semicolon = size.firstIndex(of: UInt8(ascii: ";")) { size = size[size.startIndex..<semicolon] }
            while let l = size.last, l == 0x20 || l == 0x09 { size = size.dropLast() }
            guard !size.isEmpty, size.count <= 15, let n = Int(String(decoding: size, as: UTF8.self), radix: 16), n >= 0 else {
                throw HTTPError(status: 400, message: "a chunk size is not a hexadecimal number")
            }
            at = end + 1
            if n == 0 {
                // Trailer fields, up to an empty line: read and ignored.
                while true {
                    guard let trailerEnd = lineEnd(from: at) else { return nil }
                    let empty = line(at, trailerEnd).isEmpty
                    at = trailerEnd + 1
                    if empty { break }
                    if at - start > limits.maxBody + limits.maxHeader { throw HTTPError(status: 431, message: "the trailer section is too large") }
                }
                start = at
                return body
            }
            guard body.count + n <= limits.maxBody else {
                throw HTTPError(status: 413, message: "the body is more than the limit of \(limits.maxBody) bytes")
            }
            guard buffer.count - at >= n + 1 else { return nil }
            body.append(contentsOf: buffer[at..<(at + n)])
            at += n
            // The chunk's data ends with CRLF (or LF).
            if buffer[at] == 0x0D {
                guard at + 1 < buffer.count else { return nil }
                guard buffer[at + 1] == 0x0A else { throw HTTPError(status: 400, message: "a chunk's data is not followed by a line end") }
                at += 2
            } else if buffer[at] == 0x0A {
                at += 1
            } else {
                throw HTTPError(status: 400, message: "a chunk is longer than its size says")
            }
        }
    }
}
