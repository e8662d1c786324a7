// A hand-written, hand-optimised Swift program for the reference policy
// (../shared/bench/citizen.rules), for measuring `rules run` against. It
// knows the policy by heart: no parser, no rule graph, no general engine.
// Its output must be byte-identical to `rules run`'s.
//
//   baseline EVENTS.ndjson > report.ndjson
#if canImport(Glibc)
import Glibc
#endif

let day: Int64 = 86_400_000_000_000

// MARK: - People: an open-addressing table over id bytes, state in arrays.

var ids: [UInt8] = []
var idStart: [Int] = []
var idLength: [Int] = []
var slots = [Int32](repeating: -1, count: 1 << 18)
var mask = slots.count - 1
var score: [Int64] = []
var last: [Int64] = []
var debtor: [Bool] = []
var travelEnd: [Int64] = []
var drivingEnd: [Int64] = []
var speeding: [(Int64, Int64)] = []   // the last two speeding times
var littering: [[Int64]] = []

@inline(__always)
func hash(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
    var h: UInt64 = 14_695_981_039_346_656_037
    for i in 0..<n { h = (h ^ UInt64(p[i])) &* 1_099_511_628_211 }
    return Int(truncatingIfNeeded: h)
}

func grow() {
    slots = [Int32](repeating: -1, count: slots.count * 2)
    mask = slots.count - 1
    for id in 0..<idStart.count {
        var i = ids.withUnsafeBufferPointer { hash($0.baseAddress! + idStart[id], idLength[id]) } & mask
        while slots[i] >= 0 { i = (i + 1) & mask }
        slots[i] = Int32(id)
    }
}

@inline(__always)
func person(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
    var i = hash(p, n) & mask
    while true {
        let s = slots[i]
        if s < 0 { break }
        let id = Int(s)
        if idLength[id] == n && ids.withUnsafeBufferPointer({ memcmp($0.baseAddress! + idStart[id], p, n) }) == 0 { return id }
        i = (i + 1) & mask
    }
    let id = idStart.count
    idStart.append(ids.count); idLength.append(n)
    ids.append(contentsOf: UnsafeBufferPointer(start: p, count: n))
    slots[i] = Int32(id)
    score.append(1000); last.append(Int64.min); debtor.append(false)
    travelEnd.append(Int64.min); drivingEnd.append(Int64.min)
    speeding.append((Int64.min, Int64.min)); littering.append([])
    if idStart.count * 2 > slots.count { grow() }
    return id
}

// MARK: - Parsing the reference stream's lines

