// A hand-written, hand-optimised Swift program for the reference policy
// (../shared/bench/citizen.rules), for measuring `rules run` against. It
// knows the policy by heart: no parser, no rule graph, no general engine.
// It uses the same memory tricks as the engine (one-slot id look-ups, one
// record per person, prefetching a few lines ahead), so the ratio measures
// the cost of interpreting a policy, not of a naive program.
// Its output must be byte-identical to `rules run`'s.
//
//   baseline EVENTS.ndjson > report.ndjson
#if canImport(Glibc)
import Glibc
#endif
import Hints

let day: Int64 = 86_400_000_000_000

/// One person's whole state.
struct Person {
    var score: Int64 = 1000
    var last = Int64.min
    var travelEnd = Int64.min
    var drivingEnd = Int64.min
    var speeding = (Int64.min, Int64.min)   // the last two speeding times
    var debtor = false
}

/// Open addressing over id bytes; a slot holds the id's first 8 bytes.
struct Slot {
    var prefix: UInt64 = 0
    var length: Int32 = 0
    var id: Int32 = -1
}

final class Baseline {
    var slots: UnsafeMutablePointer<Slot>
    var mask: Int
    var people: UnsafeMutablePointer<Person>
    var count = 0, capacity = 1 << 16
    var ids: [UInt8] = []
    var idStart: [Int] = []
    var littering: [[Int64]] = []
    var clock = Int64.min

    init() {
        mask = (1 << 18) - 1
        slots = .allocate(capacity: mask + 1)
        slots.initialize(repeating: Slot(), count: mask + 1)
        people = .allocate(capacity: capacity)
    }

    @inline(__always)
    static func prefix(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
        if n >= 8 { return UnsafeRawPointer(p).loadUnaligned(as: UInt64.self) }
        var w: UInt64 = 0
        for k in 0..<n { w |= UInt64(p[k]) << (8 * UInt64(k)) }
        return w
    }

    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(n)
        var i = 0
        while i + 8 <= n {
            h = (h ^ UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 32
            i += 8
        }
        if i < n { h = (h ^ prefix(p + i, n - i)) &* 0xFF51_AFD7_ED55_8CCD }
        h ^= h >> 29
        return Int(truncatingIfNeeded: h &* 0xC4CE_B9FE_1A85_EC53)
    }

    @inline(__always)
    func sameKey(_ s: Slot, _ p: UnsafePointer<UInt8>, _ n: Int, _ w: UInt64) -> Bool {
        guard s.length == n && s.prefix == w else { return false }
        if n <= 8 { return true }
        return ids.withUnsafeBufferPointer { memcmp($0.baseAddress! + idStart[Int(s.id)] + 8, p + 8, n - 8) == 0 }
    }

    @inline(__always)
    func person(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        let w = Self.prefix(p, n)
        var i = Self.hash(p, n) & mask
        while slots[i].id >= 0 {
            if sameKey(slots[i], p, n, w) { return Int(slots[i].id) }
            i = (i + 1) & mask
        }
        let id = count
        slots[i] = Slot(prefix: w, length: Int32(n), id: Int32(id))
        idStart.append(ids.count)
        ids.append(contentsOf: UnsafeBufferPointer(start: p, count: n))
        littering.append([])
        if count == capacity {
            let bigger = UnsafeMutablePointer<Person>.allocate(capacity: capacity * 2)
            bigger.moveInitialize(from: people, count: count)
            people.deallocate(); people = bigger; capacity *= 2
        }
        (people + id).initialize(to: Person())
        count += 1
        if count * 2 > mask { grow() }
        return id
    }

    func grow() {
        let old = slots, oldSize = mask + 1
        mask = oldSize * 2 - 1
        slots = .allocate(capacity: mask + 1)
        slots.initialize(repeating: Slot(), count: mask + 1)
        for k in 0..<oldSize where old[k].id >= 0 {
            let start = idStart[Int(old[k].id)]
            var i = ids.withUnsafeBufferPointer { Self.hash($0.baseAddress! + start, Int(old[k].length)) } & mask
            while slots[i].id >= 0 { i = (i + 1) & mask }
            slots[i] = old[k]
        }
        old.deallocate()
    }

