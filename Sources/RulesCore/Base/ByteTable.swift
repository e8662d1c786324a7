/// Interns byte strings to dense integer ids without building a `String`:
/// person ids, event types and field names are looked up straight from the
/// input line. Open addressing with linear probing; keys live in one arena.
///
/// A slot holds the key's first eight bytes and a tag (hash bits and length)
/// next to its id, so a lookup of a key of up to eight bytes (ids such as
/// `c0008271`, event types, field names) touches one slot and nothing else:
/// with 100k people the table is far larger than the cache, and every extra
/// array a lookup reads is another miss (docs/PERFORMANCE.md).
///
/// A class, not a struct: calling a method on a struct held in another
/// object copies it, retaining and releasing each of its arrays, several
/// times per event. The program's tables are built once and only read after
/// (so they are shared between threads safely); an engine's table of people
/// belongs to that engine alone.
final class ByteTable: @unchecked Sendable {
    private struct Slot {
        var prefix: UInt64    // the key's first 8 bytes, zero-padded
        var tag: UInt32       // low 24 bits of the hash, length (capped at 255) above
        var id: Int32         // id + 1, or 0 when empty
    }

    /// Plain memory, not an array: a lookup then never retains storage.
    @exclusivity(unchecked) private var slots: UnsafeMutableBufferPointer<Slot>
    @exclusivity(unchecked) private var hashes: [UInt32]          // per id, for growing
    /// Keys one after another, and where each starts (key i is
    /// `arena[offsets[i]..<offsets[i+1]]`): plain memory too, so that
    /// reading a key retains nothing (the service's change tracker copies
    /// every changed person's id; an array cost two retains and two
    /// releases each time).
    @exclusivity(unchecked) private var offsets = PlainBuffer<Int>(first: 0)
    @exclusivity(unchecked) private var arena = PlainBuffer<UInt8>()
    @exclusivity(unchecked) private var mask: Int

