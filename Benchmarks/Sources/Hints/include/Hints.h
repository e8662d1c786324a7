// A prefetch hint for the baseline (Swift has none).
#ifndef BENCH_HINTS_H
#define BENCH_HINTS_H
static inline void bench_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }
#endif
