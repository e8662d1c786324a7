import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

/// `rules fmt`: golden files, and two properties over every policy in the
/// repository and over generated ones — formatting twice changes nothing,
/// and the formatted file parses to the same statements.
@Suite("Formatter")
struct FormatterTests {
    static func formatted(_ text: String) throws -> String {
        switch Formatter.format(text) {
        case .formatted(let out): return out
        case .syntaxErrors(let errors): throw TestFailure("syntax errors: \(errors.map(\.message))")
        }
    }

    /// The statements as the parser sees them, spans aside.
    static func meaning(_ text: String) -> [String] {
        Parser.parse(SourceFile(name: "x", text: text), file: 0).statements.map(ASTDump.dump)
    }

    static func check(_ text: String, _ label: String) throws {
        let once = try formatted(text)
        #expect(try formatted(once) == once, "not idempotent: \(label)")
        #expect(meaning(once) == meaning(text), "meaning changed: \(label)")
    }

    @Test("golden files", arguments: Repo.files(in: "format", ext: "rules").map(\.lastPathComponent))
    func golden(_ name: String) throws {
        let input = try String(contentsOf: Repo.fixtures.appendingPathComponent("format/\(name)"), encoding: .utf8)
        let expected = try String(contentsOf: Repo.fixtures.appendingPathComponent("format/\(name.replacingOccurrences(of: ".rules", with: ".expected"))"), encoding: .utf8)
        #expect(try Self.formatted(input) == expected)
        try Self.check(input, name)
    }

