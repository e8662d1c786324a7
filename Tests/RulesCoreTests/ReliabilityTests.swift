import Foundation
import Testing
@testable import RulesCore
@testable import RulesFuzzChecks

/// Checkpoints, `--max-rejects` and the other promises of
/// docs/RELIABILITY.md.
@Suite("Reliability")
struct ReliabilityTests {
    static let policy = (try? ExplainTests.text("rules/citizen.rules")) ?? ""

    /// The report and notes of `events` applied to `engine`.
    static func finish(_ engine: Engine, _ events: String) -> (report: String, notes: [String]) {
        _ = EventStream.run(engine, text: events)
        var bytes: [UInt8] = []
        engine.writeReport { bytes += $0 }
        return (String(decoding: bytes, as: UTF8.self), engine.evaluationNotes())
    }

    @Test("the fingerprint: the same meaning however written, another for another meaning, and pinned for the shipped policy")
    func fingerprint() throws {
        let written = try compileOrFail("""
            let big = 100
            event pay { amount: number }
            score starts at 10, min 0
            pay where amount > big → -5, flag payer
            3 pay within 7 days → deny credit for 30 days
            while payer and score < 5 → deny loans
            """).fingerprint
        let rewritten = try compileOrFail("""
            # the same rules, another layout, the constant by value
            score starts at 10,   min 0
            event pay { amount: number }

            pay where amount > 100 → -5, flag payer
            3 pay within 1 week → deny credit for 30 days
            while payer and score < 5 → deny loans
            """).fingerprint
        #expect(written == rewritten)
        for changed in ["pay where amount > 101 → -5, flag payer", "pay where amount > 100 → -6, flag payer",
                        "pay where amount >= 100 → -5, flag payer", "pay where amount > 100 → -5, flag payer, deny travel"] {
            let other = try compileOrFail("""
                event pay { amount: number }
                score starts at 10, min 0
                \(changed)
                3 pay within 7 days → deny credit for 30 days
                while payer and score < 5 → deny loans
                """).fingerprint
            #expect(other != written, "\(changed)")
        }
        // The shipped policy's fingerprint is pinned: a change to the
        // encoding (Fingerprint.swift) must come with a new version, since
        // it refuses every checkpoint saved before it.
        #expect(Fingerprint.version == 1)
        // (Re-pinned when the policy gained `deny credit for days days`; the
        // text before it still gives the old pin, 10_345_799_948_122_008_443.)
        #expect(try compileOrFail(Self.policy).fingerprint == 11_880_007_019_111_093_992)
    }

