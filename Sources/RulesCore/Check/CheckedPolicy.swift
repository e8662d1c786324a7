/// The output of the checker: every name resolved to an index, every
/// constant folded, durations in ticks (`Timestamp.perSecond`), state rules in graph order.
/// The compiler turns this into evaluation nodes; nothing downstream looks a
/// name up again.

package enum ValueType: String, Sendable {
    case number, string, bool, duration
    /// A field of an undeclared event: its type is known only at run time.
    case any
}

/// A resolved expression.
package indirect enum IR: Sendable, Hashable {
    case number(Double)
    case bool(Bool)
    case string(String)
    /// A field of the current event, by global field id.
    case field(Int, name: String)
    case flag(Int)
    /// `denied(P)` / `granted(P)`: whether the report would list privilege
    /// `P` (by id) under `denied` / `granted`.
    case privilege(TargetKind, Int)
    case score
    case unary(UnaryOp, IR)
    case binary(BinaryOp, IR, IR)
    case inList(IR, [IR])
    case call(Builtin, [IR])
    /// `if CONDITION then A else B`: only the value chosen is evaluated.
    case conditional(IR, IR, IR)
    /// A windowed aggregate over a buffer; `window` in ticks.
    case aggregate(buffer: Int, window: Int64, sum: Bool)
    /// The person's attribute, by id (`policy.attributes`).
    case attribute(Int)

    /// True when the value does not depend on any event or person.
    var isConstant: Bool {
        switch self {
        case .number, .bool, .string: return true
        case .field, .flag, .privilege, .score, .aggregate, .attribute: return false
        case .unary(_, let a): return a.isConstant
        case .binary(_, let a, let b): return a.isConstant && b.isConstant
        case .inList(let a, let items): return a.isConstant && items.allSatisfy(\.isConstant)
        case .call(_, let args): return args.allSatisfy(\.isConstant)
        case .conditional(let c, let a, let b): return c.isConstant && a.isConstant && b.isConstant
        }
    }

    /// Everything this expression reads: whether the score, which
    /// aggregate buffers (for `rules graph`).
    package func reads(score: inout Bool, buffers: inout Set<Int>) {
        forEachPart { part in
            switch part {
            case .score: score = true
            case .aggregate(let b, _, _): buffers.insert(b)
            default: break
            }
        }
    }

    /// Calls `body` with this expression and each of its parts, outermost
    /// first.
    package func forEachPart(_ body: (IR) -> Void) {
        body(self)
        switch self {
        case .unary(_, let a): a.forEachPart(body)
        case .binary(_, let a, let b): a.forEachPart(body); b.forEachPart(body)
        case .inList(let a, let items): a.forEachPart(body); items.forEach { $0.forEachPart(body) }
        case .call(_, let args): args.forEach { $0.forEachPart(body) }
        case .conditional(let c, let a, let b): c.forEachPart(body); a.forEachPart(body); b.forEachPart(body)
        case .number, .bool, .string, .field, .flag, .privilege, .score, .aggregate, .attribute: break
        }
    }

    /// Calls `body` with each privilege it reads (`denied(P)`, `granted(P)`).
    package func privilegesRead(_ body: (TargetKind, Int) -> Void) {
        forEachPart { if case .privilege(let kind, let p) = $0 { body(kind, p) } }
    }

    /// Whether it reads nothing of a person's state — no score, flag or
    /// window — only the event's fields: it can be evaluated again for a
    /// past event, from its line alone.
    package var readsOnlyTheEvent: Bool {
        switch self {
        case .number, .bool, .string, .field: return true
        case .flag, .privilege, .score, .aggregate, .attribute: return false
        case .unary(_, let a): return a.readsOnlyTheEvent
        case .binary(_, let a, let b): return a.readsOnlyTheEvent && b.readsOnlyTheEvent
        case .inList(let a, let items): return a.readsOnlyTheEvent && items.allSatisfy(\.readsOnlyTheEvent)
        case .call(_, let args): return args.allSatisfy(\.readsOnlyTheEvent)
        case .conditional(let c, let a, let b): return c.readsOnlyTheEvent && a.readsOnlyTheEvent && b.readsOnlyTheEvent
        }
    }

    /// Flags this expression reads (for the rule graph).
    package func flagsRead(into set: inout Set<Int>) {
        switch self {
        case .flag(let f): set.insert(f)
        case .unary(_, let a): a.flagsRead(into: &set)
        case .binary(_, let a, let b): a.flagsRead(into: &set); b.flagsRead(into: &set)
        case .inList(let a, let items): a.flagsRead(into: &set); items.forEach { $0.flagsRead(into: &set) }
        case .call(_, let args): args.forEach { $0.flagsRead(into: &set) }
        case .conditional(let c, let a, let b): c.flagsRead(into: &set); a.flagsRead(into: &set); b.flagsRead(into: &set)
        default: break
        }
    }
}