    /// Every policy text in the repository that parses.
    static let corpus: [(String, String)] = {
        var texts: [(String, String)] = []
        let root = Repo.root
        for dir in ["rules", "Benchmarks", "Tests/Fixtures/diagnostics", "Tests/Fixtures/format"] {
            let url = root.appendingPathComponent(dir)
            for file in (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? [] where file.hasSuffix(".rules") {
                if let text = try? String(contentsOf: url.appendingPathComponent(file), encoding: .utf8) { texts.append(("\(dir)/\(file)", text)) }
            }
        }
        for c in ConformanceCase.all { for (k, p) in c.policies.enumerated() { texts.append(("\(c.name)#\(k)", p)) } }
        return texts.filter { !Parser.parse(SourceFile(name: "x", text: $0.1), file: 0).diagnostics.contains { $0.severity == .error } }
    }()

    @Test("every policy in the repository: idempotent and meaning-preserving")
    func repositoryCorpus() throws {
        #expect(Self.corpus.count > 80)
        for (name, text) in Self.corpus { try Self.check(text, name) }
    }

    @Test("the shipped policies are formatted")
    func shippedAreFormatted() throws {
        for name in ["citizen", "citizen.test", "moderation", "moderation.test", "telematics", "telematics.test"] {
            let text = try ExplainTests.text("rules/\(name).rules")
            #expect(try Self.formatted(text) == text, "rules/\(name).rules")
        }
    }

    /// A random policy: statements with random spacing, comments, blank
    /// lines, `;` separators and line breaks where a statement may break.
    static func generated(seed: UInt64) -> String {
        var rng = HotPathTests.Rng(state: seed)
        func pick<T>(_ xs: [T]) -> T { xs[rng.below(xs.count)] }
        func ws() -> String { pick(["", " ", "  ", "\t", " "]) }
        func sp() -> String { pick([" ", "  ", "\t", " "]) }
        func brk() -> String { rng.below(5) == 0 ? "\n" + pick(["", "  ", "\t\t"]) : sp() }
        let events = ["speeding", "unpaid debt", "littering", "tax filed"]
        func expr(_ depth: Int) -> String {
            if depth > 2 || rng.below(3) == 0 {
                return pick(["speed", "limit", "score", "\(rng.below(100))", "1_000", "2.5", "reckless margin", "low trust"])
            }
            switch rng.below(6) {
            case 0: return "(" + ws() + expr(depth + 1) + ws() + ")"
            case 1: return "min(" + ws() + expr(depth + 1) + "," + ws() + expr(depth + 1) + ws() + ")"
            case 2: return "-" + expr(depth + 1)
            case 3: return "not" + sp() + "(" + expr(depth + 1) + ws() + ">" + ws() + "1)"
            default: return expr(depth + 1) + ws() + pick(["+", "-", "*", "/", "%"]) + ws() + expr(depth + 1)
            }
        }
        func condition() -> String {
            let c = expr(0) + ws() + pick([">", "<", ">=", "<=", "==", "!="]) + ws() + expr(0)
            return rng.below(3) == 0 ? c + sp() + pick(["and", "or"]) + brk() + expr(0) + ws() + ">" + ws() + "0" : c
        }
        func effect() -> String {
            pick(["-5", "+" + ws() + "3", "-(" + expr(0) + ")", "flag" + sp() + "low trust", "deny" + sp() + "travel" + sp() + "for" + sp() + "30" + sp() + "days",
                  "clear" + sp() + "debtor", "grant fast lane", "allow travel"])
        }
        func comment() -> String { rng.below(4) == 0 ? sp() + "# note \(rng.below(99))" : "" }
        var lines: [String] = ["score starts at 1000," + ws() + "min 0," + ws() + "max 1300" + comment(),
                               "let reckless margin" + ws() + "=" + ws() + "30" + comment()]
        for _ in 0..<(3 + rng.below(12)) {
            var s: String
            switch rng.below(4) {
            case 0:
                s = "while" + sp() + condition() + ws() + pick(["→", "->"]) + brk() + effect()
            case 1:
                s = "3" + sp() + pick(events) + sp() + "within 30 days" + ws() + pick(["→", "->"]) + sp() + effect()
            default:
                s = pick(events) + (rng.below(2) == 0 ? sp() + "where" + sp() + condition() : "") + ws() + pick(["→", "->"]) + brk() + effect()
            }
            if rng.below(3) == 0 { s += "," + brk() + effect() }
            s += comment()
            if rng.below(4) == 0 { s += pick([";", " ; ", ";;;", "; ;"]) + pick(events) + " → -1" }
            // Empty statements, and comments after them.
            if rng.below(6) == 0 { s += pick([";", ";;", " ; "]) + comment() }
            if rng.below(8) == 0 { s = pick([";", ";;", "; "]) + s }
            lines.append(s)
            if rng.below(4) == 0 { lines.append(pick(["", "", "# a comment", "   # indented comment"])) }
        }
        if rng.below(2) == 0 {
            lines.append("test" + sp() + "\"t\(rng.below(9))\"" + sp() + "{")
            lines.append(ws() + "2026-01-05 alice: speeding {" + ws() + "speed: 95," + ws() + "limit: 60" + ws() + "}")
            lines.append(pick(["", "   ", "\t"]) + "expect alice score >= 900" + comment())
            lines.append("}")
        }
        return lines.joined(separator: pick(["\n", "\n", "\n\n", "\r\n"])) + pick(["", "\n", "\n\n"])
    }

    @Test("generated policies: idempotent and meaning-preserving")
    func generatedPolicies() throws {
        var checked = 0
        for seed in 1...300 {
            let text = Self.generated(seed: UInt64(seed))
            guard !Parser.parse(SourceFile(name: "x", text: text), file: 0).diagnostics.contains(where: { $0.severity == .error }) else { continue }
            try Self.check(text, "seed \(seed):\n\(text)")
            checked += 1
        }
        #expect(checked > 200)
    }

    @Test("score settings: a sign after `min`, `max` and `starts at`, and constants as values")
    func settings() throws {
        let text = "let base = 5\nscore starts at -base, min -9_000_000_000_000_000, max base * 2\n"
        #expect(try Self.formatted(text) == text)
        #expect(try Self.formatted("score  max -1 ,min  -3\n") == "score max -1, min -3\n")
    }

    @Test("a file with syntax errors is refused with its errors")
    func refusesSyntaxErrors() {
        guard case .syntaxErrors(let errors) = Formatter.format("speeding → → -5\n") else {
            Issue.record("formatted a file with syntax errors"); return
        }
        #expect(!errors.isEmpty)
    }

    @Test("rules fmt: stdin to stdout, --check lists what would change and exits 1, files are rewritten")
    func commandLine() throws {
        let messy = "speeding->-5;littering -> -3\n"
        let out = try CLITests.rules(["fmt"], stdin: messy)
        #expect(out.status == 0 && out.stdout == "speeding → -5\nlittering → -3\n")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fmt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.rules").path, b = dir.appendingPathComponent("b.rules").path
        try messy.write(toFile: a, atomically: true, encoding: .utf8)
        try "speeding → -5\n".write(toFile: b, atomically: true, encoding: .utf8)
        let check = try CLITests.rules(["fmt", "--check", a, b])
        #expect(check.status == 1 && check.stdout == a + "\n")
        #expect(try String(contentsOfFile: a, encoding: .utf8) == messy)
        let rewrite = try CLITests.rules(["fmt", a, b])
        #expect(rewrite.status == 0)
        #expect(try String(contentsOfFile: a, encoding: .utf8) == "speeding → -5\nlittering → -3\n")
        #expect(try CLITests.rules(["fmt", "--check", a, b]).status == 0)
        let broken = try CLITests.rules(["fmt"], stdin: "speeding → → -5\n")
        #expect(broken.status == 1 && broken.stderr.contains("syntax errors; not formatted"))
    }
}
