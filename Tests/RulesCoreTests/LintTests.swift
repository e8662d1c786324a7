import Foundation
import Testing
@testable import RulesCore

/// The deeper checks (W0507–W0510): they warn where the policy provably
/// misbehaves, and stay quiet where they cannot prove it.
@Suite("Deeper checks")
struct LintTests {
    static func codes(_ text: String) -> [String] {
        PolicyCompiler.compile(text).diagnostics.map(\.code.rawValue).filter { $0 >= "W0507" }
    }

    @Test("contradicting effects on the same events, and only then")
    func contradictions() {
        #expect(Self.codes("unpaid debt → deny travel\nunpaid debt → allow travel\n") == ["W0507"])
        #expect(Self.codes("unpaid debt → allow travel\nunpaid debt → deny travel\n") == ["W0507"])
        #expect(Self.codes("unpaid debt → deny travel, allow travel\n") == ["W0507"])
        #expect(Self.codes("debt → flag debtor\ndebt → clear debtor\n") == ["W0507"])
        // Different conditions, events or counts: they need not fire together.
        #expect(Self.codes("event d { a: number }\nd where a > 5 → deny travel\nd → allow travel\n").isEmpty)
        #expect(Self.codes("d → deny travel\npaid → allow travel\n").isEmpty)
        #expect(Self.codes("3 d within 9 days → deny travel\nd → allow travel\n").isEmpty)
        // A timed rule fires at its deadline, not on the event that armed it;
        // two of the same timer fire together.
        #expect(Self.codes("30 days after d → deny travel\nd → allow travel\n").isEmpty)
        #expect(Self.codes("every 30 days → flag f\nevery 30 days → clear f\nwhile f → deny x\n") == ["W0507"])
    }

    @Test("conditions no value satisfies, with the score's bounds; quiet when unsure")
    func impossible() {
        #expect(Self.codes("event s { v: number }\ns where v > 100 and v < 50 → -1\n") == ["W0508"])
        #expect(Self.codes("event s { v: number }\ns where v >= 10 and not (v > 5) → -1\n") == ["W0508"])
        #expect(Self.codes("event s { v: number }\ns where v == 3 and v > 4 → -1\n") == ["W0508"])
        #expect(Self.codes("event p { z: string }\np where z == \"a\" and z == \"b\" → -1\n") == ["W0508"])
        #expect(Self.codes("score starts at 10, min 0, max 100\nwhile score > 100 → flag x\n").contains("W0508"))
        #expect(Self.codes("score starts at 10, min 0, max 100\nwhile score < 0 → flag x\n").contains("W0508"))
        #expect(Self.codes("event s { v: number }\ns where v > 100 or v < 50 → -1\n").isEmpty)
        #expect(Self.codes("event s { v: number }\ns where v >= 10 and v <= 10 → -1\n").isEmpty)
        #expect(Self.codes("event s { v: number, w: number }\ns where v > w + 1 and v < 0 → -1\n").isEmpty)
        #expect(Self.codes("score starts at 10, min 0, max 100\nwhile score >= 100 → flag x\n").filter { $0 == "W0508" }.isEmpty)
    }

    @Test("a timed effect shorter than the window that sets it")
    func shortEffects() {
        #expect(Self.codes("3 s within 30 days → deny driving for 7 days\n") == ["W0509"])
        #expect(Self.codes("3 s within 30 days → deny driving for 30 days\n").isEmpty)
        #expect(Self.codes("3 s within 30 days → deny driving\n").isEmpty)
        #expect(Self.codes("s → deny driving for 1 day\n").isEmpty)
    }

    @Test("granted and denied at once, seeing through flags set by one while rule")
    func grantedAndDenied() {
        #expect(Self.codes("while score >= 1050 → grant lane\nwhile score > 1000 → deny lane\n") == ["W0510"])
        // Exclusive conditions, directly or through a flag.
        #expect(Self.codes("while score >= 1050 → grant lane\nwhile score < 900 → deny lane\n").isEmpty)
        #expect(Self.codes("while score < 900 → flag low\nwhile score >= 1050 → grant lane\nwhile low → deny lane\n").isEmpty)
        // A flag an event rule sets can be true at any score.
        #expect(Self.codes("e → flag low\nwhile score >= 1050 → grant lane\nwhile low → deny lane\n") == ["W0510"])
    }

    @Test("a comment silences a warning that is meant, on its line or the line before")
    func allowComments() {
        let text = "3 s within 30 days → deny driving for 7 days  # rules: allow W0509\n"
        #expect(Self.codes(text).isEmpty)
        #expect(Self.codes("# rules: allow W0509, W0507\n3 s within 30 days → deny driving for 7 days\n").isEmpty)
        #expect(Self.codes("# rules: allow W0507\n3 s within 30 days → deny driving for 7 days\n") == ["W0509"])
        #expect(Self.codes("# rules: allow W0509\n\n3 s within 30 days → deny driving for 7 days\n") == ["W0509"])
    }

    @Test("rules check --deny-warnings fails on warnings, --format json carries them")
    func denyWarnings() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("lint-\(UUID().uuidString).rules").path
        try "3 s within 30 days → deny driving for 7 days\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        #expect(try CLITests.rules(["check", path]).status == 0)
        let strict = try CLITests.rules(["check", "--deny-warnings", path])
        #expect(strict.status == 1 && strict.stderr.contains("[W0509]") && strict.stderr.contains("--deny-warnings"))
        let json = try CLITests.rules(["check", "--format", "json", path])
        #expect(json.stdout.contains(#""code":"W0509""#) || json.stderr.contains(#""code":"W0509""#))
    }
}

