#!/usr/bin/env bash
# The service's benchmark (issue 16): on the reference workload (our own
# generator, Benchmarks/), `rules run`'s events per second; then `rules
# serve` ingesting the same stream in bodies of 1,000 lines, each durable
# before its answer, from 4 client threads (Benchmarks/Sources/serve-load), its
# report checked against `rules run`'s; then GET /v1/people/ID with wrk
# (1 thread, 8 connections, random people) alone, and again while the
# stream is ingested flat out; then the memory each person costs the
# service and `rules run` (the growth from 2x to 4x the people). Client
# and server share this machine.
#
#   bash scripts/bench-serve.sh [EVENTS] [PEOPLE]     (default 1000000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"; people="${2:-100000}"
work="${BENCH_DIR:-/tmp/rules-bench}"
mkdir -p "$work"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

echo "building release…" >&2
swift build -c release >/dev/null
(cd Benchmarks && { swift build -c release --product generate >/dev/null 2>&1 || { rm -f .build/release/description.json .build/*.yaml; swift build -c release --product generate >/dev/null; }; })
(cd Benchmarks && swift build -c release --product serve-load >/dev/null)
rules=.build/release/rules
policy=Benchmarks/citizen.rules
stream="$work/events-$events-$people.ndjson"
[ -s "$stream" ] || Benchmarks/.build/release/generate "$events" "$people" 1 > "$stream"

"$rules" run "$policy" --events "$stream" > "$work/rules.out" 2>/dev/null
best=999
for _ in 1 2 3; do
    start=$(date +%s%N)
    "$rules" run "$policy" --events "$stream" >/dev/null 2>&1
    end=$(date +%s%N)
    best=$(python3 -c "print(min($best, ($end - $start) / 1e9))")
done

serve() {  # starts rules serve on a free port with fresh data; sets pid and port
    rm -rf "$work/serve-data"
    "$rules" serve "$policy" --data "$work/serve-data" --listen 127.0.0.1:0 2> "$work/serve.err" &
    pid=$!
    for _ in $(seq 100); do
        port=$(sed -n 's|^listening on http://127.0.0.1:||p' "$work/serve.err")
        [ -n "$port" ] && return
        sleep 0.1
    done
    echo "rules serve did not start: $(cat "$work/serve.err")" >&2; exit 1
}
cat > "$work/people.lua" <<LUA
request = function()
    return wrk.format("GET", string.format("/v1/people/c%07d", math.random(0, $people - 1)))
end
LUA

# Ingest alone.
serve
ingest=$(Benchmarks/.build/release/serve-load "$port" "$stream" 4 1000)
curl -s "http://127.0.0.1:$port/v1/report" | cmp -s - "$work/rules.out" || { echo "the served report differs from rules run's" >&2; kill $pid; exit 1; }
rss_kb=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
# Queries alone, on the loaded state.
alone=$(wrk -t1 -c8 -d5s --latency -s "$work/people.lua" "http://127.0.0.1:$port" 2>&1)
kill $pid; wait $pid 2>/dev/null || true

# Queries while the stream is ingested.
serve
wrk -t1 -c8 -d20s --latency -s "$work/people.lua" "http://127.0.0.1:$port" > "$work/wrk-during.txt" 2>&1 &
wrk_pid=$!
sleep 0.5
during_ingest=$(Benchmarks/.build/release/serve-load "$port" "$stream" 4 1000)
kill -INT $wrk_pid 2>/dev/null || true; wait $wrk_pid 2>/dev/null || true
kill $pid; wait $pid 2>/dev/null || true

# Memory per person: the growth of the service's peak RSS, and of rules
# run's, from 2x to 4x the people (the same events; only the people
# differ), so that what does not grow with people (the feed's kept events,
# buffers) cancels out. Each side measured three times; the medians.
memory() {  # PEOPLE -> "SERVE_KB RUN_KB"
    local file="$work/events-$events-$1.ndjson"
    [ -s "$file" ] || Benchmarks/.build/release/generate "$events" "$1" 1 > "$file"
    rm -rf "$work/serve-data"
    "$rules" serve "$policy" --data "$work/serve-data" --listen 127.0.0.1:0 --checkpoint-every 0 2> "$work/serve.err" &
    pid=$!
    for _ in $(seq 100); do port=$(sed -n 's|^listening on http://127.0.0.1:||p' "$work/serve.err"); [ -n "$port" ] && break; sleep 0.1; done
    Benchmarks/.build/release/serve-load "$port" "$file" 4 1000 > /dev/null
    local served; served=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
    kill $pid; wait $pid 2>/dev/null || true
    /usr/bin/time -f "%M" -o "$work/run-rss" "$rules" run "$policy" --events "$file" > /dev/null 2>&1
    echo "$served $(tail -1 "$work/run-rss")"
}
few=$((2 * people)); many=$((4 * people))
memory_figures=""
for _ in 1 2 3; do memory_figures="$memory_figures $(memory $few) $(memory $many)"; done

python3 - "$best" "$events" "$people" "$rss_kb" "$ingest" "$during_ingest" "$work/wrk-during.txt" "$alone" "$few" "$many" $memory_figures <<'PY'
import re, sys
best, events, people, rss_kb = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ingest, during, during_path, alone = sys.argv[5], sys.argv[6], sys.argv[7], sys.argv[8]
few, many = int(sys.argv[9]), int(sys.argv[10])
kb = [int(x) for x in sys.argv[11:]]  # per round: serve few, run few, serve many, run many
def field(text, name): return float(re.search(name + r" ([0-9.]+)", text).group(1))
def wrk(text):
    pct = dict(re.findall(r"^\s+(50|99)%\s+([0-9.]+\w+)", text, re.M))
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    return pct.get("50", "?"), pct.get("99", "?"), float(rate.group(1)) if rate else 0.0
run_rate = events / best
rate = field(ingest, "per_second")
print(f"workload: {events:,} events, {people:,} people; client and server on this machine (2 cores)")
print("| | figure |")
print("|---|---|")
print(f"| rules run | {best:.3f} s, {run_rate:,.0f} events/s |")
print(f"| POST /v1/events, bodies of 1,000 lines, 4 clients | {rate:,.0f} lines/s = {rate / run_rate:.0%} of rules run; a body's answer p50 {field(ingest, 'p50_ms'):.1f} ms, p99 {field(ingest, 'p99_ms'):.1f} ms |")
print(f"| the service's peak RSS after the stream | {rss_kb / 1024:.1f} MiB |")
p50, p99, r = wrk(alone)
print(f"| GET /v1/people/ID alone (wrk, 8 connections) | {r:,.0f} requests/s, p50 {p50}, p99 {p99} |")
p50, p99, r = wrk(open(during_path).read())
print(f"| GET /v1/people/ID during ingest | {r:,.0f} requests/s, p50 {p50}, p99 {p99}; ingest meanwhile {field(during, 'per_second'):,.0f} lines/s |")
def per_person(offset):
    slopes = sorted((kb[k + offset + 2] - kb[k + offset]) * 1024 / (many - few) for k in range(0, len(kb), 4))
    return slopes[len(slopes) // 2], slopes[0], slopes[-1]
served, run = per_person(0), per_person(1)
print(f"| memory per person, {few:,} to {many:,} people (median of 3; range) | the service {served[0]:.0f} B ({served[1]:.0f}-{served[2]:.0f}); rules run {run[0]:.0f} B ({run[1]:.0f}-{run[2]:.0f}) |")
PY
