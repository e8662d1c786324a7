import RulesCore
import RulesTooling
#if canImport(Glibc)
import Glibc
#endif

/// `rules explain POLICY... --events FILE --person ID [--as-of TIME]`
enum ExplainCommand {
    static let help = """
    usage: rules explain POLICY.rules... --events FILE|- --person ID [--as-of TIME] [--why-not NAME]
                         [--person-key NAME] [--retain DURATION] [--lateness DURATION]

    Runs the stream like `rules run` and gives a readable account of one
    person: their score; for every flag, denial and grant, the rule that
    holds it, the events behind it, since when and until when; then each of
    their events with the rules it fired and what they changed.

    options:
      --events FILE|-   the event stream (default: standard input)
      --person ID       whose state to explain
      --as-of TIME      explain the state as of TIME (events after it are ignored)
      --format text|json  the readable account (default), or the same as one
                        JSON object
      --html OUT.html   also write one self-contained page: the score over
                        time, each flag, denial and grant as a bar on the same
                        axis, and the account
      --why-not NAME    explain why a flag or privilege is NOT held: every rule
                        that could set it, and the first part of its condition
                        that fails (with values), or what ended or lifted it
      --person-key NAME the key that names the person in each line
                        (default: citizen)
      --retain DURATION, --lateness DURATION
                        keep history for retractions, apply late events in
                        time order, as `rules run` does; the account shows
                        each retraction and late event and what it changed
      -h, --help        show this help

    exit status: 0 explained, 1 a policy error, unreadable input, no
    applied event for that person, or a --why-not NAME the policy has no
    flag or privilege of, 2 usage error.
    """

    static func run(_ args: [String]) -> Int32 {
        let (arguments, code) = Arguments.forCommand("explain", args, spec: .init(options: ["--events", "--person", "--as-of", "--why-not", "--format", "--html", "--person-key",
                                                                                                            "--retain", "--lateness"]), help: help)
        guard let parsed = arguments else { return code }
        guard !parsed.positionals.isEmpty else { return Main.usageError("name at least one policy file", command: "explain") }
        guard ["text", "json"].contains(parsed.values["--format"] ?? "text") else {
            return Main.usageError("--format takes text or json", command: "explain")
        }
        guard let person = parsed.values["--person"] else { return Main.usageError("--person ID is required", command: "explain") }
        let asOf: Int64?
        switch parsed.asOf(command: "explain") {
        case .success(let t): asOf = t
        case .failure(let e): return e.code
        }
        let corrections: Corrections?
        switch parsed.corrections(command: "explain") {
        case .success(let c): corrections = c
        case .failure(let e): return e.code
        }
        guard case .compiled(let result) = PolicyLoading.compile(parsed.positionals) else { return ExitCode.failure }
        PolicyLoading.printDiagnostics(result.errors, sources: result.sources)
        guard let program = result.program else { return ExitCode.failure }

        let personKey: PersonKey
        switch parsed.personKey(command: "explain", program: program) {
        case .success(let key): personKey = key
        case .failure(let e): return e.code
        }

        guard let (fd, streamName) = Terminal.openEvents(parsed.values["--events"] ?? "-") else { return ExitCode.failure }
        defer { if fd != 0 { close(fd) } }
        let engine = Engine(program: program, personKey: personKey)
        if let corrections { engine.enableCorrections(corrections) }
        var trail: [TraceRecord] = []
        // The person's trail: since when `while` rules hold, what each
        // event changed, and the page.
        let keepTrail = parsed.values["--html"] != nil
        engine.enableTrace(only: person, records: { if keepTrail { trail.append($0) } })
        let watch = PersonWatch(person: person, engine: engine, origin: { "\(streamName):\($0)" })
        let summary = EventStream.run(engine, fd: fd, asOf: asOf, watch: watch) { _, _ in }
        if let error = summary.readError {
            Terminal.writeErr("rules: error reading \(streamName): \(error)\n")
            return ExitCode.failure
        }
        let json = parsed.values["--format"] == "json"
        var unknownName = false
        let explain = { (time: Int64) -> [String]? in
            if let name = parsed.values["--why-not"] {
                guard let w = Explanation.answerWhyNot(name, of: person, engine: engine, timeline: watch.timeline, at: time) else { return nil }
                unknownName = w.unknown != nil
                return json ? [w.json] : w.lines
            }
            guard let e = Explanation.explain(person, engine: engine, timeline: watch.timeline, at: time) else { return nil }
            return json ? [e.json] : e.lines
        }
        guard let time = asOf ?? engine.clock, let lines = explain(time) else {
            Terminal.writeErr(engine.wasRetracted(person)
                ? "rules: every event of `\(person)` in \(streamName) was retracted; they are not in the report\n"
                : "rules: no applied event for `\(person)` in \(streamName)\n")
            return ExitCode.failure
        }
        if unknownName && !json {
            // A name the policy does not have is an error, not an answer.
            Terminal.writeErr("rules: " + lines.joined(separator: "\n") + "\n")
            return ExitCode.failure
        }
        Terminal.writeOut(lines.joined(separator: "\n") + "\n")
        if unknownName { return ExitCode.failure }
        if let path = parsed.values["--html"], let e = Explanation.explain(person, engine: engine, timeline: watch.timeline, at: time) {
            engine.finishTrace(asOf: time)
            if let error = Terminal.writeFile(path, Array(ExplanationPage.html(e, trace: trail).utf8)) {
                Terminal.writeErr("rules: cannot write \(path): \(error)\n")
                return ExitCode.failure
            }
        }
        if summary.rejected > 0 {
            let lines = summary.rejected == 1 ? "1 line of the stream was" : "\(summary.rejected) lines of the stream were"
            Terminal.writeErr("rules: \(lines) rejected; `rules run --rejects FILE` lists them\n")
        }
        return ExitCode.ok
    }
}
