import RulesCore

/// HTTP/1.1 messages as `rules serve` reads and writes them (RFC 9112),
/// written here rather than taken from a package: requests are parsed from
/// bytes as they arrive, with limits, and every malformed request gets the
/// status the RFC names and a reason — never a crash, never a guess.

/// One request, whole.
package struct HTTPRequest: Sendable, Equatable {
    package var method: String
    /// The request target as sent (`/v1/people/dave%20o?x=1`).
    package var target: String
    /// The path's segments, each percent-decoded on its own, so that an
    /// encoded `/` stays inside its segment (`/v1/people/a%2Fb` is
    /// `["v1", "people", "a/b"]`).
    package var segments: [String]
    /// The query's `name=value` pairs, percent-decoded (`+` is a space).
    package var query: [(name: String, value: String)]
    /// `HTTP/1.x`: 0 or 1.
    package var minorVersion: Int
    /// Field names as sent; look them up with `header(_:)`.
    package var headers: [(name: String, value: String)]
    package var body: [UInt8]

    /// The first field of that name (case-insensitive), if any.
    package func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// Whether the connection stays open after the answer: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    package var keepAlive: Bool {
        let tokens = (header("Connection") ?? "").lowercased().split(separator: ",").map { String($0).trimmingCharacters(in: " \t") }
        return minorVersion >= 1 ? !tokens.contains("close") : tokens.contains("keep-alive")
    }

    package static func == (a: HTTPRequest, b: HTTPRequest) -> Bool {
        a.method == b.method && a.target == b.target && a.minorVersion == b.minorVersion && a.body == b.body
            && a.headers.map { "\($0.name):\($0.value)" } == b.headers.map { "\($0.name):\($0.value)" }
    }
}

/// A request that cannot be served, with the status that says why.
package struct HTTPError: Error, Sendable, Equatable {
    package var status: Int
    package var message: String
}

/// One answer.
package struct HTTPResponse: Sendable {
    package var status: Int
    package var headers: [(name: String, value: String)]
    package var body: [UInt8]

    package init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON body (`Content-Type: application/json`).
    package static func json(_ status: Int, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: Array((text + "\n").utf8))
    }

    /// `{"error":"…"}`, as every error of the service is answered.
    package static func error(_ status: Int, _ message: String) -> HTTPResponse {
        json(status, #"{"error":\#(JSONText.quoted(message))}"#)
    }

    /// The bytes on the wire; `close` adds `Connection: close`.
    package func bytes(close: Bool = false) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(body.count)\r\n"
        if close { head += "Connection: close\r\n" }
        head += "\r\n"
        return Array(head.utf8) + body
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 200: return "OK"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 422: return "Unprocessable Content"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 503: return "Service Unavailable"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(status)"
        }
    }
}
