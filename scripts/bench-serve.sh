#!/usr/bin/env bash
# The service's benchmark (issue 16): on the reference workload (our own
# generator, Benchmarks/), in five rounds, `rules run`'s events per second,
# then `rules serve` ingesting the same stream in bodies of 1,000 lines,
# each durable before its answer, from 4, 16 and 64 client threads
# (Benchmarks/Sources/serve-load; 64 keep the service saturated: its
# capacity), each report checked against `rules run`'s; then GET /v1/people/ID with wrk
# (1 thread, 8 connections, random people, 5 s) alone, and again while a
# stream five times as long is ingested flat out by 4 clients; then the memory each person costs the
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

# Ingest, in rounds: rules run, then the stream posted by 4 clients, then
# by 16, then by 64 (the machine's speed drifts by a quarter within an hour, so each
# round compares what ran minutes apart; the medians are reported). Each
# served report is checked against rules run's.
run_times=""; ingest4=""; ingest16=""; ingest64=""
for _ in 1 2 3 4 5; do
    start=$(date +%s%N)
    "$rules" run "$policy" --events "$stream" >/dev/null 2>&1
    end=$(date +%s%N)
    run_times="$run_times $(( (end - start) / 1000 ))"
    for clients in 4 16 64; do
        serve
        out=$(Benchmarks/.build/release/serve-load "$port" "$stream" "$clients" 1000)
        curl -s "http://127.0.0.1:$port/v1/report" | cmp -s - "$work/rules.out" || { echo "the served report differs from rules run's" >&2; kill $pid; exit 1; }
        rss_kb=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
        kill $pid; wait $pid 2>/dev/null || true
        case $clients in
            4) ingest4="$ingest4|$out" ;;
            16) ingest16="$ingest16|$out" ;;
            *) ingest64="$ingest64|$out" ;;
        esac
    done
done
serve
Benchmarks/.build/release/serve-load "$port" "$stream" 4 1000 > /dev/null
# Queries alone, on the loaded state.
alone=$(wrk -t1 -c8 -d5s --latency -s "$work/people.lua" "http://127.0.0.1:$port" 2>&1)
kill $pid; wait $pid 2>/dev/null || true

# Queries while a stream is ingested flat out (4 clients): five times the
# events of the same people, so that the ingest (about 7 s) outlasts wrk's
# 5 s, which start once the first body is applied. (Until 2026-12-01 wrk ran
# 20 s beside the 1M-line stream, whose ingest took under 2 s: most of its
# requests met no ingest, and its p99 was nearer the ingest's 90th.)
long="$work/events-$((5 * events))-$people.ndjson"
[ -s "$long" ] || Benchmarks/.build/release/generate "$((5 * events))" "$people" 1 > "$long"
serve
Benchmarks/.build/release/serve-load "$port" "$long" 4 1000 > "$work/ingest-during.txt" &
load_pid=$!
applied() { curl -s "http://127.0.0.1:$port/v1/health" | sed -n 's/.*"lines":\([0-9]*\).*/\1/p'; }
until [ "$(applied)" -gt 0 ] 2>/dev/null; do
    kill -0 $load_pid 2>/dev/null || { echo "serve-load ended before a body was applied: $(cat "$work/ingest-during.txt")" >&2; kill $pid; exit 1; }
    sleep 0.05
done
lines_at_start=$(applied); wrk_start=$(date +%s%N)
wrk -t1 -c8 -d5s --latency -s "$work/people.lua" "http://127.0.0.1:$port" > "$work/wrk-during.txt" 2>&1
lines_at_end=$(applied); wrk_end=$(date +%s%N)
# The ingest's rate while wrk ran (its rate over the whole stream includes
# the seconds without wrk).
ingest_meanwhile=$(( (lines_at_end - lines_at_start) * 1000000000 / (wrk_end - wrk_start) ))
wait $load_pid
during_ingest=$(cat "$work/ingest-during.txt")
kill $pid; wait $pid 2>/dev/null || true
if [ "$lines_at_end" -ge $((5 * events)) ]; then
    echo "warning: the ingest ended before wrk did: the lookups' figures are not all during ingest" >&2
fi

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

INGEST_MEANWHILE=$ingest_meanwhile python3 - "$run_times" "$events" "$people" "$rss_kb" "$ingest4" "$during_ingest" "$work/wrk-during.txt" "$alone" "$few" "$many" "$ingest16" "$ingest64" $memory_figures <<'PY'
import os, re, sys, statistics
run_us = [int(x) for x in sys.argv[1].split()]
events, people, rss_kb = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ingest4, during, during_path, alone, ingest16, ingest64 = sys.argv[5], sys.argv[6], sys.argv[7], sys.argv[8], sys.argv[11], sys.argv[12]
few, many = int(sys.argv[9]), int(sys.argv[10])
kb = [int(x) for x in sys.argv[13:]]  # per round: serve few, run few, serve many, run many
def field(text, name): return float(re.search(name + r" ([0-9.]+)", text).group(1))
def wrk(text):
    pct = dict(re.findall(r"^\s+(50|99)%\s+([0-9.]+\w+)", text, re.M))
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    return pct.get("50", "?"), pct.get("99", "?"), float(rate.group(1)) if rate else 0.0
runs = [events / (us / 1e6) for us in run_us]
run_rate = statistics.median(runs)
print(f"workload: {events:,} events, {people:,} people; client and server on this machine (2 cores); {len(runs)} rounds, medians")
print("| | figure |")
print("|---|---|")
print(f"| rules run | {run_rate:,.0f} events/s (rounds: {', '.join(f'{r / 1e6:.2f}M' for r in runs)}) |")
for clients, text in ((4, ingest4), (16, ingest16), (64, ingest64)):
    rounds = [t for t in text.split("|") if t.strip()]
    rates = [field(t, "per_second") for t in rounds]
    ratios = [r / x for r, x in zip(rates, runs)]
    mid = sorted(range(len(rates)), key=lambda k: rates[k])[len(rates) // 2]
    print(f"| POST /v1/events, bodies of 1,000 lines, {clients} clients | {statistics.median(rates):,.0f} lines/s = {statistics.median(ratios):.0%} of rules run "
          f"(each round against its own rules run: {', '.join(f'{q:.0%}' for q in ratios)}); a body's answer p50 {field(rounds[mid], 'p50_ms'):.1f} ms, p99 {field(rounds[mid], 'p99_ms'):.1f} ms |")
print(f"| the service's peak RSS after the stream | {rss_kb / 1024:.1f} MiB |")
p50, p99, r = wrk(alone)
print(f"| GET /v1/people/ID alone (wrk, 8 connections) | {r:,.0f} requests/s, p50 {p50}, p99 {p99} |")
p50, p99, r = wrk(open(during_path).read())
print(f"| GET /v1/people/ID during ingest (5 s, all of it while 4 clients post) | {r:,.0f} requests/s, p50 {p50}, p99 {p99}; ingest meanwhile {int(os.environ['INGEST_MEANWHILE']):,} lines/s ({field(during, 'per_second'):,.0f} over its whole stream) |")
def per_person(offset):
    slopes = sorted((kb[k + offset + 2] - kb[k + offset]) * 1024 / (many - few) for k in range(0, len(kb), 4))
    return slopes[len(slopes) // 2], slopes[0], slopes[-1]
served, run = per_person(0), per_person(1)
print(f"| memory per person, {few:,} to {many:,} people (median of 3; range) | the service {served[0]:.0f} B ({served[1]:.0f}-{served[2]:.0f}); rules run {run[0]:.0f} B ({run[1]:.0f}-{run[2]:.0f}) |")
PY
