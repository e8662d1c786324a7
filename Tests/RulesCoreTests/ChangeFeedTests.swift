import Foundation
@testable import RulesCore
@testable import RulesTooling
import Testing

/// The service's change feed (`GET /v1/changes`) against a plain model:
/// after each body, the whole report written again and compared with the
/// one before it, person by person.
@Suite("Change feed")
struct ChangeFeedTests {
    /// The report as person → line, as of `time` (nil: the engine's clock).
    static func lines(_ engine: Engine, asOf time: Int64? = nil) -> [String: String] {
        var bytes: [UInt8] = []
        engine.writeReport(asOf: time) { bytes += $0 }
        var byPerson: [String: String] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let person = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            byPerson[person["citizen"] as! String] = String(line)
        }
        return byPerson
    }

    /// `body` with each random case of `seeds` whose policy compiles, and a
    /// fresh engine for it (corrections on when the case has them); the
    /// number of such cases.
    static func forEachCase(_ seeds: ClosedRange<UInt64>, _ body: (UInt64, GeneratedCase, Program, Engine) -> Void) -> Int {
        var compared = 0
        for seed in seeds {
            var generator = CaseGenerator(seed: seed)
            let c = generator.generate()
            guard let program = Differential.compile(c).program else { continue }
            compared += 1
            let engine = Engine(program: program)
            if let corrections = c.corrections { engine.enableCorrections(corrections) }
            body(seed, c, program, engine)
        }
        return compared
    }

    @Test("after each body: exactly the people whose report line differs from the whole report before it, with their new line")
    func feedIsTheReportsDifference() {
        var timeAlone = 0
        let compared = Self.forEachCase(1...1000) { seed, c, program, engine in
            // Half the cases make the queue of wakes again at every push
            // (what a long-lived service does when stale entries pile up).
            let feed = ReportChanges(engine: engine, queueSlack: seed % 2 == 0 ? -1 << 40 : 4096)
            // What lookups answer, kept from the changes as the service does.
            let published = PublishedLines()
            published.install(program: program, personKey: engine.personKey, shares: [feed.share])
            var rng = SeededRandom(seed: seed &* 7)
            var before = Self.lines(engine), k = 0
            while k < c.lines.count {
                let end = min(c.lines.count, k + 1 + rng.below(6))
                let body = Array(c.lines[k..<end].map { $0 + "\n" }.joined().utf8)
                var named = Set<String>()
                for line in c.lines[k..<end] {
                    if let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let p = o["citizen"] as? String { named.insert(p) }
                }
                let changes = feed.applying { _ = EventStream.run(engine, reader: LineReader(bytes: body), asOf: nil) { _, _ in } }
                let after = Self.lines(engine)
                let people = Set(before.keys).union(after.keys).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
                    // Byte for byte: Swift's `==` on strings would take a
                    // composed `é` and `e` + U+0301 for the same line.
                    .filter { before[$0].map { Array($0.utf8) } != after[$0].map { Array($0.utf8) } }
                let expected = people.map { ReportChanges.Change(person: $0, line: after[$0]) }
                #expect(changes.changes == expected, "seed \(seed), lines \(k + 1)...\(end)\n\(c.repro)")
                published.update([changes])
                #expect(published.people == after.count, "people counted by the lookups, seed \(seed)\n\(c.repro)")
                for person in people {
                    let line = published.line(of: person).map { String(decoding: $0, as: UTF8.self) }
                    #expect(line == after[person], "lookup of \(person), seed \(seed)\n\(c.repro)")
                }
                timeAlone += people.filter { !named.contains($0) }.count
                before = after
                k = end
            }
        }
        #expect(compared > 700)
        // The cases reach changes that time alone makes, or the test would
        // not be testing the queue.
        #expect(timeAlone > 150, "changes by time alone: \(timeAlone)")
    }
}

