import RulesCore

/// `rules fmt`: one canonical layout for a policy file.
///
/// The formatter works on the lexer's tokens and the gaps between them, not
/// on the syntax tree, so that nothing the author wrote is lost: names keep
/// their spelling (`unpaid debt` stays two words), numbers and durations
/// their digits and units, and every comment stays where it was — on its own
/// line, or at the end of the line it followed. What it decides:
///
/// - one statement per line (`a → b; c → d` becomes two lines), `->`
///   written `→`, one space around `→`, binary operators, `=` and after
///   `,` and `:`; none inside `( )`, `[ ]`, around `.`, after a sign or
///   before `(` of `min`/`max`/`abs`/`count`/`sum`; `{ a: number }` with
///   spaces inside the braces, `{}` when empty;
/// - line breaks inside a statement (after `→`, `,`, an operator, or inside
///   brackets) are kept where the author put them, indented four spaces
///   (as gofmt keeps them); everything else about a line is decided here;
/// - test blocks: `test "name" {`, one step per line indented two spaces,
///   `}` alone;
/// - at most one blank line between statements, none at the start or end of
///   the file or of a block; comments keep their text, trailing spaces
///   dropped; the file ends with one newline.
///
/// It refuses a file with syntax errors (it cannot know what was meant).
/// `format(format(x)) == format(x)`, and the result parses to the same
/// statements (both tested, and fuzzed).
package enum Formatter {
    public enum Outcome: Sendable {
        case formatted(String)
        /// The file does not parse; these are its syntax errors.
        case syntaxErrors([Diagnostic])
    }

    public static func format(_ source: SourceFile) -> Outcome {
        let (_, diagnostics) = Parser.parse(source, file: 0)
        let syntax = diagnostics.filter { $0.severity == .error }
        if !syntax.isEmpty { return .syntaxErrors(syntax) }
        var printer = Printer(source: source)
        return .formatted(printer.run())
    }

    public static func format(_ text: String) -> Outcome {
        format(SourceFile(name: "<input>", text: text))
    }
}

private struct Printer {
    let bytes: [UInt8]
    let tokens: [Token]          // without newlines and the end
    let statementEnds: Set<Int>  // indices into `tokens` after which a statement ends

    /// The output so far, a line at a time: its code (with indentation) and
    /// the comment that ends it. Trailing comments of neighbouring lines are
    /// aligned at the end (`render`).
    struct Line {
        var code = ""
        var comment: String? = nil
        /// A line that is nothing but a comment (in `code`).
        var isComment = false
        var isBlank: Bool { code.isEmpty && comment == nil }
    }
    var lines: [Line] = []
    var blockDepth = 0           // test blocks
    var bracketDepth = 0         // ( [ { other than test blocks
    var blockOpeners: [Bool] = []  // per open `{`: is it a test block

    init(source: SourceFile) {
        bytes = source.bytes
        let all = Lexer.tokenize(source, file: 0).tokens
        var kept: [Token] = []
        var ends = Set<Int>()
        for t in all {
            switch t.kind {
            case .newline, .eof: if !kept.isEmpty { ends.insert(kept.count - 1) }
            default: kept.append(t)
            }
        }
        tokens = kept
        statementEnds = ends
    }

