import RulesCore

/// `rules check POLICY.rules...` — report every error and warning.
enum CheckCommand {
    static let help = """
    usage: rules check POLICY.rules... [--format human|json] [--deny-warnings]

    Checks policy files without running them: syntax, names, types, the
    state-rule graph. Diagnostics go to stderr as
    FILE:LINE:COL: error: MESSAGE [CODE], with the source line and a caret.

    options:
      --format human|json  human (default), or one JSON object per diagnostic
      --deny-warnings      fail (exit 1) on warnings too
      -h, --help           show this help

    A warning that is meant can be silenced where it stands: end its line,
    or the line before it, with a comment `# rules: allow W0509`.

    exit status: 0 no errors (warnings allowed unless --deny-warnings), 1
    errors (or warnings with --deny-warnings) or unreadable files, 2 usage
    error.
    """

    static func run(_ args: [String]) -> Int32 {
        let (arguments, code) = Arguments.forCommand("check", args, spec: .init(options: ["--format"], flags: ["--deny-warnings"]), help: help)
        guard let parsed = arguments else { return code }
        let format = parsed.values["--format"] ?? "human"
        guard format == "human" || format == "json" else {
            return Main.usageError("--format takes human or json, not \(format)", command: "check")
        }
        guard !parsed.positionals.isEmpty else { return Main.usageError("name at least one policy file", command: "check") }
        guard case .compiled(let result) = PolicyLoading.compile(parsed.positionals) else { return ExitCode.failure }
        PolicyLoading.printDiagnostics(result, json: format == "json")
        if format == "human" && !result.diagnostics.isEmpty {
            Terminal.writeErr("rules: \(PolicyLoading.summary(result))\n")
        }
        if result.program == nil { return ExitCode.failure }
        if parsed.flags.contains("--deny-warnings") && !result.diagnostics.isEmpty {
            if format == "human" { Terminal.writeErr("rules: warnings fail the check (--deny-warnings)\n") }
            return ExitCode.failure
        }
        return ExitCode.ok
    }
}
