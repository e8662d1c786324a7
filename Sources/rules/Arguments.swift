import RulesCore

/// A small command-line parser: `--name value`, `--name=value`, boolean
/// `--flag`, positionals, `--` to end options, `-` as a positional (stdin).
struct Arguments {
    struct Spec {
        var options: Set<String> = []   // take a value
        var flags: Set<String> = []     // take none
        /// Take one or more values: the arguments after them up to the
        /// next option (`--old a.rules b.rules --new c.rules`); repeating
        /// the option adds more.
        var lists: Set<String> = []
    }

    var positionals: [String] = []
    var values: [String: String] = [:]
    var flags: Set<String> = []
    var lists: [String: [String]] = [:]

    struct UsageError: Error {
        var message: String
    }

    init(_ args: [String], spec: Spec) throws {
        var i = 0
        var optionsEnded = false
        while i < args.count {
            let arg = args[i]
            i += 1
            if optionsEnded || !arg.hasPrefix("-") || arg == "-" {
                positionals.append(arg)
                continue
            }
            if arg == "--" { optionsEnded = true; continue }
            var name = arg
            var inline: String? = nil
            if let eq = arg.firstIndex(of: "=") {
                name = String(arg[..<eq])
                inline = String(arg[arg.index(after: eq)...])
            }
            if name == "-h" { name = "--help" }
            if spec.flags.contains(name) || name == "--help" {
                if inline != nil { throw UsageError(message: "\(name) takes no value") }
                flags.insert(name)
            } else if spec.lists.contains(name) {
                var taken: [String] = inline.map { [$0] } ?? []
                while inline == nil && i < args.count && !(args[i].hasPrefix("-") && args[i] != "-") {
                    taken.append(args[i])
                    i += 1
                }
                guard !taken.isEmpty else { throw UsageError(message: "\(name) needs at least one value") }
                lists[name, default: []] += taken
            } else if spec.options.contains(name) {
                if let inline {
                    values[name] = inline
                } else {
                    guard i < args.count else { throw UsageError(message: "\(name) needs a value") }
                    values[name] = args[i]
                    i += 1
                }
            } else {
                let known = spec.options.union(spec.flags).union(spec.lists).union(["--help"])
                let hint = Self.closest(name, known).map { " (did you mean \($0)?)" } ?? ""
                throw UsageError(message: "unknown option \(name)\(hint)")
            }
        }
    }

    /// Parses a subcommand's arguments. Prints the help (for `--help`) or
    /// the usage error itself; then the arguments are nil and the exit code
    /// is the one to return.
    static func forCommand(_ command: String, _ args: [String], spec: Spec, help: String) -> (Arguments?, Int32) {
        do {
            let parsed = try Arguments(args, spec: spec)
            if parsed.flags.contains("--help") {
                Terminal.writeOut(help + "\n")
                return (nil, ExitCode.ok)
            }
            return (parsed, ExitCode.ok)
        } catch let e as UsageError {
            return (nil, Main.usageError(e.message, command: command))
        } catch {
            return (nil, ExitCode.usage)
        }
    }

    /// `--as-of TIME`: nil when absent; a usage error when malformed.
    func asOf(command: String) -> Result<Int64?, UsageExit> {
        guard let text = values["--as-of"] else { return .success(nil) }
        guard let t = Timestamp.parse(text) else {
            return .failure(UsageExit(code: Main.usageError("--as-of takes a date or date-time like 2026-06-01 or 2026-06-01T12:00:00Z, not \(text)", command: command)))
        }
        return .success(t)
    }

    /// `--retain DURATION` and `--lateness DURATION` (docs/LANGUAGE.md,
    /// "Corrections"): nil when neither is given. Lateness alone keeps as
    /// much history as it reaches back; lateness beyond the kept history
    /// is a usage error.
    func corrections(command: String) -> Result<Corrections?, UsageExit> {
        func duration(_ option: String) -> Result<Int64?, UsageExit> {
            guard let text = values[option] else { return .success(nil) }
            guard let d = DurationText.parse(text) else {
                return .failure(UsageExit(code: Main.usageError("\(option) takes a duration like \"365 days\" or \"12 hours\" (at most 1000 years), not \(text)", command: command)))
            }
            return .success(d)
        }
        let retain: Int64?, lateness: Int64?
        switch duration("--retain") { case .success(let d): retain = d; case .failure(let e): return .failure(e) }
        switch duration("--lateness") { case .success(let d): lateness = d; case .failure(let e): return .failure(e) }
        if retain == nil && lateness == nil { return .success(nil) }
        if let retain, let lateness, lateness > retain {
            return .failure(UsageExit(code: Main.usageError("--lateness (\(DurationText.describe(lateness))) reaches further back than the history --retain keeps (\(DurationText.describe(retain)))", command: command)))
        }
        return .success(Corrections(retain: retain ?? lateness!, lateness: lateness ?? 0))
    }

    /// `--person-key NAME` (default `citizen`): a usage error for a name
    /// that cannot be one, or that the policy reads as an event field.
    func personKey(command: String, program: Program) -> Result<PersonKey, UsageExit> {
        guard let name = values["--person-key"] else { return .success(.citizen) }
        switch PersonKey.named(name, for: program) {
        case .success(let key): return .success(key)
        case .failure(let e): return .failure(UsageExit(code: Main.usageError("--person-key: \(e)", command: command)))
        }
    }

    struct UsageExit: Error { var code: Int32 }

    static func closest(_ name: String, _ known: Set<String>) -> String? {
        known.min { distance(name, $0) < distance(name, $1) }.flatMap { distance(name, $0) <= 3 ? $0 : nil }
    }

    private static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(1, a.count) where !a.isEmpty {
            var prev = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let old = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
                prev = old
            }
        }
        return row[b.count]
    }
}
