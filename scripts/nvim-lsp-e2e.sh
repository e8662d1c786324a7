#!/usr/bin/env bash
# End to end with a real LSP client: Neovim (headless) runs
# editors/nvim-e2e.lua against `rules lsp` and the results are checked.
#
#   bash scripts/nvim-lsp-e2e.sh          (needs nvim ≥ 0.7: apt-get install neovim)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvim >/dev/null || { echo "nvim is not installed" >&2; exit 2; }
swift build >/dev/null
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cat > "$work/policy.rules" <<'RULES'
event speeding { speed: number }
speeding where sped > 90 -> -5
while score < 900 → flag low trust
while low trust and debtor → deny rail
unpaid debt →   flag debtor
event unpaid debt { }
RULES
(cd "$work" && E2E_OUT="$work/out.txt" RULES_BIN="$OLDPWD/.build/debug/rules" \
    timeout 60 nvim --headless --clean -n policy.rules -c "luafile $OLDPWD/editors/nvim-e2e.lua") >/dev/null 2>&1 || true
out="$work/out.txt"
[ -s "$out" ] || { echo "Neovim wrote nothing" >&2; exit 1; }
cat "$out"
check() { grep -qF -- "$1" "$out" || { echo "missing: $1" >&2; exit 1; }; }
check "client: true"
check "diagnostics: 1"
check "diagnostic.line: 1"
check "diagnostic.code: E0302"
check "hover: **flag** \`low trust\`\\n\\nset by:\\n- line 3: \`while score < 900 → flag low trust\`"
check "definition.line: 4"
check "diagnostics.after.fix: 0"
check "formatted: event speeding { speed: number }\\nspeeding where speed > 90 → -5\\nwhile score < 900 → flag low trust\\nwhile low trust and debtor → deny rail\\nunpaid debt → flag debtor\\nevent unpaid debt {}"
echo "Neovim end to end: all checks passed"
