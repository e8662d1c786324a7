/// The syntax tree. Every node carries a span, but spans are left out of
/// equality: two rules that say the same thing are equal wherever they stand
/// (the duplicate-rule warning relies on this).

/// A name as written, already joined (`unpaid debt` → `unpaid_debt`).
package struct Name: Sendable, Equatable, CustomStringConvertible {
    public var text: String
    public var span: Span
    public static func == (a: Name, b: Name) -> Bool { a.text == b.text }
    public var description: String { text }
}

package enum UnaryOp: String, Sendable { case negate = "-", not }
package enum BinaryOp: String, Sendable {
    case add = "+", sub = "-", mul = "*", div = "/", mod = "%"
    case eq = "==", ne = "!=", lt = "<", le = "<=", gt = ">", ge = ">="
    case and, or
}

package indirect enum ExprKind: Sendable, Equatable {
    case number(Double)
    case string(String)
    case bool(Bool)
    /// A duration literal, in seconds.
    case duration(Double)
    case name(String)
    case score
    case unary(UnaryOp, Expr)
    case binary(BinaryOp, Expr, Expr)
    case inList(Expr, [Expr])
    /// `min(a, b, …)`, `max(a, b, …)`, `abs(x)`.
    case call(Builtin, [Expr])
    /// `if CONDITION then A else B`.
    case conditional(Expr, Expr, Expr)
    /// `denied(P)`, `granted(P)`: whether the person's report would list P
    /// under `denied` / `granted` now.
    case privilege(TargetKind, Name)
    /// `count(EVENT [where COND] within DURATION)`.
    case count(event: Name, condition: Expr?, window: Expr)
    /// `sum(EVENT.FIELD [where COND] within DURATION)`.
    case sum(event: Name, field: Name, condition: Expr?, window: Expr)
    /// Stands in for an expression that did not parse.
    case invalid
}

extension Expr {
    /// Whether the expression reads something known only when the rules
    /// run: the score, a count or sum, a privilege — or a name for which
    /// `name` says so. (The checker's questions "does this `let` read the
    /// person?" and "must this `for` be computed?" differ only in names.)
    func readsState(name: (String, Span) -> Bool) -> Bool {
        func again(_ x: Expr) -> Bool { x.readsState(name: name) }
        switch kind {
        case .score, .count, .sum, .privilege: return true
        case .name(let n): return name(n, span)
        case .unary(_, let a): return again(a)
        case .binary(_, let a, let b): return again(a) || again(b)
        case .inList(let a, let items): return again(a) || items.contains { again($0) }
        case .call(_, let args): return args.contains { again($0) }
        case .conditional(let c, let a, let b): return again(c) || again(a) || again(b)
        case .number, .string, .bool, .duration, .invalid: return false
        }
    }
}

package struct Expr: Sendable, Equatable {
    public var kind: ExprKind
    public var span: Span
    /// Made by the parser, not written: a branch of a chain of rules reads
    /// `not (an earlier branch's condition) and …`. It has no place of its
    /// own, so an explanation shows it as what it is made of, not as a
    /// part with a value.
    public var synthetic = false
    public static func == (a: Expr, b: Expr) -> Bool { a.kind == b.kind }
}

package enum EffectKind: Sendable, Equatable {
    /// `+EXPR` or `-EXPR`; the sign applies to the whole expression.
    case score(sign: Double, Expr)
    /// `set score to EXPR`: the score from here on in the event's effects.
    case setScore(Expr)
    /// `set region to EXPR`: an attribute's value from here on.
    case setAttribute(Name, Expr)
    /// `flag F`, `deny P`, `grant P`, each with an optional `for D`.
    case set(TargetKind, Name, duration: Expr?)
    /// `clear F`, `allow P`, `revoke P`.
    case lift(TargetKind, Name)
}

package struct Effect: Sendable, Equatable {
    public var kind: EffectKind
    public var span: Span
    /// `deny travel because debt`, `allow travel because debt`: the
    /// denial's reason (only a `deny` or an `allow` has one).
    public var reason: Name? = nil
    public static func == (a: Effect, b: Effect) -> Bool { a.kind == b.kind && a.reason == b.reason }
}

/// How a counted rule counts (`3 x within …`, `exactly 3 x within …`,
/// `every 3 x within …`).
package enum CountMode: String, Sendable, Equatable {
    /// Fires on each event after which at least N lie in the window.
    case atLeast = ""
    /// Fires on each event after which exactly N lie in the window.
    case exactly
    /// Fires when N lie in the window counting only events after its last
    /// firing: then it counts again from zero.
    case every
}

/// When a timed rule fires: `30 days after EVENT [where COND] [unless
/// EVENT]`, or `every 30 days [without EVENT]`. Its effects happen when
/// event time passes the deadline, never by the wall clock.
package struct RuleTimer: Sendable, Equatable {
    /// The delay after the arming event, or the period.
    public var delay: Expr
    /// `every D`: armed at the person's first event, armed again `D` after
    /// each firing.
    public var repeats: Bool
    /// `unless E` disarms an `after` rule; `without E` restarts an `every`
    /// rule's period.
    public var unless: Name?
}