    @Test("a stream run in two halves with a checkpoint between gives the whole run's report and notes",
          arguments: [1, 17, 500, 1999, 2999])
    func twoHalves(_ split: Int) throws {
        let program = try compileOrFail(Self.policy + "\nvolunteer where hours / (hours - 3) > 1 → +1\n")
        let lines = TraceTests.generated(seed: 5, count: 3000).split(separator: "\n", omittingEmptySubsequences: false)
        let first = lines[..<split].joined(separator: "\n") + "\n"
        let second = lines[split...].joined(separator: "\n")
        let whole = Self.finish(Engine(program: program), lines.joined(separator: "\n"))
        #expect(whole.notes.contains { $0.contains("division by zero") })

        let before = Engine(program: program)
        _ = EventStream.run(before, text: first)
        let saved = Checkpoint.encode([before], lines: split)
        let after = Engine(program: try compileOrFail(Self.policy + "\nvolunteer where hours / (hours - 3) > 1 → +1\n"))
        guard case .success(let info) = Checkpoint.restore(saved, into: [after]) else {
            Issue.record("the checkpoint did not load"); return
        }
        #expect(info.lines == split)
        let resumed = Self.finish(after, second)
        #expect(resumed.report == whole.report)
        #expect(resumed.notes == whole.notes)
        // Saving again gives the same bytes: nothing is lost or invented.
        #expect(Checkpoint.encode([after], lines: 3000) == Checkpoint.encode([{ () -> Engine in
            let e = Engine(program: program); _ = EventStream.run(e, text: lines.joined(separator: "\n")); return e }()], lines: 3000))
    }

    @Test("a checkpoint of another policy, version, or a damaged or cut one is refused with a reason")
    func refusals() throws {
        let program = try compileOrFail(Self.policy)
        let engine = Engine(program: program)
        _ = EventStream.run(engine, text: TraceTests.generated(seed: 9, count: 300))
        let good = Checkpoint.encode([engine], lines: 300)
        func refusal(_ bytes: [UInt8], _ p: Program? = nil) -> String? {
            if case .failure(let f) = Checkpoint.restore(bytes, into: [Engine(program: p ?? program)]) { return f.description }
            return nil
        }
        #expect(refusal(good) == nil)
        // The same rules written differently are the same policy.
        let reworded = try compileOrFail("# a comment\n" + Self.policy.replacingOccurrences(of: "→", with: "->"))
        #expect(refusal(good, reworded) == nil)
        // Another policy is not refused: what people have carries over.
        #expect(refusal(good, try compileOrFail(Self.policy + "\njaywalking → -2\n")) == nil)
        #expect(refusal(Array("hello".utf8))?.contains("not a rules checkpoint") == true)
        var version = good
        version[8] = 9
        #expect(refusal(version)?.contains("version 9") == true)
        #expect(refusal(Array(good.dropLast(5)))?.contains("damaged") == true)
        // Every single flipped byte is caught: never a crash, never a state.
        var rng = HotPathTests.Rng(state: 3)
        for _ in 0..<300 {
            var bad = good
            bad[rng.below(bad.count)] ^= UInt8(1 + rng.below(255))
            #expect(refusal(bad) != nil)
        }
        // Cut at every length near the ends, and at random ones.
        for n in [0, 7, 8, 12, 35, 36, good.count - 9, good.count - 1] + (0..<30).map({ _ in rng.below(good.count) }) {
            #expect(refusal(Array(good.prefix(n))) != nil)
        }
    }

    @Test("a checksum and a file given in pieces, however cut, are the checksum and the file given whole")
    func piecesAreTheWhole() throws {
        var rng = HotPathTests.Rng(state: 11)
        let path = NSTemporaryDirectory() + "rules-pieces-\(getpid())"
        defer { unlink(path) }
        for n in [0, 1, 7, 8, 9, 63, 64, 1000, (1 << 20) + 13, 3 << 20] {
            let bytes = (0..<n).map { _ in UInt8(rng.below(256)) }
            // Cut at random places, pieces of 0 to 20 bytes and some of
            // over a megabyte (written past the file's buffer).
            var cuts: [Range<Int>] = [], at = 0
            while at < n {
                let size = rng.below(10) == 0 ? rng.below(2 << 20) : rng.below(21)
                cuts.append(at..<min(n, at + size))
                at = min(n, at + size)
            }
            var sum = Hashing.Checksum(count: n)
            bytes.withUnsafeBytes { all in for cut in cuts { sum.add(UnsafeRawBufferPointer(rebasing: all[cut])) } }
            #expect(sum.value == Hashing.checksum(bytes), "\(n) bytes in \(cuts.count) pieces")
            #expect(Checkpoint.writeFile(to: path) { file in
                bytes.withUnsafeBytes { all in for cut in cuts { file.write(UnsafeRawBufferPointer(rebasing: all[cut])) } }
            } == nil)
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(bytes), "\(n) bytes written in \(cuts.count) pieces")
            // Gathered into chunks (the service's checkpoint): the same
            // bytes handed on, in order, and the same checksum; pieces of
            // eight bytes go in as numbers now and then.
            var handed: [UInt8] = []
            var chunked = ChunkedChecksum(count: n) { handed.append(contentsOf: $0) }
            bytes.withUnsafeBytes { all in
                for cut in cuts {
                    if cut.count == 8 && rng.below(2) == 0 {
                        chunked.word(UInt64(littleEndian: UnsafeRawBufferPointer(rebasing: all[cut]).loadUnaligned(as: UInt64.self)))
                    } else if cut.count == 4 && rng.below(2) == 0 {
                        chunked.word(UInt32(littleEndian: UnsafeRawBufferPointer(rebasing: all[cut]).loadUnaligned(as: UInt32.self)))
                    } else {
                        chunked.bytes(UnsafeRawBufferPointer(rebasing: all[cut]))
                    }
                }
            }
            #expect(chunked.finish() == Hashing.checksum(bytes), "\(n) bytes in \(cuts.count) pieces, chunked")
            #expect(handed == bytes, "\(n) bytes handed on in chunks")
        }
        // A byte that differs changes the checksum, wherever it is.
        let bytes = (0..<100).map { UInt8($0) }
        for k in [0, 7, 8, 50, 99] {
            var other = bytes
            other[k] ^= 1
            #expect(Hashing.checksum(other) != Hashing.checksum(bytes))
        }
    }

    /// `rules run --jobs`'s run of `text` (from a file, as it reads one).
    static func parallelRun(_ program: Program, _ text: String, jobs: Int,
                            resume: [UInt8]? = nil) throws -> Result<ParallelStream.Result, Checkpoint.Failure> {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pr-\(UUID().uuidString)").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        return ParallelStream.run(program: program, fd: fd, jobs: jobs, resume: resume, onReject: { _, _ in })
    }

    @Test("a parallel run saves the same checkpoint as one thread and resumes from it")
    func parallelCheckpoint() throws {
        let program = try compileOrFail(Self.policy)
        let events = TraceTests.generated(seed: 21, count: 4000)
        let lines = events.split(separator: "\n")
        let first = lines[..<2500].joined(separator: "\n") + "\n", second = lines[2500...].joined(separator: "\n") + "\n"
        let one = Engine(program: program)
        _ = EventStream.run(one, text: first)
        guard case .success(let parallel) = try Self.parallelRun(program, first, jobs: 3) else {
            Issue.record("the parallel run failed"); return
        }
        let saved = Checkpoint.encode([one], lines: 2500)
        #expect(Checkpoint.encode(parallel.engines, lines: 2500) == saved)

        guard case .success(let resumed) = try Self.parallelRun(program, second, jobs: 2, resume: saved) else {
            Issue.record("the parallel resume failed"); return
        }
        var bytes: [UInt8] = []
        ParallelStream.writeReport(resumed, asOf: nil) { bytes += $0 }
        #expect(String(decoding: bytes, as: UTF8.self) == Self.finish(Engine(program: program), events).report)
    }

    @Test("a checkpoint whose people are written by a thread per engine at once, its checksum taken after, is one thread's bytes")
    func checkpointWrittenInParallel() throws {
        let program = try compileOrFail(Self.policy)
        // Thousands of people (the people are split between the threads
        // from 4,096 on), ids of several lengths, in no order.
        let events = TraceTests.generated(seed: 5, count: 20_000).split(separator: "\n").enumerated().map { i, line in
            line.replacingOccurrences(of: #""citizen":"p"#, with: #""citizen":"\#((i * 7919) % 7001)-p"#)
        }.joined(separator: "\n") + "\n"
        let one = Engine(program: program)
        _ = EventStream.run(one, text: events)
        guard case .success(let parallel) = try Self.parallelRun(program, events, jobs: 2) else {
            Issue.record("the parallel run failed"); return
        }
        #expect(one.people.count > 4096 * 2)
        let saved = Checkpoint.encode([one], lines: 20_000)
        let atOnce: Checkpoint.InParallel = { task in
            nonisolated(unsafe) let task = task  // each call touches its own piece
            DispatchQueue.concurrentPerform(iterations: 2) { task($0) }
        }
        let unsealed = Checkpoint.encodeUnsealed(parallel.engines, lines: 20_000, inParallel: atOnce)
        #expect(unsealed.count == saved.count)
        #expect(unsealed.bytes == saved)
        // Written in pieces, as the service writes it: the same bytes again.
        var pieces: [UInt8] = []
        unsealed.write { pieces += $0 }
        #expect(pieces == saved)
        guard case .success(let info) = Checkpoint.restore(saved, into: [Engine(program: program)]) else {
            Issue.record("the checkpoint did not load"); return
        }
        #expect(info.people == one.people.count)
    }

    @Test("--max-rejects stops at the rejection over the limit, without a report, exit 3; one thread or two")
    func maxRejects() throws {
        let events = (1...40).map { i in
            i % 4 == 0 ? "not json \(i)" : #"{"citizen":"p\#(i % 5)","type":"littering","time":"2026-02-01T00:00:\#(10 + i)Z"}"#
        }.joined(separator: "\n") + "\n"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mr-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let policyPath = dir.appendingPathComponent("p.rules").path
        try "littering → -3\n".write(toFile: policyPath, atomically: true, encoding: .utf8)
        for jobs in ["1", "2"] {
            let rejects = dir.appendingPathComponent("rejects-\(jobs).ndjson").path
            let r = try CLITests.rules(["run", policyPath, "--max-rejects", "3", "--jobs", jobs, "--rejects", rejects], stdin: events)
            #expect(r.status == 3)
            #expect(r.stdout.isEmpty)
            #expect(r.stderr.contains("stopped at <stdin>:16: more than 3 rejected lines (--max-rejects 3); no report"), "\(r.stderr)")
            let saved = try String(contentsOfFile: rejects, encoding: .utf8).split(separator: "\n")
            #expect(saved.map { $0.prefix(12) } == [#"{"line":4,"r"#, #"{"line":8,"r"#, #"{"line":12,""#, #"{"line":16,""#])
            let fine = try CLITests.rules(["run", policyPath, "--max-rejects", "10", "--jobs", jobs], stdin: events)
            #expect(fine.status == 0 && fine.stdout.contains(#""citizen":"p0""#))
        }
    }

    @Test("--state, --checkpoint-every and --resume from the command line; what cannot go together is refused")
    func commandLine() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let policyPath = Repo.root.appendingPathComponent("rules/citizen.rules").path
        let events = TraceTests.generated(seed: 4, count: 1000)
        let lines = events.split(separator: "\n")
        let state = dir.appendingPathComponent("state").path, every = dir.appendingPathComponent("every").path
        let whole = try CLITests.rules(["run", policyPath], stdin: events)
        let a = try CLITests.rules(["run", policyPath, "--state", state], stdin: lines[..<600].joined(separator: "\n") + "\n")
        #expect(a.status == 0)
        // Checkpoints along the way end in the same state as one at the end.
        let b = try CLITests.rules(["run", policyPath, "--state", every, "--checkpoint-every", "7"],
                                   stdin: lines[..<600].joined(separator: "\n") + "\n")
        #expect(b.status == 0)
        #expect(FileManager.default.contents(atPath: state) == FileManager.default.contents(atPath: every))
        let c = try CLITests.rules(["run", policyPath, "--resume", state, "--state", state],
                                   stdin: lines[600...].joined(separator: "\n") + "\n")
        #expect(c.status == 0)
        #expect(c.stderr.contains("resumed from \(state): 600 lines already applied"))
        #expect(c.stdout == whole.stdout)
        let d = try CLITests.rules(["run", policyPath, "--resume", state, "--events", "/dev/null"])
        #expect(d.stderr.contains("1000 lines already applied"))

        let other = dir.appendingPathComponent("other.rules").path
        try "speeding → -1\n".write(toFile: other, atomically: true, encoding: .utf8)
        let e = try CLITests.rules(["run", other, "--resume", state, "--events", "/dev/null"])
        #expect(e.status == 0 && e.stderr.contains("saved under another policy: what people have carries over by name"), "\(e.stderr)")
        let missing = try CLITests.rules(["run", policyPath, "--resume", dir.appendingPathComponent("nope").path])
        #expect(missing.status == 1 && missing.stderr.contains("cannot read the state"))
        for args in [["--checkpoint-every", "5"], ["--state", state, "--as-of", "2026-01-01"],
                     ["--state", state, "--checkpoint-every", "5", "--jobs", "2"], ["--resume", state, "--trace", "/dev/null"],
                     ["--max-rejects", "-1"], ["--checkpoint-every", "0", "--state", state]] {
            let r = try CLITests.rules(["run", policyPath] + args, stdin: "")
            #expect(r.status == 2, "\(args): \(r.stderr)")
        }
    }
}

