import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

/// Every boundary the contract promises, through every command: `check`,
/// `run` (one thread and two), `test`, `explain`, `graph`, `fmt` and `lsp`.
/// Each must end with exit 0, 1 or 2 and say something; none may trap,
/// hang, or lose a line of the stream (issue 13: `for 300 years` killed
/// five commands with SIGILL and the language server as it was typed).
@Suite("Boundaries through every command")
struct BoundaryTests {
    struct Boundary: CustomStringConvertible, Sendable {
        var name: String
        var policy: String
        var events: [String]
        var description: String { name }
    }

    static let t0 = #""citizen":"a","type":"e","time":"2026-01-05T08:00:00Z""#

    /// Policies and streams at the edges: durations near and at 1000 years
    /// (and past it), scores near ±9·10^15, numbers at 1e308, 2^53, 2^63,
    /// -0, division by zero, dates 0001 and 9999, offsets ±14:00, lone
    /// surrogates, duplicate keys.
    static let boundaries: [Boundary] = [
        Boundary(name: "durations at 292, 293 and 1000 years",
                 policy: "e → deny x for 292 years, flag y for 293 years, grant z for 1000 years\n2 e within 1000 years → flag w\nwhile count(e within 1000 years) > 1 → flag v\n",
                 events: ["{\(t0)}", #"{"citizen":"a","type":"e","time":"9999-12-31T23:59:59Z"}"#]),
        Boundary(name: "a duration just past 1000 years", policy: "e → deny x for 1000 years + 1 second\n", events: ["{\(t0)}"]),
        Boundary(name: "durations of a microsecond and less", policy: "e → deny x for 0.000001 seconds\nf → deny y for 0.0000001 seconds\n", events: ["{\(t0)}"]),
        Boundary(name: "a zero and a negative duration", policy: "e → deny x for 0 days\nf → deny y for -1 days\n", events: ["{\(t0)}"]),
        Boundary(name: "a window over the whole calendar",
                 policy: "3 e within 1000 years → flag old\n",
                 events: [#"{"citizen":"a","type":"e","time":"0001-01-01"}"#, #"{"citizen":"a","type":"e","time":"0500-06-30T12:00:00+14:00"}"#,
                          #"{"citizen":"a","type":"e","time":"1000-12-31T23:59:59-14:00"}"#]),
        Boundary(name: "scores past ±9e15, with and without bounds",
                 policy: "e → +n\nf → -n\n",
                 events: ["{\(t0),\"n\":1e308}", "{\(t0),\"n\":1e308}", #"{"citizen":"b","type":"f","time":"2026-01-05","n":1e308}"#,
                          #"{"citizen":"c","type":"e","time":"2026-01-05","n":9007199254740993}"#]),
        Boundary(name: "score settings at the limit", policy: "score starts at 9_000_000_000_000_000, min -9_000_000_000_000_000, max 9_000_000_000_000_000\ne → +1\n",
                 events: ["{\(t0)}"]),
        Boundary(name: "score settings past the limit", policy: "score starts at 9_000_000_000_000_001\n", events: ["{\(t0)}"]),
        Boundary(name: "numbers at 2^53, 2^63, -0 and 1e308",
                 policy: "e where n == -0 → flag zero\ne where n > 9223372036854775807 → flag big\ne → +n / 1e308\n",
                 events: ["{\(t0),\"n\":-0}", "{\(t0),\"n\":9223372036854775808}", "{\(t0),\"n\":1e308}", "{\(t0),\"n\":1e309}"]),
        Boundary(name: "division by zero, at check time and at run time",
                 policy: "e where n / 0 > 1 → +1\ne → +n % 0\n", events: ["{\(t0),\"n\":1}"]),
        Boundary(name: "a constant that divides by zero", policy: "let k = 1 / 0\ne → +k\n", events: ["{\(t0)}"]),
        Boundary(name: "dates 0001 and 9999, offsets ±14:00, and past them",
                 policy: "e → +1\n",
                 events: [#"{"citizen":"a","type":"e","time":"0001-01-01"}"#, #"{"citizen":"a","type":"e","time":"0001-01-01T00:00:00+14:00"}"#,
                          #"{"citizen":"a","type":"e","time":"9999-12-31T23:59:59.999999Z"}"#, #"{"citizen":"a","type":"e","time":"9999-12-31T23:59:59-14:00"}"#,
                          #"{"citizen":"a","type":"e","time":"0000-01-01"}"#, #"{"citizen":"a","type":"e","time":"10000-01-01"}"#]),
        Boundary(name: "lone surrogates and invalid UTF-8",
                 policy: "e where s == \"\\u{41}\" → +1\n",
                 events: [#"{"citizen":"\ud800","type":"e","time":"2026-01-05","s":"\udc00"}"#, "{\"citizen\":\"\u{FFFD}\",\"type\":\"e\",\"time\":\"2026-01-05\"}",
                          "{\"citizen\":\"a\",\"type\":\"e\",\"time\":\"2026-01-05\",\"s\":\"A\"}"]),
        Boundary(name: "duplicate keys", policy: "e where n > 0 → +1\n",
                 events: ["{\(t0),\"n\":1,\"n\":2}", "{\(t0),\"citizen\":\"b\"}", "{\(t0),\"m\":1,\"m\":2}"]),
        Boundary(name: "a count at its limit and past it", policy: "1000000 e within 1 day → +1\n1000001 e within 1 day → +1\n", events: ["{\(t0)}"]),
        Boundary(name: "as-of at the edges of time", policy: "e → flag f for 1000 years\n", events: ["{\(t0)}"]),
    ]

    /// Each limit docs/LANGUAGE.md states, just inside and just outside.
    @Test("every stated limit holds exactly at its edge", arguments: [
        ("e → deny x for 1000 years", nil), ("e → deny x for 1000 years + 1 second", "E0410"),
        ("2 e within 1000 years → +1", nil), ("2 e within 365001 days → +1", "E0410"),
        ("e → deny x for 0.000001 seconds", nil), ("e → deny x for 0.0000001 seconds", "E0410"),
        ("e → deny x for 0 days", "E0410"),
        ("score starts at 9_000_000_000_000_000, min -9_000_000_000_000_000", nil),
        ("score max 9_000_000_000_000_001", "E0408"), ("score min -9_000_000_000_000_001", "E0408"),
        ("1000000 e within 1 day → +1", nil), ("1000001 e within 1 day → +1", "E0406"),
    ] as [(String, String?)])
    func limitEdges(_ policy: String, _ code: String?) {
        let result = PolicyCompiler.compile(policy + "\n")
        #expect(result.errors.map(\.code.rawValue) == (code.map { [$0] } ?? []), "\(policy)")
    }

    @Test("the score stops exactly at ±9·10^15, and moves again from there")
    func scoreEdge() throws {
        let (out, _) = try runPolicy("e → +n\n", [
            #"{"citizen":"a","type":"e","time":"2026-01-01","n":8999999999999999}"#,
            #"{"citizen":"a","type":"e","time":"2026-01-01","n":1}"#,
            #"{"citizen":"a","type":"e","time":"2026-01-01","n":1}"#,
            #"{"citizen":"b","type":"e","time":"2026-01-01","n":-9000000000000000}"#,
            #"{"citizen":"b","type":"e","time":"2026-01-01","n":-1}"#,
            #"{"citizen":"b","type":"e","time":"2026-01-01","n":2}"#,
        ].joined(separator: "\n"))
        #expect(out == #"{"citizen":"a","score":9000000000000000,"flags":[],"denied":[],"granted":[]}"# + "\n"
                    + #"{"citizen":"b","score":-8999999999999998,"flags":[],"denied":[],"granted":[]}"# + "\n")
    }

    static func write(_ b: Boundary) throws -> (dir: URL, policy: String, events: String) {
        let dir = try CLITests.tempDir()
        let policy = dir.appendingPathComponent("boundary.rules").path
        let events = dir.appendingPathComponent("events.ndjson").path
        let test = "\ntest \"boundary\" {\n  2026-01-05 a: e { n: 1 }\n  expect a score > -10_000_000_000_000_000\n}\n"
        try (b.policy + test).write(toFile: policy, atomically: true, encoding: .utf8)
        try b.events.map { $0 + "\n" }.joined().write(toFile: events, atomically: true, encoding: .utf8)
        return (dir, policy, events)
    }

    /// Ended by itself, with 0, 1 or 2; a failure says why (a clean
    /// `check` or `fmt --check` may say nothing, as such tools do).
    static func expectOrderly(_ r: ProcessResult, _ what: String, _ b: Boundary) {
        #expect([0, 1, 2].contains(r.status), "\(what) on \(b.name): exit \(r.status)\n\(r.stderr)")
        #expect(r.status == 0 || !(r.stdout + r.stderr).isEmpty, "\(what) on \(b.name) failed without a word")
        #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("crashed"), "\(what) on \(b.name):\n\(r.stderr)")
    }

    @Test("check, run, test, explain, graph and fmt end in order, and run accounts for every line", arguments: boundaries)
    func everyCommand(_ b: Boundary) throws {
        let (dir, policy, events) = try Self.write(b)
        defer { try? FileManager.default.removeItem(at: dir) }
        for args in [["check", policy], ["test", policy], ["graph", policy], ["fmt", "--check", policy],
                     ["explain", policy, "--events", events, "--person", "a"]] {
            Self.expectOrderly(try CLITests.rules(args), "rules \(args[0])", b)
        }
        var reports: [String] = []
        for extra in [[], ["--jobs", "2"], ["--as-of", "9999-12-31T23:59:59Z"], ["--as-of", "0001-01-01"]] {
            let r = try CLITests.rules(["run", policy, "--events", events] + extra)
            Self.expectOrderly(r, "rules run \(extra)", b)
            guard r.status == 0 else { continue }
            if extra.first != "--as-of" { reports.append(r.stdout) }
            // Every non-blank line is applied, rejected or ignored.
            let summary = r.stderr.split(separator: "\n").last { $0.hasPrefix("rules: ") && $0.contains("events read") } ?? ""
            #expect(summary.hasPrefix("rules: \(b.events.count) events read"), "rules run \(extra) on \(b.name): \(summary)")
        }
        #expect(Set(reports).count <= 1, "one thread and two disagree on \(b.name)")
    }

    @Test("the language server survives every boundary typed one character at a time", arguments: boundaries)
    func typedIntoTheLanguageServer(_ b: Boundary) throws {
        var server = LanguageServer()
        _ = server.handle(LanguageServerTests.request(1, "initialize", []))
        _ = server.handle(LanguageServerTests.notification("textDocument/didOpen", [("textDocument", .object([
            ("uri", .string(LanguageServerTests.uri)), ("languageId", .string("rules")), ("version", .number(1)), ("text", .string(""))]))]))
        let text = Array(b.policy)
        for end in 1...text.count {
            let out = server.handle(LanguageServerTests.notification("textDocument/didChange", [
                ("textDocument", .object([("uri", .string(LanguageServerTests.uri)), ("version", .number(Double(end + 1)))])),
                ("contentChanges", .array([.object([("text", .string(String(text[..<end])))])]))]))
            #expect(out.first?["method"]?.string == "textDocument/publishDiagnostics")
        }
        let hover = server.handle(LanguageServerTests.request(2, "textDocument/hover", LanguageServerTests.at(0, 0)))
        #expect(hover.first?["id"]?.int == 2)
        let format = server.handle(LanguageServerTests.request(3, "textDocument/formatting", [
            ("textDocument", .object([("uri", .string(LanguageServerTests.uri))])), ("options", .object([]))]))
        #expect(format.first?["id"]?.int == 3)
    }
}
