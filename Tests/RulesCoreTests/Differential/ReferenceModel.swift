@testable import RulesCore

/// The contract's semantics written as plainly as possible, to check the
/// engine against (as Cedar checks its Rust engine against a Lean model).
///
/// It shares only the parser and checker with the engine: it reads the
/// `CheckedPolicy` (names already resolved), but parses the stream, keeps
/// time, evaluates expressions and applies events with code of its own.
/// Nothing is incremental: every applied event is kept, and every question
/// about a person's state ("is this flag set at time T?", "how many events
/// in this window?") is answered by going over their events again. No
/// slots, ring buffers, caps, prefetching or unsafe code. It is slow
/// (quadratic per person) and meant for streams of a few hundred lines.
struct ReferenceModel {
    let policy: CheckedPolicy

    /// A value, strings as bytes: the language compares strings byte for
    /// byte, not as Swift's Unicode-equivalent `String`.
    enum Value: Equatable {
        case number(Double), string([UInt8]), bool(Bool)
    }

    struct Event {
        var line: Int
        var type: Int?
        var time: Int64
        var fields: [String: Value]
    }

    /// What one fired effect did, in source order.
    enum Change {
        /// `reason`: a denial's (`deny travel because debt`), or nil.
        case set(kind: TargetKind, name: Int, end: Int64, reason: Int?)
        /// A lift with a reason lifts that denial; without, every one.
        case lift(kind: TargetKind, name: Int, reason: Int?)
        /// `set NAME to EXPR`: attribute `attribute` holds `value` from here.
        case attribute(Int, Value)
    }

    /// An applied event and what it did: the person's history.
    struct Applied {
        var event: Event
        var scoreAfter: Int64
        var changes: [Change]
        /// The event rules that fired on it (their places in the policy).
        var fired: [Int] = []
        /// A timed rule's firing (its place), not an event: then `event`
        /// is a stand-in of no type at the deadline.
        var timer: Int? = nil
        /// The timed rules (`… after EVENT`) this event armed: their
        /// condition held against the state before it.
        var armed: [Int] = []
    }

    private(set) var people: [[UInt8]: [Applied]] = [:]
    /// With kept history: every applied event of each person, in time
    /// order, with its id and whether it was retracted. A correction
    /// applies the person's events that stand again, from the start.
    struct Kept {
        var event: Event
        var id: [UInt8]?
        var retracted = false
    }
    private(set) var kept: [[UInt8]: [Kept]] = [:]
    /// The order rule's clock per person: their latest applied line.
    private(set) var lastTime: [[UInt8]: Int64] = [:]
    /// `--retain` and `--lateness`, in ticks; nil keeps nothing.
    let corrections: (retain: Int64, lateness: Int64)?
    private(set) var rejectedLines: [Int] = []
    private(set) var ignoredLines: [Int] = []
    private(set) var clock: Int64? = nil
    let asOf: Int64?

    static let forever = Int64.max
    static let scoreLimit: Int64 = 9_000_000_000_000_000

    init(policy: CheckedPolicy, asOf: Int64? = nil, corrections: (retain: Int64, lateness: Int64)? = nil) {
        self.policy = policy
        self.asOf = asOf
        self.corrections = corrections
    }

    // MARK: - Feeding the stream

