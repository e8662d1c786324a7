/// Evaluation nodes: the checked expression compiled into a tree of
/// `final class` nodes with every name already a slot, so evaluating never
/// looks anything up by name (the cel-go "plan" step).
class Node {
    func eval(_ c: EvalContext) -> Value { fatalError("abstract") }
}

final class ConstNode: Node {
    let value: Value
    init(_ value: Value) { self.value = value }
    override func eval(_ c: EvalContext) -> Value { value }
}

final class FieldNode: Node {
    let field: Int
    init(_ field: Int) { self.field = field }
    override func eval(_ c: EvalContext) -> Value {
        c.fields.value(field) ?? .failed(.missingField(field))
    }
}

final class FlagNode: Node {
    let flag: Int
    init(_ flag: Int) { self.flag = flag }
    override func eval(_ c: EvalContext) -> Value { .bool(c.flag(flag)) }
}

/// `denied(P)`, `granted(P)`.
final class PrivilegeNode: Node {
    let kind: TargetKind
    let privilege: Int
    init(_ kind: TargetKind, _ privilege: Int) { (self.kind, self.privilege) = (kind, privilege) }
    override func eval(_ c: EvalContext) -> Value { .bool(c.reports(kind, privilege)) }
}

final class ScoreNode: Node {
    override func eval(_ c: EvalContext) -> Value { .number(Double(c.score)) }
}

final class NegateNode: Node {
    let a: Node
    init(_ a: Node) { self.a = a }
    override func eval(_ c: EvalContext) -> Value {
        switch a.eval(c) {
        case .number(let x): return .number(-x)
        case .failed(let f): return .failed(f)
        default: return .failed(.wrongType)
        }
    }
}

final class NotNode: Node {
    let a: Node
    init(_ a: Node) { self.a = a }
    override func eval(_ c: EvalContext) -> Value {
        switch a.eval(c) {
        case .bool(let x): return .bool(!x)
        case .failed(let f): return .failed(f)
        default: return .failed(.wrongType)
        }
    }
}

/// `and` / `or`, left to right, stopping early: a missing field on the right
/// fails the condition only when it is reached.
final class LogicNode: Node {
    let isAnd: Bool
    let a: Node, b: Node
    init(isAnd: Bool, _ a: Node, _ b: Node) { self.isAnd = isAnd; self.a = a; self.b = b }
    override func eval(_ c: EvalContext) -> Value {
        switch a.eval(c) {
        case .bool(let x):
            if x != isAnd { return .bool(x) }
        case .failed(let f): return .failed(f)
        default: return .failed(.wrongType)
        }
        switch b.eval(c) {
        case .bool(let y): return .bool(y)
        case .failed(let f): return .failed(f)
        default: return .failed(.wrongType)
        }
    }
}

final class ArithmeticNode: Node {
    let op: BinaryOp
    let a: Node, b: Node
    init(_ op: BinaryOp, _ a: Node, _ b: Node) { self.op = op; self.a = a; self.b = b }
    override func eval(_ c: EvalContext) -> Value {
        let l = a.eval(c)
        guard case .number(let x) = l else { return l.asFailure }
        let r = b.eval(c)
        guard case .number(let y) = r else { return r.asFailure }
        if let v = Arithmetic.apply(op, x, y) { return .number(v) }
        return .failed((op == .div || op == .mod) && y == 0 ? .divisionByZero : .notFinite)
    }
}

final class CompareNode: Node {
    let op: BinaryOp
    let a: Node, b: Node
    init(_ op: BinaryOp, _ a: Node, _ b: Node) { self.op = op; self.a = a; self.b = b }
    override func eval(_ c: EvalContext) -> Value {
        let l = a.eval(c)
        if case .failed = l { return l }
        let r = b.eval(c)
        if case .failed = r { return r }
        return Self.compare(op, l, r)
    }

