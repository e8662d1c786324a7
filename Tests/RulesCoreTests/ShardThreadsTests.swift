import Foundation
@testable import RulesTooling
import Testing

/// The shards' threads: every shard's task done once per call, whatever
/// thread takes it, and all of them before the call returns.
@Suite("Shard threads")
struct ShardThreadsTests {
    @Test("2 and 3 shards, 20,000 calls: every task once, all done when the call returns", .timeLimit(.minutes(1)))
    func everyTaskOnce() {
        for shards in [2, 3] {
            let threads = ShardThreads(shards: shards)
            final class Counts: @unchecked Sendable {
                var done: [Int]
                init(_ n: Int) { done = Array(repeating: 0, count: n) }
            }
            for call in 0..<20_000 {
                let counts = Counts(shards)
                let lock = NSLock()
                threads.run { k in
                    if call % 7 == 0 { usleep(UInt32(k * 20)) }  // a slow task now and then
                    lock.lock()
                    counts.done[k] += 1
                    lock.unlock()
                }
                lock.lock()
                #expect(counts.done == Array(repeating: 1, count: shards), "call \(call)")
                lock.unlock()
            }
        }
    }
}
