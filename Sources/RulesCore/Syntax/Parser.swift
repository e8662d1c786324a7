/// Recursive descent over the tokens of one file, with precedence climbing
/// for expressions. It never stops at the first error: a bad statement is
/// reported, the parser skips to the next statement, and goes on.
package struct Parser {
    private let tokens: [Token]
    private let source: SourceFile
    private var index = 0
    private var depth = 0
    /// Lines where the lexer already reported an error; the parser stays
    /// quiet there rather than pile a second error on the same mistake.
    private var linesWithLexicalErrors: Set<Int> = []
    private(set) var diagnostics = DiagnosticSink()
    private(set) var statements: [Statement] = []
    /// The chain of rules the last statement began or continued, which an
    /// `else` line continues: its kind and the conditions of its branches
    /// so far (nil: a branch without one, which ends the chain).
    private var chain: Chain? = nil
    private struct Chain {
        /// The event rule that began it; nil for a chain of `while` rules.
        var event: Name?
        var conditions: [Expr]
        var closed = false
        var counted = false
    }

    static let maxDepth = 100

    /// Unwinds to the statement loop after a diagnostic was recorded.
    private struct Recover: Error {}

    init(tokens: [Token], source: SourceFile) {
        self.tokens = tokens
        self.source = source
    }

    /// One or more event literals, separated by newlines or `;` (REPL input).
    package static func parseEventLiterals(_ source: SourceFile, file: Int) -> (events: [EventLiteral], diagnostics: [Diagnostic]) {
        let (tokens, lexed) = Lexer.tokenize(source, file: file)
        var parser = Parser(tokens: tokens, source: source)
        for d in lexed { parser.diagnostics.add(d) }
        var events: [EventLiteral] = []
        while parser.kind != .eof {
            if parser.accept(.newline) || parser.accept(.semicolon) { continue }
            do {
                events.append(try parser.parseEventLiteral())
                if !parser.atStatementEnd {
                    throw parser.fail(.unexpectedToken, "expected the end of the event, found \(parser.kind.display)")
                }
            } catch {
                parser.synchronize()
            }
        }
        return (events, parser.diagnostics.items)
    }

    package static func parse(_ source: SourceFile, file: Int) -> (statements: [Statement], diagnostics: [Diagnostic]) {
        let (tokens, lexed) = Lexer.tokenize(source, file: file)
        var parser = Parser(tokens: tokens, source: source)
        for d in lexed {
            parser.diagnostics.add(d)
            parser.linesWithLexicalErrors.insert(source.line(of: d.span.start))
        }
        parser.parseFile()
        return (parser.statements, parser.diagnostics.items)
    }

    // MARK: - Token access

    private var current: Token { tokens[index] }
    private var kind: TokenKind { tokens[index].kind }
    private func peek(_ n: Int = 1) -> TokenKind { tokens[min(index + n, tokens.count - 1)].kind }

    @discardableResult
    private mutating func advance() -> Token {
        let t = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return t
    }

    private mutating func accept(_ k: TokenKind) -> Bool {
        if kind == k { advance(); return true }
        return false
    }

    private mutating func expect(_ k: TokenKind, _ what: String, help: String? = nil) throws -> Token {
        if kind == k { return advance() }
        throw fail(.unexpectedToken, "expected \(what), found \(kind.display)", help: help)
    }

    private var previousEnd: Int { index > 0 ? tokens[index - 1].span.end : 0 }

    private func span(from start: Span) -> Span {
        Span(file: start.file, start: start.start, end: max(start.end, previousEnd))
    }

    private mutating func fail(_ code: DiagnosticCode, _ message: String, at span: Span? = nil, help: String? = nil) -> Recover {
        let at = span ?? current.span
        if !linesWithLexicalErrors.contains(source.line(of: at.start)) {
            diagnostics.add(Diagnostic(code, message, at: at, help: help))
        }
        return Recover()
    }

    private var atStatementEnd: Bool {
        switch kind { case .newline, .semicolon, .eof: return true; default: return false }
    }

    // MARK: - Statements

    /// file = { statement ( NEWLINE | ";" ) }
    private mutating func parseFile() {
        while kind != .eof {
            if accept(.newline) || accept(.semicolon) { continue }
            // Past the cap, reading on only costs time; the compiler says so.
            if diagnostics.isFull { return }
            let before = index
            do {
                let statement = try parseStatement()
                statements.append(statement)
                noteChain(statement)
                if !atStatementEnd {
                    throw fail(.unexpectedToken, "expected end of statement, found \(kind.display)",
                               help: "put each statement on its own line, or separate them with `;`")
                }
            } catch {
                synchronize()
            }
            if index == before && kind != .eof { advance() }
        }
    }

    /// Skips to the token after the end of the current statement.
    private mutating func synchronize() {
        while !atStatementEnd { advance() }
    }

    /// statement = settings | constant | event-decl | state-rule | test | event-rule
    private mutating func parseStatement() throws -> Statement {
        switch kind {
        case .keyword(.score) where isName(peek()):
            return try parseSettings()
        case .keyword(.let):
            return try parseNamedValue("a constant name after `let`", value: "VALUE", Statement.constant)
        case .name("output") where isName(peek()) && peek(2) == .assign:
            return try parseNamedValue("the output's name after `output`", value: "EXPRESSION", Statement.output)
        case .name("attribute") where isName(peek()) && peek(2) == .assign:
            return try parseNamedValue("the attribute's name after `attribute`", value: "START VALUE", Statement.attribute)
        case .name(let word) where (word == "output" || word == "attribute") && peek() == .keyword(.score) && peek(2) == .assign:
            advance()
            throw fail(.reportKeyTaken, "an \(word) cannot be called `score`: every report line has that key already",
                       help: "name it otherwise; the report's own keys are `citizen`, `score`, `flags`, `denied` and `granted`")
        case .keyword(.event) where peek(2) == .assign:
            return .group(try parseEventGroup())
        case .keyword(.event):
            return .event(try parseEventDecl())
        case .keyword(.while):
            return .stateRule(try parseStateRule())
        case .keyword(.else):
            return try parseElse()
        case .keyword(.test):
            return .test(try parseTest())
        case .name("rule") where isString(peek()):
            return try parseNamedRule()
        case .name("use") where isString(peek()):
            // use = "use" STRING
            let start = advance().span
            guard case .string(let path) = advance().kind else { throw Recover() }
            return .use(path: path, span: span(from: start))
        case .number where isName(peek()):
            return .eventRule(try parseEventRule())
        case .name(let word) where (word == "exactly" || word == "every") && isNumber(peek()):
            // `exactly 3 x within …`, `every 3 x within …`
            let start = advance().span
            var rule = try parseEventRule()
            rule.countMode = word == "exactly" ? .exactly : .every
            rule.span = span(from: start)
            return .eventRule(rule)
        case .duration where peek() == .name("after"):
            return .eventRule(try parseTimedRule())
        case .name("every") where isDuration(peek()):
            return .eventRule(try parseTimedRule())
        case .name where isEventRuleContinuation(peek()):
            return .eventRule(try parseEventRule())
        default:
            return try parseConditionWithoutWhile()
        }
    }

    private func isString(_ k: TokenKind) -> Bool {
        if case .string = k { return true }
        return false
    }

    private func isNumber(_ k: TokenKind) -> Bool {
        if case .number = k { return true }
        return false
    }

    private func isDuration(_ k: TokenKind) -> Bool {
        if case .duration = k { return true }
        return false
    }

    private func isName(_ k: TokenKind) -> Bool {
        if case .name = k { return true }
        return false
    }

    private func isEventRuleContinuation(_ k: TokenKind) -> Bool {
        switch k {
        case .keyword(.where), .keyword(.within), .arrow, .newline, .semicolon, .eof: return true
        default: return false
        }
    }

    /// settings = "score" setting { "," setting }
    /// setting  = "starts at" EXPR | "min" EXPR | "max" EXPR
    private mutating func parseSettings() throws -> Statement {
        let start = advance().span
        var parts: [ScoreSetting] = []
        repeat {
            let wordToken = current
            guard case .name(let word) = kind else {
                throw fail(.unknownSetting, "expected `starts at`, `min` or `max`, found \(kind.display)")
            }
            let settingKind: ScoreSettingKind
            switch word {
            case "starts_at": settingKind = .startsAt
            case "min": settingKind = .min
            case "max": settingKind = .max
            default:
                let fix = word.hasPrefix("starts") ? "write `score starts at N`" : "the score settings are `starts at N`, `min N` and `max N`"
                throw fail(.unknownSetting, "unknown score setting `\(word.replacing("_", with: " "))`", help: fix)
            }
            advance()
            let value = try parseExpression()
            parts.append(ScoreSetting(kind: settingKind, value: value, span: span(from: wordToken.span)))
        } while accept(.comma)
        return .settings(parts, span(from: start))
    }

    /// constant = "let" NAME "=" EXPR; output and attribute the same with
    /// their own word: one shape, three statements.
    private mutating func parseNamedValue(_ what: String, value: String,
                                          _ make: (Name, Expr, Span) -> Statement) throws -> Statement {
        let start = advance()
        let name = try parseName(what)
        _ = try expect(.assign, "`=`", help: "write `\(source.text(start.span)) \(name.text) = \(value)`")
        let expr = try parseExpression()
        return make(name, expr, span(from: start.span))
    }

    /// event-decl = "event" NAME "{" [ field { ("," | NEWLINE) field } [","] ] "}"
    /// field      = NAME ":" TYPE
    private mutating func parseEventDecl() throws -> EventDecl {
        let start = advance().span
        let name = try parseName("an event name after `event`")
        _ = try expect(.lbrace, "`{` to list the event's fields", help: "write `event \(name.text) { field: number }`, or `{ }` for none")
        var fields: [FieldDecl] = []
        while kind != .rbrace {
            let fieldName = try parseName("a field name")
            _ = try expect(.colon, "`:` after the field name", help: "write `\(fieldName.text): number` (or `string`, `bool`)")
            let type = try parseName("a field type (`number`, `string` or `bool`)")
            fields.append(FieldDecl(name: fieldName, type: type))
            if accept(.comma) { continue }
            if kind == .rbrace || current.startsLine { continue }
            throw fail(.unexpectedToken, "expected `,` or `}` after a field, found \(kind.display)")
        }
        advance()
        return EventDecl(name: name, fields: fields, span: span(from: start))
    }

    /// named-rule = "rule" STRING ( event-rule | state-rule | else-branch )
    private mutating func parseNamedRule() throws -> Statement {
        let start = advance().span
        let nameToken = advance()
        guard case .string(let text) = nameToken.kind else { throw Recover() }
        let name = Name(text: text, span: nameToken.span)
        if text.allSatisfy({ $0 == " " || $0 == "\t" }) {
            throw fail(.unexpectedToken, "a rule's name cannot be empty", at: nameToken.span, help: "name it: `rule \"reckless driving\" …`")
        }
        switch try parseStatement() {
        case .eventRule(var rule):
            (rule.name, rule.span) = (name, span(from: start))
            return .eventRule(rule)
        case .stateRule(var rule):
            (rule.name, rule.span) = (name, span(from: start))
            return .stateRule(rule)
        default:
            throw fail(.unexpectedToken, "`rule \"\(text)\"` names the rule that follows it on the line, and this is not a rule", at: start,
                       help: "write `rule \"\(text)\" EVENT … → …` or `rule \"\(text)\" while … → …`")
        }
    }

    /// After a statement: the chain it begins (an event or `while` rule),
    /// continues (an `else` branch: already noted), or ends (anything else).
    private mutating func noteChain(_ statement: Statement) {
        switch statement {
        case .eventRule(let r) where r.chained: return
        case .eventRule(let r) where r.timer != nil: chain = nil
        case .stateRule(let r) where r.chained: return
        case .eventRule(let r):
            chain = Chain(event: r.event, conditions: [r.condition ?? Expr(kind: .bool(true), span: r.event.span, synthetic: true)],
                          closed: r.condition == nil, counted: r.count != nil)
        case .stateRule(let r): chain = Chain(event: nil, conditions: [r.condition])
        default: chain = nil
        }
    }

    /// else-branch = "else" [ ( "where" | "while" ) EXPR ] arrow effects
    ///
    /// The rule on the line before, continued: this branch holds only when
    /// no earlier branch's condition does. Read as the rule it means —
    /// `EVENT where not (C1) and … and C` or `while not (C1) and … and C` —
    /// so everything downstream knows it already (a condition without a
    /// value stops the chain, as it stops any rule).
    private mutating func parseElse() throws -> Statement {
        let elseToken = advance()
        guard var c = chain else {
            throw fail(.unexpectedToken, "`else` continues the rule on the line before, and there is none", at: elseToken.span,
                       help: "an `else` line follows an event rule or a `while` rule: `speeding where over > 40 → -50` then `else → -5`")
        }
        if c.closed {
            throw fail(.unexpectedToken, "`else` cannot follow a rule or branch without a condition: that one already takes every case", at: elseToken.span,
                       help: "give the line before a condition (`where …`), or remove this branch")
        }
        if c.counted {
            throw fail(.unexpectedToken, "`else` cannot continue a counted rule", at: elseToken.span,
                       help: "write the other case as a rule of its own")
        }
        let word: Keyword = c.event == nil ? .while : .where
        var own: Expr? = nil
        if accept(.keyword(word)) {
            own = try parseExpression()
        } else if kind == .keyword(word == .where ? .while : .where) {
            throw fail(.unexpectedToken, "a chain of \(c.event == nil ? "`while` rules" : "event rules") continues with `else \(word.rawValue) …`, not `else \(kind.display)`",
                       help: "write `else \(word.rawValue) CONDITION → …`, or `else → …` for every other case")
        }
        try expectArrow()
        let effects = try parseEffects()
        // `not (C1) and not (C2) and … and C`, made where `else` stands.
        var condition: Expr? = nil
        for earlier in c.conditions {
            let negated = Expr(kind: .unary(.not, earlier), span: elseToken.span, synthetic: true)
            condition = condition.map { Expr(kind: .binary(.and, $0, negated), span: elseToken.span, synthetic: true) } ?? negated
        }
        if let own { condition = Expr(kind: .binary(.and, condition!, own), span: elseToken.span, synthetic: true) }
        if let own { c.conditions.append(own) } else { c.closed = true }
        chain = c
        let span = span(from: elseToken.span)
        if let event = c.event {
            return .eventRule(EventRule(count: nil, event: event, condition: condition, window: nil, effects: effects, span: span, chained: true))
        }
        return .stateRule(StateRule(condition: condition!, effects: effects, span: span, chained: true))
    }

    /// event-group = "event" NAME "=" NAME { "," NAME }
    private mutating func parseEventGroup() throws -> EventGroup {
        let start = advance().span
        let name = try parseName("an event group's name after `event`")
        advance()  // `=`
        var members: [Name] = []
        repeat {
            members.append(try parseName("an event name (a group lists the events it stands for: `event \(name.text.replacing("_", with: " ")) = speeding, red light`)"))
        } while accept(.comma)
        if !atStatementEnd {
            throw fail(.unexpectedToken, "expected `,` or the end of the line after an event of group `\(name.text.replacing("_", with: " "))`, found \(kind.display)",
                       help: "a group lists event names, separated by commas")
        }
        return EventGroup(name: name, members: members, span: span(from: start))
    }

    /// state-rule = "while" EXPR "→" effects
    private mutating func parseStateRule() throws -> StateRule {
        let start = advance().span
        let condition = try parseExpression()
        try expectArrow()
        let effects = try parseEffects()
        return StateRule(condition: condition, effects: effects, span: span(from: start))
    }

    /// event-rule = [NUMBER] NAME ["where" EXPR] ["within" EXPR] "→" effects
    private mutating func parseEventRule() throws -> EventRule {
        let start = current.span
        var count: Expr? = nil
        if case .number(let n) = kind {
            count = Expr(kind: .number(n), span: advance().span)
        }
        let event = try parseName("an event name")
        var condition: Expr? = nil
        var window: Expr? = nil
        if accept(.keyword(.where)) { condition = try parseExpression() }
        if accept(.keyword(.within)) { window = try parseExpression() }
        if let window, kind == .keyword(.where) {
            let counted = count.map { source.text($0.span) + " " } ?? ""
            throw fail(.missingArrow, "expected `→`, found `where` after the window",
                       help: "`where` comes before `within`: `\(counted)\(source.text(event.span)) where … within \(source.text(window.span))`")
        }
        try expectArrow()
        let effects = try parseEffects()
        return EventRule(count: count, event: event, condition: condition, window: window,
                         effects: effects, span: span(from: start))
    }

    /// timed-rule = DURATION "after" NAME ["where" EXPR] ["unless" NAME] "→" effects
    ///            | "every" DURATION ["without" NAME] "→" effects
    ///
    /// The lexer keeps `after`, `unless` and `without` apart from names in
    /// such a head only.
    private mutating func parseTimedRule() throws -> EventRule {
        let start = current.span
        let repeats = accept(.name("every"))
        let delayToken = advance()
        guard case .duration(let seconds) = delayToken.kind else { throw Recover() }
        let delay = Expr(kind: .duration(seconds), span: delayToken.span)
        var event = Name(text: "", span: start)
        var condition: Expr? = nil
        var unless: Name? = nil
        if repeats {
            if accept(.name("without")) {
                unless = try parseName("the event that restarts the period after `without`")
            } else if kind == .name("unless") || kind == .keyword(.where) {
                throw fail(.unexpectedToken, "an `every` rule takes no \(kind.display): it is armed at the person's first event",
                           help: "write `every \(source.text(delayToken.span)) without EVENT → …` to start the period again at each EVENT")
            }
        } else {
            advance()  // `after`
            event = try parseName("the event that starts the delay, after `after`")
            if accept(.keyword(.where)) { condition = try parseExpression() }
            if accept(.name("unless")) { unless = try parseName("the event that disarms the rule, after `unless`") }
        }
        if kind == .keyword(.within) {
            throw fail(.unexpectedToken, "a timed rule has no window: it fires once its delay has passed",
                       help: "count events with `count(EVENT within …)` in a `where`, or write a counted rule")
        }
        try expectArrow()
        let effects = try parseEffects()
        var rule = EventRule(count: nil, event: event, condition: condition, window: nil, effects: effects, span: span(from: start))
        rule.timer = RuleTimer(delay: delay, repeats: repeats, unless: unless)
        return rule
    }

    /// A condition followed by `→` but not preceded by `while`: a common
    /// slip, reported with the corrected rule.
    private mutating func parseConditionWithoutWhile() throws -> Statement {
        let start = current.span
        let condition = try parseExpression()
        try refuseArrowLookalike()
        if kind == .arrow {
            let lineEnd = source.bytes[start.start...].firstIndex(of: UInt8(ascii: "\n")) ?? source.bytes.count
            var text = source.text(Span(file: start.file, start: start.start, end: lineEnd))
            if let hash = text.firstIndex(of: "#") { text = String(text[..<hash]) }
            text = text.trimmingCharacters(in: " \t\r")
            throw fail(.missingWhile, "a condition on the person's state needs `while`", at: condition.span,
                       help: "write `while \(text)`")
        }
        throw fail(.unexpectedToken, "expected a rule, found an expression",
                   at: condition.span,
                   help: "a rule is `EVENT → EFFECTS` or `while CONDITION → EFFECTS`")
    }

    /// test = "test" STRING "{" { test-step NL } "}"
    /// Inside the block statements end at newlines and words stay separate;
    /// an error skips to the next step, not out of the block.
    private mutating func parseTest() throws -> TestBlock {
        let start = advance().span
        guard case .string(let name) = kind else {
            throw fail(.unexpectedToken, "expected the test's name as a string, found \(kind.display)",
                       help: "write `test \"what it checks\" { ... }`")
        }
        advance()
        _ = try expect(.lbrace, "`{` to open the test")
        var steps: [TestStep] = []
        while true {
            while accept(.newline) || accept(.semicolon) {}
            if accept(.rbrace) { break }
            if kind == .eof {
                throw fail(.unclosedBracket, "this test block is never closed", at: start, help: "add `}` at its end")
            }
            do {
                steps.append(try parseTestStep())
                if !(kind == .newline || kind == .semicolon || kind == .rbrace) {
                    throw fail(.unexpectedToken, "expected the end of the line, found \(kind.display)")
                }
            } catch {
                skipTestStep()
            }
        }
        return TestBlock(name: name, span: span(from: start), steps: steps)
    }

    /// Skips to the end of the current line inside a test block.
    private mutating func skipTestStep() {
        var nesting = 0
        while kind != .eof {
            if nesting == 0 && (kind == .newline || kind == .semicolon || kind == .rbrace) { return }
            if kind == .lbrace || kind == .lparen || kind == .lbracket { nesting += 1 }
            if kind == .rbrace || kind == .rparen || kind == .rbracket { nesting -= 1 }
            advance()
        }
    }

    /// test-step = event-literal | [ "at" TIME ] "expect" expectation
    private mutating func parseTestStep() throws -> TestStep {
        if case .time = kind { return .event(try parseEventLiteral()) }
        if startsRepeatedEvent { return .event(try parseEventLiteral()) }
        let start = current.span
        var at: Int64? = nil
        if kind == .name("at") {
            advance()
            guard case .time(let t) = kind else {
                throw fail(.unexpectedToken, "expected a time after `at`, found \(kind.display)", help: "write `at 2026-06-01 expect …`")
            }
            at = t
            advance()
        }
        guard kind == .name("expect") else {
            throw fail(.unexpectedToken, "expected an event (starting with its time) or `expect`, found \(kind.display)",
                       help: "events: `2026-01-05 alice: speeding { speed: 95 }`; checks: `expect alice score == 995`")
        }
        advance()
        let expectation = try parseExpectation()
        return .expect(Expectation(at: at, kind: expectation, span: span(from: start)))
    }

    /// event-literal = [ NUMBER ("×" | "x") ] TIME person ":" words [ "{" [ field { "," field } ] "}" ]
    /// field = words ":" literal
    mutating func parseEventLiteral() throws -> EventLiteral {
        let start = current.span
        var repeats = 1
        if startsRepeatedEvent {
            guard case .number(let n) = kind, n == n.rounded(), n >= 1, n <= Double(Self.maxRepeats) else {
                throw fail(.unexpectedToken, "a repeated event's count must be a whole number from 1 to \(Self.maxRepeats)")
            }
            repeats = Int(n)
            advance()
            advance()
        }
        guard case .time(let time) = kind else {
            throw fail(.unexpectedToken, "expected the event's time, found \(kind.display)",
                       help: repeats > 1 ? "write `\(repeats) × 2026-01-05 alice: littering`" : nil)
        }
        advance()
        let person = try parsePerson()
        _ = try expect(.colon, "`:` between the person and the event", help: "write `2026-01-05 \(person.text): speeding`")
        let event = try parseWords("the event's name")
        var fields: [(name: Name, value: LiteralValue)] = []
        if accept(.lbrace) {
            while kind != .rbrace {
                let field = try parseWords("a field name")
                _ = try expect(.colon, "`:` after the field name")
                fields.append((field, try parseLiteral()))
                if !accept(.comma) { break }
            }
            _ = try expect(.rbrace, "`}` to close the fields")
        }
        return EventLiteral(time: time, person: person, event: event, fields: fields, span: span(from: start), repeats: repeats)
    }

    /// The most times one literal may repeat its event.
    static let maxRepeats = 10_000

    /// `3 ×` (or `3 x`) before an event literal.
    var startsRepeatedEvent: Bool {
        guard case .number = kind, index + 1 < tokens.count else { return false }
        return tokens[index + 1].kind == .times || tokens[index + 1].kind == .name("x")
    }

    /// A person id: one word, or a string for ids with other characters.
    private mutating func parsePerson() throws -> Name {
        switch kind {
        case .name(let n): return Name(text: n, span: advance().span)
        case .string(let s): return Name(text: s, span: advance().span)
        default:
            throw fail(.unexpectedToken, "expected a person (a word, or a string like \"car-17\"), found \(kind.display)")
        }
    }

    /// One or more words joined with `_` (inside test blocks the lexer
    /// leaves them apart).
    private mutating func parseWords(_ what: String) throws -> Name {
        let first = try parseName(what)
        var text = first.text
        var span = first.span
        while case .name(let w) = kind {
            text += "_" + w
            span = span.to(advance().span)
        }
        return Name(text: text, span: span)
    }

    /// literal = [ "-" ] NUMBER | STRING | "true" | "false"
    private mutating func parseLiteral() throws -> LiteralValue {
        let negative = accept(.minus)
        switch kind {
        case .number(let n): advance(); return .number(negative ? -n : n)
        case .string(let s) where !negative: advance(); return .string(s)
        case .keyword(.true) where !negative: advance(); return .bool(true)
        case .keyword(.false) where !negative: advance(); return .bool(false)
        default: throw fail(.unexpectedToken, "expected a number, string, `true` or `false`, found \(kind.display)")
        }
    }

    private mutating func parseNumberLiteral() throws -> Double {
        guard case .number(let n) = try parseLiteral() else {
            throw fail(.unexpectedToken, "expected a number", at: tokens[index - 1].span)
        }
        return n
    }

    /// expectation = ["not"] "fired" STRING
    ///             | person ( "score" OP NUMBER | "score" "between" NUMBER "and" NUMBER
    ///                      | ["not"] ("flagged" | "denied" | "granted") words
    ///                      | ("flags" | "denied" | "granted") "[" [ words { "," words } ] "]" )
    private mutating func parseExpectation() throws -> ExpectationKind {
        if kind == .name("fired") || (kind == .keyword(.not) && peek() == .name("fired")) {
            let negated = accept(.keyword(.not))
            advance()
            guard case .string(let text) = kind else {
                throw fail(.unexpectedToken, "expected the rule's text in quotes, found \(kind.display)",
                           help: "write `expect fired \"3 speeding within 30 days\"`")
            }
            return .fired(rule: text, ruleSpan: advance().span, negated: negated)
        }
        let person = try parsePerson()
        if accept(.keyword(.score)) {
            if accept(.keyword(.between)) {
                let low = try parseNumberLiteral()
                _ = try expect(.keyword(.and), "`and` between the bounds")
                return .scoreBetween(person: person, low: low, high: try parseNumberLiteral())
            }
            guard let (op, power) = infix(kind), power == 4, let op else {
                throw fail(.unexpectedToken, "expected a comparison (`==`, `<`, `between` …) after `score`, found \(kind.display)")
            }
            advance()
            return .score(person: person, op: op, value: try parseNumberLiteral())
        }
        if let output = try parseOutputName() {
            // `expect alice credit limit >= 500`: an output, compared as the score is.
            if accept(.keyword(.between)) {
                let low = try parseNumberLiteral()
                _ = try expect(.keyword(.and), "`and` between the bounds")
                return .scoreBetween(person: person, low: low, high: try parseNumberLiteral(), output: output)
            }
            guard let (op, power) = infix(kind), power == 4, let op else {
                throw fail(.unexpectedToken, "expected a comparison (`==`, `<`, `between` …) after `\(output.text.replacing("_", with: " "))`, found \(kind.display)")
            }
            advance()
            let value = try parseLiteral()
            if case .number(let n) = value { return .score(person: person, op: op, value: n, output: output) }
            guard op == .eq || op == .ne else {
                throw fail(.unexpectedToken, "`\(op.rawValue)` compares numbers; a string or a bool is compared with `==` or `!=`", at: tokens[index - 1].span)
            }
            return .value(person: person, attribute: output, op: op, value: value)
        }
        let negated = accept(.keyword(.not))
        let target: TargetKind
        switch kind {
        case .name("flagged"), .name("flags"): target = .flag
        case .name("denied"): target = .deny
        case .name("granted"): target = .grant
        default:
            throw fail(.unexpectedToken, "expected `score`, `flagged`, `denied`, `granted`, `flags` or an output's name after the person, found \(kind.display)")
        }
        let word = advance()
        if kind == .lbracket && !negated && word.kind != .name("flagged") {
            advance()
            var names: [Name] = []
            while kind != .rbracket {
                names.append(try parseWords("a name"))
                if !accept(.comma) { break }
            }
            _ = try expect(.rbracket, "`]` to close the list")
            return .exactly(person: person, kind: target, names: names)
        }
        if word.kind == .name("flags") {
            throw fail(.unexpectedToken, "`flags` takes a list; for one flag write `flagged`", at: word.span,
                       help: "write `expect \(person.text) flagged NAME` or `expect \(person.text) flags [a, b]`")
        }
        return .holds(person: person, kind: target, name: try parseWords("a name"), negated: negated)
    }

    /// The words of an output's name in an expectation, up to a comparison
    /// or `between` (nil, nothing read, when the words are not followed by
    /// one: `flagged`, `denied` … come next).
    private mutating func parseOutputName() throws -> Name? {
        var k = index, words: [String] = []
        while k < tokens.count, case .name(let w) = tokens[k].kind {
            words.append(w)
            k += 1
        }
        guard !words.isEmpty, k < tokens.count else { return nil }
        let next = tokens[k].kind
        guard next == .keyword(.between) || infix(next).map({ $0.1 == 4 && $0.0 != nil }) == true else { return nil }
        let start = current.span
        index = k
        return Name(text: words.joined(separator: "_"), span: start.to(tokens[k - 1].span))
    }

    private mutating func expectArrow() throws {
        if accept(.arrow) { return }
        if atStatementEnd {
            throw fail(.missingArrow, "expected `→` and the rule's effects, found \(kind.display)",
                       help: "a rule needs effects: `… → -5` or `… → deny travel` (`->` works too)")
        }
        try refuseArrowLookalike()
        throw fail(.missingArrow, "expected `→`, found \(kind.display)",
                   help: "`where` takes one condition; join conditions with `and` / `or`")
    }

    /// `=>` (two tokens, `=` and `>`, side by side) where `→` belongs.
    private mutating func refuseArrowLookalike() throws {
        guard kind == .assign, index + 1 < tokens.count, tokens[index + 1].kind == .gt,
              tokens[index + 1].span.start == current.span.end else { return }
        throw fail(.missingArrow, "`=>` is not an arrow", at: current.span.to(tokens[index + 1].span),
                   help: "write `→` (or `->`)")
    }

    private mutating func parseName(_ what: String) throws -> Name {
        if case .name(let n) = kind {
            return Name(text: n, span: advance().span)
        }
        if case .keyword(let k) = kind {
            throw fail(.unexpectedToken, "expected \(what), found the keyword `\(k.rawValue)`",
                       help: "`\(k.rawValue)` is reserved; pick another word or join words with `_`")
        }
        throw fail(.unexpectedToken, "expected \(what), found \(kind.display)")
    }

    // MARK: - Effects

    /// reason = "because" NAME, after `deny P` or `allow P` only.
    private mutating func parseReason(_ target: TargetKind, keyword: Keyword) throws -> Name? {
        guard kind == .name("because") else { return nil }
        guard target == .deny else {
            throw fail(.unexpectedToken, "only a denial carries a reason: `deny P because R`, lifted by `allow P because R`",
                       help: "remove `because …` from `\(keyword.rawValue)`")
        }
        advance()
        return try parseName("the denial's reason after `because`")
    }

    /// effects = effect { "," effect }
    private mutating func parseEffects() throws -> [Effect] {
        var effects = [try parseEffect()]
        while accept(.comma) { effects.append(try parseEffect()) }
        return effects
    }

    /// effect = ("+" | "-") EXPR | ("deny" | "grant" | "flag") NAME ["for" EXPR]
    ///        | ("allow" | "revoke" | "clear") NAME
    private mutating func parseEffect() throws -> Effect {
        let start = current.span
        let effect: EffectKind
        switch kind {
        case .plus, .minus:
            let sign: Double = advance().kind == .plus ? 1 : -1
            effect = .score(sign: sign, try parseExpression())
        case .keyword(let k) where TargetKind(setKeyword: k) != nil:
            let target = TargetKind(setKeyword: k)!
            advance()
            let name = try parseName("a \(target.nameKind) after `\(k.rawValue)`")
            let reason = try parseReason(target, keyword: k)
            var e = Effect(kind: .set(target, name, duration: try parseFor()), span: span(from: start))
            e.reason = reason
            return e
        case .keyword(let k) where TargetKind(liftKeyword: k) != nil:
            let target = TargetKind(liftKeyword: k)!
            advance()
            let name = try parseName("a \(target.nameKind) after `\(k.rawValue)`")
            var e = Effect(kind: .lift(target, name), span: span(from: start))
            e.reason = try parseReason(target, keyword: k)
            return e
        case .name("set") where peek() == .keyword(.score):
            // set-score = "set" "score" "to" EXPR
            advance(); advance()
            guard accept(.name("to")) else {
                throw fail(.unexpectedToken, "expected `to` after `set score`, found \(kind.display)", help: "write `set score to 1000`")
            }
            effect = .setScore(try parseExpression())
        case .name("set") where isName(peek()) && peek(2) == .name("to"):
            // set-attribute = "set" NAME "to" EXPR
            advance()
            let name = try parseName("an attribute's name after `set`")
            advance()
            effect = .setAttribute(name, try parseExpression())
        case .keyword(.score):
            throw fail(.missingEffect, "an effect sets the score with `set score to …`", help: "write `set score to \(peek() == .assign ? source.text(tokens[index + 2].span) : "1000")`, or `+N` / `-N` to change it")
        case .number, .duration:
            throw fail(.missingEffect, "a score change needs a sign", help: "write `+\(source.text(current.span))` or `-\(source.text(current.span))`")
        default:
            throw fail(.missingEffect, "expected an effect, found \(kind.display)",
                       help: "effects are `+N`, `-N`, `set score to N`, `deny P`, `allow P`, `grant P`, `revoke P`, `flag F`, `clear F`")
        }
        return Effect(kind: effect, span: span(from: start))
    }

    private mutating func parseFor() throws -> Expr? {
        guard accept(.keyword(.for)) else { return nil }
        return try parseExpression()
    }

    // MARK: - Expressions

    /// Binding power of binary operators; higher binds tighter.
    private func infix(_ k: TokenKind) -> (BinaryOp?, Int)? {
        switch k {
        case .keyword(.or): return (.or, 1)
        case .keyword(.and): return (.and, 2)
        case .eq: return (.eq, 4)
        case .ne: return (.ne, 4)
        case .lt: return (.lt, 4)
        case .le: return (.le, 4)
        case .gt: return (.gt, 4)
        case .ge: return (.ge, 4)
        case .keyword(.in), .keyword(.between): return (nil, 4)
        case .plus: return (.add, 5)
        case .minus: return (.sub, 5)
        case .star: return (.mul, 6)
        case .slash: return (.div, 6)
        case .percent: return (.mod, 6)
        default: return nil
        }
    }

    mutating func parseExpression() throws -> Expr {
        if depth == 0 { operators = 0 }
        return try parseBinary(minPower: 1)
    }

    /// Operators and list items in the expression being parsed. `a and b
    /// and c …` builds a tree as deep as it is long without nesting, and the
    /// checker and engine walk trees recursively: a cap keeps every walk far
    /// from the stack's end.
    private var operators = 0
    static let maxOperators = 500

    private mutating func countOperator(_ at: Span) throws {
        operators += 1
        if operators > Self.maxOperators {
            throw fail(.tooDeep, "expression too long (more than \(Self.maxOperators) operators, list items and arguments)", at: at,
                       help: "split it: a `while` rule can name part of it as a flag")
        }
    }

    /// expr = unary { BINOP unary }, climbing by binding power. Comparisons
    /// do not chain: `a < b < c` is an error, not a surprise.
    private mutating func parseBinary(minPower: Int) throws -> Expr {
        depth += 1
        defer { depth -= 1 }
        if depth > Self.maxDepth {
            throw fail(.tooDeep, "expression nested too deeply (more than \(Self.maxDepth) levels)")
        }
        var left = try parseUnary(minPower: minPower)
        while let (op, power) = infix(kind), power >= minPower {
            let opToken = advance()
            try countOperator(opToken.span)
            if op == nil {
                left = opToken.kind == .keyword(.between) ? try parseBetween(left) : try parseInList(left)
            } else {
                let right = try parseBinary(minPower: power + 1)
                left = Expr(kind: .binary(op!, left, right), span: left.span.to(right.span))
            }
            if power == 4, let (_, next) = infix(kind), next == 4 {
                throw fail(.unexpectedToken, "comparisons do not chain", at: opToken.span.to(current.span),
                           help: "join the comparisons with `and`")
            }
        }
        return left
    }

    /// `x between LOW and HIGH`, both ends included, read as `x >= LOW and
    /// x <= HIGH` (so everything after it — the checker, the engine, the
    /// explanations, the reference model — knows it already). The bounds
    /// bind tighter than `and`: `score between 1 and 5 and debtor` joins
    /// `debtor` to the whole.
    private mutating func parseBetween(_ left: Expr) throws -> Expr {
        let low = try parseBinary(minPower: 5)
        _ = try expect(.keyword(.and), "`and` between the bounds", help: "write `\(source.text(left.span)) between LOW and HIGH`")
        let high = try parseBinary(minPower: 5)
        let atLeast = Expr(kind: .binary(.ge, left, low), span: left.span.to(low.span))
        let atMost = Expr(kind: .binary(.le, left, high), span: left.span.to(high.span))
        return Expr(kind: .binary(.and, atLeast, atMost), span: left.span.to(high.span))
    }

    /// `x in [a, b, ...]`
    private mutating func parseInList(_ left: Expr) throws -> Expr {
        _ = try expect(.lbracket, "`[` to start the list after `in`", help: "write `x in [a, b]`")
        var items: [Expr] = []
        while kind != .rbracket {
            try countOperator(current.span)
            items.append(try parseBinary(minPower: 1))
            if !accept(.comma) { break }
        }
        _ = try expect(.rbracket, "`]` to close the list")
        return Expr(kind: .inList(left, items), span: span(from: left.span))
    }

    /// `not` binds looser than comparisons (`not x == 1` is `not (x == 1)`);
    /// unary minus binds tighter than `*`.
    private mutating func parseUnary(minPower: Int) throws -> Expr {
        if kind == .keyword(.not) {
            let start = advance().span
            let operand = try parseBinary(minPower: 3)
            return Expr(kind: .unary(.not, operand), span: start.to(operand.span))
        }
        if kind == .minus {
            let start = advance().span
            let operand = try parseUnary(minPower: 7)
            return Expr(kind: .unary(.negate, operand), span: start.to(operand.span))
        }
        return try parsePrimary()
    }

    /// primary = NUMBER | DURATION | STRING | "true" | "false" | "score" | NAME
    ///         | "(" expr ")" | call | aggregate
    private mutating func parsePrimary() throws -> Expr {
        let token = current
        switch token.kind {
        case .number(let n): advance(); return Expr(kind: .number(n), span: token.span)
        case .duration(let s): advance(); return Expr(kind: .duration(s), span: token.span)
        case .string(let s): advance(); return Expr(kind: .string(s), span: token.span)
        case .keyword(.true): advance(); return Expr(kind: .bool(true), span: token.span)
        case .keyword(.false): advance(); return Expr(kind: .bool(false), span: token.span)
        case .keyword(.score): advance(); return Expr(kind: .score, span: token.span)
        case .name(let n) where (n == "denied" || n == "granted") && peek() == .lparen:
            // `denied(P)`, `granted(P)`
            advance(); advance()
            let privilege = try parseName("a privilege in `\(n)(…)`")
            _ = try expect(.rparen, "`)` after the privilege")
            return Expr(kind: .privilege(n == "denied" ? .deny : .grant, privilege), span: span(from: token.span))
        case .name(let n): advance(); return Expr(kind: .name(n), span: token.span)
        case .lparen:
            advance()
            let inner = try parseExpression()
            if kind != .rparen {
                throw fail(.unclosedBracket, "`(` is not closed", at: token.span,
                           help: "add `)`; found \(kind.display) where it should be")
            }
            advance()
            return Expr(kind: inner.kind, span: span(from: token.span))
        case .builtin(let b):
            return try parseCall(b)
        case .keyword(.if):
            return try parseConditional()
        default:
            // An operator that ends the statement (`-5 %`, `-5 +` before a
            // blank line) is what to point at, not the line's end.
            if token.kind == .newline || token.kind == .eof || token.kind == .semicolon, index > 0, tokens[index - 1].kind.continuesLine {
                let op = tokens[index - 1]
                throw fail(.unexpectedToken, "`\(source.text(op.span))` needs a value after it, and the statement ends here", at: op.span,
                           help: op.kind == .percent ? "`%` is the remainder of a division; for a percentage multiply: `x * 5 / 100`"
                               : "finish the expression, or remove the `\(source.text(op.span))`")
            }
            throw fail(.unexpectedToken, "expected a value, found \(token.kind.display)")
        }
    }

    /// conditional = "if" expr "then" expr "else" expr. Each value reaches
    /// as far as an expression does (`if c then 1 else 2 + 3` ends in
    /// `2 + 3`): inside a larger expression it goes in parentheses.
    private mutating func parseConditional() throws -> Expr {
        let start = advance().span
        let condition = try parseBinary(minPower: 1)
        _ = try expect(.keyword(.then), "`then` after the condition", help: "write `if CONDITION then A else B`")
        let then = try parseBinary(minPower: 1)
        _ = try expect(.keyword(.else), "`else` and the value otherwise",
                       help: "an `if` has a value either way: `if CONDITION then A else B`")
        let otherwise = try parseBinary(minPower: 1)
        return Expr(kind: .conditional(condition, then, otherwise), span: span(from: start))
    }

    /// call = ("min" | "max") "(" expr "," expr { "," expr } ")" | "abs" "(" expr ")"
    ///      | "count" "(" NAME ["where" expr] "within" expr ")"
    ///      | "sum" "(" NAME "." NAME ["where" expr] "within" expr ")"
    private mutating func parseCall(_ builtin: Builtin) throws -> Expr {
        let start = advance().span
        let open = try expect(.lparen, "`(`").span
        let kind: ExprKind
        switch builtin {
        case .count, .sum:
            let event = try parseName("an event name")
            var field: Name? = nil
            if builtin == .sum {
                _ = try expect(.dot, "`.` and a field: `sum(\(event.text).FIELD within D)`")
                field = try parseName("a field name")
            }
            var condition: Expr? = nil
            if accept(.keyword(.where)) { condition = try parseExpression() }
            _ = try expect(.keyword(.within), "`within` and a duration",
                           help: "a windowed aggregate needs its window: `\(builtin.rawValue)(\(event.text)\(field.map { "." + $0.text } ?? "") within 30 days)`")
            let window = try parseExpression()
            kind = field.map { .sum(event: event, field: $0, condition: condition, window: window) }
                ?? .count(event: event, condition: condition, window: window)
        case .min, .max, .abs:
            var args: [Expr] = []
            while self.kind != .rparen {
                if !args.isEmpty { try countOperator(current.span) }
                args.append(try parseExpression())
                if !accept(.comma) { break }
            }
            let wanted = builtin.arguments!
            if !wanted.contains(args.count) {
                throw fail(.unexpectedToken, "`\(builtin.rawValue)` takes \(wanted.count == 1 ? "one argument" : "two or more arguments"), not \(args.count)",
                           at: span(from: start))
            }
            kind = .call(builtin, args)
        }
        if self.kind != .rparen {
            throw fail(.unclosedBracket, "`\(builtin.rawValue)(` is not closed", at: open,
                       help: "add `)`; found \(self.kind.display) where it should be")
        }
        advance()
        return Expr(kind: kind, span: span(from: start))
    }
}

extension String {
    package func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
