import RulesCore

/// Runs a policy's `test` blocks: each on a fresh engine, its events applied
/// in order, its expectations checked as of the test's clock (the latest
/// event so far) or `at` a later time. A failure explains itself: what was
/// expected, what was found, and what every event of that person did.
package struct TestOutcome: Sendable {
    public var name: String
    /// `FILE:LINE` of the `test` block.
    public var location: String
    public var passed: Bool
    /// Rendered failures and errors, one block of lines each.
    public var details: [String]
}

package struct TestRun: Sendable {
    public var outcomes: [TestOutcome]
    /// Every rule of the policy, and those that some test made fire (for a
    /// `while` rule: hold).
    public var rules: [RuleSite]
    public var covered: Set<RuleSite>
}

package enum PolicyTests {
    /// Runs the tests that stand in file `file` of a compiled policy.
    public static func run(_ result: CompileResult, testsIn file: Int) -> TestRun {
        let tests = testBlocks(result, in: file)
        guard let program = result.program else {
            let outcomes = tests.map { t in
                TestOutcome(name: t.name, location: location(result.sources, t.span), passed: false,
                            details: ["the policy does not compile; see the errors above"])
            }
            return TestRun(outcomes: outcomes, rules: [], covered: [])
        }
        let rules = RuleSite.all(in: program)
        var covered: Set<RuleSite> = []
        var outcomes: [TestOutcome] = []
        var names: [String: Span] = [:]
        for test in tests {
            var runner = SingleTest(program: program, sources: result.sources, rules: rules)
            var outcome = runner.run(test)
            // Two tests of one name cannot be told apart in the output.
            if let first = names[test.name] {
                outcome.passed = false
                outcome.details.append("\(location(result.sources, test.span)): another test is named \"\(test.name)\" (\(location(result.sources, first))); give each test its own name")
            } else {
                names[test.name] = test.span
            }
            covered.formUnion(runner.fired.map { rules[$0] })
            outcomes.append(outcome)
        }
        return TestRun(outcomes: outcomes, rules: rules, covered: covered)
    }

    public static func hasTests(_ result: CompileResult, in file: Int) -> Bool {
        !testBlocks(result, in: file).isEmpty
    }

    static func testBlocks(_ result: CompileResult, in file: Int) -> [TestBlock] {
        result.statements.compactMap { s in
            if case .test(let t) = s, t.span.file == file { return t }
            return nil
        }
    }

    static func location(_ sources: SourceSet, _ span: Span) -> String {
        let (file, line, _) = sources.location(span)
        return "\(file):\(line)"
    }
}

/// The run of one test block.
private struct SingleTest {
    let program: Program
    let sources: SourceSet
    let rules: [RuleSite]
    let engine: Engine
    /// Global indices of the rules that fired (or held) during the test.
    var fired: Set<Int> = []
    var clock: Int64? = nil
    var timeline = Timeline()
    var problems: [String] = []

    init(program: Program, sources: SourceSet, rules: [RuleSite]) {
        self.program = program
        self.sources = sources
        self.rules = rules
        engine = Engine(program: program)
        // Tests may take an event back (`retract { target: … }`): the
        // whole of a test's history is kept (its events are few).
        engine.enableCorrections(.keepingEverything)
    }

    mutating func run(_ test: TestBlock) -> TestOutcome {
        for step in test.steps {
            switch step {
            case .event(let e): for _ in 0..<e.repeats { apply(e) }
            case .expect(let x): check(x)
            }
        }
        // A test that expects nothing passes whatever the rules do.
        if !test.steps.contains(where: { if case .expect = $0 { return true }; return false }) {
            problems.append("\(at(test.span)): this test has no `expect`, so it cannot fail; say what the events should lead to")
        }
        return TestOutcome(name: test.name, location: PolicyTests.location(sources, test.span),
                           passed: problems.isEmpty, details: problems)
    }

    private func at(_ span: Span) -> String { PolicyTests.location(sources, span) }

    private func text(_ span: Span) -> String { sources.files[span.file].text(span) }

    // MARK: - Events

    private mutating func apply(_ e: EventLiteral) {
        let feeder = LiteralFeeder(program: program, sources: sources, engine: engine)
        switch feeder.apply(e, origin: at(e.span), text: text(e.span)) {
        case .failure(let error):
            problems.append("\(at(error.span)): \(error.message)")
        case .success(let entry):
            clock = max(clock ?? e.time, e.time)
            fired.formUnion(entry.fired)
            // Timed rules that fired before the event, as its time came.
            fired.formUnion(entry.changes.filter { $0.line == nil }.compactMap(\.rule))
            fired.formUnion(engine.stateRulesHolding(e.person.text, at: e.time))
            timeline.record(e.person.text, entry)
        }
    }

