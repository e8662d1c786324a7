/// Turns one file's UTF-8 bytes into tokens.
///
/// Three contract rules make this lexer more than a loop over characters:
/// words separated by spaces join into one name (`unpaid debt` → `unpaid_debt`)
/// until a keyword; a unit word right after a number makes a duration; and a
/// newline ends a statement only outside brackets and after a token that
/// cannot end a line (`→`, `,`, `and`, `or`, a binary operator).
package struct Lexer {
    private let bytes: [UInt8]
    private let file: Int
    private var pos = 0
    /// Open brackets: the byte that closes each, where it was opened, and
    /// whether it is a test block, inside which statements end at newlines
    /// again and words stay separate (the test parser joins them).
    private var open: [(closer: UInt8, at: Int, isBlock: Bool)] = []
    private var depth: Int { open.count }
    private var inTestBlock: Bool { open.contains { $0.isBlock } }
    private var tokens: [Token] = []
    /// Index in `tokens` of the current statement's first token.
    private var statementStart = 0
    private var lineHasToken = false
    /// The line has a comment: not blank, though it has no token.
    private var lineHasComment = false
    private(set) var diagnostics = DiagnosticSink()

    static let units: [String: Double] = [
        "second": 1, "seconds": 1, "minute": 60, "minutes": 60,
        "hour": 3600, "hours": 3600, "day": 86400, "days": 86400,
        "week": 604800, "weeks": 604800, "month": 2_592_000, "months": 2_592_000,
        "year": 31_536_000, "years": 31_536_000,
    ]

    init(bytes: [UInt8], file: Int) {
        self.bytes = bytes
        self.file = file
    }

    package static func tokenize(_ source: SourceFile, file: Int) -> (tokens: [Token], diagnostics: [Diagnostic]) {
        var lexer = Lexer(bytes: source.bytes, file: file)
        lexer.run()
        return (lexer.tokens, lexer.diagnostics.items)
    }

    private mutating func run() {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { pos = 3 }  // UTF-8 byte order mark
        while pos < bytes.count {
            let b = bytes[pos]
            switch b {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"):
                pos += 1
            case UInt8(ascii: "\n"):
                newline()
            case UInt8(ascii: "#"):
                lineHasComment = true
                while pos < bytes.count && bytes[pos] != UInt8(ascii: "\n") { pos += 1 }
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                number()
            case UInt8(ascii: "\""):
                string()
            case _ where isWordStart(b):
                word()
            default:
                punctuation()
            }
        }
        emit(.newline, start: pos, end: pos)
        emit(.eof, start: pos, end: pos)
    }

    // MARK: - Emitting

    private mutating func emit(_ kind: TokenKind, start: Int, end: Int) {
        if kind == .newline {
            // Collapse blank lines; never start the stream with a newline.
            if let last = tokens.last, last.kind == .newline { return }
            if tokens.isEmpty { return }
        }
        tokens.append(Token(kind: kind, span: Span(file: file, start: start, end: end),
                            startsLine: !lineHasToken))
        lineHasToken = kind != .newline
        if kind == .newline || kind == .semicolon { statementStart = tokens.count }
    }

    private mutating func newline() {
        let start = pos
        pos += 1
        let blank = !lineHasToken && !lineHasComment
        defer { lineHasToken = false; lineHasComment = false }
        if let top = open.last, !top.isBlock { return }
        // A line may end with an operator and go on on the next, but a
        // blank line ends the statement: the next one is not its operand.
        if let last = tokens.last, last.kind.continuesLine, !blank { return }
        emit(.newline, start: start, end: start + 1)
    }

    private mutating func error(_ code: DiagnosticCode, _ message: String, _ start: Int, _ end: Int, help: String? = nil) {
        diagnostics.add(Diagnostic(code, message, at: Span(file: file, start: start, end: end), help: help))
    }

    // MARK: - Words

    private func isWordStart(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == UInt8(ascii: "_")
    }

    private func isWordByte(_ b: UInt8) -> Bool {
        isWordStart(b) || (b >= 0x30 && b <= 0x39)
    }

    /// Reads `[A-Za-z_][A-Za-z0-9_]*` at `at`; returns its end.
    private func wordEnd(from at: Int) -> Int {
        var i = at
        while i < bytes.count && isWordByte(bytes[i]) { i += 1 }
        return i
    }

    private func text(_ start: Int, _ end: Int) -> String {
        String(decoding: bytes[start..<end], as: UTF8.self)
    }

    /// Index of the next byte that is not a space or tab.
    private func skipBlanks(from at: Int) -> Int {
        var i = at
        while i < bytes.count && (bytes[i] == UInt8(ascii: " ") || bytes[i] == UInt8(ascii: "\t")) { i += 1 }
        return i
    }

    /// A word that would end a name rather than join it: a keyword, or a
    /// function word right before `(`.
    private func endsName(_ word: String, at end: Int) -> Bool {
        if Keyword(rawValue: word) != nil { return true }
        if Builtin(rawValue: word) != nil {
            let next = skipBlanks(from: end)
            return next < bytes.count && bytes[next] == UInt8(ascii: "(")
        }
        return false
    }

    /// True right after a statement's `score` or a `,` of such a statement:
    /// there `starts at`, `min` and `max` are the settings' own words and
    /// end a name (`score starts at base, max ceiling`).
    private var expectsSettingWord: Bool {
        guard statementStart < tokens.count, tokens[statementStart].kind == .keyword(.score), let last = tokens.last else {
            return false
        }
        return tokens.count - 1 == statementStart || last.kind == .comma
    }

    static let effectKeywords: [TokenKind] = [.keyword(.deny), .keyword(.allow), .keyword(.grant), .keyword(.revoke),
                                              .keyword(.flag), .keyword(.clear)]

    /// True right after an effect's `KEYWORD NAME` (`deny travel`): where
    /// `because` begins a denial's reason.
    private var afterDenialName: Bool {
        guard tokens.count >= 2, case .name = tokens[tokens.count - 1].kind else { return false }
        return Self.effectKeywords.contains(tokens[tokens.count - 2].kind)
    }

    /// True right after `→` or an effect's `,` (outside brackets): where an
    /// effect starts.
    private var isEffectStart: Bool {
        guard depth == 0, let last = tokens.last, tokens.count > statementStart else { return false }
        return last.kind == .arrow || (last.kind == .comma && tokens[statementStart..<tokens.count].contains { $0.kind == .arrow })
    }

    /// After an effect's `set`: the words of a name up to the word `to` on
    /// the same line (nil when there is none, or `score` comes first: `set
    /// score to` is read as before).
    private func attributeTo(after end: Int) -> (name: String, nameEnd: Int, toStart: Int)? {
        var i = skipBlanks(from: end), words: [String] = [], nameEnd = end
        guard i > end else { return nil }
        while i < bytes.count, isWordStart(bytes[i]) {
            let wordEnd = wordEnd(from: i)
            let w = text(i, wordEnd)
            if w == "to" && !words.isEmpty { return (words.joined(separator: "_"), nameEnd, i) }
            if endsName(w, at: wordEnd) { return nil }
            words.append(w)
            nameEnd = wordEnd
            i = skipBlanks(from: wordEnd)
        }
        return nil
    }

    /// True when `output` or `attribute` (ending at `end`) starts a
    /// statement, outside brackets, and is followed by the words of a name
    /// and a lone `=`.
    private func isDeclaration(after end: Int) -> Bool {
        guard statementStart == tokens.count, depth == 0 else { return false }
        var i = skipBlanks(from: end), words = 0
        while i > end || words > 0, i < bytes.count, isWordStart(bytes[i]) {
            let wordEnd = wordEnd(from: i)
            // `output score = …` is read as meant, to be refused (E0317).
            let isScore = words == 0 && text(i, wordEnd) == "score"
            if endsName(text(i, wordEnd), at: wordEnd) && !isScore { return false }
            words += 1
            i = skipBlanks(from: wordEnd)
        }
        return words > 0 && i < bytes.count && bytes[i] == UInt8(ascii: "=")
            && (i + 1 == bytes.count || bytes[i + 1] != UInt8(ascii: "="))
    }

    /// The head of a timed rule, before its `→`: the statement (after a
    /// `rule "name"`) begins with a duration (`30 days after …`) or with
    /// `every` and a duration. There `after`, `unless` and `without` are
    /// the rule's own words and end a name; anywhere else they are words
    /// like any other (a flag may be called `paid after deadline`).
    private var inTimedHead: Bool {
        guard depth == 0 else { return false }
        var k = statementStart
        if k + 1 < tokens.count, tokens[k].kind == .name("rule"), case .string = tokens[k + 1].kind { k += 2 }
        guard k < tokens.count else { return false }
        if tokens[k].kind == .name("every") { k += 1 }
        guard k < tokens.count, case .duration = tokens[k].kind else { return false }
        return !tokens[k...].contains { $0.kind == .arrow }
    }

    static let timedWords: Set<String> = ["after", "unless", "without"]

    private mutating func word() {
        let start = pos
        var end = wordEnd(from: pos)
        let first = text(start, end)
        let timedHead = inTimedHead
        if timedHead && Self.timedWords.contains(first) {
            pos = end
            emit(.name(first), start: start, end: end)
            return
        }
        if expectsSettingWord {
            if first == "min" || first == "max" {
                pos = end
                emit(.name(first), start: start, end: end)
                return
            }
            let next = skipBlanks(from: end)
            if first == "starts", next > end, wordEnd(from: next) > next, text(next, wordEnd(from: next)) == "at" {
                pos = wordEnd(from: next)
                emit(.name("starts_at"), start: start, end: pos)
                return
            }
        }
        if first == "to", tokens.count >= 2, tokens[tokens.count - 1].kind == .keyword(.score),
           tokens[tokens.count - 2].kind == .name("set") {
            // `set score to base`: `to` is the effect's own word, not the
            // start of a name `to_base`.
            pos = end
            emit(.name("to"), start: start, end: end)
            return
        }
        if first == "output" || first == "attribute", isDeclaration(after: end) {
            // `output credit limit = …`, `attribute region = …`: the
            // statement's own word only there (an event may still be
            // called `output`).
            pos = end
            emit(.name(first), start: start, end: end)
            return
        }
        if first == "set", isEffectStart, let to = attributeTo(after: end) {
            // `→ set points to points + amount`: `set`, the attribute's
            // name, `to`, then the value (not one name `set_points_to_…`).
            pos = end
            emit(.name("set"), start: start, end: end)
            let nameStart = skipBlanks(from: end)
            emit(.name(to.name), start: nameStart, end: to.nameEnd)
            emit(.name("to"), start: to.toStart, end: to.toStart + 2)
            pos = to.toStart + 2
            return
        }
        if let keyword = Keyword(rawValue: first) {
            pos = end
            emit(.keyword(keyword), start: start, end: end)
            return
        }
        if endsName(first, at: end), let builtin = Builtin(rawValue: first) {
            pos = end
            emit(.builtin(builtin), start: start, end: end)
            return
        }
        if first == "because", afterDenialName {
            // `deny travel because debt`: the reason's own word.
            pos = end
            emit(.name("because"), start: start, end: end)
            return
        }
        let isDenialName = tokens.last.map { Self.effectKeywords.contains($0.kind) } ?? false
        var words = [first]
        while !inTestBlock {
            let next = skipBlanks(from: end)
            guard next > end, next < bytes.count, isWordStart(bytes[next]) else { break }
            let nextEnd = wordEnd(from: next)
            let w = text(next, nextEnd)
            if endsName(w, at: nextEnd) { break }
            // An effect's name ends at `because` (a denial's reason; after
            // another effect, the parser says only a denial has one).
            if isDenialName && w == "because" { break }
            if timedHead && Self.timedWords.contains(w) { break }
            words.append(w)
            end = nextEnd
        }
        pos = end
        emit(.name(words.joined(separator: "_")), start: start, end: end)
    }

    // MARK: - Numbers and durations

    /// `5`, `2.5`, `10_000`; a unit word right after makes it a duration.
    private mutating func number() {
        if timeLiteral() { return }
        let start = pos
        var digits = ""
        var sawDot = false
        var malformed = false
        while pos < bytes.count {
            let b = bytes[pos]
            if b >= 0x30 && b <= 0x39 {
                digits.append(Character(UnicodeScalar(b)))
            } else if b == UInt8(ascii: "_") {
                // `_` only between digits.
                let nextIsDigit = pos + 1 < bytes.count && bytes[pos + 1] >= 0x30 && bytes[pos + 1] <= 0x39
                if !nextIsDigit || digits.last == "." { malformed = true }
            } else if b == UInt8(ascii: "."), !sawDot,
                      pos + 1 < bytes.count, bytes[pos + 1] >= 0x30, bytes[pos + 1] <= 0x39 {
                sawDot = true
                digits.append(".")
            } else {
                break
            }
            pos += 1
        }
        if pos < bytes.count && isWordStart(bytes[pos]) {
            // `5km`, `1e5`: letters glued to digits.
            let end = wordEnd(from: pos)
            error(.malformedNumber, "malformed number `\(text(start, end))`", start, end,
                  help: "numbers are digits with an optional `.` and `_` between digits, like `10_000` or `2.5`; put a space before a unit word")
            pos = end
            emit(.number(0), start: start, end: end)
            return
        }
        if malformed {
            error(.malformedNumber, "malformed number `\(text(start, pos))`", start, pos,
                  help: "`_` may only stand between two digits, as in `10_000`")
        }
        let value = Double(digits) ?? 0
        // A unit word right after the number makes a duration.
        let next = skipBlanks(from: pos)
        if next < bytes.count, isWordStart(bytes[next]) {
            let end = wordEnd(from: next)
            if let seconds = Self.units[text(next, end)] {
                pos = end
                emit(.duration(seconds: value * seconds), start: start, end: end)
                return
            }
        }
        emit(.number(value), start: start, end: pos)
    }

    /// `2026-01-05` or `2026-01-05T08:00:00Z`: a time, as in event streams
    /// (used by event literals in tests and the REPL). The date must be
    /// complete; a time of day needs `Z` or an offset.
    private mutating func timeLiteral() -> Bool {
        func digit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= 48 && bytes[i] <= 57 }
        let p = pos
        guard (p..<p + 4).allSatisfy(digit), p + 4 < bytes.count, bytes[p + 4] == UInt8(ascii: "-"),
              digit(p + 5), digit(p + 6), p + 7 < bytes.count, bytes[p + 7] == UInt8(ascii: "-"),
              digit(p + 8), digit(p + 9) else { return false }
        var end = p + 10
        if end < bytes.count, bytes[end] == UInt8(ascii: "T") {
            end += 1
            while end < bytes.count, digit(end) || ":.+-Z".utf8.contains(bytes[end]) { end += 1 }
        }
        pos = end
        let text = bytes[p..<end].withContiguousStorageIfAvailable { Timestamp.parse(UnsafeBufferPointer(rebasing: $0[...])) } ?? nil
        guard let time = text else {
            error(.invalidTime, "invalid time `\(self.text(p, end))`", p, end,
                  help: "write a date like `2026-01-05`, or a date-time with `Z` or an offset, like `2026-01-05T08:00:00Z`")
            emit(.time(0), start: p, end: end)
            return true
        }
        emit(.time(time), start: p, end: end)
        return true
    }

    // MARK: - Strings

    /// `"..."` with `\" \\ \n \t \u{41}`, on one line.
    private mutating func string() {
        let start = pos
        pos += 1
        var out: [UInt8] = []
        while true {
            guard pos < bytes.count, bytes[pos] != UInt8(ascii: "\n") else {
                error(.unterminatedString, "unterminated string", start, pos,
                      help: "close the string with `\"` on the same line; write a line break as `\\n`")
                emit(.string(String(decoding: out, as: UTF8.self)), start: start, end: pos)
                return
            }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") { pos += 1; break }
            if b == UInt8(ascii: "\\") {
                escape(into: &out)
                continue
            }
            out.append(b)
            pos += 1
        }
        emit(.string(String(decoding: out, as: UTF8.self)), start: start, end: pos)
    }

    private mutating func escape(into out: inout [UInt8]) {
        let start = pos
        pos += 1
        guard pos < bytes.count else { return }
        let c = bytes[pos]
        pos += 1
        switch c {
        case UInt8(ascii: "\""): out.append(c)
        case UInt8(ascii: "\\"): out.append(c)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "{"),
                  let close = bytes[pos...].firstIndex(of: UInt8(ascii: "}")),
                  close - pos <= 7,
                  let code = UInt32(text(pos + 1, close), radix: 16),
                  let scalar = UnicodeScalar(code) else {
                error(.invalidEscape, "invalid unicode escape", start, min(pos + 1, bytes.count),
                      help: "write a code point in hex inside braces, like `\\u{41}`")
                return
            }
            out.append(contentsOf: Array(String(Character(scalar)).utf8))
            pos = close + 1
        default:
            error(.invalidEscape, "unknown escape `\\\(text(pos - 1, pos))`", start, pos,
                  help: "the escapes are `\\\"`, `\\\\`, `\\n`, `\\t` and `\\u{…}`")
        }
    }

    // MARK: - Punctuation

    private mutating func punctuation() {
        let start = pos
        let b = bytes[pos]
        let next: UInt8 = pos + 1 < bytes.count ? bytes[pos + 1] : 0
        func one(_ k: TokenKind) -> (TokenKind, Int) { (k, 1) }
        func two(_ k: TokenKind) -> (TokenKind, Int) { (k, 2) }
        let result: (TokenKind, Int)?
        switch b {
        case UInt8(ascii: ","): result = one(.comma)
        case UInt8(ascii: ";"): result = one(.semicolon)
        case UInt8(ascii: ":"): result = one(.colon)
        case UInt8(ascii: "."): result = one(.dot)
        case UInt8(ascii: "("): result = one(.lparen)
        case UInt8(ascii: ")"): result = one(.rparen)
        case UInt8(ascii: "["): result = one(.lbracket)
        case UInt8(ascii: "]"): result = one(.rbracket)
        case UInt8(ascii: "{"): result = one(.lbrace)
        case UInt8(ascii: "}"): result = one(.rbrace)
        case UInt8(ascii: "+"): result = one(.plus)
        case UInt8(ascii: "-"): result = next == UInt8(ascii: ">") ? two(.arrow) : one(.minus)
        case UInt8(ascii: "*"): result = one(.star)
        case UInt8(ascii: "/"): result = one(.slash)
        case UInt8(ascii: "%"): result = one(.percent)
        case UInt8(ascii: "="): result = next == UInt8(ascii: "=") ? two(.eq) : one(.assign)
        case UInt8(ascii: "!"): result = next == UInt8(ascii: "=") ? two(.ne) : nil
        case UInt8(ascii: "<"): result = next == UInt8(ascii: "=") ? two(.le) : one(.lt)
        case UInt8(ascii: ">"): result = next == UInt8(ascii: "=") ? two(.ge) : one(.gt)
        case 0xC3 where next == 0x97:
            result = (.times, 2)  // ×
        case 0xE2 where next == 0x86 && pos + 2 < bytes.count && bytes[pos + 2] == 0x92:
            result = (.arrow, 3)  // →
        default: result = nil
        }
        guard let (kind, length) = result else {
            unexpected(at: start)
            return
        }
        pos += length
        switch kind {
        case .lparen: open.append((UInt8(ascii: ")"), start, false))
        case .lbracket: open.append((UInt8(ascii: "]"), start, false))
        case .lbrace: open.append((UInt8(ascii: "}"), start, opensTestBlock))
        case .rparen, .rbracket, .rbrace: if !open.isEmpty { open.removeLast() }
        case .arrow: closeBracketsBeforeArrow(at: start)
        default: break
        }
        emit(kind, start: start, end: pos)
    }

    /// `test "name" {` opens a test block.
    private var opensTestBlock: Bool {
        guard tokens.count >= 2, case .string = tokens[tokens.count - 1].kind else { return false }
        return tokens[tokens.count - 2].kind == .keyword(.test)
    }

    /// `→` never stands inside `( )` or `[ ]`, so an arrow there means a
    /// bracket was left open. Report it where it was opened and close it, so
    /// one missing `)` does not swallow the rest of the file.
    private mutating func closeBracketsBeforeArrow(at arrow: Int) {
        while let last = open.last, last.closer != UInt8(ascii: "}") {
            open.removeLast()
            let closer = String(UnicodeScalar(last.closer))
            error(.unclosedBracket, "`\(String(UnicodeScalar(bytes[last.at])))` is not closed before `→`", last.at, last.at + 1,
                  help: "add `\(closer)` before the arrow")
            emit(last.closer == UInt8(ascii: ")") ? .rparen : .rbracket, start: arrow, end: arrow)
        }
    }

    /// Reports one unexpected character (a whole UTF-8 sequence) and skips it.
    private mutating func unexpected(at start: Int) {
        let b = bytes[start]
        let length = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
        let end = min(start + length, bytes.count)
        if (b == UInt8(ascii: "&") || b == UInt8(ascii: "|")) && start + 1 < bytes.count && bytes[start + 1] == b {
            let op = b == UInt8(ascii: "&") ? "&&" : "||"
            error(.unexpectedCharacter, "unexpected `\(op)`", start, start + 2, help: "write `\(b == UInt8(ascii: "&") ? "and" : "or")`")
            pos = start + 2
            return
        }
        let slice = Array(bytes[start..<end])
        if let s = String(validating: slice, as: UTF8.self), b >= 0x80 || b >= 0x20 {
            var help: String? = nil
            if b == UInt8(ascii: "!") { help = "write `not` for negation, or `!=` for inequality" }
            else if b == UInt8(ascii: "&") { help = "write `and`" }
            else if b == UInt8(ascii: "|") { help = "write `or`" }
            else if b == UInt8(ascii: "'") { help = "strings use double quotes: `\"...\"`" }
            else if b >= 0x80 { help = "names use the letters A–Z and a–z, digits and `_`" }
            error(.unexpectedCharacter, "unexpected character `\(s)`", start, end, help: help)
        } else if b < 0x20 || b == 0x7F {
            error(.unexpectedCharacter, "unexpected control character U+\(String(b, radix: 16, uppercase: true).leftPadded(4))", start, start + 1)
        } else {
            error(.invalidUTF8, "invalid UTF-8 byte 0x\(String(b, radix: 16, uppercase: true))", start, start + 1,
                  help: "save the file as UTF-8")
            pos = start + 1
            return
        }
        pos = end
    }
}

extension String {
    package func leftPadded(_ width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
