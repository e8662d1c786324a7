import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

/// The REPL session without a terminal: inputs in, replies out.
@Suite("REPL session")
struct ReplSessionTests {
    final class Files: @unchecked Sendable {
        var written: [String: String] = [:]
    }

    static func session(_ files: [String: String] = [:], written: Files = Files()) -> ReplSession {
        let loader = PolicyLoader(read: { path in
            if let text = files[path] { return .success(Array(text.utf8)) }
            let url = Repo.root.appendingPathComponent(path)
            guard let data = FileManager.default.contents(atPath: url.path) else {
                return .failure(PolicyLoader.ReadError("No such file or directory"))
            }
            return .success([UInt8](data))
        })
        return ReplSession(loader: loader, write: { path, bytes in
            written.written[path] = String(decoding: bytes, as: UTF8.self)
            return nil
        })
    }

    @Test("`use \"file\"` typed at the prompt loads the file, like :load")
    func typedUse() {
        let s = Self.session(["mine.rules": "a → +1\n"])
        let reply = s.handle(#"use "mine.rules""#)
        #expect(reply.out == "loaded 1 file: 1 statements\n", "\(reply.err)")
        #expect(s.handle("2026-01-01 x: a").err == "")
        #expect(s.handle(":state x").out.contains("score 1"))
    }

    @Test("`3 × …` at the prompt applies the event three times")
    func repeatedEventAtThePrompt() {
        let s = Self.session()
        _ = s.handle("3 littering within 30 days → deny parks for 90 days")
        #expect(s.handle("2 × 2026-01-05 alice: littering").err == "")
        #expect(!s.handle(":state alice").out.contains("denied [parks]"))
        #expect(s.handle("1 x 2026-01-05 alice: littering").err == "")
        #expect(s.handle(":state alice").out.contains("denied [parks]"))
    }

    @Test(":retract takes an event back at the clock, and stays taken back when the rules change")
    func retract() {
        let session = ReplSession(loader: PolicyLoader(read: { _ in .failure(PolicyLoader.ReadError("none")) }), write: { _, _ in nil })
        _ = session.handle("speeding → -5")
        _ = session.handle(#"2026-03-01 dave: speeding { id: "t-1" }"#)
        _ = session.handle(#"2026-03-02 dave: speeding { id: "t-2" }"#)
        let reply = session.handle(":retract dave t-2 court ruling 55/2026")
        #expect(reply.out.contains("score -10 → -5 after event t-2 was retracted: court ruling 55/2026"), "\(reply)")
        #expect(session.handle(":retract dave t-2").err == #"this retraction was rejected: cannot retract "t-2": already retracted on line 1"# + "\n")
        #expect(session.handle(":retract dave").err == "usage: :retract PERSON ID [REASON]\n")
        // A new rule replays the events, the retraction among them.
        _ = session.handle("speeding → -1")
        #expect(session.handle(":state dave").out == "dave  score -6  flags []  denied []  granted []\n")
    }

    @Test("a command on its own line ends an unfinished statement instead of being swallowed")
    func commandEndsOpenInput() {
        #expect(!ReplSession.needsMore("test \"t\" {\n:quit"))
        #expect(ReplSession.needsMore("test \"t\" {\n  2026-01-01 x: a"))
        let s = Self.session()
        let reply = s.handle("test \"t\" {\n  2026-01-01 x: a\n:quit")
        #expect(reply.quit)
        #expect(reply.err == "dropped the unfinished input before :quit\n")
    }

    @Test("a typed test block runs at once against the session's rules")
    func typedTest() {
        let s = Self.session()
        _ = s.handle("a → +2")
        let pass = s.handle("test \"two\" {\n  2026-01-01 x: a\n  expect x score == 2\n}")
        #expect(pass.out == "ok    two\n", "\(pass.err)")
        let fail = s.handle("test \"three\" {\n  2026-01-01 x: a\n  expect x score == 3\n}")
        #expect(fail.out.hasPrefix("FAIL  three\n"))
        #expect(fail.out.contains("expected: score == 3"))
    }

    @Test(":save keeps comments, the `# rules: allow` lines among them")
    func saveKeepsComments() throws {
        let files = Files()
        let s = Self.session(written: files)
        _ = s.handle("# why this rule exists\na → flag f for 1 day  # trailing\n# rules: allow W0509\n2 a within 7 days → flag f for 1 day")
        #expect(s.handle(":save out.rules").out == "saved 2 statements to out.rules\n")
        let saved = try #require(files.written["out.rules"])
        #expect(saved == "# Saved from `rules repl`.\n\n# why this rule exists\na → flag f for 1 day  # trailing\n# rules: allow W0509\n2 a within 7 days → flag f for 1 day\n")
    }

    @Test("a new user's session: load, a typo with its caret, the fix, events, expiry, explain, save")
    func walkthrough() throws {
        let files = Files()
        let s = Self.session(written: files)
        #expect(s.load(["rules/citizen.rules"]).out == "loaded 1 file: 34 statements\n")

        let typo = s.handle("speding where speed > 200 → -100")
        #expect(typo.out == "")
        #expect(typo.err == """
        <typed 1>:1:1: error: unknown event `speding` [E0301]
          |
        1 | speding where speed > 200 → -100
          | ^^^^^^^
          = help: did you mean `speeding`?
        nothing was added

        """)
        #expect(s.handle("speeding where speed > 200 → -100").out == "added 1 statement (35 in all)\n")

        let first = s.handle("2026-01-05T08:00:00Z alice: speeding { speed: 95, limit: 60 }")
        #expect(first.err == "")
        #expect(first.out == """
          fired rules/citizen.rules:34  speeding → -5   (-5)
          fired rules/citizen.rules:35  speeding where speed > limit + reckless margin → -20   (-20)
        alice  score 975  flags []  denied []  granted []

        """)
        _ = s.handle("2026-01-12 alice: speeding { speed: 70, limit: 60 }")
        let third = s.handle("2026-01-28 alice: speeding { speed: 70, limit: 60 }")
        #expect(third.out.hasSuffix("alice  score 965  flags []  denied [driving]  granted []\n"))

        let later = s.handle(":advance 90 days")
        #expect(later.out == "clock: 2026-04-28T00:00:00Z\nalice  score 965  flags []  denied []  granted []\n")

        let why = s.handle(":explain alice").out
        #expect(why.hasPrefix("alice as of 2026-04-28T00:00:00Z: score 965\n  flags: none\n  denied: none\n"))
        #expect(why.contains("fired rules/citizen.rules:36  3 speeding within 30 days → deny driving for 90 days"))

        #expect(s.handle(":save out.rules").out == "saved 35 statements to out.rules\n")
        let saved = try #require(files.written["out.rules"])
        let check = PolicyCompiler.compile(saved, name: "out.rules")
        #expect(check.errors.isEmpty)
        #expect(saved.contains("speeding where speed > 200 → -100\n"))
    }

    @Test("explain names the rule and events behind each sanction, with its end")
    func explain() {
        let s = Self.session()
        _ = s.load(["rules/citizen.rules"])
        _ = s.handle("2026-03-01 erin: unpaid debt { amount: 25_000 }")
        let lines = s.handle(":explain erin").out
        #expect(lines.contains("""
            foreign_travel
              set by rules/citizen.rules:46  unpaid debt where amount >= big debt → deny foreign travel for 180 days
                on event 1  2026-03-01 erin: unpaid debt { amount: 25_000 }
              in force since 2026-03-01T00:00:00Z, until 2026-08-28T00:00:00Z
        """))
        #expect(lines.contains("in force since 2026-03-01T00:00:00Z, until lifted"))
    }

    @Test("rules can be dropped, and the events are replayed without them")
    func drop() {
        let s = Self.session()
        _ = s.handle("a → +1")
        _ = s.handle("a → +10")
        _ = s.handle("2026-01-01 x: a")
        #expect(s.handle(":state x").out == "x  score 11  flags []  denied []  granted []\n")
        #expect(s.handle(":rules").out == "  1  <typed 1>:1  a → +1\n  2  <typed 2>:1  a → +10\n")
        #expect(s.handle(":drop 2").out == "dropped 2: a → +10\n")
        #expect(s.handle(":state x").out == "x  score 1  flags []  denied []  granted []\n")
        #expect(s.handle(":drop 9").err.contains("usage: :drop N, with N from 1 to 1"))
    }

    @Test("a rule added later applies to the events already given")
    func replayOnAdd() {
        let s = Self.session()
        _ = s.handle("2026-01-01 x: a")
        #expect(s.handle(":state x").out == "x  score 0  flags []  denied []  granted []\n")
        _ = s.handle("a → flag seen for 1 day")
        #expect(s.handle(":state").out == "x  score 0  flags [seen]  denied []  granted []\n")
        #expect(s.handle(":at 2026-01-02").out.contains("x  score 0  flags []"))
        #expect(s.handle("2026-01-01T12:00:00Z y: a").err.contains("the clock is at 2026-01-02T00:00:00Z"))
        #expect(s.handle(":at 2025-12-31").err.contains("cannot go back"))
        #expect(s.handle(":reset").out == "events and clock cleared; 1 statements kept\n")
        #expect(s.handle(":state").out == "no events yet\n")
    }

    @Test("errors leave nothing half-added; warnings are shown but the rule is added")
    func atomicAdd() {
        let s = Self.session()
        let bad = s.handle("a → +1; b → 5")
        #expect(bad.err.contains("[E0204]"))
        #expect(bad.err.hasSuffix("nothing was added\n"))
        #expect(s.handle(":rules").out == "no rules yet\n")
        let warned = s.handle("a where 1 > 2 → +1")
        #expect(warned.err.contains("[W0504]"))
        #expect(warned.out == "added 1 statement (1 in all)\n")
    }

    @Test("commands: help, unknown ones, usage")
    func commands() {
        let s = Self.session()
        #expect(s.handle(":help").out.contains(":advance DURATION"))
        #expect(s.handle(":stat").err == "unknown command :stat (did you mean :state?); :help lists them\n")
        #expect(s.handle(":explain").err == "usage: :explain PERSON\n")
        #expect(s.handle(":advance soon").err.contains("usage: :advance DURATION"))
        #expect(s.handle(":load nope.rules").err == "cannot read nope.rules: No such file or directory\n")
        #expect(s.handle(":quit").quit)
    }

    static let openStatements: [(String, Bool)] = [
        ("speeding →", true), ("speeding ->", true), ("a → -1,", true), ("while a and", true),
        ("a where x >", true), ("a where x in [1,", true), ("a → +min(1,", true),
        ("a → -1", false), ("2026-01-01 x: a { n: 1 }", false), ("2026-01-01 x: a { n: 1,", true),
        (":state", false), ("", false),
    ]

    @Test(arguments: openStatements)
    func continuation(_ text: String, _ open: Bool) {
        #expect(ReplSession.needsMore(text) == open)
    }

    @Test("completion offers commands, people and the policy's names")
    func completion() {
        let s = Self.session()
        _ = s.load(["rules/citizen.rules"])
        _ = s.handle("2026-01-01 alice: jaywalking")
        #expect(s.completions(for: ":st", in: ":st") == [":state"])
        #expect(s.completions(for: "al", in: ":explain al") == ["alice"])
        #expect(s.completions(for: "unp", in: "2026-01-02 bob: unp") == ["unpaid_debt"])
        #expect(s.completions(for: "low", in: "while low") == ["low_trust"])
    }
}