    // MARK: - Expectations

    private mutating func check(_ x: Expectation) {
        let time: Int64
        if let t = x.at {
            if let clock, t < clock {
                problems.append("\(at(x.span)): `at \(Timestamp.format(t))` is before this test's last event (\(Timestamp.format(clock))); expectations look forward in time")
                return
            }
            time = t
        } else if let clock {
            time = clock
        } else {
            problems.append("\(at(x.span)): no event comes before this expectation")
            return
        }
        switch x.kind {
        case .fired(let query, let span, let negated):
            // Timed rules whose time came by now fire though no event came.
            for person in timeline.people { fired.formUnion(engine.timedRulesDue(person, at: time)) }
            checkFired(query, span, negated, x)
        case .score(let person, let op, let value, let output):
            guard knownOutput(output), let state = personState(person, time) else { return }
            let (what, actual) = quantity(state, output)
            if let actual, Arithmetic.compare(op, actual, value) == true { return }
            fail(x, person: person.text, time: time, expected: "\(what) \(op.rawValue) \(Arithmetic.format(value))",
                 actual: "\(what) \(actual.map(Arithmetic.format) ?? "null")")
        case .scoreBetween(let person, let low, let high, let output):
            guard knownOutput(output), let state = personState(person, time) else { return }
            let (what, actual) = quantity(state, output)
            if let actual, (low...high).contains(actual) { return }
            fail(x, person: person.text, time: time, expected: "\(what) between \(Arithmetic.format(low)) and \(Arithmetic.format(high))",
                 actual: "\(what) \(actual.map(Arithmetic.format) ?? "null")")
        case .value(let person, let attribute, let op, let value):
            guard let k = program.policy.attributes.firstIndex(where: { $0.name == attribute.text }) else {
                let pool = program.policy.attributes.map(\.name)
                problems.append("\(at(attribute.span)): the policy has no attribute `\(attribute.text.replacing("_", with: " "))`; "
                                + (Suggest.help(for: attribute.text, among: pool) ?? "declare one with `attribute NAME = START`"))
                return
            }
            guard let state = personState(person, time) else { return }
            let actual = state.attributes[k].value
            let wanted: FieldValue
            switch value {
            case .number(let n): wanted = .number(n)
            case .string(let s): wanted = .string(s)
            case .bool(let b): wanted = .bool(b)
            }
            // Strings byte for byte, as the language compares them.
            let same: Bool
            if case .string(let a) = actual, case .string(let b) = wanted { same = Array(a.utf8) == Array(b.utf8) } else { same = actual == wanted }
            if same != (op == .eq) {
                let what = attribute.text.replacing("_", with: " ")
                fail(x, person: person.text, time: time, expected: "\(what) \(op.rawValue) \(wanted.text)", actual: "\(what) \(actual.text)")
            }
        case .holds(let person, let kind, let name, let negated):
            guard knownName(name, kind), let state = personState(person, time) else { return }
            let list = names(state, kind)
            if list.contains(name.text) == negated {
                fail(x, person: person.text, time: time,
                     expected: "\(negated ? "not " : "")\(describe(kind)) \(name.text)",
                     actual: "\(label(kind)) \(format(list))")
            }
        case .exactly(let person, let kind, let expected):
            guard expected.allSatisfy({ knownName($0, kind) }), let state = personState(person, time) else { return }
            let list = names(state, kind)
            let want = expected.map(\.text).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            if list != want {
                fail(x, person: person.text, time: time, expected: "\(label(kind)) \(format(want))", actual: "\(label(kind)) \(format(list))")
            }
        }
    }

    private mutating func personState(_ person: Name, _ time: Int64) -> PersonReport? {
        if let state = engine.state(of: person.text, at: time) {
            // A `while` rule may start holding through time alone (a window
            // emptying, a flag expiring): seen here, it counts as covered.
            fired.formUnion(engine.stateRulesHolding(person.text, at: time))
            fired.formUnion(engine.timedRulesDue(person.text, at: time))
            return state
        }
        let help = Suggest.help(for: person.text, among: timeline.people) ?? "give them an event first"
        problems.append("\(at(person.span)): `\(person.text)` had no event in this test; \(help)")
        return nil
    }

