#!/usr/bin/env bash
# A package outside this repository depends on RulesCore by version, as
# Swift users depend on libraries: `.package(url:, from: "1.0.0")` on a tag
# of a clone of this repository's HEAD. SwiftPM refuses such a dependency
# when any target of the product carries unsafe build flags, so this is
# the check that the library has none. The consumer is examples/embedding's
# program; it must build (release), print what expected.txt says, and link
# none of the tools (the language server, the REPL, the formatter).
#
#   bash scripts/check-versioned-dependency.sh      (tests the committed HEAD)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT

git clone -q "$repo" "$work/rules"
git -C "$work/rules" tag 1.0.0

mkdir -p "$work/decisions"
cp -R examples/embedding/Sources "$work/decisions/"
cat > "$work/decisions/Package.swift" <<EOF
// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "decisions",
    dependencies: [.package(url: "file://$work/rules", from: "1.0.0")],
    targets: [
        .executableTarget(name: "decisions", dependencies: [.product(name: "RulesCore", package: "rules")]),
    ]
)
EOF

(cd "$work/decisions" && swift build -c release 2>&1) > "$work/build.log" || {
    cat "$work/build.log" >&2
    echo "a package depending on RulesCore 1.0.0 does not build" >&2
    exit 1
}
if grep -q "unsafe" "$work/build.log"; then
    grep "unsafe" "$work/build.log" >&2
    exit 1
fi
binary="$work/decisions/.build/release/decisions"

# The same decisions as examples/embedding/expected.txt (paths as seen from there).
(cd examples/embedding && "$binary" ../../rules/citizen.rules < ../citizen.ndjson) > "$work/decisions.txt"
diff -u examples/embedding/expected.txt "$work/decisions.txt"

# The tools are not linked into an embedder's program: no symbol of the
# tooling modules (Swift mangles a module name as its length and name).
nm "$binary" > "$work/symbols.txt"
for module in RulesTooling RulesFuzzChecks; do
    if grep -q "${#module}$module" "$work/symbols.txt"; then
        echo "the embedder's program links $module" >&2
        exit 1
    fi
done
grep -q "9RulesCore" "$work/symbols.txt" || { echo "the embedder's program has no RulesCore symbol: nm cannot see in" >&2; exit 1; }
echo "versioned dependency: RulesCore 1.0.0 builds, runs and links no tools"
