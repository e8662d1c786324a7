import Foundation
import RulesCore
import Testing

/// The library as its users see it: only `public` declarations (no
/// @testable), the way docs/LIBRARY.md shows them.
@Suite("Public API")
struct PublicAPITests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let policyText = """
    score starts at 1000, min 0, max 1300
    event speeding { speed: number, limit: number }
    speeding → -5
    speeding where speed > limit + 30 → -20
    3 speeding within 30 days → deny driving for 90 days
    while score < 900 → flag low trust
    """

    @Test("compile from a string; feed events; assert outcomes with #expect")
    func quickStart() throws {
        let policy = try Policy.compile(Self.policyText)
        let engine = RulesEngine(policy: policy)
        let outcome = engine.apply(Event(person: "alice", type: "speeding", at: "2026-01-05T08:00:00Z",
                                         fields: ["speed": 95, "limit": 60])!)
        guard case .applied(let fired) = outcome else { Issue.record("rejected: \(outcome)"); return }
        #expect(fired.map(\.rule.line) == [3, 4])
        #expect(fired.map(\.scoreChange) == [-5, -20])
        for day in 6...7 {
            engine.apply(Event(person: "alice", type: "speeding", at: "2026-01-0\(day)", fields: ["speed": 70, "limit": 60])!)
        }
        let alice = try #require(engine.state(of: "alice"))
        #expect(alice.score == 965)
        #expect(alice.denied == ["driving"])
        // The denial ends 90 days after the third speeding.
        let later = try #require(Event(person: "x", type: "speeding", at: "2026-04-07")?.time)
        #expect(engine.state(of: "alice", at: later)?.denied == [])
        #expect(engine.state(of: "nobody") == nil)
    }

    @Test("each outcome names its own event's rules and changes, also when outcomes are shared between events")
    func outcomesPerEvent() throws {
        let policy = try Policy.compile("""
        score starts at 1000, min 0, max 1300
        event speeding { speed: number, limit: number }
        event volunteer { hours: number }
        speeding → -5
        speeding where speed > limit + 30 → -20
        volunteer → +min(hours, 8)
        volunteer where hours > 4 → +1, flag helper
        """)
        let engine = RulesEngine(policy: policy)
        var random = SystemRandomNumberGenerator()
        for k in 0..<2_000 {
            let at = Date(timeIntervalSince1970: 1_767_225_600 + Double(k) * 60)
            let expected: [(line: Int, change: Int64)]
            let event: Event
            if Bool.random(using: &random) {
                let speed = Double(Int.random(in: 40...120, using: &random))
                event = Event(person: "p\(k % 7)", type: "speeding", time: at, fields: ["speed": .number(speed), "limit": 60])
                expected = speed > 90 ? [(4, -5), (5, -20)] : [(4, -5)]
            } else {
                let hours = Int.random(in: 0...12, using: &random)
                event = Event(person: "p\(k % 7)", type: "volunteer", time: at, fields: ["hours": .number(Double(hours))])
                expected = hours > 4 ? [(6, Int64(min(hours, 8))), (7, 1)] : [(6, Int64(hours))]
            }
            guard case .applied(let fired) = engine.apply(event) else { Issue.record("rejected: \(event)"); return }
            #expect(fired.map(\.rule.line) == expected.map(\.line), "event \(k)")
            #expect(fired.map(\.scoreChange) == expected.map(\.change), "event \(k)")
        }
    }

    @Test("corrections: an event taken back with retract, a late one in time order; without them both are refused")
    func corrections() throws {
        let policy = try Policy.compile(Self.policyText)
        let keep = try #require(Corrections(retain: .seconds(365 * 86_400), lateness: .seconds(2 * 86_400)))
        let engine = RulesEngine(policy: policy, corrections: keep)
        func speeding(_ day: String, _ id: String) -> Event {
            Event(person: "dave", type: "speeding", at: day, id: id, fields: ["speed": 70, "limit": 60])!
        }
        engine.apply(speeding("2026-03-01", "t-1"))
        engine.apply(speeding("2026-03-03", "t-3"))
        // A day late: applied in time order, the third within 30 days.
        guard case .applied = engine.apply(speeding("2026-03-02", "t-2")) else { Issue.record("the late event was refused"); return }
        #expect(engine.state(of: "dave")?.denied == ["driving"])
        #expect(engine.state(of: "dave")?.score == 985)
        let at = try #require(Event(person: "dave", type: "x", at: "2026-03-04")?.time)
        #expect(engine.retract(person: "dave", target: "t-2", at: at, reason: "court ruling 55/2026") == .applied(fired: []))
        #expect(engine.state(of: "dave")?.denied == [])
        #expect(engine.state(of: "dave")?.score == 990)
        #expect(engine.retract(person: "dave", target: "t-2", at: at) == .rejected(reason: #"cannot retract "t-2": already retracted on line 4"#))
        // Lateness beyond the kept history is not a correction setting.
        #expect(Corrections(retain: .seconds(60), lateness: .seconds(61)) == nil)
        let plain = RulesEngine(policy: policy)
        plain.apply(speeding("2026-03-03", "t-3"))
        #expect(plain.retract(person: "dave", target: "t-3", at: at)
                == .rejected(reason: #"cannot retract "t-3": no history is kept (run with --retain DURATION)"#))
        guard case .rejected = plain.apply(speeding("2026-03-02", "t-2")) else { Issue.record("a late event without lateness"); return }
    }

    @Test("errors come back with every diagnostic and its position")
    func errors() {
        do {
            _ = try Policy.compile("event speeding { speed: number }\nspeeding where sped > 1 → -5\nwhile x →\n", name: "p.rules")
            Issue.record("compiled a policy with errors")
        } catch {
            #expect(error.errors.count == 2)
            #expect(error.errors.first?.code == .unknownField)
            #expect(error.description.contains("p.rules:2:16: error: "))
            let rendered = DiagnosticRenderer(sources: error.sources).render(error.diagnostics)
            #expect(rendered == error.description)
        }
    }

    @Test("rejections are the ones rules run gives; a batch and NDJSON lines too")
    func rejections() throws {
        let engine = RulesEngine(policy: try Policy.compile(Self.policyText))
        let results = engine.apply([
            Event(person: "bob", type: "speeding", at: "2026-01-02", fields: ["speed": "fast", "limit": 60])!,
            Event(person: "bob", type: "speeding", at: "2026-01-02", fields: ["limit": 60])!,
            Event(person: "bob", type: "speeding", at: "2026-01-03", fields: ["speed": 61, "limit": 60])!,
            Event(person: "bob", type: "speeding", at: "2026-01-01", fields: ["speed": 61, "limit": 60])!,
        ])
        #expect(results[0] == .rejected(reason: "field `speed` of event `speeding` must be a number, not a string"))
        #expect(results[1] == .rejected(reason: "event `speeding` lacks its declared field `speed`"))
        guard case .applied = results[2] else { Issue.record("\(results[2])"); return }
        guard case .rejected(let reason) = results[3] else { Issue.record("applied out of order"); return }
        #expect(reason.contains("earlier than this citizen's previous event"))
        let (person, outcome) = engine.apply(line: #"{"citizen":"carol","type":"speeding","time":"2026-01-04","speed":1,"limit":2}"#)
        #expect(person == "carol")
        if case .rejected = outcome { Issue.record("\(outcome)") }
        let (summary, rejected) = engine.apply(ndjson: "not json\n\n" + #"{"citizen":"dan","type":"speeding","time":"2026-01-04","speed":1,"limit":2}"# + "\n")
        #expect(summary.read == 2 && summary.applied == 1 && summary.rejected == 1 && summary.blank == 1)
        #expect(rejected.map(\.line) == [1])
    }

    @Test("the report is rules run's, byte for byte, on the shipped example")
    func sameAsCommandLine() throws {
        let policy = try Policy.load(files: [Self.repo.appendingPathComponent("rules/citizen.rules").path])
        let engine = RulesEngine(policy: policy)
        let events = try String(contentsOf: Self.repo.appendingPathComponent("examples/citizen.ndjson"), encoding: .utf8)
        _ = engine.apply(ndjson: events)
        let expected = try String(contentsOf: Self.repo.appendingPathComponent("examples/citizen.expected.ndjson"), encoding: .utf8)
        #expect(engine.reportNDJSON() == expected)
        #expect(engine.report().map(\.person) == ["alice", "bob", "carol", "dave", "erin"])
        do {
            _ = try Policy.load(files: ["/no/such/policy.rules"])
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.description.contains("cannot read policy /no/such/policy.rules"))
        }
    }

    @Test("explanations: the rule and the events behind each decision")
    func explanations() throws {
        let engine = RulesEngine(policy: try Policy.compile(Self.policyText), explaining: true)
        for day in 1...5 {
            engine.apply(Event(person: "eve", type: "speeding", at: "2026-02-0\(day)", fields: ["speed": 100, "limit": 60])!)
        }
        let why = try #require(engine.explanation(of: "eve"))
        let denied = try #require(why.items.first { $0.name == "driving" })
        #expect(denied.setBy.first?.rule.line == 5)
        let lowTrust = try #require(why.items.first { $0.name == "low_trust" })
        #expect(lowTrust.heldBy.first?.rule.line == 6)
        #expect(lowTrust.heldBy.first?.because == "score (875) < 900")
        #expect(why.lines.first == "eve as of 2026-02-05T00:00:00Z: score 875")
        #expect(RulesEngine(policy: try Policy.compile(Self.policyText)).explanation(of: "eve") == nil)
    }

    @Test("the audit trail: a record per change, with the rule behind it")
    func trail() throws {
        var records: [UInt8] = []
        let engine = RulesEngine(policy: try Policy.compile(Self.policyText), trace: { records += $0 })
        for day in 1...3 {
            engine.apply(Event(person: "kim", type: "speeding", at: "2026-06-0\(day)", fields: ["speed": 61, "limit": 60])!)
        }
        engine.finishTrace(at: Event(person: "x", type: "speeding", at: "2026-12-01")!.time)
        let lines = String(decoding: records, as: UTF8.self).split(separator: "\n")
        let denial = try #require(lines.first { $0.contains(#""effect":"deny""#) })
        #expect(denial.contains(#""rule":"policy.rules:5""#) && denial.contains(#""name":"driving""#))
        #expect(denial.contains(#""until":"2026-09-01T00:00:00Z""#))
        #expect(lines.filter { $0.contains(#""effect":"score""#) }.count == 3)
    }

    @Test("checkpoints: stop, save, resume elsewhere, same answer")
    func checkpoints() throws {
        let policy = try Policy.compile(Self.policyText)
        var events: [Event] = []
        for i in 1...40 {
            let day = 1 + i / 2
            let time = "2026-03-" + (day < 10 ? "0\(day)" : "\(day)")
            let speed = FieldValue.number(Double(60 + i))
            events.append(Event(person: "p\(i % 3)", type: "speeding", at: time, fields: ["speed": speed, "limit": 60])!)
        }
        let whole = RulesEngine(policy: policy)
        whole.apply(events)
        let first = RulesEngine(policy: policy)
        first.apply(Array(events[..<17]))
        let second = try RulesEngine(policy: policy, resumingFrom: first.checkpoint())
        second.apply(Array(events[17...]))
        #expect(second.report() == whole.report())
        // Another policy resumes too: what people have carries over by name,
        // and what does not is said.
        let changed = try RulesEngine(policy: try Policy.compile("speeding → -1\n"), resumingFrom: first.checkpoint())
        #expect(changed.state(of: "p0")?.score == first.state(of: "p0")?.score)
        #expect(changed.resumeNotes == ["`deny driving` set by event rules is not in the new policy: dropped"])
        #expect(second.resumeNotes.isEmpty)
        #expect(throws: Checkpoint.Failure.self) {
            _ = try RulesEngine(policy: policy, resumingFrom: Array(first.checkpoint().dropLast()))
        }
    }

    @Test("one compiled policy, shared by engines on many tasks")
    func sharedAcrossTasks() async throws {
        let policy = try Policy.compile(Self.policyText)
        let scores = await withTaskGroup(of: Int64.self) { group in
            for k in 0..<8 {
                group.addTask {
                    let engine = RulesEngine(policy: policy)
                    for day in 0..<k { engine.apply(Event(person: "t", type: "speeding", at: "2026-05-0\(day + 1)", fields: ["speed": 61, "limit": 60])!) }
                    return engine.state(of: "t")?.score ?? 1000
                }
            }
            var all: [Int64] = []
            for await s in group { all.append(s) }
            return all.sorted()
        }
        #expect(scores == [965, 970, 975, 980, 985, 990, 995, 1000])
    }
}

