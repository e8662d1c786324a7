import Foundation
import Testing
@testable import RulesCore

/// Checkpoints that outlive a policy (docs/LANGUAGE.md, "Corrections" and
/// docs/RELIABILITY.md): what people have carries over by name, `while`
/// rules are evaluated at once, nothing is retroactive, and what does not
/// carry over is said.
@Suite("Resuming under a changed policy")
struct PolicyChangeTests {
    static func program(_ text: String) throws -> Program { try compileOrFail(text) }

    static func report(_ engine: Engine) -> String {
        var bytes: [UInt8] = []
        engine.writeReport { bytes += $0 }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A while rule that reads the score and flags the policy sets, and
    /// sets a new flag no rule reads: it changes nothing before the resume.
    /// With kept history, also windows the old policy did not have (kept
    /// history fills them at the resume).
    static func addedWhileRule(_ rng: inout SeededRandom, history: Bool) -> String {
        var conditions = ["score < 95", "score >= 100", "reckless", "score < 90 and debtor", "not debtor or score > 80"]
        if history {
            conditions += ["count(volunteer within 30 days) >= 1", "sum(volunteer.hours within 60 days) > 10",
                           "count(debt where amount > 100 within 20 days) >= 1 and score < 100", "count(speeding within 7 days) >= 2"]
        }
        let condition = rng.pick(conditions)
        return "while \(condition) → flag \(rng.pick(["on notice", "under review"]))\n"
    }

    @Test("a policy with an added while rule, resumed from a checkpoint, gives what one whole run of it gives (new windows too, with kept history)")
    func addedWhileRule() throws {
        var filled = 0
        for seed in UInt64(1)...80 {
            var rng = SeededRandom(seed: seed)
            let history = seed % 2 == 0
            let old = CorrectionsTests.policy
            let new = old + "\n" + Self.addedWhileRule(&rng, history: history)
            let lines = CorrectionsTests.stream(seed: seed, count: 60, distinct: false).map(\.text)
            let cut = rng.below(lines.count + 1)
            let first = Engine(program: try Self.program(old))
            if history { first.enableCorrections(Corrections(retain: 1000 * 365 * CorrectionsTests.day)) }
            _ = EventStream.run(first, text: lines[..<cut].map { $0 + "\n" }.joined())
            let second = Engine(program: try Self.program(new))
            guard case .success(let info) = Checkpoint.restore(Checkpoint.encode([first], lines: cut), into: [second]) else {
                Issue.record("seed \(seed): the checkpoint did not restore"); continue
            }
            #expect(info.policyChanged && info.notes.allSatisfy { $0.contains("is filled from the kept history") }, "seed \(seed): \(info.notes)")
            filled += info.notes.count
            _ = EventStream.run(second, text: lines[cut...].map { $0 + "\n" }.joined())
            let whole = Engine(program: try Self.program(new))
            _ = EventStream.run(whole, text: lines.map { $0 + "\n" }.joined())
            #expect(Self.report(second) == Self.report(whole), "seed \(seed), cut \(cut)")
        }
        #expect(filled > 10)
    }

    @Test("what carries over by name, what is dropped and said, the score within the new bounds; never retroactive")
    func carryOver() throws {
        let old = try Self.program("""
            score starts at 100
            speeding → -5
            3 speeding within 30 days → deny driving for 90 days
            debt → flag debtor
            volunteer → grant fast lane for 10 days
            """)
        let new = try Self.program("""
            score starts at 100, min 90
            speeding → -1
            3 speeding within 30 days → deny driving for 90 days
            volunteer → grant fast lane for 10 days
            while count(debt within 30 days) >= 1 → flag recent debt
            """)
        let first = Engine(program: old)
        first.enableCorrections(Corrections(retain: 30 * CorrectionsTests.day))
        _ = EventStream.run(first, text: """
            {"citizen":"dave","type":"speeding","time":"2026-03-01","id":"t-1"}
            {"citizen":"dave","type":"speeding","time":"2026-03-02","id":"t-2"}
            {"citizen":"dave","type":"speeding","time":"2026-03-03","id":"t-3"}
            {"citizen":"dave","type":"speeding","time":"2026-03-04","id":"t-4"}
            {"citizen":"ann","type":"debt","time":"2026-03-04"}
            {"citizen":"ann","type":"volunteer","time":"2026-03-04"}

            """)
        let second = Engine(program: new)
        guard case .success(let info) = Checkpoint.restore(Checkpoint.encode([first], lines: 6), into: [second]) else {
            Issue.record("the checkpoint did not restore"); return
        }
        #expect(info.policyChanged)
        #expect(info.notes == [
            "`flag debtor` set by event rules is not in the new policy: dropped",
            "a window new in this policy is filled from the kept history (30 days): `count(debt within 30 days)`",
        ])
        // dave: 80 clamped to the new minimum 90; his denial (until 05-30)
        // and ann's grant (until 03-14) carry over with their ends; the new
        // `while` rule holds at once: ann's debt is in the kept history.
        #expect(Self.report(second) == """
            {"citizen":"ann","score":100,"flags":["recent_debt"],"denied":[],"granted":["fast_lane"]}
            {"citizen":"dave","score":90,"flags":[],"denied":["driving"],"granted":[]}

