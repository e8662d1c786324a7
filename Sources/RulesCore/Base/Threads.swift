#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The threading primitives the parallel run and the service need, on POSIX threads
/// directly: Foundation's `Thread` and `NSLock` would link all of Foundation
/// (and ICU's 30 MB of data) into a binary that otherwise needs only
/// FoundationEssentials.

/// A mutual-exclusion lock.
package final class Lock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    package init() { pthread_mutex_init(mutex, nil) }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    package func lock() { pthread_mutex_lock(mutex) }
    package func unlock() { pthread_mutex_unlock(mutex) }

    /// `body`, holding the lock.
    package func locked<R>(_ body: () -> R) -> R {
        lock()
        defer { unlock() }
        return body()
    }
}

/// A lock with a condition: a thread holding it waits until another,
/// holding it, says something changed (`broadcast`).
package final class Monitor: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    package init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    /// `body`, holding the lock.
    package func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Holding the lock: lets it go until a `broadcast` (or a spurious
    /// wake: callers wait in a loop on their own condition).
    package func wait() { pthread_cond_wait(changed, mutex) }

    /// The deadline `seconds` from now, for `wait(until:)`.
    package static func deadline(in seconds: Double) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let nanoseconds = Int(now.tv_nsec) + Int(seconds * 1e9)
        return timespec(tv_sec: now.tv_sec + nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000)
    }

    /// `wait`, at most until `deadline`; false once it has passed.
    package func wait(until deadline: timespec) -> Bool {
        var deadline = deadline
        return pthread_cond_timedwait(changed, mutex, &deadline) != ETIMEDOUT
    }

    /// Holding the lock: wakes every waiting thread.
    package func broadcast() { pthread_cond_broadcast(changed) }
}

/// Runs `body` on a new thread with a stack of `stackSize` bytes. The
/// thread is detached: callers wait for it with a semaphore of their own.
/// `orElse`: what to do when no thread can be started (by default the run
/// cannot go on: it stops); a service refuses the one connection instead.
package func startThread(stackSize: Int = 1 << 22, orElse: (() -> Void)? = nil, _ body: @escaping @Sendable () -> Void) {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setstacksize(&attributes, stackSize)
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    #if canImport(Glibc)
    var thread = pthread_t()
    #else
    var thread: pthread_t? = nil
    #endif
    let started = pthread_create(&thread, &attributes, { raw in
        #if canImport(Glibc)
        let box = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
        #else
        let box = Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue()
        #endif
        box.body()
        return nil
    }, box)
    if started != 0, let orElse {
        Unmanaged<ThreadBody>.fromOpaque(box).release()
        return orElse()
    }
    // Without a thread the run cannot go on; there is nothing to fall back to.
    precondition(started == 0, "cannot start a thread: \(String(cString: strerror(started)))")
}

private final class ThreadBody {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}
