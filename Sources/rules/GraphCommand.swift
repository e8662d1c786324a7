import RulesCore
import RulesTooling

/// `rules graph POLICY... [--format dot|mermaid]`
enum GraphCommand {
    static let help = """
    usage: rules graph POLICY.rules... [--format dot|mermaid]

    Prints the compiled rule graph: events → event rules → score, flags and
    privileges → state rules → flags and privileges. Rules are labelled
    FILE:LINE with their source; dashed edges are reads; a cycle among state
    rules (which fails `rules check`) is drawn in red.

      rules graph rules/citizen.rules | dot -Tsvg > citizen.svg

    options:
      --format dot|mermaid   Graphviz DOT (default) or a Mermaid flowchart
      -h, --help             show this help

    exit status: 0 drawn, 1 the policy has errors (a graph is still drawn
    when the only error is a cycle), 2 usage error.
    """

    static func run(_ args: [String]) -> Int32 {
        let (arguments, code) = Arguments.forCommand("graph", args, spec: .init(options: ["--format"]), help: help)
        guard let parsed = arguments else { return code }
        guard let format = GraphExport.Format(rawValue: parsed.values["--format"] ?? "dot") else {
            return Main.usageError("--format takes dot or mermaid", command: "graph")
        }
        guard !parsed.positionals.isEmpty else { return Main.usageError("name at least one policy file", command: "graph") }
        guard case .compiled(let result) = PolicyLoading.compile(parsed.positionals) else { return ExitCode.failure }
        let errors = result.errors
        PolicyLoading.printDiagnostics(errors, sources: result.sources)
        let onlyCycle = errors.allSatisfy { $0.code == .stateRuleCycle }
        if onlyCycle, let text = GraphExport.render(result, format: format) { Terminal.writeOut(text) }
        return errors.isEmpty ? ExitCode.ok : ExitCode.failure
    }
}
