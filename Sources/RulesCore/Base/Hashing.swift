/// Hashes with a fixed definition, for what is saved or compared across
/// runs and machines (checkpoints' fingerprints and checksums). Swift's own
/// `Hasher` is seeded per process and cannot be used for them.
package enum Hashing {
    /// FNV-1a, 64 bits.
    package static func fnv1a<C: Collection>(_ bytes: C) -> UInt64 where C.Element == UInt8 {
        fnv1a(bytes, continuing: fnv1aStart)
    }

    /// FNV-1a's value before any byte.
    package static let fnv1aStart: UInt64 = 0xCBF2_9CE4_8422_2325

    /// FNV-1a of bytes that follow bytes whose hash is `h` (of bytes in
    /// pieces: each piece continues the last's).
    package static func fnv1a<C: Collection>(_ bytes: C, continuing h: UInt64) -> UInt64 where C.Element == UInt8 {
        var h = h
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    /// A checksum of many bytes (the service's log records): eight bytes
    /// per multiply, where FNV-1a takes one, so that a 100 KB body costs
    /// microseconds. Any change of the bytes, their order or their length
    /// changes it but for a chance of 2⁻⁶⁴; it is not a defence against
    /// someone who wants a collision.
    package static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var sum = Checksum(count: bytes.count)
        sum.add(bytes)
        return sum.value
    }

    /// `checksum` of bytes given in pieces (a checkpoint written as it is
    /// made), whose total `count` is known at the start: the same value as
    /// `checksum` of them all at once, however they are cut.
    package struct Checksum {
        private static let m: UInt64 = 0x9E37_79B9_7F4A_7C15
        private var h: UInt64
        /// Bytes of a word not yet whole, and how many (0 to 7).
        private var pending: UInt64 = 0
        private var pendingCount = 0

        package init(count: Int) { h = 0x243F_6A88_85A3_08D3 ^ UInt64(count) }

        @inline(__always)
        private mutating func mix(_ word: UInt64) {
            h = (h ^ word) &* Self.m
            h ^= h >> 29
        }

        package mutating func add(_ bytes: UnsafeRawBufferPointer) {
            var at = 0
            while pendingCount > 0 && at < bytes.count {
                pending |= UInt64(bytes[at]) << (8 * UInt64(pendingCount))
                pendingCount += 1
                at += 1
                if pendingCount == 8 { mix(pending); pending = 0; pendingCount = 0 }
            }
            while at + 8 <= bytes.count {
                mix(bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian)
                at += 8
            }
            while at < bytes.count {
                pending |= UInt64(bytes[at]) << (8 * UInt64(pendingCount))
                pendingCount += 1
                at += 1
            }
        }

        /// The checksum of every byte added (which must be `count` of them).
        package var value: UInt64 {
            var h = (self.h ^ pending) &* Self.m
            h ^= h >> 32
            h = h &* 0xC4CE_B9FE_1A85_EC53
            return h ^ (h >> 29)
        }
    }

    package static func checksum(_ bytes: [UInt8]) -> UInt64 { bytes.withUnsafeBytes { checksum($0) } }
}