@Suite("Limits")
struct LimitTests {
    @Test("a very long expression is an error with its position, not a stack overflow")
    func longExpression() {
        for (term, op, end) in [("x > 1", " and ", ""), ("x", " + ", " > 1"), ("x > 1", " or ", "")] {
            let text = "event e { x: number }\ne where " + Array(repeating: term, count: 20_000).joined(separator: op) + end + " → -1\n"
            let result = PolicyCompiler.compile(text)
            #expect(result.program == nil)
            #expect(result.diagnostics.contains { $0.code == .tooDeep && $0.message.contains("500 operators") })
        }
        let list = "event e { x: number }\ne where x in [" + (1...5000).map(String.init).joined(separator: ", ") + "] → -1\n"
        #expect(PolicyCompiler.compile(list).diagnostics.contains { $0.code == .tooDeep })
        // Within the limit it still works.
        let fine = "event e { x: number }\ne where " + Array(repeating: "x > 1", count: 200).joined(separator: " and ") + " → -1\n"
        #expect(PolicyCompiler.compile(fine).program != nil)
    }

    @Test("a stream line over the length limit is rejected by number, skipped unread; the lines around it are applied")
    func longStreamLine() throws {
        let program = try compileOrFail("littering → -3\n")
        let ok = #"{"citizen":"a","type":"littering","time":"2026-01-01"}"#
        let long = #"{"citizen":"a","type":"littering","time":"2026-01-02","note":""# + String(repeating: "x", count: 5000) + "\"}"
        let text = [ok, long, ok.replacingOccurrences(of: "01-01", with: "01-03"), long].joined(separator: "\n")
        let engine = Engine(program: program)
        var rejections: [Rejection] = []
        let summary = EventStream.run(engine, reader: LineReader(bytes: Array(text.utf8), maxLineBytes: 1000), asOf: nil) {
            r, _ in rejections.append(r)
        }
        #expect(summary.read == 4 && summary.applied == 2 && summary.rejected == 2, "\(summary) \(rejections)")
        #expect(rejections.map(\.line) == [2, 4])
        #expect(rejections.first?.reason.contains("\(long.utf8.count) bytes, longer than the limit") == true)
        // The parallel reader has the same limit (16 MiB).
        let huge = #"{"citizen":"b","type":"littering","time":"2026-01-02","note":""# + String(repeating: "y", count: 17 << 20) + "\"}"
        let events = [ok, huge, ok.replacingOccurrences(of: "01-01", with: "01-03")].joined(separator: "\n") + "\n"
        let one = try ParallelStreamTests.run("littering → -3\n", events, jobs: 1)
        let two = try ParallelStreamTests.run("littering → -3\n", events, jobs: 2)
        #expect(two.0 == one.0 && two.1 == one.1)
        #expect(one.1.count == 1 && one.1[0].hasPrefix("2: the line is \(huge.utf8.count) bytes"), "\(one.1.map { $0.prefix(90) })")
        #expect(!one.0.contains("\"b\""))
    }