extension ChangeFeedTests {
    /// A shard looks for its changes as of its own clock, before the other
    /// shards are done; `settle` then makes them the changes as of the
    /// latest clock of all, which may be later. Here one engine looks at its
    /// own clock (or the last settled time, when that is later, as a shard
    /// does) and settles at a random time after it, as if another shard had
    /// reached it: the changes must be the difference of the whole report
    /// as of each settled time.
    @Test("changes looked for at a shard's own clock, then settled at a later one: exactly the report's difference")
    func lookThenSettleLater() {
        var late = 0
        let compared = Self.forEachCase(1...1000) { seed, c, _, engine in
            let tracker = ReportChanges(engine: engine)
            var rng = SeededRandom(seed: seed &* 13)
            var settled: Int64? = nil
            var before = Self.lines(engine), k = 0
            while k < c.lines.count {
                let end = min(c.lines.count, k + 1 + rng.below(6))
                let body = Array(c.lines[k..<end].map { $0 + "\n" }.joined().utf8)
                _ = EventStream.run(engine, reader: LineReader(bytes: body), asOf: nil) { _, _ in }
                k = end
                guard let own = [engine.clock, settled].compactMap({ $0 }).max() else { continue }
                // Another shard's clock: the same, or seconds, hours, days or
                // a year on (the cases' windows and durations are of those).
                let scales: [Int64] = [0, 1, 60, 3_600, 86_400, 30 * 86_400, 365 * 86_400]
                let scale = scales[rng.below(scales.count)]
                let latest = own + (scale == 0 ? 0 : Int64(rng.below(Int(3 * scale))))
                tracker.look(now: own)
                let changes = tracker.settle(now: latest)
                settled = latest
                let after = Self.lines(engine, asOf: latest)
                let people = Set(before.keys).union(after.keys).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
                    .filter { before[$0].map { Array($0.utf8) } != after[$0].map { Array($0.utf8) } }
                #expect(changes.changes == people.map { ReportChanges.Change(person: $0, line: after[$0]) }, "seed \(seed), lines ...\(end)\n\(c.repro)")
                tracker.publish(changes)
                before = after
            }
            late += tracker.settledLate
        }
        #expect(compared > 700)
        // People looked at again because their line could change between
        // the two times (70 in these cases): the path is taken, or the test
        // would not test it — without it, 51 of the expectations above fail.
        #expect(late > 50, "looked at again: \(late)")
    }

    /// A person is woken when an entry leaves a window a `while` rule reads;
    /// a counted rule or an event rule's `where` reads a window only at the
    /// event, so theirs wake nobody (they were a third of all wakes on the
    /// reference workload).
    /// After held bodies the engine keeps an entry per event for the next
    /// look, until `foldHeldAt` of them: at that count they are folded into
    /// a set of people, and the look still finds each change once.
    @Test("held bodies: the entries kept are folded into a set at exactly foldHeldAt, and the look finds every change once")
    func holdFoldsAtItsEdge() throws {
        let engine = Engine(program: try compileOrFail("score starts at 0\nevent e {}\ne → +1\n"))
        let tracker = ReportChanges(engine: engine, foldHeldAt: 3)
        func apply(_ people: [String], day: Int) {
            let body = people.map { #"{"citizen":"\#($0)","time":"2026-01-0\#(day)","type":"e"}"# + "\n" }.joined()
            _ = EventStream.run(engine, reader: LineReader(bytes: Array(body.utf8)), asOf: nil) { _, _ in }
        }
        apply(["a", "b"], day: 1)
        tracker.hold()
        #expect(engine.touched?.count == 2, "below the edge: kept as they came")
        apply(["a"], day: 2)
        tracker.hold()
        #expect(engine.touched?.count == 0, "at the edge: folded")
        apply(["c", "a"], day: 3)
        tracker.hold()
        #expect(engine.touched?.count == 2)
        let changes = tracker.changes(now: engine.clock!).changes
        #expect(changes.map { String(decoding: $0.person, as: UTF8.self) } == ["a", "b", "c"])
        #expect(changes.map { String(decoding: $0.line ?? [], as: UTF8.self).contains(#""score":3"#) } == [true, false, false])
    }

    @Test("only the windows `while` rules read are times a line can change by itself")
    func onlyWhileWindowsWake() throws {
        let program = try compileOrFail("""
            3 speeding within 30 days → deny driving for 90 days
            speeding where count(speeding within 7 days) > 1 → -1
            while count(speeding within 60 days) > 2 → flag reckless
            while count(littering within 365 days) >= 4 or count(littering within 30 days) > 1 → flag litterer
            """)
        let policy = program.policy
        let windows = Dictionary(uniqueKeysWithValues: policy.buffers.indices.map { b in
            ("\(policy.events[policy.buffers[b].events[0]].name) cap \(policy.buffers[b].cap.map(String.init) ?? "none")", policy.bufferReadWindows[b])
        })
        let day = 86_400 * Timestamp.perSecond
        #expect(windows == ["speeding cap 2": [], "speeding cap none": [60 * day], "littering cap none": [30 * day, 365 * day]])
    }
}

/// The feed's memory at its edge: what is kept, and a resume just inside
/// and just outside it.
@Suite("Change feed: what is kept")
struct ChangeFeedKeptTests {
    /// What a client resuming after `seen` is sent first.
    static func catchUp(_ feed: ChangeFeed, after seen: Int?) -> String {
        var sent: [UInt8] = []
        feed.stream(after: seen) { sent = $0; return false }
        return String(decoding: sent, as: UTF8.self)
    }

