/// The rule graph compiled for the engine: rules indexed by event type,
/// expressions as evaluation nodes, flags and privileges as slots. Built once
/// from a `CheckedPolicy`; immutable afterwards.
package final class Program: @unchecked Sendable {
    package let policy: CheckedPolicy
    /// Event type bytes → event id; field name bytes → field id.
    let eventTable: ByteTable
    let fieldTable: ByteTable
    let rulesByEvent: [[CompiledEventRule]]
    /// The same rules by global index.
    let eventRules: [CompiledEventRule]
    /// Window buffers (other than counted rules') fed by each event type.
    let feedsByEvent: [[Int]]
    let bufferConditions: [Node?]
    let stateRules: [CompiledStateRule]
    /// The policy's outputs, in its order (the report's).
    let outputs: [Node]
    /// Each attribute's start value, as its word in a person's row.
    let attributeStarts: [Int64]
    /// Per-person slots for what event rules set: an end time each.
    let slotCount: Int
    /// Per kind (`TargetKind.index`), per name: its slot, or -1 when no
    /// event rule sets it.
    let slots: [[Int]]

    /// By privilege, a slot per reason event rules deny it for (`deny
    /// travel because debt`): (reason id, slot). Empty without reasons.
    let reasonSlots: [[(reason: Int, slot: Int)]]
    /// Whether any denial has a reason (else the report reads one slot
    /// per name, as before reasons).
    let hasReasons: Bool

    /// The slots below this hold what event rules set (flags, denials,
    /// grants); from it on, one per timed rule, its deadline.
    let targetSlotCount: Int
    /// The timed rules, in source order (`TimerStep`).
    let timers: [TimerStep]
    /// By event type, the timers it arms (`… after EVENT`) and those it
    /// disarms or restarts (`unless EVENT`, `without EVENT`).
    let armsOfEvent: [[Int]]
    let cancelsOfEvent: [[Int]]
    /// The timers armed by a person's first event (`every`).
    let everyTimers: [Int]
    /// Keeps the arming conditions' nodes alive (`TimerStep` does not).
    private let armingConditions: [Node]
    /// Whether any rule is timed: a stored flag, read three times per
    /// event (an array's `isEmpty` was 0.4 % of `rules run`'s instructions).
    let hasTimers: Bool

    /// Timed rule `k` as written (a checkpoint names its deadlines so).
    func timerText(_ k: Int) -> String {
        let span = policy.eventRules[timers[k].rule].ast.span
        return policy.sources.files[span.file].text(span)
    }

    /// The timed rule whose deadline a slot holds, or nil.
    func timer(ofSlot slot: Int) -> Int? { slot >= targetSlotCount ? slot - targetSlotCount : nil }

    /// The slot of (kind, name) without a reason, or -1.
    func slot(_ kind: TargetKind, _ name: Int) -> Int { slots[kind.index][name] }

    /// The slot of a denial of `name` for `reason`, or -1.
    func slot(denying name: Int, because reason: Int) -> Int {
        reasonSlots[name].first { $0.reason == reason }?.slot ?? -1
    }

    /// What a slot holds: its kind, the name's id, and a denial's reason.
    func target(ofSlot slot: Int) -> (kind: TargetKind, name: Int, reason: Int?) {
        for kind in TargetKind.allCases {
            if let name = slots[kind.index].firstIndex(of: slot) { return (kind, name, nil) }
        }
        for (name, list) in reasonSlots.enumerated() {
            if let r = list.first(where: { $0.slot == slot }) { return (.deny, name, r.reason) }
        }
        preconditionFailure("slot \(slot) holds nothing")
    }
    /// Copies of what the per-event path reads from the policy, in storage of
    /// this program's own: a `--jobs` worker compiles its own program, and
    /// threads that retain the same array or node contend for its reference
    /// count (measured: a third of all time with two workers).
    let declaredFields: [[(field: Int, type: ValueType)]?]
    let bufferField: [Int]
    let minScore: Int64?
    let maxScore: Int64?
    /// The per-event path's view of the rules, reference-free (`EventSteps`).
    let steps: EventSteps
    /// Owns the bytes of string constants that nodes point into.
    private let constantBytes: [UnsafeMutableBufferPointer<UInt8>]

    /// What the rules mean, as a number (`Fingerprint`); a checkpoint
    /// carries it.
    var fingerprint: UInt64 { Fingerprint.of(policy) }

    /// A program of the same policy sharing no objects with this one, for
    /// another thread.
    func copyForThread() -> Program { Program(policy) }

    init(_ policy: CheckedPolicy) {
        self.policy = policy
        aggregateNoteBase = policy.eventRules.count + policy.stateRules.count
        let events = ByteTable()
        for e in policy.events { _ = events.intern(e.name) }
        let fields = ByteTable()
        for f in policy.fields { _ = fields.intern(f) }
        eventTable = events
        fieldTable = fields
        declaredFields = policy.events.map { event in
            event.declared.map { declared in
                var own: [(field: Int, type: ValueType)] = []
                own.reserveCapacity(declared.count)
                for d in declared { own.append(d) }
                return own
            }
        }
        bufferField = policy.buffers.map { $0.field ?? -1 }
        minScore = policy.minScore
        maxScore = policy.maxScore

        var compiler = NodeCompiler()
        compiler.attributeTypes = policy.attributes.map(\.type)
        partCompiler.attributeTypes = compiler.attributeTypes
        // Slots: one per (kind, name) that some event rule sets; one table
        // per kind, indexed by `TargetKind.index`.
        var slots = TargetKind.allCases.map { [Int](repeating: -1, count: policy.names(of: $0).count) }
        var used = 0
        var reasonSlots = [[(reason: Int, slot: Int)]](repeating: [], count: policy.privileges.count)
        for rule in policy.eventRules {
            for case .set(let kind, let name, _, let reason) in rule.effects {
                if let reason {
                    // A denial for a reason has a slot of its own: lifted
                    // for that reason, the others stay.
                    if !reasonSlots[name].contains(where: { $0.reason == reason }) {
                        reasonSlots[name].append((reason, used))
                        used += 1
                    }
                } else if slots[kind.index][name] < 0 {
                    slots[kind.index][name] = used
                    used += 1
                }
            }
        }
        // Then a slot per timed rule: the person's deadline (`none`: not
        // armed). Rows, checkpoints and corrections keep it as they keep
        // the ends of timed effects.
        targetSlotCount = used
        let timedRules = policy.eventRules.indices.filter { policy.eventRules[$0].timer != nil }
        used += timedRules.count
        slotCount = used
        self.slots = slots
        self.reasonSlots = reasonSlots
        hasReasons = reasonSlots.contains { !$0.isEmpty }

        var byEvent = [[CompiledEventRule]](repeating: [], count: policy.events.count)
        var compiledRules: [CompiledEventRule] = []
        var firing: [CompiledEventRule] = [], timers: [TimerStep] = []
        var armsOfEvent = [[Int]](repeating: [], count: policy.events.count)
        var cancelsOfEvent = [[Int]](repeating: [], count: policy.events.count)
        var armingConditions: [Node] = []
        for (index, rule) in policy.eventRules.enumerated() {
            let effects: [CompiledEffect] = rule.effects.flatMap { effect -> [CompiledEffect] in
                switch effect {
                case .set(_, let name, let lasting, let reason?):
                    let slot = reasonSlots[name].first { $0.reason == reason }!.slot
                    switch lasting {
                    case .untilLifted: return [.set(slot: slot, duration: nil, computed: nil)]
                    case .fixed(let ticks): return [.set(slot: slot, duration: ticks, computed: nil)]
                    case .computed(let ir): return [.set(slot: slot, duration: nil, computed: compiler.compile(ir))]
                    }
                case .lift(_, let name, let reason?):
                    return [.lift(slot: reasonSlots[name].first { $0.reason == reason }?.slot ?? -1)]
                case .lift(.deny, let name, nil) where !reasonSlots[name].isEmpty:
                    // `allow P`: every denial of P, whatever its reason.
                    return [.lift(slot: slots[TargetKind.deny.index][name])] + reasonSlots[name].map { .lift(slot: $0.slot) }
                default: break
                }
                return [{ () -> CompiledEffect in
                switch effect {
                case .score(let ir): return .score(compiler.compile(ir))
                case .setScore(let ir): return .setScore(compiler.compile(ir))
                case .setAttribute(let k, let ir): return .setAttribute(attribute: k, compiler.compile(ir))
                case .set(let kind, let name, let lasting, _):
                    switch lasting {
                    case .untilLifted: return .set(slot: slots[kind.index][name], duration: nil, computed: nil)
                    case .fixed(let ticks): return .set(slot: slots[kind.index][name], duration: ticks, computed: nil)
                    case .computed(let ir): return .set(slot: slots[kind.index][name], duration: nil, computed: compiler.compile(ir))
                    }
                case .lift(let kind, let name, _):
                    return .lift(slot: slots[kind.index][name])
                }
                }()]
            }
            if let timer = rule.timer {
                // Fired by time alone: its condition is read when an event
                // arms it, its effects at the deadline (a step of its own
                // after every event type's, `EventSteps.timedRules`).
                let k = timers.count
                let condition = rule.condition.map { compiler.compile($0) }
                if let condition { armingConditions.append(condition) }
                timers.append(TimerStep(rule: index, slot: targetSlotCount + k, delay: timer.delay, repeats: timer.repeats,
                                        condition: condition.map { .passUnretained($0) },
                                        repeatsAlike: timer.repeats ? TimerStep.scoreStep(of: rule.effects) : nil))
                for event in rule.events { armsOfEvent[event].append(k) }
                for event in timer.unless { cancelsOfEvent[event].append(k) }
                let compiled = CompiledEventRule(index: index, condition: nil, count: 0, window: 0, counter: -1, effects: effects)
                firing.append(compiled)
                compiledRules.append(compiled)
                continue
            }
            // A rule on a group runs for each of its events: the same
            // compiled rule (an event has one type, so it fires once).
            let compiled = CompiledEventRule(
                index: index, condition: rule.condition.map { compiler.compile($0) },
                count: rule.count ?? 0, window: rule.window ?? 0, counter: rule.counterBuffer ?? -1,
                countMode: rule.countMode, effects: effects)
            for event in rule.events { byEvent[event].append(compiled) }
            compiledRules.append(compiled)
        }
        rulesByEvent = byEvent
        eventRules = compiledRules
        self.timers = timers
        self.armsOfEvent = armsOfEvent
        self.cancelsOfEvent = cancelsOfEvent
        self.armingConditions = armingConditions
        everyTimers = timers.indices.filter { timers[$0].repeats }
        hasTimers = !timers.isEmpty

        var feeds = [[Int]](repeating: [], count: policy.events.count)
        var conditions: [Node?] = []
        for (id, spec) in policy.buffers.enumerated() {
            conditions.append(spec.condition.map { compiler.compile($0) })
            if spec.cap == nil { for event in spec.events { feeds[event].append(id) } }
        }
        feedsByEvent = feeds
        bufferConditions = conditions
        stateRules = policy.stateRules.enumerated().map { (i, r) in
            CompiledStateRule(index: policy.eventRules.count + i, condition: compiler.compile(r.condition), effects: r.effects)
        }
        outputs = policy.outputs.map { compiler.compile($0.value) }
        attributeStarts = policy.attributes.map { AttributeWord.start($0.start, as: $0.type) }
        constantBytes = compiler.constantBytes
        steps = EventSteps(rulesByEvent: byEvent + [firing], feedsByEvent: feeds, bufferConditions: conditions, bufferField: bufferField,
                           declaredFields: declaredFields, stateRules: stateRules)
    }

    /// Nodes for the parts of the rules' expressions, by span, compiled
    /// the first time an explanation shows a part's value and kept: the
    /// program is compiled once, and so is each part. (Under a lock: one
    /// program may serve engines on several threads.)
    private let partLock = Lock()
    @exclusivity(unchecked) private var partNodes: [Span: Node] = [:]
    @exclusivity(unchecked) private var partCompiler = NodeCompiler()

    /// The node that computes the part of a rule's expression at `span`
    /// (`CheckedPolicy.parts`), as the engine's own nodes do.
    func partNode(_ span: Span) -> Node? {
        partLock.lock(); defer { partLock.unlock() }
        if let node = partNodes[span] { return node }
        guard let ir = policy.parts[span] else { return nil }
        let node = partCompiler.compile(ir)
        partNodes[span] = node
        return node
    }

    deinit {
        for b in constantBytes { b.deallocate() }
        partCompiler.release()
        steps.deallocate()
    }

    /// The rule with global index `i`: event rules first, then state rules
    /// in graph order, then (for notes) the aggregates' buffers.
    func ruleSpan(_ i: Int) -> Span {
        if i < policy.eventRules.count { return policy.eventRules[i].ast.span }
        if i < aggregateNoteBase { return policy.stateRules[i - policy.eventRules.count].ast.span }
        if i < outputNoteBase { return policy.bufferSpans[i - aggregateNoteBase] }
        return policy.outputs[i - outputNoteBase].span
    }

    /// Notes about events an aggregate skipped are kept beside the rules'
    /// own, numbered after every rule; then those about outputs without a
    /// value.
    let aggregateNoteBase: Int
    @inline(__always) func aggregateNote(_ buffer: Int) -> Int { aggregateNoteBase + buffer }
    var outputNoteBase: Int { aggregateNoteBase + policy.buffers.count }
    @inline(__always) func outputNote(_ output: Int) -> Int { outputNoteBase + output }
}

