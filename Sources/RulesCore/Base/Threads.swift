#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The two threading primitives the parallel run needs, on POSIX threads
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
