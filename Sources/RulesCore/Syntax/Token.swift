/// The reserved words of the contract. `starts at min max` are not here:
/// they mean something only in a `score` statement, which the parser knows.
package enum Keyword: String, CaseIterable, Sendable {
    case score, `let`, event, `where`, within, `while`, and, or, not, `in`
    case `true`, `false`, deny, allow, grant, revoke, flag, clear, `for`, test
    case between, `if`, then, `else`
}

/// `min max abs count sum` are functions only right before `(`.
package enum Builtin: String, Sendable {
    case min, max, abs, count, sum

    /// How many arguments a plain function takes: `min` and `max` two or
    /// more (`min(a, b, c)`; each counts against the expression's cap on
    /// operators and list items, E0207), `abs` one; nil for the windowed aggregates,
    /// whose syntax is their own (`count(E within D)`).
    var arguments: ClosedRange<Int>? {
        switch self {
        case .min, .max: 2...Int.max
        case .abs: 1...1
        case .count, .sum: nil
        }
    }
}

package enum TokenKind: Equatable, Sendable {
    case name(String)          // one or more words joined with `_`
    case keyword(Keyword)
    case builtin(Builtin)
    case number(Double)
    case duration(seconds: Double)
    case string(String)
    /// `2026-01-05T08:00:00Z`, in microseconds since the epoch.
    case time(Int64)
    case arrow, comma, semicolon, newline, colon, dot, assign
    /// `×` (U+00D7): a test's or the REPL's repeated event (`3 × 2026-01-05
    /// alice: littering`).
    case times
    case lparen, rparen, lbracket, rbracket, lbrace, rbrace
    case plus, minus, star, slash, percent
    case eq, ne, lt, le, gt, ge
    case eof

    /// A statement does not end at a newline that follows one of these.
    package var continuesLine: Bool {
        switch self {
        case .arrow, .comma, .plus, .minus, .star, .slash, .percent,
             .eq, .ne, .lt, .le, .gt, .ge, .assign,
             .keyword(.and), .keyword(.or), .keyword(.in),
             .keyword(.if), .keyword(.then), .keyword(.else), .keyword(.between):
            return true
        default:
            return false
        }
    }

    /// How the token is shown in "expected X, found Y" messages.
    var display: String {
        switch self {
        case .name(let n): return "name `\(n)`"
        case .keyword(let k): return "`\(k.rawValue)`"
        case .builtin(let b): return "`\(b.rawValue)`"
        case .number: return "a number"
        case .duration: return "a duration"
        case .string: return "a string"
        case .time: return "a time"
        case .arrow: return "`→`"
        case .times: return "`×`"
        case .comma: return "`,`"
        case .semicolon: return "`;`"
        case .newline: return "end of line"
        case .colon: return "`:`"
        case .dot: return "`.`"
        case .assign: return "`=`"
        case .lparen: return "`(`"
        case .rparen: return "`)`"
        case .lbracket: return "`[`"
        case .rbracket: return "`]`"
        case .lbrace: return "`{`"
        case .rbrace: return "`}`"
        case .plus: return "`+`"
        case .minus: return "`-`"
        case .star: return "`*`"
        case .slash: return "`/`"
        case .percent: return "`%`"
        case .eq: return "`==`"
        case .ne: return "`!=`"
        case .lt: return "`<`"
        case .le: return "`<=`"
        case .gt: return "`>`"
        case .ge: return "`>=`"
        case .eof: return "end of file"
        }
    }
}

package struct Token: Sendable {
    package var kind: TokenKind
    package var span: Span
    /// True when no other token precedes it on its line; lets `{ a: number
    /// <newline> b: number }` be read without commas.
    var startsLine: Bool
}
