/// The audit trail (`rules run --trace FILE`): one NDJSON record per state
/// change, in order. Schema and versioning: docs/TRACE.md.
///
/// Event rules' changes are recorded as they are applied. A `while` rule
/// starts or stops holding either because of an event (recorded at it) or
/// because time passed — a timed effect ended, an event left a window — and
/// then at the exact instant it happened, found by evaluating the state rules
/// at each such instant between a person's events and up to the final clock.
final class Tracer: EngineObserver {
    private let program: Program
    /// Where the records go: the trail's JSON (`TraceRecord.JSON`), or a
    /// reader of typed records (the explanation page).
    private let emit: (TraceRecord) -> Void
    /// (buffer, window) of every windowed aggregate a `while` rule reads.
    private let stateWindows: [(buffer: Int, window: Int64)]
    private var held: [Int: [Bool]] = [:]
    /// Since when each `while` rule holds, per person (global rule index).
    private(set) var holdingSince: [Int: [Int: Int64]] = [:]
    private var checkedUntil: [Int: Int64] = [:]
    private var before: Int64 = 0
    /// What event rules had in force (end per slot) before this event: a
    /// lift of something not in force is not a change, so not a record.
    private var endsBefore: [Int64] = []
    /// The person's attributes before the event (what a set changed from).
    private var attributesBefore: [Int64] = []
    /// Only this person's changes, when set (for one person's page).
    private let only: [UInt8]?

    /// Called when the trail ends (`finishTrace`): the JSON writer flushes.
    private let onFinish: () -> Void
    /// Each person's records not yet taken (`takeChanges`), when a timeline
    /// files them under the events that made them; nil otherwise (a trail of
    /// a whole stream is not kept in memory).
    private var kept: [String: [TraceRecord]]?

    init(program: Program, only: String? = nil, keepingChanges: Bool = false,
         emit: @escaping (TraceRecord) -> Void, onFinish: @escaping () -> Void = {}) {
        self.program = program
        self.emit = emit
        self.onFinish = onFinish
        kept = keepingChanges ? [:] : nil
        self.only = only.map { Array($0.utf8) }
        var windows = Set<[Int64]>()
        for rule in program.policy.stateRules { Self.windows(rule.condition, into: &windows) }
        stateWindows = windows.map { (Int($0[0]), $0[1]) }.sorted { ($0.buffer, $0.window) < ($1.buffer, $1.window) }
    }

    private static func windows(_ ir: IR, into set: inout Set<[Int64]>) {
        switch ir {
        case .aggregate(let b, let w, _): set.insert([Int64(b), w])
        case .unary(_, let a): windows(a, into: &set)
        case .binary(_, let a, let b): windows(a, into: &set); windows(b, into: &set)
        case .inList(let a, let items): windows(a, into: &set); items.forEach { windows($0, into: &set) }
        case .call(_, let args): args.forEach { windows($0, into: &set) }
        case .conditional(let c, let a, let b): windows(c, into: &set); windows(a, into: &set); windows(b, into: &set)
        default: break
        }
    }

    // MARK: - Hooks

    /// Before an event: what time alone changed since the person's last one.
    func before(person: Int, isNew: Bool, time: Int64, engine: Engine) {
        if let only, !engine.people.key(person).elementsEqual(only) { return }
        endsBefore = (0..<engine.store.slotCount).map { engine.store.end(person, $0) }
        attributesBefore = (0..<engine.store.attributeCount).map { engine.store.attribute(person, $0) }
        if isNew {
            record(engine, person, line: engine.context.line, time: time, rule: nil,
                   .new(scoreAfter: engine.store.score(person), attributes: engine.program.policy.attributes.enumerated().map {
                       ($0.element.name, AttributeWord.text(engine.program.attributeStarts[$0.offset], as: $0.element.type))
                   }))
        } else {
            catchUp(person, to: time, engine: engine)
        }
        before = engine.store.score(person)
    }

