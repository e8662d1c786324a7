#!/usr/bin/env python3
"""Ingest load for `rules serve` (scripts/bench-serve.sh runs it).

    serve-load.py PORT EVENTS.ndjson [CLIENTS] [LINES_PER_BODY]

Splits the stream by person into CLIENTS parts (each person's events stay
in order, in one part), cuts each part into bodies of LINES_PER_BODY
lines, and posts them from CLIENTS threads at once, each on one keep-alive
connection, every body acknowledged (durable) before the next. People are
independent, so the final report equals `rules run` over the whole
stream. Prints: lines, seconds, lines per second, and the answers' latency
percentiles. A body not answered 200, or a rejected line, fails the run.
"""
import http.client
import sys
import threading
import time
import zlib

port, path = int(sys.argv[1]), sys.argv[2]
clients = int(sys.argv[3]) if len(sys.argv) > 3 else 4
per_body = int(sys.argv[4]) if len(sys.argv) > 4 else 1000

parts = [[] for _ in range(clients)]
with open(path, "rb") as f:
    for line in f:
        # The id sits right after `{"citizen":"` in the generated lines.
        start = line.index(b'"citizen":"') + 11
        person = line[start:line.index(b'"', start)]
        parts[zlib.crc32(person) % clients].append(line)
bodies = [[b"".join(p[k:k + per_body]) for k in range(0, len(p), per_body)] for p in parts]
lines = sum(len(p) for p in parts)

latencies, failures = [], []


def post(mine):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for body in mine:
        t = time.perf_counter()
        c.request("POST", "/v1/events", body=body, headers={"Content-Type": "application/x-ndjson"})
        r = c.getresponse()
        answer = r.read()
        latencies.append(time.perf_counter() - t)
        if r.status != 200 or b'"rejected":0' not in answer:
            failures.append(answer[:300])


threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
start = time.perf_counter()
for t in threads:
    t.start()
for t in threads:
    t.join()
seconds = time.perf_counter() - start
if failures:
    sys.exit(f"{len(failures)} bodies failed, the first: {failures[0]!r}")
latencies.sort()


def pct(p):
    return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000


print(f"lines {lines} seconds {seconds:.3f} per_second {lines / seconds:.0f} "
      f"bodies {len(latencies)} p50_ms {pct(50):.2f} p99_ms {pct(99):.2f}")