@inline(__always)
func number(_ p: UnsafePointer<UInt8>, _ i: inout Int) -> Double {
    var v = 0.0, scale = 0.0
    var neg = false
    if p[i] == 45 { neg = true; i += 1 }
    while true {
        let c = p[i]
        if c >= 48 && c <= 57 {
            v = v * 10 + Double(c - 48)
            if scale > 0 { scale *= 10 }
        } else if c == 46 { scale = 1 } else { break }
        i += 1
    }
    if scale > 1 { v /= scale }
    return neg ? -v : v
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ`, in nanoseconds.
@inline(__always)
func time(_ p: UnsafePointer<UInt8>) -> Int64 {
    func d(_ k: Int) -> Int { Int(p[k]) - 48 }
    let y = d(0) * 1000 + d(1) * 100 + d(2) * 10 + d(3), m = d(5) * 10 + d(6), dd = d(8) * 10 + d(9)
    let yy = m <= 2 ? y - 1 : y
    let era = yy / 400, yoe = yy - era * 400, mp = (m + 9) % 12
    let doy = (153 * mp + 2) / 5 + dd - 1, doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    let days = era * 146_097 + doe - 719_468
    var seconds = days * 86_400
    if p[10] == UInt8(ascii: "T") { seconds += (d(11) * 10 + d(12)) * 3600 + (d(14) * 10 + d(15)) * 60 + d(17) * 10 + d(18) }
    return Int64(seconds) * 1_000_000_000
}

@inline(__always)
func clamp(_ s: Int64) -> Int64 { min(1300, max(0, s)) }

@inline(__always)
func roundHalfAway(_ x: Double) -> Int64 { Int64(x.rounded(.toNearestOrAwayFromZero)) }

var clock = Int64.min

/// Applies one line; the reference stream has only well-formed lines.
@inline(__always)
func apply(_ p: UnsafePointer<UInt8>, _ n: Int) {
    // {"citizen":"c0000001","type":"speeding","time":"…Z","speed":95,"limit":60}
    var i = 12
    let cStart = i
    while p[i] != 34 { i += 1 }
    let who = person(p + cStart, i - cStart)
    i += 10
    let tStart = i
    while p[i] != 34 { i += 1 }
    let typeFirst = p[tStart], typeLength = i - tStart
    i += 10
    let t = time(p + i)
    while p[i] != 34 { i += 1 }
    i += 1
    if t < last[who] { return }
    last[who] = t
    if t > clock { clock = t }
    // Field values in order: skip `,"name":` to the value.
    func nextValue() -> Int { while p[i] != 58 { i += 1 }; i += 1; return i }
    var delta: Int64 = 0
    switch (typeFirst, typeLength) {
    case (UInt8(ascii: "s"), 8):  // speeding
        _ = nextValue(); let speed = number(p, &i)
        _ = nextValue(); let limit = number(p, &i)
        delta = speed > limit + 30 ? -25 : -5
        let (a, b) = speeding[who]
        if a > t - 30 * day && b > t - 30 * day { drivingEnd[who] = max(drivingEnd[who], t + 90 * day) }
        speeding[who] = (b, t)
    case (UInt8(ascii: "p"), 7):  // parking
        _ = nextValue()
        delta = p[i + 1] == UInt8(ascii: "d") ? -12 : -2
    case (UInt8(ascii: "u"), 11):  // unpaid_debt
        _ = nextValue(); let amount = number(p, &i)
        delta = -10
        debtor[who] = true
        if amount >= 10_000 { travelEnd[who] = max(travelEnd[who], t + 180 * day) }
    case (UInt8(ascii: "d"), 9):  // debt_paid
        delta = 5
        debtor[who] = false
    case (UInt8(ascii: "v"), 9):  // volunteer
        _ = nextValue()
        delta = roundHalfAway(min(number(p, &i), 8))
    case (UInt8(ascii: "j"), 10): delta = -1            // jaywalking
    case (UInt8(ascii: "b"), 14): delta = 15            // blood_donation
    case (UInt8(ascii: "l"), 12):                        // late_payment
        _ = nextValue()
        if number(p, &i) > 30 { delta = -8 }
    case (UInt8(ascii: "l"), 9):                         // littering
        delta = -3
        littering[who].removeAll { $0 <= t - 365 * day }
        littering[who].append(t)
    case (UInt8(ascii: "t"), 9):                         // tax_filed
        _ = nextValue()
        delta = p[i] == UInt8(ascii: "t") ? 3 : -6
    default: break
    }
    score[who] = clamp(score[who] + delta)
}

// MARK: - Main

guard CommandLine.arguments.count == 2 else {
    fputs("usage: baseline EVENTS.ndjson\n", stderr)
    exit(2)
}
let fd = open(CommandLine.arguments[1], O_RDONLY)
guard fd >= 0 else { fputs("cannot open events\n", stderr); exit(1) }
var capacity = 1 << 22
var buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
var filled = 0
while true {
    let n = read(fd, buffer + filled, capacity - filled)
    if n <= 0 { break }
    filled += n
    var start = 0
    while let nl = memchr(buffer + start, 10, filled - start) {
        let end = buffer.distance(to: nl.assumingMemoryBound(to: UInt8.self))
        if end > start { apply(buffer + start, end - start) }
        start = end + 1
    }
    memmove(buffer, buffer + start, filled - start)
    filled -= start
    if filled == capacity {
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity * 2)
        bigger.update(from: buffer, count: filled)
        buffer.deallocate(); buffer = bigger; capacity *= 2
    }
}
if filled > 0 { buffer[filled] = 10; apply(buffer, filled) }

// The report as of the last event, people in byte order of their ids.
let order = (0..<idStart.count).sorted { a, b in
    ids.withUnsafeBufferPointer { base in
        let n = min(idLength[a], idLength[b])
        let c = memcmp(base.baseAddress! + idStart[a], base.baseAddress! + idStart[b], n)
        return c != 0 ? c < 0 : idLength[a] < idLength[b]
    }
}
var out: [UInt8] = []
out.reserveCapacity(1 << 20)
func list(_ names: [String]) -> String { "[" + names.map { "\"\($0)\"" }.joined(separator: ",") + "]" }
for who in order {
    let s = score[who], lowTrust = s < 900
    let litter = littering[who].filter { $0 > clock - 365 * day }.count
    var flags: [String] = []
    if debtor[who] { flags.append("debtor") }
    if lowTrust { flags.append("low_trust") }
    if litter >= 4 { flags.append("repeat_litterer") }
    var denied: [String] = []
    if drivingEnd[who] > clock { denied.append("driving") }
    if lowTrust { denied.append("loans") }
    if lowTrust && debtor[who] { denied.append("rail") }
    if travelEnd[who] > clock { denied.append("travel") }
    let granted = s >= 1050 ? ["fast_lane"] : []
    out += Array("{\"citizen\":\"".utf8)
    out += ids[idStart[who]..<(idStart[who] + idLength[who])]
    out += Array("\",\"score\":\(s),\"flags\":\(list(flags)),\"denied\":\(list(denied)),\"granted\":\(list(granted))}\n".utf8)
    if out.count > 1 << 20 { _ = out.withUnsafeBytes { write(1, $0.baseAddress!, $0.count) }; out.removeAll(keepingCapacity: true) }
}
_ = out.withUnsafeBytes { write(1, $0.baseAddress!, $0.count) }
