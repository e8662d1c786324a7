import RulesCore

/// Where a partitioned stream lives: `redis://HOST:PORT/NAME`. `HOST:PORT`
/// is one Redis server, or any node of a Redis Cluster (the others are
/// learnt from it); `NAME` names the streams `NAME:{K}`, one per partition
/// K, and the hashes `NAME:state:{K}` (docs/SCALING.md).
package struct RedisAddress: Equatable, Sendable, CustomStringConvertible {
    package var host: String
    package var port: Int
    package var name: String

    package struct Invalid: Error, CustomStringConvertible {
        package let description: String
    }

    package init(host: String, port: Int, name: String) {
        self.host = host
        self.port = port
        self.name = name
    }

    /// Reads `redis://HOST:PORT/NAME` (the port may be left out: 6379).
    package init(parsing text: String) throws(Invalid) {
        let example = "like redis://127.0.0.1:6379/events"
        guard text.hasPrefix("redis://") else {
            throw Invalid(description: "\(JSONText.quoted(text)) is not a Redis address \(example)")
        }
        let rest = text.dropFirst("redis://".count)
        guard let slash = rest.firstIndex(of: "/") else {
            throw Invalid(description: "\(JSONText.quoted(text)) names no stream: add /NAME, \(example)")
        }
        let authority = rest[..<slash], name = String(rest[rest.index(after: slash)...])
        guard !authority.contains("@") else {
            throw Invalid(description: "\(JSONText.quoted(text)): a password does not go in the address; give it with --password-file")
        }
        var host = String(authority), port = 6379
        if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else {
                throw Invalid(description: "\(JSONText.quoted(text)): the port must be a number from 1 to 65535")
            }
            port = p
        }
        guard !host.isEmpty else { throw Invalid(description: "\(JSONText.quoted(text)) names no host, \(example)") }
        try Self.check(name: name, in: text)
        self.init(host: host, port: port, name: name)
    }

    /// A stream's name becomes part of every key; braces would change which
    /// part of a key a cluster hashes (its hash tag), so they are refused,
    /// as are spaces and controls, which no tool quotes well.
    private static func check(name: String, in text: String) throws(Invalid) {
        guard !name.isEmpty else { throw Invalid(description: "\(JSONText.quoted(text)) names no stream after the /") }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:")
        if let bad = name.first(where: { !allowed.contains($0) }) {
            throw Invalid(description: "\(JSONText.quoted(text)): the stream name may hold letters, digits and _ - . : only, not \(JSONText.quoted(String(bad)))")
        }
    }

    package var description: String { "redis://\(host):\(port)/\(name)" }

    /// The stream of partition `k`.
    package func stream(_ k: Int) -> String { "\(name):{\(k)}" }

    /// The hash of partition `k`'s report lines.
    package func stateHash(_ k: Int) -> String { "\(name):state:{\(k)}" }
}

/// How people are split into partitions (the contract's "Beyond one
/// machine"): the FNV-1a 32-bit hash of the id's UTF-8 bytes, modulo the
/// number of partitions. Fixed forever: a stream published under it is
/// read back under it.
package enum Partitioning {
    package static func partition(of id: UnsafeRawBufferPointer, among count: Int) -> Int {
        var h: UInt32 = 0x811C_9DC5
        for b in id { h = (h ^ UInt32(b)) &* 0x0100_0193 }
        return Int(h % UInt32(count))
    }

    package static func partition(of id: String, among count: Int) -> Int {
        var id = id
        return id.withUTF8 { partition(of: UnsafeRawBufferPointer($0), among: count) }
    }
}

/// Which of a Redis Cluster's 16384 slots a key is in: CRC16 (XMODEM) of
/// the key, or of its hash tag — the text between the first `{` and the
/// next `}`, when not empty — modulo 16384 (the Redis Cluster
/// specification). `NAME:{K}` and `NAME:state:{K}` share partition K's slot.
package enum KeySlot {
    package static let count = 16384

    package static func of(_ key: [UInt8]) -> Int {
        var hashed = key[...]
        if let open = key.firstIndex(of: UInt8(ascii: "{")),
           let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            hashed = key[(open + 1)..<close]
        }
        return Int(crc16(hashed) & 0x3FFF)
    }

    package static func of(_ key: String) -> Int { of(Array(key.utf8)) }

    /// CRC-16/XMODEM: polynomial 0x1021, start 0, no reflection.
    package static func crc16<C: Collection>(_ bytes: C) -> UInt16 where C.Element == UInt8 {
        var crc: UInt16 = 0
        for b in bytes { crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ b)] }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { (n: Int) -> UInt16 in
        var crc = UInt16(n) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}