    mutating func run() -> String {
        var previousEnd = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var breakNext = false   // a `;` or a block's brace asks for a new line
        for (i, token) in tokens.enumerated() {
            let gap = Gap(bytes: bytes, from: previousEnd, to: token.span.start, first: i == 0)
            previousEnd = token.span.end
            let kind = token.kind
            let closesBlock = kind == .rbrace && (blockOpeners.last ?? false)
            if let comment = gap.trailingComment { attach(comment, indent: indent(for: token, continuation: false)) }
            if i == 0 || breakNext || closesBlock || gap.lineBreaks > 0 {
                let opensBlock = lines.last.map { $0.code.hasSuffix("{") && blockDepth > 0 } ?? false
                for own in gap.ownLines {
                    switch own {
                    case .blank: if !(lines.last?.isBlank ?? true) && !opensBlock { lines.append(Line()) }
                    case .comment(let text): lines.append(Line(code: indent(for: token, continuation: false) + text, isComment: true))
                    }
                }
                if gap.endsWithBlank && !(lines.last?.isBlank ?? true) && !closesBlock && !opensBlock { lines.append(Line()) }
                if closesBlock, lines.last?.isBlank == true { lines.removeLast() }
                // A `;` ends a statement; it never begins a line of its
                // own (`a;;;b` is two lines, not two and some blank ones).
                if kind == .semicolon { breakNext = true; continue }
                let continuation = i > 0 && !breakNext && !statementEnds.contains(i - 1) && !closesBlock
                lines.append(Line(code: indent(for: token, continuation: continuation)))
            } else if kind != .semicolon {
                lines[lines.count - 1].code += spacing(before: i)
            }
            breakNext = false
            switch kind {
            case .semicolon:
                breakNext = true
                continue
            case .lbrace:
                let isBlock = i >= 2 && tokens[i - 1].kind.isString && tokens[i - 2].kind == .keyword(.test)
                blockOpeners.append(isBlock)
                if isBlock { blockDepth += 1; breakNext = true } else { bracketDepth += 1 }
            case .rbrace:
                if blockOpeners.popLast() ?? false { blockDepth -= 1; breakNext = true } else { bracketDepth = max(0, bracketDepth - 1) }
            case .lparen, .lbracket: bracketDepth += 1
            case .rparen, .rbracket: bracketDepth = max(0, bracketDepth - 1)
            default: break
            }
            lines[lines.count - 1].code += text(of: token)
        }
        let tail = Gap(bytes: bytes, from: previousEnd, to: bytes.count, first: tokens.isEmpty)
        if let comment = tail.trailingComment { attach(comment, indent: "") }
        for own in tail.ownLines {
            switch own {
            case .blank: if !(lines.last?.isBlank ?? true) { lines.append(Line()) }
            case .comment(let text): lines.append(Line(code: text, isComment: true))
            }
        }
        while lines.last?.isBlank == true { lines.removeLast() }
        return render()
    }

    /// A comment that followed code on its line ends the last line of
    /// code. When there is none to end — only `;`s came between it and a
    /// comment line, a blank, another trailing comment, or nothing at all —
    /// it stands on a line of its own, so that no comment is lost or merged.
    private mutating func attach(_ comment: String, indent: String) {
        if let last = lines.last, !last.isBlank, !last.isComment, last.comment == nil {
            lines[lines.count - 1].comment = comment
        } else {
            lines.append(Line(code: indent + comment, isComment: true))
        }
    }

    /// The lines as text; each run of neighbouring lines with trailing
    /// comments has them in one column, two spaces after the longest code.
    private func render() -> String {
        var out = ""
        var k = 0
        while k < lines.count {
            guard lines[k].comment != nil, !lines[k].code.isEmpty else {
                let line = lines[k]
                out += line.code + (line.comment.map { line.code.isEmpty ? $0 : "  " + $0 } ?? "") + "\n"
                k += 1
                continue
            }
            var group = k
            while group < lines.count, lines[group].comment != nil, !lines[group].code.isEmpty { group += 1 }
            let column = lines[k..<group].map { $0.code.unicodeScalars.count }.max()! + 2
            for line in lines[k..<group] {
                out += line.code + String(repeating: " ", count: column - line.code.unicodeScalars.count) + line.comment! + "\n"
            }
            k = group
        }
        return out
    }

    private func indent(for token: Token, continuation: Bool) -> String {
        var depth = blockDepth
        if token.kind == .rbrace && (blockOpeners.last ?? false) { depth -= 1 }
        var spaces = 2 * max(0, depth)
        if continuation {
            let closes = [TokenKind.rparen, .rbracket, .rbrace].contains(token.kind)
            let brackets = closes ? bracketDepth - 1 : bracketDepth
            spaces += closes && brackets == 0 ? 0 : 4 * max(1, brackets)
        }
        return String(repeating: " ", count: spaces)
    }

    /// The space between token `i - 1` and token `i` on one line.
    private func spacing(before i: Int) -> String {
        let prev = tokens[i - 1].kind, kind = tokens[i].kind
        switch kind {
        case .comma, .rparen, .rbracket, .colon, .dot: return ""
        case .lparen where prev.isBuiltin: return ""
        case .lparen where prev == .name("denied") || prev == .name("granted"): return ""  // `denied(travel)`
        case .rbrace where prev == .lbrace: return ""   // `event e {}`
        default: break
        }
        switch prev {
        case .lparen, .lbracket, .dot: return ""
        case .minus, .plus: return isSign(i - 1) ? "" : " "
        default: return " "
        }
    }

