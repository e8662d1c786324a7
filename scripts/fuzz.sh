#!/usr/bin/env bash
# Runs the libFuzzer targets (Fuzz/FuzzTargets.swift, checks in
# Sources/RulesFuzzChecks/FuzzChecks.swift) for a fixed time each, seeded
# from the repository's policies, fixtures and example streams.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]    (default 60 s; policy stream engine http resp)
#
# FUZZ_SEED=N fixes libFuzzer's random seed: CI uses one, so that a red CI
# run points at the change that made it, and whoever runs it again sees the
# same inputs tried (nearly: a time limit ends the run, not a count). Without
# it every run explores anew — run that, longer, before a release.
#
# Prints the executions each target ran; a finding (crash, sanitizer report
# or broken promise) stops with its input saved under .build-fuzz/findings/
# — add it to Tests/Fixtures/fuzz/TARGET/ so the unit tests replay it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(policy stream engine http resp)
out=.build-fuzz
mkdir -p "$out/findings"

binary="$out/rules-fuzz"
modules="$out/modules"
if [ ! -x "$binary" ] || [ -n "$(find Sources Fuzz -newer "$binary" -name '*.swift' | head -1)" ]; then
    echo "building the fuzz binary (libFuzzer + AddressSanitizer)…" >&2
    mkdir -p "$modules"
    # The package's three library modules, each a static library, built the
    # way SwiftPM would (one package name, so `package` declarations are
    # shared), then the entry point linked against them.
    # (The linker's "cannot export local symbol __asan_…" warnings are noise.)
    flags=(-parse-as-library -sanitize=fuzzer,address -O -g -package-name rules -I "$modules" -I Sources/MemoryHints/include)
    build_module() {  # name → static library and .swiftmodule in $modules
        # shellcheck disable=SC2046
        swiftc "${flags[@]}" -module-name "$1" -emit-module -emit-module-path "$modules/$1.swiftmodule" \
            -emit-library -static -o "$modules/lib$1.a" $(find "Sources/$1" -name '*.swift' | sort)
    }
    if ! { build_module RulesCore && build_module RulesTooling && build_module RulesFuzzChecks &&
           swiftc "${flags[@]}" -module-name RulesFuzz Fuzz/FuzzTargets.swift -L "$modules" \
               -lRulesFuzzChecks -lRulesTooling -lRulesCore -o "$binary.new"; } > "$out/build.log" 2>&1; then
        grep -v "Cannot export local symbol" "$out/build.log" >&2
        exit 1
    fi
    mv "$binary.new" "$binary"
fi

seed() {  # target → corpus directory with the seeds
    local dir="$out/corpus-$1"
    mkdir -p "$dir"
    case "$1" in
        policy) cp rules/*.rules Tests/Fixtures/diagnostics/*.rules Tests/Fixtures/conformance/*.case "$dir/" ;;
        stream) cp examples/*.ndjson Tests/Fixtures/conformance/*.case "$dir/" ;;
        engine) for i in $(seq 20); do head -c $((i * 37)) /dev/urandom > "$dir/random-$i"; done ;;
    esac
    [ -d "Tests/Fixtures/fuzz/$1" ] && cp Tests/Fixtures/fuzz/"$1"/* "$dir/" 2>/dev/null || true
    echo "$dir"
}

# LeakSanitizer is off: Swift keeps pointers to indirect enum cases (the
# AST) with tag bits set, which it cannot follow, so it reports the syntax
# tree of a policy held by a live global as leaked. Memory errors are still
# caught by AddressSanitizer.
export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
status=0
for target in "${targets[@]}"; do
    corpus=$(seed "$target")
    log="$out/$target.log"
    # The language's and the streams' words and boundary values (durations
    # at 292 and 1000 years, 1e308, 2^53, 2^63, -0, dates 0001 and 9999,
    # offsets ±14:00, lone surrogates, duplicate keys).
    dict=()
    case "$target" in
        policy) dict=(-dict=Fuzz/policy.dict) ;;
        stream|engine) dict=(-dict=Fuzz/stream.dict) ;;
        http) dict=(-dict=Fuzz/http.dict) ;;
        resp) dict=(-dict=Fuzz/resp.dict) ;;
    esac
    seed_flag=()
    [ -n "${FUZZ_SEED:-}" ] && seed_flag=(-seed="$FUZZ_SEED")
    if RULES_FUZZ_TARGET="$target" "$binary" "$corpus" "${dict[@]}" "${seed_flag[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -artifact_prefix="$out/findings/$target-" -print_final_stats=1 > "$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz $target: $runs executions in ${seconds}s, no finding"
    else
        echo "fuzz $target: FINDING — see $log and $out/findings/" >&2
        grep -E "ERROR|broken promise|Fatal error|SUMMARY" "$log" | head -5 >&2
        status=1
    fi
done
exit $status
