import Foundation
import Testing
@testable import RulesCore

/// Golden files of rendered diagnostics: Tests/Fixtures/diagnostics/CODE-*.rules
/// and its `.expected` rendering. Set UPDATE_GOLDEN=1 to rewrite them.
@Suite("Rendered diagnostics")
struct DiagnosticGoldenTests {
    static let inputs = Repo.files(in: "diagnostics", ext: "rules")

    /// Compiles through the loader (so `use` is followed), naming files by
    /// their path inside the fixtures folder.
    static func render(_ url: URL) throws -> (CompileResult, String) {
        let dir = url.deletingLastPathComponent()
        let loader = PolicyLoader(read: { name in
            guard let data = FileManager.default.contents(atPath: dir.appendingPathComponent(name).path) else {
                return .failure(PolicyLoader.ReadError("No such file or directory"))
            }
            return .success([UInt8](data))
        })
        let result = try PolicyCompiler.compile(paths: [url.lastPathComponent], loader: loader).get()
        return (result, DiagnosticRenderer(sources: result.sources).render(result.diagnostics))
    }

    @Test(arguments: inputs)
    func golden(_ url: URL) throws {
        let (result, rendered) = try Self.render(url)
        let expectedURL = url.deletingPathExtension().appendingPathExtension("expected")
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try rendered.write(to: expectedURL, atomically: true, encoding: .utf8)
        }
        let expected = try String(contentsOf: expectedURL, encoding: .utf8)
        #expect(rendered == expected)
        // The file is named after the code it demonstrates; that code must come first.
        let code = String(url.lastPathComponent.prefix(5))
        #expect(result.diagnostics.first?.code.rawValue == code)
    }

    @Test("every diagnostic code has a golden example and a section in docs/LANGUAGE.md")
    func everyCodeDocumented() throws {
        let covered = Set(Self.inputs.map { String($0.lastPathComponent.prefix(5)) })
        let docs = try String(contentsOf: Repo.root.appendingPathComponent("docs/LANGUAGE.md"), encoding: .utf8)
        // Depth and error-count limits need very long inputs; unit tests cover them.
        let tested: Set<DiagnosticCode> = [.tooDeep, .tooManyErrors]
        for code in DiagnosticCode.allCases {
            if !tested.contains(code) { #expect(covered.contains(code.rawValue), "no golden example for \(code.rawValue)") }
            #expect(docs.contains("### \(code.rawValue)"), "docs/LANGUAGE.md has no section for \(code.rawValue)")
        }
        // The rendered examples in the docs are the golden output, verbatim.
        for url in Self.inputs {
            let expected = try String(contentsOf: url.deletingPathExtension().appendingPathExtension("expected"), encoding: .utf8)
            #expect(docs.contains(expected), "docs/LANGUAGE.md does not show the current output for \(url.lastPathComponent)")
        }
    }

    @Test("nesting deeper than the limit is an error, not a crash")
    func tooDeep() {
        let depth = 5000
        let text = "a where " + String(repeating: "(", count: depth) + "1" + String(repeating: ")", count: depth) + " > 0 → +1"
        let result = PolicyCompiler.compile(text)
        #expect(result.program == nil)
        #expect(result.errors.map(\.code) == [.tooDeep])
    }

    @Test("a file of errors stops at the cap with one closing diagnostic")
    func tooManyErrors() {
        let text = String(repeating: "speeding → 5\n", count: 200)
        let result = PolicyCompiler.compile(text)
        #expect(result.errors.filter { $0.code == .missingEffect }.count == DiagnosticSink.maxErrors)
        #expect(result.diagnostics.last?.code == .tooManyErrors)
    }

    @Test("colour only when asked, and then around the label")
    func colour() {
        let result = PolicyCompiler.compile("speeding → 5")
        let plain = DiagnosticRenderer(sources: result.sources, color: false).render(result.diagnostics)
        let colored = DiagnosticRenderer(sources: result.sources, color: true).render(result.diagnostics)
        #expect(!plain.contains("\u{1B}["))
        #expect(colored.contains("\u{1B}[1;31merror\u{1B}[0m"))
    }

    @Test("columns count characters: an arrow or a tab is one column")
    func columns() {
        let result = PolicyCompiler.compile("a →\t→ -1")
        let d = result.errors.first!
        let (_, line, column) = result.sources.location(d.span)
        #expect(line == 1)
        #expect(column == 5)
    }

    @Test("JSON diagnostics carry code, severity, position and help")
    func json() {
        let result = PolicyCompiler.compile("speeding → 5")
        let json = DiagnosticRenderer(sources: result.sources).json(result.diagnostics[0])
        #expect(json == #"{"file":"policy.rules","line":1,"column":12,"end_line":1,"end_column":13,"severity":"error","code":"E0204","message":"a score change needs a sign","help":"write `+5` or `-5`"}"#)
    }
}
