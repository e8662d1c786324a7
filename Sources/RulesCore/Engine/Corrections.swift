/// How far back corrections may reach (`--retain`, `--lateness`; the
/// contract's "Corrections: ids, retractions, late events").
public struct Corrections: Sendable, Equatable {
    /// How long after its time an event is kept, so that a retraction or a
    /// late event can still reach it (ticks).
    public let retain: Int64
    /// How much earlier than a person's previous event an event may be and
    /// still be applied in time order (ticks); at most `retain`.
    public let lateness: Int64
    /// Kept bytes before the first compaction of what is out of reach
    /// (`History`); 0 compacts before every line, so that tests exercise
    /// it on short streams.
    package var sweepFloor = 64 << 20

    /// Ticks (microseconds).
    package init(retain: Int64, lateness: Int64 = 0) {
        precondition(retain >= 0 && lateness >= 0 && lateness <= retain, "lateness must lie within the retained history")
        self.retain = retain
        self.lateness = lateness
    }

    /// Everything kept (1000 years, the language's longest duration), no
    /// lateness: tests and the REPL, whose streams are short.
    package static let keepingEverything = Corrections(retain: 1000 * 365 * 86_400 * Timestamp.perSecond, lateness: 0)

    /// Keeps each person's events for `retain` after their time, and
    /// applies events up to `lateness` late in time order; nil when
    /// `lateness` exceeds `retain` or either is negative.
    public init?(retain: Duration, lateness: Duration = .zero) {
        func ticks(_ d: Duration) -> Int64? {
            let (seconds, atto) = d.components
            guard seconds >= 0, atto >= 0, seconds <= 1000 * 31_536_000 else { return nil }
            return seconds * Timestamp.perSecond + atto / 1_000_000_000_000
        }
        guard let r = ticks(retain), let l = ticks(lateness), l <= r else { return nil }
        self.init(retain: r, lateness: l)
    }
}

/// Retractions and late events (docs/LANGUAGE.md, "Corrections"): with kept
/// history (`Engine.enableCorrections`), a line that takes an event back or
/// arrives late rebuilds its person from their kept events, replayed through
/// the same parser and `Engine.apply` as every line — so a corrected person
/// is, by construction, what the stream without the retracted event (or in
/// time order) makes of them. Only the person concerned is replayed: a
/// correction costs their kept history, never the stream's.
extension EventApplier {
    /// A parsed line, with history kept: an event in order is applied and
    /// kept; a late one or a retraction rebuilds its person.
    mutating func applyKeeping(_ e: EventParser.Parsed, line: UnsafeBufferPointer<UInt8>, number: Int,
                               history: History) -> Outcome {
        let at = engine.lineBase + number
        if let r = e.retraction { return retract(e, r, line: line, at: at, history: history) }
        let known = engine.people.find(e.person)
        // A line too late for `--lateness` is rejected for that, whatever
        // its id: whether an old event with the same id is still in memory
        // depends on when the kept history was last compacted, which
        // depends on the engine's other people (a shard's, under `--jobs`
        // or `rules serve`). A line in time can only repeat an id that is
        // still reachable, and reachable events are never compacted.
        let tooLate = known.map { e.time < engine.store.lastTime($0) && engine.store.lastTime($0) - e.time > history.lateness } ?? false
        if !tooLate, let id = e.id, let p = known, let same = history.find(person: p, id: id), history.reaches(same.time, from: e.time) {
            return .rejected("duplicate id \(quoted(id)): this \(engine.personKey.name)'s event on line \(same.line) has it", e)
        }
        if let p = known, e.time < engine.store.lastTime(p), engine.store.lastTime(p) - e.time <= history.lateness {
            return applyLate(e, person: p, line: line, at: at, history: history)
        }
        if let reason = engine.apply(person: e.person, event: e.event, time: e.time) { return .rejected(reason, e) }
        history.keep(person: engine.lastPerson, time: e.time, line: at, id: e.id, bytes: line)
        if history.isOverBudget { sweepPending = true }
        return .applied(e)
    }

    /// Compacts everyone with kept events out of reach, then lets the
    /// forgotten bytes go: kept history stays within twice what the
    /// retention needs (or the sweep's floor, 64 MiB), however long the
    /// stream, and a sweep costs in proportion to what it folds.
    mutating func sweep() {
        sweepPending = false
        guard let history = engine.history else { return }
        for p in 0..<engine.people.count where history.isDue(p, lastTime: engine.store.lastTime(p)) { compact(p, history) }
        history.endSweep()
    }

    /// Fills window buffers a changed policy added (a resume under it) from
    /// the kept history: each kept event of the buffer's type that stands,
    /// in time order, its condition evaluated on its own line — only for
    /// buffers whose condition reads nothing but the event (a condition on
    /// the score or a flag would need the state before each past event).
    /// Returns the buffers filled.
    mutating func fillFromHistory(_ buffers: [Int]) -> [Int] {
        guard let history = engine.history else { return [] }
        let program = engine.program
        let fillable = Self.fillable(buffers, in: program)
        guard !fillable.isEmpty else { return [] }
        for p in 0..<engine.people.count {
            for kept in history.events(of: p) where kept.retractedAt == nil {
                engine.beginEvent(line: 0)
                guard case .event(let e) = parser.parse(kept.bytes, into: context), let event = e.event else { continue }
                for b in fillable where program.policy.buffers[b].events.contains(event) {
                    engine.feed(buffer: b, person: p, time: e.time)
                }
            }
        }
        return fillable
    }

