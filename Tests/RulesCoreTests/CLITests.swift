import Foundation
import Testing

/// End-to-end: the built `rules` binary, as a user runs it.
@Suite("rules command line")
struct CLITests {
    static func rules(_ args: [String], stdin: String? = nil) throws -> ProcessResult {
        guard let binary = Repo.binary else { throw TestFailure("the rules binary was not built (swift build)") }
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        return try runProcess(binary, args, stdin: stdin, environment: env)
    }

    static func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rules-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Writes the case's files; returns the policy paths and the events path.
    static func materialize(_ c: ConformanceCase) throws -> (policies: [String], events: String) {
        let dir = try tempDir()
        var policies: [String] = []
        for (i, text) in c.policies.enumerated() {
            let url = dir.appendingPathComponent("policy\(i + 1).rules")
            try text.write(to: url, atomically: true, encoding: .utf8)
            policies.append(url.path)
        }
        let events = dir.appendingPathComponent("events.ndjson")
        try c.events.write(to: events, atomically: true, encoding: .utf8)
        return (policies, events.path)
    }

    @Test("every conformance case through the binary", arguments: ConformanceCase.all)
    func conformance(_ c: ConformanceCase) throws {
        let (policies, events) = try Self.materialize(c)
        if let errors = c.errors {
            let check = try Self.rules(["check"] + policies)
            #expect(check.status == 1)
            for e in errors {
                let position = e.split(separator: " ")[0]
                let code = e.split(separator: " ")[1]
                #expect(check.stderr.contains("policy1.rules:\(position): error: "), "\(check.stderr)")
                #expect(check.stderr.contains("[\(code)]"))
            }
            let run = try Self.rules(["run"] + policies + ["--events", events])
            #expect(run.status == 1)
            #expect(run.stdout.isEmpty)
            return
        }
        let result = try Self.rules(["run"] + policies + ["--events", events] + c.args)
        #expect(result.status == 0, "\(result.stderr)")
        if let output = c.output { #expect(result.stdout == output) }
        // Two threads print exactly what one does.
        let parallel = try Self.rules(["run"] + policies + ["--events", events, "--jobs", "2"] + c.args)
        #expect(parallel.stdout == result.stdout)
        #expect(parallel.stderr == result.stderr)
        for text in c.stderr { #expect(result.stderr.contains(text), "\(result.stderr)") }
        // The first ten rejected lines are shown; the rest are counted.
        for r in c.rejects.prefix(10) { #expect(result.stderr.contains("events.ndjson:\(r.line): rejected: "), "\(result.stderr)") }
        #expect(result.stderr.contains(", \(c.rejects.count) rejected"))
        #expect(!result.stderr.contains("\u{1B}["))
    }

    @Test("help on every level")
    func help() throws {
        for args in [["--help"], ["-h"], ["help"], ["help", "run"], ["help", "check"], ["run", "--help"], ["check", "-h"],
                     ["test", "--help"], ["repl", "--help"], ["explain", "--help"], ["graph", "--help"]] {
            let r = try Self.rules(args)
            #expect(r.status == 0)
            #expect(r.stdout.contains("usage: rules"), "\(args)")
        }
        #expect(try Self.rules(["--version"]).stdout.hasPrefix("rules "))
    }

    @Test("usage errors exit 2 and say what is wrong")
    func usage() throws {
        let cases: [([String], String)] = [
            ([], "usage: rules"),
            (["rnu"], "did you mean `run`?"),
            (["run"], "name at least one policy file"),
            (["run", "x.rules", "--evnets", "e"], "did you mean --events?"),
            (["run", "x.rules", "--as-of", "tomorrow"], "--as-of takes a date"),
            (["run", "x.rules", "--events"], "--events needs a value"),
            (["check"], "name at least one policy file"),
            (["check", "x.rules", "--format", "xml"], "--format takes human or json"),
            (["help", "nope"], "unknown command"),
        ]
        for (args, message) in cases {
            let r = try Self.rules(args)
            #expect(r.status == 2, "\(args)")
            #expect(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }

    @Test("--person-key: a stream that says `driver` gives the report of the same stream saying `citizen`, by every command that reads streams")
    func personKey() throws {
        let policy = Repo.root.appendingPathComponent("rules/citizen.rules").path
        let citizenStream = try String(contentsOf: Repo.root.appendingPathComponent("examples/citizen.ndjson"), encoding: .utf8)
        let expected = try String(contentsOf: Repo.root.appendingPathComponent("examples/citizen.expected.ndjson"), encoding: .utf8)
        // The person key last in some lines, so the look-ahead and the
        // `--jobs` router meet both layouts.
        let lines = citizenStream.split(separator: "\n")
        #expect(lines.allSatisfy { $0.hasPrefix(#"{"citizen":""#) })
        let driverStream = lines.enumerated().map { (k, line) -> String in
            let rest = line.dropFirst(#"{"citizen":""#.count)  // alice","type":…}
            let id = rest.prefix { $0 != "\"" }
            if k % 2 == 0 { return #"{"driver":""# + rest }
            return "{" + rest.dropFirst(id.count + 2).dropLast() + #","driver":""# + id + #""}"#
        }.joined(separator: "\n") + "\n"
        #expect(driverStream.contains(#","driver":"#) && driverStream.contains(#"{"driver":"#))
        let driverReport = expected.replacingOccurrences(of: #"{"citizen":"#, with: #"{"driver":"#)
        for jobs in ["1", "2"] {
            let r = try Self.rules(["run", policy, "--person-key", "driver", "--jobs", jobs], stdin: driverStream)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout == driverReport, "--jobs \(jobs)")
        }
        // The contract's key is then an ordinary key: a line naming only
        // `citizen` has no person.
        let plain = try Self.rules(["run", policy, "--person-key", "driver"], stdin: citizenStream)
        #expect(plain.stdout.isEmpty)
        #expect(plain.stderr.contains(#"rejected: missing "driver""#), "\(plain.stderr)")
        let person = try #require(expected.split(separator: "\n").first.map { String($0.dropFirst(12).prefix { $0 != "\"" }) })
        let explained = try Self.rules(["explain", policy, "--person-key", "driver", "--person", person], stdin: driverStream)
        #expect(explained.status == 0, "\(explained.stderr)")
        #expect(explained.stdout.hasPrefix("\(person) as of "))
        // Names that cannot be the key: usage errors, before any event.
        for (name, message) in [("time", "`time` cannot be the person key"), ("", "must not be empty"),
                                ("amount", "the policy reads `amount` as an event field")] {
            let r = try Self.rules(["run", policy, "--person-key", name], stdin: driverStream)
            #expect(r.status == 2, "\(name)")
            #expect(r.stderr.contains(message), "\(r.stderr)")
            #expect(r.stdout.isEmpty)
        }
    }

    @Test("unreadable policy or events exit 1 with the reason")
    func unreadable() throws {
        let dir = try Self.tempDir()
        let policy = dir.appendingPathComponent("p.rules")
        try "a → +1\n".write(to: policy, atomically: true, encoding: .utf8)
        let missingPolicy = try Self.rules(["run", dir.appendingPathComponent("nope.rules").path])
        #expect(missingPolicy.status == 1)
        #expect(missingPolicy.stderr.contains("cannot read policy"))
        let missingEvents = try Self.rules(["run", policy.path, "--events", dir.appendingPathComponent("none.ndjson").path])
        #expect(missingEvents.status == 1)
        #expect(missingEvents.stderr.contains("cannot read events"))
        let directory = try Self.rules(["check", dir.path])
        #expect(directory.status == 1)
        #expect(directory.stderr.contains("is a directory"))
    }

    @Test("events from stdin, a summary on stderr, rejects written as NDJSON")
    func pipeline() throws {
        let dir = try Self.tempDir()
        let policy = dir.appendingPathComponent("p.rules")
        try "a → +1\n".write(to: policy, atomically: true, encoding: .utf8)
        let rejects = dir.appendingPathComponent("rejects.ndjson")
        let input = """
        {"citizen":"x","type":"a","time":"2026-01-01"}
        garbage "quoted"

        {"citizen":"x","type":"a","time":"2025-01-01"}
        {"citizen":"y","type":"a","time":"2026-01-02"}

        """
        let r = try Self.rules(["run", policy.path, "--rejects", rejects.path], stdin: input)
        #expect(r.status == 0)
        #expect(r.stdout == """
        {"citizen":"x","score":1,"flags":[],"denied":[],"granted":[]}
        {"citizen":"y","score":1,"flags":[],"denied":[],"granted":[]}

        """)
        #expect(r.stderr.contains("<stdin>:2: rejected: not a JSON object"))
        #expect(r.stderr.contains("<stdin>:4: rejected: time 2025-01-01T00:00:00Z is earlier"))
        #expect(r.stderr.contains("rules: 4 events read: 2 applied, 2 rejected; 1 blank lines skipped"))
        let written = try String(contentsOf: rejects, encoding: .utf8)
        let lines = written.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[0] == #"{"line":2,"reason":"not a JSON object (a line must start with `{`)","input":"garbage \"quoted\""}"#)
        #expect(lines[1].hasPrefix(#"{"line":4,"reason":"time 2025-01-01T00:00:00Z is earlier"#))
    }

    @Test("rules run --retain and --lateness: a retraction and a late event through the binary; their usage errors")
    func corrections() throws {
        let dir = try Self.tempDir()
        let policy = dir.appendingPathComponent("p.rules")
        try "speeding → -5\n3 speeding within 30 days → deny driving for 90 days\n".write(to: policy, atomically: true, encoding: .utf8)
        let input = """
        {"citizen":"dave","type":"speeding","time":"2026-03-01","id":"t-1"}
        {"citizen":"dave","type":"speeding","time":"2026-03-03","id":"t-3"}
        {"citizen":"dave","type":"speeding","time":"2026-03-02","id":"t-2"}
        {"citizen":"dave","type":"retract","target":"t-2","time":"2026-03-04","reason":"court ruling 55/2026"}

        """
        let r = try Self.rules(["run", policy.path, "--retain", "365 days", "--lateness", "2 days"], stdin: input)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == #"{"citizen":"dave","score":-10,"flags":[],"denied":[],"granted":[]}"# + "\n")
        #expect(r.stderr.contains("rules: 4 events read: 4 applied, 0 rejected"), "\(r.stderr)")
        // The late event alone, before the retraction, denied driving.
        let before = try Self.rules(["run", policy.path, "--lateness", "2 days"], stdin: input.split(separator: "\n").prefix(3).joined(separator: "\n"))
        #expect(before.stdout == #"{"citizen":"dave","score":-15,"flags":[],"denied":["driving"],"granted":[]}"# + "\n")
        // Without them: the late line and the retraction are refused.
        let plain = try Self.rules(["run", policy.path], stdin: input)
        #expect(plain.stderr.contains("<stdin>:3: rejected: time 2026-03-02T00:00:00Z is earlier than this citizen's previous event"))
        #expect(plain.stderr.contains("<stdin>:4: rejected: cannot retract \"t-2\": no history is kept (run with --retain DURATION)"))
        for (args, message) in [
            (["--retain", "a year"], "--retain takes a duration like \"365 days\""),
            (["--retain", "1001 years"], "--retain takes a duration"),
            (["--retain", "1000 years", "--lateness", "1000.0001 years"], "--lateness takes a duration"),
            (["--lateness", "-1 day"], "--lateness takes a duration"),
            (["--retain", "1 day", "--lateness", "2 days"], "--lateness (2 days) reaches further back than the history --retain keeps (1 day)"),
        ] {
            let e = try Self.rules(["run", policy.path] + args, stdin: input)
            #expect(e.status == 2, "\(args)")
            #expect(e.stderr.contains(message), "\(args): \(e.stderr)")
        }
        #expect(try Self.rules(["run", "--help"]).stdout.contains("--retain DURATION"))
        // The longest retention a policy's durations allow is accepted.
        #expect(try Self.rules(["run", policy.path, "--retain", "1000 years", "--lateness", "1000 years"], stdin: input).status == 0)
        // A saved state keeps the history: the retraction reaches an event
        // applied before the resume.
        let state = dir.appendingPathComponent("state").path
        let lines = input.split(separator: "\n").map { $0 + "\n" }
        let saved = try Self.rules(["run", policy.path, "--retain", "365 days", "--lateness", "2 days", "--state", state],
                                   stdin: lines[..<3].joined())
        #expect(saved.status == 0)
        let resumed = try Self.rules(["run", policy.path, "--resume", state], stdin: lines[3...].joined())
        #expect(resumed.status == 0 && resumed.stdout == r.stdout, "\(resumed.stderr)")
        // docs/LANGUAGE.md's worked example, as the binary prints it.
        let example = dir.appendingPathComponent("ex.rules")
        try "score starts at 1000\nspeeding → -5\n3 speeding within 30 days → deny driving for 90 days\n".write(to: example, atomically: true, encoding: .utf8)
        let explained = try Self.rules(["explain", example.path, "--retain", "365 days", "--lateness", "2 days", "--person", "dave"], stdin: input)
        let docs = try String(contentsOf: Repo.root.appendingPathComponent("docs/LANGUAGE.md"), encoding: .utf8)
        #expect(explained.status == 0)
        #expect(docs.contains(explained.stdout.replacingOccurrences(of: dir.path + "/", with: "")), "\(explained.stdout)")
    }

    @Test("a policy error stops the run before any event, with exit 1")
    func policyError() throws {
        let dir = try Self.tempDir()
        let policy = dir.appendingPathComponent("bad.rules")
        try "speeding → 5\n".write(to: policy, atomically: true, encoding: .utf8)
        let r = try Self.rules(["run", policy.path], stdin: #"{"citizen":"x","type":"a","time":"2026-01-01"}"#)
        #expect(r.status == 1)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.contains("bad.rules:1:12: error: a score change needs a sign [E0204]"))
        #expect(r.stderr.contains("nothing was run"))
    }

    @Test("check prints JSON diagnostics on request and passes clean policies")
    func checkFormats() throws {
        let dir = try Self.tempDir()
        let good = dir.appendingPathComponent("good.rules")
        try "speeding → -5\n".write(to: good, atomically: true, encoding: .utf8)
        let ok = try Self.rules(["check", good.path])
        #expect(ok.status == 0)
        #expect(ok.stderr.isEmpty)
        let bad = dir.appendingPathComponent("bad.rules")
        try "let unused = 1\nspeeding → 5\n".write(to: bad, atomically: true, encoding: .utf8)
        let json = try Self.rules(["check", bad.path, "--format", "json"])
        #expect(json.status == 1)
        let lines = json.stderr.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { $0.hasPrefix("{\"file\":") })
        #expect(lines[1].contains(#""code":"E0204""#))
    }

    @Test("rules test: the shipped policies' tests pass and cover every rule")
    func shippedTests() throws {
        let r = try Self.rules(["test", Repo.root.appendingPathComponent("rules").path, "--coverage"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.last?.hasSuffix(" passed, 0 failed") == true)
        #expect(lines.contains { $0.hasPrefix("coverage: ") && $0.hasSuffix("(100%)") })
        #expect(!lines.contains { $0.hasPrefix("FAIL") })
    }

    @Test("rules test: a failing test exits 1 and says why; no tests at all exits 1")
    func failingTests() throws {
        let dir = try Self.tempDir()
        try "a → +1\n".write(to: dir.appendingPathComponent("p.rules"), atomically: true, encoding: .utf8)
        try """
        use "p.rules"
        test "one a is worth two" {
          2026-01-01 x: a
          expect x score == 2
        }
        test "one a is worth one" {
          2026-01-01 x: a
          expect x score == 1
        }

        """.write(to: dir.appendingPathComponent("p.test.rules"), atomically: true, encoding: .utf8)
        let r = try Self.rules(["test", dir.path])
        #expect(r.status == 1)
        #expect(r.stdout.contains("FAIL  \(dir.path)/p.test.rules:2  one a is worth two"))
        #expect(r.stdout.contains("expected: score == 2"))
        #expect(r.stdout.contains("actual:   score 1"))
        #expect(r.stdout.contains("ok    \(dir.path)/p.test.rules:6  one a is worth one"))
        #expect(r.stdout.hasSuffix("1 passed, 1 failed\n"))

        let empty = try Self.tempDir()
        try "a → +1\n".write(to: empty.appendingPathComponent("p.rules"), atomically: true, encoding: .utf8)
        let none = try Self.rules(["test", empty.path])
        #expect(none.status == 1)
        #expect(none.stderr.contains("no tests found"))
        #expect(none.stdout == "0 passed, 0 failed\n")
    }

    @Test("rules test: a file that does not compile counts as failed in the summary, not only in the exit status")
    func brokenFileCounts() throws {
        let dir = try Self.tempDir()
        try "a → +1\ntest \"one\" {\n  2026-01-01 x: a\n  expect x score == 1\n}\n"
            .write(to: dir.appendingPathComponent("good.rules"), atomically: true, encoding: .utf8)
        try "a → +\n".write(to: dir.appendingPathComponent("bad.rules"), atomically: true, encoding: .utf8)
        let r = try Self.rules(["test", dir.path])
        #expect(r.status == 1)
        #expect(r.stdout.contains("FAIL  \(dir.path)/bad.rules  does not compile; see the errors above"))
        #expect(r.stdout.hasSuffix("1 passed, 1 failed\n"))
    }

    @Test("rules explain accounts for one person; rules graph draws the policy")
    func explainAndGraph() throws {
        let policy = Repo.root.appendingPathComponent("rules/citizen.rules").path
        let events = Repo.root.appendingPathComponent("examples/citizen.ndjson").path
        let r = try Self.rules(["explain", policy, "--events", events, "--person", "dave"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("dave as of 2026-06-01T00:00:00Z: score 988\n"))
        #expect(r.stdout.contains("held by \(policy):64  while count(littering within 365 days) >= 4 → flag repeat litterer"))
        let nobody = try Self.rules(["explain", policy, "--events", events, "--person", "zed"])
        #expect(nobody.status == 1)
        #expect(nobody.stderr.contains("no applied event for `zed`"))
        #expect(try Self.rules(["explain", policy, "--events", events]).status == 2)
        let whyNot = try Self.rules(["explain", policy, "--events", events, "--person", "carol", "--why-not", "fast lane"])
        #expect(whyNot.status == 0)
        #expect(whyNot.stdout.hasSuffix("    does not hold: score (901) >= 1050\n"))
        let data = try Self.rules(["explain", policy, "--events", events, "--person", "carol", "--why-not", "fast lane", "--format", "json"])
        let object = try JSONSerialization.jsonObject(with: Data(data.stdout.utf8)) as! [String: Any]
        let answers = object["answers"] as! [[String: Any]]
        #expect(answers.count == 1 && answers[0]["kind"] as? String == "grant")
        let rules = answers[0]["rules"] as! [[String: Any]]
        #expect(rules[0]["why"] as? String == "does not hold: score (901) >= 1050")
        // A name the policy does not have is an error (exit 1), with the
        // did-you-mean on stderr; as JSON, the error object on stdout.
        let typo = try Self.rules(["explain", policy, "--events", events, "--person", "carol", "--why-not", "fast lan"])
        #expect(typo.status == 1)
        #expect(typo.stdout.isEmpty)
        #expect(typo.stderr.contains("the policy has no flag or privilege `fast_lan`; did you mean"), "\(typo.stderr)")
        let typoJSON = try Self.rules(["explain", policy, "--events", events, "--person", "carol", "--why-not", "fast lan", "--format", "json"])
        #expect(typoJSON.status == 1)
        #expect((try JSONSerialization.jsonObject(with: Data(typoJSON.stdout.utf8)) as? [String: Any])?["error"] != nil)

        let dot = try Self.rules(["graph", policy])
        #expect(dot.status == 0)
        #expect(dot.stdout.hasPrefix("digraph rules {"))
        let mermaid = try Self.rules(["graph", policy, "--format", "mermaid"])
        #expect(mermaid.stdout.hasPrefix("flowchart LR"))
        #expect(try Self.rules(["graph", policy, "--format", "svg"]).status == 2)
    }
}
