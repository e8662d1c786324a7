/// Applies events to per-person state, exactly as the contract's "semantics
/// of one event" says, and produces the final report as of a clock.
public final class Engine {
    let program: Program
    let store: PersonStore
    let context: EvalContext
    let people = ByteTable(capacity: 1024)
    /// The latest time of any applied event (nil before the first).
    public private(set) var clock: Int64? = nil
    /// The audit trail, when asked for; nil costs one check per event.
    var tracer: Tracer? = nil

    // Scratch space reused for every event. `fired` stays readable after
    // `apply`: the rules that fired on the last event, with their rounded
    // score change, in source order (tests and explanations read it).
    private(set) var fired: [(rule: CompiledEventRule, amounts: Int64)] = []
    private var matched: [Bool] = []
    private var pendingFeeds: [(buffer: Int, value: Double)] = []

    public init(program: Program) {
        self.program = program
        let buffers = program.policy.buffers.enumerated().map { (i, spec) in
            WindowBuffer(longestWindow: program.policy.bufferWindows[i], cap: spec.cap)
        }
        store = PersonStore(slotCount: program.slotCount, buffers: buffers)
        context = EvalContext(program: program, state: store)
    }

    /// Starts a new event: forget the previous event's fields.
    @inline(__always)
    func beginEvent(line: Int) {
        context.fields.reset()
        context.line = line
    }

    /// Prefetch hints from the stream reader, a few lines ahead: first the
    /// person's table slot, later (once it is cached) their state.
    @inline(__always)
    func prefetchSlot(_ person: UnsafeBufferPointer<UInt8>) { people.prefetch(person) }

    @inline(__always)
    func prefetchState(_ person: UnsafeBufferPointer<UInt8>) {
        if let p = people.find(person) { store.prefetch(p) }
    }

    /// Sets a field of the event being read; false on a duplicate key.
    @inline(__always)
    func setField(_ id: Int, _ value: Value) -> Bool {
        context.fields.set(id, value)
    }

    /// Applies one event whose fields were set with `setField`. Returns the
    /// reason when the event is rejected instead.
    func apply(person key: UnsafeBufferPointer<UInt8>, event: Int?, time: Int64) -> String? {
        if let event, let reason = validateDeclaredFields(event) { return reason }
        let (person, isNew) = people.intern(key)
        if isNew { store.addPerson(score: program.policy.startScore) }
        if time < store.lastTime(person) {
            return "time \(Timestamp.format(time)) is earlier than this citizen's previous event at \(Timestamp.format(store.lastTime(person)))"
        }
        store.setLastTime(person, time)
        clock = max(clock ?? time, time)
        if let tracer { tracer.before(person: person, isNew: isNew, time: time, engine: self) }
        fired.removeAll(keepingCapacity: true)
        if let event {
            context.focus(person: person, now: time)
            evaluateRules(program.rulesByEvent[event])
            feedBuffers(event)
            applyEffects()
        }
        if let tracer { tracer.after(person: person, time: time, engine: self) }
        return nil
    }

    /// Phase 1: every rule of the event's type against the state before it.
    @inline(__always)
    private func evaluateRules(_ rules: [CompiledEventRule]) {
        matched.removeAll(keepingCapacity: true)
        for rule in rules {
            var ok = true
            if let condition = rule.condition {
                let v = condition.eval(context)
                if case .bool(let b) = v { ok = b } else { context.noteFailure(rule: rule.index, v); ok = false }
            }
            if rule.count > 0 {
                matched.append(ok)
                if ok {
                    let (inWindow, _) = store.buffers[rule.counter].aggregate(
                        person: context.person, now: context.now, window: rule.window)
                    ok = inWindow + 1 >= rule.count
                }
            }
            if ok, let amount = scoreChange(rule) { fired.append((rule, amount)) }
        }
    }

    /// The rule's score change, each `±EXPR` rounded on its own; nil when an
    /// expression fails (then the whole rule does not fire).
    @inline(__always)
    private func scoreChange(_ rule: CompiledEventRule) -> Int64? {
        var total: Int64 = 0
        for case .score(let node) in rule.effects {
            let v = node.eval(context)
            guard case .number(let x) = v else { context.noteFailure(rule: rule.index, v); return nil }
            total &+= Arithmetic.roundScore(x)
        }
        return total
    }

    /// Phase 2: record the event in the window buffers that count it. The
    /// conditions see the state before the event, like the rules did.
    @inline(__always)
    private func feedBuffers(_ event: Int) {
        let person = context.person, now = context.now
        var k = 0
        for rule in program.rulesByEvent[event] where rule.count > 0 {
            if matched[k] { store.buffers[rule.counter].push(person: person, time: now, value: 1) }
            k += 1
        }
        let feeds = program.feedsByEvent[event]
        if feeds.isEmpty { return }
        pendingFeeds.removeAll(keepingCapacity: true)
        for b in feeds {
            if let condition = program.bufferConditions[b] {
                guard case .bool(true) = condition.eval(context) else { continue }
            }
            var value = 1.0
            let field = program.bufferField[b]
            if field >= 0 {
                guard case .number(let x)? = context.fields.value(field) else { continue }
                value = x
            }
            pendingFeeds.append((b, value))
        }
        for (b, value) in pendingFeeds { store.buffers[b].push(person: person, time: now, value: value) }
    }

    /// Phase 3: effects in source order; the score clamped once.
    @inline(__always)
    private func applyEffects() {
        if fired.isEmpty { return }
        let person = context.person, now = context.now
        var delta: Int64 = 0
        for (rule, amount) in fired {
            delta &+= amount
            for effect in rule.effects {
                switch effect {
                case .score: break
                case .set(let slot, let duration):
                    let end = duration.map { now.addingReportingOverflow($0).overflow ? PersonStore.forever : now + $0 } ?? PersonStore.forever
                    store.setEnd(person, slot, max(store.end(person, slot), end))
                case .lift(let slot):
                    if slot >= 0 { store.setEnd(person, slot, PersonStore.none) }
                }
            }
        }
        store.setScore(person, clamp(store.score(person) &+ delta))
    }

    @inline(__always)
    private func clamp(_ s: Int64) -> Int64 {
        var s = s
        if let lo = program.minScore, s < lo { s = lo }
        if let hi = program.maxScore, s > hi { s = hi }
        return s
    }

    private func validateDeclaredFields(_ event: Int) -> String? {
        guard let declared = program.declaredFields[event] else { return nil }
        for (field, type) in declared {
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
