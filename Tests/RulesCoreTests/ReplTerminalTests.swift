import Foundation
import Testing

/// `rules repl` driven through a real pseudo-terminal: raw mode, echo,
/// history across sessions, completion, continuation, Ctrl-C, Ctrl-D.
final class PseudoTerminal {
    let master: Int32
    /// Kept open so the terminal's modes can be read after the child ends.
    let slave: Int32
    let pid: pid_t
    private(set) var output = ""

    init(_ executable: URL, _ args: [String], environment: [String: String]) throws {
        // posix_openpt and friends are not in Swift's Glibc module; this is
        // what they do on Linux: open the multiplexer, unlock, ask the number.
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        var unlock: Int32 = 0
        var number: UInt32 = 0
        let TIOCSPTLCK: UInt = 0x4004_5431, TIOCGPTN: UInt = 0x8004_5430
        guard master >= 0, ioctl(master, TIOCSPTLCK, &unlock) == 0, ioctl(master, TIOCGPTN, &number) == 0 else {
            throw TestFailure("no pseudo-terminal available")
        }
        slave = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY)
        guard slave >= 0 else { throw TestFailure("cannot open the pseudo-terminal's slave") }
        var size = winsize(ws_row: 40, ws_col: 120, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(slave, UInt(TIOCSWINSZ), &size)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd: Int32 in [0, 1, 2] { posix_spawn_file_actions_adddup2(&actions, slave, fd) }
        posix_spawn_file_actions_addclose(&actions, master)
        posix_spawn_file_actions_addclose(&actions, slave)
        let argv = ([executable.path] + args).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        // The test runner's threads may block signals; the child must not
        // inherit that, or a signal sent to it would wait forever.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable.path, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw TestFailure("posix_spawn failed: \(rc)") }
        pid = child
    }

    deinit {
        close(master)
        close(slave)
    }

    /// True when the terminal is back in its usual cooked mode.
    var isCooked: Bool {
        var modes = termios()
        guard tcgetattr(slave, &modes) == 0 else { return false }
        return modes.c_lflag & tcflag_t(ICANON | ECHO | ISIG) == tcflag_t(ICANON | ECHO | ISIG)
    }

    func send(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { write(master, $0.baseAddress!, $0.count) }
    }

    /// Reads until `text` shows up in the output after `from`, or 10 s pass.
    @discardableResult
    func wait(for text: String, from start: String.Index? = nil) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let searchFrom = start ?? output.startIndex
            if output[searchFrom...].contains(text) { return true }
            var fds = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
            guard poll(&fds, 1, 100) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { read(master, $0.baseAddress!, $0.count) }
            if n <= 0 { return output[searchFrom...].contains(text) }
            output += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        return false
    }

    /// Marks the current end of the output, so later waits look after it.
    var mark: String.Index { output.endIndex }

    /// Waits up to 10 s for the child to end; its exit code, or -1.
    func exitStatus() -> Int32 {
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if waitpid(pid, &status, WNOHANG) == pid { return (status >> 8) & 0xFF }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        return -1
    }
}

@Suite("rules repl on a terminal")
struct ReplTerminalTests {
    static func start(_ home: URL) throws -> PseudoTerminal {
        guard let binary = Repo.binary else { throw TestFailure("the rules binary was not built") }
        let env = ["HOME": home.path, "TERM": "xterm", "RULES_HISTORY": home.appendingPathComponent("history").path]
        return try PseudoTerminal(binary, ["repl", Repo.root.appendingPathComponent("rules/citizen.rules").path], environment: env)
    }

    @Test("typing, a caret under a typo, history recall and editing, continuation, Ctrl-C, completion, Ctrl-D")
    func session() throws {
        let home = try CLITests.tempDir()
        let t = try Self.start(home)
        #expect(t.wait(for: "loaded 1 file: 34 statements"))
        #expect(t.wait(for: "rules> "))

        var m = t.mark
        t.send("speding → -5\r")
        #expect(t.wait(for: "unknown event `speding`", from: m))
        #expect(t.wait(for: "| ^^^^^^^", from: m))
        #expect(t.wait(for: "nothing was added", from: m))

        // Up recalls the line; Home, three Rights, and an `e` fix it.
        m = t.mark
        t.send("\u{1B}[A")
        #expect(t.wait(for: "speding → -5", from: m))
        t.send("\u{1B}[H\u{1B}[C\u{1B}[C\u{1B}[Ce\r")
        #expect(t.wait(for: "added 1 statement (35 in all)", from: m))

        // A statement left open continues on a `...` prompt.
        m = t.mark
        t.send("while score < 900 →\r")
        #expect(t.wait(for: "   ... ", from: m))
        t.send("flag worried\r")
        #expect(t.wait(for: "added 1 statement (36 in all)", from: m))

        // Ctrl-C drops the line being typed.
        m = t.mark
        t.send("half a rule\u{3}")
        #expect(t.wait(for: "^C", from: m))
        #expect(t.wait(for: "rules> ", from: m))

        // Tab completes commands and names.
        m = t.mark
        t.send("2026-01-05 alice: jayw\t")
        #expect(t.wait(for: "jaywalking", from: m))
        t.send("\r")
        #expect(t.wait(for: "alice  score 999", from: m))
        m = t.mark
        t.send(":expl\tal\t\r")
        #expect(t.wait(for: "alice as of 2026-01-05T00:00:00Z: score 999", from: m))

        t.send("\u{4}")
        #expect(t.exitStatus() == 0)

        // History survives the session.
        let history = try String(contentsOf: home.appendingPathComponent("history"), encoding: .utf8)
        #expect(history.contains("speeding → -5\n"))
        let again = try Self.start(home)
        #expect(again.wait(for: "rules> "))
        m = again.mark
        again.send("\u{1B}[A")
        #expect(again.wait(for: ":explain alice", from: m))
        again.send("\u{3}:quit\r")
        #expect(again.exitStatus() == 0)
    }

