import RulesCore

/// The REPL's session, without any terminal: it takes one complete input
/// (a rule, an event literal, or a `:command`) and answers with text for
/// stdout and stderr. The `rules repl` command adds line editing on a
/// terminal, or reads lines from a pipe.
///
/// The policy is the loaded files plus the rules typed so far; a typed rule
/// is checked with the whole policy before it is added, so nothing is ever
/// half-added. Events are kept: whenever the rules change, the engine starts
/// afresh and replays them, so the state always follows from these rules and
/// these events — as a replay of the same stream would.
package final class ReplSession {
    public struct Reply: Sendable, Equatable {
        public var out = ""
        public var err = ""
        public var quit = false
    }

    /// Writes a file; nil on success, else the system's reason.
    public typealias Writer = @Sendable (String, [UInt8]) -> String?

    private let loader: PolicyLoader
    private let write: Writer
    private var files: [SourceFile] = []
    private var loaded: Set<String> = []
    private var dropped: Set<String> = []
    private var typedCount = 0
    private var result: CompileResult
    private var engine: Engine
    private var events: [(literal: EventLiteral, sources: SourceSet)] = []
    private var timeline = Timeline()
    private var lastEventTime: Int64? = nil
    private var clock: Int64? = nil

    public init(loader: PolicyLoader, write: @escaping Writer) {
        self.loader = loader
        self.write = write
        result = PolicyCompiler.compile(SourceSet())
        engine = Engine(program: result.program!)
        engine.enableCorrections(.keepingEverything)
        engine.enableTrace(keepingChanges: true)
    }

    // MARK: - Input

    /// True while `text` is an unfinished statement: it ends with `→`, `,`,
    /// an operator, `and`/`or`, or leaves a bracket open.
    /// A `:command` on a line of its own is never taken as more of an
    /// unfinished statement: `:quit` always quits.
    public static func needsMore(_ text: String) -> Bool {
        if lastLine(text).hasPrefix(":") { return false }
        let (tokens, _) = Lexer.tokenize(SourceFile(name: "", text: text), file: 0)
        var depth = 0
        var last: TokenKind? = nil
        for t in tokens where t.kind != .newline && t.kind != .eof {
            switch t.kind {
            case .lparen, .lbracket, .lbrace: depth += 1
            case .rparen, .rbracket, .rbrace: depth -= 1
            default: break
            }
            last = t.kind
        }
        return depth > 0 || (last?.continuesLine ?? false)
    }

    public func handle(_ input: String) -> Reply {
        let text = input.trimmingCharacters(in: " \t\r\n")
        if text.isEmpty { return Reply() }
        if text.hasPrefix(":") { return command(text) }
        let last = Self.lastLine(text)
        if last.hasPrefix(":") {
            // A command typed while a statement was still open: the open
            // statement is dropped, and said so, rather than the command
            // being swallowed as part of it.
            var reply = Reply(err: "dropped the unfinished input before \(last.split(separator: " ")[0])\n")
            let then = command(last)
            reply.out += then.out
            reply.err += then.err
            reply.quit = then.quit
            return reply
        }
        if Self.startsWithTime(text) { return event(text) }
        return addRules(text)
    }

    static func lastLine(_ text: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        return (lines.last.map(String.init) ?? "").trimmingCharacters(in: " \t\r")
    }

    /// An event: `2026-…`, or `N × 2026-…` (`N x 2026-…`), repeated.
    private static func startsWithTime(_ text: String) -> Bool {
        var rest = Substring(text)
        if let count = rest.firstIndex(where: { !$0.isNumber }), count > rest.startIndex {
            let after = rest[count...].drop { $0 == " " }
            if after.first == "×" || after.first == "x" { rest = after.dropFirst().drop { $0 == " " } }
        }
        let b = Array(rest.utf8.prefix(5))
        return b.count == 5 && b[0..<4].allSatisfy { $0 >= 48 && $0 <= 57 } && b[4] == UInt8(ascii: "-")
    }

    // MARK: - Rules

    /// Loads policy files (and what they use) before the session starts.
    public func load(_ paths: [String]) -> Reply {
        var reply = Reply()
        var candidate = files
        for path in paths {
            let key = loader.canonical(path)
            if loaded.contains(key) { reply.err += "\(path) is already loaded\n"; continue }
            switch loader.load([path]) {
            case .failure(let e):
                reply.err += "cannot read \(e.path): \(e.reason)\n"
                return reply
            case .success(let got):
                if !got.diagnostics.isEmpty {
                    reply.err += DiagnosticRenderer(sources: got.sources).render(got.diagnostics)
                    return reply
                }
                // Each used file before the file that uses it: the
                // session's files are compiled in this order.
                for file in got.sourceOrder.map({ got.sources.files[$0] }) where !loaded.contains(loader.canonical(file.name)) {
                    candidate.append(file)
                }
            }
        }
        let count = candidate.count - files.count
        let r = recompile(candidate, &reply)
        if r.program != nil {
            for file in candidate[files.count...] { loaded.insert(loader.canonical(file.name)) }
            files = candidate
            reply.out += "loaded \(count) file\(count == 1 ? "" : "s"): \(statementCount) statements\n"
        }
        return reply
    }

    private func addRules(_ text: String) -> Reply {
        var reply = Reply()
        // `use "file.rules"` typed here loads the file, as `:load` does.
        let (statements, _) = Parser.parse(SourceFile(name: "<typed>", text: text + "\n"), file: 0)
        let uses = statements.compactMap { s -> String? in if case .use(let path, _) = s { return path }; return nil }
        if !uses.isEmpty {
            reply = load(uses)
            if statements.allSatisfy({ if case .use = $0 { return true }; return false }) { return reply }
        }
        typedCount += 1
        let file = SourceFile(name: "<typed \(typedCount)>", text: text + "\n")
        let r = recompile(files + [file], &reply)
        guard r.program != nil else {
            typedCount -= 1
            reply.err += "nothing was added\n"
            return reply
        }
        files.append(file)
        let index = files.count - 1
        // A typed `test` block runs at once, on a fresh engine with the
        // session's rules; it is not part of the policy.
        let tests = PolicyTests.run(r, testsIn: index)
        for outcome in tests.outcomes {
            reply.out += "\(outcome.passed ? "ok  " : "FAIL")  \(outcome.name)\n"
            for detail in outcome.details { reply.out += "      " + detail.replacing("\n", with: "\n      ") + "\n" }
        }
        let added = r.statements.filter { s in
            if case .test = s { return false }
            return s.span.file == index
        }.count
        if added > 0 || tests.outcomes.isEmpty {
            reply.out += "added \(added == 1 ? "1 statement" : "\(added) statements") (\(statementCount) in all)\n"
        }
        return reply
    }

    /// Compiles `candidate`; on success makes it the session's policy and
    /// replays the events. Diagnostics (errors, and warnings for new text)
    /// go to `reply.err`.
    @discardableResult
    private func recompile(_ candidate: [SourceFile], _ reply: inout Reply) -> CompileResult {
        let dropped = self.dropped
        let names = candidate.map(\.name)
        let r = PolicyCompiler.compile(SourceSet(candidate)) { s in
            !dropped.contains(Self.key(names[s.span.file], s.span))
        }
        let newFiles = candidate.count > files.count ? Set(files.count..<candidate.count) : []
        let shown = r.diagnostics.filter { $0.severity == .error || newFiles.contains($0.span.file) }
        reply.err += DiagnosticRenderer(sources: r.sources).render(shown)
        if let program = r.program {
            result = r
            replay(program, &reply)
        }
        return r
    }

    private static func key(_ file: String, _ span: Span) -> String { "\(file)#\(span.start)" }

    /// Statements that make up the policy, numbered for `:rules` / `:drop`.
    private var numbered: [Statement] {
        result.statements.filter { if case .test = $0 { return false }; if case .use = $0 { return false }; return true }
    }

    private var statementCount: Int { numbered.count }

    private func source(_ s: Statement) -> String {
        result.sources.files[s.span.file].text(s.span)
    }

    /// The whole lines a statement stands on (its trailing comment too),
    /// with the comment lines right above it: `:save` keeps what the author
    /// wrote, `# rules: allow` lines included. Lines already written (two
    /// statements on one line) are not written again.
    private func sourceWithComments(_ s: Statement, skipping written: inout Set<[Int]>) -> String {
        let file = result.sources.files[s.span.file]
        let first = file.line(of: s.span.start), last = file.line(of: max(s.span.start, s.span.end - 1))
        var start = first
        while start > 1, file.lineText(start - 1).trimmingCharacters(in: " \t").hasPrefix("#") { start -= 1 }
        var text = ""
        for l in start...last where written.insert([s.span.file, l]).inserted { text += file.lineText(l) + "\n" }
        return text
    }

    // MARK: - Events

    private func event(_ text: String) -> Reply {
        var reply = Reply()
        let sources = SourceSet([SourceFile(name: "<event>", text: text + "\n")])
        let (literals, diagnostics) = Parser.parseEventLiterals(sources.files[0], file: 0)
        if !diagnostics.isEmpty {
            reply.err += DiagnosticRenderer(sources: sources).render(diagnostics)
            return reply
        }
        for literal in literals {
            // After :at or :advance the clock is past the last event; an
            // event before it would rewrite what was already shown.
            if let clock, clock != lastEventTime, literal.time < clock {
                reply.err += "the clock is at \(Timestamp.format(clock)); this event is earlier (use :reset to start over)\n"
                continue
            }
            for _ in 0..<literal.repeats { apply(literal, sources, &reply, announce: true) }
        }
        return reply
    }

    private func apply(_ literal: EventLiteral, _ sources: SourceSet, _ reply: inout Reply, announce: Bool) {
        var feeder = LiteralFeeder(program: engine.program, sources: sources, engine: engine)
        feeder.allowUnknownEvents = true
        let text = sources.files[0].text(literal.span)
        let number = (timeline.entries.values.map(\.count).reduce(0, +)) + 1
        switch feeder.apply(literal, origin: "event \(number)", text: text) {
        case .failure(let error):
            reply.err += announce ? "\(error.message)\n" : "an earlier event is now rejected: \(text): \(error.message)\n"
        case .success(let entry):
            if announce { events.append((literal, sources)) }
            timeline.record(literal.person.text, entry)
            lastEventTime = max(lastEventTime ?? literal.time, literal.time)
            clock = max(clock ?? literal.time, literal.time)
            if announce { reply.out += describe(entry, person: literal.person.text) }
        }
    }

    private func describe(_ entry: Timeline.Entry, person: String) -> String {
        let rules = RuleSite.all(in: engine.program)
        var out = ""
        if entry.fired.isEmpty { out += "  nothing fired\n" }
        for line in entry.lines(rules: rules) { out += "  \(line)\n" }
        return out + stateLine(person) + "\n"
    }

    /// Fresh engine, same events: the state follows from the current rules.
    private func replay(_ program: Program, _ reply: inout Reply) {
        engine = Engine(program: program)
        engine.enableCorrections(.keepingEverything)
        // The trail (kept in memory only) says since when `while` rules
        // hold, and what each event changed.
        engine.enableTrace(keepingChanges: true)
        timeline = Timeline()
        let keptClock = clock
        lastEventTime = nil
        for (literal, sources) in events { apply(literal, sources, &reply, announce: false) }
        clock = keptClock
    }

    private func stateLine(_ person: String) -> String {
        guard let time = clock, let s = engine.state(of: person, at: time) else { return "\(person): no events" }
        func list(_ l: [String]) -> String { "[" + l.joined(separator: ", ") + "]" }
        // Attributes and outputs, in the order the policy declares them.
        let extras = engine.program.policy.reportExtras.map { extra -> String in
            switch extra {
            case .attribute(let k): return "  \(s.attributes[k].name) \(s.attributes[k].value.text)"
            case .output(let k): return "  \(s.outputs[k].name) \(s.outputs[k].value.map(Arithmetic.format) ?? "null")"
            }
        }.joined()
        return "\(person)  score \(s.score)  flags \(list(s.flags))  denied \(list(s.denied))  granted \(list(s.granted))\(extras)"
    }

    // MARK: - Commands

    public static let commands = [":help", ":load", ":rules", ":drop", ":state", ":explain", ":retract", ":at", ":advance", ":reset", ":save", ":quit"]

    public static let help = """
    Type a rule to add it:          speeding where speed > limit + 30 → -20
    Type an event to apply it:      2026-01-05T08:00:00Z alice: speeding { speed: 95, limit: 60 }
    …or the same event N times:     3 × 2026-01-05 alice: littering
    Commands:
      :help               this help
      :load FILE          add the rules of a policy file
      :rules              list the statements, numbered, with where they come from
      :drop N             remove statement N (the events are replayed without it)
      :state [PERSON]     everyone's state, or one person's, as of the clock
      :explain PERSON     why a person's state is what it is
      :retract PERSON ID [REASON]
                          take back the person's event with that id, at the
                          clock: as if it had never happened (give events an
                          id: 2026-01-05 alice: speeding { id: "t-1", … })
      :at TIME            move the clock to TIME (2026-06-01 or 2026-06-01T12:00:00Z)
      :advance DURATION   move the clock on (30 days, 12 hours …); expiries happen
      :reset              forget all events and the clock; keep the rules
      :save FILE          write the session's rules to a .rules file
      :quit               leave (Ctrl-D too)
    A statement that ends with →, a comma, an operator or an open bracket
    continues on the next line.
    """

    private func command(_ text: String) -> Reply {
        let parts = text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        let name = String(parts[0])
        let arg = parts.count > 1 ? String(parts[1]).trimmingCharacters(in: " \t") : ""
        switch name {
        case ":help", ":h", ":?": return Reply(out: Self.help + "\n")
        case ":quit", ":q", ":exit": return Reply(quit: true)
        case ":load": return arg.isEmpty ? usage(":load FILE") : load([arg])
        case ":rules": return listRules()
        case ":drop": return drop(arg)
        case ":state": return state(arg)
        case ":explain": return explain(arg)
        case ":retract": return retract(arg)
        case ":at": return moveClock(to: arg)
        case ":advance": return advance(arg)
        case ":reset": return reset()
        case ":save": return arg.isEmpty ? usage(":save FILE") : save(arg)
        default:
            let hint = Suggest.closest(to: name, among: Self.commands).map { " (did you mean \($0)?)" } ?? ""
            return Reply(err: "unknown command \(name)\(hint); :help lists them\n")
        }
    }

    private func usage(_ form: String) -> Reply { Reply(err: "usage: \(form)\n") }

    /// `:retract PERSON ID [REASON]`: the retraction literal at the clock,
    /// applied (and kept, for replays) like any typed event.
    private func retract(_ arg: String) -> Reply {
        let words = arg.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true).map(String.init)
        guard words.count >= 2 else { return usage(":retract PERSON ID [REASON]") }
        guard let time = clock else { return Reply(err: "no events yet: nothing to retract\n") }
        let reason = words.count > 2 ? ", reason: \(JSONText.quoted(words[2]))" : ""
        return handle("\(Timestamp.format(time)) \(JSONText.quoted(words[0])): retract { target: \(JSONText.quoted(words[1]))\(reason) }")
    }

    private func listRules() -> Reply {
        let all = numbered
        if all.isEmpty { return Reply(out: "no rules yet\n") }
        var out = ""
        for (i, s) in all.enumerated() {
            let (file, line, _) = result.sources.location(s.span)
            out += "\(String(i + 1).leftPadded(3, with: " "))  \(file):\(line)  \(source(s).replacing("\n", with: "\n" + String(repeating: " ", count: 5)))\n"
        }
        return Reply(out: out)
    }

    private func drop(_ arg: String) -> Reply {
        let all = numbered
        guard let n = Int(arg), n >= 1, n <= all.count else {
            return Reply(err: all.isEmpty ? "there is nothing to drop\n" : "usage: :drop N, with N from 1 to \(all.count) (see :rules)\n")
        }
        let statement = all[n - 1]
        let key = Self.key(result.sources.files[statement.span.file].name, statement.span)
        dropped.insert(key)
        var reply = Reply()
        if recompile(files, &reply).program == nil {
            dropped.remove(key)
            reply.err += "statement \(n) was kept: the rules would not check without it\n"
            return reply
        }
        reply.out += "dropped \(n): \(source(statement))\n"
        return reply
    }

    private func person(_ arg: String) -> String {
        arg.hasPrefix("\"") && arg.hasSuffix("\"") && arg.count >= 2 ? String(arg.dropFirst().dropLast()) : arg
    }

    private func state(_ arg: String) -> Reply {
        guard clock != nil else { return Reply(out: "no events yet\n") }
        if arg.isEmpty {
            return Reply(out: timeline.people.map(stateLine).joined(separator: "\n") + "\n")
        }
        let who = person(arg)
        guard timeline.entries[who] != nil else { return unknownPerson(who) }
        return Reply(out: stateLine(who) + "\n")
    }

    private func unknownPerson(_ who: String) -> Reply {
        let hint = Suggest.help(for: who, among: timeline.people).map { " \($0)" } ?? ""
        return Reply(err: "no events for `\(who)`\(hint)\n")
    }

    private func explain(_ arg: String) -> Reply {
        guard !arg.isEmpty else { return usage(":explain PERSON") }
        let who = person(arg)
        guard let time = clock, timeline.entries[who] != nil,
              let lines = Explanation.account(of: who, engine: engine, timeline: timeline, at: time) else { return unknownPerson(who) }
        return Reply(out: lines.joined(separator: "\n") + "\n")
    }

    private func moveClock(to arg: String) -> Reply {
        guard let t = Timestamp.parse(arg) else {
            return Reply(err: "usage: :at TIME, like 2026-06-01 or 2026-06-01T12:00:00Z\n")
        }
        return setClock(t)
    }

    private func advance(_ arg: String) -> Reply {
        let (tokens, _) = Lexer.tokenize(SourceFile(name: "", text: arg), file: 0)
        guard tokens.count == 3, case .duration(let seconds) = tokens[0].kind, seconds > 0 else {
            return Reply(err: "usage: :advance DURATION, like 30 days or 12 hours\n")
        }
        guard let clock else { return Reply(err: "there is no clock yet: apply an event or use :at TIME\n") }
        return setClock(Timestamp.adding(clock, Timestamp.ticks(seconds: seconds) ?? Int64.max))
    }

    private func setClock(_ t: Int64) -> Reply {
        if let last = lastEventTime, t < last {
            return Reply(err: "the last event was at \(Timestamp.format(last)); the clock cannot go back before it (:reset starts over)\n")
        }
        clock = t
        var out = "clock: \(Timestamp.format(t))\n"
        if !timeline.people.isEmpty { out += timeline.people.map(stateLine).joined(separator: "\n") + "\n" }
        return Reply(out: out)
    }

    private func reset() -> Reply {
        events = []
        clock = nil
        lastEventTime = nil
        var reply = Reply()
        replay(engine.program, &reply)
        reply.out += "events and clock cleared; \(statementCount) statements kept\n"
        return reply
    }

    /// Writes the policy's statements as written, one after another, so the
    /// file checks exactly as the session does.
    private func save(_ path: String) -> Reply {
        var text = "# Saved from `rules repl`.\n"
        var lastFile = -1
        var written: Set<[Int]> = []
        for s in numbered {
            if s.span.file != lastFile { text += "\n"; lastFile = s.span.file }
            text += sourceWithComments(s, skipping: &written)
        }
        if let error = write(path, Array(text.utf8)) { return Reply(err: "cannot write \(path): \(error)\n") }
        return Reply(out: "saved \(statementCount) statements to \(path)\n")
    }

    // MARK: - Completion

    /// Words that could complete `word` where it stands in `line`.
    public func completions(for word: String, in line: String) -> [String] {
        let trimmed = line.trimmingCharacters(in: " \t")
        var pool: [String]
        if trimmed.hasPrefix(":") && !trimmed.contains(" ") {
            pool = Self.commands
        } else if trimmed.hasPrefix(":state") || trimmed.hasPrefix(":explain") {
            pool = timeline.people
        } else {
            let policy = engine.program.policy
            pool = policy.events.map(\.name) + policy.flags + policy.privileges + policy.fields + timeline.people
                + Keyword.allCases.map(\.rawValue)
        }
        return Array(Set(pool.filter { $0.hasPrefix(word) && $0 != word })).sorted()
    }
}
