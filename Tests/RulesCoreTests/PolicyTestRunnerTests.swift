import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

/// `test` blocks: parsing, running, failure reports, and coverage.
@Suite("Policy tests")
struct PolicyTestRunnerTests {
    static let policy = """
    score starts at 100
    speeding → -5
    3 speeding within 30 days → deny driving for 90 days
    unpaid debt → flag debtor
    while score < 90 → flag low trust

    """

    static func run(_ tests: String) -> TestRun {
        let result = PolicyCompiler.compile(policy + tests)
        return PolicyTests.run(result, testsIn: 0)
    }

    @Test("a passing test, with every kind of expectation")
    func passing() {
        let run = Self.run("""
        test "everything holds" {
          2026-01-01 alice: speeding
          2026-01-02T10:00:00+02:00 alice: speeding { speed: 100, note: "x", ok: true, delta: -2.5 }
          2026-01-03 alice: speeding; 2026-01-03 bob: unpaid debt
          expect alice score == 85
          expect alice score < 86
          expect alice score between 80 and 85
          expect alice flagged low trust
          expect alice flags [low trust]
          expect alice denied driving
          expect alice denied [driving]
          expect alice granted []
          expect bob not flagged low trust
          expect bob flagged debtor
          at 2026-04-03 expect alice not denied driving
          expect fired "3 speeding"
          expect fired "while score < 90"
          expect fired "unpaid debt → flag debtor"
        }
        """)
        #expect(run.outcomes.count == 1)
        #expect(run.outcomes[0].passed, "\(run.outcomes[0].details)")
        #expect(run.outcomes[0].location == "policy.rules:6")
    }

    @Test("`3 × …` (or `3 x …`) is the same event that many times; fewer do not count up to a counted rule; a bad count is an error")
    func repeatedEvents() {
        let run = Self.run("""
        test "repeated" {
          3 × 2026-01-01 alice: speeding
          2 x 2026-01-01T10:00:00Z bob: speeding { speed: 100 }
          expect alice score == 85
          expect alice denied driving
          expect bob score == 90
          expect bob not denied driving
          1 × 2026-01-02 bob: speeding
          expect bob denied driving
        }
        """)
        #expect(run.outcomes.count == 1 && run.outcomes[0].passed, "\(run.outcomes.first?.details ?? [])")
        // The AST says it once, with its count.
        let (statements, _) = Parser.parse(SourceFile(name: "t.rules", text: "test \"t\" {\n  4 × 2026-01-01 a: x\n}\n"), file: 0)
        let dumped = statements.map(ASTDump.dump).joined(separator: "\n")
        #expect(dumped.contains("(event 2026-01-01T00:00:00Z a x (× 4))"), "\(dumped)")
        for bad in ["0", "2.5", "10001"] {
            let result = PolicyCompiler.compile(Self.policy + "test \"t\" {\n  \(bad) × 2026-01-01 a: speeding\n  expect a score == 100\n}\n")
            #expect(result.diagnostics.contains { $0.message.contains("a repeated event's count must be a whole number from 1 to 10000") }, "\(bad)")
        }
        // The edge: 10000 is taken, and applies 10000 events.
        let most = Self.run("test \"most\" {\n  10000 × 2026-01-01 a: speeding\n  expect a score == -49900\n}\n")
        #expect(most.outcomes.count == 1 && most.outcomes[0].passed, "\(most.outcomes.first?.details ?? [])")
        // In a policy, `3 x within …` is still a counted rule of event `x`.
        #expect(PolicyCompiler.compile("3 x within 30 days → -5\n").diagnostics.filter { $0.severity == .error }.isEmpty)
    }