/// The rule graph's keys for what state rules read and set: each flag, each
/// privilege's denials, each privilege's grants, one number apiece.
package struct TargetKeys {
    let flags: Int, privileges: Int
    package init(_ policy: CheckedPolicy) { (flags, privileges) = (policy.flags.count, policy.privileges.count) }
    package func key(_ kind: TargetKind, _ name: Int) -> Int {
        switch kind {
        case .flag: return name
        case .deny: return flags + name
        case .grant: return flags + privileges + name
        }
    }
    /// How a cycle's message names a key: `low_trust`, `denied(travel)`.
    package func shown(_ key: Int, in policy: CheckedPolicy) -> String {
        if key < flags { return policy.flags[key] }
        if key < flags + privileges { return "denied(\(policy.privileges[key - flags]))" }
        return "granted(\(policy.privileges[key - flags - privileges]))"
    }
}

extension CheckedPolicy {
    /// The names of a kind's targets, by id: the flags, or the privileges.
    package func names(of kind: TargetKind) -> [String] { kind.isFlag ? flags : privileges }
}

/// How long a `deny`/`grant`/`flag` of an event rule lasts.
package enum Lasting: Sendable, Hashable {
    /// No `for`: until lifted.
    case untilLifted
    /// `for` a duration known when the policy is checked, in ticks.
    case fixed(Int64)
    /// `for` a duration that reads the event or the person's state
    /// (`for days * 1 day`): evaluated when the rule fires, in seconds.
    case computed(IR)

    /// The ticks of a fixed duration.
    package var fixed: Int64? {
        if case .fixed(let t) = self { return t }
        return nil
    }
}

package enum CheckedEffect: Sendable {
    /// A score change; the sign is already folded into the expression.
    case score(IR)
    /// `set score to EXPR`: replaces the score so far in the event's
    /// effects (changes before it are dropped; changes after it add).
    case setScore(IR)
    /// `set NAME to EXPR`: the attribute's value from this event on.
    case setAttribute(Int, IR)
    /// `deny`/`grant`/`flag`, and how long; a denial may have a reason
    /// (`policy.denialReasons`).
    case set(TargetKind, name: Int, duration: Lasting, reason: Int? = nil)
    /// `allow`/`revoke`/`clear`: lifts what event rules set — with a
    /// reason, only the denial of that reason; without, every one.
    case lift(TargetKind, name: Int, reason: Int? = nil)
}

/// When a timed rule fires (`RuleTimer`), resolved.
package struct CheckedTimer: Sendable {
    /// The delay after the arming event, or the period, in ticks.
    package var delay: Int64
    /// `every`: armed at the person's first event, again after each firing.
    package var repeats: Bool
    /// The events that disarm it (`unless`) or restart its period
    /// (`without`), sorted.
    package var unless: [Int]
}

package struct CheckedEventRule: Sendable {
    package var ast: EventRule
    /// The event types it fires on: one, or a group's members (sorted).
    package var events: [Int]
    /// `N` and the window of a counted rule, and the buffer of matching times.
    package var count: Int?
    package var countMode = CountMode.atLeast
    var window: Int64?
    var counterBuffer: Int?
    package var condition: IR?
    package var effects: [CheckedEffect]
    /// A timed rule: `events` arm it, its effects happen at the deadline
    /// (its `condition` is read when it is armed).
    package var timer: CheckedTimer? = nil
}