/// A timed rule as the engine runs it: which rule, the slot of each
/// person's deadline, the delay or period, and the condition read when an
/// event arms it.
struct TimerStep {
    let rule: Int
    let slot: Int
    let delay: Int64
    let repeats: Bool
    let condition: Unmanaged<Node>?
    /// For an `every` rule whose effects are all constants (no expression
    /// reads the state, every `for` is fixed): what one firing does to the
    /// score — set it to `setTo` (if not nil), then add `delta`, then clamp.
    /// Its other effects leave the same state however often it fires, so
    /// many periods can be skipped at once (`Engine.skipPeriods`). nil:
    /// each period fires on its own.
    let repeatsAlike: (setTo: Int64?, delta: Int64)?

    /// `repeatsAlike` of a rule's effects, nil when one is not a constant.
    static func scoreStep(of effects: [CheckedEffect]) -> (setTo: Int64?, delta: Int64)? {
        var setTo: Int64? = nil, delta: Int64 = 0
        func constant(_ ir: IR) -> Int64? {
            guard ir.isConstant, case .number(let x)? = Folder.evaluate(ir), x.isFinite else { return nil }
            return Arithmetic.roundScore(x)
        }
        for effect in effects {
            switch effect {
            case .score(let ir):
                guard let c = constant(ir) else { return nil }
                delta = Arithmetic.addScore(delta, c)
            case .setScore(let ir):
                guard let c = constant(ir) else { return nil }
                (setTo, delta) = (c, 0)
            case .setAttribute(_, let ir):
                guard ir.isConstant else { return nil }
            case .set(_, _, let lasting, _):
                if case .computed = lasting { return nil }
            case .lift: break
            }
        }
        return (setTo, delta)
    }
}

