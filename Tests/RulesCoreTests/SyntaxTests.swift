import Testing
@testable import RulesCore

/// Lexer and parser tables: input text → tokens, input text → AST dump.
@Suite("Lexer")
struct LexerTests {
    static func kinds(_ text: String) -> [TokenKind] {
        let (tokens, _) = Lexer.tokenize(SourceFile(name: "t", text: text), file: 0)
        return tokens.map(\.kind).filter { $0 != .eof }
    }

    static let table: [(String, [TokenKind])] = [
        ("unpaid debt → -5", [.name("unpaid_debt"), .arrow, .minus, .number(5), .newline]),
        ("unpaid_debt -> -5", [.name("unpaid_debt"), .arrow, .minus, .number(5), .newline]),
        ("low  \t trust", [.name("low_trust"), .newline]),
        ("late payment where days", [.name("late_payment"), .keyword(.where), .name("days"), .newline]),
        ("10_000 2.5 5", [.number(10_000), .number(2.5), .number(5), .newline]),
        ("30 days 1 month 1 year 2 hours 1 week 90 seconds 5 minutes",
         [.duration(seconds: 2_592_000), .duration(seconds: 2_592_000), .duration(seconds: 31_536_000),
          .duration(seconds: 7200), .duration(seconds: 604_800), .duration(seconds: 90), .duration(seconds: 300), .newline]),
        ("flag days off", [.keyword(.flag), .name("days_off"), .newline]),
        ("min(a, b) max (a) min", [.builtin(.min), .lparen, .name("a"), .comma, .name("b"), .rparen,
                                   .builtin(.max), .lparen, .name("a"), .rparen, .name("min"), .newline]),
        ("count sum", [.name("count_sum"), .newline]),
        (#""a\"b\\c\n\t\u{41}""#, [.string("a\"b\\c\n\tA"), .newline]),
        ("a # comment\nb", [.name("a"), .newline, .name("b"), .newline]),
        ("a;b", [.name("a"), .semicolon, .name("b"), .newline]),
        ("a →\nb", [.name("a"), .arrow, .name("b"), .newline]),
        ("a ,\nb", [.name("a"), .comma, .name("b"), .newline]),
        ("a and\nb or\nc", [.name("a"), .keyword(.and), .name("b"), .keyword(.or), .name("c"), .newline]),
        ("a +\nb *\nc", [.name("a"), .plus, .name("b"), .star, .name("c"), .newline]),
        ("a >=\nb", [.name("a"), .ge, .name("b"), .newline]),
        ("(a\nb)", [.lparen, .name("a"), .name("b"), .rparen, .newline]),
        ("[a,\nb]", [.lbracket, .name("a"), .comma, .name("b"), .rbracket, .newline]),
        ("a\n\n\nb", [.name("a"), .newline, .name("b"), .newline]),
        ("== != < <= > >= = % /", [.eq, .ne, .lt, .le, .gt, .ge, .assign, .percent, .slash, .newline]),
        ("score starts at", [.keyword(.score), .name("starts_at"), .newline]),
        ("while not true", [.keyword(.while), .keyword(.not), .keyword(.true), .newline]),
    ]

    @Test(arguments: table)
    func tokens(_ text: String, _ expected: [TokenKind]) {
        #expect(Self.kinds(text) == expected)
    }

    @Test("spans are byte ranges; the arrow is three bytes")
    func spans() {
        let (tokens, _) = Lexer.tokenize(SourceFile(name: "t", text: "ab → 5"), file: 0)
        #expect(tokens[0].span.start == 0 && tokens[0].span.end == 2)
        #expect(tokens[1].span.start == 3 && tokens[1].span.end == 6)
        #expect(tokens[2].span.start == 7)
    }

    static let errors: [(String, DiagnosticCode)] = [
        ("a @ b", .unexpectedCharacter), ("\"abc", .unterminatedString), (#""\q""#, .invalidEscape),
        ("1__0", .malformedNumber), ("5km", .malformedNumber), ("a \u{FF}", .unexpectedCharacter),
        (#""\u{110000}""#, .invalidEscape),
    ]

    @Test(arguments: errors)
    func lexicalErrors(_ text: String, _ code: DiagnosticCode) {
        let (_, diagnostics) = Lexer.tokenize(SourceFile(name: "t", text: text), file: 0)
        #expect(diagnostics.map(\.code) == [code])
    }

    @Test("invalid UTF-8 is reported, not decoded")
    func invalidUTF8() {
        let (_, diagnostics) = Lexer.tokenize(SourceFile(name: "t", bytes: [0x61, 0x20, 0xFF, 0xFE]), file: 0)
        #expect(diagnostics.map(\.code) == [.invalidUTF8, .invalidUTF8])
    }
}

@Suite("Parser")
struct ParserTests {
    static func dump(_ text: String) -> String {
        let (statements, diagnostics) = Parser.parse(SourceFile(name: "t", text: text), file: 0)
        let errors = diagnostics.map { "error \($0.code.rawValue)" }
        return (statements.map(ASTDump.dump) + errors).joined(separator: "\n")
    }

    static let table: [(String, String)] = [
        ("score starts at 1000, min 0, max 1300", "(score (starts at 1000) (min 0) (max 1300))"),
        ("score max 5", "(score (max 5))"),
        ("let fine = 2 * 10", "(let fine (* 2 10))"),
        ("event speeding { speed: number, limit: number }", "(event speeding (speed number) (limit number))"),
        ("event jaywalking { }", "(event jaywalking)"),
        ("event p {\n zone: string\n fee: number\n}", "(event p (zone string) (fee number))"),
        ("event infraction = speeding ticket, red light", "(group infraction speeding_ticket red_light)"),
        ("event infraction = speeding,\n    red light\ninfraction → -5", "(group infraction speeding red_light)\n(rule infraction (-5))"),
        ("event one = speeding", "(group one speeding)"),
        ("event infraction =", "error E0201"),
        ("event infraction = speeding red light → -5", "error E0201"),
        // A blank line ends the group; the next line is read on its own.
        ("event infraction = speeding,\n\nred light", "error E0201\nerror E0202"),
        ("speeding → -5", "(rule speeding (-5))"),
        ("amnesty → set score to base + 5, -1", "(rule amnesty (set score (+ base 5)) (-1))"),
        ("set up fee → -5", "(rule set_up_fee (-5))"),
        // A rule's name is not part of what it does (the dump leaves it out).
        ("rule \"reckless\" speeding where over > 40 → -50", "(rule speeding (where (> over 40)) (-50))"),
        ("rule violation → -1", "(rule rule_violation (-1))"),
        ("exactly 3 x within 7 days → -1", "(rule exactly 3 x (within 604800s) (-1))"),
        ("every 2 x where y > 1 within 7 days → -1", "(rule every 2 x (where (> y 1)) (within 604800s) (-1))"),
        ("every day → -1", "(rule every_day (-1))"),
        ("t where denied(travel) and not granted(fast lane) → -1", "(rule t (where (and (denied travel) (not (granted fast_lane)))) (-1))"),
        ("while denied → flag x", "(while denied (flag x))"),
        ("rule \"x\" let k = 1", "error E0201"),
        ("rule \"  \" a → -1", "error E0201"),
        // A chain: each `else` branch is the rule it means.
        ("s where x > 1 → -2\nelse where x > 0 → -1\nelse → -0", "(rule s (where (> x 1)) (-2))\n(rule s (where (and (not (> x 1)) (> x 0))) (-1))\n(rule s (where (and (not (> x 1)) (not (> x 0)))) (-0))"),
        ("while a → flag b\n\n# tiers\nelse while c → flag d", "(while a (flag b))\n(while (and (not a) c) (flag d))"),
        ("let k = 1\nelse → -1", "(let k 1)\nerror E0201"),
        ("speeding where speed > limit + 30 → -20", "(rule speeding (where (> speed (+ limit 30))) (-20))"),
        ("3 speeding within 30 days → deny driving for 90 days", "(rule 3 speeding (within 2592000s) (deny driving (for 7776000s)))"),
        ("debt paid → +5, clear debtor, allow travel", "(rule debt_paid (+5) (clear debtor) (allow travel))"),
        ("a → grant x for 1 day, revoke y, flag z", "(rule a (grant x (for 86400s)) (revoke y) (flag z))"),
        ("volunteer → +min(hours, 8)", "(rule volunteer (+(min hours 8)))"),
        ("a → -5 + 2", "(rule a (-(+ 5 2)))"),
        ("a where x or y and not z → +1", "(rule a (where (or x (and y (not z)))) (+1))"),
        ("a where not x == 1 → +1", "(rule a (where (not (== x 1))) (+1))"),
        ("a where -x * 2 < 3 → +1", "(rule a (where (< (* (- x) 2) 3)) (+1))"),
        ("a where 1 + 2 * 3 - 4 / 2 % 3 → +1", "(rule a (where (- (+ 1 (* 2 3)) (% (/ 4 2) 3))) (+1))"),
        ("a where zone in [\"bus\", \"x\"] → +1", "(rule a (where (in zone [\"bus\" \"x\"])) (+1))"),
        ("while score < 900 → flag low trust", "(while (< score 900) (flag low_trust))"),
        ("while low trust and debtor → deny rail", "(while (and low_trust debtor) (deny rail))"),
        ("while count(littering within 365 days) >= 4 → flag x", "(while (>= (count littering (within 31536000s)) 4) (flag x))"),
        ("while sum(p.amount where amount > 5 within 7 days) > 9 → flag x",
         "(while (> (sum p.amount (where (> amount 5)) (within 604800s)) 9) (flag x))"),
        ("a → -1; b → -2", "(rule a (-1))\n(rule b (-2))"),
        ("test \"x\" {\n 2026-01-01 p: a { n: 1 }\n}\na → -1", "(test \"x\" (event 2026-01-01T00:00:00Z p a (n 1)))\n(rule a (-1))"),
        ("use \"other.rules\"\na → -1", "(use \"other.rules\")\n(rule a (-1))"),
        // Recovery: each bad statement is reported, the good ones still parse.
        ("a → 5\nb → -1\nc where → -1\nd → -2", "(rule b (-1))\n(rule d (-2))\nerror E0204\nerror E0201"),
        ("score < 600 → deny loans", "error E0203"),
        ("a where x > 1 < 2 → +1", "error E0201"),
        ("a where x", "error E0202"),
        ("score begins at 5", "error E0205"),
        ("a where (x → +1\nb → -1", "(rule a (where x) (+1))\n(rule b (-1))\nerror E0206"),
    ]

    @Test(arguments: table)
    func parse(_ text: String, _ expected: String) {
        #expect(Self.dump(text) == expected)
    }
}