    @Test("a resume from the event before the oldest kept gets everything kept and no gap; one event earlier is told of the gap")
    func resumeAtTheEdge() {
        let line = #"{"citizen":"p","score":1000,"flags":[],"denied":[],"granted":[]}"#
        func event(_ k: Int) -> MergedChanges { MergedChanges([ReportChanges.Change(person: "p\(k)", line: line)]) }
        // The limit is on the memory kept events hold: room for three
        // bodies of one event each, not four.
        let feed = ChangeFeed(personKey: "citizen", keptBytes: 3 * event(10).memory + 2)
        for k in 1...10 { feed.publish(event(k)) }
        #expect(feed.lastId == 10)
        #expect(feed.kept().events.map(\.id) == [8, 9, 10])
        let inside = Self.catchUp(feed, after: 7)
        #expect(!inside.contains("event: gap") && inside.contains("id: 8\n") && inside.contains("id: 10\n"))
        let outside = Self.catchUp(feed, after: 6)
        #expect(outside.contains("event: gap") && outside.contains("events after 6 up to 7 are no longer kept") && outside.contains("id: 8\n"))
        #expect(!Self.catchUp(feed, after: 10).contains("id: "))
        #expect(Self.catchUp(feed, after: 11).contains("event: gap"))
        // A new client gets what comes from now on.
        #expect(!Self.catchUp(feed, after: nil).contains("id: "))
        // Removed people: an event of their own kind.
        feed.publish(MergedChanges([ReportChanges.Change(person: "p1", line: nil)]))
        #expect(Self.catchUp(feed, after: 10).contains("id: 11\nevent: removed\ndata: {\"citizen\":\"p1\"}\n\n"))
    }

