import RulesCore
#if canImport(Glibc)
import Glibc
#endif

/// `rules COMMAND ...`: dispatches to one file per subcommand.
enum Main {
    static let version = "0.1.0"

    static let help = """
    rules — a small policy language and the engine that runs it

    usage: rules COMMAND [ARGS...]

    commands:
      run      apply an event stream to a policy and print each person's state
      check    check policy files and print diagnostics
      fmt      rewrite policy files in the canonical layout
      lsp      the language server for editors (stdin/stdout)
      test     run the policies' test blocks
      repl     try rules and events interactively
      explain  why one person's state is what it is
      diff     two policies over the same stream: who would change, and why
      serve    keep the engine running and answer over HTTP
      publish  split an event stream into Redis streams, one per partition
      graph    print the rule graph (Graphviz DOT or Mermaid)
      help     show help for a command: rules help run

    options:
      -h, --help     show this help
      --version      print the version

    exit status: 0 success, 1 policy or data error, 2 usage error.
    Colour is used only on a terminal and never when NO_COLOR is set.
    The language: docs/LANGUAGE.md.
    """

    static let commands: [String: (help: String, run: @Sendable ([String]) -> Int32)] = [
        "run": (RunCommand.help, RunCommand.run),
        "check": (CheckCommand.help, CheckCommand.run),
        "fmt": (FmtCommand.help, FmtCommand.run),
        "lsp": (LspCommand.help, LspCommand.run),
        "test": (TestCommand.help, TestCommand.run),
        "repl": (ReplCommand.help, ReplCommand.run),
        "graph": (GraphCommand.help, GraphCommand.run),
        "explain": (ExplainCommand.help, ExplainCommand.run),
        "diff": (DiffCommand.help, DiffCommand.run),
        "serve": (ServeCommand.help, ServeCommand.run),
        "publish": (PublishCommand.help, PublishCommand.run),
    ]

    static func usageError(_ message: String, command: String?) -> Int32 {
        let more = command.map { "rules \($0) --help" } ?? "rules --help"
        Terminal.writeErr("rules: \(message)\n(see `\(more)`)\n")
        return ExitCode.usage
    }

    static func main(_ args: [String]) -> Int32 {
        guard let first = args.first else {
            Terminal.writeErr(help + "\n")
            return ExitCode.usage
        }
        switch first {
        case "-h", "--help":
            Terminal.writeOut(help + "\n")
            return ExitCode.ok
        case "--version":
            Terminal.writeOut("rules \(version)\n")
            return ExitCode.ok
        case "help":
            guard args.count > 1 else { Terminal.writeOut(help + "\n"); return ExitCode.ok }
            guard let command = commands[args[1]] else { return unknownCommand(args[1]) }
            Terminal.writeOut(command.help + "\n")
            return ExitCode.ok
        default:
            guard let command = commands[first] else { return unknownCommand(first) }
            return command.run(Array(args.dropFirst()))
        }
    }

    static func unknownCommand(_ name: String) -> Int32 {
        let hint = Arguments.closest(name, Set(commands.keys)).map { " (did you mean `\($0)`?)" } ?? ""
        return usageError("unknown command `\(name)`\(hint)", command: nil)
    }
}

// Output goes to a pipe more often than not; a closed pipe should end the
// program quietly, as `head` expects.
signal(SIGPIPE, SIG_DFL)
exit(Main.main(Array(CommandLine.arguments.dropFirst())))
