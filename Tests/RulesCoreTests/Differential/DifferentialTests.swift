import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

/// The engine against the reference model, on random policies and streams,
/// through every way the project runs a policy in-process: one thread,
/// `--jobs 2`, a checkpoint taken at a random line and resumed, another
/// person key, the public library API (lines, typed events one at a time
/// and in a batch), the test runner and the REPL. `swift test` runs a few
/// seconds of it; `scripts/difftest.sh SECONDS` runs longer (the binary's
/// own paths included). A difference fails with a minimised repro.
@Suite("Differential: engine against the reference model")
struct DifferentialTests {
    /// Seconds to spend; `DIFFTEST_SECONDS` overrides.
    static var budget: Double {
        Double(ProcessInfo.processInfo.environment["DIFFTEST_SECONDS"] ?? "") ?? 4
    }

    /// The first seed; `DIFFTEST_SEED` overrides (to replay a failure).
    static var firstSeed: UInt64 {
        UInt64(ProcessInfo.processInfo.environment["DIFFTEST_SEED"] ?? "") ?? 1
    }

    @Test("random cases agree with the reference model")
    func randomCases() throws {
        let start = Date()
        var seed = Self.firstSeed
        var stats = Differential.Stats()
        // The time budget, but never fewer than 40 cases (a loaded CI
        // machine once managed 46 in 4 s).
        while Date().timeIntervalSince(start) < Self.budget || (stats.compared < 40 && seed - Self.firstSeed < 1000) {
            var generator = CaseGenerator(seed: seed)
            let c = generator.generate()
            let caseStart = Date()
            if ProcessInfo.processInfo.environment["DIFFTEST_TRACE"] != nil { print("differential: seed \(c.seed)…\n\(c.repro)") }
            defer {
                // A case that takes long makes the budget meaningless: say which.
                let took = Date().timeIntervalSince(caseStart)
                if took > 5 { print("differential: seed \(c.seed) took \(Int(took)) s") }
            }
            if Differential.compare(c, stats: &stats) != nil {
                let minimal = Differential.minimise(c)
                var again = Differential.Stats()
                let failure = Differential.compare(minimal, stats: &again) ?? "?"
                Issue.record("""
                    the engine and the reference disagree on seed \(seed) (DIFFTEST_SEED=\(seed) replays it); minimised:
                    \(minimal.repro)
                    \(failure)
                    """)
                return
            }
            seed += 1
        }
        print("differential: \(stats.compared) cases agree (seeds \(Self.firstSeed)..<\(seed)); \(stats.skipped) policies did not check")
        // The generator means to write policies that check; if many do not,
        // the test is comparing little.
        #expect(stats.skipped * 10 <= stats.compared, "\(stats.skipped) of \(stats.compared + stats.skipped) generated policies did not check")
    }

