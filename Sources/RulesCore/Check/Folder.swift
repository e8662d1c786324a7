/// Evaluates constant expressions at check time, with the same arithmetic
/// the engine uses (`Arithmetic`), so a folded constant and a run agree.
package enum Folder {
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
    package static func format(_ n: Double) -> String {
        if n == n.rounded() && abs(n) < 1e15 { return String(Int64(n)) }
        return String(n)
    }
}

/// The arithmetic of the language, shared by the constant folder and the
/// engine. A result that is not a finite number is a failure (nil): the rule
/// does not fire and the run reports it.
package enum Arithmetic {
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
    package static func compare(_ op: BinaryOp, _ x: Double, _ y: Double) -> Bool? {
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

    /// How far the score reaches either way: it saturates here instead of
    /// wrapping (the contract's ±9·10^15, inside the range where doubles
    /// are exact integers).
    static let scoreLimit: Int64 = 9_000_000_000_000_000

    /// A score change: rounded to the nearest integer, halves away from
    /// zero, and stopped at the score's limit (NaN is no change).
    @inline(__always)
    static func roundScore(_ x: Double) -> Int64 {
        let r = x.rounded(.toNearestOrAwayFromZero)
        let limit = Double(scoreLimit)
        return r.isNaN ? 0 : Int64(Swift.max(-limit, Swift.min(limit, r)))
    }

    /// `a + b` for scores and score changes, stopped at ±`scoreLimit`:
    /// the one place the engine, the trail and explanations add points.
    @inline(__always)
    static func addScore(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        if overflow { return b > 0 ? scoreLimit : -scoreLimit }
        return Swift.max(-scoreLimit, Swift.min(scoreLimit, sum))
    }
}