    /// After an event: what its rules did, then the `while` rules that
    /// started or stopped holding because of it.
    func after(person: Int, time: Int64, engine: Engine) {
        if let only, !engine.people.key(person).elementsEqual(only) { return }
        // A timed rule's firing has no line: time alone fired it.
        let line: Int? = engine.firingTimer ? nil : engine.context.line
        var running = before
        var inForce = endsBefore.map { $0 > time }
        var attributes = attributesBefore
        for (k, (rule, _, _)) in engine.fired.enumerated() {
            // One score record per rule: its changes, each rounded, summed
            // (after its `set score to`, if it has one: the record's change
            // is then what the rule did to the score, from before to after).
            if rule.effects.contains(where: { switch $0 { case .score, .setScore: return true; default: return false } }) {
                // As the engine ran the event's changes: one at a time,
                // each stopping at the score's limit.
                let after = engine.scoreAfter(fired: k)
                let change = after - running
                record(engine, person, line: line, time: time, rule: rule.index,
                       .score(change: change, before: running, after: after))
                running = after
            }
            for (j, effect) in rule.effects.enumerated() {
                switch effect {
                case .score, .setScore: continue
                case .setAttribute(let a, _):
                    let word = engine.attributeValue(fired: k, effect: j), type = engine.program.policy.attributes[a].type
                    record(engine, person, line: line, time: time, rule: rule.index,
                           .attribute(name: engine.program.policy.attributes[a].name,
                                      before: AttributeWord.text(attributes[a], as: type), after: AttributeWord.text(word, as: type)))
                    attributes[a] = word
                case .set(let slot, let duration, let computed):
                    inForce[slot] = true
                    let (kind, name, reason) = describe(slot: slot)
                    let until = computed != nil ? engine.computedEnd(fired: k, effect: j) : duration.map { Timestamp.adding(time, $0) }
                    record(engine, person, line: line, time: time, rule: rule.index, .set(kind, name: name, until: until, reason: reason))
                case .lift(let slot):
                    guard slot >= 0, inForce[slot] else { continue }
                    inForce[slot] = false
                    let (kind, name, reason) = describe(slot: slot)
                    record(engine, person, line: line, time: time, rule: rule.index, .lift(kind, name: name, reason: reason))
                }
            }
        }
        let final = engine.store.score(person)
        if final != running {
            record(engine, person, line: line, time: time, rule: nil, .clamp(before: running, after: final))
        }
        transitions(person, at: time, line: line, engine: engine)
        checkedUntil[person] = time
    }

    /// After a correction: the `retract` or `late` record with the score
    /// before and after, then what event rules' effects now are where they
    /// differ as of `now` (a lift, then the new end if any: a reader that
    /// keeps the latest end since the last lift gets the rebuilt one), then
    /// the `while` rules that started or stopped holding.
    func corrected(person: Int, _ correction: Correction, now: Int64, engine: Engine) {
        if let only, !engine.people.key(person).elementsEqual(only) { return }
        let after = engine.store.score(person)
        let line: Int
        switch correction {
        case .retraction(let at, let time, let target, let reason, let remaining):
            line = at
            record(engine, person, line: at, time: time, rule: nil,
                   .retract(target: target, reason: reason, before: before, after: after, remaining: remaining))
        case .late(let at, let time):
            line = at
            record(engine, person, line: at, time: time, rule: nil, .late(before: before, after: after))
        }
        for slot in 0..<engine.program.targetSlotCount {
            let was = endsBefore[slot] > now ? endsBefore[slot] : PersonStore.none
            let end = engine.store.end(person, slot)
            let isNow = end > now ? end : PersonStore.none
            guard was != isNow else { continue }
            let (kind, name, reason) = describe(slot: slot)
            if was != PersonStore.none { record(engine, person, line: line, time: now, rule: nil, .lift(kind, name: name, reason: reason)) }
            if isNow != PersonStore.none {
                record(engine, person, line: line, time: now, rule: nil,
                       .set(kind, name: name, until: isNow == PersonStore.forever ? nil : isNow, reason: reason))
            }
        }
        transitions(person, at: now, line: line, engine: engine)
        checkedUntil[person] = now
    }

    /// At the end: time-driven changes up to the report's clock, for
    /// everyone, in the report's order.
    func finish(at clock: Int64?, engine: Engine) {
        guard let clock else { return onFinish() }
        for person in engine.sortedPeople() where only.map({ engine.people.key(person).elementsEqual($0) }) ?? true {
            catchUp(person, to: clock, engine: engine)
        }
        onFinish()
    }

    // MARK: - State rules over time

    /// Evaluates the person's state rules at every instant in
    /// (last check, `time`] where a timed effect ends or an event leaves a
    /// window, recording each start and stop at that instant.
    private func catchUp(_ person: Int, to time: Int64, engine: Engine) {
        guard let from = checkedUntil[person], from < time else { return }
        var instants = Set<Int64>()
        for k in 0..<engine.program.targetSlotCount {
            let end = engine.store.end(person, k)
            if end > from && end <= time { instants.insert(end) }
        }
        for (b, w) in stateWindows {
            for t in engine.store.buffers[b].times(person: person) {
                let exit = Timestamp.adding(t, w)
                if exit > from && exit <= time { instants.insert(exit) }
            }
        }
        for instant in instants.sorted() { transitions(person, at: instant, line: nil, engine: engine) }
        checkedUntil[person] = time
    }

    private func transitions(_ person: Int, at time: Int64, line: Int?, engine: Engine) {
        let count = program.stateRules.count
        guard count > 0 else { return }
        engine.context.focus(person: person, now: time)
        engine.context.evaluateStateRules()
        let now = Array(engine.context.stateRulesHeld)
        let was = held[person] ?? [Bool](repeating: false, count: count)
        for k in 0..<count where now[k] != was[k] {
            let rule = program.stateRules[k]
            if now[k] { holdingSince[person, default: [:]][rule.index] = time } else { holdingSince[person]?[rule.index] = nil }
            let holds = rule.effects.map { (kind: $0.kind, name: program.policy.names(of: $0.kind)[$0.name]) }
            record(engine, person, line: line, time: time, rule: rule.index, now[k] ? .start(holds: holds) : .stop(holds: holds))
        }
        held[person] = now
    }

