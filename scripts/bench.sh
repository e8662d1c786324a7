#!/usr/bin/env bash
# The performance benchmark (issue: performance). Generates the reference
# workload with our own generator (Benchmarks/), builds release, checks that
# `rules run` and the hand-written baseline print byte-identical reports,
# then runs them alternately and prints a table: events/s (median), ratio to
# the baseline, peak RSS, bytes per person, and `rules check` time on
# generated 1k and 10k-rule policies; then the library's typed path
# (`RulesEngine.apply`, one event at a time and in batches of 1,000) on the
# same events, against `rules run` (Benchmarks/Sources/library).
#
#   bash scripts/bench.sh [EVENTS] [PEOPLE] [RUNS]     (default 1000000 100000 5)
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"; people="${2:-100000}"; runs="${3:-5}"
work="${BENCH_DIR:-/tmp/rules-bench}"
mkdir -p "$work"

echo "building release…" >&2
swift build -c release >/dev/null
# (A file added to RulesCore leaves the benchmark package's build plan
# stale: planned again from scratch if the build fails.)
(cd Benchmarks && { swift build -c release >/dev/null 2>&1 || { rm -f .build/release/description.json .build/*.yaml; swift build -c release >/dev/null; }; })
rules=.build/release/rules
baseline=Benchmarks/.build/release/baseline
policy=Benchmarks/citizen.rules

stream="$work/events-$events-$people.ndjson"
[ -s "$stream" ] || Benchmarks/.build/release/generate "$events" "$people" 1 > "$stream"

"$rules" run "$policy" --events "$stream" > "$work/rules.out" 2>/dev/null
"$rules" run "$policy" --events "$stream" --jobs 2 > "$work/jobs.out" 2>/dev/null
"$baseline" "$stream" > "$work/baseline.out"
cmp -s "$work/rules.out" "$work/baseline.out" || { echo "rules run and the baseline disagree" >&2; exit 1; }
cmp -s "$work/rules.out" "$work/jobs.out" || { echo "--jobs 2 and one thread disagree" >&2; exit 1; }
printed=$(wc -l < "$work/rules.out")

measure() {  # prints "seconds peak_kb", seconds to the millisecond
    local start end
    start=$(date +%s%N)
    /usr/bin/time -f "%M" -o "$work/time.txt" "$@" >/dev/null 2>&1
    end=$(date +%s%N)
    echo "$(python3 -c "print(($end - $start) / 1e9)") $(cat "$work/time.txt")"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: > "$work/rules.times"; : > "$work/baseline.times"; : > "$work/jobs.times"
for _ in $(seq "$runs"); do
    measure "$rules" run "$policy" --events "$stream" >> "$work/rules.times"
    measure "$baseline" "$stream" >> "$work/baseline.times"
    measure "$rules" run "$policy" --events "$stream" --jobs 2 >> "$work/jobs.times"
done
j_s=$(cut -d' ' -f1 "$work/jobs.times" | median); j_kb=$(cut -d' ' -f2 "$work/jobs.times" | median)
r_s=$(cut -d' ' -f1 "$work/rules.times" | median); r_kb=$(cut -d' ' -f2 "$work/rules.times" | median)
b_s=$(cut -d' ' -f1 "$work/baseline.times" | median); b_kb=$(cut -d' ' -f2 "$work/baseline.times" | median)
empty_kb=$(echo "" | measure "$rules" run "$policy" | cut -d' ' -f2)

check_policy() {  # rules → file
    python3 - "$1" > "$2" <<'PY'
import random, sys
n = int(sys.argv[1]); r = random.Random(n)
print("score starts at 1000, min 0, max 1300")
for i in range(n // 50): print(f"event e{i} {{ x: number, s: string }}")
for i in range(n * 4 // 5):
    print(f'e{r.randrange(n // 50)} where x > {r.randrange(100)} and s == "v{r.randrange(5)}" → -{r.randrange(1, 9)}, flag f{r.randrange(300)}')
for i in range(n // 5):
    print(f"while f{r.randrange(300)} and score < {r.randrange(800, 1200)} → deny p{r.randrange(50)}, flag g{i}")
PY
}
check_time() {
    check_policy "$1" "$work/check-$1.rules"
    best=999
    for _ in 1 2 3; do
        t=$(measure "$rules" check "$work/check-$1.rules" | cut -d' ' -f1)
        best=$(python3 -c "print(min($best, $t))")
    done
    echo "$best"
}
c1=$(check_time 1000); c10=$(check_time 10000)

# The library: the same events as typed values (made before the clock
# starts), applied in-process; it checks its report against rules run's.
: > "$work/library.times"
for _ in $(seq "$runs"); do Benchmarks/.build/release/library "$policy" "$stream" "$work/rules.out" >> "$work/library.times"; done
l_single=$(awk '{print $4}' "$work/library.times" | median)
l_batched=$(awk '{print $6}' "$work/library.times" | median)

python3 - <<PY
events, people, printed = $events, $people, $printed
r_s, b_s, r_kb, b_kb, empty, j_s, j_kb = $r_s, $b_s, $r_kb, $b_kb, $empty_kb, $j_s, $j_kb
print(f"workload: {events:,} events, {people:,} people ({printed:,} in the report), {$runs} alternating runs, medians")
print(f"| program | seconds | events/s | ratio | peak RSS | bytes/person |")
print(f"|---|---|---|---|---|---|")
print(f"| rules run | {r_s:.3f} | {events / r_s:,.0f} | {b_s / r_s:.2f} | {r_kb / 1024:.1f} MiB | {(r_kb - empty) * 1024 / printed:.0f} |")
print(f"| rules run --jobs 2 | {j_s:.3f} | {events / j_s:,.0f} | {b_s / j_s:.2f} | {j_kb / 1024:.1f} MiB | ({r_s / j_s:.2f}x one thread) |")
print(f"| hand-written baseline | {b_s:.3f} | {events / b_s:,.0f} | 1.00 | {b_kb / 1024:.1f} MiB | |")
print(f"| rules check, 1,000 rules | {$c1:.3f} | | | | |")
print(f"| rules check, 10,000 rules | {$c10:.3f} | | | | |")
l1, lb = $l_single, $l_batched
print()
print(f"| library, RulesEngine.apply | seconds | events/s | of rules run's events/s |")
print(f"|---|---|---|---|")
print(f"| apply(Event), one at a time | {l1:.3f} | {events / l1:,.0f} | {r_s / l1:.0%} |")
print(f"| apply([Event]), 1,000 at a time | {lb:.3f} | {events / lb:,.0f} | {r_s / lb:.0%} |")
PY

echo
python3 scripts/lsp-bench.py "$rules" 2000
