#!/usr/bin/env bash
# Renders `rules explain --html` pages in headless Chromium and checks the
# screenshots: the score line and the sanction bars must be on the page.
# Needs Chromium (Debian package `chromium`); not part of `swift test`.
#   bash scripts/check-explain-page.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "chromium is not installed (apt-get install chromium)" >&2; exit 1; }
swift build >/dev/null
rules=.build/debug/rules

page() {  # person, as-of, file
    "$rules" explain rules/citizen.rules --events examples/citizen.ndjson --person "$1" --as-of "$2" --html "$out/$3.html" >/dev/null
    "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,900 \
        --screenshot="$out/$3.png" "file://$(realpath "$out/$3.html")" >/dev/null 2>&1
}
page carol 2026-09-01 carol
page dave 2027-06-01 dave

python3 - "$out" <<'PY'
import struct, sys, zlib
def pixels(path):
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', path + ': not a PNG'
    pos, idat, width = 8, b'', 0
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b'IHDR':
            width, height, depth, color = struct.unpack('>IIBB', body[:10])
            assert depth == 8 and color in (2, 6), 'unexpected PNG format'
            channels = 4 if color == 6 else 3
        elif kind == b'IDAT':
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line); prev = line
    return [(r[i], r[i + 1], r[i + 2]) for r in rows for i in range(0, stride, channels)]

def count(px, rgb, tol=40):
    return sum(1 for p in px if all(abs(p[k] - rgb[k]) <= tol for k in range(3)))

out = sys.argv[1]
checks = {
    'carol': {'score line (blue)': (47, 111, 221), 'denial bars (red)': (216, 68, 75), 'flag bar (brown)': (167, 127, 38)},
    'dave': {'score line (blue)': (47, 111, 221), 'denial bar (red)': (216, 68, 75), 'flag bar (brown)': (167, 127, 38)},
}
failed = False
for name, wanted in checks.items():
    px = pixels(f'{out}/{name}.png')
    for what, rgb in wanted.items():
        n = count(px, rgb)
        ok = n > 200
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {what}: {n} pixels")
sys.exit(1 if failed else 0)
PY
echo "screenshots: $out/carol.png $out/dave.png"
