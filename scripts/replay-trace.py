#!/usr/bin/env python3
"""Rebuilds `rules run`'s report from its audit trail alone (docs/TRACE.md).

usage: replay-trace.py TRACE.ndjson CLOCK > report.ndjson
CLOCK is the report's time (the stream's last event, or --as-of), e.g.
2026-12-31T23:59:24Z. The output must equal `rules run`'s, byte for byte:

  rules run POLICY --events E --trace T > report.ndjson
  python3 scripts/replay-trace.py T "$(tail -1 E | ...time...)" | cmp - report.ndjson
"""
import json
import sys
from datetime import datetime, timezone


def instant(text):
    """ISO-8601 as the engine writes it (Z, optional fraction) → nanoseconds."""
    if text is None:
        return None
    if len(text) == 10:
        text += "T00:00:00Z"
    main, _, frac = text[:-1].partition(".")
    seconds = int(datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
    return seconds * 10**9 + int((frac + "000000000")[:9] if frac else 0)


def main():
    path, clock = sys.argv[1], instant(sys.argv[2])
    people = {}
    with open(path, encoding="utf-8") as trace:
        for line in trace:
            r = json.loads(line)
            assert r["v"] == 1, "unknown trace version"
            p = people.setdefault(r["citizen"], {"score": 0, "ends": {}, "holds": {}, "present": True, "attributes": {}})
            effect = r["effect"]
            # A retraction that leaves none of a person's events standing
            # takes them out of the report; their next event brings them back.
            if effect == "retract":
                p["present"] = r["remaining"] > 0
            elif r["line"] is not None:
                p["present"] = True
            if "score_after" in r:
                p["score"] = r["score_after"]
            if effect in ("flag", "deny", "grant"):
                # A denial for a reason is its own: lifted on its own.
                key, time, until = (effect, r["name"], r.get("reason")), instant(r["time"]), instant(r["until"])
                if key in p["ends"] and (p["ends"][key] is None or p["ends"][key] > time):
                    old = p["ends"][key]
                    p["ends"][key] = None if old is None or until is None else max(old, until)
                else:
                    p["ends"][key] = until
            elif effect in ("clear", "allow", "revoke"):
                kind = {"clear": "flag", "allow": "deny", "revoke": "grant"}[effect]
                p["ends"].pop((kind, r["name"], r.get("reason")), None)
            elif effect == "new" and "attributes" in r:
                p["attributes"] = dict(r["attributes"])  # start values, in the policy's order
            elif effect == "set":
                p["attributes"][r["attribute"]] = r["after"]
            elif effect == "start":
                p["holds"][r["rule"]] = r["holds"]
            elif effect == "stop":
                p["holds"].pop(r["rule"], None)
    out = sys.stdout
    for who in sorted(people, key=lambda s: s.encode("utf-8")):
        p = people[who]
        if not p["present"]:
            continue
        held = {tuple(h.split(" ", 1)) for hs in p["holds"].values() for h in hs}
        held |= {(k[0], k[1]) for k, end in p["ends"].items() if end is None or end > clock}
        names = lambda kind: sorted((n for k, n in held if k == kind), key=lambda s: s.encode("utf-8"))
        denied = names("deny")
        granted = [n for n in names("grant") if n not in denied]
        record = {"citizen": who, "score": p["score"], "flags": names("flag"), "denied": denied, "granted": granted}
        # Attributes follow, in the policy's order; outputs are computed from
        # windows the trail does not hold, so a policy with outputs replays
        # to its report without them.
        record.update(p["attributes"])
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