    @Test("the terminal is restored when the REPL is killed by a signal")
    func restoredOnSignal() throws {
        let t = try Self.start(try CLITests.tempDir())
        #expect(t.wait(for: "rules> "))
        #expect(!t.isCooked)
        kill(t.pid, SIGTERM)
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(10)
        while waitpid(t.pid, &status, WNOHANG) != t.pid && Date() < deadline { usleep(20_000) }
        #expect(status & 0x7F == SIGTERM)
        #expect(t.isCooked)
        kill(t.pid, SIGKILL)
    }

    @Test("piped input: no prompts, no escape codes, errors on stderr, the session goes on")
    func piped() throws {
        let r = try CLITests.rules(["repl"], stdin: "a → +1\nb → 5\n2026-01-01 x: a\n:state\n")
        #expect(r.status == 0)
        #expect(r.stdout == """
        added 1 statement (1 in all)
          fired <typed 1>:1  a → +1   (+1)
        x  score 1  flags []  denied []  granted []
        x  score 1  flags []  denied []  granted []

        """)
        #expect(r.stderr.contains("<typed 2>:1:5: error: a score change needs a sign [E0204]"))
        #expect(!r.stdout.contains("\u{1B}") && !r.stderr.contains("\u{1B}"))
    }
}

/// The same REPL in tmux, reading the rendered screen: what a person sees.
/// tmux is a Debian package; `.ci/run` installs it, so CI always runs this.
@Suite("rules repl as seen in tmux", .enabled(if: Tmux.available))
struct ReplScreenTests {
    @Test("the screen shows prompts, the caret under a typo, and the state after an expiry")
    func screen() throws {
        guard let binary = Repo.binary else { throw TestFailure("the rules binary was not built") }
        let home = try CLITests.tempDir()
        let tmux = Tmux(session: "rules-test-\(getpid())")
        defer { tmux.kill() }
        let policy = Repo.root.appendingPathComponent("rules/citizen.rules").path
        try tmux.start("HOME=\(home.path) RULES_HISTORY=\(home.path)/h \(binary.path) repl \(policy); echo repl exited with $?")
        // capture-pane trims trailing spaces: the prompt shows as `rules>`.
        #expect(tmux.waitForScreen { $0.contains("rules>") })

        tmux.type("speding → -5")
        tmux.key("Enter")
        #expect(tmux.waitForScreen { $0.contains("nothing was added") })
        let lines = tmux.screen().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let source = try #require(lines.firstIndex { $0.hasPrefix("1 | speding → -5") })
        #expect(lines[source + 1] == "  | ^^^^^^^")

        tmux.type("2026-01-05 alice: speeding { speed: 95, limit: 60 }")
        tmux.key("Enter")
        tmux.type("2026-01-06 alice: unpaid debt { amount: 20000 }")
        tmux.key("Enter")
        #expect(tmux.waitForScreen { $0.contains("denied [foreign_travel, travel]") })
        tmux.type(":advance 180 days")
        tmux.key("Enter")
        #expect(tmux.waitForScreen { $0.contains("clock: 2026-07-05T00:00:00Z") })
        #expect(tmux.screen().contains("alice  score 965  flags [debtor]  denied [travel]  granted []"))
        #expect(!tmux.screen().contains("\u{1B}"))
        tmux.key("C-d")
        #expect(tmux.waitForScreen { $0.contains("repl exited with 0") })
    }
}

/// Drives tmux with plain posix_spawn and waitpid: Foundation's `Process`
/// can miss a child's exit while other tests spawn processes of their own,
/// and a tmux server keeps whatever descriptors it inherits.
struct Tmux {
    let session: String

    static var path: String? {
        ["/usr/bin/tmux", "/usr/local/bin/tmux"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static var available: Bool { path != nil }

    /// Runs tmux with `args`; its exit status and standard output.
    @discardableResult
    func run(_ args: [String]) -> (status: Int32, stdout: String) {
        guard let tmux = Self.path else { return (-1, "") }
        let outPath = FileManager.default.temporaryDirectory.appendingPathComponent("tmux-\(UUID().uuidString)").path
        defer { unlink(outPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = ([tmux] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, tmux, &actions, nil, argv, environ) == 0 else { return (-1, "") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        return ((status >> 8) & 0xFF, out)
    }

    func start(_ command: String) throws {
        guard run(["new-session", "-d", "-s", session, "-x", "110", "-y", "40", command]).status == 0 else {
            throw TestFailure("tmux could not start a session")
        }
        run(["set-option", "-t", session, "remain-on-exit", "on"])
    }

    func type(_ text: String) { run(["send-keys", "-t", session, "-l", text]) }
    func key(_ name: String) { run(["send-keys", "-t", session, name]) }
    func screen() -> String { run(["capture-pane", "-p", "-t", session]).stdout }
    func kill() { run(["kill-session", "-t", session]) }

    func waitForScreen(_ condition: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if condition(screen()) { return true }
            usleep(50_000)
        }
        return false
    }
}
