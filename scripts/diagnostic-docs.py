#!/usr/bin/env python3
"""Brings the examples of docs/LANGUAGE.md's diagnostics section in step
with the golden files in Tests/Fixtures/diagnostics (CODE-title.rules and
its .expected rendering). Run after `UPDATE_GOLDEN=1 swift test`; the test
suite checks that the docs show the current output verbatim.

Only the two fenced blocks of each golden example are rewritten — the
source and, right after it, the rendering, found by the rendering's first
line, which names the golden file (`CODE-title.rules:LINE:COL: …`).
Everything else in the docs (titles, prose, examples too long for a golden
file) is the author's and is left as it is. A golden file the docs do not
show yet is listed, and nothing is written: write its section by hand
(`### CODE`, a sentence, the two blocks), then run this again.

    python3 scripts/diagnostic-docs.py [--check]

--check writes nothing and exits 1 when the docs are out of step."""
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs", "LANGUAGE.md")


def fenced_blocks(text):
    """Each fenced block: (start, end, content), from its opening fence line
    (which may name a language) to the end of its closing one."""
    blocks, opening, offset = [], None, 0
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if opening is None:
                opening = (offset, offset + len(line))
            else:
                blocks.append((opening[0], offset + len(line), text[opening[1]:offset]))
                opening = None
        offset += len(line)
    return blocks


def goldens():
    """(name, source, rendering) of each golden example, by name."""
    for path in sorted(glob.glob(os.path.join(ROOT, "Tests/Fixtures/diagnostics/*.rules"))):
        name = os.path.basename(path)
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read()
        with open(path[: -len(".rules")] + ".expected", encoding="utf-8", errors="replace") as f:
            rendering = f.read()
        yield name, source, rendering


def synced(text):
    """The docs with every golden example's blocks replaced; the names of
    goldens not shown, and of those shown more than once."""
    blocks = fenced_blocks(text)
    missing, repeated, edits = [], [], []
    for name, source, rendering in goldens():
        # A rendering block names its file first; the source block is the
        # fenced block just before it.
        at = [k for k, b in enumerate(blocks) if k > 0 and b[2].startswith(name + ":")]
        if not at:
            missing.append(name)
            continue
        if len(at) > 1:
            repeated.append(name)
            continue
        k = at[0]
        edits.append((blocks[k - 1][:2], "```\n" + source + ("" if source.endswith("\n") else "\n") + "```\n"))
        edits.append((blocks[k][:2], "```\n" + rendering + ("" if rendering.endswith("\n") else "\n") + "```\n"))
    for (start, end), replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text, missing, repeated


def main():
    check = "--check" in sys.argv[1:]
    with open(DOCS, encoding="utf-8") as f:
        text = f.read()
    new, missing, repeated = synced(text)
    for name in missing:
        print(f"docs/LANGUAGE.md does not show {name}: write its section by hand, then run this again", file=sys.stderr)
    for name in repeated:
        print(f"docs/LANGUAGE.md shows {name} more than once: keep one", file=sys.stderr)
    if missing or repeated:
        return 1
    if new == text:
        print("docs/LANGUAGE.md is in step with the golden files")
        return 0
    if check:
        print("docs/LANGUAGE.md is out of step with the golden files: run scripts/diagnostic-docs.py", file=sys.stderr)
        return 1
    with open(DOCS, "w", encoding="utf-8") as f:
        f.write(new)
    print("docs/LANGUAGE.md: the examples rewritten from the golden files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
