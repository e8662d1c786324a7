/// Evaluates constant expressions at check time, with the same arithmetic
/// the engine uses (`Arithmetic`), so a folded constant and a run agree.
enum Folder {
    enum Constant: Equatable {
        case number(Double), bool(Bool), string(String)
    }

    /// The value of a constant-only expression; nil when it fails
    /// (division by zero, mixed types).
    static func evaluate(_ ir: IR) -> Constant? {
        switch ir {
        case .number(let n): return .number(n)
        case .bool(let b): return .bool(b)
        case .string(let s): return .string(s)
        case .unary(.negate, let a):
            guard case .number(let n)? = evaluate(a) else { return nil }
            return .number(-n)
        case .unary(.not, let a):
            guard case .bool(let b)? = evaluate(a) else { return nil }
            return .bool(!b)
        case .binary(let op, let a, let b):
            return binary(op, a, b)
        case .inList(let a, let items):
            guard let v = evaluate(a) else { return nil }
            for item in items {
                guard let i = evaluate(item) else { return nil }
                if i == v { return .bool(true) }
            }
            return .bool(false)
        case .call(let fn, let args):
            var nums: [Double] = []
            for arg in args {
                guard case .number(let n)? = evaluate(arg) else { return nil }
                nums.append(n)
            }
            return .number(Arithmetic.call(fn, nums))
        default:
            return nil
        }
    }

    private static func binary(_ op: BinaryOp, _ a: IR, _ b: IR) -> Constant? {
        switch op {
        case .and, .or:
            guard case .bool(let l)? = evaluate(a) else { return nil }
            if op == .and && !l { return .bool(false) }
            if op == .or && l { return .bool(true) }
            guard case .bool(let r)? = evaluate(b) else { return nil }
            return .bool(r)
        default: break
        }
        guard let l = evaluate(a), let r = evaluate(b) else { return nil }
        switch (l, r) {
        case (.number(let x), .number(let y)):
            if let cmp = Arithmetic.compare(op, x, y) { return .bool(cmp) }
            return Arithmetic.apply(op, x, y).map { .number($0) }
        case (.string(let x), .string(let y)) where op == .eq || op == .ne:
            return .bool((x == y) == (op == .eq))
        case (.bool(let x), .bool(let y)) where op == .eq || op == .ne:
            return .bool((x == y) == (op == .eq))
        default:
            return nil
        }
    }

    /// `5`, `2.5`: numbers as a policy author writes them.
    static func format(_ n: Double) -> String {
        if n == n.rounded() && abs(n) < 1e15 { return String(Int64(n)) }
        return String(n)
    }
}

/// The arithmetic of the language, shared by the constant folder and the
/// engine. A result that is not a finite number is a failure (nil): the rule
/// does not fire and the run reports it.
enum Arithmetic {
    @inline(__always)
    static func apply(_ op: BinaryOp, _ x: Double, _ y: Double) -> Double? {
        let r: Double
        switch op {
        case .add: r = x + y
        case .sub: r = x - y
        case .mul: r = x * y
        case .div: if y == 0 { return nil }; r = x / y
        case .mod: if y == 0 { return nil }; r = x.truncatingRemainder(dividingBy: y)
        default: return nil
        }
        return r.isFinite ? r : nil
    }

    @inline(__always)
    static func compare(_ op: BinaryOp, _ x: Double, _ y: Double) -> Bool? {
        switch op {
        case .eq: return x == y
        case .ne: return x != y
        case .lt: return x < y
        case .le: return x <= y
        case .gt: return x > y
        case .ge: return x >= y
        default: return nil
        }
    }

    static func call(_ fn: Builtin, _ args: [Double]) -> Double {
        switch fn {
        case .min: return Swift.min(args[0], args[1])
        case .max: return Swift.max(args[0], args[1])
        default: return Swift.abs(args[0])
        }
    }

    /// A score change: rounded to the nearest integer, halves away from zero.
    @inline(__always)
    static func roundScore(_ x: Double) -> Int64 {
        let r = x.rounded(.toNearestOrAwayFromZero)
        // Scores stay well inside the range where doubles are exact.
        return Int64(Swift.max(-9e15, Swift.min(9e15, r)))
    }
}
