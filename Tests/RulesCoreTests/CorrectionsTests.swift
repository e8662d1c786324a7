import Foundation
import Testing
@testable import RulesCore

/// Retractions and late events (docs/LANGUAGE.md, "Corrections"), by the
/// contract's own properties on generated streams: a stream plus
/// retractions gives what the stream without those events gives, as of the
/// same time; events moved later in the file, within the lateness, give what
/// the time-ordered stream gives. Then the edges, each with its reason.
/// (The differential test checks the same against the reference model.)
@Suite("Corrections: retractions and late events")
struct CorrectionsTests {
    static let policy = """
        score starts at 100, min 0, max 130
        let limit = 50
        event speeding { speed: number }
        event debt { amount: number }
        event paid { }
        event volunteer { hours: number }
        speeding → -5
        speeding where speed > limit + 30 → -20, flag reckless for 3 days
        3 speeding within 10 days → deny driving for 20 days
        debt → -10, flag debtor
        debt where amount >= 1000 → deny travel
        paid → +5, clear debtor, allow travel
        volunteer → +min(hours, 8)
        while score < 80 → flag low trust
        while low trust and debtor → deny loans
        while count(speeding within 7 days) >= 2 → flag watched
        while score >= 120 → grant fast lane
        """

    static let program: Program = {
        let result = PolicyCompiler.compile(SourceSet([SourceFile(name: "policy.rules", text: policy)]))
        return result.program!
    }()

    struct Line {
        var person: String
        var time: Int64
        var text: String
    }

    static let day: Int64 = 86_400 * Timestamp.perSecond