/// A class so that the engine's loops hold one reference per rule, not a
/// copy of each field (every copy of a struct with references retains them).
final class CompiledEventRule: @unchecked Sendable {
    let index: Int
    let condition: Node?
    /// 0 for a rule without a count.
    let count: Int
    let window: Int64
    let counter: Int
    let countMode: CountMode
    let effects: [CompiledEffect]

    init(index: Int, condition: Node?, count: Int, window: Int64, counter: Int, countMode: CountMode = .atLeast, effects: [CompiledEffect]) {
        self.countMode = countMode
        self.index = index
        self.condition = condition
        self.count = count
        self.window = window
        self.counter = counter
        self.effects = effects
    }
}

enum CompiledEffect {
    case score(Node)
    /// `set score to EXPR`.
    case setScore(Node)
    /// `set NAME to EXPR`: attribute `attribute` takes the value.
    case setAttribute(attribute: Int, Node)
    /// `slot` is never negative for `set`; `duration` nil (and no
    /// `computed`) means until lifted. `computed` gives the duration in
    /// seconds when the rule fires (`for days * 1 day`).
    case set(slot: Int, duration: Int64?, computed: Node?)
    /// A negative slot: nothing event rules set under that name; no-op.
    case lift(slot: Int)
}

/// A class for the same reason as `CompiledEventRule`.
final class CompiledStateRule: @unchecked Sendable {
    let index: Int
    let condition: Node
    let effects: [(kind: TargetKind, name: Int)]

