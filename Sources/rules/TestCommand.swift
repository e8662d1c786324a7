import RulesCore
import RulesTooling
#if canImport(Glibc)
import Glibc
#endif

/// `rules test [PATHS...] [--coverage]` — run the `test` blocks.
enum TestCommand {
    static let help = """
    usage: rules test [PATHS...] [--coverage]

    Runs every `test "name" { ... }` block in the .rules files under PATHS
    (files or folders, searched recursively; default: the current folder).
    Each test runs on a fresh engine with the rules of its file and of the
    files it `use`s. One line per test; a failure shows what was expected,
    what was found, and what each event of that person fired. The last line
    is `N passed, M failed`.

    options:
      --coverage   list the rules that no test made fire (or, for `while`
                   rules, hold), and the share of rules covered
      -h, --help   show this help

    exit status: 0 all tests passed, 1 a test failed, a policy has errors or
    no test was found, 2 usage error.
    """

    static func run(_ args: [String]) -> Int32 {
        let (arguments, code) = Arguments.forCommand("test", args, spec: .init(flags: ["--coverage"]), help: help)
        guard let parsed = arguments else { return code }
        let roots = parsed.positionals.isEmpty ? ["."] : parsed.positionals
        var files: [String] = []
        for root in roots {
            guard let found = Discovery.ruleFiles(under: root) else {
                Terminal.writeErr("rules: cannot read \(root): \(String(cString: strerror(errno)))\n")
                return ExitCode.failure
            }
            files += found
        }

        let color = Terminal.colorOnStdout
        var passed = 0, failed = 0
        var sites: [String: RuleSite] = [:]     // by real path and offset
        var covered: Set<String> = []
        // A file that cannot be read or compiled is a failure in the count
        // too, not only in the exit status: `3 passed, 0 failed` with exit 1
        // would contradict itself.
        func fileFailed(_ file: String, _ why: String) {
            Terminal.writeOut("\(paint("FAIL", "1;31", color))  \(file)  \(why)\n")
            failed += 1
        }
        for file in files {
            guard case .compiled(let result) = PolicyLoading.compile([file]) else {
                fileFailed(file, "cannot be read")
                continue
            }
            if !result.errors.isEmpty {
                PolicyLoading.printDiagnostics(result.errors, sources: result.sources)
            }
            let run = PolicyTests.run(result, testsIn: result.entries[0])
            if !result.errors.isEmpty && run.outcomes.isEmpty { fileFailed(file, "does not compile; see the errors above") }
            for site in run.rules { sites[key(site)] = site }
            covered.formUnion(run.covered.map(key))
            for outcome in run.outcomes {
                let mark = outcome.passed ? paint("ok  ", "32", color) : paint("FAIL", "1;31", color)
                Terminal.writeOut("\(mark)  \(outcome.location)  \(outcome.name)\n")
                for detail in outcome.details { Terminal.writeOut(indent(detail) + "\n") }
                if outcome.passed { passed += 1 } else { failed += 1 }
            }
        }
        if parsed.flags.contains("--coverage") { printCoverage(sites, covered) }
        if passed + failed == 0 {
            Terminal.writeErr("rules: no tests found in \(roots.joined(separator: " "))\n")
        }
        Terminal.writeOut("\(passed) passed, \(failed) failed\n")
        return failed == 0 && passed > 0 ? ExitCode.ok : ExitCode.failure
    }

    private static func key(_ site: RuleSite) -> String {
        "\(Discovery.realPath(site.file)):\(site.offset)"
    }

    private static func printCoverage(_ sites: [String: RuleSite], _ covered: Set<String>) {
        let all = sites.sorted { ($0.value.file, $0.value.offset) < ($1.value.file, $1.value.offset) }
        let uncovered = all.filter { !covered.contains($0.key) }
        let share = all.isEmpty ? 100 : (all.count - uncovered.count) * 100 / all.count
        Terminal.writeOut("coverage: \(all.count - uncovered.count) of \(all.count) rules fired in some test (\(share)%)\n")
        for (_, site) in uncovered {
            Terminal.writeOut("  not covered: \(site.shown)\n")
        }
    }

    private static func indent(_ text: String) -> String {
        "      " + text.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n      ")
    }

    private static func paint(_ s: String, _ code: String, _ on: Bool) -> String {
        on ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s
    }
}

/// Finding policy files on disk.
enum Discovery {
    /// `path` itself if it is a file, else every `*.rules` below it, sorted;
    /// nil when it cannot be read.
    static func ruleFiles(under path: String) -> [String]? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        if (st.st_mode & S_IFMT) != S_IFDIR { return [path] }
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name.hasPrefix(".") { continue }
            names.append(name)
        }
        var found: [String] = []
        for name in names.sorted() {
            let child = path == "." ? name : (path.hasSuffix("/") ? path + name : path + "/" + name)
            var cst = stat()
            guard stat(child, &cst) == 0 else { continue }
            if (cst.st_mode & S_IFMT) == S_IFDIR {
                found += ruleFiles(under: child) ?? []
            } else if name.hasSuffix(".rules") {
                found.append(child)
            }
        }
        return found
    }

    static func realPath(_ path: String) -> String {
        guard let real = realpath(path, nil) else { return path }
        defer { free(real) }
        return String(cString: real)
    }
}
