import LineEditor
import RulesCore
import RulesTooling
#if canImport(Glibc)
import Glibc
#endif

/// `rules repl [POLICY.rules...]` — try rules and events interactively.
enum ReplCommand {
    static let help = """
    usage: rules repl [POLICY.rules...]

    An interactive session: type a rule to add it (it is checked with the
    whole policy first), an event to apply it, or a :command. Type :help
    inside for the commands.

    On a terminal: arrows, Home/End, Ctrl- or Alt-arrows for words,
    Ctrl-A/E/K/U/W, history with Up/Down (kept in ~/.rules_history, or
    $RULES_HISTORY), Tab completion, Ctrl-C to cancel a line, Ctrl-D to leave.
    A statement left open (ending with →, a comma, an operator or an open
    bracket) continues on a `...` prompt.

    From a pipe: one input per line, results on stdout, errors on stderr,
    no prompts and no escape codes.

    exit status: 0 after :quit or end of input, 1 if a policy to load
    cannot be read, 2 usage error.
    """

    static func run(_ args: [String]) -> Int32 {
        let (arguments, code) = Arguments.forCommand("repl", args, spec: .init(), help: help)
        guard let parsed = arguments else { return code }

        let session = ReplSession(loader: PolicyLoading.loader, write: { path, bytes in
            Terminal.writeFile(path, bytes)
        })
        if !parsed.positionals.isEmpty {
            let reply = session.load(parsed.positionals)
            show(reply)
            if !reply.err.isEmpty && reply.out.isEmpty { return ExitCode.failure }
        }
        if Terminal.isTerminal(0) && Terminal.isTerminal(1) && RawTerminal.enable() {
            defer { RawTerminal.restore() }
            var loop = InteractiveLoop(session: session)
            loop.run()
        } else {
            pipedLoop(session)
        }
        return ExitCode.ok
    }

    static func show(_ reply: ReplSession.Reply) {
        if !reply.out.isEmpty { Terminal.writeOut(reply.out) }
        if !reply.err.isEmpty { Terminal.writeErr(reply.err) }
    }

    /// Lines from a pipe: no prompts, no escape codes; a statement left open
    /// takes the following lines.
    static func pipedLoop(_ session: ReplSession) {
        var pending = ""
        while let line = readLine(strippingNewline: true) {
            pending += pending.isEmpty ? line : "\n" + line
            if ReplSession.needsMore(pending) { continue }
            let reply = session.handle(pending)
            pending = ""
            show(reply)
            if reply.quit { return }
        }
        if !pending.isEmpty { show(session.handle(pending)) }
    }
}

/// The terminal session: prompt, line editor, history file, completion.
struct InteractiveLoop {
    let session: ReplSession
    var editor: LineEditor
    var decoder = KeyDecoder()
    let historyPath: String?
    var pending = ""

    static let prompt = "rules> "
    static let continuation = "   ... "

    init(session: ReplSession) {
        self.session = session
        historyPath = Self.historyPath()
        editor = LineEditor(history: historyPath.map(Self.loadHistory) ?? [])
    }

    static func historyPath() -> String? {
        if let p = getenv("RULES_HISTORY") { return String(cString: p) }
        guard let home = getenv("HOME") else { return nil }
        return String(cString: home) + "/.rules_history"
    }

    static func loadHistory(_ path: String) -> [String] {
        guard case .success(let bytes) = Terminal.readFile(path) else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").suffix(1000).map(String.init)
    }

    var prompt: String { pending.isEmpty ? Self.prompt : Self.continuation }

    mutating func run() {
        Terminal.writeOut("rules repl — :help for help, Ctrl-D to leave\n")
        draw()
        while true {
            guard let bytes = RawTerminal.read() else { return }
            var keys = decoder.feed(bytes)
            // An escape sequence or character split across reads: wait
            // briefly for the rest; a lone Escape is then dropped.
            if decoder.isPending {
                if let more = RawTerminal.read(timeoutMs: 50), !more.isEmpty {
                    keys += decoder.feed(more)
                } else if let key = decoder.flush() {
                    keys.append(key)
                }
            }
            for key in keys {
                if !handle(key) { return }
            }
        }
    }

    /// False when the session ends.
    private mutating func handle(_ key: Key) -> Bool {
        switch editor.handle(key) {
        case .none: return true
        case .redraw: draw()
        case .clearScreen:
            Terminal.writeOut("\u{1B}[H\u{1B}[2J")
            draw()
        case .cancel:
            Terminal.writeOut("^C\r\n")
            pending = ""
            draw()
        case .endOfInput:
            Terminal.writeOut("\r\n")
            return false
        case .complete:
            complete()
        case .submit(let line):
            Terminal.writeOut("\r\n")
            appendHistory(line)
            pending += pending.isEmpty ? line : "\n" + line
            if ReplSession.needsMore(pending) { draw(); return true }
            let input = pending
            pending = ""
            let reply = session.handle(input)
            ReplCommand.show(reply)
            if reply.quit { return false }
            draw()
        }
        return true
    }

    private mutating func complete() {
        let candidates = session.completions(for: editor.wordBeforeCursor, in: pending + editor.line)
        let listed = editor.complete(with: candidates)
        if !listed.isEmpty {
            Terminal.writeOut("\r\n" + Self.columns(listed) + "\r\n")
        }
        draw()
    }

    /// Candidates in columns that fit the terminal.
    static func columns(_ words: [String]) -> String {
        let width = (words.map(\.count).max() ?? 0) + 2
        let perLine = max(1, RawTerminal.width / width)
        var lines: [String] = []
        var i = 0
        while i < words.count {
            lines.append(words[i..<min(i + perLine, words.count)].map { $0 + String(repeating: " ", count: width - $0.count) }.joined())
            i += perLine
        }
        return lines.joined(separator: "\r\n")
    }

    private func draw() {
        Terminal.writeOut(editor.render(prompt: prompt, promptWidth: prompt.count))
    }

    private func appendHistory(_ line: String) {
        guard let path = historyPath, !line.allSatisfy({ $0 == " " }) else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        guard fd >= 0 else { return }
        Terminal.write(fd: fd, line.replacing("\n", with: " ") + "\n")
        close(fd)
    }
}