    init(index: Int, condition: Node, effects: [(kind: TargetKind, name: Int)]) {
        self.index = index
        self.condition = condition
        self.effects = effects
    }
}

/// Turns resolved expressions into nodes.
struct NodeCompiler {
    private(set) var constantBytes: [UnsafeMutableBufferPointer<UInt8>] = []
    /// By attribute id, its type (how its word reads).
    var attributeTypes: [ValueType] = []

    mutating func compile(_ ir: IR) -> Node {
        // A constant number (`-5`, `2 * 10`) is computed once, here, with the
        // engine's own arithmetic; anything that could fail stays a tree so
        // the failure is reported where it happens.
        if ir.isConstant, case .number(let n)? = Folder.evaluate(ir), n.isFinite { return ConstNode(.number(n)) }
        return make(ir)
    }

    private mutating func make(_ ir: IR) -> Node {
        switch ir {
        case .number(let n): return ConstNode(.number(n))
        case .bool(let b): return ConstNode(.bool(b))
        case .string(let s): return ConstNode(.string(intern(s)))
        case .field(let f, _): return FieldNode(f)
        case .flag(let f): return FlagNode(f)
        case .privilege(let kind, let p): return PrivilegeNode(kind, p)
        case .score: return ScoreNode()
        case .unary(.negate, let a): return NegateNode(compile(a))
        case .unary(.not, let a): return NotNode(compile(a))
        case .binary(let op, let a, let b):
            switch op {
            case .and, .or: return LogicNode(isAnd: op == .and, compile(a), compile(b))
            case .add, .sub, .mul, .div, .mod: return ArithmeticNode(op, compile(a), compile(b))
            default:
                let (left, right) = (compile(a), compile(b))
                if let constant = right as? ConstNode, case .number(let k) = constant.value { return CompareToNumberNode(op, left, k) }
                return CompareNode(op, left, right)
            }
        case .inList(let a, let items): return InListNode(compile(a), items.map { compile($0) })
        case .call(let fn, let args): return CallNode(fn, args.map { compile($0) })
        case .conditional(let c, let a, let b): return ConditionalNode(compile(c), compile(a), compile(b))
        case .aggregate(let buffer, let window, let sum): return AggregateNode(buffer: buffer, window: window, isSum: sum)
        case .attribute(let k): return AttributeNode(k, type: attributeTypes[k])
        }
    }

