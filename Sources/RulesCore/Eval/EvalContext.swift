/// The fields of the event being applied, by global field id. A stamp per
/// slot says whether the current event set it, so nothing is cleared between
/// events.
struct EventFields {
    private var values: [Value]
    private var stamps: [UInt32]
    private var stamp: UInt32 = 1

    init(count: Int) {
        values = [Value](repeating: .bool(false), count: count)
        stamps = [UInt32](repeating: 0, count: count)
    }

    mutating func reset() {
        stamp &+= 1
        if stamp == 0 {
            for i in stamps.indices { stamps[i] = 0 }
            stamp = 1
        }
    }

    @inline(__always)
    func value(_ id: Int) -> Value? {
        stamps[id] == stamp ? values[id] : nil
    }

    /// False when the field was already set for this event (a duplicate key).
    @inline(__always)
    mutating func set(_ id: Int, _ value: Value) -> Bool {
        if stamps[id] == stamp { return false }
        stamps[id] = stamp
        values[id] = value
        return true
    }
}

/// Everything an expression can read while one event (or the final report)
/// is evaluated for one person.
final class EvalContext {
    var fields: EventFields
    let state: PersonStore
    let program: Program
    var person = 0
    var now: Int64 = 0
    var score: Int64 = 0

    /// What the state rules hold at `now`, computed at most once per event
    /// and only when something reads it.
    private(set) var stateFlags: [Bool]
    private(set) var stateDenied: [Bool]
    private(set) var stateGranted: [Bool]
    /// Which state rules held at the last evaluation, in graph order.
    private(set) var stateRulesHeld: [Bool]
    private var stateReady = false

    /// Failed evaluations, for the run's report: (rule, why) → count, first line.
    var failures: [FailureKey: (count: Int, firstLine: Int)] = [:]
    var line = 0

    struct FailureKey: Hashable {
        var rule: Int
        var failure: EvalFailure
    }

    init(program: Program, state: PersonStore) {
        self.program = program
        self.state = state
        fields = EventFields(count: program.policy.fields.count)
        stateFlags = [Bool](repeating: false, count: program.policy.flags.count)
        stateDenied = [Bool](repeating: false, count: program.policy.privileges.count)
        stateGranted = stateDenied
        stateRulesHeld = [Bool](repeating: false, count: program.stateRules.count)
    }

    /// Points the context at a person's state as of `now`.
    @inline(__always)
    func focus(person: Int, now: Int64) {
        self.person = person
        self.now = now
        self.score = state.score(person)
        stateReady = false
    }

    /// Whether an event rule's timed effect in `slot` is in force now:
    /// effects last over `[t, end)`.
    @inline(__always)
    func active(_ slot: Int) -> Bool {
        slot >= 0 && state.end(person, slot) > now
    }

    @inline(__always)
    func flag(_ f: Int) -> Bool {
        if active(program.flagSlot[f]) { return true }
        if !stateReady { evaluateStateRules() }
        return stateFlags[f]
    }

    /// Evaluates the state rules in graph order. A rule reading a flag sees
    /// every rule that sets it already evaluated (the graph guarantees it).
    func evaluateStateRules() {
        stateReady = true
        for i in stateFlags.indices { stateFlags[i] = false }
        for i in stateDenied.indices { stateDenied[i] = false; stateGranted[i] = false }
        for (k, rule) in program.stateRules.enumerated() {
            let v = rule.condition.eval(self)
            stateRulesHeld[k] = false
            guard case .bool(true) = v else {
                if case .bool(false) = v { continue }
                noteFailure(rule: rule.index, v)
                continue
            }
            stateRulesHeld[k] = true
            for (kind, name) in rule.effects {
                switch kind {
                case .flag: stateFlags[name] = true
                case .deny: stateDenied[name] = true
                case .grant: stateGranted[name] = true
                }
            }
        }
    }

    func noteFailure(rule: Int, _ v: Value) {
        let failure: EvalFailure
        if case .failed(let f) = v { failure = f } else { failure = .wrongType }
        let key = FailureKey(rule: rule, failure: failure)
        if let old = failures[key] {
            failures[key] = (old.count + 1, old.firstLine)
        } else {
            failures[key] = (1, line)
        }
    }
}
