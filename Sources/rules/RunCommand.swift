import RulesCore
#if canImport(Glibc)
import Glibc
#endif

/// `rules run POLICY.rules... [--events FILE|-] [--as-of TIME] [--rejects FILE]`
enum RunCommand {
    static let help = """
    usage: rules run POLICY.rules... [--events FILE|-] [--as-of TIME] [--rejects FILE]
                     [--max-rejects N] [--state FILE [--checkpoint-every N]] [--resume FILE]
                     [--trace FILE] [--jobs N] [--person-key NAME]
                     [--retain DURATION] [--lateness DURATION]

    Applies a stream of events (NDJSON, one object per line) to the policy
    and prints each person's final state, one compact JSON line per person,
    sorted by id:
      {"citizen":"alice","score":985,"flags":["debtor"],"denied":["travel"],"granted":[]}

    options:
      --events FILE|-   the event stream (default: standard input)
      --as-of TIME      report the state as of TIME (2026-06-01 or
                        2026-06-01T12:00:00Z); events after it are ignored
      --rejects FILE    write every rejected line, with its line number and
                        reason, to FILE as NDJSON
      --max-rejects N   stop when more than N lines have been rejected (exit 3,
                        no report): a run that is going wrong
      --state FILE      save the engine's whole state to FILE at the end
                        (written crash-safely; docs/RELIABILITY.md)
      --checkpoint-every N
                        also save it every N lines (with --state)
      --resume FILE     start from a saved state; give it the lines after the
                        ones it holds (it says how many)
      --jobs N          split people over N threads (by a stable hash of their
                        id); the same output as one thread; not with --trace
      --trace FILE      write the audit trail: one NDJSON record per state
                        change, with the rule and event behind it
                        (docs/TRACE.md)
      --person-key NAME the key that names the person in each line and in
                        the report (default: citizen), for streams that say
                        "user", "account" or "driver"
      --retain DURATION keep each person's events for DURATION after their
                        time ("365 days"), so that a retraction
                        ({"type":"retract","target":ID,...}) can take one
                        back; without it retractions are rejected
      --lateness DURATION
                        apply an event up to DURATION earlier than the
                        person's previous one in time order, as if it had
                        arrived in time (at most --retain; alone, it keeps
                        that much history)
      -h, --help        show this help

    A summary (read / applied / rejected) goes to stderr; when stderr is a
    terminal it also counts the lines read, every million. Rejected lines
    do not stop the run.

    exit status: 0 the run completed (even with rejected lines), 1 a policy
    error, unreadable input or a state that cannot be saved or loaded,
    2 usage error, 3 stopped by --max-rejects.
    """