    /// Frees the string constants of nodes that are no longer used (nodes
    /// compiled for one explanation; a program keeps its own).
    mutating func release() {
        for b in constantBytes { b.deallocate() }
        constantBytes = []
    }

    mutating func intern(_ s: String) -> ByteString {
        let bytes = Array(s.utf8)
        let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(1, bytes.count))
        _ = buffer.initialize(from: bytes)
        constantBytes.append(buffer)
        return ByteString(base: UnsafePointer(buffer.baseAddress!), count: bytes.count)
    }
}

/// What the engine does per event, as flat tables of plain values.
///
/// Every copy of a reference out of an array costs an atomic retain and
/// release; per event that was a quarter of the engine's time (perf,
/// docs/PERFORMANCE.md). Here rules, effects and feeds are structs with no
/// references in memory the program owns, and nodes are `Unmanaged`: the
/// program's `rulesByEvent`, `bufferConditions` and `stateRules` keep every
/// node alive for as long as the program lives, and a program outlives its
/// engines (each holds it).
struct EventSteps: @unchecked Sendable {
    struct Rule {
        let index: Int
        let condition: Unmanaged<Node>?
        /// 0 for a rule without a count.
        let count: Int
        let window: Int64
        let counter: Int
        /// True for the first counted rule of its event type that counts
        /// into `counter`: rules with the same event, condition and count
        /// share one buffer, and each matching event enters it once.
        let feedsCounter: Bool
        /// `exactly N`: fires only when the window holds exactly N.
        let exactly: Bool
        /// `every N`: its counter is emptied when it fires (and the event
        /// that fired it is not counted).
        let restarts: Bool
        let effects: Range<Int>
        /// The rule's score change when every amount is a constant: no
        /// expression to evaluate per event; and the sum of those changes'
        /// sizes (when it and the event's running sum stay below the
        /// score's limit, adding the rule's change at once is exact).
        let constantChange: Int64?
        let constantSize: Int64
        /// Whether a `for` of its effects is computed when it fires.
        let computesDurations: Bool
        /// Whether it sets an attribute (`set region to …`).
        let setsAttributes: Bool
    }

