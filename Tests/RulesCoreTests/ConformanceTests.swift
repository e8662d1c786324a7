import Foundation
import Testing
@testable import RulesCore

/// One case of the conformance corpus (Tests/Fixtures/conformance/*.case):
/// a policy (one `== policy` section per file), events, arguments, and the
/// expected output, rejected lines, check errors or stderr text.
struct ConformanceCase: CustomTestStringConvertible, Sendable {
    var name: String
    var summary: String
    var policies: [String] = []
    var events = ""
    var args: [String] = []
    var output: String? = nil
    var rejects: [(line: Int, text: String)] = []
    var errors: [String]? = nil
    var warnings: [String]? = nil
    var stderr: [String] = []

    var testDescription: String { name }

    static let all: [ConformanceCase] = Repo.files(in: "conformance", ext: "case").map(load)

    static func load(_ url: URL) -> ConformanceCase {
        let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        var c = ConformanceCase(name: url.deletingPathExtension().lastPathComponent, summary: "")
        var section = ""
        var body: [String] = []
        func flush() {
            while body.last == "" { body.removeLast() }
            let joined = body.isEmpty ? "" : body.joined(separator: "\n") + "\n"
            switch section {
            case "policy": c.policies.append(joined)
            case "events": c.events = joined
            case "args": c.args = body.flatMap { $0.split(separator: " ").map(String.init) }
            case "output": c.output = joined
            case "rejects":
                c.rejects = body.map { line in
                    let parts = line.split(separator: ":", maxSplits: 1)
                    return (Int(parts[0])!, parts[1].trimmingCharacters(in: .whitespaces))
                }
            case "errors": c.errors = body
            case "warnings": c.warnings = body
            case "stderr": c.stderr = body
            default: break
            }
            body = []
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("== ") {
                flush()
                section = String(line.dropFirst(3))
            } else if section.isEmpty {
                if line.hasPrefix("# ") { c.summary = String(line.dropFirst(2)) }
            } else {
                body.append(line)
            }
        }
        flush()
        return c
    }

    var asOf: String? {
        guard let i = args.firstIndex(of: "--as-of"), i + 1 < args.count else { return nil }
        return args[i + 1]
    }

    var sources: SourceSet {
        SourceSet(policies.enumerated().map { SourceFile(name: "policy\($0.offset + 1).rules", text: $0.element) })
    }
}

@Suite("Conformance corpus through the library")
struct ConformanceTests {
    @Test("the corpus is large enough")
    func corpusSize() {
        #expect(ConformanceCase.all.count >= 60)
    }

    @Test(arguments: ConformanceCase.all)
    func conformance(_ c: ConformanceCase) throws {
        let result = PolicyCompiler.compile(c.sources)
        func located(_ severity: Diagnostic.Severity) -> [String] {
            result.diagnostics.filter { $0.severity == severity }.map { d in
                let (_, line, column) = result.sources.location(d.span)
                return "\(line):\(column) \(d.code.rawValue)"
            }
        }
        if let errors = c.errors {
            #expect(result.program == nil, "expected the policy to fail the check")
            #expect(located(.error) == errors)
            return
        }
        let rendered = DiagnosticRenderer(sources: result.sources).render(result.errors)
        #expect(result.errors.isEmpty, "\(rendered)")
        if let warnings = c.warnings { #expect(located(.warning) == warnings) }
        guard let program = result.program, let expected = c.output else { return }
        do {
            let engine = Engine(program: program)
            let asOf = c.asOf.flatMap(Timestamp.parse)
            let (_, rejections) = EventStream.run(engine, text: c.events, asOf: asOf)
            var bytes: [UInt8] = []
            engine.writeReport(asOf: asOf) { bytes += $0 }
            #expect(String(decoding: bytes, as: UTF8.self) == expected)
            #expect(rejections.map(\.line) == c.rejects.map(\.line))
            for (want, got) in zip(c.rejects, rejections) {
                #expect(got.reason.contains(want.text), "line \(want.line): \(got.reason)")
            }
        }
    }
}
