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
        case .conditional(let c, let a, let b):
            guard case .bool(let holds)? = evaluate(c) else { return nil }
            return evaluate(holds ? a : b)
        case .call(let fn, let args):
            var nums: [Double] = []
            for arg in args {
                guard case .number(let n)? = evaluate(arg) else { return nil }
                nums.append(n)
            }
            guard nums.count > 1 else { return .number(Arithmetic.call(fn, nums[0], 0)) }
            return .number(nums.dropFirst().reduce(nums[0]) { Arithmetic.call(fn, $0, $1) })
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

}

/// The arithmetic of the language's operators and functions, shared by the
/// constant folder and the engine. A result that is not a finite number is
/// a failure (nil): the rule does not fire and the run reports it.
extension Arithmetic {
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

    /// A plain function of one or two numbers (`b` unused for `abs`): the
    /// one definition the folder and the evaluator share.
    @inline(__always)
    static func call(_ fn: Builtin, _ a: Double, _ b: Double) -> Double {
        switch fn {
        case .min: Swift.min(a, b)
        case .max: Swift.max(a, b)
        case .abs: Swift.abs(a)
        case .count, .sum: preconditionFailure("`\(fn.rawValue)` is a windowed aggregate, not a call")
        }
    }
}
