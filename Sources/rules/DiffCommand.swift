import RulesCore
import RulesTooling

/// `rules diff --old OLD.rules... --new NEW.rules... --events FILE|- [--as-of TIME]`
enum DiffCommand {
    static let help = """
    usage: rules diff --old OLD.rules... --new NEW.rules... [--events FILE|-] [--as-of TIME]
                      [--format json|text] [--person-key NAME] [--retain DURATION] [--lateness DURATION]

    Runs both policies over the same stream, each exactly as `rules run`
    would, and prints, sorted by person, one line per person whose report
    line differs:
      {"citizen":"dave","old":{REPORT LINE},"new":{REPORT LINE}}
    (a person absent from one side has null there), then a summary on
    stderr: people changed; newly and no longer denied, granted, flagged,
    per name; scores up and down. The what-if to run before shipping a
    policy change.

    options:
      --old FILE...     the policy as it is (one or more files)
      --new FILE...     the policy as it would be
      --events FILE|-   the event stream (default: standard input)
      --as-of TIME      compare the states as of TIME (events after it are ignored)
      --format json|text
                        json (default): the lines above; text: for each
                        person what changes and which rules make the
                        difference, then the summary with a histogram of
                        score changes, all on stdout
      --person-key NAME the key that names the person (default: citizen)
      --retain DURATION, --lateness DURATION
                        corrections, as `rules run` takes them
      -h, --help        show this help

    exit status: 0 compared (also when people differ), 1 a policy error or
    unreadable input, 2 usage error.
    """

    static func run(_ args: [String]) -> Int32 {
        let spec = Arguments.Spec(options: ["--events", "--as-of", "--format", "--person-key", "--retain", "--lateness"],
                                  lists: ["--old", "--new"])
        let (arguments, code) = Arguments.forCommand("diff", args, spec: spec, help: help)
        guard let parsed = arguments else { return code }
        guard let oldFiles = parsed.lists["--old"], let newFiles = parsed.lists["--new"] else {
            return Main.usageError("name the policies to compare: --old FILE... --new FILE...", command: "diff")
        }
        guard parsed.positionals.isEmpty else {
            return Main.usageError("unexpected \(parsed.positionals[0]): policies follow --old and --new", command: "diff")
        }
        let format = parsed.values["--format"] ?? "json"
        guard ["json", "text"].contains(format) else { return Main.usageError("--format takes json or text", command: "diff") }
        let asOf: Int64?
        switch parsed.asOf(command: "diff") {
        case .success(let t): asOf = t
        case .failure(let e): return e.code
        }
        let corrections: Corrections?
        switch parsed.corrections(command: "diff") {
        case .success(let c): corrections = c
        case .failure(let e): return e.code
        }
        guard let old = PolicyLoading.program(oldFiles, policy: "the old policy", refusal: "nothing was compared"),
              let new = PolicyLoading.program(newFiles, policy: "the new policy", refusal: "nothing was compared") else {
            return ExitCode.failure
        }
        var personKey = PersonKey.citizen
        for p in [old, new] {
            switch parsed.personKey(command: "diff", program: p) {
            case .success(let key): personKey = key
            case .failure(let e): return e.code
            }
        }
        let path = parsed.values["--events"] ?? "-"
        let stream: [UInt8]
        switch Terminal.readFile(path) {
        case .success(let bytes): stream = bytes
        case .failure(let e):
            Terminal.writeErr("rules: cannot read events \(path): \(e)\n")
            return ExitCode.failure
        }
        let diff = PolicyDiff.run(old: old, new: new, stream: stream, personKey: personKey, asOf: asOf,
                                  corrections: corrections, rules: format == "text")
        if format == "text" {
            let body = diff.textLines() + (diff.changes.isEmpty ? [] : [""]) + diff.summaryLines(histogram: true)
            Terminal.writeOut(body.joined(separator: "\n") + "\n")
        } else {
            let lines = diff.jsonLines(personKey: personKey)
            if !lines.isEmpty { Terminal.writeOut(lines.joined(separator: "\n") + "\n") }
            Terminal.writeErr(diff.summaryLines(histogram: false).map { "rules diff: \($0)\n" }.joined())
        }
        for (side, s) in [("old", diff.oldSummary), ("new", diff.newSummary)] where s.rejected > 0 || s.ignoredAfterAsOf > 0 {
            Terminal.writeErr("rules diff: under the \(side) policy \(s.read) lines read: \(s.applied) applied, \(s.rejected) rejected"
                              + (s.ignoredAfterAsOf > 0 ? ", \(s.ignoredAfterAsOf) ignored (after --as-of)" : "") + "\n")
        }
        return ExitCode.ok
    }
}
