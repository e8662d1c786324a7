extension Array where Element == UInt8 {
    /// Appends raw bytes in one copy. `append(contentsOf:)` given an
    /// `UnsafeRawBufferPointer` copies them one byte at a time (it has no
    /// contiguous storage to offer): eleven times slower, measured on 100 MB
    /// in pieces of 100 bytes — the checkpoint's writer and the service's
    /// report went through it.
    @inline(__always)
    package mutating func append(bytes raw: UnsafeRawBufferPointer) {
        append(contentsOf: raw.assumingMemoryBound(to: UInt8.self))
    }
}

/// A growable run of plain values in memory of its own (doubling, never
/// shrinking): reading it retains nothing. Its owner frees it.
struct PlainBuffer<Element: BitwiseCopyable> {
    private(set) var base: UnsafeMutablePointer<Element>
    private(set) var count = 0
    private var capacity = 16

    init() { base = .allocate(capacity: capacity) }

    init(first: Element) {
        self.init()
        append(first)
    }

    func deallocate() { base.deallocate() }

    /// Empties it, keeping its memory.
    mutating func removeAll() { count = 0 }

    /// Makes it `n` long; the elements past its old count are undefined
    /// until set (scratch that is written before it is read).
    mutating func resize(to n: Int) {
        if n > capacity { grow(to: n) }
        count = n
    }

    @inline(__always)
    subscript(k: Int) -> Element { base[k] }

    @inline(__always)
    mutating func append(_ value: Element) {
        if count == capacity { grow(to: count + 1) }
        base[count] = value
        count += 1
    }

    @inline(__always)
    mutating func append(contentsOf values: UnsafeBufferPointer<Element>) {
        if count + values.count > capacity { grow(to: count + values.count) }
        if let from = values.baseAddress { (base + count).update(from: from, count: values.count) }
        count += values.count
    }

    /// Room for `n` elements in all, so that appends up to it do not grow it.
    mutating func reserve(_ n: Int) {
        if n > capacity { grow(to: n) }
    }

    private mutating func grow(to needed: Int) {
        let bigger = max(needed, 2 * capacity)
        let more = UnsafeMutablePointer<Element>.allocate(capacity: bigger)
        more.update(from: base, count: count)
        base.deallocate()
        base = more
        capacity = bigger
    }
}

extension PlainBuffer where Element == UInt8 {
    /// A fixed-width value's bytes as they lie in memory (callers pass it
    /// little-endian): one store, where an array's append of eight bytes
    /// costs a hundred instructions.
    @inline(__always)
    mutating func appendBytes<T: FixedWidthInteger>(of value: T) {
        let width = MemoryLayout<T>.size
        if count + width > capacity { grow(to: count + width) }
        UnsafeMutableRawPointer(base + count).storeBytes(of: value, as: T.self)
        count += width
    }

    /// Overwrites `value`'s bytes at `offset` (a length known only later).
    mutating func setBytes<T: FixedWidthInteger>(of value: T, at offset: Int) {
        precondition(offset + MemoryLayout<T>.size <= count, "bytes set past the end")
        UnsafeMutableRawPointer(base + offset).storeBytes(of: value, as: T.self)
    }

    /// The bytes as an array (a copy).
    var array: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }
}