    static func run(_ args: [String]) -> Int32 {
        let (arguments, code) = Arguments.forCommand("run", args, spec: .init(options: ["--events", "--as-of", "--rejects", "--trace", "--jobs", "--max-rejects",
                                                                                               "--state", "--checkpoint-every", "--resume", "--person-key",
                                                                                               "--retain", "--lateness"]), help: help)
        guard let parsed = arguments else { return code }
        guard !parsed.positionals.isEmpty else { return Main.usageError("name at least one policy file", command: "run") }
        let asOf: Int64?
        switch parsed.asOf(command: "run") {
        case .success(let t): asOf = t
        case .failure(let e): return e.code
        }
        let corrections: Corrections?
        switch parsed.corrections(command: "run") {
        case .success(let c): corrections = c
        case .failure(let e): return e.code
        }
        let jobsText = parsed.values["--jobs"] ?? "1"
        guard let jobs = Int(jobsText), jobs >= 1, jobs <= 64 else {
            return Main.usageError("--jobs takes a number of threads from 1 to 64, not \(jobsText)", command: "run")
        }
        if jobs > 1 && parsed.values["--trace"] != nil {
            return Main.usageError("--trace keeps one order of all changes; use it with --jobs 1", command: "run")
        }
        var maxRejects: Int? = nil
        if let text = parsed.values["--max-rejects"] {
            guard let n = Int(text), n >= 0 else {
                return Main.usageError("--max-rejects takes a number of lines (0 or more), not \(text)", command: "run")
            }
            maxRejects = n
        }
        let statePath = parsed.values["--state"], resumePath = parsed.values["--resume"]
        var checkpointEvery = 0
        if let text = parsed.values["--checkpoint-every"] {
            guard let n = Int(text), n >= 1 else {
                return Main.usageError("--checkpoint-every takes a number of lines (1 or more), not \(text)", command: "run")
            }
            guard statePath != nil else { return Main.usageError("--checkpoint-every needs --state FILE to write to", command: "run") }
            guard jobs == 1 else { return Main.usageError("--checkpoint-every saves between two lines of one thread; use it with --jobs 1", command: "run") }
            checkpointEvery = n
        }
        if asOf != nil && (statePath != nil || resumePath != nil) {
            return Main.usageError("--as-of reports a past state; a saved state holds every line read, so they do not go together", command: "run")
        }
        if resumePath != nil && parsed.values["--trace"] != nil {
            return Main.usageError("--trace records a whole run from its first event; it cannot start from --resume", command: "run")
        }

        guard let program = PolicyLoading.program(parsed.positionals, refusal: "nothing was run") else { return ExitCode.failure }

        let personKey: PersonKey
        switch parsed.personKey(command: "run", program: program) {
        case .success(let key): personKey = key
        case .failure(let e): return e.code
        }

        guard let (fd, streamName) = Terminal.openEvents(parsed.values["--events"] ?? "-") else { return ExitCode.failure }
        var rejects: RejectsFile? = nil  // closed below, before the report
        if let path = parsed.values["--rejects"] {
            guard let file = RejectsFile(path: path) else {
                Terminal.writeErr("rules: cannot write rejects file \(path): \(String(cString: strerror(errno)))\n")
                return ExitCode.failure
            }
            rejects = file
        }

        var resumeBytes: [UInt8]? = nil
        if let path = resumePath {
            switch Terminal.readFile(path) {
            case .success(let bytes): resumeBytes = bytes
            case .failure(let e):
                Terminal.writeErr("rules: cannot read the state \(path): \(e)\n")
                return ExitCode.failure
            }
        }
        /// Lines of the whole stream in the state before this run.
        var linesBefore = 0
        func resumed(_ info: Checkpoint.Info) {
            linesBefore = info.lines
            Terminal.writeErr("rules: resumed from \(resumePath!): \(info.lines) lines already applied, \(info.people) people"
                              + (info.policyChanged ? ", saved under another policy: what people have carries over by name\n" : "\n"))
            for note in info.notes { Terminal.writeErr("rules: \(note)\n") }
        }
        func saveState(_ engines: [Engine], lines: Int) -> String? {
            guard let statePath else { return nil }
            let bytes = Checkpoint.encode(engines, lines: linesBefore + lines)
            return Checkpoint.writeFile(bytes, to: statePath).map { "cannot save the state: \($0)" }
        }

        var shown = 0
        let showReject = { (rejection: Rejection) in
            if shown < 10 { Terminal.writeErr("\(streamName):\(rejection.line): rejected: \(rejection.reason)\n") }
            shown += 1
        }
        if jobs > 1 {
            if let resumeBytes {
                switch Checkpoint.inspect(resumeBytes, program: program) {
                case .success(let info): resumed(info)
                case .failure(let f):
                    Terminal.writeErr("rules: cannot resume from \(resumePath!): \(f)\n")
                    return ExitCode.failure
                }
            }
            // Progress on long runs, only where a person is watching stderr;
            // rejections are shown after the run, once the line is cleared.
            let showProgress = Terminal.isTerminal(2)
            let tell: @Sendable (Int) -> Void = { lines in Terminal.writeErr("\rrules: \(lines) lines read…") }
            let progress = showProgress ? tell : nil
            let outcome = ParallelStream.run(program: program, personKey: personKey, fd: fd, jobs: jobs, asOf: asOf,
                                             corrections: corrections, resume: resumeBytes,
                                             maxRejects: maxRejects, onProgress: progress) { rejection, line in
                line.withUnsafeBufferPointer { rejects?.write(rejection, $0) }
                if showProgress && shown < 10 { Terminal.writeErr("\r\u{1B}[K") }
                showReject(rejection)
            }
            if showProgress { Terminal.writeErr("\r\u{1B}[K") }
            if fd != 0 { close(fd) }
            guard case .success(let run) = outcome else {
                if case .failure(let f) = outcome { Terminal.writeErr("rules: cannot resume from \(resumePath ?? ""): \(f)\n") }
                return ExitCode.failure
            }
            keepUntilExit(run.engines)
            return finish(run.summary, rejects: &rejects, rejectsPath: parsed.values["--rejects"], shown: shown,
                          streamName: streamName, notes: { ParallelStream.evaluationNotes(run) }, maxRejects: maxRejects,
                          saveState: { saveState(run.engines, lines: run.summary.lines) }) { out in
                ParallelStream.writeReport(run, asOf: asOf, to: out)
            }
        }

        let engine = Engine(program: program, personKey: personKey)
        if let corrections { engine.enableCorrections(corrections) }
        keepUntilExit([engine])
        if let resumeBytes {
            switch Checkpoint.restore(resumeBytes, into: [engine]) {
            case .success(let info): resumed(info)
            case .failure(let f):
                Terminal.writeErr("rules: cannot resume from \(resumePath!): \(f)\n")
                return ExitCode.failure
            }
        }
        var traceFile: OutputFile? = nil
        if let path = parsed.values["--trace"] {
            guard let file = OutputFile(path: path) else {
                Terminal.writeErr("rules: cannot write trace file \(path): \(String(cString: strerror(errno)))\n")
                return ExitCode.failure
            }
            traceFile = file
            engine.enableTrace(write: { bytes in file.write(bytes) })
        }
        // Progress on long runs, only where a person is watching stderr.
        let showProgress = Terminal.isTerminal(2)
        let progress: ((Int) -> Void)? = showProgress ? { Terminal.writeErr("\rrules: \($0) lines read…") } : nil
        let summary = EventStream.run(engine, fd: fd, asOf: asOf, onProgress: progress, maxRejects: maxRejects,
                                      checkpointEvery: checkpointEvery,
                                      onCheckpoint: { saveState([engine], lines: $0) }) { rejection, line in
            rejects?.write(rejection, line)
            if showProgress && shown < 10 { Terminal.writeErr("\r\u{1B}[K") }
            showReject(rejection)
        }
        if fd != 0 { close(fd) }
        if showProgress && summary.read >= 1 << 20 { Terminal.writeErr("\r\u{1B}[K") }
        // The trail ends after the state is saved: it records the timed
        // rules that fire by the report's clock, which a resumed run must
        // not find fired already (a person's later line may come before).
        let finishTrace = { () -> String? in
            guard let traceFile else { return nil }
            engine.finishTrace(asOf: asOf)
            return traceFile.close() ? nil : "cannot write the trace file: \(String(cString: strerror(errno)))"
        }
        return finish(summary, rejects: &rejects, rejectsPath: parsed.values["--rejects"], shown: shown,
                      streamName: streamName, notes: { engine.evaluationNotes() }, maxRejects: maxRejects,
                      saveState: { saveState([engine], lines: summary.lines) }, afterSave: finishTrace) { out in
            engine.writeReport(asOf: asOf, to: out)
        }
    }

