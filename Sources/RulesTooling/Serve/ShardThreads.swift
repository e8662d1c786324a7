#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import MemoryHints
import RulesCore
import Synchronization

/// Threads that run a body's work on every shard at once: the calling
/// thread and one helper per further shard, kept for the state's life (a
/// body is too short to start threads for).
///
/// A call is a task per shard (apply its lines, then look for its changed
/// lines). Whichever thread comes first takes the next task, so the work
/// never waits for a helper that is slow to wake (on two shared cores a
/// woken thread can wait a while for one): the caller alone can do all of
/// it. A call has no steps that wait for each other: a barrier between
/// two would leave a core idle whenever the shards' shares differ.
final class ShardThreads: @unchecked Sendable {
    /// One call's tasks, taken in order by whoever comes.
    private final class Job: @unchecked Sendable {
        let total: Int
        let task: (_ shard: Int) -> Void
        private let taken = Atomic<Int>(0)
        private let finished = Atomic<Int>(0)
        /// Signalled by the thread that finishes the last task.
        private let allDone = DispatchSemaphore(value: 0)

        init(shards: Int, task: @escaping (Int) -> Void) {
            (total, self.task) = (shards, task)
        }

        /// Takes and does tasks until none is left to take.
        func work() {
            while true {
                let next = taken.add(1, ordering: .acquiringAndReleasing).oldValue
                if next >= total { return }
                task(next)
                if finished.add(1, ordering: .acquiringAndReleasing).newValue == total { allDone.signal() }
            }
        }

        /// Waits until every task is done (some may be another thread's):
        /// spinning a little (a task is often microseconds from done), then
        /// asleep until the last one is.
        func waitUntilDone() {
            for _ in 0..<2000 {
                if finished.load(ordering: .acquiring) == total { return }
            }
            allDone.wait()  // a signal left over from a job done while spinning dies with the job
        }
    }

    private final class Helper: @unchecked Sendable {
        let start = Handoff()
        var stopping = false
    }

    private let shards: Int
    private let helpers: [Helper]
    /// The latest call's job, which a helper takes when it wakes (one that
    /// wakes after the call is over finds nothing left to take).
    /// (A pthread mutex, which ThreadSanitizer sees as one, so the CI's
    /// run under it checks this class.)
    private final class Current: @unchecked Sendable {
        private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        private var job: Job? = nil
        init() { pthread_mutex_init(mutex, nil) }
        deinit {
            pthread_mutex_destroy(mutex)
            mutex.deallocate()
        }
        func set(_ new: Job?) {
            pthread_mutex_lock(mutex)
            job = new
            pthread_mutex_unlock(mutex)
        }
        func get() -> Job? {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            return job
        }
    }
    private let current = Current()

    init(shards: Int) {
        self.shards = shards
        helpers = (1..<max(1, shards)).map { _ in Helper() }
        for helper in helpers {
            startThread { [current] in
                // At nice 5, as the threads taking writes are: lookups first
                // when the cores are short (`Connection.Slice`).
                _ = rules_thread_nice(5)
                var started = 0
                while true {
                    started = helper.start.wait(after: started)
                    if helper.stopping { return }
                    current.get()?.work()
                }
            }
        }
    }

    deinit {
        for helper in helpers {
            helper.stopping = true
            helper.start.post()
        }
    }

    /// `task(shard)` for every shard; returns when all are done.
    func run(_ task: @escaping (_ shard: Int) -> Void) {
        let job = Job(shards: shards, task: task)
        if !helpers.isEmpty {
            current.set(job)
            for helper in helpers { helper.start.post() }
        }
        job.work()
        job.waitUntilDone()
        if !helpers.isEmpty { current.set(nil) }
    }
}

/// One thread telling another that something is ready, many times over: a
/// count that only grows. The waiter spins a few microseconds first — a
/// body's stages hand work back and forth in less time than a thread
/// takes to be woken — then sleeps on a semaphore.
private final class Handoff: @unchecked Sendable {
    private let posted = Atomic<Int>(0)
    private let semaphore = DispatchSemaphore(value: 0)
    private static let spins = 4000

    func post() {
        posted.add(1, ordering: .releasing)
        semaphore.signal()
    }

    /// Waits until more than `seen` posts were made; their number.
    func wait(after seen: Int) -> Int {
        for _ in 0..<Self.spins {
            let now = posted.load(ordering: .acquiring)
            if now > seen { return now }
        }
        while true {
            let now = posted.load(ordering: .acquiring)
            if now > seen { return now }
            semaphore.wait()  // a signal left from a post seen while spinning ends it at once: counted again above
        }
    }
}