package struct CheckedStateRule: Sendable {
    package var ast: StateRule
    package var condition: IR
    /// Only `.set` effects without duration are allowed here.
    package var effects: [(kind: TargetKind, name: Int)]
    var reads: Set<Int>
    var writes: Set<Int>
}

/// A window buffer: the times (and for `sum`, values) of one event type's
/// (or one group's) matching events, kept for the longest window that
/// reads it.
package struct WindowBufferSpec: Sendable, Hashable {
    /// The event types it keeps: one, or a group's members (sorted).
    package var events: [Int]
    var condition: IR?
    var field: Int?
    /// Counted rules need only their last N-1 matching times (N for
    /// `exactly`).
    var cap: Int?
    /// For an `every` rule, its own buffer (emptied when it fires): the
    /// rule's text, which a changed policy keeps while the rule stays.
    var restartsFor: String? = nil
}

/// `output credit limit = max(0, score - 600) * 100`: a number computed
/// from the person's state as of the report's clock (as `while` rules are
/// evaluated), shown as the key `credit_limit`.
package struct CheckedOutput: Sendable {
    /// Joined (`credit_limit`): the report's key.
    package var name: String
    var value: IR
    /// The expression as written (an explanation shows it with values).
    var expr: Expr
    package var span: Span
}

/// `attribute region = "unknown"`: a value per person, of one type, from
/// its start value until an event rule sets it.
package struct CheckedAttribute: Sendable {
    package var name: String
    package var type: ValueType
    /// A constant (`.number`, `.string` or `.bool`).
    var start: IR
    package var span: Span
}

/// A key of a report line after the contract's own.
package enum ReportExtra: Sendable, Equatable {
    case attribute(Int)
    case output(Int)
}

package struct EventInfo: Sendable {
    public var name: String
    /// Declared fields (global field id, type), or nil when undeclared.
    package var declared: [(field: Int, type: ValueType)]?
}

package struct CheckedPolicy: Sendable {
    package var sources: SourceSet
    var startScore: Int64 = 0
    var minScore: Int64? = nil
    var maxScore: Int64? = nil
    package var events: [EventInfo] = []
    package var fields: [String] = []
    /// Flag and privilege names, sorted by bytes so reports come out sorted.
    package var flags: [String] = []
    package var privileges: [String] = []
    /// Event groups by name: the events each stands for (sorted ids).
    package var groups: [String: [Int]] = [:]
    /// The `let`s that read the person's state (named per-person values),
    /// not constants: each use reads them as of that moment.
    package var personValues: Set<String> = []
    /// `output NAME = …`: numbers the report shows after its own keys.
    package var outputs: [CheckedOutput] = []
    /// `attribute NAME = START`, by id.
    package var attributes: [CheckedAttribute] = []
    /// The reasons denials give (`deny travel because debt`), sorted.
    package var denialReasons: [String] = []
    /// The keys a report line has after its own: attributes and outputs,
    /// in the order the policy declares them.
    package var reportExtras: [ReportExtra] = []
    package var eventRules: [CheckedEventRule] = []
    /// State rules in evaluation (graph) order.
    package var stateRules: [CheckedStateRule] = []
    package var buffers: [WindowBufferSpec] = []
    var bufferWindows: [Int64] = []
    /// By buffer, every window through which a `while` rule reads it,
    /// shortest first (none for a buffer only event rules read): where a
    /// person's entry leaves one, their report can change with no event of
    /// theirs (the service's change feed wakes them then).
    package var bufferReadWindows: [[Int64]] = []
    /// Where each buffer was first asked for: a `count(…)`/`sum(…)`, or a
    /// counted rule (notes about values a buffer skipped point here).
    var bufferSpans: [Span] = []
    var hasDeclarations = false
    /// Positions in `stateRules` of the rules on a cycle (an error).
    package var cycle: Set<Int> = []
    /// Every resolved part of every rule's expressions, by its span.
    var parts: [Span: IR] = [:]
    /// Every name use, what the checker decided it is, in source order.
    package var nameUses: [NameUse] = []
}
