import RulesCore

/// Reads and compiles the policy files named on the command line, printing
/// every diagnostic to stderr.
enum PolicyLoading {
    enum Outcome {
        case compiled(CompileResult)
        case unreadable
    }

    static func compile(_ paths: [String]) -> Outcome {
        var sources = SourceSet()
        for path in paths {
            switch Terminal.readFile(path) {
            case .success(let bytes): sources.add(SourceFile(name: path, bytes: bytes))
            case .failure(let reason):
                Terminal.writeErr("rules: cannot read policy \(path): \(reason)\n")
                return .unreadable
            }
        }
        return .compiled(PolicyCompiler.compile(sources))
    }

    static func printDiagnostics(_ result: CompileResult, json: Bool = false) {
        let renderer = DiagnosticRenderer(sources: result.sources, color: !json && Terminal.colorOnStderr)
        for d in result.diagnostics {
            Terminal.writeErr(json ? renderer.json(d) + "\n" : renderer.render(d))
        }
    }

    static func summary(_ result: CompileResult) -> String {
        let e = result.errors.count, w = result.warnings.count
        func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
        return "\(plural(e, "error")), \(plural(w, "warning"))"
    }
}
