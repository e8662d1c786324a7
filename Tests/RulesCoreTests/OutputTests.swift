import Foundation
@testable import RulesCore
@testable import RulesTooling
import Testing

/// `output NAME = EXPR` (docs/LANGUAGE.md, "Outputs"): numbers computed
/// from the person's state, shown after the report's own keys. The
/// differential test compares them with the reference model on random
/// policies, and the change-feed test with the whole report's difference;
/// these are the parts those do not reach.
@Suite("Outputs")
struct OutputTests {
    static let policy = """
        score starts at 500, min 0
        event purchase { amount: number }
        output credit limit = max(0, score - 400) * 2
        output average = sum(purchase.amount within 30 days) / count(purchase within 30 days)
        purchase → +amount / 10

        """
    static let events = """
        {"citizen":"a","type":"purchase","time":"2026-01-01T00:00:00Z","amount":50}
        {"citizen":"b","type":"purchase","time":"2026-03-01T00:00:00Z","amount":30}

        """

    @Test("a policy's outputs are keys after the report's own, as numbers or null; a policy without outputs prints what it printed")
    func reportKeys() throws {
        let (out, _) = try runPolicy(Self.policy, Self.events)
        #expect(out == """
            {"citizen":"a","score":505,"flags":[],"denied":[],"granted":[],"credit_limit":210,"average":null}
            {"citizen":"b","score":503,"flags":[],"denied":[],"granted":[],"credit_limit":206,"average":30}

            """)
        let (plain, _) = try runPolicy("purchase → +1\n", Self.events)
        #expect(plain.hasPrefix(#"{"citizen":"a","score":1,"flags":[],"denied":[],"granted":[]}"#))
    }

    @Test("numbers as JSON: fractions exact, -0 as 0, large values in exponent form")
    func numberText() throws {
        let policy = """
            output third = (score + 1) / 3
            output negative zero = 0 * -1
            output huge = 100_000_000_000_000_000_000 + score

            """
        let (out, _) = try runPolicy(policy, #"{"citizen":"a","type":"x","time":"2026-01-01"}"# + "\n")
        #expect(out == #"{"citizen":"a","score":0,"flags":[],"denied":[],"granted":[],"third":0.3333333333333333,"negative_zero":0,"huge":1e+20}"# + "\n")
    }

    @Test("rules test compares an output as it compares the score; an unknown output is an error with did-you-mean")
    func testExpectations() throws {
        let text = Self.policy + """
            test "outputs" {
              2026-01-01T00:00:00Z a: purchase { amount: 50 }
              expect a credit limit == 210
              expect a average between 49 and 51
              at 2026-03-01T00:00:00Z expect a average == 1
              expect a credit limt > 1
            }

            """
        let result = PolicyCompiler.compile(text)
        _ = try #require(result.program)
        let details = PolicyTests.run(result, testsIn: 0).outcomes.flatMap(\.details)
        #expect(details.count == 2, "\(details)")
        #expect(details.contains { $0.contains("expected: average == 1") && $0.contains("actual:   average null") }, "\(details)")
        #expect(details.contains { $0.contains("the policy has no output or number attribute `credit limt`; did you mean `credit limit`?") }, "\(details)")
    }

    @Test("explain lists each output with what it read; its JSON gains `outputs` only when the policy has some")
    func explain() throws {
        let engine = Engine(program: try compileOrFail(Self.policy))
        engine.enableTrace(write: { _ in })
        _ = EventStream.run(engine, text: Self.events, asOf: nil)
        let e = try #require(Explanation.explain("a", engine: engine, timeline: Timeline(), at: engine.clock!))
        #expect(e.lines.contains("    credit_limit 210 = max(0, score - 400) * 2 with score (505)"), "\(e.lines)")
        #expect(e.lines.contains { $0.hasPrefix("    average null = ") && $0.hasSuffix("; no value: division by zero") }, "\(e.lines)")
        #expect(e.json.contains(#""outputs":[{"name":"credit_limit","value":210,"because":"max(0, score - 400) * 2 with score (505)"}"#))
        let plain = Engine(program: try compileOrFail("purchase → +1\n"))
        _ = EventStream.run(plain, text: Self.events, asOf: nil)
        #expect(try #require(Explanation.explain("a", engine: plain, timeline: Timeline(), at: plain.clock!)).json.contains("outputs") == false)
    }

    @Test("an output without a value is noted, and a checkpoint that kept the note restores")
    func notesAndCheckpoints() throws {
        let program = try compileOrFail(Self.policy)
        let engine = Engine(program: program)
        _ = EventStream.run(engine, text: Self.events, asOf: nil)
        engine.writeReport { _ in }
        #expect(engine.evaluationNotes() == ["output `average` at policy.rules:4 had no value once, so the report shows null: division by zero"])
        let saved = Checkpoint.encode([engine], lines: 2)
        let restored = Engine(program: try compileOrFail(Self.policy))
        guard case .success = Checkpoint.restore(saved, into: [restored]) else { Issue.record("the checkpoint did not restore"); return }
        #expect(restored.evaluationNotes() == engine.evaluationNotes())
    }

    @Test("outputs are part of what a policy means: the fingerprint changes with them, and not for a policy without")
    func fingerprint() throws {
        let base = try compileOrFail("purchase → +1\n").fingerprint
        #expect(try compileOrFail("purchase → +1\n# a comment\n").fingerprint == base)
        let with = try compileOrFail("purchase → +1\noutput double = score * 2\n").fingerprint
        #expect(with != base)
        #expect(try compileOrFail("purchase → +1\noutput double = score * 3\n").fingerprint != with)
    }

    @Test("`output` declares only at a statement's start before a name and `=`; elsewhere it is a word of a name")
    func contextualWord() throws {
        let (out, _) = try runPolicy("output → +1\noutput produced → +2\nlet low output = 3\nx → +low output\noutput total = score\n", """
            {"citizen":"a","type":"output","time":"2026-01-01"}
            {"citizen":"a","type":"output produced","time":"2026-01-02"}
            {"citizen":"a","type":"x","time":"2026-01-03"}

            """)
        #expect(out == #"{"citizen":"a","score":6,"flags":[],"denied":[],"granted":[],"total":6}"# + "\n")
    }

    @Test("the library's state and the REPL show outputs; rules diff names the ones that changed")
    func otherViews() throws {
        let engine = RulesEngine(policy: try Policy.compile(Self.policy))
        _ = engine.apply(ndjson: Self.events)
        let a = try #require(engine.state(of: "a"))
        #expect(a.outputs == [ReportOutput(name: "credit_limit", value: 210), ReportOutput(name: "average", value: nil)])
        let old = try compileOrFail(Self.policy)
        let new = try compileOrFail(Self.policy.replacingOccurrences(of: "* 2", with: "* 3"))
        let diff = PolicyDiff.run(old: old, new: new, stream: Array(Self.events.utf8))
        #expect(diff.textLines().contains("b: credit_limit 206 → 309"), "\(diff.textLines())")
    }

    @Test("the language server: hover says output, the outline lists it, completion offers the word; fmt lays it out")
    func editorSupport() throws {
        var (server, _) = LanguageServerTests.opened(Self.policy)
        let hover = try #require(server.handle(LanguageServerTests.request(2, "textDocument/hover", LanguageServerTests.at(2, 10)))
            .first?["result"]?["contents"]?["value"]?.string)
        #expect(hover.hasPrefix("**output** `credit limit` (per person, in the report as `credit_limit`)"), "\(hover)")
        let symbols = try #require(server.handle(LanguageServerTests.request(3, "textDocument/documentSymbol",
            [("textDocument", .object([("uri", .string(LanguageServerTests.uri))]))])).first?["result"]?.array)
        #expect(symbols.contains { $0["name"]?.string == "output credit limit" })
        let completion = try #require(server.handle(LanguageServerTests.request(4, "textDocument/completion", LanguageServerTests.at(0, 0)))
            .first?["result"]?["items"]?.array)
        #expect(completion.contains { $0["label"]?.string == "output" })
        #expect(try FormatterTests.formatted("output   credit limit=max(0,score-400)*2\n") == "output credit limit = max(0, score - 400) * 2\n")
    }

    @Test("an output or attribute named like the person key given with --person-key is refused: the line would have the key twice")
    func personKeyClash() throws {
        let program = try compileOrFail("output account = score * 2\nattribute owner = \"x\"\nx → +1\n")
        for (name, what) in [("account", "an output"), ("owner", "an attribute")] {
            guard case .failure(let e) = PersonKey.named(name, for: program) else { Issue.record("`\(name)` was taken"); continue }
            #expect(e.description == "`\(name)` cannot be the person key: the policy has \(what) of that name, which every report line shows")
        }
        #expect((try? PersonKey.named("member", for: program).get())?.name == "member")
    }
}