@Suite("Public API: the person key")
struct PersonKeyAPITests {
    static let policy = try! Policy.compile("""
        speeding where speed > 50 → -5
        3 speeding within 30 days → deny driving for 90 days
        """)

    @Test("an engine made for `account` reads it and reports with it; `citizen` is then a field")
    func reportsWithTheKey() throws {
        let engine = try RulesEngine(policy: Self.policy, personKey: "account")
        let (person, outcome) = engine.apply(line: #"{"type":"speeding","account":"a-1","time":"2026-01-05","speed":60}"#)
        #expect(person == "a-1")
        if case .rejected(let reason) = outcome { Issue.record("rejected: \(reason)") }
        #expect(engine.apply(line: #"{"citizen":"c","type":"speeding","time":"2026-01-06"}"#).outcome
                == .rejected(reason: #"missing "account""#))
        engine.apply(Event(person: "a-2", type: "speeding", at: "2026-01-07", fields: ["speed": 70])!)
        #expect(engine.reportNDJSON() == """
            {"account":"a-1","score":-5,"flags":[],"denied":[],"granted":[]}
            {"account":"a-2","score":-5,"flags":[],"denied":[],"granted":[]}

            """)
        let (summary, rejections) = engine.apply(ndjson: #"{"account":"a-1","type":"speeding","time":"2026-01-01"}"# + "\n")
        #expect(summary.rejected == 1)
        #expect(rejections.first?.reason.contains("earlier than this account's previous event") == true)
    }

    @Test("an engine with a person key resumes from a checkpoint and reads the rest by the key")
    func resumes() throws {
        let lines = (1...30).map { i in
            #"{"account":"a-\#(i % 4)","type":"speeding","time":"2026-03-\#(i < 10 ? "0" : "")\#(i)","speed":\#(40 + i)}"#
        }
        let whole = try RulesEngine(policy: Self.policy, personKey: "account")
        _ = whole.apply(ndjson: lines.joined(separator: "\n"))
        let first = try RulesEngine(policy: Self.policy, personKey: "account")
        _ = first.apply(ndjson: lines[..<13].joined(separator: "\n"))
        let second = try RulesEngine(policy: Self.policy, personKey: "account", resumingFrom: first.checkpoint())
        let (summary, _) = second.apply(ndjson: lines[13...].joined(separator: "\n"))
        #expect(summary.applied == 17)
        #expect(second.reportNDJSON() == whole.reportNDJSON())
        #expect(second.reportNDJSON().hasPrefix(#"{"account":"a-0","score":"#))
        #expect(throws: PersonKeyError.self) {
            _ = try RulesEngine(policy: Self.policy, personKey: "time", resumingFrom: first.checkpoint())
        }
        #expect(throws: Checkpoint.Failure.self) {
            _ = try RulesEngine(policy: Self.policy, personKey: "account", resumingFrom: Array(first.checkpoint().dropFirst()))
        }
    }

    @Test("a key that cannot be one is refused with the reason")
    func refused() {
        for (name, message) in [("type", "`type` cannot be the person key"), ("", "must not be empty"),
                                ("speed", "the policy reads `speed` as an event field")] {
            #expect(throws: PersonKeyError.self, "\(name)") { _ = try RulesEngine(policy: Self.policy, personKey: name) }
            do { _ = try RulesEngine(policy: Self.policy, personKey: name) } catch {
                #expect(error.description.contains(message), "\(error)")
            }
        }
    }
}

@Suite("Public API: typed events' strings")
struct TypedStringTests {
    /// The engine keeps a typed event's strings in memory it reuses, 256
    /// bytes at first, grown (and the event's fields set again) when an
    /// event's strings do not fit: every size around that edge reads the
    /// same as the line would.
    @Test("string fields just under, at and past the engine's reused memory, alone and together",
          arguments: [1, 255, 256, 257, 300, 4096])
    func sizes(_ n: Int) throws {
        let long = String(repeating: "x", count: n)
        let policy = try Policy.compile("""
            note where text == "\(long)" and other == "y" → +1
            note where text != "\(long)" → -1
            """)
        // The long strings on the first event (the memory grows at once)
        // and on the second (after a small event used it).
        for bigFirst in [true, false] {
            let engine = RulesEngine(policy: policy)
            let (bigDay, smallDay) = bigFirst ? ("2026-01-01", "2026-01-02") : ("2026-01-02", "2026-01-01")
            let small = Event(person: "p", type: "note", at: smallDay, fields: ["text": "a", "other": "y"])!
            let big = Event(person: "p", type: "note", at: bigDay, fields: ["text": .string(long), "other": "y",
                                                                           "pad": .string(long)])!
            let events = bigFirst ? [big, small] : [small, big]
            for e in events { _ = engine.apply(e) }
            let lines = RulesEngine(policy: policy)
            for e in events { _ = lines.apply(line: e.ndjson) }
            #expect(engine.reportNDJSON() == lines.reportNDJSON(), "\(n)")
            #expect(engine.state(of: "p")?.score == 0, "\(n): +1 for the long text, -1 for the short")
        }
    }
}
