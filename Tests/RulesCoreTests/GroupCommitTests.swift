import Foundation
@testable import RulesTooling
import Testing

/// The group commit on its own, under many threads: every record answered,
/// applied in the order it was written, each only once it is in the log,
/// syncs shared.
@Suite("Group commit")
struct GroupCommitTests {
    /// What the records' `apply`s saw, across threads.
    final class Seen: @unchecked Sendable {
        let lock = NSLock()
        var applied: [[UInt8]] = [], early = 0, byReader = 0
    }

    /// A new log in `directory` and a group commit over it that counts, in
    /// `early`, every record applied before the file holds it (written;
    /// synced too, but that cannot be seen from here).
    static func watchedCommits(in directory: String) throws -> (EventLog, GroupCommit, Seen) {
        let (log, _, _) = try EventLog.open(in: directory, first: .policy("{}")) { _ in }
        let path = directory + "/events.log"
        let seen = Seen()
        let commits = GroupCommit(log: log) { apply, end in
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            if size < end { seen.lock.lock(); seen.early += 1; seen.lock.unlock() }
            return apply()
        }
        return (log, commits, seen)
    }

    @Test("16 threads commit 200 records each: all answered, applied in log order, none before it is written, syncs shared", .timeLimit(.minutes(1)))
    func manyThreads() throws {
        let directory = NSTemporaryDirectory() + "rules-group-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (log, commits, seen) = try Self.watchedCommits(in: directory)
        let threads = 16, each = 200
        // Threads of their own (a dispatch queue would run two at a time here).
        let done = DispatchGroup()
        for t in 0..<threads {
            done.enter()
            Thread {
                defer { done.leave() }
                for k in 0..<each {
                let body = Array("{\"t\":\(t),\"k\":\(k)}\n".utf8)
                let answer = commits.commit(.body(body), refusal: "not stored") {
                    seen.lock.lock(); seen.applied.append(body); seen.lock.unlock()
                    return .json(200, "{}")
                }
                #expect(answer.status == 200)
                }
            }.start()
        }
        done.wait()
        let applied = seen.applied
        var logged: [[UInt8]] = []
        try log.records(upTo: log.end) { if case .body(let b) = $0 { logged.append(b) } }
        #expect(applied.count == threads * each)
        #expect(logged == applied, "applied in the order written")
        #expect(seen.early == 0)
        // Each thread's own records in its order.
        for t in 0..<threads {
            let mine = applied.filter { $0.starts(with: Array("{\"t\":\(t),".utf8)) }
            #expect(mine == (0..<each).map { Array("{\"t\":\(t),\"k\":\($0)}\n".utf8) })
        }
        #expect(commits.written.records == threads * each)
        #expect(commits.written.syncs < threads * each, "syncs are shared: \(commits.written.syncs)")
    }

    /// A body is answered once it is applied, not once every body applied
    /// with it is: its client sends the next while the rest are applied.
    /// Here the second body's apply waits for the first's answer to reach
    /// its thread; answers given at the end of a batch would never come.
    @Test("each record is answered as soon as it is applied, before the records after it", .timeLimit(.minutes(1)))
    func answeredOneByOne() throws {
        let directory = NSTemporaryDirectory() + "rules-group-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (log, _, _) = try EventLog.open(in: directory, first: .policy("{}")) { _ in }
        let commits = GroupCommit(log: log) { apply, _ in apply() }
        let firstAnswered = DispatchSemaphore(value: 0), slowStarted = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        func post(_ name: String, _ apply: @escaping @Sendable () -> Void, then: @escaping @Sendable () -> Void = {}) {
            done.enter()
            Thread {
                let answer = commits.commit(.body(Array("{\"n\":\"\(name)\"}\n".utf8)), refusal: "not stored") {
                    apply()
                    return .json(200, "{}")
                }
                #expect(answer.status == 200)
                then()
                done.leave()
            }.start()
        }
        // A slow body holds the applier while two more are made durable,
        // so that those two are applied one after the other.
        post("slow", { slowStarted.signal(); Thread.sleep(forTimeInterval: 0.2) })
        slowStarted.wait()
        post("first", {}, then: { firstAnswered.signal() })
        Thread.sleep(forTimeInterval: 0.05)
        post("second", {
            // Within 10 s, or the first body's answer waited for this one.
            #expect(firstAnswered.wait(timeout: .now() + 10) == .success, "the first body was not answered before the second was applied")
        })
        done.wait()
    }