/// Diagnostics that pointed the wrong way (issue 18, item 9): each now
/// says what is wrong where it is, and one mistake is reported once. The
/// rendered messages are golden files (Tests/Fixtures/diagnostics).
@Suite("Diagnostics that point the right way")
struct PointingTests {
    static func diagnostics(_ text: String) -> [(code: String, at: String)] {
        let result = PolicyCompiler.compile(text)
        return result.diagnostics.map { d in
            let bytes = Array(text.utf8)
            return (d.code.rawValue, String(decoding: bytes[d.span.start..<min(d.span.end, bytes.count)], as: UTF8.self))
        }
    }

    @Test("a constant that failed is reported once: its uses are not also `never fires` or `not a duration`")
    func failedConstantsDoNotCascade() {
        #expect(Self.diagnostics("event speeding { amount: number }\nlet x = amount\nspeeding where x > 1 → -1\n").map(\.code) == ["E0306"])
        // (A `let` of the score is a per-person value: no error at all.)
        #expect(Self.diagnostics("let x = score\nspeeding where x > 1 → -1\n").isEmpty)
        #expect(Self.diagnostics("let d = 10 / 0\nspeeding → deny travel for d\n").map(\.code) == ["E0311"])
        #expect(Self.diagnostics("let d = 10 / 0\nspeeding → deny travel for d\nparking → deny travel for d\n").map(\.code) == ["E0311"])
    }

    @Test("min and max take any number of arguments up to the expression's cap of 500 operators and items, then E0207")
    func manyArguments() {
        func call(_ n: Int) -> String { "speeding → +min(" + (1...n).map(String.init).joined(separator: ", ") + ")\n" }
        #expect(Self.diagnostics(call(2)).isEmpty)
        #expect(Self.diagnostics(call(501)).isEmpty)   // 500 commas: at the cap
        #expect(Self.diagnostics(call(502)).map(\.code) == ["E0207"])
        #expect(Self.diagnostics("speeding → +max(1)\n").map(\.code) == ["E0201"])
    }

    @Test("a blank line ends a statement after a dangling operator; a comment line does not")
    func blankLinesEndStatements() {
        let dangling = Self.diagnostics("speeding → -5 +\n\nlittering → -1\n")
        #expect(dangling.map(\.code) == ["E0201"] && dangling.first?.at == "+")
        #expect(Self.diagnostics("event s { v: number }\ns where v > 1 and\n  # fast\n  v < 5 → -1\n").isEmpty)
        #expect(Self.diagnostics("event s { v: number }\ns where v > 1 and\n  v < 5 → -1\n").isEmpty)
        // At the end of the file, with no newline: at the operator, not past the end.
        let percent = Self.diagnostics("speeding → -5%")
        #expect(percent.map(\.code) == ["E0201"] && percent.first?.at == "%")
    }

    @Test("`between` in a condition is both comparisons: the same rule as written out, an empty range never holds, `and` in its bounds is its own")
    func betweenIsBothComparisons() {
        #expect(Self.diagnostics("speeding where speed between 31 and 50 → -5\nspeeding where speed >= 31 and speed <= 50 → -5\n").map(\.code) == ["W0505"])
        #expect(Self.diagnostics("while score between 5 and 1 → flag odd\nspeeding where odd → -1\n").map(\.code) == ["W0508"])
        #expect(Self.diagnostics("speeding where speed between 31 50 → -5\n").map(\.code) == ["E0201"])
        // `between` is a keyword: a name's words stop at it.
        #expect(Self.diagnostics("time between visits → -1\n").map(\.code) == ["E0201"])
    }

    @Test("where after within, between, =>, fields and units in durations: each named for what it is")
    func namedForWhatTheyAre() {
        #expect(Self.diagnostics("3 x within 30 days where n > 1 → -5\n").map(\.at) == ["where"])
        #expect(Self.diagnostics("speeding => -5\n").map(\.at) == ["=>"])
        #expect(Self.diagnostics("x => -5\n").map(\.code) == ["E0202"])
        // A field and a unit make a computed duration; in a window they cannot.
        #expect(Self.diagnostics("event fine { days: number }\nfine → deny driving for days days\n").isEmpty)
        #expect(Self.diagnostics("event fine { days: number }\n3 fine within days days → deny driving\n").map(\.code) == ["E0306"])
        #expect(Self.diagnostics("let ban = 90\nspeeding → deny travel for ban * 1 day\n").isEmpty)
        // An unknown name in an undeclared event's `for` is a field, a
        // number: the error says so and offers the constant.
        let unknown = PolicyCompiler.compile("speeding → deny travel for long ban\n").diagnostics
        #expect(unknown.map(\.code) == [.durationExpected])
        #expect(unknown.first?.message.contains("no constant is named `long ban`") == true)
        #expect(unknown.first?.help?.contains("let long ban = 30 days") == true)
        #expect(PolicyCompiler.compile("let ban = 9 days\nspeeding → deny travel for bam\n").diagnostics.first { $0.code == .durationExpected }?.help == "did you mean `ban`?")
        // A constant as a count, at its edges: 1 and 1,000,000 are taken.
        #expect(Self.diagnostics("let k = 1000000\nk x within 7 days → -1\n").isEmpty)
        #expect(Self.diagnostics("let k = 1\nk x within 7 days → -1\n").isEmpty)
        #expect(Self.diagnostics("let k = 1000001\nk x within 7 days → -1\n").map(\.code) == ["E0406"])
        #expect(Self.diagnostics("let k = 0\nk x within 7 days → -1\n").map(\.code) == ["E0406"])
        #expect(Self.diagnostics("let k = 2.5\nk x within 7 days → -1\n").map(\.code) == ["E0406"])
        // A constant that does not hold a count joins an event name quietly.
        #expect(Self.diagnostics("let late = \"x\"\nlate payment → -5\n").filter { $0.code != "W0503" }.isEmpty)
    }
}
