import RulesCore
#if canImport(Glibc)
import Glibc
#endif

/// Reads and compiles the policy files named on the command line, printing
/// every diagnostic to stderr.
enum PolicyLoading {
    enum Outcome {
        case compiled(CompileResult)
        case unreadable
    }

    /// Reads files from disk; `use` targets are deduplicated by real path.
    static let loader = PolicyLoader(
        read: { path in Terminal.readFile(path).mapError { PolicyLoader.ReadError($0.message) } },
        canonical: { path in
            guard let real = realpath(path, nil) else { return path }
            defer { free(real) }
            return String(cString: real)
        })

    static func compile(_ paths: [String]) -> Outcome {
        switch PolicyCompiler.compile(paths: paths, loader: loader) {
        case .success(let result): return .compiled(result)
        case .failure(let e):
            Terminal.writeErr("rules: cannot read policy \(e.path): \(e.reason)\n")
            return .unreadable
        }
    }

    /// The program of the named files, every diagnostic printed; nil, once
    /// it has said so (`the policy has 1 error, 0 warnings; REFUSAL`), when
    /// a file cannot be read or the policy has errors.
    static func program(_ paths: [String], policy: String = "the policy", refusal: String) -> Program? {
        guard case .compiled(let result) = compile(paths) else { return nil }
        printDiagnostics(result)
        guard let program = result.program else {
            Terminal.writeErr("rules: \(policy) has \(summary(result)); \(refusal)\n")
            return nil
        }
        return program
    }

    static func printDiagnostics(_ result: CompileResult, json: Bool = false) {
        printDiagnostics(result.diagnostics, sources: result.sources, json: json)
    }

    static func printDiagnostics(_ diagnostics: [Diagnostic], sources: SourceSet, json: Bool = false) {
        let renderer = DiagnosticRenderer(sources: sources, color: !json && Terminal.colorOnStderr)
        for d in diagnostics {
            Terminal.writeErr(json ? renderer.json(d) + "\n" : renderer.render(d))
        }
    }

    static func summary(_ result: CompileResult) -> String {
        let e = result.errors.count, w = result.warnings.count
        func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
        return "\(plural(e, "error")), \(plural(w, "warning"))"
    }
}