    /// The process ends right after the report: freeing every person's state
    /// first would only cost time (tens of milliseconds at 100k people), so
    /// the engines are deliberately never released; the OS takes it all back.
    private static func keepUntilExit(_ engines: [Engine]) {
        for engine in engines { _ = Unmanaged.passRetained(engine) }
    }

    /// Closes the rejects file, writes the report and the summary; the exit code.
    /// A run stopped by `--max-rejects` or a failed checkpoint prints no
    /// report and saves no state: what it has is not the stream's answer.
    private static func finish(_ summary: RunSummary, rejects: inout RejectsFile?, rejectsPath: String?, shown: Int,
                               streamName: String, notes: () -> [String], maxRejects: Int?,
                               saveState: () -> String?, afterSave: () -> String? = { nil },
                               // Read after the report: what only the report
                               // evaluates (`while` rules and outputs at the
                               // final clock) can fail too.
                               report: ((UnsafeRawBufferPointer) -> Void) -> Void) -> Int32 {
        if rejects != nil, !rejects!.close() {
            Terminal.writeErr("rules: cannot write the rejects file: \(String(cString: strerror(errno)))\n")
            return ExitCode.failure
        }
        if let error = summary.checkpointError {
            reportSummary(summary, notes: notes(), shownRejects: min(shown, 10), rejectsPath: rejectsPath)
            Terminal.writeErr("rules: \(error); stopped after \(summary.lines) lines\n")
            return ExitCode.failure
        }
        if let line = summary.stoppedAtLine, let maxRejects {
            reportSummary(summary, notes: notes(), shownRejects: min(shown, 10), rejectsPath: rejectsPath)
            Terminal.writeErr("rules: stopped at \(streamName):\(line): more than \(maxRejects) rejected lines (--max-rejects \(maxRejects)); no report\n")
            return ExitCode.tooManyRejects
        }
        if summary.readError == nil, let error = saveState() {
            Terminal.writeErr("rules: \(error)\n")
            return ExitCode.failure
        }
        if let error = afterSave() {
            Terminal.writeErr("rules: \(error)\n")
            return ExitCode.failure
        }
        var written = true
        report { if written { written = Terminal.writeAll(fd: 1, $0) } }
        if !written {
            Terminal.writeErr("rules: cannot write the report: \(String(cString: strerror(errno)))\n")
            return ExitCode.failure
        }
        reportSummary(summary, notes: notes(), shownRejects: min(shown, 10), rejectsPath: rejectsPath)
        if let error = summary.readError {
            Terminal.writeErr("rules: error reading \(streamName): \(error)\n")
            return ExitCode.failure
        }
        return ExitCode.ok
    }