    @Test("bodies of several events: the oldest bodies go whole, the latest stays even when it alone is over the limit; a resume inside a body starts at the next event")
    func bodiesAreKeptWhole() {
        func line(_ k: Int) -> String { #"{"citizen":"p\#(k)","score":1000,"flags":[],"denied":[],"granted":[]}"# }
        func body(_ people: ClosedRange<Int>) -> MergedChanges { MergedChanges(people.map { ReportChanges.Change(person: "p\($0)", line: line($0)) }) }
        // Room for two bodies of three, not three.
        let limit = 2 * body(7...9).memory + 5
        let feed = ChangeFeed(personKey: "citizen", keptBytes: limit)
        feed.publish(body(1...3))
        feed.publish(body(4...6))
        #expect(feed.kept().events.map(\.id) == [1, 2, 3, 4, 5, 6])
        feed.publish(body(7...9))
        #expect(feed.kept().events.map(\.id) == [4, 5, 6, 7, 8, 9])
        // Inside a body: from the next event on, then every later body.
        let resumed = Self.catchUp(feed, after: 4)
        #expect(!resumed.contains("event: gap") && !resumed.contains("id: 4\n"))
        #expect(resumed.hasPrefix("retry: 1000\n\nid: 5\ndata: \(line(5))\n\nid: 6\n") && resumed.hasSuffix("id: 9\ndata: \(line(9))\n\n"), "\(resumed)")
        #expect(Self.catchUp(feed, after: 2).contains("events after 2 up to 3 are no longer kept"))
        // One body over the limit alone is kept, all of it.
        feed.publish(body(10...19))
        #expect(feed.kept().events.map(\.id) == Array(10...19))
        // A checkpoint's copy reads back the same.
        let restored = ChangeFeed(personKey: "citizen", keptBytes: limit)
        let kept = feed.kept()
        restored.restore(lastId: kept.lastId, pieces: kept.saved(program: nil), format: nil)
        #expect(Self.catchUp(restored, after: 12) == Self.catchUp(feed, after: 12))
        #expect(restored.lastId == 19)
    }

    @Test("a body's changes come in byte order of the ids, also for ids alike in their first eight bytes and of other lengths")
    func changesInIdOrder() throws {
        let program = try compileOrFail("score starts at 0\nevent e {}\ne → +1\n")
        let engine = Engine(program: program)
        let tracker = ReportChanges(engine: engine)
        var rng = SeededRandom(seed: 5)
        let ids = (0..<300).map { k in
            ["customer-\(k)", "customer", "customes\(k)", "c\(k)", "custome\u{e9}\(k)", "customer-\(k)x"][rng.below(6)]
        }
        let body = ids.map { #"{"citizen":"\#($0)","time":"2026-01-01","type":"e"}"# + "\n" }.joined()
        let changes = tracker.applying { _ = EventStream.run(engine, reader: LineReader(bytes: Array(body.utf8)), asOf: nil) { _, _ in } }
        let people = changes.changes.map { Array($0.person) }
        #expect(people == Set(ids.map { Array($0.utf8) }).sorted { $0.lexicographicallyPrecedes($1) })
    }

    @Test("a line kept as its line state reads back as the report's line, past 64 names too")
    func lineStatesPastOneWord() throws {
        let flags = (0..<70).map { "f\($0)" }
        let source = "score starts at 0\nevent e { n: number }\n"
            + flags.enumerated().map { k, f in "e where n == \(k) → +\(k), flag \(f)" }.joined(separator: "\n")
            + "\nwhile score > 100 → deny travel\n"
        let program = try compileOrFail(source)
        let engine = Engine(program: program)
        let tracker = ReportChanges(engine: engine)
        let published = PublishedLines()
        published.install(program: program, personKey: engine.personKey, shares: [tracker.share])
        let body = [0, 63, 64, 69].map { #"{"citizen":"a","time":"2026-01-01","type":"e","n":\#($0)}"# }
            + [#"{"citizen":"b","time":"2026-01-02","type":"e","n":65}"#]
        let changes = tracker.applying { _ = EventStream.run(engine, reader: LineReader(bytes: Array(body.map { $0 + "\n" }.joined().utf8)), asOf: nil) { _, _ in } }
        published.update([changes])
        let report = ChangeFeedTests.lines(engine)
        #expect(report["a"]?.contains(#""flags":["f0","f63","f64","f69"]"#) == true, "\(report)")
        #expect(report["a"]?.contains(#""denied":["travel"]"#) == true)
        for person in ["a", "b"] {
            #expect(published.line(of: person).map { String(decoding: $0, as: UTF8.self) } == report[person])
        }
        #expect(published.line(of: "c") == nil)
    }
}

/// The service's shards (`rules serve --jobs N`) against one engine: people
/// split over engines by id must not change a single answer.
@Suite("Served state in shards")
struct ServedShardsTests {
    /// A served state with its feed and lookups, `shards` engines.
    final class Served {
        let feed = ChangeFeed(personKey: "citizen")
        let published = PublishedLines()
        let state: ServedState

        init(shards: Int, corrections: Corrections?, foldHeldAt: Int = 1 << 20) {
            state = ServedState(personKey: "citizen", corrections: corrections, feed: feed, published: published, shards: shards, foldHeldAt: foldHeldAt)
        }

        var report: String {
            var bytes: [UInt8] = []
            state.writeReport { bytes += $0 }
            return String(decoding: bytes, as: UTF8.self)
        }

        var events: [String] { feed.kept().events.map { "\($0.id) " + String(decoding: $0.text, as: UTF8.self) } }

        func lookups(_ people: [String]) -> [String?] {
            people.map { published.line(of: $0).map { String(decoding: $0, as: UTF8.self) } }
        }
    }

    /// A body dealt on another thread, handed back.
    final class DealtElsewhere: @unchecked Sendable {
        let served: Served
        var dealt: LineShares? = nil
        init(_ served: Served) { self.served = served }
    }

    /// A body's events are kept as line states and written out when read:
    /// each with the policy that made them, not the one in force when a
    /// client reads them.
    @Test("events kept from before a policy change read with the names of the policy that made them")
    func eventsReadWithTheirPolicy() throws {
        // `zeta` is the first flag of the first policy, `beta` of the second.
        let before = "score starts at 0\nevent e {}\ne → +1, flag zeta\n"
        let after = "score starts at 0\nevent e {}\ne → +2, flag beta\nwhile score > 0 → flag zeta\n"
        let served = Served(shards: 1, corrections: nil)
        for (k, text) in [before, after].enumerated() {
            let policy = ServedPolicy(paths: ["p.rules"], files: ["p.rules": text])
            try served.state.take(policy: policy, program: try compileOrFail(text))
            served.state.take(body: Array(#"{"citizen":"a","time":"2026-01-0\#(k + 1)","type":"e"}"#.utf8) + [10])
        }
        // The change of policy changed no line (`zeta` carried over, and
        // held by the new `while` too): two events.
        let events = [
            #"1 id: 1\#ndata: {"citizen":"a","score":1,"flags":["zeta"],"denied":[],"granted":[]}\#n\#n"#,
            #"2 id: 2\#ndata: {"citizen":"a","score":3,"flags":["beta","zeta"],"denied":[],"granted":[]}\#n\#n"#,
        ]
        #expect(served.events == events)
        // A checkpoint keeps the first body's events as text (another
        // policy's line states) and the second's as line states: read
        // back, the same events.
        let saved = try ServiceCheckpoint(decoding: served.state.checkpoint(logEnd: 0).encoded)
        #expect(saved.feed.map { if case .texts = $0 { "texts" } else { "states" } } == ["texts", "states"])
        let restored = Served(shards: 2, corrections: nil)
        try restored.state.restore(saved)
        #expect(restored.events == events)
        // A checkpoint of version 1 kept every event as its number and
        // text: still read.
        let old = try ServiceCheckpoint(decoding: Self.version1(served.state.checkpoint(logEnd: 0).encoded, events: served.feed.kept().events))
        let fromOld = Served(shards: 1, corrections: nil)
        try fromOld.state.restore(old)
        #expect(fromOld.events == events)
    }

    /// A version 2 checkpoint's bytes as version 1 wrote them: its feed as
    /// each event's number, length and text.
    static func version1(_ bytes: [UInt8], events: [(id: Int, text: [UInt8])]) -> [UInt8] {
        func word(_ at: Int) -> Int { bytes.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self))) } }
        func le<T: BinaryInteger>(_ n: T) -> [UInt8] { withUnsafeBytes(of: UInt64(n).littleEndian) { Array($0) } }
        let headerEnd = 12 + 8 + word(12)
        let feedEnd = headerEnd + 8 + word(headerEnd)
        let feed = events.flatMap { le($0.id) + le($0.text.count) + $0.text }
        var out = Array(bytes[0..<8]) + withUnsafeBytes(of: UInt32(1).littleEndian) { Array($0) }
        out += bytes[12..<headerEnd] + le(feed.count) + feed + bytes[feedEnd..<(bytes.count - 8)]
        return out + le(out.withUnsafeBytes { Hashing.checksum($0) })
    }

    /// `body` with each random case of `seeds` whose policy compiles: its
    /// program, the policy as a service takes it, and the people its lines
    /// name; the number of such cases.
    static func forEachServedCase(_ seeds: ClosedRange<UInt64>,
                                  _ body: (UInt64, GeneratedCase, Program, ServedPolicy, [String]) throws -> Void) rethrows -> Int {
        var compared = 0
        for seed in seeds {
            var generator = CaseGenerator(seed: seed)
            let c = generator.generate()
            guard let program = Differential.compile(c).program else { continue }
            compared += 1
            let names = c.files.indices.map { "policy\($0 + 1).rules" }
            let policy = ServedPolicy(paths: names, files: Dictionary(uniqueKeysWithValues: zip(names, c.files)))
            let people = Array(Set(c.lines.compactMap { line in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["citizen"] as? String
            })).sorted()
            try body(seed, c, program, policy, people)
        }
        return compared
    }

    @Test("bodies, a policy taken again and a checkpoint restored into another number of shards: the same answers, feed events and lookups as one engine")
    func shardsAnswerAsOneEngine() throws {
        let compared = try Self.forEachServedCase(1...300) { seed, c, program, policy, people in
            let one = Served(shards: 1, corrections: c.corrections)
            var many = Served(shards: 3, corrections: c.corrections)
            try one.state.take(policy: policy, program: program)
            try many.state.take(policy: policy, program: program)
            var rng = SeededRandom(seed: seed &* 11)
            var k = 0, body = 0
            while k < c.lines.count {
                let end = min(c.lines.count, k + 1 + rng.below(8))
                let bytes = Array(c.lines[k..<end].map { $0 + "\n" }.joined().utf8)
                // Every other body dealt to the shards by another thread
                // first, as a posted body is by the thread that received it.
                var dealt: LineShares? = nil
                if body % 2 == 1 {
                    let box = DealtElsewhere(many), done = DispatchSemaphore(value: 0)
                    Thread { box.dealt = box.served.state.deal(bytes); done.signal() }.start()
                    done.wait()
                    dealt = box.dealt
                    #expect(dealt != nil, "\(seed)")
                }
                let a = one.state.take(body: bytes), b = many.state.take(body: bytes, dealt: dealt)
                let context = "seed \(seed), lines \(k + 1)...\(end)\n\(c.repro)"
                #expect(a.summary.lines == b.summary.lines && a.summary.applied == b.summary.applied && a.summary.rejected == b.summary.rejected, "\(context)")
                // The same lines rejected for the same reasons — but a
                // retraction of an event out of reach may say so either way
                // ("no kept event" or "no longer retained"): when history is
                // compacted depends on the engine's other people, as it
                // does for `rules run --jobs`.
                func reasons(_ r: [Rejection]) -> [String] {
                    r.map { "\($0.line) " + ($0.reason.hasPrefix("cannot retract") ? String($0.reason.prefix { $0 != ":" }) : $0.reason) }
                }
                #expect(reasons(a.rejections) == reasons(b.rejections), "\(context)")
                body += 1
                if body == 2 {
                    // The same policy put in force again: people carried
                    // over from shards into new ones.
                    let x = try one.state.take(policy: policy, program: program), y = try many.state.take(policy: policy, program: program)
                    #expect(x.changes == y.changes, "\(context)")
                }
                if body == 4 {
                    // A checkpoint of three shards restored into two.
                    let saved = many.state.checkpoint(logEnd: 0)
                    many = Served(shards: 2, corrections: c.corrections)
                    try many.state.restore(ServiceCheckpoint(decoding: saved.encoded))
                }
                #expect(one.report == many.report, "\(context)")
                #expect(one.events == many.events, "\(context)")
                #expect(one.lookups(people) == many.lookups(people), "\(context)")
                k = end
            }
        }
        #expect(compared > 200)
    }

    /// A worker reading a backlog holds batches (`SourcedBatch.publishes`):
    /// their changes are looked for with the next that publishes. That must
    /// be exactly one body made of them all — the feed's events and
    /// numbers, the lookups, and the changed lines a worker writes to Redis.
    /// Half the cases fold the people held batches reached into the look's
    /// set after every one (`ReportChanges.hold`), as a long backlog does.
    @Test("held batches, then one that publishes: the same feed events, lookups and lines to write as one body made of them all, the people they reached folded into a set or not")
    func heldBatchesAreOneBody() throws {
        var held = 0
        let compared = try Self.forEachServedCase(1...300) { seed, c, program, policy, people in
            var rng = SeededRandom(seed: seed &* 13)
            let whole = Served(shards: 1, corrections: c.corrections)
            let holding = Served(shards: 1 + rng.below(3), corrections: c.corrections, foldHeldAt: seed % 2 == 0 ? 1 : 1 << 20)
            var told: [String: [[String]]] = [:]
            for (name, served) in [("whole", whole), ("holding", holding)] {
                served.state.onChanges = { changes, _ in
                    told[name, default: []].append(changes.changes.map { "\($0.person) \($0.line.map { String(decoding: $0, as: UTF8.self) } ?? "gone")" })
                }
                try served.state.take(policy: policy, program: program)
            }
            var k = 0, pending: [UInt8] = [], pendingLines = 0
            while k < c.lines.count {
                let end = min(c.lines.count, k + 1 + rng.below(6))
                let bytes = Array(c.lines[k..<end].map { $0 + "\n" }.joined().utf8)
                // Two of three held; the last always publishes.
                let publishes = end == c.lines.count || rng.below(3) == 0
                let batch = SourcedBatch(positions: [0: StreamPosition(last: EntryId(ms: UInt64(end), sequence: 0), applied: end)],
                                         outsideClock: nil, body: bytes, publishes: publishes)
                let h = holding.state.take(batch)
                pending += bytes
                pendingLines += h.summary.lines
                let context = "seed \(seed), lines \(k + 1)...\(end)\n\(c.repro)"
                if publishes {
                    whole.state.take(body: pending)
                    pending = []
                    pendingLines = 0
                    #expect(holding.events == whole.events, "\(context)")
                    #expect(told["holding"] == told["whole"], "\(context)")
                    #expect(holding.lookups(people) == whole.lookups(people), "\(context)")
                } else {
                    held += 1
                    // Folded: the engines keep no entry per event.
                    if seed % 2 == 0 { #expect(holding.state.engines.allSatisfy { $0.touched?.isEmpty ?? true }, "\(context)") }
                }
                #expect(holding.state.heldLines == pendingLines, "\(context)")
                k = end
            }
            #expect(holding.report == whole.report)
        }
        #expect(compared > 200 && held > 500, "\(compared) cases, \(held) batches held")
    }

    /// The lines a worker writes are rendered in the order of the people's
    /// numbers (where their data lies), from a bit per person when many are
    /// marked and from their sorted numbers when few: either way each
    /// marked person's latest line once, in their partition's `HSET`.
    @Test("the lines to write: every marked person's latest line once, in their partition's hash, whether few or most people are marked")
    func linesToWrite() throws {
        let text = "score starts at 0\nevent e {}\ne → +1\n"
        let served = Served(shards: 2, corrections: nil)
        let source = StreamSource(address: try RedisAddress(parsing: "redis://127.0.0.1:1/w"), partitions: 1...2, count: 3)
        let writes = StateWrites(source: source)
        served.state.onChanges = { writes.add($0, shares: $1) }
        try served.state.take(policy: ServedPolicy(paths: ["p.rules"], files: ["p.rules": text]), program: try compileOrFail(text))
        func line(_ person: String, _ day: Int) -> String { #"{"citizen":"\#(person)","time":"2026-01-\#(day < 10 ? "0" : "")\#(day)","type":"e"}"# }
        /// What the lines taken set, by hash, as `person line` in order.
        func taken() throws -> [String: [String]] {
            guard let lines = writes.take() else { return [:] }
            var reader = RESPReader()
            reader.append(lines.batch.writer.bytes)
            var hashes: [String: [String]] = [:]
            while let command = try reader.next() {
                guard case .array(let parts) = command, parts.count >= 4, parts[0].text == "HSET" else { throw TestFailure("not an HSET: \(command)") }
                for i in stride(from: 2, to: parts.count, by: 2) { hashes[parts[1].text!, default: []].append(parts[i].text! + " " + parts[i + 1].text!) }
            }
            writes.confirm(lines.people)
            return hashes.mapValues { $0.sorted() }
        }
        func expected(_ people: [String], score: Int) -> [String: [String]] {
            var hashes: [String: [String]] = [:]
            for p in people {
                let k = Partitioning.partition(of: p, among: 3)
                guard k >= 1 else { continue }
                hashes["w:state:{\(k)}", default: []].append(p + " " + #"{"citizen":"\#(p)","score":\#(score),"flags":[],"denied":[],"granted":[]}"#)
            }
            return hashes.mapValues { $0.sorted() }
        }
        // 2,000 people, each twice in two bodies: most are marked.
        let people = (0..<2_000).map { "p\($0)" }
        for day in [1, 2] { served.state.take(body: Array(people.map { line($0, day) + "\n" }.joined().utf8)) }
        #expect(try taken() == expected(people, score: 2))
        #expect(writes.unwritten == 0)
        // Then three of them, one twice: few are marked.
        let few = ["p1999", "p7", "p1000"]
        served.state.take(body: Array((few + ["p7"]).map { line($0, 3) + "\n" }.joined().utf8))
        var scores = expected(["p1999", "p1000"], score: 3)
        for (hash, lines) in expected(["p7"], score: 4) { scores[hash, default: []] += lines; scores[hash]!.sort() }
        #expect(try taken() == scores)
        #expect(try taken() == [:])
    }

    @Test("a policy put while batches are held: its changes include theirs, and nothing stays held")
    func policyWhileHeld() throws {
        let text = "score starts at 0\nevent e {}\ne → +1\n"
        let served = Served(shards: 2, corrections: nil)
        let policy = ServedPolicy(paths: ["p.rules"], files: ["p.rules": text])
        try served.state.take(policy: policy, program: try compileOrFail(text))
        let body = Array(#"{"citizen":"a","time":"2026-01-01","type":"e"}"#.utf8) + [10] + Array(#"{"citizen":"b","time":"2026-01-02","type":"e"}"#.utf8) + [10]
        served.state.take(SourcedBatch(positions: [:], outsideClock: nil, body: body, publishes: false))
        #expect(served.state.heldLines == 2 && served.events.isEmpty && served.lookups(["a", "b"]) == [nil, nil])
        let changes = try served.state.take(policy: policy, program: try compileOrFail(text)).changes
        #expect(changes.map { String(decoding: $0.person, as: UTF8.self) } == ["a", "b"])
        #expect(served.state.heldLines == 0)
        #expect(served.lookups(["a", "b"]) == [#"{"citizen":"a","score":1,"flags":[],"denied":[],"granted":[]}"#,
                                                #"{"citizen":"b","score":1,"flags":[],"denied":[],"granted":[]}"#])
        #expect(served.events.count == 2)
    }
}

/// A body dealt to shards in one pass (`LineShares`): every line once, in
/// order, with its number; each in the share that owns its person, as the
/// `--jobs` router decides; blank, too long and unreadable lines share 0's.
@Suite("Lines dealt to shards")
struct LineSharesTests {
    @Test("every line once with its number: ids first or later, blank, CRLF, too long, unparseable, no final newline")
    func everyLineOnce() throws {
        let program = try compileOrFail("event e {}\ne → +1\n")
        let lines = [
            #"{"citizen":"a","time":"2026-01-01","type":"e"}"#,
            "",
            #"{"time":"2026-01-01","citizen":"b","type":"e"}"#,
            "   \r",
            #"{"citizen":"c","time":"2026-01-01","type":"e"}"# + "\r",
            String(repeating: "x", count: 200),
            "not json",
            #"{"citizen":"d\u00e9","time":"2026-01-01","type":"e"}"#,
            #"{"citizen":"e","time":"2026-01-01","type":"e"}"#,
        ]
        let body = Array(lines.joined(separator: "\n").utf8)
        for count in [2, 3, 7] {
            var router = ParallelStream.Router(program: program, personKey: .citizen, count: count)
            defer { router.deallocate() }
            let dealt = body.withUnsafeBufferPointer { LineShares($0, count: count, personKey: .citizen, router: &router, maxLineBytes: 100) }
            #expect(dealt.lineCount == lines.count)
            let numbers = dealt.shares.flatMap { $0.map(\.number) }.sorted()
            #expect(numbers == Array(1...lines.count), "every line once")
            for (share, mine) in dealt.shares.enumerated() {
                #expect(mine.map(\.number) == mine.map(\.number).sorted(), "in order")
                for line in mine {
                    let text = lines[line.number - 1]
                    if line.count < 0 {
                        #expect(share == 0 && line.start == 200)
                    } else if line.isBlank {
                        #expect(share == 0 && text.allSatisfy { $0 == " " || $0 == "\r" })
                    } else {
                        let bytes = body[line.start..<(line.start + line.count)]
                        #expect(String(decoding: bytes, as: UTF8.self) == text.replacingOccurrences(of: "\r", with: ""))
                        let owner = Array(bytes).withUnsafeBufferPointer { router.owner(of: $0) }
                        #expect(share == owner, "line \(line.number) in the share of its person")
                    }
                }
            }
        }
    }
}
