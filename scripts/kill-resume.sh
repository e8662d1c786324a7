#!/usr/bin/env bash
# Kills `rules run --state … --checkpoint-every N` with SIGKILL at random
# moments, resumes from the checkpoint left behind with the lines after it,
# and checks the report equals one uninterrupted run's (docs/RELIABILITY.md).
#
#   bash scripts/kill-resume.sh [ROUNDS] [EVENTS]     (default 10 rounds, 2000000 events)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-10}"; events="${2:-2000000}"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
swift build -c release >/dev/null
(cd Benchmarks && swift build -c release >/dev/null)
rules=.build/release/rules
policy=Benchmarks/citizen.rules
Benchmarks/.build/release/generate "$events" 20000 7 > "$work/events.ndjson"
"$rules" run "$policy" --events "$work/events.ndjson" > "$work/whole.out" 2>/dev/null
for round in $(seq "$rounds"); do
    rm -f "$work/state"
    "$rules" run "$policy" --events "$work/events.ndjson" --state "$work/state" --checkpoint-every 100000 \
        > /dev/null 2>&1 &
    pid=$!
    sleep "0.$(( RANDOM % 6 ))$(( RANDOM % 10 ))$(( RANDOM % 10 ))"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ ! -e "$work/state" ]; then
        echo "round $round: killed before the first checkpoint; starting over" >&2
        lines=0
        "$rules" run "$policy" --events "$work/events.ndjson" > "$work/resumed.out" 2>/dev/null
    else
        lines=$("$rules" run "$policy" --resume "$work/state" --events /dev/null 2>&1 >/dev/null \
                | sed -n 's/.*resumed from .*: \([0-9]*\) lines already applied.*/\1/p')
        tail -n +"$((lines + 1))" "$work/events.ndjson" \
            | "$rules" run "$policy" --resume "$work/state" > "$work/resumed.out" 2>/dev/null
    fi
    if cmp -s "$work/whole.out" "$work/resumed.out"; then
        echo "round $round: killed after $lines lines were saved; resumed: identical report"
    else
        echo "round $round: the resumed report differs" >&2
        exit 1
    fi
    ls "$work" | grep -q 'state.tmp' && rm -f "$work"/state.tmp-*  # a write cut short by the kill
done
echo "all $rounds rounds identical"
