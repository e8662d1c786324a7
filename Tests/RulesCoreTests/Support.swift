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

/// Runs a program to its end with posix_spawn and waitpid; stdin, stdout
/// and stderr go through temporary files. (Foundation's `Process` can miss a
/// child's exit when other tests spawn children of their own.)
func runProcess(_ executable: URL, _ args: [String], stdin: String? = nil, environment: [String: String]? = nil) throws -> ProcessResult {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let inPath = dir.appendingPathComponent("in").path, outPath = dir.appendingPathComponent("out").path
    let errPath = dir.appendingPathComponent("err").path
    try (stdin ?? "").write(toFile: inPath, atomically: true, encoding: .utf8)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, inPath, O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    let env = environment ?? ProcessInfo.processInfo.environment
    let argv = ([executable.path] + args).map { strdup($0) } + [nil]
    let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, executable.path, &actions, nil, argv, envp)
    guard rc == 0 else { throw TestFailure("cannot start \(executable.path): error \(rc)") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return ProcessResult(status: code, stdout: out, stderr: err)
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