    /// A worker's reader makes each batch durable (`write`) and an applier
    /// thread applies it later (`finish`), while other threads commit
    /// records (policy puts) in between: every record applied once, in the
    /// order written, never before it is written; `write` returns before
    /// its record is applied.
    @Test("write then finish on another thread, with commits in between: applied once each, in log order, none before it is written", .timeLimit(.minutes(1)))
    func writeAheadOfApplying() throws {
        let directory = NSTemporaryDirectory() + "rules-group-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (log, commits, seen) = try Self.watchedCommits(in: directory)
        @Sendable func record(_ text: String) -> [UInt8] { Array("{\"r\":\"\(text)\"}\n".utf8) }
        final class Tickets: @unchecked Sendable {
            let condition = NSCondition()
            var waiting: [(GroupCommit.Ticket, [UInt8])] = []
            var over = false
        }
        let tickets = Tickets()
        let done = DispatchGroup()
        done.enter()
        Thread {  // the applier
            defer { done.leave() }
            while true {
                tickets.condition.lock()
                while tickets.waiting.isEmpty && !tickets.over { tickets.condition.wait() }
                if tickets.waiting.isEmpty { tickets.condition.unlock(); return }
                let (ticket, _) = tickets.waiting.removeFirst()
                tickets.condition.unlock()
                #expect(commits.finish(ticket).status == 200)
            }
        }.start()
        for t in 0..<3 {  // policy puts, meanwhile
            done.enter()
            Thread {
                defer { done.leave() }
                for k in 0..<50 {
                    let body = record("put-\(t)-\(k)")
                    let answer = commits.commit(.body(body), refusal: "not stored") {
                        seen.lock.lock(); seen.applied.append(body); seen.lock.unlock()
                        return .json(200, "{}")
                    }
                    #expect(answer.status == 200)
                }
            }.start()
        }
        let reader = pthread_self()
        for k in 0..<300 {  // the reader
            let body = record("batch-\(k)")
            guard case .success(let ticket) = commits.write(.body(body), refusal: "not stored", apply: {
                seen.lock.lock(); seen.applied.append(body); seen.lock.unlock()
                if pthread_equal(pthread_self(), reader) != 0 { seen.lock.lock(); seen.byReader += 1; seen.lock.unlock() }
                return .json(200, "{}")
            }) else { Issue.record("batch \(k) refused"); break }
            tickets.condition.lock(); tickets.waiting.append((ticket, body)); tickets.condition.signal(); tickets.condition.unlock()
        }
        tickets.condition.lock(); tickets.over = true; tickets.condition.signal(); tickets.condition.unlock()
        done.wait()
        var logged: [[UInt8]] = []
        try log.records(upTo: log.end) { if case .body(let b) = $0 { logged.append(b) } }
        #expect(seen.applied.count == 300 + 3 * 50)
        #expect(logged == seen.applied, "applied in the order written, each once")
        #expect(seen.early == 0)
        #expect(seen.applied.filter { String(decoding: $0, as: UTF8.self).contains("batch-") } == (0..<300).map { record("batch-\($0)") })
        // Puts may apply a batch written before them; the reader's own
        // thread never does (it would not be reading meanwhile).
        #expect(seen.byReader == 0)
    }

    /// A worker's batch, logged then applied, is freed once applied: a
    /// cycle between a logged batch and its ticket's closure once kept
    /// every body of a worker alive (its memory grew with every line).
    @Test("a worker's logged batch is freed once applied, and applied once")
    func loggedBatchFreed() throws {
        let directory = NSTemporaryDirectory() + "rules-group-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let policy = ServedPolicy(paths: ["p.rules"], files: ["p.rules": "score starts at 1000\nspeeding → -5\n"])
        guard case .success(let compiled) = policy.compile(), let program = compiled.program else {
            Issue.record("the test's policy does not compile")
            return
        }
        let source = StreamSource(address: try RedisAddress(parsing: "redis://127.0.0.1:1/t"), partitions: 0...0, count: 1)
        let service = try RulesService(policy: policy, program: program, data: directory, source: source)
        weak var freed: RulesService.LoggedBatch?
        for k in 1...3 {
            let body = Array(#"{"citizen":"ann","type":"speeding","time":"2026-01-0\#(k)T00:00:00Z"}"#.utf8) + [0x0A]
            let logged = try service.log(SourcedBatch(positions: [0: StreamPosition(last: EntryId(ms: 1, sequence: UInt64(k)), applied: k)],
                                                      outsideClock: nil, body: body))
            freed = logged
            #expect(service.apply(logged).summary.applied == 1)
        }
        #expect(freed == nil, "a logged batch outlived its applying")
        #expect(service.positions[0]?.applied == 3)
    }
}