    // MARK: - Records

    private func describe(slot: Int) -> (kind: TargetKind, name: String, reason: String?) {
        let (kind, name, reason) = program.target(ofSlot: slot)
        return (kind, program.policy.names(of: kind)[name], reason.map { program.policy.denialReasons[$0] })
    }

    private func record(_ engine: Engine, _ person: Int, line: Int?, time: Int64, rule: Int?, _ change: TraceRecord.Change) {
        let r = TraceRecord(line: line, time: time, person: engine.people.keyString(person), rule: rule, change: change)
        kept?[r.person, default: []].append(r)
        emit(r)
    }

    var keepsChanges: Bool { kept != nil }

    /// The person's records not yet taken, left where they are.
    func pending(_ person: String) -> [TraceRecord] { kept?[person] ?? [] }

    func startKeeping() { if kept == nil { kept = [:] } }

    /// The person's records since the last take.
    func take(_ person: String) -> [TraceRecord] {
        kept?.removeValue(forKey: person) ?? []
    }
}

extension Engine {
    /// Turns the audit trail on; `write` receives NDJSON bytes in order
    /// (docs/TRACE.md).
    public func enableTrace(only person: String? = nil, write: @escaping ([UInt8]) -> Void) {
        enableTrace(only: person, write: write, records: nil)
    }

    /// The trail as NDJSON (`write`), as typed records (`records`: the
    /// explanation page draws them), or both. `keepingChanges`: each
    /// person's records are also kept until `takeChanges(of:)`, so that a
    /// timeline files them under the event that made them.
    package func enableTrace(only person: String? = nil, write: (([UInt8]) -> Void)? = nil,
                             records: ((TraceRecord) -> Void)? = nil, keepingChanges: Bool = false) {
        let json = write.map { TraceRecord.JSON(sites: RuleSite.all(in: program), write: $0) }
        let emit: (TraceRecord) -> Void = switch (json, records) {
        case (let json?, let records?): { json.append($0); records($0) }
        case (let json?, nil): json.append
        case (nil, let records?): records
        case (nil, nil): { _ in }
        }
        // A trail turned on after a timeline began keeps feeding it.
        let keep = keepingChanges || (observer as? Tracer)?.keepsChanges == true
        observer = Tracer(program: program, only: person, keepingChanges: keep, emit: emit, onFinish: { json?.flush() })
    }

    /// The trail's records of the timed rules that fire for `person` by
    /// `time` though they have not fired for good (`asOf`'s copy): what an
    /// explanation shows "as time passed". Told to a tracer of its own, so
    /// the engine's trail hears nothing.
    package func timedFirings(of person: String, at time: Int64) -> [TraceRecord] {
        guard program.hasTimers, let p = personIndex(person) else { return [] }
        var records: [TraceRecord] = []
        let listener = Tracer(program: program, only: person, emit: { records.append($0) }, onFinish: {})
        asOf(p, time, telling: listener) {}
        let timed = Set(program.timers.map(\.rule))
        return records.filter { $0.line == nil && $0.rule.map(timed.contains) == true }
    }

    /// What time alone has changed for the person since their latest
    /// event (after `finishTrace(asOf:)`), not taken: their next event's
    /// entry will still list it.
    package func pendingChanges(of person: String) -> [TraceRecord] {
        (observer as? Tracer)?.pending(person) ?? []
    }

    /// Makes sure the trace keeps each person's changes for a timeline
    /// (`PersonWatch`, `LiteralFeeder`): turns it on, or on to keeping.
    /// A trace already on keeps whom it traces: records of people no
    /// timeline takes stay until the engine goes, so a one-person watch
    /// wants a one-person trace (`rules explain` makes one).
    package func keepTraceChanges(only person: String? = nil) {
        if let tracer = observer as? Tracer { tracer.startKeeping() } else { enableTrace(only: person, keepingChanges: true) }
    }

    /// What the person's state went through since the last take: the
    /// records of their latest event, after any that time alone made
    /// before it. Empty unless the trace keeps changes.
    package func takeChanges(of person: String) -> [TraceRecord] {
        guard let tracer = observer as? Tracer, tracer.keepsChanges else {
            // A timeline would show what fired but not what it changed.
            assertionFailure("a timeline reads an engine whose trace does not keep changes (enableTrace(keepingChanges: true))")
            return []
        }
        return tracer.take(person)
    }

    /// Records what time alone changes up to the report's clock (timed
    /// rules fire, effects end), and writes out what is left of the trail.
    /// Call once, after the stream: the timed rules' firings are kept.
    public func finishTrace(asOf: Int64? = nil, firingTimers: Bool = true) {
        guard let tracer = observer as? Tracer else { return }
        // Timed rules due by then fire now, for the trail to record them
        // (committed: no later event of anyone's may follow; an
        // explanation in the middle of a stream passes false).
        if firingTimers, let time = asOf ?? clock { fireAllTimers(upTo: time) }
        tracer.finish(at: asOf ?? clock, engine: self)
    }
}