    /// The score, or the output an expectation names (nil: no value), and
    /// how a failure calls it.
    private func quantity(_ state: PersonReport, _ output: Name?) -> (String, Double?) {
        guard let output else { return ("score", Double(state.score)) }
        let shown = output.text.replacing("_", with: " ")
        if let o = state.outputs.first(where: { $0.name == output.text }) { return (shown, o.value) }
        if case .number(let x)? = state.attributes.first(where: { $0.name == output.text })?.value { return (shown, x) }
        return (shown, nil)
    }

    /// An expectation about an output the policy does not have is an error,
    /// as one about an unknown flag is.
    private mutating func knownOutput(_ output: Name?) -> Bool {
        guard let output else { return true }
        let pool = program.policy.outputs.map(\.name) + program.policy.attributes.filter { $0.type == .number }.map(\.name)
        if pool.contains(output.text) { return true }
        let help = Suggest.help(for: output.text, among: pool)
            ?? (pool.isEmpty ? "the policy has no outputs (`output NAME = …`)" : "its outputs are \(pool.map { "`\($0.replacing("_", with: " "))`" }.joined(separator: ", "))")
        problems.append("\(at(output.span)): the policy has no output or number attribute `\(output.text.replacing("_", with: " "))`; \(help)")
        return false
    }

    /// A test that names a flag or privilege the policy does not have is an
    /// error: it would pass for the wrong reason.
    private mutating func knownName(_ name: Name, _ kind: TargetKind) -> Bool {
        let pool = program.policy.names(of: kind)
        if pool.contains(name.text) { return true }
        let what = kind.nameKind
        let help = Suggest.help(for: name.text, among: pool) ?? "no rule of the policy sets it"
        problems.append("\(at(name.span)): the policy has no \(what) `\(name.text)`; \(help)")
        return false
    }

    private mutating func checkFired(_ query: String, _ span: Span, _ negated: Bool, _ x: Expectation) {
        let wanted = Self.normalize(query)
        // A rule's name first: it names one rule, however the text reads.
        let named = rules.indices.filter { rules[$0].name.map(Self.normalize) == wanted }
        let matches = named.isEmpty ? rules.indices.filter { Self.normalize(rules[$0].text).contains(wanted) } : named
        let exact = matches.filter { Self.normalize(rules[$0].text) == wanted }
        let chosen = exact.isEmpty ? matches : exact
        guard !chosen.isEmpty else {
            problems.append("\(at(span)): no rule of the policy contains \"\(query)\"")
            return
        }
        guard chosen.count == 1 else {
            let list = chosen.map { "\n    \(rules[$0].shown)" }.joined()
            problems.append("\(at(span)): \"\(query)\" matches \(chosen.count) rules; quote more of the one you mean:\(list)")
            return
        }
        let rule = chosen[0]
        if fired.contains(rule) == negated {
            let site = rules[rule]
            var lines = ["\(at(x.span)): \(text(x.span))",
                         "    expected: \(site.file):\(site.line) \(negated ? "never fired" : "fired")",
                         "    actual:   it \(negated ? "fired" : "never fired")"]
            for person in timeline.people {
                lines.append("    events for \(person):")
                lines += timeline.render(person, rules: rules).map { "      " + $0.replacing("\n", with: "\n      ") }
            }
            problems.append(lines.joined(separator: "\n"))
        }
    }

    static func normalize(_ text: String) -> String {
        text.replacing("->", with: "→").split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).joined(separator: " ")
    }

    private mutating func fail(_ x: Expectation, person: String, time: Int64, expected: String, actual: String) {
        var lines = ["\(at(x.span)): \(text(x.span))",
                     "    expected: \(expected)",
                     "    actual:   \(actual)  (as of \(Timestamp.format(time)))",
                     "    events for \(person):"]
        lines += timeline.render(person, rules: rules).map { "      " + $0.replacing("\n", with: "\n      ") }
        problems.append(lines.joined(separator: "\n"))
    }

    private func names(_ s: PersonReport, _ kind: TargetKind) -> [String] { s.names(of: kind) }

    private func describe(_ kind: TargetKind) -> String { kind.stateWord }

    private func label(_ kind: TargetKind) -> String { kind.reportKey }

    private func format(_ list: [String]) -> String { "[" + list.joined(separator: ", ") + "]" }
}
