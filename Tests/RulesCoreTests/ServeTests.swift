import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

/// `rules serve` with real clients: the built binary on a free port, curl
/// (from Debian; `.ci/run` installs it) and a raw socket for what curl will
/// not send; `kill -9` and a restart on the same data.
@Suite("rules serve", .serialized)
struct ServeTests {
    /// A running `rules serve`, killed when done.
    final class Server {
        let pid: pid_t
        let port: Int
        let errPath: String

        init(_ args: [String]) throws {
            guard let binary = Repo.binary else { throw TestFailure("the rules binary was not built") }
            errPath = FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(UUID().uuidString).err").path
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            let argv = ([binary.path, "serve"] + args + ["--listen", "127.0.0.1:0"]).map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            var pid: pid_t = 0
            guard posix_spawn(&pid, binary.path, &actions, nil, argv, environ) == 0 else { throw TestFailure("cannot start rules serve") }
            self.pid = pid
            // Ready when it says where it listens.
            var found: Int? = nil
            for _ in 0..<200 {
                let text = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
                if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("listening on http://127.0.0.1:") }) {
                    found = Int(line.split(separator: ":").last!)
                    break
                }
                usleep(50_000)
            }
            guard let found else {
                kill(pid, SIGKILL)
                throw TestFailure("rules serve did not start: \((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")")
            }
            port = found
        }

        var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

        func kill9() {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }

        /// curl against it: the body without its last newline (every body
        /// ends with one), and the status (`-w`).
        func curl(_ path: String, _ args: [String] = []) throws -> (status: Int, body: String) {
            let r = try runProcess(URL(fileURLWithPath: "/usr/bin/curl"),
                                   ["-s", "-w", "%{http_code}"] + args + ["http://127.0.0.1:\(port)\(path)"])
            let status = Int(r.stdout.suffix(3)) ?? 0
            var body = String(r.stdout.dropLast(3))
            if body.hasSuffix("\n") { body.removeLast() }
            return (status, body)
        }

        /// Raw bytes over a socket, and all that comes back until it closes.
        func raw(_ bytes: String) -> String {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { return "(no connection)" }
            _ = Array(bytes.utf8).withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, 0) }
            var out: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
                if n <= 0 { break }
                out += chunk[0..<n]
            }
            return String(decoding: out, as: UTF8.self)
        }

        /// SIGTERM, then its exit status.
        func terminate() -> Int32 {
            kill(pid, SIGTERM)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        }

        deinit { kill9() }
    }

    static func dataDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("serve-data-\(UUID().uuidString)").path
    }

    @Test("the example stream posted, people and the report asked for, and after kill -9 the same answers")
    func postAskRestart() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else { throw TestFailure("curl is not installed") }
        let data = Self.dataDirectory()
        let policy = Repo.root.appendingPathComponent("rules/citizen.rules").path
        let events = Repo.root.appendingPathComponent("examples/citizen.ndjson").path
        let expected = try String(contentsOf: Repo.root.appendingPathComponent("examples/citizen.expected.ndjson"), encoding: .utf8)
        var server: Server? = try Server([policy, "--data", data])
        let posted = try server!.curl("/v1/events", ["-X", "POST", "--data-binary", "@" + events])
        #expect(posted.status == 200)
        #expect(posted.body == #"{"read":25,"applied":24,"rejected":1,"rejections":[{"line":22,"reason":"field `speed` of event `speeding` must be a number, not a string"}]}"#)
        let carol = try server!.curl("/v1/people/carol")
        #expect(carol.status == 200 && carol.body == #"{"citizen":"carol","score":901,"flags":["debtor"],"denied":["foreign_travel","travel"],"granted":[]}"#)
        #expect(try server!.curl("/v1/report").body + "\n" == expected)
        #expect(try server!.curl("/v1/report?as_of=2026-03-01").body.contains(#"{"citizen":"alice","score":965,"flags":[],"denied":["driving"],"granted":[]}"#))
        #expect(try server!.curl("/v1/health").body == #"{"status":"ok","clock":"2026-06-01T00:00:00Z","people":5,"lines":25}"#)
        let nobody = try server!.curl("/v1/people/nobody")
        #expect(nobody.status == 404 && nobody.body == #"{"error":"no applied event for \"nobody\""}"#)
        #expect(try server!.curl("/v1/report", ["-X", "DELETE"]).status == 405)
        #expect(try server!.curl("/v2/anything").status == 404)
        // Two requests on one connection (curl reuses it), and a chunked body.
        let both = try runProcess(URL(fileURLWithPath: "/usr/bin/curl"), ["-s", "-v", "http://127.0.0.1:\(server!.port)/v1/health",
                                                                           "http://127.0.0.1:\(server!.port)/v1/people/bob"])
        #expect(both.stderr.contains("Re-using existing connection") || both.stderr.contains("Reusing existing connection"), "\(both.stderr)")
        #expect(both.stdout.contains(#""citizen":"bob""#))
        let chunked = try server!.curl("/v1/events", ["-X", "POST", "-H", "Transfer-Encoding: chunked",
                                                      "--data-binary", #"{"citizen":"zoe","type":"volunteer","time":"2026-06-02","hours":2}"#])
        #expect(chunked.body == #"{"read":1,"applied":1,"rejected":0,"rejections":[]}"#)

        // kill -9, then the same data: every acknowledged body is back.
        server!.kill9()
        server = nil
        let again = try Server([policy, "--data", data])
        #expect(again.stderr.contains("resumed from \(data): 2 bodies replayed"))
        #expect(try again.curl("/v1/health").body == #"{"status":"ok","clock":"2026-06-02T00:00:00Z","people":6,"lines":26}"#)
        #expect(try again.curl("/v1/people/zoe").body == #"{"citizen":"zoe","score":1002,"flags":[],"denied":[],"granted":[]}"#)
        try? FileManager.default.removeItem(atPath: data)
    }

    @Test("explain is rules explain's JSON over every acknowledged line; SIGTERM stops it with 0 and loses nothing; Python's http.client is served")
    func explainStopPython() throws {
        let data = Self.dataDirectory()
        let policy = Repo.root.appendingPathComponent("rules/citizen.rules").path
        let events = Repo.root.appendingPathComponent("examples/citizen.ndjson").path
        let server = try Server([policy, "--data", data])
        _ = try server.curl("/v1/events", ["-X", "POST", "--data-binary", "@" + events])
        let explained = try server.curl("/v1/people/carol/explain")
        let cli = try CLITests.rules(["explain", policy, "--events", events, "--person", "carol", "--format", "json"])
        // The same account; events are named by their line among all lines.
        #expect(explained.status == 200)
        #expect(explained.body == cli.stdout.replacingOccurrences(of: "\"event\":\"\(events):", with: "\"event\":\"line ")
                                            .trimmingCharacters(in: "\n"))
        // Python's http.client: a post and a read on one connection.
        let script = """
            import http.client, json, sys
            c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
            c.request("POST", "/v1/events", body=b'{"citizen":"ivy","type":"blood donation","time":"2026-06-03"}\\n')
            r = c.getresponse(); print(r.status, r.read().decode().strip())
            c.request("GET", "/v1/people/ivy")
            r = c.getresponse(); print(r.status, r.read().decode().strip())
            """
        let python = try runProcess(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", script, String(server.port)])
        #expect(python.stdout == """
            200 {"read":1,"applied":1,"rejected":0,"rejections":[]}
            200 {"citizen":"ivy","score":1015,"flags":[],"denied":[],"granted":[]}

            """, "\(python.stderr)")
        #expect(server.terminate() == 0)
        #expect(server.stderr.contains("rules: stopped; every acknowledged body is in \(data)/events.log"))
        let again = try Server([policy, "--data", data])
        #expect(try again.curl("/v1/health").body == #"{"status":"ok","clock":"2026-06-03T00:00:00Z","people":6,"lines":26}"#)
        try? FileManager.default.removeItem(atPath: data)
    }

    @Test("malformed requests get a 4xx or 5xx with a JSON reason and a closed connection; the service goes on")
    func malformed() throws {
        let data = Self.dataDirectory()
        let server = try Server([Repo.root.appendingPathComponent("rules/citizen.rules").path, "--data", data, "--max-body", "100"])
        for (request, status) in [("GET / HTTP/1.1\r\n\r\n", "400 Bad Request"),
                                  ("GET /v1/health HTTP/3.0\r\nHost: h\r\n\r\n", "505 HTTP Version Not Supported"),
                                  ("POST /v1/events HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n", "413 Content Too Large"),
                                  ("POST /v1/events HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", "501 Not Implemented"),
                                  ("garbage\r\n\r\n", "400 Bad Request")] {
            let answer = server.raw(request)
            #expect(answer.hasPrefix("HTTP/1.1 \(status)\r\n"), "\(request.debugDescription): \(answer)")
            #expect(answer.contains("Connection: close\r\n") && answer.contains(#"{"error":""#))
        }
        // A rejected body changes nothing, and is not logged.
        #expect(try server.curl("/v1/health").body == #"{"status":"ok","clock":null,"people":0,"lines":0}"#)
        // Pipelined on one connection, the last asking to close.
        let two = server.raw("GET /v1/health HTTP/1.1\r\nHost: h\r\n\r\nGET /v1/health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        #expect(two.components(separatedBy: "HTTP/1.1 200 OK").count == 3, "\(two)")
        try? FileManager.default.removeItem(atPath: data)
    }
}
