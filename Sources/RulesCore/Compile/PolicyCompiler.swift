/// The front of the pipeline in one call: source files → tokens → AST →
/// checked policy and rule graph → compiled program.
package struct CompileResult: Sendable {
    public var sources: SourceSet
    /// Every error and warning, in file order, then position.
    public var diagnostics: [Diagnostic]
    /// The compiled program, when there were no errors.
    public var program: Program?
    /// Every file's statements, in source order (tests read their blocks).
    package var statements: [Statement] = []
    /// The numbers of the files named to compile (the one file of a
    /// string or a REPL's typed text: the last).
    package var entries: [Int] = []
    /// What the checker made of the policy, errors or not (`rules graph`
    /// draws it even when a cycle fails the check).
    package var checked: CheckedPolicy? = nil

    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
    public var warnings: [Diagnostic] { diagnostics.filter { $0.severity == .warning } }
}

package enum PolicyCompiler {
    /// `keep` leaves statements out of the policy (the REPL's `:drop`).
    /// `buildProgram: false` stops after the checks (the language server
    /// needs the diagnostics and the checked policy, never an engine).
    /// The files are parsed in order; the last is the entry.
    public static func compile(_ sources: SourceSet, keep: (Statement) -> Bool = { _ in true },
                               buildProgram: Bool = true) -> CompileResult {
        var statements: [Statement] = []
        var diagnostics: [Diagnostic] = []
        for (i, file) in sources.files.enumerated() {
            let (parsed, found) = Parser.parse(file, file: i)
            statements += parsed.filter(keep)
            diagnostics += found
        }
        return check(statements, diagnostics, sources: sources, entries: sources.files.isEmpty ? [] : [sources.files.count - 1],
                     buildProgram: buildProgram)
    }

    /// Checks parsed statements (with the diagnostics found so far) and
    /// compiles them into a program.
    static func check(_ statements: [Statement], _ found: [Diagnostic], sources: SourceSet, entries: [Int],
                      buildProgram: Bool) -> CompileResult {
        var diagnostics = found
        // Check even after syntax errors: names and types in the statements
        // that did parse are worth reporting too.
        let (policy, checked) = Checker.check(statements, sources: sources)
        diagnostics += checked
        diagnostics = allowed(diagnostics, in: sources)
        diagnostics.sort { ($0.span.file, $0.span.start) < ($1.span.file, $1.span.start) }
        let failed = diagnostics.contains { $0.severity == .error }
        diagnostics = capped(diagnostics)
        return CompileResult(sources: sources, diagnostics: diagnostics, program: failed || !buildProgram ? nil : Program(policy),
                             statements: statements, entries: entries, checked: policy)
    }

    /// Drops a warning whose line, or the line before it, says it is meant:
    /// `# rules: allow W0509` (several codes may follow, comma-separated).
    static func allowed(_ diagnostics: [Diagnostic], in sources: SourceSet) -> [Diagnostic] {
        diagnostics.filter { d in
            guard d.severity == .warning, d.span.file < sources.files.count else { return true }
            let file = sources.files[d.span.file]
            let line = file.line(of: d.span.start)
            for l in [line, line - 1] where l >= 1 {
                let text = file.lineText(l)
                guard let marker = text.firstRange(of: "# rules: allow") else { continue }
                let codes = text[marker.upperBound...].split(whereSeparator: { $0 == "," || $0 == " " })
                if codes.contains(where: { $0 == d.code.rawValue }) { return false }
            }
            return true
        }
    }

    /// Keeps the first `DiagnosticSink.maxErrors` errors (and the warnings
    /// among them) and says where it stopped, so garbage input cannot flood
    /// the screen.
    static func capped(_ diagnostics: [Diagnostic]) -> [Diagnostic] {
        var kept: [Diagnostic] = []
        var errors = 0
        for d in diagnostics {
            if d.severity == .error {
                if errors == DiagnosticSink.maxErrors {
                    kept.append(Diagnostic(.tooManyErrors, "too many errors; stopped after \(errors)", at: d.span,
                                           help: "fix these and check again"))
                    return kept
                }
                errors += 1
            }
            kept.append(d)
        }
        return kept
    }

    /// Loads files with `loader` (following `use`) and compiles them.
    public static func compile(paths: [String], loader: PolicyLoader,
                               buildProgram: Bool = true) -> Result<CompileResult, PolicyLoader.EntryError> {
        loader.load(paths).map {
            check($0.statements, $0.diagnostics, sources: $0.sources, entries: $0.entries, buildProgram: buildProgram)
        }
    }

    /// One policy from a string, named `name` in diagnostics.
    public static func compile(_ text: String, name: String = "policy.rules") -> CompileResult {
        compile(SourceSet([SourceFile(name: name, text: text)]))
    }
}
