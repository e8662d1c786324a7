#!/usr/bin/env python3
"""Rewrites the per-code sections at the end of docs/LANGUAGE.md from the
golden diagnostics in Tests/Fixtures/diagnostics (CODE-title.rules and its
.expected rendering). Run after `UPDATE_GOLDEN=1 swift test`; the test suite
checks that the docs show the current output verbatim."""
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs", "LANGUAGE.md")
MARKER = "the golden files in `Tests/Fixtures/diagnostics/`)."

# Codes whose examples need inputs too long for a golden file.
EXTRA = {
    "E0207": "Expression nested too deeply (more than 100 levels of parentheses or operators) or too long "
             "(more than 500 operators and list items in one expression). The limits keep checking and "
             "evaluation bounded.\n\n"
             "```\na where ((((((…1…)))))) > 0 → +1     # 101 or more levels\n"
             "a where x > 1 and x > 1 and … → +1   # 501 or more operators\n```\n",
    "E0208": "Too many errors: after 50 errors the rest of the input is not reported; "
             "the last diagnostic says where it stopped.\n\n"
             "```\npolicy.rules:51:12: error: too many errors; stopped after 50 [E0208]\n```\n",
}


def sections():
    blocks = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "Tests/Fixtures/diagnostics/*.rules"))):
        base = os.path.basename(path)[:-len(".rules")]
        code, title = base[:5], base[6:].replace("-", " ")
        source = open(path, encoding="utf-8", errors="replace").read()
        expected = open(path[:-len(".rules")] + ".expected", encoding="utf-8", errors="replace").read()
        blocks[code] = f"{title[0].upper() + title[1:]}.\n\n```\n{source}```\n\n```\n{expected}```\n"
    blocks.update(EXTRA)
    return "\n".join(f"### {code}\n\n{blocks[code]}" for code in sorted(blocks))


def main():
    text = open(DOCS, encoding="utf-8").read()
    head = text[: text.index(MARKER) + len(MARKER)]
    open(DOCS, "w", encoding="utf-8").write(head + "\n\n" + sections())


if __name__ == "__main__":
    main()
