// The few calls Swift cannot make itself. Cache hints for the engine's hot
// path (below), a scheduling slice and a nice value for the service's
// threads (further down; `syscall` is variadic), and a cap on malloc's arenas. Swift has no prefetch, and the
// engine's per-person state is far larger than the cache: the stream reader
// asks for a person's slot and state a few lines before it applies their
// event, so the memory fetch overlaps other work (docs/PERFORMANCE.md).
#ifndef RULES_MEMORY_HINTS_H
#define RULES_MEMORY_HINTS_H

/// Starts loading the cache line at `address` for reading; never faults.
static inline void rules_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#ifdef __linux__
#include <stdint.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
/// Asks the scheduler to run the calling thread in slices of `nanoseconds`
/// (0: the default), keeping its nice value: under EEVDF (Linux 6.12 on) a
/// short slice gives a thread an earlier deadline when it wakes, so it runs
/// sooner than threads on long slices. 0 when taken; older kernels ignore
/// the slice, and a refusal changes nothing.
static inline int rules_thread_slice(uint64_t nanoseconds) {
    struct { uint32_t size, policy; uint64_t flags; int32_t nice; uint32_t priority;
             uint64_t runtime, deadline, period; } attr = {0};
    attr.size = sizeof attr;
    attr.nice = getpriority(PRIO_PROCESS, 0);  /* this thread's */
    attr.runtime = nanoseconds;
    return (int)syscall(SYS_sched_setattr, 0, &attr, 0);
}
/// Sets the calling thread's nice value (raising it needs no privilege).
static inline int rules_thread_nice(int nice) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
}
#else
static inline int rules_thread_slice(unsigned long long nanoseconds) { (void)nanoseconds; return -1; }
static inline int rules_thread_nice(int nice) { (void)nice; return -1; }
#endif

#if defined(__linux__) && defined(__GLIBC__)
#include <malloc.h>
/// Caps glibc's malloc arenas at `n` (the service: otherwise each
/// connection's thread may get one and keep what it freed there).
static inline void rules_limit_malloc_arenas(int n) { (void)mallopt(M_ARENA_MAX, n); }
#else
static inline void rules_limit_malloc_arenas(int n) { (void)n; }
#endif

#endif