    /// Asks for the slot (far ahead) or the person's record (nearer, once
    /// the slot is cached).
    @inline(__always)
    func prefetch(_ line: UnsafePointer<UInt8>, _ n: Int, record: Bool) {
        var i = 12
        while i < n && line[i] != 34 { i += 1 }
        let slot = Self.hash(line + 12, i - 12) & mask
        if !record { bench_prefetch(slots + slot); return }
        let w = Self.prefix(line + 12, i - 12)
        var k = slot
        while slots[k].id >= 0 {
            if sameKey(slots[k], line + 12, i - 12, w) { bench_prefetch(people + Int(slots[k].id)); return }
            k = (k + 1) & mask
        }
    }

    @inline(__always)
    static func number(_ p: UnsafePointer<UInt8>, _ i: inout Int) -> Double {
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

    /// Nanoseconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ`.
    @inline(__always)
    static func time(_ p: UnsafePointer<UInt8>) -> Int64 {
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

    /// Applies one line; the reference stream has only well-formed lines.
    @inline(__always)
    func apply(_ p: UnsafePointer<UInt8>, _ n: Int) {
        // {"citizen":"c0000001","type":"speeding","time":"…Z","speed":95,"limit":60}
        var i = 12
        while p[i] != 34 { i += 1 }
        let who = person(p + 12, i - 12)
        i += 10
        let tStart = i
        while p[i] != 34 { i += 1 }
        let typeFirst = p[tStart], typeLength = i - tStart
        i += 10
        let t = Self.time(p + i)
        while p[i] != 34 { i += 1 }
        i += 1
        let me = people + who
        if t < me.pointee.last { return }
        me.pointee.last = t
        if t > clock { clock = t }
        // Field values in order: skip `,"name":` to the value.
        func nextValue() { while p[i] != 58 { i += 1 }; i += 1 }
        var delta: Int64 = 0
        switch (typeFirst, typeLength) {
        case (UInt8(ascii: "s"), 8):  // speeding
            nextValue(); let speed = Self.number(p, &i)
            nextValue(); let limit = Self.number(p, &i)
            delta = speed > limit + 30 ? -25 : -5
            let (a, b) = me.pointee.speeding
            if a > t - 30 * day && b > t - 30 * day { me.pointee.drivingEnd = max(me.pointee.drivingEnd, t + 90 * day) }
            me.pointee.speeding = (b, t)
        case (UInt8(ascii: "p"), 7):  // parking
            nextValue()
            delta = p[i + 1] == UInt8(ascii: "d") ? -12 : -2
        case (UInt8(ascii: "u"), 11):  // unpaid_debt
            nextValue(); let amount = Self.number(p, &i)
            delta = -10
            me.pointee.debtor = true
            if amount >= 10_000 { me.pointee.travelEnd = max(me.pointee.travelEnd, t + 180 * day) }
        case (UInt8(ascii: "d"), 9):  // debt_paid
            delta = 5
            me.pointee.debtor = false
        case (UInt8(ascii: "v"), 9):  // volunteer
            nextValue()
            delta = Int64(min(Self.number(p, &i), 8).rounded(.toNearestOrAwayFromZero))
        case (UInt8(ascii: "j"), 10): delta = -1            // jaywalking
        case (UInt8(ascii: "b"), 14): delta = 15            // blood_donation
        case (UInt8(ascii: "l"), 12):                        // late_payment
            nextValue()
            if Self.number(p, &i) > 30 { delta = -8 }
        case (UInt8(ascii: "l"), 9):                         // littering
            delta = -3
            littering[who].removeAll { $0 <= t - 365 * day }
            littering[who].append(t)
        case (UInt8(ascii: "t"), 9):                         // tax_filed
            nextValue()
            delta = p[i] == UInt8(ascii: "t") ? 3 : -6
        default: break
        }
        me.pointee.score = min(1300, max(0, me.pointee.score + delta))
    }

    /// The lines of a buffer, applied with prefetches 8 and 4 lines ahead.
    func applyLines(_ base: UnsafePointer<UInt8>, _ lines: [(Int, Int)]) {
        for k in lines.indices {
            if k + 8 < lines.count { prefetch(base + lines[k + 8].0, lines[k + 8].1, record: false) }
            if k + 4 < lines.count { prefetch(base + lines[k + 4].0, lines[k + 4].1, record: true) }
            apply(base + lines[k].0, lines[k].1)
        }
    }

    /// The report as of the last event, people in byte order of their ids.
    func report() {
        let order = ids.withUnsafeBufferPointer { base in
            (0..<count).map { (Self.bigEndianPrefix(base.baseAddress! + idStart[$0], idLength($0)), $0) }
        }.sorted { a, b in
            if a.0 != b.0 { return a.0 < b.0 }
            return ids.withUnsafeBufferPointer { base in
                let n = min(idLength(a.1), idLength(b.1))
                let c = memcmp(base.baseAddress! + idStart[a.1], base.baseAddress! + idStart[b.1], n)
                return c != 0 ? c < 0 : idLength(a.1) < idLength(b.1)
            }
        }.map(\.1)
        var out: [UInt8] = []
        out.reserveCapacity(1 << 20)
        func put(_ s: StaticString) { out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount)) }
        func names(_ list: [StaticString]) {
            out.append(UInt8(ascii: "["))
            for (k, name) in list.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                out.append(UInt8(ascii: "\"")); put(name); out.append(UInt8(ascii: "\""))
            }
            out.append(UInt8(ascii: "]"))
        }
        for (k, who) in order.enumerated() {
            if k + 8 < order.count { bench_prefetch(people + order[k + 8]) }
            let me = people[who]
            let s = me.score, lowTrust = s < 900
            let litter = littering[who].reduce(0) { $0 + ($1 > clock - 365 * day ? 1 : 0) }
            var flags: [StaticString] = [], denied: [StaticString] = []
            if me.debtor { flags.append("debtor") }
            if lowTrust { flags.append("low_trust") }
            if litter >= 4 { flags.append("repeat_litterer") }
            if me.drivingEnd > clock { denied.append("driving") }
            if lowTrust { denied.append("loans") }
            if lowTrust && me.debtor { denied.append("rail") }
            if me.travelEnd > clock { denied.append("travel") }
            put("{\"citizen\":\"")
            out.append(contentsOf: ids[idStart[who]..<(idStart[who] + idLength(who))])
            put("\",\"score\":")
            out.append(contentsOf: String(s).utf8)
            put(",\"flags\":"); names(flags)
            put(",\"denied\":"); names(denied)
            put(",\"granted\":"); names(s >= 1050 ? ["fast_lane"] : [])
            put("}\n")
            if out.count > 1 << 20 { _ = out.withUnsafeBytes { write(1, $0.baseAddress!, $0.count) }; out.removeAll(keepingCapacity: true) }
        }
        _ = out.withUnsafeBytes { write(1, $0.baseAddress!, $0.count) }
    }

    func idLength(_ who: Int) -> Int { (who + 1 < idStart.count ? idStart[who + 1] : ids.count) - idStart[who] }

    static func bigEndianPrefix(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
        var w: UInt64 = 0
        for k in 0..<min(8, n) { w |= UInt64(p[k]) << (56 - 8 * UInt64(k)) }
        return w
    }
}