            """)
        // A window whose condition reads the state cannot be filled from
        // past lines (the state before each is gone): it starts empty.
        let third = Engine(program: try Self.program("debt → -1\nwhile count(debt where score < 50 within 30 days) >= 1 → flag x\n"))
        guard case .success(let other) = Checkpoint.restore(Checkpoint.encode([first], lines: 6), into: [third]) else {
            Issue.record("the checkpoint did not restore"); return
        }
        #expect(other.notes.contains("a window new in this policy starts empty: `count(debt where score < 50 within 30 days)`"), "\(other.notes)")
        // History carries over sealed: an old event cannot be taken back
        // (its effects are in the state carried over); a new one can, and
        // dave is rebuilt from the state carried over, not from scratch.
        let (_, rejections) = EventStream.run(second, text: """
            {"citizen":"dave","type":"speeding","time":"2026-03-05","id":"t-5"}
            {"citizen":"dave","type":"retract","target":"t-2","time":"2026-03-06"}
            {"citizen":"dave","type":"retract","target":"t-5","time":"2026-03-06"}

            """)
        #expect(rejections.map(\.reason) == [
            #"cannot retract "t-2": it was applied under the policy in force before the resume; its effects are part of the state carried over"#,
        ])
        #expect(Self.report(second).contains(#"{"citizen":"dave","score":90,"flags":[],"denied":["driving"],"granted":[]}"#))
    }

    @Test("the same policy resumes exactly, kept history and retracted events too")
    func samePolicyWithHistory() throws {
        let keep = Corrections(retain: 1000 * 365 * CorrectionsTests.day, lateness: CorrectionsTests.day)
        for seed in UInt64(1)...30 {
            var rng = SeededRandom(seed: seed * 3)
            let events = CorrectionsTests.stream(seed: seed, count: 50, distinct: false)
            var lines: [String] = []
            for (k, e) in events.enumerated() {
                lines.append(e.text)
                if rng.chance(20) { lines.append(CorrectionsTests.retraction(events[rng.below(k + 1)], id: "e\(rng.below(k + 1))", at: e.time)) }
            }
            let cut = rng.below(lines.count + 1)
            let first = Engine(program: CorrectionsTests.program)
            first.enableCorrections(keep)
            _ = EventStream.run(first, text: lines[..<cut].map { $0 + "\n" }.joined())
            let second = Engine(program: CorrectionsTests.program)
            guard case .success(let info) = Checkpoint.restore(Checkpoint.encode([first], lines: cut), into: [second]) else {
                Issue.record("seed \(seed): no restore"); continue
            }
            #expect(!info.policyChanged && second.history?.lateness == keep.lateness)
            let (_, late) = EventStream.run(second, text: lines[cut...].map { $0 + "\n" }.joined())
            let whole = Engine(program: CorrectionsTests.program)
            whole.enableCorrections(keep)
            let (_, all) = EventStream.run(whole, text: lines.map { $0 + "\n" }.joined())
            #expect(Self.report(second) == Self.report(whole), "seed \(seed), cut \(cut)")
            #expect(late.map { $0.line + cut } == all.map(\.line).filter { $0 > cut }, "seed \(seed)")
        }
    }
}
