/// The syntax tree. Every node carries a span, but spans are left out of
/// equality: two rules that say the same thing are equal wherever they stand
/// (the duplicate-rule warning relies on this).

/// A name as written, already joined (`unpaid debt` → `unpaid_debt`).
@_spi(Tooling) public struct Name: Sendable, Equatable, CustomStringConvertible {
    public var text: String
    public var span: Span
    public static func == (a: Name, b: Name) -> Bool { a.text == b.text }
    public var description: String { text }
}

@_spi(Tooling) public enum UnaryOp: String, Sendable { case negate = "-", not }
@_spi(Tooling) public enum BinaryOp: String, Sendable {
    case add = "+", sub = "-", mul = "*", div = "/", mod = "%"
    case eq = "==", ne = "!=", lt = "<", le = "<=", gt = ">", ge = ">="
    case and, or
}

@_spi(Tooling) public indirect enum ExprKind: Sendable, Equatable {
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
    /// `min(a, b)`, `max(a, b)`, `abs(x)`.
    case call(Builtin, [Expr])
    /// `count(EVENT [where COND] within DURATION)`.
    case count(event: Name, condition: Expr?, window: Expr)
    /// `sum(EVENT.FIELD [where COND] within DURATION)`.
    case sum(event: Name, field: Name, condition: Expr?, window: Expr)
    /// Stands in for an expression that did not parse.
    case invalid
}

@_spi(Tooling) public struct Expr: Sendable, Equatable {
    public var kind: ExprKind
    public var span: Span
    public static func == (a: Expr, b: Expr) -> Bool { a.kind == b.kind }
}

@_spi(Tooling) public enum EffectKind: Sendable, Equatable {
    /// `+EXPR` or `-EXPR`; the sign applies to the whole expression.
    case score(sign: Double, Expr)
    /// `flag F`, `deny P`, `grant P`, each with an optional `for D`.
    case set(TargetKind, Name, duration: Expr?)
    /// `clear F`, `allow P`, `revoke P`.
    case lift(TargetKind, Name)
}

@_spi(Tooling) public struct Effect: Sendable, Equatable {
    public var kind: EffectKind
    public var span: Span
    public static func == (a: Effect, b: Effect) -> Bool { a.kind == b.kind }
}

/// `[N] EVENT [where COND] [within DURATION] → EFFECTS`
@_spi(Tooling) public struct EventRule: Sendable, Equatable {
    public var count: Expr?
    public var event: Name
    public var condition: Expr?
    public var window: Expr?
    public var effects: [Effect]
    public var span: Span
    public static func == (a: EventRule, b: EventRule) -> Bool {
        a.count == b.count && a.event == b.event && a.condition == b.condition
            && a.window == b.window && a.effects == b.effects
    }
}

/// `while COND → EFFECTS`
@_spi(Tooling) public struct StateRule: Sendable, Equatable {
    public var condition: Expr
    public var effects: [Effect]
    public var span: Span
    public static func == (a: StateRule, b: StateRule) -> Bool {
        a.condition == b.condition && a.effects == b.effects
    }
}

@_spi(Tooling) public enum ScoreSettingKind: String, Sendable { case startsAt = "starts at", min, max }

@_spi(Tooling) public struct ScoreSetting: Sendable {
    public var kind: ScoreSettingKind
    public var value: Expr
    public var span: Span
}

@_spi(Tooling) public struct FieldDecl: Sendable {
    public var name: Name
    public var type: Name
}

/// `event NAME { field: type, ... }`
@_spi(Tooling) public struct EventDecl: Sendable {
    public var name: Name
    public var fields: [FieldDecl]
    public var span: Span
}

/// `test "name" { ... }`: events to feed a fresh engine, and what to expect.
@_spi(Tooling) public struct TestBlock: Sendable {
    public var name: String
    public var span: Span
    public var steps: [TestStep]
}

@_spi(Tooling) public enum TestStep: Sendable {
    case event(EventLiteral)
    case expect(Expectation)
}

/// `2026-01-05T08:00:00Z alice: speeding { speed: 95, limit: 60 }` — the
/// same literal the REPL accepts.
@_spi(Tooling) public struct EventLiteral: Sendable {
    public var time: Int64
    public var person: Name
    public var event: Name
    public var fields: [(name: Name, value: LiteralValue)]
    public var span: Span
}

@_spi(Tooling) public enum LiteralValue: Sendable, Equatable {
    case number(Double), string(String), bool(Bool)
}

/// `[at TIME] expect …`
@_spi(Tooling) public struct Expectation: Sendable {
    public var at: Int64?
    public var kind: ExpectationKind
    public var span: Span
}

@_spi(Tooling) public enum ExpectationKind: Sendable {
    /// `expect alice score >= 900`
    case score(person: Name, op: BinaryOp, value: Double)
    /// `expect alice score between 900 and 1000` (inclusive)
    case scoreBetween(person: Name, low: Double, high: Double)
    /// `expect alice [not] flagged debtor` / `denied travel` / `granted fast lane`
    case holds(person: Name, kind: TargetKind, name: Name, negated: Bool)
    /// `expect alice flags [debtor, low trust]` / `denied [...]` / `granted []`
    case exactly(person: Name, kind: TargetKind, names: [Name])
    /// `expect [not] fired "3 speeding within 30 days"`: some rule whose
    /// source contains the text fired (a `while` rule: held) during the test.
    case fired(rule: String, ruleSpan: Span, negated: Bool)
}

@_spi(Tooling) public enum Statement: Sendable {
    case settings([ScoreSetting], Span)
    case constant(Name, Expr, Span)
    case event(EventDecl)
    case eventRule(EventRule)
    case stateRule(StateRule)
    case test(TestBlock)
    /// `use "other.rules"`: that file's statements come first. Resolved by
    /// whoever reads the files (see `PolicyLoader`).
    case use(path: String, span: Span)
}

/// The parsed files of one policy, statements in source order.
@_spi(Tooling) public struct PolicyAST: Sendable {
    public var statements: [Statement] = []
}

extension Statement {
    /// Where the whole statement stands.
    public var span: Span {
        switch self {
        case .settings(_, let s), .constant(_, _, let s), .use(_, let s): return s
        case .event(let d): return d.span
        case .eventRule(let r): return r.span
        case .stateRule(let r): return r.span
        case .test(let t): return t.span
        }
    }
}