// MARK: - Main

guard CommandLine.arguments.count == 2 else {
    fputs("usage: baseline EVENTS.ndjson\n", stderr)
    exit(2)
}
let fd = open(CommandLine.arguments[1], O_RDONLY)
guard fd >= 0 else { fputs("cannot open events\n", stderr); exit(1) }
let engine = Baseline()
var capacity = 1 << 22
var buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity + 1)
var filled = 0
var lines: [(Int, Int)] = []
var atEnd = false
while !atEnd {
    let n = read(fd, buffer + filled, capacity - filled)
    if n <= 0 { atEnd = true } else { filled += n }
    var start = 0
    lines.removeAll(keepingCapacity: true)
    while let nl = memchr(buffer + start, 10, filled - start) {
        let end = buffer.distance(to: nl.assumingMemoryBound(to: UInt8.self))
        if end > start { lines.append((start, end - start)) }
        start = end + 1
    }
    if atEnd && start < filled { buffer[filled] = 10; lines.append((start, filled - start)); start = filled }
    engine.applyLines(buffer, lines)
    memmove(buffer, buffer + start, filled - start)
    filled -= start
    if filled == capacity {
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity * 2 + 1)
        bigger.update(from: buffer, count: filled)
        buffer.deallocate(); buffer = bigger; capacity *= 2
    }
}
engine.report()
exit(0)  // the OS frees everything faster
