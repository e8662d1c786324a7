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
/// `outside_clock`, `SourcedBatch`), the change feed's kept events, the
/// engine's `Checkpoint` — and a checksum of all that (8 bytes; integers
/// little-endian, 8 bytes each).
///
/// The kept events (version 2): the number of pieces, then each piece's
/// first event number, its count of events and its kind: 1, events as
/// text (each its length and its bytes); 2, a body's changes under the
/// header's policy (the words per line state, then each change's id
/// length, 1 or 0 for in the report or not, the id, and the line state
/// when in the report). Version 1 kept each event as its number and text;
/// it is still read.
struct ServiceCheckpoint {
    static let magic = Array("RULESSRV".utf8)
    static let version: UInt32 = 2

    var logEnd: Int
    var lines: Int
    var totals: (bodies: Int, read: Int, applied: Int, rejected: Int)
    var policy: ServedPolicy
    var lastId: Int
    /// The change feed's kept events, as read back from a file…
    var feed: [ChangeFeed.SavedPiece] = []
    /// …or as the feed keeps them, put in the file's form only when it is
    /// written (on the thread that writes it, not under the engine's
    /// lock), with the program of the checkpoint's policy.
    private var keptFeed: (kept: ChangeFeed.Kept, program: Program?)? = nil
    /// The engine's `Checkpoint`, as read back from a file…
    var engine: [UInt8]
    /// …or as made under the engine's lock, its checksum taken when it is
    /// written.
    private var unsealedEngine: Checkpoint.Unsealed? = nil
    /// A worker's reading of its partitions, and the other workers' clock.
    var positions: [Int: StreamPosition] = [:]
    var outsideClock: Int64? = nil

    struct Unreadable: Error, CustomStringConvertible {
        var description: String
    }

    var encoded: [UInt8] {
        var out: [UInt8] = []
        write { out.append(bytes: $0) }
        return out
    }

    /// The file's bytes in order, in pieces (`Checkpoint.writeFile` puts
    /// them straight into the file): the engine's state and the feed's
    /// events are not copied into one buffer first.
    func write(_ put: (UnsafeRawBufferPointer) -> Void) {
        withoutActuallyEscaping(put) { write(chunksTo: $0) }
    }

    /// `write`, the bytes handed on a chunk at a time (`ChunkedChecksum`).
    private func write(chunksTo put: @escaping (UnsafeRawBufferPointer) -> Void) {
        var source = ""
        if !positions.isEmpty {
            source += #","positions":{"# + positions.keys.sorted().map { #""\#($0)":["\#(positions[$0]!.last)",\#(positions[$0]!.applied)]"# }.joined(separator: ",") + "}"
        }
        // As text: microseconds past 2^53 do not survive a JSON number.
        if let outsideClock { source += #","outside_clock":"\#(outsideClock)""# }
        let header = Array(#"{"log_end":\#(logEnd),"lines":\#(lines),"bodies":\#(totals.bodies),"read":\#(totals.read),"applied":\#(totals.applied),"rejected":\#(totals.rejected),"last_id":\#(lastId),"policy":\#(policy.json)\#(source)}"#.utf8)
        let feed = keptFeed.map { $0.kept.saved(program: $0.program) } ?? self.feed
        let feedBytes = Self.encodedCount(feed)
        let engineBytes = unsealedEngine?.count ?? engine.count
        var out = ChunkedChecksum(count: Self.magic.count + 4 + 8 + header.count + 8 + feedBytes + 8 + engineBytes, put: put)
        func bytes(_ b: ArraySlice<UInt8>) {
            b.withUnsafeBytes { out.bytes($0) }
        }
        func words(_ b: ArraySlice<UInt64>) {
            #if _endian(little)
            b.withUnsafeBytes { out.bytes($0) }  // as `word` writes each, at once
            #else
            for w in b { out.word(w) }
            #endif
        }
        func word(_ n: UInt64) { out.word(n) }
        func word(_ n: UInt32) { out.word(n) }
        bytes(Self.magic[...])
        word(Self.version)
        word(UInt64(header.count))
        bytes(header[...])
        word(UInt64(feedBytes))
        word(UInt64(feed.count))
        for piece in feed {
            switch piece {
            case .texts(let firstId, let text, let starts):
                word(UInt64(firstId)); word(UInt64(starts.count)); word(UInt64(1))
                for k in starts.indices {
                    let end = k + 1 < starts.count ? starts[k + 1] : text.count
                    word(UInt64(end - starts[k]))
                    bytes(text[starts[k]..<end])
                }
            case .states(let firstId, let s):
                word(UInt64(firstId)); word(UInt64(s.idEnds.count)); word(UInt64(2))
                word(UInt64(s.stateWords))
                var state = 0
                for k in s.idEnds.indices {
                    let start = k == 0 ? 0 : s.idEnds[k - 1]
                    word(UInt64(s.idEnds[k] - start))
                    word(UInt64(s.present[k] ? 1 : 0))
                    bytes(s.ids[start..<s.idEnds[k]])
                    if s.present[k] {
                        words(s.states[state..<(state + s.stateWords)])
                        state += s.stateWords
                    }
                }
            }
        }
        word(UInt64(engineBytes))
        if let unsealedEngine { unsealedEngine.write { out.bytes($0) } } else { bytes(engine[...]) }
        let sum = out.finish()
        withUnsafeBytes(of: sum.littleEndian) { put($0) }
    }

    /// Bytes of the kept events' part.
    private static func encodedCount(_ feed: [ChangeFeed.SavedPiece]) -> Int {
        feed.reduce(8) { total, piece in
            switch piece {
            case .texts(_, let text, let starts): return total + 24 + 8 * starts.count + text.count
            case .states(_, let s): return total + 32 + 16 * s.idEnds.count + s.ids.count + 8 * s.states.count
            }
        }
    }

    init(logEnd: Int, lines: Int, totals: (bodies: Int, read: Int, applied: Int, rejected: Int), policy: ServedPolicy,
         feed: ChangeFeed.Kept?, program: Program?, engine: [UInt8] = [], unsealedEngine: Checkpoint.Unsealed? = nil) {
        (self.logEnd, self.lines, self.totals, self.policy, self.engine) = (logEnd, lines, totals, policy, engine)
        self.unsealedEngine = unsealedEngine
        lastId = feed?.lastId ?? 0
        keptFeed = feed.map { ($0, program) }
    }

    init(decoding bytes: [UInt8]) throws(Unreadable) {
        guard bytes.count >= 20, Array(bytes[0..<8]) == Self.magic else { throw Unreadable(description: "not a rules service checkpoint") }
        func word(_ at: Int) -> UInt64 { bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self)) } }
        let version = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        guard version == 1 || version == Self.version else {
            throw Unreadable(description: "a checkpoint of version \(version); this rules reads versions 1 and \(Self.version)")
        }
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
        let events = try part()
        let feed = version == 1 ? try Self.feedOfVersion1(events) : try Self.feed(events)
        self.init(logEnd: logEnd, lines: lines, totals: (bodies, read, applied, rejected), policy: policy, feed: nil, program: nil,
                  engine: Array(try part()))
        self.lastId = lastId
        self.feed = feed
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

