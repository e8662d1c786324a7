import Foundation
@testable import RulesCore
@testable import RulesTooling
import Testing

/// `deny P because R` and `allow P because R` (docs/LANGUAGE.md,
/// "Denials with reasons"). The differential test compares them with the
/// reference model on random policies; these are the parts it does not
/// reach: the trail and its replays, explain, checkpoints into a changed
/// policy, the editor.
@Suite("Denials with reasons")
struct DenialReasonTests {
    static let policy = """
        unpaid debt → deny travel because debt
        court order → deny travel because court order for 60 days
        debt paid → allow travel because debt
        pardon → allow travel

        """
    static let events = """
        {"citizen":"a","type":"unpaid debt","time":"2026-01-01"}
        {"citizen":"a","type":"court order","time":"2026-01-02"}
        {"citizen":"a","type":"debt paid","time":"2026-01-03"}
        {"citizen":"c","type":"unpaid debt","time":"2026-01-01"}
        {"citizen":"c","type":"court order","time":"2026-01-02"}
        {"citizen":"c","type":"pardon","time":"2026-01-03"}

        """

    @Test("the trail names each denial's reason; `allow P` lifts each in force; both replays rebuild the report")
    func trail() throws {
        let (report, trace, clock) = try TraceTests.run(Self.policy, Self.events)
        let lines = trace.split(separator: "\n")
        #expect(lines.contains { $0.hasSuffix(#""effect":"deny","name":"travel","reason":"court_order","until":"2026-03-03T00:00:00Z"}"#) }, "\(lines)")
        #expect(lines.filter { $0.contains(#""citizen":"c""#) && $0.contains(#""effect":"allow""#) }.count == 2, "\(lines)")
        #expect(try TraceReplay.report(trace, clock: clock) == report)
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { return }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("trail-\(UUID().uuidString)").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(trace.utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try runProcess(URL(fileURLWithPath: "/usr/bin/python3"),
                               [Repo.root.appendingPathComponent("scripts/replay-trace.py").path, path, Timestamp.format(clock)])
        #expect(r.stdout == report, "\(r.stderr)")
    }

    @Test("explain names the denial in force with its reason")
    func explain() throws {
        let engine = Engine(program: try compileOrFail(Self.policy))
        engine.enableTrace(only: "a", records: { _ in })
        let watch = PersonWatch(person: "a", engine: engine, origin: { "events:\($0)" })
        _ = EventStream.run(engine, reader: LineReader(bytes: Array(Self.events.utf8)), asOf: nil, watch: watch) { _, _ in }
        let e = try #require(Explanation.explain("a", engine: engine, timeline: watch.timeline, at: engine.clock!))
        #expect(e.lines.contains("      set by policy.rules:2  court order → deny travel because court order for 60 days  (because court_order)"), "\(e.lines)")
        #expect(!e.lines.contains { $0.contains("policy.rules:1") && $0.contains("set by") }, "the lifted denial is not in force: \(e.lines)")
        #expect(e.lines.contains("      in force since 2026-01-02T00:00:00Z, until 2026-03-03T00:00:00Z"), "\(e.lines)")
        #expect(e.json.contains(#""reason":"court_order","event":"events:2""#), "\(e.json)")
    }

    @Test("a checkpoint keeps each reason's denial by name: a changed policy keeps those it has, and says which it dropped")
    func checkpoint() throws {
        let engine = Engine(program: try compileOrFail(Self.policy))
        _ = EventStream.run(engine, text: """
            {"citizen":"a","type":"unpaid debt","time":"2026-01-01"}
            {"citizen":"a","type":"court order","time":"2026-01-02"}

            """, asOf: nil)
        let saved = Checkpoint.encode([engine], lines: 2)
        let changed = Engine(program: try compileOrFail("""
            unpaid debt → deny travel because debt
            debt paid → allow travel because debt

            """))
        guard case .success(let info) = Checkpoint.restore(saved, into: [changed]) else { Issue.record("did not restore"); return }
        #expect(info.notes.contains("`deny travel because court_order` set by event rules is not in the new policy: dropped"), "\(info.notes)")
        _ = EventStream.run(changed, text: #"{"citizen":"a","type":"debt paid","time":"2026-01-05"}"# + "\n", asOf: nil)
        #expect(changed.state(of: "a", at: changed.clock!)?.denied == [])
        let same = Engine(program: try compileOrFail(Self.policy))
        guard case .success = Checkpoint.restore(saved, into: [same]) else { Issue.record("did not restore"); return }
        _ = EventStream.run(same, text: #"{"citizen":"a","type":"debt paid","time":"2026-01-05"}"# + "\n", asOf: nil)
        #expect(same.state(of: "a", at: same.clock!)?.denied == ["travel"], "the court's denial stays")
    }

    @Test("the language server: hover on a reason lists who denies and lifts for it")
    func hover() throws {
        var (server, _) = LanguageServerTests.opened(Self.policy)
        let hover = try #require(server.handle(LanguageServerTests.request(2, "textDocument/hover", LanguageServerTests.at(0, 35)))
            .first?["result"]?["contents"]?["value"]?.string)
        #expect(hover.hasPrefix("**reason** `debt`"), "\(hover)")
        #expect(hover.contains("lifted by:\n- line 3: `debt paid → allow travel because debt`"), "\(hover)")
    }
}