    init(capacity: Int = 16) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = .allocate(capacity: size)
        slots.initialize(repeating: Slot(prefix: 0, tag: 0, id: 0))
        hashes = []
        mask = size - 1
    }

    deinit {
        slots.deallocate()
        offsets.deallocate()
        arena.deallocate()
    }

    var count: Int { offsets.count - 1 }

    /// The first eight bytes of `key`, zero-padded, as one word.
    @inline(__always)
    static func prefix(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        let n = key.count
        guard let p = key.baseAddress else { return 0 }
        let raw = UnsafeRawPointer(p)
        if n >= 8 { return raw.loadUnaligned(as: UInt64.self).littleEndian }
        if n >= 4 {  // two overlapping 4-byte loads cover 4...7 bytes
            let low = UInt64(raw.loadUnaligned(as: UInt32.self).littleEndian)
            let high = UInt64(raw.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self).littleEndian)
            return low | high << (8 * UInt64(n - 4))
        }
        var w: UInt64 = 0
        for k in 0..<n { w |= UInt64(p[k]) << (8 * UInt64(k)) }
        return w
    }

    /// A stable hash of the bytes (person routing for `--jobs` uses it too):
    /// eight bytes at a time, then a final mix so the low bits spread well.
    @inline(__always)
    static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt32 { hash(key, prefix: prefix(key)) }

    /// The same, given the key's `prefix` (a key of up to 8 bytes is just
    /// its prefix and length: one multiply).
    @inline(__always)
    static func hash(_ key: UnsafeBufferPointer<UInt8>, prefix: UInt64) -> UInt32 {
        var h: UInt64 = (0x9E37_79B9_7F4A_7C15 ^ UInt64(key.count) ^ prefix) &* 0xFF51_AFD7_ED55_8CCD
        if key.count > 8 {
            h ^= h >> 32
            var i = 8
            let raw = UnsafeRawPointer(key.baseAddress!)
            while i + 8 <= key.count {
                h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self).littleEndian) &* 0xFF51_AFD7_ED55_8CCD
                h ^= h >> 32
                i += 8
            }
            if i < key.count {
                let rest = UnsafeBufferPointer(rebasing: key[i...])
                h = (h ^ Self.prefix(rest)) &* 0xFF51_AFD7_ED55_8CCD
            }
        }
        h ^= h >> 29
        h = h &* 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 32
        return UInt32(truncatingIfNeeded: h)
    }

    @inline(__always)
    private static func tag(_ hash: UInt32, _ count: Int) -> UInt32 {
        (hash & 0xFF_FFFF) | UInt32(min(count, 255)) << 24
    }

    /// The bytes of key `id`, valid until the next key is added.
    func key(_ id: Int) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: arena.base + offsets[id], count: offsets[id + 1] - offsets[id]) }

    /// Ids in byte order of their keys. Each id is sorted with its first
    /// eight bytes as a big-endian word, so most comparisons are one integer
    /// compare; only equal prefixes compare the whole keys.
    func sortedIds() -> [Int] {
        let base = UnsafePointer(arena.base), o = UnsafePointer(offsets.base)
        var keyed: [(prefix: UInt64, id: Int)] = (0..<count).map { id in
            (Self.sortWord(base + o[id], o[id + 1] - o[id]), id)
        }
        func precedes(_ x: (prefix: UInt64, id: Int), _ y: (prefix: UInt64, id: Int)) -> Bool {
            if x.prefix != y.prefix { return x.prefix < y.prefix }
            let xs = o[x.id], xn = o[x.id + 1] - xs, ys = o[y.id], yn = o[y.id + 1] - ys
            let c = memcmp(base + xs, base + ys, min(xn, yn))
            return c != 0 ? c < 0 : xn < yn
        }
        guard keyed.count > 256 else {
            keyed.sort(by: precedes)
            return keyed.map(\.id)
        }
        // Many ids (the report): a radix sort on the prefixes, a byte
        // at a time from the last, skipping bytes every id shares;
        // then each run of equal prefixes sorted on the whole keys.
        // Bytes every prefix shares (ids share their first bytes) are found
        // in one pass and skipped, uncounted.
        let varying = keyed.reduce(UInt64(0)) { $0 | ($1.prefix ^ keyed[0].prefix) }
        var other = keyed
        for shift in stride(from: 0, to: 64, by: 8) where (varying >> UInt64(shift)) & 0xFF != 0 {
            var counts = [Int](repeating: 0, count: 257)
            for k in keyed { counts[Int((k.prefix >> UInt64(shift)) & 0xFF) + 1] += 1 }
            for b in 1...256 { counts[b] += counts[b - 1] }
            for k in keyed {
                let b = Int((k.prefix >> UInt64(shift)) & 0xFF)
                other[counts[b]] = k
                counts[b] += 1
            }
            swap(&keyed, &other)
        }
        var start = 0
        while start < keyed.count {
            var end = start + 1
            while end < keyed.count && keyed[end].prefix == keyed[start].prefix { end += 1 }
            if end - start > 1 { keyed[start..<end].sort(by: precedes) }
            start = end
        }
        return keyed.map(\.id)
    }

    /// The report's two-step prefetch of key `id` (read in id order, keys
    /// are far apart): first where the key is, later (that cached) its bytes.
    @inline(__always)
    func prefetchKeyOffset(_ id: Int) {
        rules_prefetch(offsets.base + id)
    }

    @inline(__always)
    func prefetchKey(_ id: Int) {
        rules_prefetch(arena.base + offsets[id])
    }

    /// Calls `body` with the bytes of key `id`.
    @inline(__always)
    func withKey<R>(_ id: Int, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        body(key(id))
    }

    /// The first eight bytes of key `id` as a big-endian word (zero-padded):
    /// keys whose words differ sort as their words do; equal words need
    /// `precedes`.
    func sortKey(_ id: Int) -> UInt64 {
        withKey(id) { key in Self.sortWord(key.baseAddress ?? UnsafePointer(bitPattern: 1)!, key.count) }
    }

    /// The first eight of `count` bytes at `p` as a big-endian word.
    @inline(__always)
    static func sortWord(_ p: UnsafePointer<UInt8>, _ count: Int) -> UInt64 {
        if count >= 8 { return UInt64(bigEndian: UnsafeRawPointer(p).loadUnaligned(as: UInt64.self)) }  // one load
        var w: UInt64 = 0
        for k in 0..<min(8, count) { w |= UInt64(p[k]) << (56 - 8 * UInt64(k)) }
        return w
    }

    /// Whether key `id` sorts before key `otherId` of `other`, byte-wise.
    func precedes(_ id: Int, _ other: ByteTable, _ otherId: Int) -> Bool {
        let x = key(id), y = other.key(otherId)
        let c = memcmp(x.baseAddress!, y.baseAddress!, min(x.count, y.count))
        return c != 0 ? c < 0 : x.count < y.count
    }

    func keyString(_ id: Int) -> String { String(decoding: key(id), as: UTF8.self) }

    /// Whether slot `s` holds `key`; only keys longer than eight bytes read
    /// the arena.
    @inline(__always)
    private func matches(_ s: Slot, _ tag: UInt32, _ prefix: UInt64, _ key: UnsafeBufferPointer<UInt8>) -> Bool {
        guard s.tag == tag && s.prefix == prefix else { return false }
        if key.count <= 8 { return true }
        let id = Int(s.id - 1)
        let start = offsets[id], end = offsets[id + 1]
        guard end - start == key.count else { return false }
        return memcmp(arena.base + start + 8, key.baseAddress! + 8, key.count - 8) == 0
    }

    /// Which of `count` shares a key belongs to when people are split
    /// over engines (`rules run --jobs`, the service's shards, its lookups):
    /// the hash's high bits, scaled to `0..<count` (a multiply, not a
    /// division). Not its low bits: each engine's own table of people
    /// places keys by the low bits of the same hash, and a split by them
    /// would leave every engine only half of its slots to use.
    @inline(__always)
    static func share(hash: UInt32, among count: Int) -> Int {
        Int((UInt64(hash) &* UInt64(count)) >> 32)
    }

    static func share(of key: UnsafeBufferPointer<UInt8>, among count: Int) -> Int {
        share(hash: hash(key), among: count)
    }

    /// The id of `key`, or nil.
    @inline(__always)
    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int? {
        let prefix = Self.prefix(key)
        return find(key, prefix: prefix, hash: Self.hash(key, prefix: prefix))
    }

    /// The same, given the key's `hash` (the parallel reader has it already).
    @inline(__always)
    func find(_ key: UnsafeBufferPointer<UInt8>, hash: UInt32) -> Int? {
        find(key, prefix: Self.prefix(key), hash: hash)
    }

    @inline(__always)
    private func find(_ key: UnsafeBufferPointer<UInt8>, prefix: UInt64, hash h: UInt32) -> Int? {
        let tag = Self.tag(h, key.count)
        var i = Int(h) & mask
        while true {
            let s = slots[i]
            if s.id == 0 { return nil }
            if matches(s, tag, prefix, key) { return Int(s.id - 1) }
            i = (i + 1) & mask
        }
    }

    /// Starts loading the slot where a lookup of `key` begins.
    @inline(__always)
    func prefetch(_ key: UnsafeBufferPointer<UInt8>) { prefetch(hash: Self.hash(key)) }

    @inline(__always)
    func prefetch(hash: UInt32) {
        rules_prefetch(slots.baseAddress! + (Int(hash) & mask))
    }

    /// The id of `key`, adding it when new.
    @inline(__always)
    func intern(_ key: UnsafeBufferPointer<UInt8>) -> (id: Int, isNew: Bool) {
        let prefix = Self.prefix(key)
        return intern(key, prefix: prefix, hash: Self.hash(key, prefix: prefix))
    }

    /// The same, given the key's `hash`.
    @inline(__always)
    func intern(_ key: UnsafeBufferPointer<UInt8>, hash: UInt32) -> (id: Int, isNew: Bool) {
        intern(key, prefix: Self.prefix(key), hash: hash)
    }

    @inline(__always)
    private func intern(_ key: UnsafeBufferPointer<UInt8>, prefix: UInt64, hash h: UInt32) -> (id: Int, isNew: Bool) {
        let tag = Self.tag(h, key.count)
        var i = Int(h) & mask
        while true {
            let s = slots[i]
            if s.id == 0 { break }
            if matches(s, tag, prefix, key) { return (Int(s.id - 1), false) }
            i = (i + 1) & mask
        }
        let id = count
        arena.append(contentsOf: key)
        offsets.append(arena.count)
        hashes.append(h)
        slots[i] = Slot(prefix: prefix, tag: tag, id: Int32(id + 1))
        if count * 2 > slots.count { grow() }
        return (id, true)
    }

    func intern(_ key: String) -> Int {
        var k = key
        return k.withUTF8 { intern($0).id }
    }

    private func grow() {
        let old = slots
        defer { old.deallocate() }
        slots = .allocate(capacity: old.count * 2)
        slots.initialize(repeating: Slot(prefix: 0, tag: 0, id: 0))
        mask = slots.count - 1
        for s in old where s.id != 0 {
            var i = Int(hashes[Int(s.id - 1)]) & mask
            while slots[i].id != 0 { i = (i + 1) & mask }
            slots[i] = s
        }
    }
}

import MemoryHints
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