    /// Of `buffers`, those kept history can fill: a `count()` or `sum()`
    /// window (not a counted rule's) whose condition reads only the event.
    static func fillable(_ buffers: [Int], in program: Program) -> [Int] {
        buffers.filter { b in
            let spec = program.policy.buffers[b]
            return spec.cap == nil && (spec.condition?.readsOnlyTheEvent ?? true)
        }
    }

    /// Folds the person's kept events that no correction can reach any more
    /// into their base state, and forgets them. The state the person shows
    /// does not change.
    private mutating func compact(_ p: Int, _ history: History) {
        let reach = history.reach(lastTime: engine.store.lastTime(p))
        let (live, failures) = engine.beginCompacting(p)
        for kept in history.events(of: p) where kept.time < reach && kept.retractedAt == nil && !kept.sealed {
            engine.beginEvent(line: 0)
            engine.context.line = kept.line
            guard case .event(let e) = parser.parse(kept.bytes, into: context),
                  engine.apply(person: e.person, event: e.event, time: e.time) == nil else {
                preconditionFailure("a kept event is applied again as it was the first time")
            }
        }
        engine.endCompacting(p, live: live, failures: failures)
        history.drop(person: p, before: reach)
    }

    private func quoted(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        JSONWriter.quoted(String(decoding: bytes, as: UTF8.self))
    }

    /// An event earlier than the person's latest, within `--lateness`: kept
    /// in time order (after events of the same time), then the person is
    /// rebuilt. Its declared fields are checked first, as `Engine.apply`
    /// would: a rejected late event changes nothing.
    private mutating func applyLate(_ e: EventParser.Parsed, person p: Int, line: UnsafeBufferPointer<UInt8>, at: Int,
                                    history: History) -> Outcome {
        if let event = e.event, let reason = engine.validateDeclaredFields(event) { return .rejected(reason, e) }
        if let base = history.bases[p], e.time < base.lastTime {
            return .rejected("time \(Timestamp.format(e.time)) is earlier than this \(engine.personKey.name)'s state carried over from the previous policy (at \(Timestamp.format(base.lastTime)))", e)
        }
        history.keep(person: p, time: e.time, line: at, id: e.id, bytes: line)
        return rebuilt(p, line: line, time: e.time, history: history) { _ in .late(line: at, time: e.time) }
    }

    /// A retraction: its target must be a kept, not yet retracted event of
    /// the same person, no older than `--retain` before the retraction, and
    /// the retraction's time keeps the order rule (late within
    /// `--lateness`, but never before its target).
    private mutating func retract(_ e: EventParser.Parsed, _ r: EventParser.Retraction, line: UnsafeBufferPointer<UInt8>,
                                  at: Int, history: History) -> Outcome {
        let cannot = "cannot retract \(quoted(r.target))"
        guard let p = engine.people.find(e.person), let target = history.find(person: p, id: r.target) else {
            let forgotten = engine.people.find(e.person).map { history.bases[$0] != nil } ?? false
            return .rejected(forgotten
                ? "\(cannot): no kept event of this \(engine.personKey.name) has that id (events are kept for \(DurationText.describe(history.retain)))"
                : "\(cannot): no event of this \(engine.personKey.name) has that id", e)
        }
        if let line = target.retractedAt { return .rejected("\(cannot): already retracted on line \(line)", e) }
        if target.sealed {
            return .rejected("\(cannot): it was applied under the policy in force before the resume; its effects are part of the state carried over", e)
        }
        if !history.reaches(target.time, from: e.time) {
            return .rejected("\(cannot): no longer retained (its event at \(Timestamp.format(target.time)) is more than \(DurationText.describe(history.retain)) before the retraction)", e)
        }
        if e.time < target.time {
            return .rejected("\(cannot): the retraction's time \(Timestamp.format(e.time)) is earlier than its event's, \(Timestamp.format(target.time))", e)
        }
        let last = engine.store.lastTime(p)
        if e.time < last && last - e.time > history.lateness {
            return .rejected("time \(Timestamp.format(e.time)) is earlier than this \(engine.personKey.name)'s previous event at \(Timestamp.format(last))", e)
        }
        history.markRetracted(person: p, target, line: at)
        let id = String(decoding: r.target, as: UTF8.self), reason = r.reason.map { String(decoding: $0, as: UTF8.self) }
        return rebuilt(p, line: line, time: e.time, history: history) {
            .retraction(line: at, time: e.time, target: id, reason: reason, remaining: $0)
        }
    }

    /// Rebuilds person `p` from their kept events that are not retracted,
    /// then moves their clock to `time` if it is later than theirs (a
    /// retraction counts as an applied line); the line is parsed again for the outcome, since the replay
    /// reused the parser's memory.
    private mutating func rebuilt(_ p: Int, line: UnsafeBufferPointer<UInt8>, time: Int64, history: History,
                                  _ correction: (_ remaining: Int) -> Correction) -> Outcome {
        let now = max(engine.store.lastTime(p), time)
        let failures = engine.beginRebuilding(p, now: now)
        let remaining = history.standingCount(p)
        for kept in history.events(of: p) where kept.retractedAt == nil && !kept.sealed {
            engine.beginEvent(line: 0)
            engine.context.line = kept.line
            guard case .event(let e) = parser.parse(kept.bytes, into: context),
                  engine.apply(person: e.person, event: e.event, time: e.time) == nil else {
                preconditionFailure("a kept event is applied again as it was the first time")
            }
        }
        engine.endRebuilding(p, now: now, failures: failures, correction(remaining))
        guard case .event(let again) = parser.parse(line, into: nil) else { preconditionFailure("the line parsed a moment ago") }
        return .applied(again)
    }
}
