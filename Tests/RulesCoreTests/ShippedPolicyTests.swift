import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

/// The policies in rules/ check cleanly and produce, on their example
/// streams in examples/, exactly the reports reviewed into
/// examples/NAME.expected.ndjson.
@Suite("Shipped policies and examples")
struct ShippedPolicyTests {
    static let policies = ["citizen", "moderation", "telematics"]

    static func text(_ path: String) throws -> String {
        try String(contentsOf: Repo.root.appendingPathComponent(path), encoding: .utf8)
    }

    @Test(arguments: policies)
    func checksClean(_ name: String) throws {
        let result = PolicyCompiler.compile(SourceSet([SourceFile(name: "\(name).rules", text: try Self.text("rules/\(name).rules"))]))
        #expect(result.diagnostics.isEmpty, "\(DiagnosticRenderer(sources: result.sources).render(result.diagnostics))")
    }

    @Test(arguments: policies)
    func exampleStream(_ name: String) throws {
        let (output, rejections) = try runPolicy(try Self.text("rules/\(name).rules"), try Self.text("examples/\(name).ndjson"))
        #expect(output == (try Self.text("examples/\(name).expected.ndjson")))
        // citizen's stream carries one deliberately malformed event.
        #expect(rejections.map(\.line) == (name == "citizen" ? [22] : []))
    }

    @Test("the citizen example as of March: driving still denied, littering not yet repeated")
    func citizenAsOf() throws {
        let (output, _) = try runPolicy(try Self.text("rules/citizen.rules"), try Self.text("examples/citizen.ndjson"), asOf: "2026-03-01")
        let lines = output.split(separator: "\n")
        #expect(lines[0] == #"{"citizen":"alice","score":965,"flags":[],"denied":["driving"],"granted":[]}"#)
        #expect(lines[3] == #"{"citizen":"dave","score":994,"flags":[],"denied":[],"granted":[]}"#)
    }

    @Test("the corrections example: the reviewed report, and the README shows it")
    func corrections() throws {
        let engine = Engine(program: try compileOrFail(try Self.text("rules/citizen.rules")))
        let day: Int64 = 86_400 * Timestamp.perSecond
        engine.enableCorrections(Corrections(retain: 365 * day, lateness: 7 * day))
        let (_, rejections) = EventStream.run(engine, text: try Self.text("examples/corrections.ndjson"))
        var bytes: [UInt8] = []
        engine.writeReport { bytes += $0 }
        let expected = try Self.text("examples/corrections.expected.ndjson")
        #expect(String(decoding: bytes, as: UTF8.self) == expected)
        #expect(rejections.map(\.line) == [13, 14])
        #expect(try Self.text("README.md").contains("```\n" + expected + "```"))
    }

    @Test("the README's tour policy checks without errors")
    func readmeTour() throws {
        let readme = try Self.text("README.md")
        let tour = try #require(readme.range(of: "## A five-minute tour"))
        let open = try #require(readme.range(of: "```\n", range: tour.upperBound..<readme.endIndex))
        let close = try #require(readme.range(of: "```", range: open.upperBound..<readme.endIndex))
        let result = PolicyCompiler.compile(String(readme[open.upperBound..<close.lowerBound]), name: "tour.rules")
        #expect(result.errors.isEmpty, "\(DiagnosticRenderer(sources: result.sources).render(result.errors))")
        #expect(result.program?.policy.eventRules.count == 5)
    }
}
