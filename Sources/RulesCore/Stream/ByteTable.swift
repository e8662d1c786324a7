/// Interns byte strings to dense integer ids without building a `String`:
/// person ids, event types and field names are looked up straight from the
/// input line. Open addressing with linear probing; keys live in one arena.
struct ByteTable: Sendable {
    private var slots: [Int32]            // id + 1, or 0 when empty
    private var hashes: [UInt32]          // per id, to skip most key compares
    private var offsets: [Int] = [0]      // key i is arena[offsets[i]..<offsets[i+1]]
    private(set) var arena: [UInt8] = []
    private var mask: Int

    init(capacity: Int = 16) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Int32](repeating: 0, count: size)
        hashes = []
        mask = size - 1
    }

    var count: Int { offsets.count - 1 }

    @inline(__always)
    static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt32 {
        // FNV-1a: short keys, cheap, good enough spread for ids.
        var h: UInt32 = 2_166_136_261
        for b in key { h = (h ^ UInt32(b)) &* 16_777_619 }
        return h
    }

    func key(_ id: Int) -> ArraySlice<UInt8> { arena[offsets[id]..<offsets[id + 1]] }

    /// Ids in byte order of their keys.
    func sortedIds() -> [Int] {
        arena.withUnsafeBufferPointer { a in
            offsets.withUnsafeBufferPointer { o in
                let base = a.baseAddress ?? UnsafePointer(bitPattern: 1)!
                return (0..<count).sorted { x, y in
                    let xs = o[x], xn = o[x + 1] - xs, ys = o[y], yn = o[y + 1] - ys
                    let c = memcmp(base + xs, base + ys, min(xn, yn))
                    return c != 0 ? c < 0 : xn < yn
                }
            }
        }
    }

    func keyString(_ id: Int) -> String { String(decoding: key(id), as: UTF8.self) }

    @inline(__always)
    private func equals(_ id: Int, _ key: UnsafeBufferPointer<UInt8>) -> Bool {
        let start = offsets[id], end = offsets[id + 1]
        guard end - start == key.count else { return false }
        return arena.withUnsafeBufferPointer { a in
            key.count == 0 || memcmp(a.baseAddress! + start, key.baseAddress!, key.count) == 0
        }
    }

    /// The id of `key`, or nil.
    @inline(__always)
    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int? {
        let h = Self.hash(key)
        var i = Int(h) & mask
        while true {
            let s = slots[i]
            if s == 0 { return nil }
            let id = Int(s - 1)
            if hashes[id] == h && equals(id, key) { return id }
            i = (i + 1) & mask
        }
    }

    /// The id of `key`, adding it when new.
    @inline(__always)
    mutating func intern(_ key: UnsafeBufferPointer<UInt8>) -> (id: Int, isNew: Bool) {
        let h = Self.hash(key)
        var i = Int(h) & mask
        while true {
            let s = slots[i]
            if s == 0 { break }
            let id = Int(s - 1)
            if hashes[id] == h && equals(id, key) { return (id, false) }
            i = (i + 1) & mask
        }
        let id = count
        arena.append(contentsOf: key)
        offsets.append(arena.count)
        hashes.append(h)
        slots[i] = Int32(id + 1)
        if count * 2 > slots.count { grow() }
        return (id, true)
    }

    mutating func intern(_ key: String) -> Int {
        var k = key
        return k.withUTF8 { intern($0).id }
    }

    private mutating func grow() {
        let size = slots.count * 2
        slots = [Int32](repeating: 0, count: size)
        mask = size - 1
        for id in 0..<count {
            var i = Int(hashes[id]) & mask
            while slots[i] != 0 { i = (i + 1) & mask }
            slots[i] = Int32(id + 1)
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
