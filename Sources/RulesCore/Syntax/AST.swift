/// The syntax tree. Every node carries a span, but spans are left out of
/// equality: two rules that say the same thing are equal wherever they stand
/// (the duplicate-rule warning relies on this).

/// A name as written, already joined (`unpaid debt` → `unpaid_debt`).
public struct Name: Sendable, Equatable, CustomStringConvertible {
    public var text: String
    public var span: Span
    public static func == (a: Name, b: Name) -> Bool { a.text == b.text }
    public var description: String { text }
}

public enum UnaryOp: String, Sendable { case negate = "-", not }
public enum BinaryOp: String, Sendable {
    case add = "+", sub = "-", mul = "*", div = "/", mod = "%"
    case eq = "==", ne = "!=", lt = "<", le = "<=", gt = ">", ge = ">="
    case and, or
}

public indirect enum ExprKind: Sendable, Equatable {
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

public struct Expr: Sendable, Equatable {
    public var kind: ExprKind
    public var span: Span
    public static func == (a: Expr, b: Expr) -> Bool { a.kind == b.kind }
}

public enum EffectKind: Sendable, Equatable {
    /// `+EXPR` or `-EXPR`; the sign applies to the whole expression.
    case score(sign: Double, Expr)
    case deny(Name, duration: Expr?)
    case allow(Name)
    case grant(Name, duration: Expr?)
    case revoke(Name)
    case flag(Name, duration: Expr?)
    case clear(Name)
}

public struct Effect: Sendable, Equatable {
    public var kind: EffectKind
    public var span: Span
    public static func == (a: Effect, b: Effect) -> Bool { a.kind == b.kind }
}

/// `[N] EVENT [where COND] [within DURATION] → EFFECTS`
public struct EventRule: Sendable, Equatable {
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
public struct StateRule: Sendable, Equatable {
    public var condition: Expr
    public var effects: [Effect]
    public var span: Span
    public static func == (a: StateRule, b: StateRule) -> Bool {
        a.condition == b.condition && a.effects == b.effects
    }
}

public enum ScoreSettingKind: String, Sendable { case startsAt = "starts at", min, max }

public struct ScoreSetting: Sendable {
    public var kind: ScoreSettingKind
    public var value: Expr
    public var span: Span
}

public struct FieldDecl: Sendable {
    public var name: Name
    public var type: Name
}

/// `event NAME { field: type, ... }`
public struct EventDecl: Sendable {
    public var name: Name
    public var fields: [FieldDecl]
    public var span: Span
}

/// `test "name" { ... }` — kept as its token range; `rules test` reads it.
public struct TestBlock: Sendable {
    public var name: String
    public var span: Span
}

public enum Statement: Sendable {
    case settings([ScoreSetting], Span)
    case constant(Name, Expr, Span)
    case event(EventDecl)
    case eventRule(EventRule)
    case stateRule(StateRule)
    case test(TestBlock)
}

/// The parsed files of one policy, statements in source order.
public struct PolicyAST: Sendable {
    public var statements: [Statement] = []
}
