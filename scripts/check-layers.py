#!/usr/bin/env python3
"""The layers of RulesCore, checked: each folder may use the types of the
folders listed for it in LAYERS (and its own), nothing else. Swift cannot
enforce this inside one module, so CI runs this (docs/ARCHITECTURE.md).

A use is a type's name as a word in the code (comments and string
literals removed). Prints every use that crosses a layer the wrong way;
exit 1 if there is one.

    python3 scripts/check-layers.py [--matrix]
"""
import os, re, sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "Sources", "RulesCore")

# Lower layers first; a folder may use itself and what is listed.
LAYERS = {
    "Base":        [],
    "Source":      ["Base"],
    "Diagnostics": ["Base", "Source"],
    "Syntax":      ["Base", "Source", "Diagnostics"],
    "Check":       ["Base", "Source", "Diagnostics", "Syntax"],
    "State":       ["Base"],
    "Eval":        ["Base", "Source", "Diagnostics", "Syntax", "Check", "State"],
    "Compile":     ["Base", "Source", "Diagnostics", "Syntax", "Check", "Eval"],
    "Stream":      ["Base", "Syntax", "Check", "Eval"],
    "Engine":      ["Base", "Syntax", "Check", "State", "Eval", "Stream"],
    "Explain":     ["Base", "Source", "Diagnostics", "Syntax", "Check", "State", "Eval", "Stream", "Engine"],
    "Checkpoint":  ["Base", "Syntax", "Check", "State", "Eval", "Stream", "Engine"],
    "Run":         ["Base", "Check", "Eval", "Stream", "Engine", "Explain", "Checkpoint"],
    "API":         ["Base", "Source", "Diagnostics", "Syntax", "Check", "Eval", "Compile", "Stream", "Engine",
                    "Explain", "Checkpoint", "Run"],
}

DECL = re.compile(r"^(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|package|internal|private|fileprivate|final|indirect)\s+)*"
                  r"(?:struct|enum|class|protocol|typealias|actor)\s+([A-Z]\w*)", re.M)


def code_of(text):
    text = re.sub(r'#"(?:[^"]|"(?!#))*"#', '""', text)          # raw strings
    text = re.sub(r'"""[\s\S]*?"""', '""', text)                  # multi-line strings
    text = re.sub(r'"(?:\\.|[^"\\\n])*"', '""', text)             # strings
    text = re.sub(r"//[^\n]*", "", text)                           # comments
    return text


def files(folder):
    for dirpath, _, names in os.walk(os.path.join(ROOT, folder)):
        for n in sorted(names):
            if n.endswith(".swift"):
                yield os.path.join(dirpath, n)


def main():
    folders = sorted(d for d in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, d)))
    unknown = [f for f in folders if f not in LAYERS]
    if unknown:
        print(f"check-layers: folders with no layer: {', '.join(unknown)} (add them to LAYERS)")
        return 1
    owner = {}
    for folder in folders:
        for path in files(folder):
            for name in DECL.findall(code_of(open(path).read())):
                owner.setdefault(name, folder)
    uses = {}
    problems = []
    for folder in folders:
        allowed = set(LAYERS[folder]) | {folder}
        for path in files(folder):
            words = set(re.findall(r"\b[A-Z]\w*\b", code_of(open(path).read())))
            for w in sorted(words):
                other = owner.get(w)
                if other is None or other == folder:
                    continue
                uses.setdefault((folder, other), set()).add(w)
                if other not in allowed:
                    problems.append(f"{os.path.relpath(path, os.path.join(ROOT, '..', '..'))}: uses {w} ({other}/), "
                                    f"which {folder}/ may not")
    if "--matrix" in sys.argv:
        for (a, b), names in sorted(uses.items()):
            print(f"{a:12} → {b:12} {', '.join(sorted(names))}")
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"check-layers: {len(folders)} layers of RulesCore, every use goes down")
    return 0


sys.exit(main())