    /// Reads the kept events' part (version 2).
    private static func feed(_ part: ArraySlice<UInt8>) throws(Unreadable) -> [ChangeFeed.SavedPiece] {
        var reader = WordReader(bytes: part)
        let cut = Unreadable(description: "its change feed is cut short")
        guard let pieces = reader.int() else { throw cut }
        var feed: [ChangeFeed.SavedPiece] = []
        for _ in 0..<min(pieces, part.count) {
            guard let firstId = reader.int(), let count = reader.int(), let kind = reader.int(), count <= part.count else { throw cut }
            switch kind {
            case 1:
                var text: [UInt8] = [], starts: [Int] = []
                for _ in 0..<count {
                    guard let n = reader.int(), let event = reader.bytes(n) else { throw cut }
                    starts.append(text.count)
                    text += event
                }
                feed.append(.texts(firstId: firstId, text: text, starts: starts))
            case 2:
                guard let words = reader.int(), words <= part.count else { throw cut }
                var saved = ChangeFeed.SavedPiece.States(stateWords: words)
                for _ in 0..<count {
                    guard let n = reader.int(), let present = reader.int(), present <= 1, let id = reader.bytes(n) else { throw cut }
                    saved.ids += id
                    saved.idEnds.append(saved.ids.count)
                    saved.present.append(present == 1)
                    if present == 1 {
                        for _ in 0..<words {
                            guard let w = reader.word() else { throw cut }
                            saved.states.append(w)
                        }
                    }
                }
                feed.append(.states(firstId: firstId, saved))
            default:
                throw Unreadable(description: "its change feed holds a piece of kind \(kind)")
            }
        }
        guard reader.atEnd else { throw Unreadable(description: "its change feed has bytes after its pieces") }
        return feed
    }

    /// Reads the kept events' part of version 1: each event's number and
    /// text, as one piece of texts.
    private static func feedOfVersion1(_ part: ArraySlice<UInt8>) throws(Unreadable) -> [ChangeFeed.SavedPiece] {
        var reader = WordReader(bytes: part)
        var text: [UInt8] = [], starts: [Int] = [], firstId: Int? = nil
        while !reader.atEnd {
            guard let id = reader.int(), let n = reader.int(), let event = reader.bytes(n) else {
                throw Unreadable(description: "its change feed is cut short")
            }
            if firstId == nil { firstId = id }
            starts.append(text.count)
            text += event
        }
        return firstId.map { [.texts(firstId: $0, text: text, starts: starts)] } ?? []
    }

    /// Little-endian words and runs of bytes, in order, from a part.
    private struct WordReader {
        let bytes: ArraySlice<UInt8>
        var at: Int

        init(bytes: ArraySlice<UInt8>) {
            self.bytes = bytes
            at = bytes.startIndex
        }

        var atEnd: Bool { at == bytes.endIndex }

        mutating func word() -> UInt64? {
            guard bytes.endIndex - at >= 8 else { return nil }
            defer { at += 8 }
            return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at - bytes.startIndex, as: UInt64.self)) }
        }

        /// A word that is a count or a number (at most `Int.max`).
        mutating func int() -> Int? { word().flatMap { $0 <= UInt64(Int.max) ? Int($0) : nil } }

        mutating func bytes(_ n: Int) -> ArraySlice<UInt8>? {
            guard n >= 0, bytes.endIndex - at >= n else { return nil }
            defer { at += n }
            return bytes[at..<(at + n)]
        }
    }
}
