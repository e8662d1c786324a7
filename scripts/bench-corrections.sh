#!/usr/bin/env bash
# The cost of corrections (issue 15): `rules run` with kept history
# (`--retain 365 days`) against without, on the reference workload, and
# 10,000 retractions spread over it. Our own generator (Benchmarks/) makes
# the streams: the reference one, the same with an id on every event, and
# the same with about 10,000 retraction lines, each of an event of the last
# 30 days. Prints a table of medians: seconds, events/s, share of the plain
# run's speed, peak RSS, kept bytes per person, and the cost of one
# retraction (the run with them, minus the run without, per retraction).
#
#   bash scripts/bench-corrections.sh [EVENTS] [PEOPLE] [RUNS] [RETRACTIONS]
#   (default 1000000 100000 5 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"; people="${2:-100000}"; runs="${3:-5}"; retractions="${4:-10000}"
work="${BENCH_DIR:-/tmp/rules-bench}"
mkdir -p "$work"

echo "building release…" >&2
swift build -c release >/dev/null
# (A file added to RulesCore leaves the benchmark package's build plan
# stale: planned again from scratch if the build fails.)
(cd Benchmarks && { swift build -c release >/dev/null 2>&1 || { rm -f .build/release/description.json .build/*.yaml; swift build -c release >/dev/null; }; })
rules=.build/release/rules
policy=Benchmarks/citizen.rules
generate=Benchmarks/.build/release/generate

plain="$work/events-$events-$people.ndjson"
ids="$work/events-$events-$people-ids.ndjson"
retracted="$work/events-$events-$people-retractions-$retractions.ndjson"
[ -s "$plain" ] || "$generate" "$events" "$people" 1 > "$plain"
[ -s "$ids" ] || "$generate" "$events" "$people" 1 --ids > "$ids"
[ -s "$retracted" ] || "$generate" "$events" "$people" 1 --retractions "$retractions" > "$retracted"
lines=$(grep -c '"type":"retract"' "$retracted")

# The same report with history kept as without, on the plain stream.
"$rules" run "$policy" --events "$plain" > "$work/plain.out" 2>/dev/null
"$rules" run "$policy" --events "$plain" --retain "365 days" > "$work/retain.out" 2>/dev/null
cmp -s "$work/plain.out" "$work/retain.out" || { echo "--retain changed the report of a stream without corrections" >&2; exit 1; }
"$rules" run "$policy" --events "$plain" --retain "30 days" > "$work/short.out" 2>/dev/null
cmp -s "$work/plain.out" "$work/short.out" || { echo "--retain 30 days (compacting) changed the report" >&2; exit 1; }
"$rules" run "$policy" --events "$retracted" --retain "365 days" > "$work/retracted.out" 2> "$work/retracted.err"
applied=$(sed -n 's/.*read: \([0-9]*\) applied.*/\1/p' "$work/retracted.err")

measure() {  # prints "seconds peak_kb"
    local start end
    start=$(date +%s%N)
    /usr/bin/time -f "%M" -o "$work/time.txt" "$@" >/dev/null 2>&1
    end=$(date +%s%N)
    echo "$(python3 -c "print(($end - $start) / 1e9)") $(cat "$work/time.txt")"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for f in plain retain short ids retracted; do : > "$work/c-$f.times"; done
for _ in $(seq "$runs"); do
    measure "$rules" run "$policy" --events "$plain" >> "$work/c-plain.times"
    measure "$rules" run "$policy" --events "$plain" --retain "365 days" >> "$work/c-retain.times"
    measure "$rules" run "$policy" --events "$plain" --retain "30 days" >> "$work/c-short.times"
    measure "$rules" run "$policy" --events "$ids" --retain "365 days" >> "$work/c-ids.times"
    measure "$rules" run "$policy" --events "$retracted" --retain "365 days" >> "$work/c-retracted.times"
done
col() { cut -d' ' -f"$2" "$work/c-$1.times" | median; }

python3 - <<PY
events, people, lines, applied = $events, $people, $lines, "$applied"
rows = [("rules run", $(col plain 1), $(col plain 2)),
        ("--retain 365 days", $(col retain 1), $(col retain 2)),
        ("--retain 30 days (compacting)", $(col short 1), $(col short 2)),
        ("--retain 365 days, an id on every event", $(col ids 1), $(col ids 2)),
        (f"--retain 365 days, ids, {lines:,} retractions", $(col retracted 1), $(col retracted 2))]
plain_s, plain_kb = rows[0][1], rows[0][2]
print(f"workload: {events:,} events, {people:,} people, {$runs} alternating runs, medians")
print("| run | seconds | events/s | of plain speed | peak RSS | kept bytes/person |")
print("|---|---|---|---|---|---|")
for name, s, kb in rows:
    kept = "" if name == "rules run" else f"{(kb - plain_kb) * 1024 / people:,.0f}"
    print(f"| {name} | {s:.3f} | {events / s:,.0f} | {plain_s / s:.0%} | {kb / 1024:.1f} MiB | {kept} |")
per = (rows[4][1] - rows[3][1]) / max(lines, 1) * 1e6
print(f"\none retraction: {per:.1f} µs ({lines:,} retraction lines; the run applied {applied} of {events + lines:,} lines)")
PY
