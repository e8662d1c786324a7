import Foundation
@testable import RulesCore

/// Paths of the repository, found from this file's location so tests run
/// from any working directory.
enum Repo {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("Tests/Fixtures")

    static func files(in folder: String, ext: String) -> [URL] {
        let dir = fixtures.appendingPathComponent(folder)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { $0.hasSuffix("." + ext) }.sorted().map { dir.appendingPathComponent($0) }
    }

    /// The built `rules` executable: next to the test bundle, or in .build.
    static var binary: URL? {
        if let env = ProcessInfo.processInfo.environment["RULES_BIN"] { return URL(fileURLWithPath: env) }
        var candidates: [URL] = []
        let bundleDir = Bundle.main.bundleURL
        candidates.append(bundleDir.appendingPathComponent("rules"))
        candidates.append(bundleDir.deletingLastPathComponent().appendingPathComponent("rules"))
        candidates.append(root.appendingPathComponent(".build/debug/rules"))
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }
}

/// Runs a command and captures its output.
struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

func runProcess(_ executable: URL, _ args: [String], stdin: String? = nil, environment: [String: String]? = nil) throws -> ProcessResult {
    let p = Process()
    p.executableURL = executable
    p.arguments = args
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe(), input = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = input
    try p.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    // Read both pipes concurrently so neither fills up and blocks the child.
    final class Box: @unchecked Sendable { var data = Data() }
    let errBox = Box()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errBox.data = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let errData = errBox.data
    p.waitUntilExit()
    return ProcessResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// Compiles policy text, failing loudly with rendered diagnostics.
func compileOrFail(_ text: String) throws -> Program {
    let result = PolicyCompiler.compile(text)
    guard let program = result.program else {
        throw TestFailure(DiagnosticRenderer(sources: result.sources).render(result.diagnostics))
    }
    return program
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Runs events through a fresh engine; returns the report lines.
func runPolicy(_ policy: String, _ events: String, asOf: String? = nil) throws -> (output: String, rejections: [Rejection]) {
    let engine = Engine(program: try compileOrFail(policy))
    let (_, rejections) = EventStream.run(engine, text: events, asOf: asOf.flatMap(Timestamp.parse))
    var bytes: [UInt8] = []
    engine.writeReport(asOf: asOf.flatMap(Timestamp.parse)) { bytes += $0 }
    return (String(decoding: bytes, as: UTF8.self), rejections)
}
