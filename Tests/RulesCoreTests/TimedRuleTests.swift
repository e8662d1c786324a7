import Foundation
@testable import RulesCore
import Testing

/// Timed rules (docs/LANGUAGE.md, "Timed rules"): the syntax's edges, and
/// the promise that a deadline fires by its person's own timeline, so that
/// reading the state early, resuming from a checkpoint or the trail's end
/// never changes an answer.
@Suite("Timed rules")
struct TimedRuleTests {
    static let fines = """
        30 days after fine issued unless fine paid → deny registration
        fine paid → +1
        """

    static func report(_ engine: Engine, asOf: Int64? = nil) -> String {
        var bytes: [UInt8] = []
        engine.writeReport(asOf: asOf) { bytes += $0 }
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test("`after`, `unless` and `without` are words of their own only in a timed rule's head")
    func contextualWords() throws {
        let tokens = Lexer.tokenize(SourceFile(name: "t.rules", text: """
            30 days after fine issued unless fine paid → flag paid after deadline
            late after curfew → flag unless noted
            every 1 week without strike → +1
            """), file: 0).tokens.map(\.kind)
        let names = tokens.compactMap { if case .name(let n) = $0 { return n }; return nil }
        #expect(names == ["after", "fine_issued", "unless", "fine_paid", "paid_after_deadline",
                          "late_after_curfew", "unless_noted", "every", "without", "strike"])
        // A rule on an event named with those words still parses as one.
        let program = try compileOrFail("late after curfew → -5\nwhile score < 0 → flag paid after deadline")
        #expect(program.policy.events.map(\.name) == ["late_after_curfew"])
        #expect(!program.hasTimers)
    }

    @Test("a deadline that another person's event passes fires only when read: the person's own earlier line still comes first")
    func deadlinesFollowTheirPerson() throws {
        let program = try compileOrFail(Self.fines)
        let engine = Engine(program: program)
        _ = EventStream.run(engine, text: """
            {"citizen":"p","type":"fine issued","time":"2026-01-01"}
            {"citizen":"q","type":"other","time":"2026-03-01"}

            """, asOf: nil)
        // As of the clock (Mar 1), p's deadline (Jan 31) has passed.
        #expect(Self.report(engine).contains(#"{"citizen":"p","score":0,"flags":[],"denied":["registration"],"granted":[]}"#))
        // p's own next line is dated Jan 20: paid before the deadline.
        _ = EventStream.run(engine, text: #"{"citizen":"p","type":"fine paid","time":"2026-01-20"}"# + "\n", asOf: nil)
        #expect(Self.report(engine).contains(#"{"citizen":"p","score":1,"flags":[],"denied":[],"granted":[]}"#))
    }

    @Test("a checkpoint taken between an arming event and its deadline resumes to the answer of one run")
    func checkpointKeepsDeadlines() throws {
        let policy = """
            score starts at 100
            30 days after fine issued unless fine paid → deny registration, -10
            every 7 days without infraction → +1
            infraction → -5
            """
        let lines = [
            #"{"citizen":"p","type":"fine issued","time":"2026-01-01"}"#,
            #"{"citizen":"q","type":"infraction","time":"2026-01-03"}"#,
            #"{"citizen":"r","type":"fine issued","time":"2026-01-05"}"#,
            #"{"citizen":"q","type":"other","time":"2026-02-20"}"#,
            #"{"citizen":"r","type":"fine paid","time":"2026-01-30"}"#,
            #"{"citizen":"p","type":"infraction","time":"2026-02-10"}"#,
        ]
        let program = try compileOrFail(policy)
        let whole = Engine(program: program)
        _ = EventStream.run(whole, text: lines.map { $0 + "\n" }.joined(), asOf: nil)
        for cut in 1..<lines.count {
            let first = Engine(program: program)
            _ = EventStream.run(first, text: lines[..<cut].map { $0 + "\n" }.joined(), asOf: nil)
            _ = Self.report(first)  // reading fires nothing for good
            let bytes = Checkpoint.encode([first], lines: cut)
            let resumed = Engine(program: try compileOrFail(policy))
            guard case .success = Checkpoint.restore(bytes, into: [resumed]) else { Issue.record("restore failed at \(cut)"); continue }
            _ = EventStream.run(resumed, text: lines[cut...].map { $0 + "\n" }.joined(), asOf: nil)
            #expect(Self.report(resumed) == Self.report(whole), "cut after line \(cut)")
        }
    }

    @Test("a deadline moved by a rewritten rule is dropped with a note; a rule written the same keeps it")
    func policyChangeKeepsDeadlinesByText() throws {
        let old = try compileOrFail("30 days after fine issued → deny registration\n10 days after warning → flag reviewed")
        let engine = Engine(program: old)
        _ = EventStream.run(engine, text: #"{"citizen":"p","type":"fine issued","time":"2026-01-01"}"# + "\n"
                            + #"{"citizen":"p","type":"warning","time":"2026-01-01"}"# + "\n", asOf: nil)
        let bytes = Checkpoint.encode([engine], lines: 2)
        let new = Engine(program: try compileOrFail("30 days after fine issued → deny registration\n20 days after warning → flag reviewed"))
        guard case .success(let info) = Checkpoint.restore(bytes, into: [new]) else { Issue.record("restore failed"); return }
        #expect(info.notes.contains { $0.contains("10 days after warning") && $0.contains("dropped") }, "\(info.notes)")
        _ = EventStream.run(new, text: #"{"citizen":"z","type":"other","time":"2026-03-01"}"# + "\n", asOf: nil)
        #expect(Self.report(new).contains(#"{"citizen":"p","score":0,"flags":[],"denied":["registration"],"granted":[]}"#))
    }

    @Test("`rules run --state` saves before the deadlines the trail records at the end: a resumed run gives one run's report")
    func stateSavedBeforeFinalFirings() throws {
        let dir = try CLITests.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let policy = dir.appendingPathComponent("p.rules").path
        try Self.fines.write(toFile: policy, atomically: true, encoding: .utf8)
        let first = #"{"citizen":"p","type":"fine issued","time":"2026-01-01"}"# + "\n" + #"{"citizen":"q","type":"other","time":"2026-03-01"}"# + "\n"
        let second = #"{"citizen":"p","type":"fine paid","time":"2026-01-20"}"# + "\n"
        let state = dir.appendingPathComponent("state").path, trace = dir.appendingPathComponent("trace").path
        let a = try CLITests.rules(["run", policy, "--state", state, "--trace", trace], stdin: first)
        #expect(a.status == 0, "\(a.stderr)")
        #expect(a.stdout.contains(#""citizen":"p","score":0,"flags":[],"denied":["registration"]"#))
        let records = try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n")
        #expect(records.contains { $0.contains(#""line":null,"time":"2026-01-31T00:00:00Z","citizen":"p""#) && $0.contains(#""effect":"deny""#) })
        let b = try CLITests.rules(["run", policy, "--resume", state], stdin: second)
        let whole = try CLITests.rules(["run", policy], stdin: first + second)
        #expect(b.status == 0 && b.stdout == whole.stdout, "\(b.stdout)\n\(whole.stdout)\n\(b.stderr)")
        #expect(whole.stdout.contains(#"{"citizen":"p","score":1,"flags":[],"denied":[],"granted":[]}"#))
    }

    @Test("`explain` lists a firing under the person's next event; `--why-not` says when an armed rule fires, or that nothing armed it")
    func explained() throws {
        let dir = try CLITests.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let policy = dir.appendingPathComponent("p.rules").path, events = dir.appendingPathComponent("e.ndjson").path
        try "30 days after fine issued unless fine paid → deny registration\nfine issued → -1\n".write(toFile: policy, atomically: true, encoding: .utf8)
        try """
            {"citizen":"d","type":"fine issued","time":"2026-01-20"}
            {"citizen":"b","type":"fine issued","time":"2026-01-01"}
            {"citizen":"b","type":"fine paid","time":"2026-01-10"}
            {"citizen":"a","type":"fine issued","time":"2026-01-01"}
            {"citizen":"a","type":"fine issued","time":"2026-02-04"}
            {"citizen":"z","type":"x","time":"2026-02-05"}

            """.write(toFile: events, atomically: true, encoding: .utf8)
        let d = try CLITests.rules(["explain", policy, "--events", events, "--person", "d", "--why-not", "registration"])
        #expect(d.stdout.contains("armed: fires at 2026-02-19T00:00:00Z unless `fine paid` comes first"), "\(d.stdout)")
        let b = try CLITests.rules(["explain", policy, "--events", events, "--person", "b", "--why-not", "registration"])
        #expect(b.stdout.contains("not armed: no `fine issued` armed it for b, or `fine paid` disarmed it"), "\(b.stdout)")
        let a = try CLITests.rules(["explain", policy, "--events", events, "--person", "a"])
        #expect(a.stdout.contains("as time passed, at 2026-01-31T00:00:00Z:"), "\(a.stdout)")
        #expect(a.stdout.contains("on its deadline, 2026-01-31T00:00:00Z (time alone)"), "\(a.stdout)")
        #expect(a.stdout.contains("30 days after fine issued unless fine paid → deny registration"), "\(a.stdout)")
    }

    @Test("periods of a constant `every` rule skipped at once give what firing each gives: with bounds, a set score, another rule between")
    func skippedPeriodsAgree() throws {
        let policies = [
            "score starts at 0, min -50, max 900\nevery 1 hour → +1\nevery 5 days → -7\nevery 3 days without ping → flag quiet for 1 day",
            "score starts at 10, min 0\nevery 2 hours → -1, deny x for 3 hours\n100 days after ping → set score to 500, clear quiet\nevery 1 day → flag quiet",
            "every 6 hours → set score to 3, +2, set level to 4\nattribute level = 0\nevery 1 week → -1\nping → +100",
        ]
        let stream = """
            {"citizen":"p","type":"ping","time":"2026-01-01"}
            {"citizen":"q","type":"ping","time":"2026-01-01T05:00:00Z"}
            {"citizen":"p","type":"ping","time":"2026-02-11T07:30:00Z"}
            {"citizen":"r","type":"other","time":"2026-06-30"}
            {"citizen":"q","type":"ping","time":"2026-12-31T23:00:00Z"}

            """
        for policy in policies {
            let program = try compileOrFail(policy)
            // The trail listens to every firing, so nothing is skipped.
            let stepwise = Engine(program: program), skipping = Engine(program: program)
            stepwise.enableTrace(write: { _ in })
            _ = EventStream.run(stepwise, text: stream, asOf: nil)
            _ = EventStream.run(skipping, text: stream, asOf: nil)
            #expect(Self.report(skipping) == Self.report(stepwise), "\(policy)")
            stepwise.finishTrace()
            #expect(Self.report(skipping) == Self.report(stepwise), "\(policy)")
        }
        // Eight thousand years of hours, at once.
        let (out, _) = try runPolicy("every 1 hour → +1", """
            {"citizen":"p","type":"start","time":"2026-01-01"}
            {"citizen":"z","type":"start","time":"9999-12-31T23:59:59Z"}
            """)
        let hours = (Timestamp.parse("9999-12-31T23:59:59Z")! - Timestamp.parse("2026-01-01")!) / (3600 * Timestamp.perSecond)
        #expect(out.hasPrefix(#"{"citizen":"p","score":\#(hours),"#), "\(out)")
    }

    @Test("an explanation in the middle of a stream fires nothing for good: the REPL's `:explain`, then the person's own earlier line")
    func explainingCommitsNothing() throws {
        let dir = try CLITests.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let policy = dir.appendingPathComponent("p.rules").path
        try Self.fines.write(toFile: policy, atomically: true, encoding: .utf8)
        let r = try CLITests.rules(["repl", policy], stdin: """
            2026-01-01 dave: fine issued
            2026-03-01 erin: fine issued
            :explain dave
            2026-01-15 dave: fine paid
            :state dave

            """)
        // As of Mar 1 dave is denied, set by the timed rule at its deadline…
        #expect(r.stdout.contains("on its deadline, 2026-01-31T00:00:00Z (time alone)"), "\(r.stdout)")
        // …but he paid on Jan 15, before it: `rules run` says so too.
        #expect(r.stdout.hasSuffix("dave  score 1  flags []  denied []  granted []\n"), "\(r.stdout)")
    }

    @Test("the limits at their edges: a period of 3599 s is refused and 3600 s taken; a delay of 1000 years taken, a second more refused, zero refused")
    func limitsAtTheirEdges() {
        func codes(_ text: String) -> [String] { PolicyCompiler.compile(text).errors.map(\.code.rawValue) }
        #expect(codes("every 3599 seconds → +1") == ["E0410"])
        #expect(codes("every 3600 seconds → +1").isEmpty)
        #expect(codes("every 1 hour without ping → +1").isEmpty)
        #expect(codes("1000 years after start → +1").isEmpty)
        #expect(codes("31536000001 seconds after start → +1") == ["E0410"])
        #expect(codes("0 days after start → +1") == ["E0410"])
    }

    @Test("at the edge of time: an hourly rule's next period past 9999 never fires; a 1000-year delay fires at its exact microsecond")
    func edgesOfTime() throws {
        let (out, _) = try runPolicy("every 1 hour → +1", """
            {"citizen":"p","type":"start","time":"9999-12-31T22:30:00Z"}
            {"citizen":"p","type":"other","time":"9999-12-31T23:59:59.999999Z"}
            """)
        // A firing at 23:30; the next would be at 00:30 of the year 10000.
        #expect(out == #"{"citizen":"p","score":1,"flags":[],"denied":[],"granted":[]}"# + "\n")
        // 1000 years of 365 days after 2026-01-01 is 3025-05-04.
        let stream = #"{"citizen":"q","type":"start","time":"2026-01-01"}"# + "\n"
        let (before, _) = try runPolicy("1000 years after start → flag millennium", stream, asOf: "3025-05-03T23:59:59.999999Z")
        let (at, _) = try runPolicy("1000 years after start → flag millennium", stream, asOf: "3025-05-04")
        #expect(before.contains(#""flags":[]"#))
        #expect(at.contains(#""flags":["millennium"]"#))
    }
}