    @inline(__always)
    static func compare(_ op: BinaryOp, _ l: Value, _ r: Value) -> Value {
        switch (l, r) {
        case (.number(let x), .number(let y)):
            return .bool(Arithmetic.compare(op, x, y)!)
        case (.string(let x), .string(let y)) where op == .eq || op == .ne:
            return .bool((x == y) == (op == .eq))
        case (.bool(let x), .bool(let y)) where op == .eq || op == .ne:
            return .bool((x == y) == (op == .eq))
        default:
            return .failed(.wrongType)
        }
    }
}

/// A comparison with a constant number on the right (`score < 900`,
/// `count(…) >= 4`), the usual form of a `while` rule's condition, which
/// the change tracker evaluates for every person a body reaches: the same
/// answers as `CompareNode` with a `ConstNode`, one call fewer.
final class CompareToNumberNode: Node {
    let op: BinaryOp
    let a: Node
    let constant: Double
    init(_ op: BinaryOp, _ a: Node, _ constant: Double) { (self.op, self.a, self.constant) = (op, a, constant) }
    override func eval(_ c: EvalContext) -> Value {
        switch a.eval(c) {
        case .number(let x): return .bool(Arithmetic.compare(op, x, constant)!)
        case .failed(let f): return .failed(f)
        default: return .failed(.wrongType)
        }
    }
}

final class InListNode: Node {
    let a: Node
    let items: [Node]
    init(_ a: Node, _ items: [Node]) { self.a = a; self.items = items }
    override func eval(_ c: EvalContext) -> Value {
        let v = a.eval(c)
        if case .failed = v { return v }
        for item in items {
            let i = item.eval(c)
            switch CompareNode.compare(.eq, v, i) {
            case .bool(true): return .bool(true)
            case .bool(false): continue
            default: return .failed(.wrongType)
            }
        }
        return .bool(false)
    }
}

/// `if CONDITION then A else B`: only the value chosen is evaluated (the
/// other may read a field this event lacks); a condition that fails, or is
/// not true or false, fails the whole.
final class ConditionalNode: Node {
    let condition: Node, then: Node, otherwise: Node
    init(_ condition: Node, _ then: Node, _ otherwise: Node) { (self.condition, self.then, self.otherwise) = (condition, then, otherwise) }
    override func eval(_ c: EvalContext) -> Value {
        let v = condition.eval(c)
        guard case .bool(let holds) = v else { return v.asFailure }
        return holds ? then.eval(c) : otherwise.eval(c)
    }
}

final class CallNode: Node {
    let fn: Builtin
    let args: [Node]
    init(_ fn: Builtin, _ args: [Node]) { self.fn = fn; self.args = args }
    override func eval(_ c: EvalContext) -> Value {
        let x = args[0].eval(c)
        guard case .number(let a) = x else { return x.asFailure }
        guard args.count > 1 else { return .number(Arithmetic.call(fn, a, 0)) }
        // `min(a, b, c)` is `min(min(a, b), c)`: left to right, the first
        // argument that fails is the answer.
        var result = a
        for k in 1..<args.count {
            let y = args[k].eval(c)
            guard case .number(let b) = y else { return y.asFailure }
            result = Arithmetic.call(fn, result, b)
        }
        return .number(result)
    }
}

/// `count(...)` / `sum(...)` over the person's window buffer, as of now.
final class AggregateNode: Node {
    let buffer: Int
    let window: Int64
    let isSum: Bool
    init(buffer: Int, window: Int64, isSum: Bool) { self.buffer = buffer; self.window = window; self.isSum = isSum }
    override func eval(_ c: EvalContext) -> Value {
        let (count, sum) = c.state.buffer(buffer) { $0.aggregate(person: c.person, now: c.now, window: window) }
        return .number(isSum ? sum : Double(count))
    }
}

extension Value {
    /// A non-number where a number was needed.
    @inline(__always)
    var asFailure: Value {
        if case .failed = self { return self }
        return .failed(.wrongType)
    }
}

/// A person's attribute (`attribute region = …`), as their row holds it.
final class AttributeNode: Node {
    let attribute: Int
    let type: ValueType
    init(_ attribute: Int, type: ValueType) { (self.attribute, self.type) = (attribute, type) }
    override func eval(_ c: EvalContext) -> Value { AttributeWord.decode(c.state.attribute(c.person, attribute), as: type) }
}
