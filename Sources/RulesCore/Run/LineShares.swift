#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A body's lines dealt to the shares of people (the service's shards), in
/// one pass over it: each share then reads only its own lines, instead of
/// every share finding every line's end and hashing every id to skip the
/// others'. A line's share is `ByteTable.share` of its id's hash, as
/// `rules run --jobs` and the shards' engines split people; the hash is
/// kept, so that it is not computed again to find the person. Blank lines,
/// lines too long to read and lines with no id to be found are share 0's
/// (it counts and rejects them once).
package struct LineShares {
    package struct Line {
        /// Where the line is in the body (no `\n`, no `\r`), or, for a line
        /// too long to read, `count` is -1 and `start` its length.
        var start: Int, count: Int
        /// Its number in the body, from 1.
        var number: Int
        /// Where its id is, when it starts the line, and the id's hash.
        var idStart: Int, idCount: Int
        var hash: UInt32?
        var isBlank: Bool
    }

    /// Each share's lines, in the body's order.
    package private(set) var shares: [[Line]]
    /// Lines in the body (blank ones included).
    package private(set) var lineCount = 0

    package init(_ body: UnsafeBufferPointer<UInt8>, count: Int, personKey: PersonKey, router: inout ParallelStream.Router,
                 maxLineBytes: Int = LineReader.defaultMaxLineBytes) {
        shares = Array(repeating: [], count: count)
        guard let base = body.baseAddress else { return }
        // Room for lines of 48 bytes and more (events are longer), made
        // once: grown a doubling at a time, every body would copy its
        // lines ten times over.
        for k in shares.indices { shares[k].reserveCapacity(body.count / (48 * count) + 16) }
        var at = 0
        while at < body.count {
            let end = memchr(base + at, 0x0A, body.count - at).map { base.distance(to: $0.assumingMemoryBound(to: UInt8.self)) } ?? body.count
            lineCount += 1
            defer { at = end + 1 }
            if end - at > maxLineBytes {
                shares[0].append(Line(start: end - at, count: -1, number: lineCount, idStart: 0, idCount: 0, hash: nil, isBlank: false))
                continue
            }
            var stop = end
            if stop > at && base[stop - 1] == 0x0D { stop -= 1 }
            let line = UnsafeBufferPointer(start: base + at, count: stop - at)
            if EventStream.isBlank(line) {
                shares[0].append(Line(start: at, count: line.count, number: lineCount, idStart: 0, idCount: 0, hash: nil, isBlank: true))
                continue
            }
            if let id = personKey.leadingPerson(line) {
                let hash = ByteTable.hash(id)
                shares[ByteTable.share(hash: hash, among: count)].append(
                    Line(start: at, count: line.count, number: lineCount, idStart: base.distance(to: id.baseAddress!), idCount: id.count,
                         hash: hash, isBlank: false))
            } else {
                // Found by parsing the line (share 0 when it does not parse).
                shares[router.owner(of: line)].append(
                    Line(start: at, count: line.count, number: lineCount, idStart: 0, idCount: 0, hash: nil, isBlank: false))
            }
        }
    }
}

extension EventStream {
    /// Runs one share's lines of a body (`LineShares`), as `run` runs a
    /// reader's: each applied or rejected with its number in the body, the
    /// people of lines ahead asked for early, blank lines counted.
    package static func run(_ engine: Engine, body: UnsafeBufferPointer<UInt8>, lines: [LineShares.Line], asOf: Int64?,
                            maxLineBytes: Int = LineReader.defaultMaxLineBytes,
                            onReject: (Rejection, UnsafeBufferPointer<UInt8>) -> Void) -> RunSummary {
        var applier = EventApplier(engine: engine, asOf: asOf)
        defer { applier.deallocate() }
        var summary = RunSummary()
        guard let base = body.baseAddress else { return summary }
        for k in lines.indices {
            if k + Prefetch.slotDistance < lines.count, let hash = lines[k + Prefetch.slotDistance].hash {
                engine.prefetchSlot(hash: hash)
            }
            if k + Prefetch.stateDistance < lines.count, let hash = lines[k + Prefetch.stateDistance].hash {
                let ahead = lines[k + Prefetch.stateDistance]
                engine.prefetchState(UnsafeBufferPointer(start: base + ahead.idStart, count: ahead.idCount), hash: hash)
            }
            let line = lines[k]
            if line.isBlank { summary.blank += 1; continue }
            if line.count < 0 {
                let reason = LineReader.tooLong(line.start, limit: maxLineBytes)
                summary.count(.rejected(reason))
                onReject(Rejection(line: line.number, reason: reason), UnsafeBufferPointer(start: base, count: 0))
                continue
            }
            let bytes = UnsafeBufferPointer(start: base + line.start, count: line.count)
            let outcome = applier.apply(line: bytes, number: line.number, hash: line.hash)
            summary.count(outcome)
            if case .rejected(let reason, _) = outcome { onReject(Rejection(line: line.number, reason: reason), bytes) }
        }
        return summary
    }
}
