import RulesCore

/// The service's checkpoint (`DIR/checkpoint`): its state after the log's
/// records up to `logEnd`, so that a start restores it and replays only the
/// log's tail. Written whole or not at all (`Checkpoint.writeFile`: a file
/// beside it, synced, renamed over it); a checkpoint that does not read back
/// is ignored and the whole log replayed.
///
/// File: `RULESSRV`, a version (4 bytes), then each part as its length (8
/// bytes) and its bytes — a JSON header (`log_end`, `lines`, the totals,
/// `last_id`, the policy in force; a worker's `positions` and
/// `outside_clock`, `SourcedBatch`), the change feed's kept events (each an
/// id and its text), the engine's `Checkpoint` — and a checksum of all that
/// (8 bytes; integers little-endian).
struct ServiceCheckpoint {
    static let magic = Array("RULESSRV".utf8)
    static let version: UInt32 = 1

    var logEnd: Int
    var lines: Int
    var totals: (bodies: Int, read: Int, applied: Int, rejected: Int)
    var policy: ServedPolicy
    var lastId: Int
    /// The change feed's kept events, as read back from a file…
    var feedEvents: [(id: Int, text: ArraySlice<UInt8>)] = []
    /// …or as the feed keeps them, written out as text only when the file
    /// is written (on the thread that writes it, not under the engine's
    /// lock).
    private var keptFeed: ChangeFeed.Kept? = nil
    var engine: [UInt8]
    /// A worker's reading of its partitions, and the other workers' clock.
    var positions: [Int: StreamPosition] = [:]
    var outsideClock: Int64? = nil

    struct Unreadable: Error, CustomStringConvertible {
        var description: String
    }

    var encoded: [UInt8] {
        var out: [UInt8] = []
        write { out.append(contentsOf: $0) }
        return out
    }

    /// The file's bytes in order, in pieces (`Checkpoint.writeFile` puts
    /// them straight into the file): the engine's state and the feed's
    /// events are not copied into one buffer first.
    func write(_ put: (UnsafeRawBufferPointer) -> Void) {
        var source = ""
        if !positions.isEmpty {
            source += #","positions":{"# + positions.keys.sorted().map { #""\#($0)":["\#(positions[$0]!.last)",\#(positions[$0]!.applied)]"# }.joined(separator: ",") + "}"
        }
        // As text: microseconds past 2^53 do not survive a JSON number.
        if let outsideClock { source += #","outside_clock":"\#(outsideClock)""# }
        let header = Array(#"{"log_end":\#(logEnd),"lines":\#(lines),"bodies":\#(totals.bodies),"read":\#(totals.read),"applied":\#(totals.applied),"rejected":\#(totals.rejected),"last_id":\#(lastId),"policy":\#(policy.json)\#(source)}"#.utf8)
        let feed = keptFeed.map { $0.events.map { (id: $0.id, text: $0.text[...]) } } ?? feedEvents
        let feedBytes = feed.reduce(0) { $0 + 16 + $1.text.count }
        var sum = Hashing.Checksum(count: Self.magic.count + 4 + 8 + header.count + 8 + feedBytes + 8 + engine.count)
        func bytes(_ b: ArraySlice<UInt8>) {
            b.withUnsafeBytes { sum.add($0); put($0) }
        }
        func word<T: FixedWidthInteger>(_ n: T) {
            withUnsafeBytes(of: n.littleEndian) { sum.add($0); put($0) }
        }
        bytes(Self.magic[...])
        word(Self.version)
        word(UInt64(header.count))
        bytes(header[...])
        word(UInt64(feedBytes))
        for (id, text) in feed {
            word(UInt64(id))
            word(UInt64(text.count))
            bytes(text)
        }
        word(UInt64(engine.count))
        bytes(engine[...])
        word(sum.value)
    }

    init(logEnd: Int, lines: Int, totals: (bodies: Int, read: Int, applied: Int, rejected: Int), policy: ServedPolicy,
         feed: ChangeFeed.Kept?, engine: [UInt8]) {
        (self.logEnd, self.lines, self.totals, self.policy, self.engine) = (logEnd, lines, totals, policy, engine)
        lastId = feed?.lastId ?? 0
        keptFeed = feed
    }

    init(decoding bytes: [UInt8]) throws(Unreadable) {
        guard bytes.count >= 20, Array(bytes[0..<8]) == Self.magic else { throw Unreadable(description: "not a rules service checkpoint") }
        func word(_ at: Int) -> UInt64 { bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self)) } }
        let version = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        guard version == Self.version else { throw Unreadable(description: "a checkpoint of version \(version); this rules reads version \(Self.version)") }
        guard word(bytes.count - 8) == bytes.withUnsafeBytes({ Hashing.checksum(UnsafeRawBufferPointer(rebasing: $0[..<(bytes.count - 8)])) }) else {
            throw Unreadable(description: "its checksum does not match")
        }
        var at = 12
        func part() throws(Unreadable) -> ArraySlice<UInt8> {
            guard at + 8 <= bytes.count - 8 else { throw Unreadable(description: "cut short") }
            let n = Int(word(at))
            guard n >= 0, at + 8 + n <= bytes.count - 8 else { throw Unreadable(description: "cut short") }
            defer { at += 8 + n }
            return bytes[(at + 8)..<(at + 8 + n)]
        }
        let headerText = String(decoding: try part(), as: UTF8.self)
        guard let header = try? JSONValue.parse(headerText),
              let logEnd = header["log_end"]?.int, let lines = header["lines"]?.int, let bodies = header["bodies"]?.int,
              let read = header["read"]?.int, let applied = header["applied"]?.int, let rejected = header["rejected"]?.int,
              let lastId = header["last_id"]?.int, let policyValue = header["policy"] else {
            throw Unreadable(description: "its header is not what this rules writes")
        }
        let policy: ServedPolicy
        do { policy = try ServedPolicy(json: policyValue.text) } catch { throw Unreadable(description: "its policy: \(error)") }
        let events = Array(try part())
        var feed: [(id: Int, text: ArraySlice<UInt8>)] = [], k = 0
        while k + 16 <= events.count {
            let (id, n) = events.withUnsafeBytes { (Int(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: k, as: UInt64.self))),
                                                    Int(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: k + 8, as: UInt64.self)))) }
            guard n >= 0, k + 16 + n <= events.count else { throw Unreadable(description: "its change feed is cut short") }
            feed.append((id, events[(k + 16)..<(k + 16 + n)]))
            k += 16 + n
        }
        self.init(logEnd: logEnd, lines: lines, totals: (bodies, read, applied, rejected), policy: policy, feed: nil, engine: Array(try part()))
        self.lastId = lastId
        feedEvents = feed
        if case .object(let members)? = header["positions"] {
            for (key, value) in members {
                guard let k = Int(key), case .array(let pair) = value, pair.count == 2, case .string(let id) = pair[0],
                      let last = EntryId(id), let applied = pair[1].int else {
                    throw Unreadable(description: "its positions are not what this rules writes")
                }
                positions[k] = StreamPosition(last: last, applied: applied)
            }
        }
        if let clock = header["outside_clock"] {
            guard case .string(let text) = clock, let t = Int64(text) else { throw Unreadable(description: "its outside clock is not a time") }
            outsideClock = t
        }
    }
}