    @Test("`expect fired` finds a named rule by its name, though other rules' text contains it; the trail names it, and only it")
    func namedRules() throws {
        let text = """
            rule "reckless" speeding where over > 40 → flag reckless
            speeding where reckless → -1
            test "names" {
              2026-01-01 a: speeding { over: 10 }
              expect not fired "reckless"
              2026-01-02 a: speeding { over: 50 }
              expect fired "reckless"
              expect not fired "speeding where reckless"
            }

            """
        let result = PolicyCompiler.compile(text)
        let run = PolicyTests.run(result, testsIn: 0)
        #expect(run.outcomes.count == 1 && run.outcomes[0].passed, "\(run.outcomes.first?.details ?? [])")
        // Without the name, "reckless" is in both rules' text: ambiguous.
        let unnamed = PolicyTests.run(PolicyCompiler.compile(text.replacing(#"rule "reckless" "#, with: "")), testsIn: 0)
        #expect(unnamed.outcomes.first?.details.joined().contains("matches 2 rules") == true, "\(unnamed.outcomes.first?.details ?? [])")
        // The trail: `rule_name` on the named rule's records only.
        let engine = Engine(program: try #require(result.program))
        var lines: [String] = []
        engine.enableTrace(write: { lines.append(String(decoding: $0, as: UTF8.self)) })
        _ = EventStream.run(engine, text: #"{"citizen":"a","type":"speeding","time":"2026-01-02","over":50}"# + "\n")
        engine.finishTrace()
        let records = lines.joined().split(separator: "\n")
        #expect(records.contains { $0.contains(#""rule":"policy.rules:1","rule_name":"reckless","source":"#) }, "\(records)")
        #expect(records.filter { $0.contains("rule_name") }.allSatisfy { $0.contains(#""rule":"policy.rules:1""#) })
    }

    @Test("a test takes an event back: events with ids, a retraction step, expectations after it; a bad one fails with its reason")
    func retraction() {
        let run = Self.run("""
        test "a retracted ticket no longer counts" {
          2026-03-01 dave: speeding { id: "t-1" }
          2026-03-02 dave: speeding { id: "t-2" }
          2026-03-03 dave: speeding { id: "t-3" }
          expect dave denied [driving]
          2026-03-04 dave: retract { target: "t-2", reason: "court ruling 55/2026" }
          expect dave denied []
          expect dave score == 90
        }
        test "a retraction of an unknown id" {
          2026-03-01 erin: speeding { id: "t-1" }
          2026-03-02 erin: retract { target: "t-9" }
        }
        """)
        #expect(run.outcomes.map(\.passed) == [true, false])
        #expect(run.outcomes[1].details.contains { $0.contains(#"this retraction was rejected: cannot retract "t-9": no event of this citizen has that id"#) },
                "\(run.outcomes[1].details)")
    }

    @Test("a failure shows the expectation, the actual value and what each event fired")
    func failureReport() {
        let run = Self.run("""
        test "wrong score" {
          2026-01-01 alice: speeding
          expect alice score == 100
        }
        """)
        let outcome = run.outcomes[0]
        #expect(!outcome.passed)
        #expect(outcome.details == ["""
        policy.rules:8: expect alice score == 100
            expected: score == 100
            actual:   score 95  (as of 2026-01-01T00:00:00Z)
            events for alice:
              policy.rules:7  2026-01-01 alice: speeding   score 100 → 95
                  fired policy.rules:2  speeding → -5   (-5)
        """])
    }

    @Test("naming an unknown person, flag, privilege, event or rule is an error, not a pass")
    func unknownNames() {
        let run = Self.run("""
        test "typos" {
          2026-01-01 alice: speding
          2026-01-01 alice: speeding
          expect bob score == 100
          expect alice not flagged debter
          expect alice not denied flying
          expect not fired "jaywalking"
        }
        """)
        let details = run.outcomes[0].details
        #expect(!run.outcomes[0].passed)
        #expect(details.count == 5)
        #expect(details[0] == "policy.rules:7: unknown event `speding`; did you mean `speeding`?")
        #expect(details[1].contains("`bob` had no event in this test"))
        #expect(details[2] == "policy.rules:10: the policy has no flag `debter`; did you mean `debtor`?")
        #expect(details[3].contains("the policy has no privilege `flying`"))
        #expect(details[4] == #"policy.rules:12: no rule of the policy contains "jaywalking""#)
    }

    @Test("events the engine rejects fail the test with the reason")
    func rejectedEvent() {
        let run = Self.run("""
        test "out of order" {
          2026-01-02 alice: speeding
          2026-01-01 alice: speeding
          expect alice score == 95
        }
        """)
        #expect(run.outcomes[0].details == ["policy.rules:8: this event was rejected: time 2026-01-01T00:00:00Z is earlier than this citizen's previous event at 2026-01-02T00:00:00Z"])
    }

    @Test("a field given twice in one event literal fails the test, whether or not the policy reads it")
    func fieldTwice() {
        let run = Self.run("""
        test "twice" {
          2026-01-02 alice: speeding { speed: 90, speed: 95 }
          2026-01-03 bob: speeding { note: "a", note: "b" }
          expect alice score == 95
        }
        """)
        #expect(!run.outcomes[0].passed)
        #expect(run.outcomes[0].details.filter { $0.contains("is given twice") }.count == 2, "\(run.outcomes[0].details)")
    }

    @Test("`at` may not look back before the test's last event")
    func atInThePast() {
        let run = Self.run("""
        test "back in time" {
          2026-02-01 alice: speeding
          at 2026-01-01 expect alice score == 95
        }
        """)
        #expect(run.outcomes[0].details.first?.contains("is before this test's last event") == true)
    }

    @Test("coverage counts event rules that fired and state rules that held")
    func coverage() {
        let run = Self.run("""
        test "one speeding" {
          2026-01-01 alice: speeding
          expect alice score == 95
        }
        """)
        #expect(run.rules.count == 4)
        #expect(run.covered.map(\.line).sorted() == [2])
        let more = Self.run("""
        test "three" {
          2026-01-01 alice: speeding; 2026-01-02 alice: speeding; 2026-01-03 alice: speeding
          expect alice score == 85
        }
        """)
        #expect(more.covered.map(\.line).sorted() == [2, 3, 5])
    }

    @Test("a `while` rule that starts holding through time alone counts as covered")
    func coverageThroughTime() {
        let result = PolicyCompiler.compile("""
        a → flag recent for 10 days
        while not recent → grant quiet
        test "time alone" {
          2026-01-01 alice: a
          expect alice not granted quiet
          at 2026-02-01 expect alice granted quiet
        }
        """)
        let run = PolicyTests.run(result, testsIn: 0)
        #expect(run.outcomes[0].passed, "\(run.outcomes[0].details)")
        #expect(run.covered.map(\.line).sorted() == [1, 2])
    }

    @Test("a test without an expectation fails: it could not fail otherwise")
    func noExpectation() {
        let run = Self.run("""
        test "nothing expected" {
          2026-01-01 alice: speeding
        }
        """)
        #expect(!run.outcomes[0].passed)
        #expect(run.outcomes[0].details == ["policy.rules:6: this test has no `expect`, so it cannot fail; say what the events should lead to"])
    }

    @Test("two tests of one name: the second fails and points at the first")
    func duplicateNames() {
        let run = Self.run("""
        test "same" {
          2026-01-01 alice: speeding
          expect alice score == 95
        }
        test "same" {
          2026-01-01 bob: speeding
          expect bob score == 95
        }
        """)
        #expect(run.outcomes.map(\.passed) == [true, false])
        #expect(run.outcomes[1].details == [#"policy.rules:10: another test is named "same" (policy.rules:6); give each test its own name"#])
    }

    @Test("a policy that does not compile fails its tests")
    func brokenPolicy() {
        let result = PolicyCompiler.compile("speeding → 5\ntest \"t\" {\n  2026-01-01 a: speeding\n}\n")
        let run = PolicyTests.run(result, testsIn: 0)
        #expect(run.outcomes.count == 1)
        #expect(!run.outcomes[0].passed)
    }

    static let parseTable: [(String, String)] = [
        ("test \"t\" {\n  2026-01-05T08:00:00Z alice: unpaid debt { amount: 20_000, note: \"x\", ok: false, d: -1 }\n}",
         #"(test "t" (event 2026-01-05T08:00:00Z alice unpaid_debt (amount 20000) (note "x") (ok false) (d -1)))"#),
        ("test \"t\" { 2026-01-05 \"car-17\": trip }",
         #"(test "t" (event 2026-01-05T00:00:00Z car-17 trip))"#),
        ("test \"t\" {\n expect alice score >= 10\n expect alice score between 1 and 2\n}",
         #"(test "t" (expect alice score >= 10) (expect alice score between 1 2))"#),
        ("test \"t\" {\n at 2026-06-01 expect alice not denied fast lane\n expect alice flags [low trust, debtor]\n}",
         #"(test "t" (expect at 2026-06-01T00:00:00Z alice not deny fast_lane) (expect alice flag [low_trust debtor]))"#),
        ("test \"t\" {\n expect not fired \"3 speeding\"\n expect fired \"x\"\n}",
         #"(test "t" (expect not fired "3 speeding") (expect fired "x"))"#),
        // A bad step is reported and the block goes on.
        ("test \"t\" {\n expect alice bogus\n expect alice granted x\n}\na → +1",
         "(test \"t\" (expect alice grant x))\n(rule a (+1))\nerror E0201"),
        ("test \"t\" {\n 2026-02-30 a: x\n}", "(test \"t\" (event 1970-01-01T00:00:00Z a x))\nerror E0106"),
    ]

    @Test(arguments: parseTable)
    func parse(_ text: String, _ expected: String) {
        #expect(ParserTests.dump(text) == expected)
    }

    @Test("the test example in docs/LANGUAGE.md passes against rules/citizen.rules")
    func docsExample() throws {
        let docs = try String(contentsOf: Repo.root.appendingPathComponent("docs/LANGUAGE.md"), encoding: .utf8)
        let start = try #require(docs.range(of: "```\nuse \"citizen.rules\"\n"))
        let end = try #require(docs.range(of: "```", range: start.upperBound..<docs.endIndex))
        let example = String(docs[docs.index(start.lowerBound, offsetBy: 4)..<end.lowerBound])
        let rules = Repo.root.appendingPathComponent("rules")
        let loader = PolicyLoader(read: { name in
            if name == "example.rules" { return .success(Array(example.utf8)) }
            guard let data = FileManager.default.contents(atPath: rules.appendingPathComponent(name).path) else {
                return .failure(PolicyLoader.ReadError("missing"))
            }
            return .success([UInt8](data))
        })
        let result = try PolicyCompiler.compile(paths: ["example.rules"], loader: loader).get()
        let run = PolicyTests.run(result, testsIn: result.entries[0])
        #expect(run.outcomes.count == 1)
        let passed = run.outcomes.allSatisfy { $0.passed }
        #expect(passed, "\(run.outcomes.map(\.details))")
    }
}