    private static func reportSummary(_ s: RunSummary, notes: [String], shownRejects: Int, rejectsPath: String?) {
        if s.rejected > shownRejects {
            let hint = rejectsPath == nil ? "; write them all with --rejects FILE" : " (all are in \(rejectsPath!))"
            Terminal.writeErr("rules: … and \(s.rejected - shownRejects) more rejected lines\(hint)\n")
        }
        for note in notes { Terminal.writeErr("rules: note: \(note)\n") }
        var line = "rules: \(s.read) events read: \(s.applied) applied, \(s.rejected) rejected"
        if s.ignoredAfterAsOf > 0 { line += ", \(s.ignoredAfterAsOf) ignored (after --as-of)" }
        if s.blank > 0 { line += "; \(s.blank) blank lines skipped" }
        line += s.unknownTypesNote
        Terminal.writeErr(line + "\n")
    }
}

/// `--rejects FILE`: one JSON object per rejected line, so the lines can be
/// fixed and replayed: {"line":12,"reason":"…","input":"…"}.
struct RejectsFile {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var failed = false

    init?(path: String) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { return nil }
    }

    mutating func write(_ r: Rejection, _ line: UnsafeBufferPointer<UInt8>) {
        buffer += Array("{\"line\":\(r.line),\"reason\":\(JSONText.quoted(r.reason)),\"input\":".utf8)
        buffer += JSONText.quotedBytes(line)
        buffer += Array("}\n".utf8)
        if buffer.count > 1 << 16 { flush() }
    }

    private mutating func flush() {
        if !failed { failed = !buffer.withUnsafeBytes { Terminal.writeAll(fd: fd, $0) } }
        buffer.removeAll(keepingCapacity: true)
    }

    /// False when any write failed: the rejected lines are not all saved.
    mutating func close() -> Bool {
        flush()
        return Glibc.close(fd) == 0 && !failed
    }
}

/// A file written in order by a producer that cannot fail mid-way (the
/// trace): errors are remembered and reported at `close`.
final class OutputFile {
    private let fd: Int32
    private var failed = false

    init?(path: String) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { return nil }
    }

    func write(_ bytes: [UInt8]) {
        if !failed { failed = !bytes.withUnsafeBytes { Terminal.writeAll(fd: fd, $0) } }
    }

    func close() -> Bool {
        Glibc.close(fd) == 0 && !failed
    }
}