    /// Whether the `+`/`-` at `i` is a sign (`-5`, `→ +3`) rather than an
    /// operator: it follows nothing that could end an operand.
    private func isSign(_ i: Int) -> Bool {
        guard i > 0, !statementEnds.contains(i - 1) else { return true }
        if isSettingWord(i - 1) { return true }  // `score min -10`
        switch tokens[i - 1].kind {
        case .name, .number, .duration, .string, .time, .rparen, .rbracket, .rbrace,
             .keyword(.score), .keyword(.true), .keyword(.false):
            return false
        default:
            return true
        }
    }

    /// `starts at`, `min` or `max` of a `score` statement: the lexer makes
    /// them names there, and a value follows them.
    private func isSettingWord(_ i: Int) -> Bool {
        guard case .name(let word) = tokens[i].kind, ["starts_at", "min", "max"].contains(word) else { return false }
        var k = i - 1
        while k >= 0, !statementEnds.contains(k) { k -= 1 }
        return tokens.indices.contains(k + 1) && tokens[k + 1].kind == .keyword(.score)
            && (k + 1 == i - 1 || tokens[i - 1].kind == .comma)
    }

    private func text(of token: Token) -> String {
        switch token.kind {
        case .arrow: return "→"
        case .name, .duration:
            // As written, with each run of blanks one space.
            var s = ""
            var blank = false
            for b in bytes[token.span.start..<token.span.end] {
                if b == 0x20 || b == 0x09 { blank = true; continue }
                if blank && !s.isEmpty { s += " " }
                blank = false
                s.unicodeScalars.append(Unicode.Scalar(b))
            }
            return s
        default:
            return String(decoding: bytes[token.span.start..<token.span.end], as: UTF8.self)
        }
    }
}

/// What lies between two tokens: line breaks, comments, blank lines.
private struct Gap {
    enum Line { case blank, comment(String) }
    /// A comment on the same line as the token before the gap.
    var trailingComment: String? = nil
    /// Lines that hold nothing but a comment or nothing at all.
    var ownLines: [Line] = []
    var lineBreaks = 0
    var endsWithBlank = false

    /// `first`: the gap before the file's first token, whose first line is
    /// a line of its own, not the end of a line of code.
    init(bytes: [UInt8], from start: Int, to end: Int, first: Bool = false) {
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = start
        for k in start..<end where bytes[k] == 0x0A {
            lines.append(bytes[lineStart..<k])
            lineStart = k + 1
        }
        lines.append(bytes[lineStart..<end])
        lineBreaks = lines.count - 1
        func comment(_ line: ArraySlice<UInt8>) -> String? {
            guard let hash = line.firstIndex(of: UInt8(ascii: "#")) else { return nil }
            var text = Array(line[hash...])
            while let last = text.last, last == 0x20 || last == 0x09 || last == 0x0D { text.removeLast() }
            return String(decoding: text, as: UTF8.self)
        }
        if first {
            lines.insert([], at: 0)  // as if a line of code came before
            lineBreaks += 1
        }
        trailingComment = comment(lines[0])
        if lines.count > 1 {
            // The middle lines stand alone; the last one leads to the token
            // (or, at the end of the file, may hold a last comment).
            for line in lines[1..<(lines.count - 1)] {
                ownLines.append(comment(line).map { .comment($0) } ?? .blank)
            }
            if let last = lines.last.flatMap(comment) { ownLines.append(.comment(last)) }
        }
        // Collapse runs of blank lines; note a blank line right before the token.
        var collapsed: [Line] = []
        for line in ownLines {
            if case .blank = line, case .blank? = collapsed.last { continue }
            collapsed.append(line)
        }
        if case .blank? = collapsed.last { collapsed.removeLast(); endsWithBlank = true }
        ownLines = collapsed
    }
}

private extension TokenKind {
    var isString: Bool { if case .string = self { return true }; return false }
    var isBuiltin: Bool { if case .builtin = self { return true }; return false }
}