    struct Effect {
        enum Kind: UInt8 { case score, setScore, setAttribute, set, lift }
        let kind: Kind
        /// The slot for `set` / `lift` (negative: nothing to lift); for
        /// `setAttribute`, the attribute.
        let slot: Int
        /// For `set`: how long; nil means until lifted (or computed).
        let duration: Int64?
        /// For `set … for EXPR` that reads the event or the state: the
        /// duration in seconds, evaluated when the rule fires.
        let computed: Unmanaged<Node>?
        /// For `score`: the amount; for `setScore` and `setAttribute`: the value.
        let amount: Unmanaged<Node>?
        /// For `score` in a rule whose changes are all constants: the
        /// change, rounded (the rule's `constantChange` sums them).
        var fixedAmount: Int64 = 0
    }

    struct Feed {
        let buffer: Int
        let condition: Unmanaged<Node>?
        /// The field summed, or -1 when only counted.
        let field: Int
    }

    let rules: UnsafeMutableBufferPointer<Rule>
    let rulesOfEvent: UnsafeMutableBufferPointer<Range<Int>>
    let effects: UnsafeMutableBufferPointer<Effect>
    let feeds: UnsafeMutableBufferPointer<Feed>
    let feedsOfEvent: UnsafeMutableBufferPointer<Range<Int>>
    /// Declared fields and their types; an event type without declarations
    /// has none here and `isDeclared` false.
    let declared: UnsafeMutableBufferPointer<(field: Int, type: ValueType)>
    let declaredOfEvent: UnsafeMutableBufferPointer<Range<Int>>
    let isDeclared: UnsafeMutableBufferPointer<Bool>

    struct StateRule {
        let index: Int
        let condition: Unmanaged<Node>
        let effects: Range<Int>
    }
    /// `while` rules in graph order, and what each sets when it holds.
    let stateRules: UnsafeMutableBufferPointer<StateRule>
    let stateEffects: UnsafeMutableBufferPointer<(kind: TargetKind, name: Int)>
    /// The timed rules' steps (one each, in `Program.timers`' order): after
    /// every event type's, in no event's range.
    var timedRules: Range<Int> { rulesOfEvent[rulesOfEvent.count - 1] }
    /// The most rules / feeds any one event type has (scratch sizes).
    let maxRules: Int
    let maxFeeds: Int

