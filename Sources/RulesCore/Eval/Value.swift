/// A run-time value. Payloads are trivial (no class references, no `String`):
/// an event's string field is a view of the input line's bytes, valid while
/// that event is being applied.
enum Value {
    case number(Double)
    case bool(Bool)
    case string(ByteString)
    /// The expression could not be evaluated; the rule does not fire and the
    /// run reports why.
    case failed(EvalFailure)
}

/// Bytes owned by someone else (the input buffer or the program's constants).
struct ByteString {
    let base: UnsafePointer<UInt8>
    let count: Int

    @inline(__always)
    static func == (a: ByteString, b: ByteString) -> Bool {
        a.count == b.count && (a.count == 0 || memcmp(a.base, b.base, a.count) == 0)
    }
}

/// Why an expression had no value.
enum EvalFailure: Hashable, Sendable {
    case missingField(Int)
    case wrongType
    case divisionByZero
    case notFinite
    /// A computed `for` was not from a microsecond to 1000 years.
    case badDuration

    func describe(fields: [String]) -> String {
        switch self {
        case .missingField(let f): return "the event has no field `\(fields[f])`"
        case .wrongType: return "a value had the wrong type"
        case .divisionByZero: return "division by zero"
        case .notFinite: return "the result was not a finite number"
        case .badDuration: return "its duration was not from a microsecond to 1000 years"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The value of an event field.
public enum FieldValue: Sendable, Equatable, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByStringLiteral, ExpressibleByBooleanLiteral {
    /// A number (every number is a double, as in the language).
    case number(Double)
    /// A string.
    case string(String)
    /// `true` or `false`.
    case bool(Bool)

    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension FieldValue {
    /// As the language and the report write it: `17`, `"north"`, `true`.
    public var text: String {
        switch self {
        case .number(let x): return Arithmetic.format(x)
        case .string(let s): return JSONWriter.quoted(s)
        case .bool(let b): return b ? "true" : "false"
        }
    }
}
