import Foundation
import Testing
@testable import RulesCore

/// No input is silently lost, and the record says what happened: what
/// issue 13 found passing without a word.
@Suite("Nothing passes in silence")
struct SilencesTests {
    @Test("events of a type no rule names are applied and counted by type in the summary")
    func unknownTypes() throws {
        let engine = Engine(program: try compileOrFail("speeding → -5\n"))
        let stream = [#"{"citizen":"a","type":"speding","time":"2026-01-01"}"#,
                      #"{"citizen":"a","type":"parking","time":"2026-01-02"}"#,
                      #"{"citizen":"b","type":"speding","time":"2026-01-02"}"#,
                      #"{"citizen":"b","type":"speeding","time":"2026-01-03"}"#].joined(separator: "\n")
        let (summary, _) = EventStream.run(engine, text: stream)
        #expect(summary.applied == 4)
        #expect(summary.unknownTypes == ["speding": 2, "parking": 1])
        #expect(summary.unknownTypesNote == "; 3 of a type no rule names: speding (2), parking (1)")
        let library = RulesEngine(policy: try Policy.compile("speeding → -5\n"))
        #expect(library.apply(ndjson: stream).summary.unknownTypes == ["speding": 2, "parking": 1])
        let dir = try CLITests.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let policy = dir.appendingPathComponent("p.rules").path
        try "speeding → -5\n".write(toFile: policy, atomically: true, encoding: .utf8)
        let r = try CLITests.rules(["run", policy], stdin: stream + "\n")
        #expect(r.stderr.contains("rules: 4 events read: 4 applied, 0 rejected; 3 of a type no rule names: speding (2), parking (1)"))
        let two = try CLITests.rules(["run", policy, "--jobs", "2"], stdin: stream + "\n")
        #expect(two.stderr.contains("; 3 of a type no rule names: speding (2), parking (1)"))
    }

    @Test("a field key with spaces is a name, as a type is")
    func fieldKeysWithSpaces() throws {
        let (out, rejections) = try runPolicy("speeding where speed_limit < 50 → -5\n",
                                              #"{"citizen":"a","type":"speeding","time":"2026-01-01","speed  limit":30}"#)
        #expect(rejections.isEmpty)
        #expect(out == #"{"citizen":"a","score":-5,"flags":[],"denied":[],"granted":[]}"# + "\n")
    }

    @Test("sum() and count(… where …) say which events they left out, and why")
    func aggregateNotes() throws {
        let engine = Engine(program: try compileOrFail("""
            while sum(purchase.amount within 30 days) > 100 → flag big spender
            while count(purchase where amount > 10 within 30 days) > 1 → flag frequent

            """))
        let stream = [#"{"citizen":"a","type":"purchase","time":"2026-01-01","amount":500}"#,
                      #"{"citizen":"a","type":"purchase","time":"2026-01-02"}"#,
                      #"{"citizen":"a","type":"purchase","time":"2026-01-03","amount":"lots"}"#].joined(separator: "\n")
        _ = EventStream.run(engine, text: stream)
        #expect(engine.evaluationNotes() == [
            "`sum(purchase.amount within 30 days)` at policy.rules:1 left out 1 event: the event has no field `amount` (first on line 2 of the stream)",
            "`sum(purchase.amount within 30 days)` at policy.rules:1 left out 1 event: a value had the wrong type (first on line 3 of the stream)",
            "`count(purchase where amount > 10 within 30 days)` at policy.rules:2 left out 1 event: the event has no field `amount` (first on line 2 of the stream)",
            "`count(purchase where amount > 10 within 30 days)` at policy.rules:2 left out 1 event: a value had the wrong type (first on line 3 of the stream)",
        ])
    }

    @Test("the trail records a lift only when something was in force, for clear, allow and revoke alike")
    func noOpLifts() throws {
        let events = [#"{"citizen":"x","type":"a","time":"2026-01-01"}"#, #"{"citizen":"x","type":"b","time":"2026-01-02"}"#,
                      #"{"citizen":"x","type":"a","time":"2026-01-03"}"#].joined(separator: "\n")
        let (_, trace, _) = try TraceTests.run("a → clear f, allow p, revoke q\nb → flag f, deny p, grant q\n", events)
        let lifts = trace.split(separator: "\n").filter { $0.contains(#""effect":"clear""#) || $0.contains(#""effect":"allow""#) || $0.contains(#""effect":"revoke""#) }
        #expect(lifts.count == 3)
        #expect(lifts.allSatisfy { $0.contains(#""line":3"#) })
    }

    @Test("a 1000-year sanction: the trail and explain give the same end, not `until lifted`")
    func longSanctionExplained() throws {
        let policy = "c → deny p for 1000 years\n"
        let events = #"{"citizen":"x","type":"c","time":"2026-01-04"}"#
        let (_, trace, _) = try TraceTests.run(policy, events)
        #expect(trace.contains(#""until":"3025-05-07T00:00:00Z""#))
        let engine = Engine(program: try compileOrFail(policy))
        let watch = PersonWatch(person: "x", engine: engine)
        _ = EventStream.run(engine, reader: LineReader(bytes: Array(events.utf8)), asOf: nil, watch: watch) { _, _ in }
        let lines = try #require(Explanation.account(of: "x", engine: engine, timeline: watch.timeline, at: engine.clock!))
        #expect(lines.contains { $0.contains("until 3025-05-07T00:00:00Z") })
        #expect(!lines.contains { $0.contains("until lifted") })
    }

    @Test("an end past 9999 is written with an expanded year")
    func expandedYear() {
        let t = Timestamp.adding(Timestamp.parse("9500-01-01")!, 1000 * 31_536_000 * Timestamp.perSecond)
        #expect(Timestamp.format(t) == "+10499-05-03T00:00:00Z")
        #expect(Timestamp.parse("+10499-05-03T00:00:00Z") == nil)
    }
}