    init(rulesByEvent: [[CompiledEventRule]], feedsByEvent: [[Int]], bufferConditions: [Node?], bufferField: [Int],
         declaredFields: [[(field: Int, type: ValueType)]?], stateRules compiled: [CompiledStateRule]) {
        var stateRules: [StateRule] = [], stateEffects: [(kind: TargetKind, name: Int)] = []
        for rule in compiled {
            let first = stateEffects.count
            stateEffects += rule.effects
            stateRules.append(StateRule(index: rule.index, condition: .passUnretained(rule.condition),
                                        effects: first..<stateEffects.count))
        }
        self.stateRules = Self.copy(stateRules)
        self.stateEffects = Self.copy(stateEffects)
        var rules: [Rule] = [], effects: [Effect] = [], ranges: [Range<Int>] = []
        for list in rulesByEvent {
            let first = rules.count
            var countersFed = Set<Int>()
            for rule in list {
                let start = effects.count
                for effect in rule.effects {
                    switch effect {
                    case .score(let node):
                        effects.append(Effect(kind: .score, slot: -1, duration: nil, computed: nil, amount: .passUnretained(node)))
                    case .setScore(let node):
                        effects.append(Effect(kind: .setScore, slot: -1, duration: nil, computed: nil, amount: .passUnretained(node)))
                    case .setAttribute(let k, let node):
                        effects.append(Effect(kind: .setAttribute, slot: k, duration: nil, computed: nil, amount: .passUnretained(node)))
                    case .set(let slot, let duration, let computed):
                        effects.append(Effect(kind: .set, slot: slot, duration: duration, computed: computed.map { .passUnretained($0) }, amount: nil))
                    case .lift(let slot):
                        effects.append(Effect(kind: .lift, slot: slot, duration: nil, computed: nil, amount: nil))
                    }
                }
                var constant: Int64? = rule.effects.contains { if case .setScore = $0 { return true }; return false } ? nil : 0
                var size: Int64 = 0
                for (j, effect) in rule.effects.enumerated() {
                    guard case .score(let node) = effect else { continue }
                    if let c = node as? ConstNode, case .number(let x) = c.value {
                        let change = Arithmetic.roundScore(x)
                        effects[start + j].fixedAmount = change
                        constant = constant.map { Arithmetic.addScore($0, change) }
                        size = Arithmetic.addScore(size, change.magnitude > UInt64(Arithmetic.scoreLimit) ? Arithmetic.scoreLimit : Int64(change.magnitude))
                    } else {
                        constant = nil
                    }
                }
                rules.append(Rule(index: rule.index, condition: rule.condition.map { .passUnretained($0) },
                                  count: rule.count, window: rule.window, counter: rule.counter,
                                  feedsCounter: rule.count > 0 && countersFed.insert(rule.counter).inserted,
                                  exactly: rule.countMode == .exactly, restarts: rule.countMode == .every,
                                  effects: start..<effects.count,
                                  constantChange: constant, constantSize: size,
                                  computesDurations: effects[start...].contains { $0.computed != nil },
                                  setsAttributes: effects[start...].contains { $0.kind == .setAttribute }))
            }
            ranges.append(first..<rules.count)
        }
        var feeds: [Feed] = [], feedRanges: [Range<Int>] = []
        for list in feedsByEvent {
            let first = feeds.count
            for b in list {
                feeds.append(Feed(buffer: b, condition: bufferConditions[b].map { .passUnretained($0) }, field: bufferField[b]))
            }
            feedRanges.append(first..<feeds.count)
        }
        var declared: [(field: Int, type: ValueType)] = [], declaredRanges: [Range<Int>] = []
        for list in declaredFields {
            let first = declared.count
            declared += list ?? []
            declaredRanges.append(first..<declared.count)
        }
        self.declared = Self.copy(declared)
        self.declaredOfEvent = Self.copy(declaredRanges)
        self.isDeclared = Self.copy(declaredFields.map { $0 != nil })
        self.rules = Self.copy(rules)
        self.rulesOfEvent = Self.copy(ranges)
        self.effects = Self.copy(effects)
        self.feeds = Self.copy(feeds)
        self.feedsOfEvent = Self.copy(feedRanges)
        maxRules = ranges.map(\.count).max() ?? 0
        maxFeeds = feedRanges.map(\.count).max() ?? 0
    }

    private static func copy<T>(_ items: [T]) -> UnsafeMutableBufferPointer<T> {
        let buffer = UnsafeMutableBufferPointer<T>.allocate(capacity: max(1, items.count))
        _ = buffer.initialize(from: items)
        return UnsafeMutableBufferPointer(rebasing: buffer[0..<items.count])
    }

    func deallocate() {
        for b in [UnsafeMutableRawPointer(rules.baseAddress), UnsafeMutableRawPointer(rulesOfEvent.baseAddress),
                  UnsafeMutableRawPointer(effects.baseAddress), UnsafeMutableRawPointer(feeds.baseAddress),
                  UnsafeMutableRawPointer(feedsOfEvent.baseAddress), UnsafeMutableRawPointer(declared.baseAddress),
                  UnsafeMutableRawPointer(declaredOfEvent.baseAddress), UnsafeMutableRawPointer(isDeclared.baseAddress),
                  UnsafeMutableRawPointer(stateRules.baseAddress), UnsafeMutableRawPointer(stateEffects.baseAddress)] {
            b?.deallocate()
        }
    }
}

extension Unmanaged where Instance == Node {
    /// Evaluates the node without retaining it (the program keeps it alive).
    @inline(__always)
    func eval(_ c: EvalContext) -> Value { _withUnsafeGuaranteedRef { $0.eval(c) } }
}
