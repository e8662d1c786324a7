/// Shows a rule's condition with the values of its parts, as the engine
/// sees them now: `score (872) < 900`, `low trust (true) and debtor (false)`.
/// Each part is evaluated with nodes compiled as the engine's are, once per
/// program (`Program.partNode`).
struct ConditionValues {
    let program: Program
    let context: EvalContext

    /// The condition with values; the engine's context must be focused on
    /// the person and time to explain.
    func render(_ e: Expr) -> String {
        switch e.kind {
        case .binary(let op, let a, let b) where op == .and || op == .or:
            return "\(operand(a, of: op)) \(op.rawValue) \(operand(b, of: op))"
        case .unary(.not, let a):
            return "not " + (isLogic(a) || e.synthetic ? "(\(render(a)))" : render(a))
        case .binary(let op, let a, let b) where [.eq, .ne, .lt, .le, .gt, .ge].contains(op):
            return "\(part(a)) \(op.rawValue) \(part(b))"
        case .inList(let a, let items):
            return "\(part(a)) in [\(items.map(text).joined(separator: ", "))]"
        default:
            return part(e)
        }
    }

    /// The first part of a false condition that made it false: the first
    /// false operand of an `and`, or the comparison itself.
    func firstFailing(_ e: Expr) -> String {
        if case .binary(.and, let a, let b) = e.kind {
            return value(a) == "false" ? firstFailing(a) : firstFailing(b)
        }
        return render(e)
    }

    private func isLogic(_ e: Expr) -> Bool {
        if case .binary(let op, _, _) = e.kind { return op == .and || op == .or }
        return false
    }

    private func operand(_ e: Expr, of op: BinaryOp) -> String {
        if case .binary(let inner, _, _) = e.kind, (inner == .and || inner == .or), inner != op {
            return "(\(render(e)))"
        }
        return render(e)
    }

    private func text(_ e: Expr) -> String {
        program.policy.sources.files[e.span.file].text(e.span)
    }

    /// `text (value)`, or just the text of a literal.
    private func part(_ e: Expr) -> String {
        switch e.kind {
        case .number, .string, .bool, .duration: return text(e)
        default: return "\(text(e)) (\(value(e)))"
        }
    }

    /// What an expression reads of the person, each with its value, once
    /// each, in the order written: `score (522)`, `live strikes (3)`
    /// (how an output's value came about).
    func inputs(_ e: Expr) -> [String] {
        var seen = Set<String>(), out: [String] = []
        func visit(_ x: Expr) {
            switch x.kind {
            case .score, .count, .sum, .privilege, .name:
                // A constant has no node of its own: its value is fixed.
                guard program.partNode(x.span) != nil, seen.insert(text(x)).inserted else { return }
                out.append(part(x))
            case .unary(_, let a): visit(a)
            case .binary(_, let a, let b): visit(a); visit(b)
            case .inList(let a, let items): visit(a); items.forEach(visit)
            case .call(_, let args): args.forEach(visit)
            case .conditional(let c, let a, let b): visit(c); visit(a); visit(b)
            case .number, .string, .bool, .duration, .invalid: break
            }
        }
        visit(e)
        return out
    }

    func value(_ e: Expr) -> String {
        guard let node = program.partNode(e.span) else { return "?" }
        switch node.eval(context) {
        case .number(let n): return Arithmetic.format(n)
        case .bool(let b): return b ? "true" : "false"
        case .string(let s): return JSONWriter.quoted(String(decoding: UnsafeBufferPointer(start: s.base, count: s.count), as: UTF8.self))
        case .failed(let f): return "no value: \(f.describe(fields: program.policy.fields))"
        }
    }
}
