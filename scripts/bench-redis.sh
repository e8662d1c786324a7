#!/usr/bin/env bash
# rules publish and one worker against Redis's own rates (issue 17), on the
# reference workload (our own generator, Benchmarks/):
# 1. what `redis-benchmark -P 200` gets for XADD of a line of the stream's
#    median length, into 4 streams and into one; then `rules publish` of
#    the whole stream into 4 partitions; the ratio;
# 2. what `redis-benchmark` gets for XREAD of those entries (COUNT 1000 per
#    read, 2 connections), `rules run`'s events per second on the same
#    lines, and one worker (`rules serve --source … --partitions 0-3/4`)
#    from its start until every entry is applied and durable and every
#    changed line is in `NAME:state:{K}` (`"unwritten":0` in its health);
#    its report and the hashes checked against `rules run`'s; the ratio
#    to the lower of the two.
# A private redis-server on a free local port (no persistence). Every rate
# is the best of three: XADD and each publish (on an emptied server) after
# one warm-up; then three rounds of XREAD, `rules run` and the worker in
# turn (the worker from an empty data directory and no state in Redis,
# started by the Python process that times it). Client, worker and server
# share this machine.
#
#   bash scripts/bench-redis.sh [EVENTS] [PEOPLE]     (default 1000000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"; people="${2:-100000}"
work="${BENCH_DIR:-/tmp/rules-bench}"
mkdir -p "$work"
for tool in redis-server redis-cli redis-benchmark; do
    command -v $tool >/dev/null || { echo "$tool is not installed (apt-get install redis-server redis-tools)" >&2; exit 1; }
done

