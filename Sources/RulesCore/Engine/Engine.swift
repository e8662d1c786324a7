/// Told of every applied event, before and after its effects, with the
/// engine to read. The audit trail (Explain/Trace.swift) is one; the engine
/// knows nothing more of it.
protocol EngineObserver: AnyObject {
    func before(person: Int, isNew: Bool, time: Int64, engine: Engine)
    func after(person: Int, time: Int64, engine: Engine)
    /// After a correction rebuilt the person (`before` was told, with the
    /// time the correction takes effect, `now`); what it changed.
    func corrected(person: Int, _ correction: Correction, now: Int64, engine: Engine)
}

/// What rebuilt a person (docs/LANGUAGE.md, "Corrections"): line `line`,
/// a retraction of the event with id `target` at `time`, or an event of
/// `time` that arrived late.
enum Correction {
    case retraction(line: Int, time: Int64, target: String, reason: String?, remaining: Int)
    case late(line: Int, time: Int64)
}

/// Applies events to per-person state, exactly as the contract's "semantics
/// of one event" says, and produces the final report as of a clock.
package final class Engine {
    package let program: Program
    let store: PersonStore
    let context: EvalContext
    let people = ByteTable(capacity: 1024)
    /// The key naming the person in the stream's lines and the report's.
    package let personKey: PersonKey
    /// The latest time of any applied event (nil before the first).
    @exclusivity(unchecked) public private(set) var clock: Int64? = nil
    /// The score of the last event's person before it was applied (the
    /// explanations' timelines record it).
    @exclusivity(unchecked) private(set) var scoreBefore: Int64 = 0
    /// Told of every applied event (the audit trail, when asked for); off
    /// costs one check per event.
    var observer: EngineObserver? = nil {
        didSet { observing = observer != nil }
    }
    @exclusivity(unchecked) private var observing = false

    /// Each person's kept events, when corrections may reach back
    /// (`enableCorrections`); nil keeps nothing (the default).
    private(set) var history: History? = nil

    /// The score of the person being rebuilt, before the correction.
    @exclusivity(unchecked) private var rebuildingFrom: Int64 = 0

    /// The person of the last event applied (the engine's index).
    @exclusivity(unchecked) private(set) var lastPerson = 0

    /// Every person an applied event or a correction reached since it was
    /// last emptied, repeats and all, when someone keeps it (the service's
    /// change feed, `ReportChanges`); nil keeps nothing. Cheaper than
    /// reading the ids out of the lines again.
    @exclusivity(unchecked) package var touched: [Int]? = nil

    /// Set when other threads look people up in this engine while it
    /// applies events (the service's lookups, `findPerson`): a new person
    /// is then added holding it, and they look holding it. Only this
    /// engine's thread adds people, so its own lookups need no lock.
    /// Set once, before those threads read it (`PublishedLines.install`),
    /// and read for every event: no run-time exclusivity check.
    @exclusivity(unchecked) package var peopleLock: Lock? = nil

    /// A person's number, from any thread (see `peopleLock`).
    package func findPerson(_ key: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let peopleLock else { return people.find(key) }
        return peopleLock.locked { people.find(key) }
    }

    /// The number of `key`, added when new (holding `peopleLock`, if set,
    /// only then).
    @inline(__always)
    private func intern(_ key: UnsafeBufferPointer<UInt8>, hash: UInt32?) -> (Int, Bool) {
        if let peopleLock {
            if let p = hash.map({ people.find(key, hash: $0) }) ?? people.find(key) { return (p, false) }
            peopleLock.lock()
            defer { peopleLock.unlock() }
            return hash.map { people.intern(key, hash: $0) } ?? people.intern(key)
        }
        return hash.map { people.intern(key, hash: $0) } ?? people.intern(key)
    }

    // Scratch space for one event, sized once for the largest event type
    // (plain memory: no reference counting on the per-event path).
    private let firedSteps: UnsafeMutableBufferPointer<(step: Int, amount: Int64)>
    @exclusivity(unchecked) private var firedCount = 0
    private let matched: UnsafeMutableBufferPointer<Bool>
    private let pendingFeeds: UnsafeMutableBufferPointer<(buffer: Int, value: Double)>
    /// By effect step, the end a computed `for` gave when its rule last
    /// fired (phase 1 computes it from the state before the event; phase 3
    /// and the trail read it).
    private let computedEnds: UnsafeMutableBufferPointer<Int64>
    /// By effect step, the word a `set NAME to` gave when its rule last
    /// fired (phase 1 computes it from the state before the event).
    private let attributeValues: UnsafeMutableBufferPointer<Int64>
    /// By fired rule, the value its `set score to` gave (`noSet`: none).
    private let firedSets: UnsafeMutableBufferPointer<Int64>
    /// By fired rule, the sum of its changes' sizes (see `applyEffects`);
    /// by effect step, a computed change, rounded.
    private let firedSizes: UnsafeMutableBufferPointer<Int64>
    private let changes: UnsafeMutableBufferPointer<Int64>
    /// By counted rule of the event (as `matched`), whether an `every`
    /// rule fired: phase 2 empties its counter.
    private let restarted: UnsafeMutableBufferPointer<Bool>

    /// The end that effect `j` of the `k`-th rule fired on the last event
    /// computed (its `for` reads the event or the state).
    func computedEnd(fired k: Int, effect j: Int) -> Int64 {
        computedEnds[program.steps.rules[firedSteps[k].step].effects.lowerBound + j]
    }

    /// The event's running score (before the clamp) after the `k`-th rule
    /// that fired on the last event.
    func scoreAfter(fired k: Int) -> Int64 {
        // Run again as `applyEffects` ran it (the trail asks; the hot path
        // keeps no record of it).
        var base = scoreBefore, delta: Int64 = 0
        for j in 0...k {
            if firedSets[j] != Self.noSet { (base, delta) = (firedSets[j], firedSteps[j].amount) }
            else if delta.magnitude + UInt64(firedSizes[j]) < UInt64(Arithmetic.scoreLimit) { delta += firedSteps[j].amount }
            else { delta = addChanges(ofFired: j, to: delta) }
        }
        return Arithmetic.addScore(base, delta)
    }

    /// The word that attribute-setting effect `j` of the `k`-th rule fired
    /// on the last event gave.
    func attributeValue(fired k: Int, effect j: Int) -> Int64 {
        attributeValues[program.steps.rules[firedSteps[k].step].effects.lowerBound + j]
    }

    /// The rules that fired on the last event, with their rounded score
    /// change, in source order (tests, explanations and the trail read it).
    var fired: [(rule: CompiledEventRule, amounts: Int64, setTo: Int64?)] {
        (0..<firedCount).map { k in
            (program.eventRules[program.steps.rules[firedSteps[k].step].index], firedSteps[k].amount,
             firedSets[k] == Self.noSet ? nil : firedSets[k])
        }
    }

    /// The same without building a list: how many fired, and the `k`-th's
    /// global rule index and score change (the library's outcome).
    var firedRuleCount: Int { firedCount }
    func firedRule(_ k: Int) -> (index: Int, amount: Int64, setTo: Int64?) {
        (program.steps.rules[firedSteps[k].step].index, firedSteps[k].amount, firedSets[k] == Self.noSet ? nil : firedSets[k])
    }

    public init(program: Program, personKey: PersonKey = .citizen) {
        self.program = program
        self.personKey = personKey
        let buffers = program.policy.buffers.enumerated().map { (i, spec) in
            WindowBuffer(longestWindow: program.policy.bufferWindows[i], cap: spec.cap)
        }
        store = PersonStore(slotCount: program.slotCount, attributeStarts: program.attributeStarts, buffers: buffers)
        context = EvalContext(program: program, state: store)
        firedSteps = .allocate(capacity: max(1, program.steps.maxRules))
        matched = .allocate(capacity: max(1, program.steps.maxRules))
        pendingFeeds = .allocate(capacity: max(1, program.steps.maxFeeds))
        firedSets = .allocate(capacity: max(1, program.steps.maxRules))
        firedSizes = .allocate(capacity: max(1, program.steps.maxRules))
        changes = .allocate(capacity: max(1, program.steps.effects.count))
        changes.initialize(repeating: 0)
        restarted = .allocate(capacity: max(1, program.steps.maxRules))
        restarted.initialize(repeating: false)
        computedEnds = .allocate(capacity: max(1, program.steps.effects.count))
        computedEnds.initialize(repeating: 0)
        attributeValues = .allocate(capacity: max(1, program.steps.effects.count))
        attributeValues.initialize(repeating: 0)
    }

    deinit {
        restarted.deallocate()
        firedSets.deallocate()
        firedSizes.deallocate()
        changes.deallocate()
        attributeValues.deallocate()
        computedEnds.deallocate()
        firedSteps.deallocate()
        matched.deallocate()
        pendingFeeds.deallocate()
        typedStrings.deallocate()
    }

    /// The string values of a typed event (not read from a line), held
    /// while it is applied; reused, grown to the largest event.
    @exclusivity(unchecked) private var typedStrings = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 256)
    @exclusivity(unchecked) private var typedStringsUsed = 0

    /// Starts keeping the strings of a typed event.
    func beginTypedStrings() { typedStringsUsed = 0 }

    /// `s` copied into the engine's memory, as an engine string valid until
    /// the next typed event; nil when it does not fit (then
    /// `growTypedStrings` and set the event's fields again).
    @inline(__always)
    func keepTypedString(_ s: String) -> ByteString? {
        let start = typedStringsUsed
        guard s.utf8.count <= typedStrings.count - start else { return nil }
        let n = UnsafeMutableBufferPointer(rebasing: typedStrings[start...]).initialize(from: s.utf8).1
        typedStringsUsed += n
        return ByteString(base: UnsafePointer(typedStrings.baseAddress! + start), count: n)
    }

    /// Room for `bytes` bytes of one event's strings (what was kept is lost).
    func growTypedStrings(_ bytes: Int) {
        guard bytes > typedStrings.count else { return }
        typedStrings.deallocate()
        typedStrings = .allocate(capacity: max(bytes, 2 * typedStrings.count))
    }

    /// Starts a new event: forget the previous event's fields.
    @inline(__always)
    func beginEvent(line: Int) {
        context.fields.reset()
        context.line = lineBase + line
    }

    /// Lines of the stream applied before this engine's run (a resumed run):
    /// the notes on failed expressions count lines of the whole stream.
    @exclusivity(unchecked) package var lineBase = 0

    /// Adds a person with the state a checkpoint recorded; their index, or
    /// nil when the person exists already or the state does not fit.
    func restorePerson(key: UnsafeBufferPointer<UInt8>, score: Int64, lastTime: Int64, ends: [Int64],
                       entries: [[WindowBuffer.Entry]], attributes: [Int64]? = nil) -> Int? {
        guard key.count > 0, ends.count == store.slotCount, entries.count == store.buffers.count,
              attributes.map({ $0.count == store.attributeCount }) ?? true else { return nil }
        let (person, isNew) = intern(key, hash: nil)
        guard isNew else { return nil }
        store.addPerson(score: score)
        store.setLastTime(person, lastTime)
        for (slot, end) in ends.enumerated() { store.setEnd(person, slot, end) }
        for (k, word) in (attributes ?? []).enumerated() { store.setAttribute(person, k, word) }
        for (b, list) in entries.enumerated() where !store.buffers[b].restore(person: person, list) { return nil }
        return person
    }

    // MARK: - Corrections

    /// Keeps each person's events for `limits.retain`, so that retractions
    /// and late events can reach them (docs/LANGUAGE.md, "Corrections").
    /// Before the first event: what came before would not be kept.
    package func enableCorrections(_ limits: Corrections) {
        precondition(people.count == 0, "corrections are enabled before the first event")
        history = History(retain: limits.retain, lateness: limits.lateness, sweepFloor: limits.sweepFloor)
    }

    /// Puts a person back to where they were before their first event, to be
    /// rebuilt from their kept events; the observer hears of the rebuild as
    /// one change at `now` (when the correction takes effect), not of each
    /// event replayed, and notes on failed expressions are not counted twice.
    func beginRebuilding(_ person: Int, now: Int64) -> [EvalContext.FailureKey: (count: Int, firstLine: Int)] {
        if observing { observer!.before(person: person, isNew: false, time: now, engine: self) }
        touched?.append(person)  // a rebuild that replays nothing changes them too
        rebuildingFrom = store.score(person)
        observing = false
        resetToBase(person)
        return context.failures
    }

    /// The person back at their base (`History.bases`), or as before their
    /// first event.
    private func resetToBase(_ person: Int) {
        if let base = history?.bases[person] {
            store.setScore(person, base.score)
            store.setLastTime(person, base.lastTime)
            for (slot, end) in base.ends.enumerated() { store.setEnd(person, slot, end) }
            for k in 0..<store.attributeCount {
                store.setAttribute(person, k, k < base.attributes.count ? base.attributes[k] : store.attributeStarts[k])
            }
            for (b, buffer) in store.buffers.enumerated() { _ = buffer.restore(person: person, base.entries[b]) }
        } else {
            store.setScore(person, program.policy.startScore)
            store.setLastTime(person, Int64.min)
            for slot in 0..<store.slotCount { store.setEnd(person, slot, PersonStore.none) }
            for (k, start) in store.attributeStarts.enumerated() { store.setAttribute(person, k, start) }
            for buffer in store.buffers { _ = buffer.restore(person: person, []) }
        }
    }

    /// Starts folding a person's out-of-reach events into their base: their
    /// state as it is (to put back), and the notes so far; the person is at
    /// their base, and nobody is told (the state a reader sees does not
    /// change).
    func beginCompacting(_ person: Int) -> (live: History.Base, failures: [EvalContext.FailureKey: (count: Int, firstLine: Int)]) {
        let live = base(of: person)
        observing = false
        resetToBase(person)
        return (live, context.failures)
    }

    /// Ends it: the folded state becomes the person's base, and their state
    /// is put back as it was.
    func endCompacting(_ person: Int, live: History.Base, failures: [EvalContext.FailureKey: (count: Int, firstLine: Int)]) {
        history!.setBase(person, base(of: person))
        store.setScore(person, live.score)
        store.setLastTime(person, live.lastTime)
        for (slot, end) in live.ends.enumerated() { store.setEnd(person, slot, end) }
        for (k, word) in live.attributes.enumerated() { store.setAttribute(person, k, word) }
        for (b, buffer) in store.buffers.enumerated() { _ = buffer.restore(person: person, live.entries[b]) }
        context.failures = failures
        observing = observer != nil
    }

    /// Ends a rebuild: the person's clock is at least `time` (what they
    /// had, or the correction's time), as is the engine's.
    func endRebuilding(_ person: Int, now: Int64, failures: [EvalContext.FailureKey: (count: Int, firstLine: Int)],
                       _ correction: Correction) {
        context.failures = failures
        store.setLastTime(person, max(store.lastTime(person), now))
        clock = max(clock ?? now, now)
        firedCount = 0
        scoreBefore = rebuildingFrom
        observing = observer != nil
        if observing { observer!.corrected(person: person, correction, now: now, engine: self) }
    }

    /// A person's whole state, as a base to rebuild from (`History.Base`).
    func base(of person: Int) -> History.Base {
        History.Base(score: store.score(person), lastTime: store.lastTime(person),
                     ends: (0..<store.slotCount).map { store.end(person, $0) },
                     entries: store.buffers.map { $0.entries(person: person) },
                     attributes: (0..<store.attributeCount).map { store.attribute(person, $0) })
    }

    /// Records the event just parsed (its fields in the context) in buffer
    /// `b` for `person`, if its condition holds and its summed field is a
    /// number, as `feedBuffers` does for an event being applied.
    func feed(buffer b: Int, person: Int, time: Int64) {
        context.focus(person: person, now: time)
        if let condition = program.bufferConditions[b] {
            guard case .bool(true) = condition.eval(context) else { return }
        }
        var value = 1.0
        let field = program.bufferField[b]
        if field >= 0 {
            guard case .number(let x)? = context.fields.value(field) else { return }
            value = x
        }
        store.buffer(b) { $0.push(person: person, time: time, value: value) }
    }

    /// The latest event time a checkpoint recorded.
    func restoreClock(_ time: Int64) { clock = max(clock ?? time, time) }

    /// Prefetch hints from the stream reader, a few lines ahead: first the
    /// person's table slot, later (once it is cached) their state.
    @inline(__always)
    func prefetchSlot(_ person: UnsafeBufferPointer<UInt8>) { people.prefetch(person) }

    @inline(__always)
    func prefetchState(_ person: UnsafeBufferPointer<UInt8>) {
        if let p = people.find(person) {
            store.prefetch(p)
            history?.prefetch(p)
        }
    }

    /// The same hints given the id's hash (`ByteTable.hash`), which the
    /// parallel reader computed to route the line.
    @inline(__always)
    func prefetchSlot(hash: UInt32) { people.prefetch(hash: hash) }

    @inline(__always)
    func prefetchState(_ person: UnsafeBufferPointer<UInt8>, hash: UInt32) {
        if let p = people.find(person, hash: hash) {
            store.prefetch(p)
            history?.prefetch(p)
        }
    }

    /// Sets a field of the event being read; false on a duplicate key.
    @inline(__always)
    func setField(_ id: Int, _ value: Value) -> Bool {
        context.fields.set(id, value)
    }

    /// Applies one event whose fields were set with `setField`. Returns the
    /// reason when the event is rejected instead.
    /// `hash`: the id's `ByteTable.hash`, when the caller has it.
    func apply(person key: UnsafeBufferPointer<UInt8>, hash: UInt32? = nil, event: Int?, time: Int64) -> String? {
        if let event, let reason = validateDeclaredFields(event) { return reason }
        let (person, isNew) = intern(key, hash: hash)
        if isNew { store.addPerson(score: program.policy.startScore) }
        lastPerson = person
        touched?.append(person)
        // The row and the window entries at once, not one miss after the
        // other (free when the reader asked for them ahead, as it does).
        store.prefetch(person)
        if time < store.lastTime(person) {
            return "time \(Timestamp.format(time)) is earlier than this \(personKey.name)'s previous event at \(Timestamp.format(store.lastTime(person)))"
        }
        if program.hasTimers && !isNew { fireTimers(person, upTo: time) }
        store.setLastTime(person, time)
        clock = max(clock ?? time, time)
        scoreBefore = store.score(person)
        if observing { observer!.before(person: person, isNew: isNew, time: time, engine: self) }
        firedCount = 0
        if let event {
            context.focus(person: person, now: time)
            let rules = program.steps.rulesOfEvent[event]
            evaluateRules(rules)
            if program.hasTimers { checkArming(event) }
            feedBuffers(event, rules)
            applyEffects()
        }
        if program.hasTimers { setTimers(person, event: event, time: time) }
        if observing { observer!.after(person: person, time: time, engine: self) }
        return nil
    }

    // MARK: - Timed rules

    /// True while a timed rule fires (the trail's records of it name no
    /// line: time alone fired it).
    @exclusivity(unchecked) private(set) var firingTimer = false

    /// Fires each of the person's deadlines at or before `time`, earliest
    /// first (at the same instant, in source order), each as an event of
    /// its own at its deadline: before their event at `time`, or before
    /// their state is read as of it. An `every` rule is armed again, so it
    /// may fire more than once.
    func fireTimers(_ person: Int, upTo time: Int64) {
        let timers = program.timers
        while true {
            var next = -1, at = Int64.max
            for k in timers.indices {
                let deadline = store.end(person, timers[k].slot)
                if deadline != PersonStore.none && deadline <= time && deadline < at { (next, at) = (k, deadline) }
            }
            if next < 0 { return }
            // Periods skipped: the last of them is due next.
            if timers[next].repeatsAlike != nil && !observing && skipPeriods(next, person: person, from: at, upTo: time) { continue }
            fireTimer(next, person: person, at: at)
        }
    }

    /// An `every` rule whose firings all do the same (`TimerStep.
    /// repeatsAlike`), due at `from` and every period after it up to
    /// `time`: all its firings before another deadline of the person come
    /// up are done at once but the last, which then fires as any does (a
    /// person idle for years is a few steps, not one per period). The
    /// score after `m` firings is computed as `m` one at a time would give
    /// it: each adds the same change and clamps, so it moves one way and
    /// stops at a bound; a rule that sets the score gives the same score
    /// each time. Not while the trail listens: it records every firing.
    private func skipPeriods(_ k: Int, person: Int, from at: Int64, upTo time: Int64) -> Bool {
        let timer = program.timers[k]
        guard let step = timer.repeatsAlike else { return false }
        // The firings that come before every other deadline due by `time`.
        var bound = time == Int64.max ? time : time + 1
        for j in program.timers.indices where j != k {
            let deadline = store.end(person, program.timers[j].slot)
            if deadline != PersonStore.none && deadline < bound { bound = deadline }
        }
        guard bound > at else { return false }
        let skipped = (bound - 1 - at) / timer.delay  // firings after the one at `at` that are still before `bound`
        guard skipped >= 1 else { return false }
        let score = store.score(person)
        let lo = Swift.max(program.minScore ?? -Arithmetic.scoreLimit, -Arithmetic.scoreLimit)
        let hi = Swift.min(program.maxScore ?? Arithmetic.scoreLimit, Arithmetic.scoreLimit)
        let after: Int64
        if let setTo = step.setTo {
            after = clamp(Arithmetic.addScore(setTo, step.delta))
        } else {
            // Stepwise only from a score within the bounds (one always is,
            // but a changed policy's first firing clamps it there).
            guard score >= lo && score <= hi else { return false }
            let (total, overflow) = step.delta.multipliedReportingOverflow(by: skipped)
            if step.delta > 0 { after = overflow ? hi : Swift.min(hi, Arithmetic.addScore(score, total)) }
            else if step.delta < 0 { after = overflow ? lo : Swift.max(lo, Arithmetic.addScore(score, total)) }
            else { after = score }
        }
        store.setScore(person, after)
        store.setEnd(person, timer.slot, at + skipped * timer.delay)
        return true
    }

    /// Whether a deadline of the person is at or before `time`.
    func hasTimersDue(_ person: Int, at time: Int64) -> Bool {
        for timer in program.timers {
            let deadline = store.end(person, timer.slot)
            if deadline != PersonStore.none && deadline <= time { return true }
        }
        return false
    }

    /// Timed rule `k` fires for the person at `time`: its effects, as an
    /// event rule's, against their state as of then.
    private func fireTimer(_ k: Int, person: Int, at time: Int64) {
        let timer = program.timers[k]
        store.setEnd(person, timer.slot, timer.repeats ? Timestamp.adding(time, timer.delay) : PersonStore.none)
        firingsSeen?.append(timer.rule)
        touched?.append(person)
        scoreBefore = store.score(person)
        firingTimer = true
        defer { firingTimer = false }
        if observing { observer!.before(person: person, isNew: false, time: time, engine: self) }
        context.focus(person: person, now: time)
        let step = program.steps.timedRules.lowerBound + k
        evaluateRules(step..<step + 1)
        applyEffects()
        if observing { observer!.after(person: person, time: time, engine: self) }
        firedCount = 0
    }

    /// Phase 1 for timed rules: which of those the event arms hold their
    /// condition, against the state before it (as its rules' do).
    private func checkArming(_ event: Int) {
        armed.removeAll(keepingCapacity: true)
        for k in program.armsOfEvent[event] {
            guard let condition = program.timers[k].condition else { armed.append(k); continue }
            let v = condition.eval(context)
            if case .bool(let holds) = v { if holds { armed.append(k) } } else { context.noteFailure(rule: program.timers[k].rule, v) }
        }
    }
    @exclusivity(unchecked) private var armed: [Int] = []

    /// After the event's effects: the deadlines it disarms (`unless`) or
    /// restarts (`without`), then those it arms (an `after` rule keeps the
    /// earliest deadline; disarmed first, the same event arms it again),
    /// and every `every` rule not yet armed (the person's first event).
    private func setTimers(_ person: Int, event: Int?, time: Int64) {
        let timers = program.timers
        if let event {
            for k in program.cancelsOfEvent[event] {
                store.setEnd(person, timers[k].slot, timers[k].repeats ? Timestamp.adding(time, timers[k].delay) : PersonStore.none)
            }
            for k in armed where store.end(person, timers[k].slot) == PersonStore.none {
                store.setEnd(person, timers[k].slot, Timestamp.adding(time, timers[k].delay))
            }
            armed.removeAll(keepingCapacity: true)
        }
        for k in program.everyTimers where store.end(person, timers[k].slot) == PersonStore.none {
            store.setEnd(person, timers[k].slot, Timestamp.adding(time, timers[k].delay))
        }
    }

    /// Fires every deadline at or before `time`, for everyone: the end of
    /// a run, before its report (the report reads the same either way; the
    /// trail records the firings).
    package func fireAllTimers(upTo time: Int64) {
        guard program.hasTimers else { return }
        for p in 0..<people.count where hasTimersDue(p, at: time) {
            context.line = 0
            fireTimers(p, upTo: time)
        }
    }

    /// The rules `timedRulesDue` collects while they fire (nil: none kept).
    @exclusivity(unchecked) private var firingsSeen: [Int]? = nil

    /// The global indices of the timed rules that fire for `citizen` by
    /// `time` though no event of theirs came yet (as their state read as of
    /// `time` has them fired): a test's `expect fired` counts them.
    package func timedRulesDue(_ citizen: String, at time: Int64) -> [Int] {
        guard program.hasTimers, let p = personIndex(citizen) else { return [] }
        firingsSeen = []
        defer { firingsSeen = nil }
        return asOf(p, time) { firingsSeen ?? [] }
    }

    /// `body`, reading the person as of `time`: with their deadlines at or
    /// before it fired, on a copy of their state that is put back after
    /// (a person's own later event may still come before those deadlines:
    /// what fires is committed only before their events, or at a run's
    /// end). Nobody is told, nothing is noted twice.
    func asOf<T>(_ person: Int, _ time: Int64, _ body: () -> T) -> T {
        asOf(person, time, telling: nil, body)
    }

    /// The same; `telling`, if given, hears of the firings on the copy (an
    /// explanation's records of them) instead of the engine's observer.
    func asOf<T>(_ person: Int, _ time: Int64, telling listener: EngineObserver?, _ body: () -> T) -> T {
        guard program.hasTimers, hasTimersDue(person, at: time) else { return body() }
        let saved = (score: store.score(person), ends: (0..<store.slotCount).map { store.end(person, $0) },
                     attributes: (0..<store.attributeCount).map { store.attribute(person, $0) })
        let kept = (failures: context.failures, line: context.line, observing: observing, touched: touched?.count,
                    fired: firedCount, scoreBefore: scoreBefore,
                    first: firedCount > 0 ? (firedSteps[0], firedSets[0], firedSizes[0]) : nil)
        let engineObserver = observer
        if let listener { observer = listener } else { observing = false }
        context.line = 0
        fireTimers(person, upTo: time)
        defer {
            if listener != nil { observer = engineObserver }
            store.setScore(person, saved.score)
            for (slot, end) in saved.ends.enumerated() { store.setEnd(person, slot, end) }
            for (k, word) in saved.attributes.enumerated() { store.setAttribute(person, k, word) }
            context.failures = kept.failures
            context.line = kept.line
            observing = kept.observing
            if let n = kept.touched { touched!.removeSubrange(n...) }
            (firedCount, scoreBefore) = (kept.fired, kept.scoreBefore)
            if let (step, set, size) = kept.first { (firedSteps[0], firedSets[0], firedSizes[0]) = (step, set, size) }
        }
        return body()
    }

    /// Phase 1: every rule of the event's type against the state before it.
    @inline(__always)
    private func evaluateRules(_ range: Range<Int>) {
        let steps = program.steps
        var counted = 0
        firedCount = 0
        for r in range {
            let rule = steps.rules[r]
            var ok = true
            if let condition = rule.condition {
                let v = condition.eval(context)
                if case .bool(let b) = v { ok = b } else { context.noteFailure(rule: rule.index, v); ok = false }
            }
            if rule.count > 0 {
                matched[counted] = ok
                counted += 1
                if ok {
                    let (inWindow, _) = store.buffer(rule.counter) {
                        $0.aggregate(person: context.person, now: context.now, window: rule.window)
                    }
                    ok = rule.exactly ? inWindow + 1 == rule.count : inWindow + 1 >= rule.count
                }
            }
            if ok, rule.computesDurations, !computeDurations(rule) { ok = false }
            if ok, rule.setsAttributes, !computeAttributes(rule) { ok = false }
            if ok, let (amount, set, size) = scoreChange(rule) {
                firedSteps[firedCount] = (r, amount)
                firedSets[firedCount] = set
                firedSizes[firedCount] = size
                firedCount += 1
                // An `every` rule that fires counts again from zero; its
                // counter is its own (phase 2 empties it, and does not
                // count this event).
                if rule.restarts { matched[counted - 1] = false; restarted[counted - 1] = true }
            }
        }
    }

    /// The ends of the rule's computed `for`s, as of the state before the
    /// event; false when one has no value or is not a duration the language
    /// takes (then the rule does not fire, and the run says why).
    private func computeDurations(_ rule: EventSteps.Rule) -> Bool {
        for e in rule.effects {
            guard let node = program.steps.effects[e].computed else { continue }
            let v = node.eval(context)
            guard case .number(let seconds) = v else { context.noteFailure(rule: rule.index, v); return false }
            guard let ticks = Timestamp.durationTicks(seconds: seconds) else {
                context.noteFailure(rule: rule.index, .failed(.badDuration))
                return false
            }
            computedEnds[e] = Timestamp.adding(context.now, ticks)
        }
        return true
    }

    /// The words of the rule's `set NAME to`s, as of the state before the
    /// event; false when one has no value or one of the wrong type (then
    /// the rule does not fire, and the run says why).
    private func computeAttributes(_ rule: EventSteps.Rule) -> Bool {
        for e in rule.effects where program.steps.effects[e].kind == .setAttribute {
            let effect = program.steps.effects[e]
            let v = effect.amount!._withUnsafeGuaranteedRef { $0.eval(context) }
            guard let word = AttributeWord.encode(v, as: program.policy.attributes[effect.slot].type) else {
                context.noteFailure(rule: rule.index, v)
                return false
            }
            attributeValues[e] = word
        }
        return true
    }

    /// The rule's score change, each `±EXPR` rounded on its own, and the
    /// value its last `set score to` gave (`noSet`: none; the change is then
    /// what comes after it); nil when an expression fails (then the whole
    /// rule does not fire).
    @inline(__always)
    private func scoreChange(_ rule: EventSteps.Rule) -> (amount: Int64, set: Int64, size: Int64)? {
        if let constant = rule.constantChange { return (constant, Self.noSet, rule.constantSize) }
        // `size` stops at 2^62: each change is at most 9·10^15 < 2^54, so
        // the sum never wraps, and anything that large takes the exact path.
        var total: Int64 = 0, set = Self.noSet, size: UInt64 = 0
        for e in rule.effects {
            let effect = program.steps.effects[e]
            guard let node = effect.amount, effect.kind != .setAttribute else { continue }
            let v = node.eval(context)
            guard case .number(let x) = v else { context.noteFailure(rule: rule.index, v); return nil }
            let change = Arithmetic.roundScore(x)
            if effect.kind == .setScore {
                (set, total) = (change, 0)
            } else {
                changes[e] = change
                total = Arithmetic.addScore(total, change)
                size = Swift.min(size &+ change.magnitude, 1 << 62)
            }
        }
        return (total, set, Int64(size))
    }

    /// The event's running sum of changes after rule `k`'s, one change at
    /// a time, each stopping at the score's limit (docs/LANGUAGE.md, "The
    /// score saturates"): what adding the rule's summed change gives only
    /// when no partial sum reaches the limit. (Rare: out of the hot path.)
    @inline(never)
    private func addChanges(ofFired k: Int, to delta: Int64) -> Int64 {
        let rule = program.steps.rules[firedSteps[k].step]
        var delta = delta
        for e in rule.effects where program.steps.effects[e].kind == .score {
            delta = Arithmetic.addScore(delta, rule.constantChange != nil ? program.steps.effects[e].fixedAmount : changes[e])
        }
        return delta
    }

    /// No `set score to` in a fired rule (scores never reach it).
    static let noSet = Int64.min

    /// Phase 2: record the event in the window buffers that count it. The
    /// conditions see the state before the event, like the rules did.
    @inline(__always)
    private func feedBuffers(_ event: Int, _ range: Range<Int>) {
        let steps = program.steps
        let person = context.person, now = context.now
        var counted = 0
        for r in range where steps.rules[r].count > 0 {
            if restarted[counted] {
                restarted[counted] = false
                store.buffer(steps.rules[r].counter) { $0.clear(person: person) }
            } else if matched[counted] && steps.rules[r].feedsCounter {
                store.buffer(steps.rules[r].counter) { $0.push(person: person, time: now, value: 1) }
            }
            counted += 1
        }
        let feeds = steps.feedsOfEvent[event]
        if feeds.isEmpty { return }
        var pending = 0
        for f in feeds {
            let feed = steps.feeds[f]
            // An event the aggregate cannot read (its condition fails, the
            // summed field is missing or not a number) is left out, and the
            // run says so, as it does for rules.
            if let condition = feed.condition {
                let v = condition.eval(context)
                guard case .bool(let holds) = v else { context.noteFailure(rule: program.aggregateNote(feed.buffer), v); continue }
                if !holds { continue }
            }
            var value = 1.0
            if feed.field >= 0 {
                guard let v = context.fields.value(feed.field) else {
                    context.noteFailure(rule: program.aggregateNote(feed.buffer), .failed(.missingField(feed.field)))
                    continue
                }
                guard case .number(let x) = v else { context.noteFailure(rule: program.aggregateNote(feed.buffer), v); continue }
                value = x
            }
            pendingFeeds[pending] = (feed.buffer, value)
            pending += 1
        }
        for k in 0..<pending {
            let (b, value) = pendingFeeds[k]
            store.buffer(b) { $0.push(person: person, time: now, value: value) }
        }
    }

    /// Phase 3: effects in source order; the score clamped once.
    @inline(__always)
    private func applyEffects() {
        if firedCount == 0 { return }
        let steps = program.steps
        let person = context.person, now = context.now
        // The score so far in the event's effects, in source order: a
        // `set score to` replaces it (what came before is dropped), a
        // change adds to it; clamped once at the end.
        var base = store.score(person), delta: Int64 = 0
        for k in 0..<firedCount {
            let (r, amount) = firedSteps[k]
            if firedSets[k] != Self.noSet {
                // The rule's changes after its set were summed from zero, as
                // the running sum restarts there.
                (base, delta) = (firedSets[k], amount)
            } else if delta.magnitude + UInt64(firedSizes[k]) < UInt64(Arithmetic.scoreLimit) {
                delta += amount  // no partial sum can reach the limit
            } else {
                delta = addChanges(ofFired: k, to: delta)
            }
            for e in steps.rules[r].effects {
                let effect = steps.effects[e]
                switch effect.kind {
                case .score, .setScore: break
                case .setAttribute: store.setAttribute(person, effect.slot, attributeValues[e])
                case .set:
                    let end = effect.computed != nil ? computedEnds[e]
                        : effect.duration.map { Timestamp.adding(now, $0) } ?? PersonStore.forever
                    store.setEnd(person, effect.slot, max(store.end(person, effect.slot), end))
                case .lift:
                    if effect.slot >= 0 { store.setEnd(person, effect.slot, PersonStore.none) }
                }
            }
        }
        store.setScore(person, clamp(Arithmetic.addScore(base, delta)))
    }

    @inline(__always)
    private func clamp(_ s: Int64) -> Int64 {
        var s = s
        if let lo = program.minScore, s < lo { s = lo }
        if let hi = program.maxScore, s > hi { s = hi }
        return s
    }

    func validateDeclaredFields(_ event: Int) -> String? {
        let steps = program.steps
        guard steps.isDeclared[event] else { return nil }
        for d in steps.declaredOfEvent[event] {
            let (field, type) = steps.declared[d]
            // Names are looked up only to build a rejection's reason.
            var name: String { program.policy.fields[field] }
            var eventName: String { program.policy.events[event].name }
            guard let v = context.fields.value(field) else {
                return "event `\(eventName)` lacks its declared field `\(name)`"
            }
            let actual: ValueType
            switch v {
            case .number: actual = .number
            case .bool: actual = .bool
            case .string: actual = .string
            case .failed: actual = .any
            }
            if actual != type {
                return "field `\(name)` of event `\(eventName)` must be a \(type.rawValue), not a \(actual.rawValue)"
            }
        }
        return nil
    }
}
