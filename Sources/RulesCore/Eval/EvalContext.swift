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
    @exclusivity(unchecked) var fields: EventFields
    let state: PersonStore
    let program: Program
    @exclusivity(unchecked) var person = 0
    @exclusivity(unchecked) var now: Int64 = 0
    @exclusivity(unchecked) var score: Int64 = 0

    /// What the state rules hold at `now`, computed at most once per event
    /// and only when something reads it.
    /// (Plain memory owned by the context: written for every person of the
    /// report, and an array would be checked for uniqueness on each write.)
    /// One table for every effect kind: kind `k`'s name `n` is at
    /// `stateHeld[stateBase[k.index] + n]` (`stateHolds`).
    private let stateHeld: UnsafeMutableBufferPointer<Bool>
    private let stateBase: UnsafeMutableBufferPointer<Int>
    /// Which state rules held at the last evaluation, in graph order.
    let stateRulesHeld: UnsafeMutableBufferPointer<Bool>
    @exclusivity(unchecked) private var stateReady = false

    /// Failed evaluations, for the run's report: (rule, why) → count, first line.
    @exclusivity(unchecked) var failures: [FailureKey: (count: Int, firstLine: Int)] = [:]
    @exclusivity(unchecked) var line = 0

    struct FailureKey: Hashable {
        var rule: Int
        var failure: EvalFailure
    }

    init(program: Program, state: PersonStore) {
        self.program = program
        self.state = state
        fields = EventFields(count: program.policy.fields.count)
        func flags(_ n: Int) -> UnsafeMutableBufferPointer<Bool> {
            let b = UnsafeMutableBufferPointer<Bool>.allocate(capacity: max(1, n))
            b.initialize(repeating: false)
            return UnsafeMutableBufferPointer(rebasing: b[0..<n])
        }
        stateBase = .allocate(capacity: TargetKind.allCases.count)
        for kind in TargetKind.allCases { stateBase[kind.index] = Self.stateOffset(of: kind, in: program) }
        stateHeld = flags(TargetKind.allCases.reduce(0) { $0 + program.policy.names(of: $1).count })
        stateRulesHeld = flags(program.stateRules.count)
    }

    deinit {
        for b in [stateHeld, stateRulesHeld] { UnsafeMutableRawPointer(b.baseAddress)?.deallocate() }
        stateBase.deallocate()
    }

    /// Whether a `while` rule holds `kind` of name `name` (after
    /// `evaluateStateRules`).
    @inline(__always)
    func stateHolds(_ kind: TargetKind, _ name: Int) -> Bool {
        stateHeld[stateBase[kind.index] + name]
    }

    /// The same by position: `stateOffset(of: kind) + name` (the report
    /// keeps the offsets).
    @inline(__always)
    func stateHolds(at position: Int) -> Bool { stateHeld[position] }

    /// Where `kind`'s names start in the table of what state rules hold.
    static func stateOffset(of kind: TargetKind, in program: Program) -> Int {
        TargetKind.allCases.prefix { $0 != kind }.reduce(0) { $0 + program.policy.names(of: $1).count }
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

    /// Whether an event rule's denial of privilege `p` is in force: the
    /// one without a reason, or one for a reason (`deny travel because debt`).
    @inline(__always)
    func deniedByEventRules(_ p: Int) -> Bool {
        if active(program.slots[TargetKind.deny.index][p]) { return true }
        guard program.hasReasons else { return false }
        for r in program.reasonSlots[p] where active(r.slot) { return true }
        return false
    }

    @inline(__always)
    func flag(_ f: Int) -> Bool {
        if active(program.slots[TargetKind.flag.index][f]) { return true }
        if !stateReady { evaluateStateRules() }
        return stateHolds(.flag, f)
    }

    /// Whether the person's report would list privilege `p` under `denied`
    /// (`kind` `.deny`) or `granted` (`.grant`: granted and not denied, as
    /// a denial beats a grant), now.
    @inline(__always)
    func reports(_ kind: TargetKind, _ p: Int) -> Bool {
        func holds(_ k: TargetKind) -> Bool {
            if k == .deny ? deniedByEventRules(p) : active(program.slots[k.index][p]) { return true }
            if !stateReady { evaluateStateRules() }
            return stateHolds(k, p)
        }
        return kind == .deny ? holds(.deny) : !holds(.deny) && holds(.grant)
    }

    /// Evaluates the state rules in graph order. A rule reading a flag sees
    /// every rule that sets it already evaluated (the graph guarantees it).
    func evaluateStateRules() {
        stateReady = true
        stateHeld.update(repeating: false)
        let steps = program.steps
        for k in steps.stateRules.indices {
            let rule = steps.stateRules[k]
            let v = rule.condition.eval(self)
            stateRulesHeld[k] = false
            guard case .bool(true) = v else {
                if case .bool(false) = v { continue }
                noteFailure(rule: rule.index, v)
                continue
            }
            stateRulesHeld[k] = true
            for e in rule.effects {
                let (kind, name) = steps.stateEffects[e]
                stateHeld[stateBase[kind.index] + name] = true
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
