import RulesCore
import RulesTooling
#if canImport(Glibc)
import Glibc
#endif

/// `rules fmt [--check] [FILES...]` — the canonical layout (docs/LANGUAGE.md,
/// "Formatting").
enum FmtCommand {
    static let help = """
    usage: rules fmt [--check] [FILE.rules...]

    Rewrites policy files in the one canonical layout: one statement per
    line, `→` for arrows, one space around operators, test blocks indented,
    comments kept where they are. Formatting never changes what a policy
    means. With no file, reads standard input and writes standard output.

    options:
      --check      change nothing; list the files that are not formatted
                   and exit 1 if there are any
      -h, --help   show this help

    A file with syntax errors is left as it is; its errors are shown.

    exit status: 0 done (or, with --check, every file formatted), 1 a file
    is not formatted (--check), has syntax errors or cannot be read or
    written, 2 usage error.
    """

    static func run(_ args: [String]) -> Int32 {
        let (arguments, code) = Arguments.forCommand("fmt", args, spec: .init(flags: ["--check"]), help: help)
        guard let parsed = arguments else { return code }
        let check = parsed.flags.contains("--check")
        if parsed.positionals.isEmpty { return formatStandardInput(check: check) }
        var status = ExitCode.ok
        for path in parsed.positionals {
            guard case .success(let bytes) = Terminal.readFile(path) else {
                Terminal.writeErr("rules: cannot read \(path)\n")
                status = ExitCode.failure
                continue
            }
            guard let formatted = format(SourceFile(name: path, bytes: bytes)) else {
                status = ExitCode.failure
                continue
            }
            if formatted == bytes { continue }
            if check {
                Terminal.writeOut(path + "\n")
                status = ExitCode.failure
            } else if let error = Checkpoint.writeFile(formatted, to: path) {
                // Written next to it and renamed over it: an interrupted
                // `fmt` never leaves a half-written policy.
                Terminal.writeErr("rules: \(error)\n")
                status = ExitCode.failure
            }
        }
        return status
    }

    private static func formatStandardInput(check: Bool) -> Int32 {
        guard case .success(let bytes) = Terminal.readFile("-") else {
            Terminal.writeErr("rules: cannot read standard input\n")
            return ExitCode.failure
        }
        guard let formatted = format(SourceFile(name: "<stdin>", bytes: bytes)) else { return ExitCode.failure }
        if check {
            if formatted == bytes { return ExitCode.ok }
            Terminal.writeOut("<stdin>\n")
            return ExitCode.failure
        }
        Terminal.writeOut(String(decoding: formatted, as: UTF8.self))
        return ExitCode.ok
    }

    /// The file formatted, or nil after printing its syntax errors.
    private static func format(_ source: SourceFile) -> [UInt8]? {
        switch Formatter.format(source) {
        case .formatted(let text): return Array(text.utf8)
        case .syntaxErrors(let errors):
            Terminal.writeErr(DiagnosticRenderer(sources: SourceSet([source]), color: Terminal.colorOnStderr).render(errors))
            Terminal.writeErr("rules: \(source.name) has syntax errors; not formatted\n")
            return nil
        }
    }
}
