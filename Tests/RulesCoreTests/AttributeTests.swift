import Foundation
@testable import RulesCore
@testable import RulesTooling
import Testing

/// `attribute NAME = START` and `set NAME to EXPR` (docs/LANGUAGE.md,
/// "Attributes"). The differential test compares them with the reference
/// model on random policies, through checkpoints, corrections, the library
/// and the REPL; these are the parts it does not reach.
@Suite("Attributes")
struct AttributeTests {
    static let policy = """
        event profile { age: number, region: string }
        event purchase { amount: number }
        attribute age = 0
        attribute region = "unknown"
        attribute points = 0
        profile → set age to age, set region to region
        purchase → set points to points + amount

        """
    static let events = """
        {"citizen":"a","type":"profile","time":"2026-01-01T00:00:00Z","age":17,"region":"north"}
        {"citizen":"a","type":"purchase","time":"2026-01-02T00:00:00Z","amount":70}

        """

    static func run(_ policy: String, _ events: String) throws -> Engine {
        let engine = Engine(program: try compileOrFail(policy))
        _ = EventStream.run(engine, text: events, asOf: nil)
        return engine
    }

    static func report(_ engine: Engine) -> String {
        var bytes: [UInt8] = []
        engine.writeReport { bytes += $0 }
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test("`set` splits from the attribute's name only where an effect starts and `to` follows")
    func lexing() throws {
        let (out, _) = try runPolicy("""
            attribute level = 1
            set up fee → -5, set level to level + 1
            x → flag set aside
            while set aside → deny settings

            """, """
            {"citizen":"a","type":"set up fee","time":"2026-01-01"}
            {"citizen":"a","type":"x","time":"2026-01-02"}

            """)
        #expect(out == #"{"citizen":"a","score":-5,"flags":["set_aside"],"denied":["settings"],"granted":[],"level":2}"# + "\n")
    }

    @Test("a checkpoint carries attributes over to a changed policy by name and type; the notes say what did not")
    func carryOver() throws {
        let before = try Self.run(Self.policy, Self.events)
        let saved = Checkpoint.encode([before], lines: 2)
        let changed = try compileOrFail("""
            event profile { age: number, region: string }
            attribute region = "unknown"
            attribute points = "none"
            attribute level = 3
            profile → set region to region

            """)
        let after = Engine(program: changed)
        guard case .success(let info) = Checkpoint.restore(saved, into: [after]) else { Issue.record("did not restore"); return }
        #expect(Self.report(after) == #"{"citizen":"a","score":0,"flags":[],"denied":[],"granted":[],"region":"north","points":"none","level":3}"# + "\n")
        #expect(info.notes.contains("attribute `age` is not in the new policy: dropped"), "\(info.notes)")
        #expect(info.notes.contains("attribute `points` was a number and is a string in the new policy: it starts again"), "\(info.notes)")
        // Into the same policy, exactly.
        let same = Engine(program: try compileOrFail(Self.policy))
        guard case .success = Checkpoint.restore(saved, into: [same]) else { Issue.record("did not restore"); return }
        #expect(Self.report(same) == Self.report(before))
    }

    @Test("a checkpoint of format 4 (before attributes) still reads")
    func formatFour() throws {
        // A policy with no slots or buffers: format 5 differs from 4 only by
        // the attribute count (8 zero bytes) after the (empty) buffer list.
        let policy = "x → +1\n"
        let engine = try Self.run(policy, #"{"citizen":"a","type":"x","time":"2026-01-01"}"# + "\n")
        var bytes = Checkpoint.encode([engine], lines: 1)
        let at = 8 + 4 + 8 + 8 + 8 + 8 + 8 + 8 + 8
        #expect(bytes[at..<(at + 8)].allSatisfy { $0 == 0 })
        bytes.removeSubrange(at..<(at + 8))
        bytes.replaceSubrange(8..<12, with: withUnsafeBytes(of: UInt32(4).littleEndian, Array.init))
        let length = UInt64(bytes.count - 28 - 8)
        bytes.replaceSubrange(20..<28, with: withUnsafeBytes(of: length.littleEndian, Array.init))
        bytes.removeLast(8)
        bytes += withUnsafeBytes(of: Hashing.fnv1a(bytes).littleEndian, Array.init)
        let restored = Engine(program: try compileOrFail(policy))
        guard case .success = Checkpoint.restore(bytes, into: [restored]) else { Issue.record("format 4 did not restore"); return }
        #expect(Self.report(restored) == Self.report(engine))
    }

    @Test("the trail records each set with the value before and after; explain names the rule and event that set it")
    func trailAndExplain() throws {
        let engine = Engine(program: try compileOrFail(Self.policy))
        var trail: [UInt8] = []
        engine.enableTrace(write: { trail += $0 })
        _ = EventStream.run(engine, text: Self.events, asOf: nil)
        engine.finishTrace(asOf: nil)
        let lines = String(decoding: trail, as: UTF8.self).split(separator: "\n")
        #expect(lines.contains { $0.hasSuffix(#""effect":"set","attribute":"region","before":"unknown","after":"north"}"#) }, "\(lines)")
        #expect(lines.contains { $0.contains(#""line":2,"#) && $0.hasSuffix(#""effect":"set","attribute":"points","before":0,"after":70}"#) }, "\(lines)")
        let explained = Engine(program: try compileOrFail(Self.policy))
        explained.enableTrace(only: "a", records: { _ in })
        let watch = PersonWatch(person: "a", engine: explained, origin: { "events:\($0)" })
        _ = EventStream.run(explained, reader: LineReader(bytes: Array(Self.events.utf8)), asOf: nil, watch: watch) { _, _ in }
        let e = try #require(Explanation.explain("a", engine: explained, timeline: watch.timeline, at: explained.clock!))
        #expect(e.lines.contains("    region \"north\""), "\(e.lines)")
        #expect(e.lines.contains { $0.hasPrefix("      set by policy.rules:6") }, "\(e.lines)")
        #expect(e.json.contains(#""attributes":[{"name":"age","value":17,"set_by":{"rule":"policy.rules:6""#), "\(e.json)")
    }

    @Test("rules test compares attributes: numbers as the score, strings and bools with == and !=")
    func testExpectations() throws {
        let text = Self.policy + """
            test "attributes" {
              2026-01-01T00:00:00Z a: profile { age: 17, region: "north" }
              expect a age == 17
              expect a region == "north"
              expect a region != "south"
              expect a region == "south"
              expect a regoin == "north"
            }

            """
        let result = PolicyCompiler.compile(text)
        _ = try #require(result.program)
        let details = PolicyTests.run(result, testsIn: 0).outcomes.flatMap(\.details)
        #expect(details.count == 2, "\(details)")
        #expect(details.contains { $0.contains(#"expected: region == "south""#) && $0.contains(#"actual:   region "north""#) }, "\(details)")
        #expect(details.contains { $0.contains("the policy has no attribute `regoin`; did you mean `region`?") }, "\(details)")
    }

    @Test("the language server: hover on an attribute says who sets and reads it")
    func hover() throws {
        var (server, _) = LanguageServerTests.opened(Self.policy)
        let hover = try #require(server.handle(LanguageServerTests.request(2, "textDocument/hover", LanguageServerTests.at(3, 12)))
            .first?["result"]?["contents"]?["value"]?.string)
        #expect(hover.hasPrefix("**attribute** `region` (a string per person, in the report as `region`)"), "\(hover)")
        #expect(hover.contains("set by:\n- line 6: `profile → set age to age, set region to region`"), "\(hover)")
        // Definition: from the `set` on line 6 to the declaration on line 4;
        // references: where rules read and set it.
        func start(_ v: JSONValue?) -> [Int] { [v?["range"]?["start"]?["line"]?.int ?? -1, v?["range"]?["start"]?["character"]?.int ?? -1] }
        #expect(start(server.handle(LanguageServerTests.request(3, "textDocument/definition", LanguageServerTests.at(5, 32))).first?["result"]) == [3, 10])
        let refs = try #require(server.handle(LanguageServerTests.request(4, "textDocument/references", LanguageServerTests.at(6, 17)
            + [("context", .object([("includeDeclaration", .bool(false))]))])).first?["result"]?.array)
        #expect(refs.map { $0["range"]?["start"]?["line"]?.int } == [6, 6], "\(refs)")
    }

    @Test("the trail replays to the report's attributes too (their start values in `new`); outputs are computed from windows, not replayed")
    func replayTelematics() throws {
        let policy = try ExplainTests.text("rules/telematics.rules")
        let events = try ExplainTests.text("examples/telematics.ndjson")
        let (report, trace, clock) = try TraceTests.run(policy, events)
        #expect(trace.contains(#""effect":"new","score_after":700,"attributes":{"declared_km":10000}"#))
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { return }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("trail-\(UUID().uuidString)").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(trace.utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let script = Repo.root.appendingPathComponent("scripts/replay-trace.py").path
        let r = try runProcess(URL(fileURLWithPath: "/usr/bin/python3"), [script, path, Timestamp.format(clock)])
        // The report without its one output, `night_km`.
        let withoutOutputs = report.split(separator: "\n").map { line -> String in
            let key = line.range(of: #","night_km":"#)!
            let end = line[key.upperBound...].firstIndex { $0 == "," || $0 == "}" }!
            return String(line[..<key.lowerBound] + line[end...]) + "\n"
        }.joined()
        #expect(r.stdout == withoutOutputs, "\(r.stderr)")
    }
}