echo "building release…" >&2
swift build -c release >/dev/null
(cd Benchmarks && { swift build -c release --product generate >/dev/null 2>&1 || { rm -f .build/release/description.json .build/*.yaml; swift build -c release --product generate >/dev/null; }; })
rules=.build/release/rules
stream="$work/events-$events-$people.ndjson"
[ -s "$stream" ] || Benchmarks/.build/release/generate "$events" "$people" 1 > "$stream"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no --daemonize yes --logfile "$dir/log" >/dev/null
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

line=$(python3 -c "
import sys
lines = open('$stream', 'rb').read().split(b'\n')[:100000]
lines = sorted((l for l in lines if l), key=len)
sys.stdout.write(lines[len(lines) // 2].decode())")

benchmark() {  # KEY [-r N]: XADD requests per second, best of three after a warm-up
    local best=0
    for round in 0 1 2 3; do
        redis-cli -p "$port" flushall >/dev/null
        rps=$(redis-benchmark -p "$port" -P 200 -n "$events" -q "${@:2}" XADD "$1" '*' line "$line" 2>/dev/null | tr '\r' '\n' \
              | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
        [ "$round" -gt 0 ] && best=$(python3 -c "print(max($best, $rps))")
    done
    echo "$best"
}
four=$(benchmark 'bench:{__rand_int__}' -r 4)
one=$(benchmark 'bench:{0}')

published=0
for round in 0 1 2 3; do
    redis-cli -p "$port" flushall >/dev/null
    start=$(date +%s%N)
    "$rules" publish --to "redis://127.0.0.1:$port/ev" --partitions 4 "$stream" 2>/dev/null
    end=$(date +%s%N)
    [ "$round" -gt 0 ] && published=$(python3 -c "print(max($published, $events / (($end - $start) / 1e9)))")
done
memory=$(redis-cli -p "$port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p' | tr -d '\r')

# Reading: Redis alone, rules run and one worker, each the best of three
# rounds (after a warm-up), as for XADD above — and the three taken in
# turn within each round: this machine's speed drifts by a third within
# minutes, and measured one after another, a slow minute fell on one of
# the three and made the ratio.
xread_round() {
    local rps
    rps=$(redis-benchmark -p "$port" -c 2 -P 1 -n 2000 -q XREAD COUNT 1000 STREAMS 'ev:{0}' 0 2>/dev/null | tr '\r' '\n' \
          | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
    xread=$(python3 -c "print(max($xread, $rps * 1000))")
}
run_round() {
    local start end
    start=$(date +%s%N)
    "$rules" run Benchmarks/citizen.rules --events "$stream" >/dev/null 2>&1
    end=$(date +%s%N)
    run=$(python3 -c "print(min($run, ($end - $start) / 1e9))")
}
xread=0
xread_round
xread=0
"$rules" run Benchmarks/citizen.rules --events "$stream" > "$work/rules.out" 2>/dev/null
run=999
# Redis's own CPU while the worker reads and writes back (the two share
# these cores): clock ticks of its process, before and after.
redis_pid=$(redis-cli -p "$port" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p' | tr -d '\r')
redis_ticks() { awk '{print $14 + $15}' "/proc/$redis_pid/stat"; }
hz=$(getconf CLK_TCK)
# One worker from an empty data directory and no state in Redis until every
# entry is applied and durable and every changed line in Redis; its report
# and the hashes checked against rules run's.
worker_round() {
    rm -rf "$work/worker-data"
    redis-cli -p "$port" del 'ev:state:{0}' 'ev:state:{1}' 'ev:state:{2}' 'ev:state:{3}' ev:clock >/dev/null
    local redis_before
    redis_before=$(redis_ticks)
    # The worker is started by the Python process that polls its health,
    # once that process is up: Python's own start (about 0.1 s of CPU)
    # then falls outside the measured time instead of taking a core from
    # the worker in it; and it polls on one kept-alive connection (a
    # curl per poll took about 7 % of the worker's rate, measured).
    read -r worker wport round_seconds < <(python3 - "$events" "$work" "$rules" "$port" <<'PY'
import http.client, re, subprocess, sys, time
events, work, rules, port = sys.argv[1:]
err = open(f"{work}/worker.err", "w")
start = time.monotonic()
worker = subprocess.Popen([rules, "serve", "Benchmarks/citizen.rules", "--data", f"{work}/worker-data", "--listen", "127.0.0.1:0",
                           "--source", f"redis://127.0.0.1:{port}/ev", "--partitions", "0-3/4"], stderr=err, start_new_session=True)
wport = None
while wport is None:
    m = re.search(r"listening on http://127.0.0.1:(\d+)", open(f"{work}/worker.err").read())
    if m: wport = int(m.group(1))
    elif worker.poll() is not None: sys.exit(f"the worker exited: {open(f'{work}/worker.err').read()}")
    else: time.sleep(0.005)
connection = None
while True:
    try:
        connection = connection or http.client.HTTPConnection("127.0.0.1", wport, timeout=5)
        connection.request("GET", "/v1/health")
        health = connection.getresponse().read().decode()
        # Every entry applied and durable, and every changed line in Redis.
        if f'"lines":{events},' in health and '"unwritten":0,' in health:
            break
        # Every 5 ms near the end, every 50 ms before: polled every 5 ms
        # throughout, Python took 7 % of the CPU the worker and Redis had.
        lines = int(health.split('"lines":')[1].split(",")[0])
        time.sleep(0.005 if lines >= 0.9 * int(events) else 0.05)
        continue
    except OSError:
        connection = None
    time.sleep(0.005)
print(worker.pid, wport, time.monotonic() - start)
PY
)
    round_rss=$(awk '/VmHWM/ {print $2}' /proc/$worker/status)
    round_cpu=$(awk -v hz="$hz" '{print ($14 + $15) / hz}' /proc/$worker/stat)
    round_redis=$(python3 -c "print(($(redis_ticks) - $redis_before) / $hz)")
    curl -s "http://127.0.0.1:$wport/v1/report" | cmp -s - "$work/rules.out" || { echo "the worker's report differs from rules run's" >&2; exit 1; }
    for k in 0 1 2 3; do redis-cli -p "$port" --raw hvals "ev:state:{$k}"; done | sort | cmp -s - <(sort "$work/rules.out") \
        || { echo "the hashes NAME:state:{K} differ from rules run's report" >&2; exit 1; }
    kill $worker
    # Not this shell's child (Python started it): gone once it has stopped.
    while kill -0 $worker 2>/dev/null && [ "$(awk '{print $3}' /proc/$worker/stat 2>/dev/null)" != Z ]; do sleep 0.05; done
}
trap 'kill $worker 2>/dev/null || true; redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
worker=""
worker_seconds=999
for round in 1 2 3; do
    xread_round
    run_round
    worker_round
    if python3 -c "import sys; sys.exit(0 if $round_seconds < $worker_seconds else 1)"; then
        worker_seconds=$round_seconds; worker_rss=$round_rss; worker_cpu=$round_cpu; redis_cpu=$round_redis
    fi
done
state_memory=$(redis-cli -p "$port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p' | tr -d '\r')

python3 - <<PY
import os
four, one, published = $four, $one, $published
xread, run, worker = $xread, $events / $run, $events / $worker_seconds
print(f"| redis-benchmark -P 200, XADD of a ${#line}-byte line, 4 streams | {four:,.0f} per second |")
print(f"| the same, 1 stream | {one:,.0f} per second |")
print(f"| rules publish, {$events:,} lines, 4 partitions | {published:,.0f} lines per second = {published / four:.0%} of the first, {published / one:.0%} of the second |")
print(f"| Redis memory after it | {$memory / $events:.0f} bytes per line |")
print(f"| redis-benchmark, XREAD COUNT 1000, 2 connections | {xread:,.0f} entries per second |")
print(f"| rules run over the same lines | {run:,.0f} events per second |")
limit, name = min((xread, "Redis's XREAD"), (run, "rules run"))
print(f"| one worker, 4 partitions, every entry applied and durable, every changed line in Redis | {worker:,.0f} lines per second = {worker / limit:.0%} of the lower, {name}; peak RSS {$worker_rss / 1024:.0f} MiB |")
print(f"| CPU per million lines while the worker ran | the worker {$worker_cpu * 1e6 / $events:.2f} s, Redis {$redis_cpu * 1e6 / $events:.2f} s, in {$worker_seconds * 1e6 / $events:.2f} s of wall time on {os.cpu_count()} cores |")
print(f"| Redis memory with the report lines in NAME:state:{{K}} | {($state_memory - $memory) / $people:.0f} bytes per person |")
PY
