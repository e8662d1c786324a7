import Foundation
import Testing
@testable import RulesCore

@Suite("Explanations and the rule graph")
struct ExplainTests {
    static func text(_ path: String) throws -> String {
        try String(contentsOf: Repo.root.appendingPathComponent(path), encoding: .utf8)
    }

    @Test("every person's timeline accounts for every point of the score", arguments: ["citizen", "moderation", "telematics"])
    func accountsForScore(_ name: String) throws {
        let program = try compileOrFail(try Self.text("rules/\(name).rules"))
        let events = try Self.text("examples/\(name).ndjson")
        let reference = Engine(program: program)
        _ = EventStream.run(reference, text: events)
        for report in reference.report() {
            let engine = Engine(program: program)
            let watch = PersonWatch(person: report.citizen)
            _ = EventStream.run(engine, reader: LineReader(bytes: Array(events.utf8)), asOf: nil, watch: watch) { _, _ in }
            let entries = try #require(watch.timeline.entries[report.citizen])
            #expect(entries.first?.scoreBefore == program.policy.startScore)
            for (a, b) in zip(entries, entries.dropFirst()) { #expect(a.scoreAfter == b.scoreBefore) }
            #expect(entries.last?.scoreAfter == report.score)
            let account = try #require(Explanation.account(of: report.citizen, engine: engine, timeline: watch.timeline, at: engine.clock!))
            #expect(account[0].hasSuffix("score \(report.score)"))
            // Every flag and privilege of the report has a reason under it.
            for name in report.flags + report.denied + report.granted {
                let i = try #require(account.firstIndex(of: "    \(name)"))
                #expect(account[i + 1].hasPrefix("      set by ") || account[i + 1].hasPrefix("      held by "))
            }
        }
    }

    @Test("a while rule's hold is explained by the rule")
    func heldByWhile() throws {
        let program = try compileOrFail("score starts at 10\nbad → -5\nwhile score < 10 → flag low\n")
        let engine = Engine(program: program)
        let watch = PersonWatch(person: "x")
        _ = EventStream.run(engine, reader: LineReader(bytes: Array(#"{"citizen":"x","type":"bad","time":"2026-01-01"}"#.utf8)), asOf: nil, watch: watch) { _, _ in }
        let account = try #require(Explanation.account(of: "x", engine: engine, timeline: watch.timeline, at: engine.clock!))
        #expect(account.contains("      held by policy.rules:3  while score < 10 → flag low  (its condition holds now)"))
        #expect(account.contains("        fired policy.rules:2  bad → -5   (-5)"))
    }

    @Test("the DOT graph names events, rules, effects and reads")
    func dot() throws {
        let result = PolicyCompiler.compile("speeding → -5, flag fast\nwhile fast → deny driving\n")
        let dot = try #require(GraphExport.render(result, format: .dot))
        #expect(dot.hasPrefix("digraph rules {"))
        #expect(dot.contains(#""event:speeding" -> "rule:0";"#))
        #expect(dot.contains(#""rule:0" -> "score" [label="changes"];"#))
        #expect(dot.contains(#""rule:0" -> "flag:fast" [label="flag"];"#))
        #expect(dot.contains(#""flag:fast" -> "state:0" [label="reads", style=dashed];"#))
        #expect(dot.contains(#""state:0" -> "privilege:driving" [label="deny"];"#))
        #expect(dot.contains(#""rule:0" [label="policy.rules:1\nspeeding → -5, flag fast", shape=box];"#))
        #expect(!dot.contains("red"))
    }

    @Test("a cycle is drawn in red, in DOT and in Mermaid")
    func cycle() throws {
        let result = PolicyCompiler.compile("while a → flag b\nwhile b → flag a\nwhile b → deny x\n")
        #expect(result.program == nil)
        let dot = try #require(GraphExport.render(result, format: .dot))
        #expect(dot.components(separatedBy: "penwidth=2").count - 1 == 4)
        #expect(dot.contains(#""state:2" -> "privilege:x" [label="deny"];"#))
        let mermaid = try #require(GraphExport.render(result, format: .mermaid))
        #expect(mermaid.hasPrefix("flowchart LR\n"))
        #expect(mermaid.contains("linkStyle "))
    }

    @Test("Graphviz renders the DOT of every shipped policy", .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/dot")))
    func graphvizRenders() throws {
        for name in ["citizen", "moderation", "telematics"] {
            let result = PolicyCompiler.compile(try Self.text("rules/\(name).rules"), name: "\(name).rules")
            let dot = try #require(GraphExport.render(result, format: .dot))
            let r = try runProcess(URL(fileURLWithPath: "/usr/bin/dot"), ["-Tsvg"], stdin: dot)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("<svg"))
        }
    }
}
