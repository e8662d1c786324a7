// Cache hints for the engine's hot path. Swift has no prefetch, and the
// engine's per-person state is far larger than the cache: the stream reader
// asks for a person's slot and state a few lines before it applies their
// event, so the memory fetch overlaps other work (docs/PERFORMANCE.md).
#ifndef RULES_MEMORY_HINTS_H
#define RULES_MEMORY_HINTS_H

/// Starts loading the cache line at `address` for reading; never faults.
static inline void rules_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