    /// A stream in time order, each event with an id `e<k>`; times strictly
    /// increase when `distinct`, else some lines tie.
    static func stream(seed: UInt64, count: Int, distinct: Bool) -> [Line] {
        var rng = SeededRandom(seed: seed)
        var t = Timestamp.parse("2026-01-01")!
        var lines: [Line] = []
        for k in 0..<count {
            if distinct || !rng.chance(15) { t += Int64(1 + rng.below(Int(2 * day / Timestamp.perSecond))) * Timestamp.perSecond }
            let person = rng.pick(["ann", "bob", "cy"])
            let body: String
            switch rng.below(10) {
            case 0...4: body = #""type":"speeding","speed":\#(rng.pick([40, 60, 90, 120]))"#
            case 5: body = #""type":"debt","amount":\#(rng.pick([10, 500, 5000]))"#
            case 6: body = #""type":"paid""#
            case 7: body = #""type":"volunteer","hours":\#(rng.below(12))"#
            default: body = #""type":"parking""#  // a type no rule names
            }
            lines.append(Line(person: person, time: t,
                              text: #"{"citizen":"\#(person)",\#(body),"time":"\#(Timestamp.format(t))","id":"e\#(k)"}"#))
        }
        return lines
    }

    static func run(_ lines: [String], corrections: Corrections? = nil, asOf: Int64? = nil, jobs: Int = 1) -> (report: String, rejections: [Rejection]) {
        let text = lines.map { $0 + "\n" }.joined()
        if jobs > 1 {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("corrections-\(UUID().uuidString)").path
            _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
            defer { try? FileManager.default.removeItem(atPath: path) }
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            var rejections: [Rejection] = []
            guard case .success(let result) = ParallelStream.run(program: program, fd: fd, jobs: jobs, corrections: corrections,
                                                                  onReject: { r, _ in rejections.append(r) }) else { return ("(failed)", []) }
            var bytes: [UInt8] = []
            ParallelStream.writeReport(result, asOf: asOf) { bytes += $0 }
            return (String(decoding: bytes, as: UTF8.self), rejections.sorted { $0.line < $1.line })
        }
        let engine = Engine(program: program)
        if let corrections { engine.enableCorrections(corrections) }
        let (_, rejections) = EventStream.run(engine, text: text, asOf: asOf)
        var bytes: [UInt8] = []
        engine.writeReport(asOf: asOf) { bytes += $0 }
        return (String(decoding: bytes, as: UTF8.self), rejections)
    }

    static func retraction(_ line: Line, id: String, at time: Int64, reason: String? = nil) -> String {
        #"{"citizen":"\#(line.person)","type":"retract","target":"\#(id)","time":"\#(Timestamp.format(time))"\#(reason.map { #","reason":"\#($0)""# } ?? "")}"#
    }

    @Test("a stream plus retractions gives the stream without those events, as of the same time")
    func retractionsAreAsIfNever() {
        let keep = Corrections(retain: 1000 * 365 * Self.day)
        var retractedSome = 0
        for seed in UInt64(1)...150 {
            var rng = SeededRandom(seed: seed * 31)
            let events = Self.stream(seed: seed, count: 20 + rng.below(60), distinct: false)
            let retracted = Set(events.indices.filter { _ in rng.chance(25) })
            // Each retraction somewhere after its event, at the time of the
            // line before it (so it keeps its person's order).
            var lines: [String] = [], pending = retracted.sorted(), clock = events[0].time
            for (k, e) in events.enumerated() {
                lines.append(e.text)
                clock = e.time
                while let first = pending.first, first <= k, rng.chance(40) {
                    lines.append(Self.retraction(events[first], id: "e\(first)", at: clock, reason: "ruling \(first)"))
                    pending.removeFirst()
                }
            }
            for k in pending { lines.append(Self.retraction(events[k], id: "e\(k)", at: clock)) }
            let corrected = Self.run(lines, corrections: keep)
            #expect(corrected.rejections.isEmpty, "seed \(seed): \(corrected.rejections.map(\.reason))")
            let without = events.indices.filter { !retracted.contains($0) }.map { events[$0].text }
            let expected = Self.run(without, asOf: clock).report
            #expect(corrected.report == expected, "seed \(seed)")
            #expect(Self.run(lines, corrections: keep, jobs: 2).report == expected, "seed \(seed), --jobs 2")
            retractedSome += retracted.count
        }
        #expect(retractedSome > 1000)
    }

    @Test("events moved later in the file, within the lateness, give the time-ordered stream's report")
    func lateEventsAreInTimeOrder() {
        let lateness = 3 * Self.day
        var moved = 0
        for seed in UInt64(1)...150 {
            var rng = SeededRandom(seed: seed * 17)
            let events = Self.stream(seed: seed, count: 20 + rng.below(60), distinct: true)
            // Move some lines later, as far as the lateness allows.
            var order = Array(events.indices)
            for k in events.indices.reversed() where rng.chance(20) {
                let from = order.firstIndex(of: k)!
                var to = from
                while to + 1 < order.count && events[order[to + 1]].time - events[k].time <= lateness && rng.chance(70) { to += 1 }
                if to > from { order.remove(at: from); order.insert(k, at: to); moved += 1 }
            }
            // Compacting before every line (every other seed) or not.
            var limits = Corrections(retain: lateness, lateness: lateness)
            if seed % 2 == 0 { limits.sweepFloor = 0 }
            let late = Self.run(order.map { events[$0].text }, corrections: limits)
            #expect(late.rejections.isEmpty, "seed \(seed): \(late.rejections.map(\.reason))")
            #expect(late.report == Self.run(events.map(\.text)).report, "seed \(seed)")
        }
        #expect(moved > 500)
    }

    @Test("the audit trail of corrected streams replays to their report; scripts/replay-trace.py agrees")
    func trailReplays() throws {
        var retracts = 0, lates = 0
        for seed in UInt64(1)...40 {
            var rng = SeededRandom(seed: seed * 7)
            let events = Self.stream(seed: seed, count: 60, distinct: false)
            // Now and then an event a little late: after its person's next.
            var order = Array(events.indices)
            for k in events.indices where rng.chance(15) {
                guard let j = events.indices.first(where: { $0 > k && events[$0].person == events[k].person }),
                      events[j].time - events[k].time <= Self.day else { continue }
                let from = order.firstIndex(of: k)!
                order.remove(at: from)
                order.insert(k, at: order.firstIndex(of: j)! + 1)
            }
            var lines: [String] = []
            var clock = events[0].time
            for (n, k) in order.enumerated() {
                lines.append(events[k].text)
                clock = max(clock, events[k].time)
                if rng.chance(20) {
                    let target = order[rng.below(n + 1)]
                    lines.append(Self.retraction(events[target], id: "e\(target)", at: clock))
                }
            }
            let engine = Engine(program: Self.program)
            var limits = Corrections(retain: 10 * Self.day, lateness: Self.day)
            if seed % 2 == 0 { limits.sweepFloor = 0 }
            engine.enableCorrections(limits)
            var trace: [UInt8] = []
            engine.enableTrace(write: { trace += $0 })
            _ = EventStream.run(engine, text: lines.map { $0 + "\n" }.joined())
            engine.finishTrace()
            var report: [UInt8] = []
            engine.writeReport { report += $0 }
            let text = String(decoding: trace, as: UTF8.self)
            #expect(try TraceReplay.report(text, clock: engine.clock!) == String(decoding: report, as: UTF8.self), "seed \(seed)")
            retracts += text.components(separatedBy: #""effect":"retract""#).count - 1
            lates += text.components(separatedBy: #""effect":"late""#).count - 1
            if seed == 1, FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") {
                let path = FileManager.default.temporaryDirectory.appendingPathComponent("trail-\(UUID().uuidString)").path
                _ = FileManager.default.createFile(atPath: path, contents: Data(trace))
                defer { try? FileManager.default.removeItem(atPath: path) }
                let script = Repo.root.appendingPathComponent("scripts/replay-trace.py").path
                let r = try runProcess(URL(fileURLWithPath: "/usr/bin/python3"), [script, path, Timestamp.format(engine.clock!)])
                #expect(r.stdout == String(decoding: report, as: UTF8.self), "\(r.stderr)")
            }
        }
        #expect(retracts > 100 && lates > 50, "\(retracts) retractions, \(lates) late events")
    }

    @Test("the edges: a retraction exactly --retain after its event reaches it, one second more does not; an event exactly --lateness early is applied in order, one second more is rejected")
    func edges() {
        let day = Self.day
        let retain = """
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-01-01T00:00:00Z","id":"a"}
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-01-01T00:00:01Z","id":"b"}
            {"citizen":"dave","type":"retract","target":"a","time":"2026-01-31T00:00:00Z"}
            {"citizen":"dave","type":"retract","target":"b","time":"2026-01-31T00:00:02Z"}
            """
        #expect(Self.reasons(retain, corrections: Corrections(retain: 30 * day)) == [
            #"4: cannot retract "b": no longer retained (its event at 2026-01-01T00:00:01Z is more than 30 days before the retraction)"#,
        ])
        let late = """
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-01-02T00:00:00Z"}
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-01-01T00:00:00Z"}
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-01-00T23:59:59Z"}
            """.replacingOccurrences(of: "2026-01-00T23:59:59Z", with: "2025-12-31T23:59:59Z")
        #expect(Self.reasons(late, corrections: Corrections(retain: day, lateness: day)) == [
            "3: time 2025-12-31T23:59:59Z is earlier than this citizen's previous event at 2026-01-02T00:00:00Z",
        ])
    }

    @Test("a late event that ties with applied events goes after them")
    func tiesGoAfter() {
        let policy = "a → flag f\nb → clear f\nc → +1\n"
        let result = PolicyCompiler.compile(SourceSet([SourceFile(name: "p.rules", text: policy)]))
        let engine = Engine(program: result.program!)
        engine.enableCorrections(Corrections(retain: Self.day, lateness: Self.day))
        let (summary, rejections) = EventStream.run(engine, text: """
            {"citizen":"p","type":"a","time":"2026-01-01T10:00:00Z"}
            {"citizen":"p","type":"c","time":"2026-01-01T12:00:00Z"}
            {"citizen":"p","type":"b","time":"2026-01-01T10:00:00Z"}
            {"citizen":"q","type":"b","time":"2026-01-01T10:00:00Z"}
            {"citizen":"q","type":"c","time":"2026-01-01T12:00:00Z"}
            {"citizen":"q","type":"a","time":"2026-01-01T10:00:00Z"}

            """)
        #expect(rejections.isEmpty && summary.applied == 6)
        var bytes: [UInt8] = []
        engine.writeReport { bytes += $0 }
        // p: a then the late b (after the tie) clears f; q: b then the late a sets it.
        #expect(String(decoding: bytes, as: UTF8.self) == """
            {"citizen":"p","score":1,"flags":[],"denied":[],"granted":[]}
            {"citizen":"q","score":1,"flags":["f"],"denied":[],"granted":[]}

            """)
    }

    static func reasons(_ text: String, corrections: Corrections?) -> [String] {
        Self.run(text.split(separator: "\n").map(String.init), corrections: corrections).rejections.map { "\($0.line): \($0.reason)" }
    }

    @Test("each refused retraction says why")
    func refusals() {
        let stream = """
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-01-01T00:00:00Z","id":"t-1"}
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-03-01T00:00:00Z","id":"t-2"}
            {"citizen":"dave","type":"retract","target":"t-9","time":"2026-03-02T00:00:00Z"}
            {"citizen":"erin","type":"retract","target":"t-2","time":"2026-03-02T00:00:00Z"}
            {"citizen":"dave","type":"retract","target":"t-1","time":"2026-03-02T00:00:00Z"}
            {"citizen":"dave","type":"retract","target":"t-2","time":"2026-03-02T00:00:00Z","reason":"court ruling 55/2026"}
            {"citizen":"dave","type":"retract","target":"t-2","time":"2026-03-03T00:00:00Z"}
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-03-04T00:00:00Z","id":"t-2"}
            {"citizen":"dave","type":"retract","time":"2026-03-05T00:00:00Z"}
            {"citizen":"dave","type":"retract","target":"t-9","time":"2026-03-05T00:00:00Z","speed":1}
            {"citizen":"dave","type":"retract","target":3,"time":"2026-03-05T00:00:00Z"}
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-03-05T00:00:00Z","id":7}
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-03-01T00:00:00Z","id":"t-3"}
            """
        var compacting = Corrections(retain: 30 * Self.day)
        compacting.sweepFloor = 0  // compacts before every line
        #expect(Self.reasons(stream, corrections: compacting) == [
            // dave's history was compacted before line 3 (t-1 is out of reach).
            #"3: cannot retract "t-9": no kept event of this citizen has that id (events are kept for 30 days)"#,
            #"4: cannot retract "t-2": no event of this citizen has that id"#,
            #"5: cannot retract "t-1": no kept event of this citizen has that id (events are kept for 30 days)"#,
            #"7: cannot retract "t-2": already retracted on line 6"#,
            #"8: duplicate id "t-2": this citizen's event on line 2 has it"#,
            #"9: a retraction needs "target": the id of the event it takes back"#,
            #"10: a retraction has only "target" and "reason" besides the reserved keys, not "speed""#,
            #"11: "target" of a retraction must be a non-empty string"#,
            #"12: "id" must be a string"#,
            #"13: time 2026-03-01T00:00:00Z is earlier than this citizen's previous event at 2026-03-02T00:00:00Z"#,
        ])
        // Without kept history, every retraction is refused, saying so.
        #expect(Self.reasons(stream, corrections: nil).filter { $0.contains("no history") } == [
            #"3: cannot retract "t-9": no history is kept (run with --retain DURATION)"#,
            #"4: cannot retract "t-2": no history is kept (run with --retain DURATION)"#,
            #"5: cannot retract "t-1": no history is kept (run with --retain DURATION)"#,
            #"6: cannot retract "t-2": no history is kept (run with --retain DURATION)"#,
            #"7: cannot retract "t-2": no history is kept (run with --retain DURATION)"#,
        ])
        // Out of reach but not yet compacted: said as such.
        #expect(Self.reasons("""
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-01-01T00:00:00Z","id":"t-1"}
            {"citizen":"dave","type":"retract","target":"t-1","time":"2026-02-05T00:00:00Z"}
            """, corrections: Corrections(retain: 30 * Self.day)) == [
            #"2: cannot retract "t-1": no longer retained (its event at 2026-01-01T00:00:00Z is more than 30 days before the retraction)"#,
        ])
        // A retraction (late, within the lateness) before its own event.
        #expect(Self.reasons("""
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-03-01T10:00:00Z","id":"t-1"}
            {"citizen":"dave","type":"retract","target":"t-1","time":"2026-03-01T09:00:00Z"}
            """, corrections: Corrections(retain: Self.day, lateness: Self.day)) == [
            #"2: cannot retract "t-1": the retraction's time 2026-03-01T09:00:00Z is earlier than its event's, 2026-03-01T10:00:00Z"#,
        ])
    }

    @Test("a line too late that repeats an old id says it is too late, whether or not the old event was compacted yet")
    func tooLateBeforeDuplicate() {
        // dave's t-1 is out of reach by line 2; line 3 repeats its id and is
        // more than the lateness before dave's last event. Whether t-1 is
        // still in memory depends on compaction (other people, shards):
        // the reason must not.
        let stream = """
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-01-29T11:00:00Z","id":"t-1"}
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-01-31T21:00:00Z","id":"t-2"}
            {"citizen":"dave","type":"speeding","speed":60,"time":"2026-01-02T08:00:00Z","id":"t-1"}
            """
        var compacting = Corrections(retain: 2 * Self.day, lateness: Self.day / 24)
        compacting.sweepFloor = 0
        let expected = [#"3: time 2026-01-02T08:00:00Z is earlier than this citizen's previous event at 2026-01-31T21:00:00Z"#]
        #expect(Self.reasons(stream, corrections: compacting) == expected)
        #expect(Self.reasons(stream, corrections: Corrections(retain: 2 * Self.day, lateness: Self.day / 24)) == expected)
    }

    @Test("`retract` cannot be an event type, nor `id` a field a rule reads; `citizen` can (another person key)")
    func reservedNames() {
        for (text, code) in [("retract → -5", "E0315"), ("event retract { }", "E0315"),
                             ("speeding where id == \"x\" → -5", "E0314"), ("speeding where time > 3 → -5", "E0314")] {
            let result = PolicyCompiler.compile(SourceSet([SourceFile(name: "p.rules", text: text)]))
            #expect(result.errors.map(\.code.rawValue) == [code], "\(text)")
        }
        #expect(PolicyCompiler.compile(SourceSet([SourceFile(name: "p.rules", text: "speeding where citizen == \"x\" → -5")])).errors.isEmpty)
    }

    @Test("a person all of whose events were retracted leaves the report; a retraction moves the clock")
    func emptiedAndClock() {
        let lines = """
            {"citizen":"ann","type":"speeding","speed":120,"time":"2026-03-01T00:00:00Z","id":"a"}
            {"citizen":"bob","type":"speeding","speed":60,"time":"2026-03-01T00:00:00Z","id":"b"}
            {"citizen":"ann","type":"retract","target":"a","time":"2026-03-02T00:00:00Z"}
            {"citizen":"bob","type":"retract","target":"b","time":"2026-03-05T00:00:00Z"}
            {"citizen":"bob","type":"speeding","speed":120,"time":"2026-03-05T00:00:00Z","id":"c"}
            """.split(separator: "\n").map(String.init)
        let run = Self.run(lines, corrections: Corrections(retain: 30 * Self.day))
        #expect(run.rejections.isEmpty)
        // ann is gone; bob's second event stands, his first does not: one
        // −5 −20, and `reckless` for 3 days from 03-05.
        #expect(run.report == #"{"citizen":"bob","score":75,"flags":["low_trust","reckless"],"denied":[],"granted":[]}"# + "\n")
        // The retraction's time is the clock: at 03-05 ann's `reckless`
        // (3 days from 03-01) has ended, which a clock at bob's last
        // standing event (03-01) would still show.
        let clock = """
            {"citizen":"ann","type":"speeding","speed":120,"time":"2026-03-01T00:00:00Z","id":"a"}
            {"citizen":"bob","type":"speeding","speed":60,"time":"2026-03-01T00:00:00Z","id":"b"}
            {"citizen":"bob","type":"speeding","speed":60,"time":"2026-03-02T00:00:00Z","id":"c"}
            {"citizen":"bob","type":"retract","target":"c","time":"2026-03-05T00:00:00Z"}
            """.split(separator: "\n").map(String.init)
        #expect(Self.run(clock, corrections: Corrections(retain: 30 * Self.day)).report == """
            {"citizen":"ann","score":75,"flags":["low_trust"],"denied":[],"granted":[]}
            {"citizen":"bob","score":95,"flags":[],"denied":[],"granted":[]}

            """)
    }
}
