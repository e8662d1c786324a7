/// Hashes with a fixed definition, for what is saved or compared across
/// runs and machines (checkpoints' fingerprints and checksums). Swift's own
/// `Hasher` is seeded per process and cannot be used for them.
package enum Hashing {
    /// FNV-1a, 64 bits.
    package static func fnv1a<C: Collection>(_ bytes: C) -> UInt64 where C.Element == UInt8 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }
}
