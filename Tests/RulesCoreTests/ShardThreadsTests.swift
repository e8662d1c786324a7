import Foundation
@testable import RulesTooling
import Testing

/// The shards' threads: every task of every phase done once, a phase only
/// after the one before, whatever thread takes it.
@Suite("Shard threads")
struct ShardThreadsTests {
    @Test("2 and 3 shards, 2 phases, 20,000 calls: every task once, in phase order", .timeLimit(.minutes(1)))
    func phasesInOrder() {
        for shards in [2, 3] {
            let threads = ShardThreads(shards: shards)
            final class Counts: @unchecked Sendable {
                var done: [Int]
                init(_ n: Int) { done = Array(repeating: 0, count: n) }
            }
            for call in 0..<20_000 {
                let counts = Counts(2 * shards)
                let lock = NSLock()
                var misordered = 0
                threads.run(phases: 2) { phase, k in
                    if call % 7 == 0 { usleep(UInt32(k * 20)) }  // a slow task now and then
                    lock.lock()
                    if phase == 1 && counts.done[0..<shards].contains(0) { misordered += 1 }
                    counts.done[phase * shards + k] += 1
                    lock.unlock()
                }
                #expect(counts.done == Array(repeating: 1, count: 2 * shards), "call \(call)")
                #expect(misordered == 0)
            }
        }
    }
}