    @Test("a huge line of garbage gives capped diagnostics whose source lines are clipped around the column")
    func hugeLine() {
        var rng = HotPathTests.Rng(state: 17)
        let garbage = String(decoding: (0..<1_000_000).map { _ in UInt8(32 + rng.below(95)) }, as: UTF8.self)
        let result = PolicyCompiler.compile(garbage)
        #expect(result.diagnostics.filter { $0.severity == .error }.count <= DiagnosticSink.maxErrors + 1)
        let rendered = DiagnosticRenderer(sources: result.sources).render(result.diagnostics)
        let longest = rendered.split(separator: "\n").map { $0.unicodeScalars.count }.max() ?? 0
        #expect(longest < 300, "a rendered line of \(longest) characters")
        #expect(rendered.contains("…"))
    }
}

@Suite("Fuzz findings")
struct FuzzRegressionTests {
    static func inputs(_ target: String) -> [String] {
        let dir = Repo.root.appendingPathComponent("Tests/Fixtures/fuzz/\(target)")
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted().map { "\(target)/\($0)" }
    }

    static let shipped = ["citizen", "moderation", "telematics"].compactMap { try? ExplainTests.text("rules/\($0).rules") }

    @Test("every saved input passes the fuzz targets' checks", arguments: inputs("policy") + inputs("stream") + inputs("engine") + inputs("http") + inputs("resp"))
    func replay(_ name: String) throws {
        let bytes = Array(try Data(contentsOf: Repo.root.appendingPathComponent("Tests/Fixtures/fuzz/\(name)")))
        let broken: String?
        switch name.split(separator: "/")[0] {
        case "policy": broken = FuzzChecks.policy(bytes)
        case "stream": broken = FuzzChecks.stream(bytes, program: try compileOrFail(Self.shipped[0]))
        case "http": broken = FuzzChecks.http(bytes)
        case "resp": broken = FuzzChecks.resp(bytes)
        default: broken = FuzzChecks.engine(bytes, policies: Self.shipped)
        }
        #expect(broken == nil)
    }

    @Test("there are saved inputs for every target")
    func present() {
        for target in ["policy", "stream", "engine", "http", "resp"] { #expect(!Self.inputs(target).isEmpty) }
    }
}