/// `[N] EVENT [where COND] [within DURATION] → EFFECTS`, or a timed rule
/// (`timer`; an `every` rule has no event: its `event` is empty).
package struct EventRule: Sendable, Equatable {
    public var count: Expr?
    public var countMode = CountMode.atLeast
    public var event: Name
    public var condition: Expr?
    public var window: Expr?
    public var effects: [Effect]
    public var span: Span
    /// An `else` branch of the rule before (its condition says so).
    public var chained = false
    /// `rule "reckless driving" …`: a name that stays when lines move.
    public var name: Name? = nil
    /// A timed rule: its effects happen at a deadline, not on the event.
    public var timer: RuleTimer? = nil
    public static func == (a: EventRule, b: EventRule) -> Bool {
        a.count == b.count && a.countMode == b.countMode && a.event == b.event && a.condition == b.condition
            && a.window == b.window && a.effects == b.effects && a.timer == b.timer
    }
}

/// `while COND → EFFECTS`
package struct StateRule: Sendable, Equatable {
    public var condition: Expr
    public var effects: [Effect]
    public var span: Span
    /// An `else` branch of the rule before (its condition says so).
    public var chained = false
    /// `rule "good standing" while …`: a name that stays when lines move.
    public var name: Name? = nil
    public static func == (a: StateRule, b: StateRule) -> Bool {
        a.condition == b.condition && a.effects == b.effects
    }
}

package enum ScoreSettingKind: String, Sendable { case startsAt = "starts at", min, max }

package struct ScoreSetting: Sendable {
    public var kind: ScoreSettingKind
    public var value: Expr
    public var span: Span
}

package struct FieldDecl: Sendable {
    public var name: Name
    public var type: Name
}

/// `event NAME { field: type, ... }`
package struct EventDecl: Sendable {
    public var name: Name
    public var fields: [FieldDecl]
    public var span: Span
}

/// `event NAME = MEMBER, MEMBER, …`: an event group, a name for any of
/// several event types (a member may be another group).
package struct EventGroup: Sendable {
    public var name: Name
    public var members: [Name]
    public var span: Span
}

/// `test "name" { ... }`: events to feed a fresh engine, and what to expect.
package struct TestBlock: Sendable {
    public var name: String
    public var span: Span
    public var steps: [TestStep]
}

package enum TestStep: Sendable {
    case event(EventLiteral)
    case expect(Expectation)
}

/// `2026-01-05T08:00:00Z alice: speeding { speed: 95, limit: 60 }` — the
/// same literal the REPL accepts.
package struct EventLiteral: Sendable {
    public var time: Int64
    public var person: Name
    public var event: Name
    public var fields: [(name: Name, value: LiteralValue)]
    public var span: Span
    /// How many times it happens (`3 × 2026-01-05 alice: littering`):
    /// that many events, one after the other, at the same time.
    public var repeats = 1
}

package enum LiteralValue: Sendable, Equatable {
    case number(Double), string(String), bool(Bool)
}

/// `[at TIME] expect …`
package struct Expectation: Sendable {
    public var at: Int64?
    public var kind: ExpectationKind
    public var span: Span
}

package enum ExpectationKind: Sendable {
    /// `expect alice score >= 900`; with `output`, one of the policy's
    /// outputs instead of the score (`expect alice credit limit >= 500`).
    case score(person: Name, op: BinaryOp, value: Double, output: Name? = nil)
    /// `expect alice score between 900 and 1000` (inclusive)
    case scoreBetween(person: Name, low: Double, high: Double, output: Name? = nil)
    /// `expect alice region == "north"`, `expect alice vip != true`: an
    /// attribute compared with a string or a bool.
    case value(person: Name, attribute: Name, op: BinaryOp, value: LiteralValue)
    /// `expect alice [not] flagged debtor` / `denied travel` / `granted fast lane`
    case holds(person: Name, kind: TargetKind, name: Name, negated: Bool)
    /// `expect alice flags [debtor, low trust]` / `denied [...]` / `granted []`
    case exactly(person: Name, kind: TargetKind, names: [Name])
    /// `expect [not] fired "3 speeding within 30 days"`: some rule whose
    /// source contains the text fired (a `while` rule: held) during the test.
    case fired(rule: String, ruleSpan: Span, negated: Bool)
}

package enum Statement: Sendable {
    case settings([ScoreSetting], Span)
    case constant(Name, Expr, Span)
    /// `output credit limit = EXPR`: a number computed from the person's
    /// state, reported as an extra key of their line.
    case output(Name, Expr, Span)
    /// `attribute region = "unknown"`: a value each person has, from the
    /// start value until an event rule sets it (`set region to …`).
    case attribute(Name, Expr, Span)
    case event(EventDecl)
    case group(EventGroup)
    case eventRule(EventRule)
    case stateRule(StateRule)
    case test(TestBlock)
    /// `use "other.rules"`: that file's statements come first. Resolved by
    /// whoever reads the files (see `PolicyLoader`).
    case use(path: String, span: Span)
}

/// The parsed files of one policy, statements in source order.
package struct PolicyAST: Sendable {
    public var statements: [Statement] = []
}

extension Statement {
    /// Where the whole statement stands.
    public var span: Span {
        switch self {
        case .settings(_, let s), .constant(_, _, let s), .output(_, _, let s), .attribute(_, _, let s), .use(_, let s): return s
        case .event(let d): return d.span
        case .group(let g): return g.span
        case .eventRule(let r): return r.span
        case .stateRule(let r): return r.span
        case .test(let t): return t.span
        }
    }
}

extension EffectKind {
    /// `allow`, `revoke`, `clear`.
    var isLift: Bool {
        if case .lift = self { return true }
        return false
    }
}
