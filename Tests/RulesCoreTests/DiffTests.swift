import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

/// `rules diff` (docs/LANGUAGE.md): exactly the people whose `rules run`
/// lines differ, with those lines, and a summary that counts them right.
@Suite("rules diff")
struct DiffTests {
    static func run(_ program: Program, _ stream: String) -> [String: String] {
        let engine = Engine(program: program)
        _ = EventStream.run(engine, text: stream)
        var bytes: [UInt8] = []
        engine.writeReport { bytes += $0 }
        var lines: [String: String] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let json = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            lines[json["citizen"] as! String] = String(line)
        }
        return lines
    }

    @Test("on random policy pairs, the diff lists exactly the people whose rules run lines differ, with those lines")
    func exactlyTheDifferences() throws {
        var compared = 0, differing = 0
        for seed in UInt64(1)...120 {
            var a = CaseGenerator(seed: seed), b = CaseGenerator(seed: seed + 10_000)
            let one = a.generate(), two = b.generate()
            let stream = one.stream
            let compile = { (files: [String]) in
                PolicyCompiler.compile(SourceSet(files.enumerated().map { SourceFile(name: "p\($0.offset).rules", text: $0.element) })).program
            }
            guard let old = compile(one.files), let new = compile(two.files) else { continue }
            let diff = PolicyDiff.run(old: old, new: new, stream: Array(stream.utf8))
            let x = Self.run(old, stream), y = Self.run(new, stream)
            var expected: [String] = []
            for person in Set(x.keys).union(y.keys).sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
            where x[person] != y[person] {
                expected.append("{\"citizen\":\(JSONWriter.quoted(person)),\"old\":\(x[person] ?? "null"),\"new\":\(y[person] ?? "null")}")
            }
            #expect(diff.jsonLines() == expected, "seed \(seed)")
            #expect(diff.people == Set(x.keys).union(y.keys).count)
            // The same policy on both sides: nothing differs.
            #expect(PolicyDiff.run(old: old, new: old, stream: Array(stream.utf8)).changes.isEmpty)
            compared += 1
            differing += expected.count
        }
        #expect(compared > 100 && differing > 100, "\(compared) pairs, \(differing) differing people")
    }

    static let old = """
        score starts at 1000
        speeding → -5
        3 speeding within 30 days → deny driving for 90 days
        debt → flag debtor
        while score < 990 → flag low trust
        """
    static let new = """
        score starts at 1000
        speeding → -10
        2 speeding within 30 days → deny driving for 90 days
        while score >= 1000 → grant fast lane
        """
    static let stream = """
        {"citizen":"dave","type":"speeding","time":"2026-03-01"}
        {"citizen":"dave","type":"speeding","time":"2026-03-03"}
        {"citizen":"ann","type":"speeding","time":"2026-03-03"}
        {"citizen":"bob","type":"debt","time":"2026-03-03"}
        {"citizen":"cy","type":"parking","time":"2026-03-03"}

        """

    @Test("text: what changes for each person and the rules that make it; the summary counts names and scores, with a histogram")
    func text() throws {
        let compile = { (text: String, name: String) in PolicyCompiler.compile(SourceSet([SourceFile(name: name, text: text)])).program! }
        let diff = PolicyDiff.run(old: compile(Self.old, "old.rules"), new: compile(Self.new, "new.rules"),
                                  stream: Array(Self.stream.utf8), rules: true)
        #expect(diff.textLines() == [
            "ann: score 995 → 990 (-5)",
            "    new.rules:2  speeding → -10   fired 0 → 1 time",
            "    old.rules:2  speeding → -5   fired 1 → 0 times",
            "bob: flags - debtor; granted + fast_lane",
            "    old.rules:4  debt → flag debtor   fired 1 → 0 times",
            "    new.rules:4  while score >= 1000 → grant fast lane   holds only under the new policy",
            "cy: granted + fast_lane",
            "    new.rules:4  while score >= 1000 → grant fast lane   holds only under the new policy",
            "dave: score 990 → 980 (-10); denied + driving",
            "    new.rules:3  2 speeding within 30 days → deny driving for 90 days   fired 0 → 1 time",
            "    new.rules:2  speeding → -10   fired 0 → 2 times",
            "    old.rules:2  speeding → -5   fired 2 → 0 times",
        ])
        #expect(diff.summaryLines(histogram: true) == [
            "4 of 4 people changed (0 only under the new policy, 0 only under the old)",
            "no longer flagged: debtor 1",
            "newly denied: driving 1",
            "newly granted: fast_lane 2",
            "score: 0 up, 2 down (by -10 to -5)",
            "-10 … -8  ██████████████████████████████ 1",
            " -7 … -5  ██████████████████████████████ 1",
        ])
        #expect(diff.summaryLines(histogram: false).count == 5)
    }

    @Test("the histogram: equal-width bins from the lowest change, empty ones left out, bars to scale")
    func histogram() {
        #expect(PolicyDiff.histogram([-20, -15, -11, 5, 5, 10]) == [
            "-20 … -15  ██████████████████████████████ 2",
            " -14 … -9  ███████████████ 1",
            "  +4 … +9  ██████████████████████████████ 2",
            "      +10  ███████████████ 1",
        ])
    }

    @Test("through the binary: lines on stdout, the summary on stderr, exit 0 with differences; usage errors exit 2")
    func binary() throws {
        let dir = try CLITests.tempDir()
        let old = dir.appendingPathComponent("old.rules"), new = dir.appendingPathComponent("new.rules")
        try Self.old.write(to: old, atomically: true, encoding: .utf8)
        try Self.new.write(to: new, atomically: true, encoding: .utf8)
        let r = try CLITests.rules(["diff", "--old", old.path, "--new", new.path], stdin: Self.stream)
        #expect(r.status == 0)
        #expect(r.stdout.split(separator: "\n").count == 4)
        #expect(r.stdout.hasPrefix(#"{"citizen":"ann","old":{"citizen":"ann","score":995,"flags":[],"denied":[],"granted":[]},"new":{"citizen":"ann","score":990,"#))
        #expect(r.stderr.contains("rules diff: 4 of 4 people changed"))
        #expect(r.stderr.contains("rules diff: newly granted: fast_lane 2"))
        let same = try CLITests.rules(["diff", "--old", old.path, "--new", old.path], stdin: Self.stream)
        #expect(same.status == 0 && same.stdout.isEmpty && same.stderr.contains("0 of 4 people changed"))
        for (args, message) in [
            (["diff", "--old", old.path], "name the policies to compare"),
            (["diff", "--old", old.path, "--new", new.path, "--format", "xml"], "--format takes json or text"),
            (["diff", "--old", "--new", new.path], "--old needs at least one value"),
            (["diff", old.path, "--old", old.path, "--new", new.path], "policies follow --old and --new"),
        ] {
            let e = try CLITests.rules(args, stdin: Self.stream)
            #expect(e.status == 2, "\(args)")
            #expect(e.stderr.contains(message), "\(args): \(e.stderr)")
        }
        // docs/LANGUAGE.md's example, as the binary prints it.
        try "score starts at 1000\nspeeding → -5\n3 speeding within 30 days → deny driving for 90 days\n".write(to: old, atomically: true, encoding: .utf8)
        try "score starts at 1000\nspeeding → -10\n2 speeding within 30 days → deny driving for 90 days\n".write(to: new, atomically: true, encoding: .utf8)
        let example = try CLITests.rules(["diff", "--old", old.path, "--new", new.path, "--format", "text"], stdin: """
            {"citizen":"dave","type":"speeding","time":"2026-03-01"}
            {"citizen":"dave","type":"speeding","time":"2026-03-03"}
            {"citizen":"ann","type":"speeding","time":"2026-03-03"}
            {"citizen":"bob","type":"parking","time":"2026-03-03"}

            """)
        let docs = try String(contentsOf: Repo.root.appendingPathComponent("docs/LANGUAGE.md"), encoding: .utf8)
        #expect(example.status == 0 && !example.stdout.isEmpty && docs.contains("```\n" + example.stdout.replacingOccurrences(of: dir.path + "/", with: "") + "```"), "\(example.stdout)\(example.stderr)")
        // The README's what-if, run from the repository as it says.
        let readme = try String(contentsOf: Repo.root.appendingPathComponent("README.md"), encoding: .utf8)
        let whatIf = try CLITests.rules(["diff", "--old", Repo.root.appendingPathComponent("rules/citizen.rules").path,
                                         "--new", Repo.root.appendingPathComponent("rules/citizen.rules").path,
                                         Repo.root.appendingPathComponent("examples/stricter-littering.rules").path,
                                         "--events", Repo.root.appendingPathComponent("examples/citizen.ndjson").path, "--format", "text"])
        #expect(readme.contains("```\n" + whatIf.stdout.replacingOccurrences(of: Repo.root.path + "/", with: "") + "```"), "\(whatIf.stdout)")
        let broken = dir.appendingPathComponent("broken.rules")
        try "speeding → -".write(to: broken, atomically: true, encoding: .utf8)
        #expect(try CLITests.rules(["diff", "--old", old.path, "--new", broken.path], stdin: Self.stream).status == 1)
    }
}