    /// Issue 13's first bug, found again by the model: two counted rules on
    /// one event type with the same count and different windows.
    @Test("the reference catches the shared-buffer miscount")
    func sharedBuffer() throws {
        let c = GeneratedCase(seed: 0, files: ["3 tax filed within 6 hours → flag x\n3 tax filed within 1 week → grant loans\n"],
                              lines: [#"{"citizen":"a","type":"tax filed","time":"2026-01-01"}"#,
                                      #"{"citizen":"a","type":"tax filed","time":"2026-01-05"}"#], asOf: nil)
        let model = try #require(Differential.reference(c))
        #expect(model.report() == #"{"citizen":"a","score":0,"flags":[],"denied":[],"granted":[]}"# + "\n")
        var stats = Differential.Stats()
        #expect(Differential.compare(c, stats: &stats) == nil)
    }
}

enum Differential {
    struct Stats {
        var compared = 0
        var skipped = 0
    }

    static func compile(_ c: GeneratedCase) -> CompileResult {
        PolicyCompiler.compile(SourceSet(c.files.enumerated().map { SourceFile(name: "policy\($0.offset + 1).rules", text: $0.element) }))
    }

    static func reference(_ c: GeneratedCase) -> ReferenceModel? {
        let result = compile(c)
        guard result.program != nil, let checked = result.checked else { return nil }
        var model = ReferenceModel(policy: checked, asOf: c.asOf.flatMap(ReferenceStream.parseTime),
                                   corrections: c.corrections.map { ($0.retain, $0.lateness) })
        for (k, line) in c.lines.enumerated() { model.feed(line: Array(line.utf8), number: k + 1) }
        return model
    }

    /// nil when every way of running agrees with the reference; otherwise
    /// what differed.
    static func compare(_ c: GeneratedCase, stats: inout Stats) -> String? {
        let result = compile(c)
        guard let program = result.program, let model = reference(c) else {
            if ProcessInfo.processInfo.environment["DIFFTEST_SHOW_SKIPPED"] != nil {
                print("skipped seed \(c.seed): \(result.errors.map(\.message))\n\(c.files.joined())")
            }
            stats.skipped += 1
            if ProcessInfo.processInfo.environment["DIFFTEST_SHOW_SKIPPED"] != nil, let first = result.errors.first {
                print("skipped \(c.seed): \(first.code.rawValue) \(first.message)")
            }
            return nil
        }
        stats.compared += 1
        let expected = model.report()
        let expectedRejects = model.rejectedLines
        let asOf = c.asOf.flatMap(Timestamp.parse)

        for (name, run) in ways(c, program: program, asOf: asOf) {
            let (report, rejects) = run()
            if report == "(skip)" { continue }
            if report != expected {
                return "\(name): report\n--- reference\n\(expected)--- engine\n\(report)"
            }
            if let rejects, rejects != expectedRejects {
                return "\(name): rejected lines \(rejects), the reference rejected \(expectedRejects)"
            }
        }
        return nil
    }

    typealias Way = () -> (report: String, rejected: [Int]?)

    static func ways(_ c: GeneratedCase, program: Program, asOf: Int64?) -> [(String, Way)] {
        let corrections = c.corrections
        var ways: [(String, Way)] = [
            ("rules run", { oneThread(program, c.stream, asOf: asOf, corrections: corrections) }),
            ("--jobs 2", { parallel(program, c.stream, asOf: asOf, corrections: corrections) }),
            ("--person-key subject", { withPersonKey(program, c, asOf: asOf, jobs: 1) }),
            ("--person-key subject, --jobs 2", { withPersonKey(program, c, asOf: asOf, jobs: 2) }),
        ]
        ways.append(("--state/--resume", { resumed(program, c, asOf: asOf) }))
        // Tests and the REPL keep everything and have no lateness: cases
        // with corrections are left to their own tests.
        if corrections != nil {
            if c.files.count == 1 && asOf == nil {
                ways.append(("library API", { library(c, asOf: asOf) }))
                ways.append(("library API, typed events", { typedEvents(c) }))
            }
            if ProcessInfo.processInfo.environment["DIFFTEST_BINARY"] != nil, c.seed % 10 == 0, let binary = Repo.binary {
                ways += binaryWays(c, binary: binary)
            }
            return ways
        }
        // The library has no `--as-of` for a stream (`report(at:)` moves the
        // clock; it does not ignore later events), and compiles one text.
        if c.files.count == 1 && asOf == nil {
            ways.append(("library API", { library(c, asOf: asOf) }))
            ways.append(("library API, typed events", { typedEvents(c) }))
        }
        if asOf == nil {
            ways.append(("rules test", { testRunner(c, program: program) }))
            ways.append(("rules repl", { repl(c) }))
        }
        // The binary's own paths (arguments, files, the checkpoint file),
        // for every 10th case when asked: `scripts/difftest.sh` asks.
        if ProcessInfo.processInfo.environment["DIFFTEST_BINARY"] != nil, c.seed % 10 == 0, let binary = Repo.binary {
            ways += binaryWays(c, binary: binary)
        }
        return ways
    }

    static func binaryWays(_ c: GeneratedCase, binary: URL) -> [(String, Way)] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("difftest-\(c.seed)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var policies: [String] = []
        for (k, text) in c.files.enumerated() {
            let path = dir.appendingPathComponent("policy\(k + 1).rules").path
            _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
            policies.append(path)
        }
        let asOf = c.asOf.map { ["--as-of", $0] } ?? []
        func run(_ extra: [String], _ stream: String) -> (String, [Int]?) {
            guard let r = try? runProcess(binary, ["run"] + policies + asOf + c.correctionOptions + extra, stdin: stream), r.status == 0 else {
                return ("(rules run \(extra) failed)", nil)
            }
            return (r.stdout, nil)
        }
        let cut = c.lines.isEmpty ? 0 : Int((c.seed / 10) % UInt64(c.lines.count + 1))
        let state = dir.appendingPathComponent("state").path
        let first = c.lines[..<cut].map { $0 + "\n" }.joined(), rest = c.lines[cut...].map { $0 + "\n" }.joined()
        var ways: [(String, Way)] = [
            ("binary: rules run", { run([], c.stream) }),
            ("binary: rules run --jobs 2", { run(["--jobs", "2"], c.stream) }),
        ]
        // A saved state holds every line read, so `--as-of` is refused with it.
        if c.asOf == nil { ways += [
            ("binary: --state, then --resume", {
                _ = run(["--state", state], first)
                return run(["--resume", state], rest)
            }),
            ("binary: --checkpoint-every 3", {
                let every = dir.appendingPathComponent("every").path
                return run(["--state", every, "--checkpoint-every", "3"], c.stream)
            }),
        ] }
        ways.append(("binary: clean up", {
            try? FileManager.default.removeItem(at: dir)
            return ("(skip)", nil)
        }))
        return ways
    }

    static func render(_ engines: [Engine], asOf: Int64?) -> String {
        var bytes: [UInt8] = []
        Engine.writeReport(engines, asOf: asOf) { bytes += $0 }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func oneThread(_ program: Program, _ stream: String, asOf: Int64?, corrections: Corrections? = nil) -> (String, [Int]?) {
        let engine = Engine(program: program)
        if let corrections { engine.enableCorrections(corrections) }
        let (_, rejections) = EventStream.run(engine, text: stream, asOf: asOf)
        return (render([engine], asOf: asOf), rejections.map(\.line))
    }

    /// The stream with `subject` for `citizen` as its person key: the same
    /// report, with `subject` for `citizen` in it.
    static func withPersonKey(_ program: Program, _ c: GeneratedCase, asOf: Int64?, jobs: Int) -> (String, [Int]?) {
        guard case .success(let key) = PersonKey.named("subject", for: program) else { return ("(skip)", nil) }
        let stream = c.stream.replacingOccurrences(of: #""citizen":"#, with: #""subject":"#)
        let (report, rejected): (String, [Int]?)
        if jobs == 1 {
            let engine = Engine(program: program, personKey: key)
            if let corrections = c.corrections { engine.enableCorrections(corrections) }
            let (_, rejections) = EventStream.run(engine, text: stream, asOf: asOf)
            (report, rejected) = (render([engine], asOf: asOf), rejections.map(\.line))
        } else {
            (report, rejected) = parallel(program, stream, asOf: asOf, personKey: key, corrections: c.corrections)
        }
        let lines = report.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.allSatisfy({ $0.isEmpty || $0.hasPrefix(#"{"subject":"#) }) else { return ("(a report line without the key)\n" + report, rejected) }
        return (lines.map { $0.isEmpty ? "" : #"{"citizen":"# + $0.dropFirst(#"{"subject":"#.count) }.joined(separator: "\n"), rejected)
    }

    static func parallel(_ program: Program, _ stream: String, asOf: Int64?, personKey: PersonKey = .citizen,
                         corrections: Corrections? = nil) -> (String, [Int]?) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("difftest-\(UUID().uuidString)").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(stream.utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var rejected: [Int] = []
        guard case .success(let result) = ParallelStream.run(program: program, personKey: personKey, fd: fd, jobs: 2, asOf: asOf,
                                                              corrections: corrections, onReject: { r, _ in rejected.append(r.line) }) else {
            return ("(the parallel run failed)", nil)
        }
        var bytes: [UInt8] = []
        ParallelStream.writeReport(result, asOf: asOf) { bytes += $0 }
        return (String(decoding: bytes, as: UTF8.self), rejected.sorted())
    }

    /// The stream cut at a line chosen from the case's seed: the first part,
    /// a checkpoint, a fresh engine restored from it, the rest.
    static func resumed(_ program: Program, _ c: GeneratedCase, asOf: Int64?) -> (String, [Int]?) {
        let cut = c.lines.isEmpty ? 0 : Int(c.seed % UInt64(c.lines.count + 1))
        let first = Engine(program: program)
        if let corrections = c.corrections { first.enableCorrections(corrections) }
        let (_, early) = EventStream.run(first, text: c.lines[..<cut].map { $0 + "\n" }.joined(), asOf: asOf)
        let checkpoint = Checkpoint.encode([first], lines: cut)
        let second = Engine(program: program)
        if case .failure(let f) = Checkpoint.restore(checkpoint, into: [second]) { return ("(the checkpoint did not restore: \(f.description))", nil) }
        let (_, late) = EventStream.run(second, text: c.lines[cut...].map { $0 + "\n" }.joined(), asOf: asOf)
        return (render([second], asOf: asOf), early.map(\.line) + late.map { $0.line + cut })
    }

    static func library(_ c: GeneratedCase, asOf: Int64?) -> (String, [Int]?) {
        guard let policy = try? Policy.compile(c.files[0]) else { return ("(the library did not compile the policy)", nil) }
        let engine = RulesEngine(policy: policy, corrections: c.corrections)
        let (_, rejections) = engine.apply(ndjson: c.stream)
        return (engine.reportNDJSON(), rejections.map(\.line))
    }

    /// The test runner's (and the REPL's) way in: the lines the reference
    /// applied, as event literals in a `test` block, and expectations on
    /// every person's score, flags, denials and grants as the reference
    /// reports them. The report it returns is the reference's own when the
    /// test passes, and the failure otherwise.
    /// The lines of a case the reference applied (of types the policy
    /// knows), as event literals — what a test block and the REPL take —
    /// with the reference's model of just those lines.
    static func literals(_ c: GeneratedCase) -> (model: ReferenceModel, literals: [String])? {
        guard let full = reference(c) else { return nil }
        let applied = Set(full.people.values.flatMap { $0.filter { $0.event.type != nil }.map(\.event.line) })
        var sub = c
        sub.lines = c.lines.enumerated().filter { applied.contains($0.offset + 1) }.map(\.element)
        guard let model = reference(sub) else { return nil }
        var literals: [String] = []
        for (k, line) in sub.lines.enumerated() {
            guard let parsed = ReferenceStream.parse(Array(line.utf8), readFields: []),
                  let applied = model.people[parsed.person]?.first(where: { $0.event.line == k + 1 }) else { continue }
            // A literal names only declared fields (an undeclared one is an
            // error there; a stream ignores it).
            let declared = applied.event.type.flatMap { model.policy.events[$0].declared }.map { Set($0.map { model.policy.fields[$0.field] }) }
            let fields = applied.event.fields.filter { declared?.contains($0.key) ?? true }.sorted { $0.key < $1.key }.map { "\($0.key): \(literal($0.value))" }
            literals.append("\(Timestamp.format(parsed.time)) \(ReferenceStream.quote(parsed.person)): \(parsed.type) { \(fields.joined(separator: ", ")) }")
        }
        return (model, literals)
    }

    static func testRunner(_ c: GeneratedCase, program: Program) -> (String, [Int]?) {
        guard let full = reference(c), let (model, literals) = literals(c) else { return ("(no reference)", nil) }
        if model.people.isEmpty { return ("(skip)", nil) }  // a test must expect something
        var block = "test \"generated\" {\n"
        for literal in literals { block += "  \(literal)\n" }
        for id in model.people.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let line = model.report().split(separator: "\n").first(where: { $0.hasPrefix("{\"citizen\":\(ReferenceStream.quote(id)),") }),
                  let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            let who = ReferenceStream.quote(id)
            block += "  expect \(who) score == \(json["score"]!)\n"
            for key in ["flags", "denied", "granted"] {
                block += "  expect \(who) \(key) [\((json[key] as! [String]).joined(separator: ", "))]\n"
            }
        }
        block += "}\n"
        let files = c.files.enumerated().map { SourceFile(name: "policy\($0.offset + 1).rules", text: $0.element) }
        let result = PolicyCompiler.compile(SourceSet(files + [SourceFile(name: "generated.test.rules", text: block)]))
        let run = PolicyTests.run(result, testsIn: files.count)
        guard run.outcomes.count == 1, run.outcomes[0].passed else {
            let details = run.outcomes.flatMap(\.details).joined(separator: "\n")
            return ("(the test failed)\n\(block)\(details)\n\(result.errors.map(\.message))\n", nil)
        }
        return (full.report(), nil)
    }

    /// The REPL's way in: the policy files loaded, the applied lines typed
    /// as event literals, then `:state`, which must show the reference's
    /// report line for line.
    static func repl(_ c: GeneratedCase) -> (String, [Int]?) {
        guard let full = reference(c), let (model, literals) = literals(c) else { return ("(no reference)", nil) }
        if model.people.isEmpty { return ("(skip)", nil) }
        let files = Dictionary(uniqueKeysWithValues: c.files.enumerated().map { ("policy\($0.offset + 1).rules", $0.element) })
        let session = ReplSession(loader: PolicyLoader(read: { path in
            files[path].map { .success(Array($0.utf8)) } ?? .failure(PolicyLoader.ReadError("no such file"))
        }), write: { _, _ in nil })
        let loaded = session.load(files.keys.sorted())
        guard loaded.out.hasPrefix("loaded") else { return ("(the REPL did not load the policy)\n\(loaded.err)", nil) }
        for literal in literals {
            let reply = session.handle(literal)
            if reply.err.contains("error") || reply.err.contains("rejected") { return ("(the REPL refused \(literal))\n\(reply.err)", nil) }
        }
        let shown = session.handle(":state").out
        var expected = ""
        for line in model.report().split(separator: "\n") {
            guard let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            func list(_ key: String) -> String { "[" + (json[key] as! [String]).joined(separator: ", ") + "]" }
            // Attributes and outputs in the policy's order (the JSON object
            // keeps none).
            // keeps none). Numbers as written (Foundation's parser may not
            // give back the very double).
            func raw(_ key: String) -> String {
                let text = String(line), marker = JSONWriter.quoted(key) + ":"
                let start = text.range(of: marker, options: .backwards)!.upperBound
                return String(text[start...].prefix { $0 != "," && $0 != "}" })
            }
            let outputs = model.policy.reportExtras.map { extra -> String in
                switch extra {
                case .attribute(let k):
                    let name = model.policy.attributes[k].name
                    return "  \(name) " + (model.policy.attributes[k].type == .string ? JSONWriter.quoted(json[name] as! String) : raw(name))
                case .output(let k):
                    let name = model.policy.outputs[k].name
                    return "  \(name) " + raw(name)
                }
            }.joined()
            expected += "\(json["citizen"]!)  score \(json["score"]!)  flags \(list("flags"))  denied \(list("denied"))  granted \(list("granted"))\(outputs)\n"
        }
        return (shown == expected ? full.report() : "(the REPL showed)\n\(shown)(the reference, as the REPL shows it)\n\(expected)", nil)
    }

    static func literal(_ v: ReferenceModel.Value) -> String {
        switch v {
        case .bool(let b): return b ? "true" : "false"
        case .string(let s): return ReferenceStream.quote(s)
        case .number(let n):
            if n == n.rounded() && abs(n) >= 1e15 { return String(format: "%.0f", n) }
            if n == 0 { return n.sign == .minus ? "-0" : "0" }
            return "\(n)"
        }
    }

    /// `RulesEngine.apply(Event)`: every line the reference could read as
    /// an event, given as a typed `Event` (no NDJSON); lines that are not
    /// events at all cannot be typed and are left out, the reference run
    /// again without them.
    static func typedEvents(_ c: GeneratedCase) -> (String, [Int]?) {
        guard let policy = try? Policy.compile(c.files[0]) else { return ("(the library did not compile the policy)", nil) }
        var sub = c
        sub.lines = c.lines.filter { ReferenceStream.parse(Array($0.utf8), readFields: Set(policy.program.policy.fields)) != nil }
        guard let model = reference(sub) else { return ("(no reference)", nil) }
        let engine = RulesEngine(policy: policy, corrections: c.corrections)
        var events: [Event] = []
        for line in sub.lines {
            let parsed = ReferenceStream.parse(Array(line.utf8), readFields: [])!
            var fields: [String: FieldValue] = [:]
            for (key, value) in parsed.fields {
                switch value {
                case .number(let n): fields[key] = .number(n)
                case .bool(let b): fields[key] = .bool(b)
                case .string(let s): fields[key] = .string(String(decoding: s, as: UTF8.self))
                }
            }
            if let target = parsed.target { fields = ["target": .string(String(decoding: target, as: UTF8.self))] }
            let event = Event(person: String(decoding: parsed.person, as: UTF8.self), type: parsed.type,
                              time: Date(ticks: parsed.time), id: parsed.id.map { String(decoding: $0, as: UTF8.self) }, fields: fields)
            events.append(event)
        }
        // One at a time, or all at once (which looks ahead), by the seed.
        let outcomes = c.seed % 2 == 0 ? engine.apply(events) : events.map { engine.apply($0) }
        let rejected = outcomes.indices.filter { if case .rejected = outcomes[$0] { return true }; return false }.map { $0 + 1 }
        guard rejected == model.rejectedLines else {
            return ("(typed events rejected \(rejected); the reference, on the same lines, \(model.rejectedLines))", nil)
        }
        return (engine.reportNDJSON() == model.report() ? reference(c)!.report() : "(typed events reported)\n\(engine.reportNDJSON())(the reference, on the same lines)\n\(model.report())", nil)
    }

    // MARK: - Minimising

    /// Drops stream lines, then policy lines, while the case still fails.
    static func minimise(_ c: GeneratedCase) -> GeneratedCase {
        var best = c
        func fails(_ x: GeneratedCase) -> Bool {
            var stats = Stats()
            return compare(x, stats: &stats) != nil
        }
        var changed = true
        while changed {
            changed = false
            for k in best.lines.indices.reversed() {
                var x = best
                x.lines.remove(at: k)
                if fails(x) { best = x; changed = true }
            }
            for f in best.files.indices {
                let lines = best.files[f].split(separator: "\n", omittingEmptySubsequences: false)
                for k in lines.indices.reversed() where !lines[k].isEmpty {
                    var x = best
                    var kept = best.files[f].split(separator: "\n", omittingEmptySubsequences: false)
                    guard k < kept.count else { continue }
                    kept.remove(at: k)
                    x.files[f] = kept.joined(separator: "\n")
                    if fails(x) { best = x; changed = true }
                }
            }
        }
        return best
    }
}

@Test func showSomeCases() throws {
    guard ProcessInfo.processInfo.environment["DIFFTEST_SHOW"] != nil else { return }
    for seed in UInt64(1)...4 {
        var g = CaseGenerator(seed: seed * 7)
        let c = g.generate()
        print(c.repro)
        print("--- report\n" + (Differential.reference(c)?.report() ?? "nil"))
    }
}