    /// Takes one NDJSON line (numbered from 1).
    mutating func feed(line text: [UInt8], number: Int) {
        if text.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }  // blank: counted apart
        guard let parsed = ReferenceStream.parse(text, readFields: Set(policy.fields)) else {
            rejectedLines.append(number)
            return
        }
        if let asOf, parsed.time > asOf {
            ignoredLines.append(number)
            return
        }
        let type = policy.events.firstIndex { $0.name == parsed.type }
        let event = Event(line: number, type: type, time: parsed.time, fields: parsed.fields)
        if let type, let declared = policy.events[type].declared {
            for (field, valueType) in declared {
                guard let v = event.fields[policy.fields[field]], Self.type(of: v) == valueType else {
                    rejectedLines.append(number)
                    return
                }
            }
        }
        if let corrections {
            if !correct(parsed, event, corrections) { rejectedLines.append(number) }
            return
        }
        if parsed.target != nil {  // a retraction, with nothing kept
            rejectedLines.append(number)
            return
        }
        let before = people[parsed.person] ?? []
        if let last = before.last, event.time < last.event.time {
            rejectedLines.append(number)
            return
        }
        let history = firing(before, upTo: event.time)
        people[parsed.person] = history + [apply(event, after: history)]
        clock = max(clock ?? event.time, event.time)
    }

    /// A line with history kept, as "Corrections" says: a retraction takes
    /// its target out, a late event goes in at its time (after ties), and
    /// the person's events that stand are applied again from the start.
    /// False when the line is rejected.
    private mutating func correct(_ line: ReferenceStream.Line, _ event: Event, _ limits: (retain: Int64, lateness: Int64)) -> Bool {
        let person = line.person
        var events = kept[person] ?? []
        let last = lastTime[person]
        func reachable(_ k: Kept) -> Bool { Self.addTime(k.event.time, limits.retain) >= event.time }
        func inOrder() -> Bool { last.map { event.time >= $0 || $0 - event.time <= limits.lateness } ?? true }
        if let target = line.target {
            guard let k = events.lastIndex(where: { $0.id == target }), !events[k].retracted, reachable(events[k]),
                  event.time >= events[k].event.time, inOrder() else { return false }
            events[k].retracted = true
        } else {
            if let id = line.id, events.contains(where: { $0.id == id && reachable($0) }) { return false }
            guard inOrder() else { return false }
            let at = events.lastIndex { $0.event.time <= event.time }.map { $0 + 1 } ?? 0
            events.insert(Kept(event: event, id: line.id), at: at)
        }
        kept[person] = events
        var history: [Applied] = []
        for k in events where !k.retracted {
            history = firing(history, upTo: k.event.time)
            history.append(apply(k.event, after: history))
        }
        people[person] = history.isEmpty ? nil : history
        lastTime[person] = max(last ?? event.time, event.time)
        clock = max(clock ?? event.time, event.time)
        return true
    }

    static func type(of v: Value) -> ValueType {
        switch v {
        case .number: return .number
        case .string: return .string
        case .bool: return .bool
        }
    }

    // MARK: - One event

    /// Whether an event of type `type` is one a rule or a window names
    /// (one event, or a group's).
    static func isOne(of events: [Int], _ type: Int?) -> Bool {
        guard let type else { return false }
        return events.contains(type)
    }

    // MARK: - Timed rules

    /// Timed rule `place`'s deadline after `history`, read from it anew:
    /// an `after` rule is armed by an event that armed it when it was not
    /// armed, disarmed by an `unless` event (before the same event arms it
    /// again) and by firing; an `every` rule is armed at the first event,
    /// again a period after each firing, and restarted by a `without` event.
    func deadline(_ place: Int, after history: [Applied]) -> Int64? {
        let timer = policy.eventRules[place].timer!
        var deadline: Int64? = nil
        for a in history {
            if let fired = a.timer {
                if fired == place { deadline = timer.repeats ? Self.addTime(a.event.time, timer.delay) : nil }
                continue
            }
            if let type = a.event.type, timer.unless.contains(type) {
                deadline = timer.repeats ? Self.addTime(a.event.time, timer.delay) : nil
            }
            if deadline == nil && (timer.repeats || a.armed.contains(place)) { deadline = Self.addTime(a.event.time, timer.delay) }
        }
        return deadline
    }

    /// The history with every deadline at or before `time` fired, the
    /// earliest first (at one instant, in source order), each against the
    /// state as of its deadline.
    func firing(_ history: [Applied], upTo time: Int64) -> [Applied] {
        var history = history
        let timed = policy.eventRules.indices.filter { policy.eventRules[$0].timer != nil }
        while true {
            var next: (place: Int, at: Int64)? = nil
            for place in timed {
                if let d = deadline(place, after: history), d <= time, next.map({ d < $0.at }) ?? true { next = (place, d) }
            }
            guard let next else { return history }
            history.append(apply(Event(line: -1, type: nil, time: next.at, fields: [:]), after: history, timer: next.place))
        }
    }

    // MARK: - Applying

    /// An event, or (`timer`) a timed rule's firing at `event.time`.
    private func apply(_ event: Event, after history: [Applied], timer: Int? = nil) -> Applied {
        let before = View(history: history, time: event.time)
        var total: Int64 = 0
        // The last `set score to` of the event's fired rules, in source order:
        // the score from there on (`total` holds what came after it).
        var setTo: Int64? = nil
        var changes: [Change] = []
        var fired: [Int] = []
        var armed: [Int] = []
        for (place, rule) in policy.eventRules.enumerated() where timer == place || (timer == nil && Self.isOne(of: rule.events, event.type)) {
            if timer == nil, rule.timer != nil {
                // Armed, not fired: its effects wait for the deadline.
                if rule.condition.map({ eval($0, event, before) == .bool(true) }) ?? true { armed.append(place) }
                continue
            }
            if timer == nil, let condition = rule.condition, eval(condition, event, before) != .bool(true) { continue }
            if timer == nil, let count = rule.count, let window = rule.window {
                // `every N`: only the events after the rule last fired count.
                let since = rule.countMode == .every ? (history.lastIndex { $0.fired.contains(place) }.map { $0 + 1 } ?? 0) : 0
                let earlier = history[since...].filter {
                    Self.isOne(of: rule.events, $0.event.type) && inWindow($0.event.time, now: event.time, window)
                        && held(rule.condition, for: $0.event, in: history)
                }
                if rule.countMode == .exactly ? earlier.count + 1 != count : earlier.count + 1 < count { continue }
            }
            // The rule's score operations in order: each `±EXPR` and each
            // `set score to` with its value, all evaluated before it fires.
            var operations: [(set: Bool, value: Int64)] = []
            var fails = false
            for effect in rule.effects {
                switch effect {
                case .score(let amount), .setScore(let amount):
                    guard case .number(let x)? = eval(amount, event, before) else { fails = true; break }
                    if case .setScore = effect { operations.append((true, Self.round(x))) } else { operations.append((false, Self.round(x))) }
                default: continue
                }
                if fails { break }
            }
            if fails { continue }
            // A computed `for` is evaluated like the score changes, against
            // the state before the event; without a value, or outside a
            // microsecond to 1000 years, the rule does not fire.
            var ends: [Int64] = []
            for effect in rule.effects {
                guard case .set(_, _, let lasting, _) = effect else { continue }
                switch lasting {
                case .untilLifted: ends.append(Self.forever)
                case .fixed(let ticks): ends.append(Self.addTime(event.time, ticks))
                case .computed(let ir):
                    guard case .number(let seconds)? = eval(ir, event, before), seconds > 0, seconds <= 1000 * 365 * 86_400 else { fails = true; break }
                    let ticks = (seconds * 1_000_000).rounded()
                    guard ticks >= 1 else { fails = true; break }
                    ends.append(Self.addTime(event.time, Int64(ticks)))
                }
            }
            if fails { continue }
            // Attributes' new values, from the state before the event; one
            // of the wrong type (an undeclared field's) and the rule does
            // not fire.
            var values: [Value] = []
            for effect in rule.effects {
                guard case .setAttribute(let k, let ir) = effect else { continue }
                guard let v = eval(ir, event, before), Self.type(of: v) == policy.attributes[k].type else { fails = true; break }
                values.append(v == .number(-0.0) ? .number(0) : v)
            }
            if fails { continue }
            fired.append(place)
            for op in operations {
                if op.set { (setTo, total) = (op.value, 0) } else { total = Self.addScore(total, op.value) }
            }
            for effect in rule.effects {
                switch effect {
                case .score, .setScore: break
                case .setAttribute(let k, _):
                    changes.append(.attribute(k, values.removeFirst()))
                case .set(let kind, let name, _, let reason):
                    changes.append(.set(kind: kind, name: name, end: ends.removeFirst(), reason: reason))
                case .lift(let kind, let name, let reason):
                    changes.append(.lift(kind: kind, name: name, reason: reason))
                }
            }
        }
        var score = Self.addScore(setTo ?? before.score(policy), total)
        if let lo = policy.minScore { score = max(score, lo) }
        if let hi = policy.maxScore { score = min(score, hi) }
        return Applied(event: event, scoreAfter: score, changes: changes, fired: fired, timer: timer, armed: armed)
    }

    /// Whether `condition` held for an earlier event, against the state
    /// before it (what a window counts).
    private func held(_ condition: IR?, for event: Event, in history: [Applied]) -> Bool {
        guard let condition else { return true }
        let k = history.firstIndex { $0.event.line == event.line }!
        return eval(condition, event, View(history: Array(history[..<k]), time: event.time)) == .bool(true)
    }

    private func inWindow(_ t: Int64, now: Int64, _ window: Int64) -> Bool {
        t <= now && t > now - window
    }

    // MARK: - A person's state as of a time

    /// The events a person had before some moment, and that moment.
    struct View {
        var history: [Applied]
        var time: Int64

        func score(_ policy: CheckedPolicy) -> Int64 { history.last?.scoreAfter ?? policy.startScore }

        /// When what event rules set on (kind, name) for `reason` ends:
        /// replayed from every change, later ends winning, a lift of that
        /// reason, or one without a reason, erasing.
        func end(_ kind: TargetKind, _ name: Int, reason: Int?) -> Int64? {
            var end: Int64? = nil
            for applied in history {
                for change in applied.changes {
                    switch change {
                    case .set(let k, let n, let e, let r) where k == kind && n == name && r == reason: end = max(end ?? e, e)
                    case .lift(let k, let n, let r) where k == kind && n == name && (r == nil || r == reason): end = nil
                    default: break
                    }
                }
            }
            return end
        }

        /// Attribute `k`: the last value an event set, or its start.
        func attribute(_ k: Int, _ policy: CheckedPolicy) -> Value {
            for applied in history.reversed() {
                for change in applied.changes.reversed() {
                    if case .attribute(let a, let v) = change, a == k { return v }
                }
            }
            switch policy.attributes[k].start {
            case .number(let x): return .number(x)
            case .string(let s): return .string(Array(s.utf8))
            case .bool(let b): return .bool(b)
            default: preconditionFailure("an attribute starts with a constant")
            }
        }

        /// In force for some reason, or without one.
        func setByEventRules(_ kind: TargetKind, _ name: Int) -> Bool {
            var reasons: Set<Int?> = [nil]
            for applied in history {
                for case .set(let k, let n, _, let r) in applied.changes where k == kind && n == name { reasons.insert(r) }
            }
            return reasons.contains { end(kind, name, reason: $0).map { $0 > time } ?? false }
        }
    }

    /// Which `while` rules hold: evaluated again and again from "none" until
    /// nothing changes (a fixpoint, not the engine's graph order; with no
    /// cycles the two agree).
    func whileRulesHolding(_ view: View) -> [Bool] {
        var holding = [Bool](repeating: false, count: policy.stateRules.count)
        for _ in 0...policy.stateRules.count {
            let next = policy.stateRules.map { evalState($0.condition, view, holding) == .bool(true) }
            if next == holding { break }
            holding = next
        }
        return holding
    }

    private func held(_ kind: TargetKind, _ name: Int, _ view: View, _ holding: [Bool]) -> Bool {
        if view.setByEventRules(kind, name) { return true }
        for (rule, holds) in zip(policy.stateRules, holding) where holds {
            if rule.effects.contains(where: { $0.kind == kind && $0.name == name }) { return true }
        }
        return false
    }

    // MARK: - Expressions

    /// nil: the expression has no value (missing field, wrong type, division
    /// by zero, a result that is not finite).
    func eval(_ ir: IR, _ event: Event, _ view: View) -> Value? {
        evaluate(ir, view, event: event, holding: nil)
    }

    private func evalState(_ ir: IR, _ view: View, _ holding: [Bool]) -> Value? {
        evaluate(ir, view, event: nil, holding: holding)
    }

    private func evaluate(_ ir: IR, _ view: View, event: Event?, holding given: [Bool]?) -> Value? {
        func sub(_ x: IR) -> Value? { evaluate(x, view, event: event, holding: given) }
        func number(_ x: IR) -> Double? { if case .number(let n)? = sub(x) { return n }; return nil }
        switch ir {
        case .number(let n): return .number(n)
        case .bool(let b): return .bool(b)
        case .string(let s): return .string(Array(s.utf8))
        case .field(_, let name): return event?.fields[name]
        case .flag(let f):
            return .bool(held(.flag, f, view, given ?? whileRulesHolding(view)))
        case .privilege(let kind, let p):
            // What the report would list: a denial beats a grant.
            let holding = given ?? whileRulesHolding(view)
            let denied = held(.deny, p, view, holding)
            return .bool(kind == .deny ? denied : !denied && held(.grant, p, view, holding))
        case .score: return .number(Double(view.score(policy)))
        case .attribute(let k): return view.attribute(k, policy)
        case .unary(.negate, let a): return number(a).map { .number(-$0) }
        case .unary(.not, let a):
            if case .bool(let b)? = sub(a) { return .bool(!b) }
            return nil
        case .binary(.and, let a, let b), .binary(.or, let a, let b):
            let isAnd: Bool
            if case .binary(.and, _, _) = ir { isAnd = true } else { isAnd = false }
            guard case .bool(let l)? = sub(a) else { return nil }
            if l != isAnd { return .bool(l) }
            guard case .bool(let r)? = sub(b) else { return nil }
            return .bool(r)
        case .binary(let op, let a, let b):
            guard let l = sub(a), let r = sub(b) else { return nil }
            return Self.binary(op, l, r)
        case .conditional(let c, let a, let b):
            guard case .bool(let holds)? = sub(c) else { return nil }
            return sub(holds ? a : b)
        case .inList(let a, let items):
            guard let v = sub(a) else { return nil }
            for item in items {
                guard let i = sub(item), Self.type(of: i) == Self.type(of: v) else { return nil }
                if i == v || (Self.isZero(i) && Self.isZero(v)) { return .bool(true) }
            }
            return .bool(false)
        case .call(let fn, let args):
            var xs: [Double] = []
            for a in args { guard let x = number(a) else { return nil }; xs.append(x) }
            switch fn {
            case .abs: return .number(Swift.abs(xs[0]))
            case .min: return .number(xs.dropFirst().reduce(xs[0]) { Swift.min($0, $1) })
            case .max: return .number(xs.dropFirst().reduce(xs[0]) { Swift.max($0, $1) })
            default: return nil
            }
        case .aggregate(let buffer, let window, let isSum):
            let spec = policy.buffers[buffer]
            var count = 0.0, sum = 0.0
            for applied in view.history where Self.isOne(of: spec.events, applied.event.type)
                && inWindow(applied.event.time, now: view.time, window)
                && held(spec.condition, for: applied.event, in: view.history) {
                if let field = spec.field {
                    guard case .number(let x)? = applied.event.fields[policy.fields[field]] else { continue }
                    sum += x
                }
                count += 1
            }
            return .number(isSum ? sum : count)
        }
    }

    private static func isZero(_ v: Value) -> Bool { v == .number(0) }

    static func binary(_ op: BinaryOp, _ l: Value, _ r: Value) -> Value? {
        switch (l, r) {
        case (.number(let x), .number(let y)):
            let result: Double
            switch op {
            case .add: result = x + y
            case .sub: result = x - y
            case .mul: result = x * y
            case .div: if y == 0 { return nil }; result = x / y
            case .mod: if y == 0 { return nil }; result = x.truncatingRemainder(dividingBy: y)
            case .eq: return .bool(x == y)
            case .ne: return .bool(x != y)
            case .lt: return .bool(x < y)
            case .le: return .bool(x <= y)
            case .gt: return .bool(x > y)
            case .ge: return .bool(x >= y)
            case .and, .or: return nil
            }
            return result.isFinite ? .number(result) : nil
        case (.string, .string), (.bool, .bool):
            switch op {
            case .eq: return .bool(l == r)
            case .ne: return .bool(l != r)
            default: return nil
            }
        default:
            return nil
        }
    }

    // MARK: - Numbers and time, as the contract states them

    /// Rounded to the nearest integer, halves away from zero, stopped at the
    /// score's limit.
    static func round(_ x: Double) -> Int64 {
        let r = x.rounded(.toNearestOrAwayFromZero)
        if r >= Double(scoreLimit) { return scoreLimit }
        if r <= -Double(scoreLimit) { return -scoreLimit }
        return Int64(r)
    }

    static func addScore(_ a: Int64, _ b: Int64) -> Int64 {
        // Both are within ±9e15, so the sum fits an Int64.
        min(scoreLimit, max(-scoreLimit, a + b))
    }

    static func addTime(_ t: Int64, _ d: Int64) -> Int64 {
        let (sum, overflow) = t.addingReportingOverflow(d)
        return overflow ? forever : sum
    }

    /// A number as the report writes it: whole numbers below 10^15 without
    /// a fraction (and -0 as 0), others as Swift's shortest round trip.
    static func jsonNumber(_ x: Double) -> String {
        if x.rounded() == x && Swift.abs(x) < 1e15 { return "\(Int64(x))" }
        return "\(x)"
    }

    // MARK: - The report

    /// `rules run`'s output: one line per person, sorted by id bytes.
    func report() -> String {
        guard let time = asOf ?? clock else { return "" }
        var out = ""
        for id in people.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            let view = View(history: firing(people[id]!, upTo: time), time: time)
            let holding = whileRulesHolding(view)
            func names(_ kind: TargetKind, _ all: [String]) -> [String] {
                all.indices.filter { held(kind, $0, view, holding) }.map { all[$0] }
            }
            let flags = names(.flag, policy.flags)
            let denied = names(.deny, policy.privileges)
            let granted = names(.grant, policy.privileges).filter { !denied.contains($0) }
            func list(_ xs: [String]) -> String { "[" + xs.map { ReferenceStream.quote(Array($0.utf8)) }.joined(separator: ",") + "]" }
            out += "{\"citizen\":\(ReferenceStream.quote(id)),\"score\":\(view.score(policy)),\"flags\":\(list(flags)),"
            out += "\"denied\":\(list(denied)),\"granted\":\(list(granted))"
            // Attributes and outputs, in the order the policy declares them;
            // outputs are numbers as of the report's clock, read as `while`
            // rules read; null without a value.
            for extra in policy.reportExtras {
                switch extra {
                case .attribute(let k):
                    out += ",\(ReferenceStream.quote(Array(policy.attributes[k].name.utf8))):"
                    switch view.attribute(k, policy) {
                    case .number(let x): out += Self.jsonNumber(x)
                    case .string(let bytes): out += ReferenceStream.quote(bytes)
                    case .bool(let b): out += b ? "true" : "false"
                    }
                case .output(let k):
                    let output = policy.outputs[k]
                    out += ",\(ReferenceStream.quote(Array(output.name.utf8))):"
                    if case .number(let x)? = evalState(output.value, view, holding) { out += Self.jsonNumber(x) } else { out += "null" }
                }
            }
            out += "}\n"
        }
        return out
    }
}
