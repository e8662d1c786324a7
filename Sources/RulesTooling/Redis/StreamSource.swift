import RulesCore

/// What a worker reads (`rules serve … --source redis://HOST:PORT/NAME
/// --partitions A-B/N`): the streams `NAME:{A}` … `NAME:{B}` of N.
package struct StreamSource: Sendable, Equatable, CustomStringConvertible {
    package let address: RedisAddress
    package let partitions: ClosedRange<Int>
    /// N: how many partitions the people are split into.
    package let count: Int

    package struct Invalid: Error, CustomStringConvertible {
        package let description: String
    }

    package init(address: RedisAddress, partitions: ClosedRange<Int>, count: Int) {
        self.address = address
        self.partitions = partitions
        self.count = count
    }

    /// `A-B/N` (or `K/N`, one partition).
    package init(address: RedisAddress, partitions text: String) throws(Invalid) {
        let usage = "--partitions takes A-B/N (partitions A to B of N, like 0-3/8) or K/N, not \(text)"
        let halves = text.split(separator: "/", omittingEmptySubsequences: false)
        guard halves.count == 2, let n = Int(halves[1]) else { throw Invalid(description: usage) }
        let ends = halves[0].split(separator: "-", omittingEmptySubsequences: false)
        guard ends.count <= 2, let a = Int(ends[0]), let b = Int(ends[ends.count - 1]) else { throw Invalid(description: usage) }
        guard (1...KeySlot.count).contains(n) else { throw Invalid(description: "--partitions \(text): N must be from 1 to \(KeySlot.count)") }
        guard 0 <= a, a <= b, b < n else { throw Invalid(description: "--partitions \(text): A and B must satisfy 0 ≤ A ≤ B < N") }
        self.init(address: address, partitions: a...b, count: n)
    }

    /// `redis://HOST:PORT/NAME A-B/N`, as the data directory records it.
    package var description: String { "\(address) \(partitions.lowerBound)-\(partitions.upperBound)/\(count)" }
}

/// A stream entry's id, `MS-N`.
package struct EntryId: Comparable, Hashable, Sendable, CustomStringConvertible {
    package var ms: UInt64
    package var sequence: UInt64

    package static let zero = EntryId(ms: 0, sequence: 0)

    package init(ms: UInt64, sequence: UInt64) {
        self.ms = ms
        self.sequence = sequence
    }

    package init?(_ text: some StringProtocol) {
        self.init(bytes: Array(text.utf8))
    }

    /// From its bytes, as a reply holds them.
    package init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        guard let id = bytes.withContiguousStorageIfAvailable({ EntryId(parsing: $0) }) ?? EntryId(parsing: Array(bytes)) else { return nil }
        self = id
    }

    /// From bytes in memory: `MS-N`, each at most twenty digits and at
    /// most `UInt64.max` (Redis writes no leading zeros; read once per
    /// entry a worker takes: no `String`, and a check for overflow only on
    /// a twenty-digit number).
    package init?(parsing bytes: UnsafeBufferPointer<UInt8>) {
        guard let (ms, dash) = Self.decimal(bytes, from: 0), dash < bytes.count, bytes[dash] == UInt8(ascii: "-"),
              let (sequence, end) = Self.decimal(bytes, from: dash + 1), end == bytes.count else { return nil }
        self.init(ms: ms, sequence: sequence)
    }

    private init?(parsing array: [UInt8]) {
        guard let id = array.withUnsafeBufferPointer({ EntryId(parsing: $0) }) else { return nil }
        self = id
    }

    /// The digits from `start` on, up to the first byte that is not one:
    /// their value and where they end; nil when there are none, more than
    /// twenty, or their value is past `UInt64.max` (which has twenty
    /// digits: fewer never overflow). One pass, no slices.
    private static func decimal(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> (value: UInt64, end: Int)? {
        var value: UInt64 = 0, i = start
        let unchecked = min(bytes.count, start + 19)
        while i < unchecked {
            let d = bytes[i] &- 0x30
            if d >= 10 { break }
            value = value &* 10 &+ UInt64(d)
            i += 1
        }
        if i == start + 19, i < bytes.count, bytes[i] &- 0x30 < 10 {
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(UInt64(bytes[i] &- 0x30))
            guard !o1, !o2 else { return nil }
            value = sum
            i += 1
            if i < bytes.count, bytes[i] &- 0x30 < 10 { return nil }  // a twenty-first digit
        }
        return i > start ? (value, i) : nil
    }

    package var description: String { "\(ms)-\(sequence)" }

    package static func < (a: EntryId, b: EntryId) -> Bool { (a.ms, a.sequence) < (b.ms, b.sequence) }
}

