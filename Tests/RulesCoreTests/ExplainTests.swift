import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

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
            let watch = PersonWatch(person: report.citizen, engine: engine)
            _ = EventStream.run(engine, reader: LineReader(bytes: Array(events.utf8)), asOf: nil, watch: watch) { _, _ in }
            let entries = try #require(watch.timeline.entries[report.citizen])
            #expect(entries.first?.scoreBefore == program.policy.startScore)
            for (a, b) in zip(entries, entries.dropFirst()) { #expect(a.scoreAfter == b.scoreBefore) }
            #expect(entries.last?.scoreAfter == report.score)
            let account = try #require(Explanation.account(of: report.citizen, engine: engine, timeline: watch.timeline, at: engine.clock!))
            // The JSON form says the same.
            let json = try #require(Explanation.explain(report.citizen, engine: engine, timeline: watch.timeline, at: engine.clock!)).json
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
            #expect(object["score"] as? Int == Int(report.score))
            let state = object["state"] as! [[String: Any]]
            #expect(state.map { $0["name"] as! String } == report.flags + report.denied + report.granted)
            #expect(state.allSatisfy { !($0["held_by"] as! [Any]).isEmpty || !($0["set_by"] as! [Any]).isEmpty })
            #expect((object["events"] as! [Any]).count == entries.count)
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
        let watch = PersonWatch(person: "x", engine: engine)
        _ = EventStream.run(engine, reader: LineReader(bytes: Array(#"{"citizen":"x","type":"bad","time":"2026-01-01"}"#.utf8)), asOf: nil, watch: watch) { _, _ in }
        let account = try #require(Explanation.account(of: "x", engine: engine, timeline: watch.timeline, at: engine.clock!))
        #expect(account.contains("      held by policy.rules:3  while score < 10 → flag low"))
        #expect(account.contains("        because score (5) < 10"))
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

/// Rebuilds `rules run`'s report from the audit trail alone (docs/TRACE.md).
enum TraceReplay {
    struct Person {
        var score: Int64 = 0
        var ends: [String: Int64?] = [:]       // "deny travel" → end (nil: until lifted)
        var holding: [String: [String]] = [:]  // rule → its effects
        /// False after a retraction that left none of their events standing.
        var present = true
    }

    /// The report with the contract's keys only: attributes and outputs
    /// (after `granted`) are checked apart (`AttributeTests`; an output is
    /// computed from windows the trail does not hold).
    static func contractKeys(_ report: String) -> String {
        report.split(separator: "\n").map { line -> String in
            let granted = line.range(of: #","granted":["#)!
            let close = line[granted.upperBound...].firstIndex(of: "]")!
            return String(line[...close]) + "}\n"
        }.joined()
    }

    static func report(_ trace: String, clock: Int64) throws -> String {
        var people: [String: Person] = [:]
        for line in trace.split(separator: "\n") {
            let r = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            #expect(r["v"] as? Int == 1)
            let who = r["citizen"] as! String
            var p = people[who] ?? Person()
            let effect = r["effect"] as! String
            if effect == "retract" { p.present = (r["remaining"] as! Int) > 0 } else if !(r["line"] is NSNull) { p.present = true }
            switch effect {
            case "new", "score", "clamp", "retract", "late": p.score = Int64(r["score_after"] as! Int)
            case "flag", "deny", "grant":
                // A denial for a reason is its own (lifted on its own).
                let key = "\(effect) \(r["name"] as! String)" + ((r["reason"] as? String).map { "\u{0}" + $0 } ?? "")
                let until = (r["until"] as? String).flatMap(Timestamp.parse)
                let time = Timestamp.parse(r["time"] as! String)!
                let current: Int64?? = p.ends[key]
                if case .some(.some(let end)) = current, end > time {
                    p.ends[key] = until.map { max($0, end) }
                } else if case .some(.none) = current {
                    p.ends[key] = .some(nil)
                } else {
                    p.ends[key] = .some(until)
                }
            case "clear", "allow", "revoke":
                let kind = ["clear": "flag", "allow": "deny", "revoke": "grant"][effect]!
                p.ends["\(kind) \(r["name"] as! String)" + ((r["reason"] as? String).map { "\u{0}" + $0 } ?? "")] = nil
            case "set": break  // an attribute: see `contractKeys`
            case "start": p.holding[r["rule"] as! String] = r["holds"] as? [String]
            case "stop": p.holding[r["rule"] as! String] = nil
            default: Issue.record("unknown effect \(effect)")
            }
            people[who] = p
        }
        var out = ""
        for who in people.keys.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) where people[who]!.present {
            let p = people[who]!
            var held = Set(p.holding.values.flatMap { $0 })
            for (key, end) in p.ends where end == nil || end! > clock { held.insert(key) }
            func names(_ kind: String) -> [String] {
                Set(held.filter { $0.hasPrefix(kind + " ") }.map { String($0.dropFirst(kind.count + 1).prefix { $0 != "\u{0}" }) })
                    .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            }
            let denied = names("deny")
            let granted = names("grant").filter { !denied.contains($0) }
            func list(_ l: [String]) -> String { "[" + l.map { "\"\($0)\"" }.joined(separator: ",") + "]" }
            out += "{\"citizen\":\"\(who)\",\"score\":\(p.score),\"flags\":\(list(names("flag"))),\"denied\":\(list(denied)),\"granted\":\(list(granted))}\n"
        }
        return out
    }
}

@Suite("The audit trail")
struct TraceTests {
    static func run(_ policy: String, _ events: String, asOf: Int64? = nil) throws -> (report: String, trace: String, clock: Int64) {
        let engine = Engine(program: try compileOrFail(policy))
        var trace: [UInt8] = []
        engine.enableTrace(write: { trace += $0 })
        _ = EventStream.run(engine, text: events, asOf: asOf)
        engine.finishTrace(asOf: asOf)
        var report: [UInt8] = []
        engine.writeReport(asOf: asOf) { report += $0 }
        return (String(decoding: report, as: UTF8.self), String(decoding: trace, as: UTF8.self), asOf ?? engine.clock!)
    }

    /// A stream over the citizen policy's events, with repeats close enough
    /// in time for windows, expiries and clamping to matter.
    static func generated(seed: UInt64, count: Int) -> String {
        var state = seed
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        let kinds = [#""type":"speeding","speed":%S,"limit":50"#, #""type":"unpaid debt","amount":%A"#, #""type":"debt paid","amount":5"#,
                     #""type":"littering""#, #""type":"volunteer","hours":%H"#, #""type":"blood donation""#, #""type":"tax filed","on_time":false"#]
        var lines: [String] = []
        var t: Int64 = 1_767_225_600
        for _ in 0..<count {
            t += Int64(next(4 * 86_400))
            let kind = kinds[next(kinds.count)].replacing("%S", with: String(40 + next(100)))
                .replacing("%A", with: String([50, 15_000][next(2)])).replacing("%H", with: String(next(12)))
            lines.append(#"{"citizen":"p\#(next(12))","time":"\#(Timestamp.format(t * Timestamp.perSecond))",\#(kind)}"#)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    @Test("replaying the trace reproduces the report, on every shipped example", arguments: ["citizen", "moderation", "telematics"])
    func replayExamples(_ name: String) throws {
        let policy = try ExplainTests.text("rules/\(name).rules")
        let events = try ExplainTests.text("examples/\(name).ndjson")
        for asOf in [nil, Timestamp.parse("2027-06-01")] {
            let (report, trace, clock) = try Self.run(policy, events, asOf: asOf)
            #expect(try TraceReplay.report(trace, clock: clock) == TraceReplay.contractKeys(report))
        }
    }

    @Test("replaying the trace reproduces the report on a generated stream, and the trace is deterministic")
    func replayGenerated() throws {
        let policy = try ExplainTests.text("rules/citizen.rules")
        let events = Self.generated(seed: 7, count: 3000)
        let (report, trace, clock) = try Self.run(policy, events)
        #expect(try TraceReplay.report(trace, clock: clock) == report)
        #expect(trace.contains(#""effect":"stop""#))
        #expect(trace.contains(#""line":null"#))
        #expect(try Self.run(policy, events).trace == trace)
    }
}

@Suite("Why and why not")
struct WhyNotTests {
    static func explain(_ person: String, whyNot: String? = nil, events: String = "citizen") throws -> [String] {
        let program = try compileOrFail(try ExplainTests.text("rules/citizen.rules"))
        let engine = Engine(program: program)
        let watch = PersonWatch(person: person, engine: engine)
        let text = try ExplainTests.text("examples/\(events).ndjson")
        _ = EventStream.run(engine, reader: LineReader(bytes: Array(text.utf8)), asOf: nil, watch: watch) { _, _ in }
        if let whyNot {
            return try #require(Explanation.whyNot(whyNot, of: person, engine: engine, timeline: watch.timeline, at: engine.clock!))
        }
        return try #require(Explanation.account(of: person, engine: engine, timeline: watch.timeline, at: engine.clock!))
    }

    @Test("a while rule's hold shows its condition with the values of its parts")
    func because() throws {
        let lines = try Self.explain("dave")
        #expect(lines.contains("        because count(littering within 365 days) (4) >= 4"))
        #expect(lines.contains("        because repeat litterer (true)"))
    }

    @Test("with the trail on, a hold says since when — also when time alone started it")
    func since() throws {
        let engine = Engine(program: try compileOrFail("a → flag busy for 1 day\nwhile not busy → flag free\n"))
        engine.enableTrace(records: { _ in })
        let watch = PersonWatch(person: "x", engine: engine)
        _ = EventStream.run(engine, reader: LineReader(bytes: Array(#"{"citizen":"x","type":"a","time":"2026-01-01T12:00:00Z"}"#.utf8)),
                            asOf: nil, watch: watch) { _, _ in }
        let lines = try #require(Explanation.account(of: "x", engine: engine, timeline: watch.timeline, at: Timestamp.parse("2026-01-05")!))
        #expect(lines.contains("        because not busy (false)"))
        #expect(lines.contains("        since 2026-01-02T12:00:00Z, for as long as that holds"))
    }

    @Test("why not: the first failing part of each while rule, with values")
    func whyNotWhile() throws {
        #expect(try Self.explain("carol", whyNot: "low trust") == [
            "carol is not flagged low_trust as of 2026-06-01T00:00:00Z; the rules that could do it:",
            "  policy.rules:60  while score < 900 → flag low trust",
            "    does not hold: score (901) < 900",
        ])
        #expect(try Self.explain("carol", whyNot: "rail") == [
            "carol is not denied rail as of 2026-06-01T00:00:00Z; the rules that could do it:",
            "  policy.rules:62  while low trust and debtor → deny rail",
            "    does not hold: low trust (false)",
        ])
    }

    @Test("why not: event rules that never fired, that ended, or were lifted")
    func whyNotEvent() throws {
        #expect(try Self.explain("carol", whyNot: "driving") == [
            "carol is not denied driving as of 2026-06-01T00:00:00Z; the rules that could do it:",
            "  policy.rules:36  3 speeding within 30 days → deny driving for 90 days",
            "    never fired for carol",
        ])
        let alice = try Self.explain("alice", whyNot: "driving")
        #expect(alice.last == "    fired on <stdin>:6; ended 2026-04-28T07:45:00Z")
        let erin = try Self.explain("erin", whyNot: "travel")
        #expect(erin.last == "    fired on <stdin>:16; lifted by policy.rules:47 on <stdin>:18")
    }

    @Test("why not: held things, denial beating a grant, unknown names")
    func whyNotOthers() throws {
        #expect(try Self.explain("carol", whyNot: "travel") == ["carol is denied travel as of 2026-06-01T00:00:00Z"])
        #expect(try Self.explain("carol", whyNot: "travl") == ["the policy has no flag or privilege `travl`; did you mean `travel`?"])
    }
}

@Suite("Timelines render the trace")
struct TimelineTraceTests {
    /// A record's fields as the trail writes them.
    static func fields(_ r: TraceRecord) -> String {
        "\(r.line.map(String.init) ?? "-") \(r.time) \(r.rule.map(String.init) ?? "-") " + TraceRecord.JSON.fields(r.change)
    }

    @Test("every person's timeline holds exactly their records of the audit trail, each under the event that made it",
          arguments: ["citizen", "moderation", "telematics"])
    func sameRecords(_ name: String) throws {
        let program = try compileOrFail(try ExplainTests.text("rules/\(name).rules"))
        let engine = Engine(program: program)
        var trail: [TraceRecord] = []
        engine.enableTrace(records: { trail.append($0) })
        let watch = PersonWatch(person: nil, engine: engine)
        let events = try ExplainTests.text("examples/\(name).ndjson")
        _ = EventStream.run(engine, reader: LineReader(bytes: Array(events.utf8)), asOf: nil, watch: watch) { _, _ in }
        engine.finishTrace()
        #expect(!trail.isEmpty)
        for person in watch.timeline.people {
            let entries = watch.timeline.entries[person]!
            var filed: [String] = []
            for entry in entries {
                let line = Int(entry.origin.split(separator: ":").last!)!
                // Records of the event carry its line; those before it were made by time alone.
                #expect(entry.changes.allSatisfy { $0.line == line || ($0.line == nil && $0.time <= entry.time) })
                // A fired rule's score change is its record's.
                for r in entry.changes { if case .score(let c, _, _) = r.change { #expect(entry.scoreChange(of: r.rule!) == c) } }
                filed += entry.changes.map(Self.fields)
            }
            filed += engine.pendingChanges(of: person).map(Self.fields)
            #expect(filed == trail.filter { $0.person == person }.map(Self.fields), "\(person)")
        }
    }

    @Test("the text says what each event set and lifted, what started and stopped holding, and what time alone did")
    func text() throws {
        let program = try compileOrFail("""
            score starts at 1000, max 1010
            bad → -150, flag naughty
            bad where amount > 5 → deny fun for 10 days
            good → +300, clear naughty
            while score < 900 → flag low
            while count(bad within 5 days) >= 2 → deny calm
            """)
        let engine = Engine(program: program)
        let watch = PersonWatch(person: "a", engine: engine)
        let lines = [#"{"citizen":"a","type":"bad","time":"2026-01-01","amount":9}"#,
                     #"{"citizen":"a","type":"bad","time":"2026-01-02","amount":1}"#,
                     #"{"citizen":"a","type":"good","time":"2026-01-20"}"#]
        _ = EventStream.run(engine, reader: LineReader(bytes: Array(lines.joined(separator: "\n").utf8)), asOf: nil, watch: watch) { _, _ in }
        let rendered = watch.timeline.render("a", rules: RuleSite.all(in: program)).joined(separator: "\n")
        #expect(rendered == #"""
            <stdin>:1  {"citizen":"a","type":"bad","time":"2026-01-01","amount":9}   score 1000 → 850
                fired policy.rules:2  bad → -150, flag naughty   (-150)
                    flag naughty
                fired policy.rules:3  bad where amount > 5 → deny fun for 10 days
                    deny fun until 2026-01-11T00:00:00Z
                starts holding policy.rules:5  while score < 900 → flag low
            <stdin>:2  {"citizen":"a","type":"bad","time":"2026-01-02","amount":1}   score 850 → 700
                fired policy.rules:2  bad → -150, flag naughty   (-150)
                    flag naughty
                starts holding policy.rules:6  while count(bad within 5 days) >= 2 → deny calm
            <stdin>:3  {"citizen":"a","type":"good","time":"2026-01-20"}   score 700 → 1000
                as time passed, at 2026-01-06T00:00:00Z: stops holding policy.rules:6  while count(bad within 5 days) >= 2 → deny calm
                fired policy.rules:4  good → +300, clear naughty   (+300)
                    clear naughty
                stops holding policy.rules:5  while score < 900 → flag low
            """#)
        // The JSON of the same event, as docs/LANGUAGE.md shows it.
        let json = try #require(Explanation.explain("a", engine: engine, timeline: watch.timeline, at: engine.clock!)).json
        #expect(json.contains(#""fired":[{"rule":"policy.rules:4","source":"good → +300, clear naughty","change":300}],"#
            + #""changes":[{"rule":"policy.rules:6","time":"2026-01-06T00:00:00Z","effect":"stop","holds":["deny calm"]},"#
            + #"{"rule":"policy.rules:4","effect":"score","change":300,"score_before":700,"score_after":1000},"#
            + #"{"rule":"policy.rules:4","effect":"clear","name":"naughty"},"#
            + #"{"rule":"policy.rules:5","effect":"stop","holds":["flag low"]}]}]}"#), "\(json)")
    }
}

@Suite("The explanation page")
struct ExplanationPageTests {
    @Test("one self-contained page: inline SVG with the score and a bar per sanction, no network")
    func page() throws {
        let program = try compileOrFail(try ExplainTests.text("rules/citizen.rules"))
        let engine = Engine(program: program)
        let watch = PersonWatch(person: "carol", engine: engine)
        var records: [TraceRecord] = []
        engine.enableTrace(only: "carol", records: { records.append($0) })
        let events = try ExplainTests.text("examples/citizen.ndjson")
        _ = EventStream.run(engine, reader: LineReader(bytes: Array(events.utf8)), asOf: nil, watch: watch) { _, _ in }
        engine.finishTrace()
        #expect(!records.isEmpty && records.allSatisfy { $0.person == "carol" })
        let e = try #require(Explanation.explain("carol", engine: engine, timeline: watch.timeline, at: engine.clock!))
        let html = ExplanationPage.html(e, trace: records)
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.contains("<svg xmlns='http://www.w3.org/2000/svg'"))
        #expect(!html.contains("src=") && !html.contains("<link") && !html.contains("<script"))
        #expect(html.components(separatedBy: "<rect ").count - 1 == 4)   // foreign travel, travel, debtor, and credit (ended)
        #expect(html.contains(">deny foreign_travel</text>"))
        #expect(html.contains("<path d='M"))
        #expect(html.contains("carol as of 2026-06-01T00:00:00Z: score 901"))
    }
}
