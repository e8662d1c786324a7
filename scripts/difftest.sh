#!/usr/bin/env bash
# The engine against the reference model for SECONDS (default 120): random
# policies and streams, each run through the reference and through every
# way the project runs a policy — one thread, --jobs 2, a checkpoint
# resumed at a random line, another person key (one thread and --jobs 2),
# the library API (lines, typed events one by one and in a batch), the test
# runner, the REPL — and, for every 10th case, the release binary's own `rules run`,
# `--jobs 2`, `--state`/`--resume` and `--checkpoint-every`.
# A difference fails with a minimised repro and the seed that replays it.
#
#   bash scripts/difftest.sh [SECONDS] [FIRST_SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-120}"
seed="${2:-1}"
swift build -c release --product rules >/dev/null
# The tests themselves in release mode: 5-10 times the cases per second.
DIFFTEST_SECONDS="$seconds" DIFFTEST_SEED="$seed" DIFFTEST_BINARY=1 RULES_BIN="$PWD/.build/release/rules" \
    swift test -c release -Xswiftc -enable-testing --scratch-path .build-difftest --filter "randomCases" 2>&1 \
    | tee /tmp/rules-difftest.log | grep -E "differential:|disagree|✘|^  " || true
grep -q 'differential: [0-9]* cases agree' /tmp/rules-difftest.log
! grep -q "✘" /tmp/rules-difftest.log