/// Where the reading of one partition stands: the last entry applied, and
/// how many entries have been (the lag is the stream's count past that).
package struct StreamPosition: Equatable, Sendable {
    package var last: EntryId
    package var applied: Int

    package init(last: EntryId, applied: Int) {
        self.last = last
        self.applied = applied
    }
}

/// One batch read from the streams, as the log keeps it: its lines (each
/// partition's in their order, one partition after another), where each
/// partition it read from stands after them, and the latest event time
/// the other workers had reached (`NAME:clock`), which the report is
/// evaluated at when it is later than this worker's own. A batch may have
/// no lines: the clock alone moved, or it only publishes.
///
/// `publishes`: whether the changed report lines are looked for after it
/// (and published: lookups, the change feed, `NAME:state:{K}`). While a
/// backlog is read, the batches between two that publish are held: their
/// changes are found at the next that does, as if the held ones and it
/// were one body — a person changed in ten batches is looked at once, not
/// ten times. It is decided when the batch is read and kept in the log, so
/// that a replay looks where the live service looked (the change feed's
/// events and numbers are the same).
package struct SourcedBatch: Equatable, Sendable {
    package var positions: [Int: StreamPosition]
    package var outsideClock: Int64?
    package var body: [UInt8]
    package var publishes: Bool

    package init(positions: [Int: StreamPosition], outsideClock: Int64?, body: [UInt8], publishes: Bool = true) {
        self.positions = positions
        self.outsideClock = outsideClock
        self.body = body
        self.publishes = publishes
    }

    /// Bytes: the number of positions (4; its top bit set when the batch
    /// is held — a log written before batches could be held has none, and
    /// each of its batches publishes), each as partition (4), entry id
    /// (8 + 8) and entries applied (8); the outside clock (8, `Int64.min`
    /// for none); then the body. Little-endian.
    package var encodedCount: Int { 4 + positions.count * 28 + 8 + body.count }

    private static let held: UInt32 = 1 << 31

    package func encode(into out: inout [UInt8]) {
        func put<T: FixedWidthInteger>(_ n: T) { withUnsafeBytes(of: n.littleEndian) { out.append(bytes: $0) } }
        put(UInt32(positions.count) | (publishes ? 0 : Self.held))
        for k in positions.keys.sorted() {
            let p = positions[k]!
            put(UInt32(k))
            put(p.last.ms)
            put(p.last.sequence)
            put(UInt64(p.applied))
        }
        put(outsideClock ?? Int64.min)
        out.append(contentsOf: body)
    }

    package init?(decoding bytes: ArraySlice<UInt8>) {
        var at = bytes.startIndex
        func take<T: FixedWidthInteger>(_: T.Type) -> T? {
            guard at + MemoryLayout<T>.size <= bytes.endIndex else { return nil }
            defer { at += MemoryLayout<T>.size }
            return bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: at - bytes.startIndex, as: T.self)) }
        }
        guard let word = take(UInt32.self), case let n = word & ~Self.held, Int(n) <= bytes.count / 28 else { return nil }
        var positions: [Int: StreamPosition] = [:]
        for _ in 0..<n {
            guard let k = take(UInt32.self), let ms = take(UInt64.self), let seq = take(UInt64.self), let applied = take(UInt64.self),
                  applied <= UInt64(Int.max) else { return nil }
            positions[Int(k)] = StreamPosition(last: EntryId(ms: ms, sequence: seq), applied: Int(applied))
        }
        guard let clock = take(Int64.self) else { return nil }
        self.init(positions: positions, outsideClock: clock == Int64.min ? nil : clock, body: Array(bytes[at...]), publishes: word & Self.held == 0)
    }
}
