#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RulesCore

/// The service's change feed (`GET /v1/changes`, Server-Sent Events): after
/// each acknowledged body, one event per person whose report line changed,
/// numbered from 1 across the service's life. The numbers are made again
/// the same on a restart (the log is replayed through the same
/// `ReportChanges`), so `Last-Event-ID` resumes across restarts too.
///
/// The latest events are kept in memory, at most `keptBytes` of it, a
/// body's together (the latest body always); a client asking to resume
/// before the oldest kept is told of the gap (`event: gap`) and should read
/// `GET /v1/report` again. A body's events are kept as the tracker found
/// them — ids and line states, not text — and written out as events by
/// each client's stream when it sends them: publishing a body writes no
/// text, and a feed nobody reads costs none.
package final class ChangeFeed: @unchecked Sendable {
    package static let keptBytes = 32 << 20

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let arrived = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// The kept events, a body's in one piece (kept as it was found:
    /// publishing copies nothing, and old events go a body at a time).
    /// Oldest first; `head` is the first still kept.
    private var pieces: [Piece] = []
    private var head = 0
    /// The memory the kept pieces hold.
    private var keptBytes = 0
    /// The number of the oldest kept event.
    private var firstId: Int { head < pieces.count ? pieces[head].firstId : lastId + 1 }

    /// One body's events (or, restored from a checkpoint, events as text).
    package final class Piece: @unchecked Sendable {
        let firstId: Int
        let count: Int
        let memory: Int
        /// The body's changes, numbered from `firstId` in their order…
        let changes: MergedChanges?
        /// …or the events' texts, one after another, and where each starts.
        let text: [UInt8]
        let starts: [Int]

        init(_ changes: MergedChanges, firstId: Int) {
            (self.changes, self.firstId, count, memory, text, starts) = (changes, firstId, changes.count, changes.memory, [], [])
        }

        init(text: [UInt8], starts: [Int], firstId: Int) {
            (self.changes, self.firstId, count, memory, self.text, self.starts) = (nil, firstId, starts.count, text.count + 8 * starts.count, text, starts)
        }

        var lastId: Int { firstId + count - 1 }
    }

    /// Writes kept events as they go on the wire: one per client stream
    /// (and per checkpoint), with a renderer per policy it met.
    package struct EventWriter {
        let personKey: String
        private var renderer = LineRenderer(nil)

        init(personKey: String) { self.personKey = personKey }

        /// Event `k` of `piece` (the event numbered `piece.firstId + k`).
        mutating func append(_ piece: Piece, _ k: Int, to out: inout [UInt8]) {
            guard let changes = piece.changes else {
                out += piece.text[piece.starts[k]..<(k + 1 < piece.starts.count ? piece.starts[k + 1] : piece.text.count)]
                return
            }
            if renderer.format !== changes.format { renderer = LineRenderer(changes.format) }
            let change = changes.view(k)
            ChangeFeed.append("id: ", to: &out)
            JSONWriter.appendDecimal(piece.firstId + k, to: &out)
            if let line = renderer.line(of: change) {
                ChangeFeed.append("\ndata: ", to: &out)
                out.append(contentsOf: line)
                ChangeFeed.append("\n\n", to: &out)
            } else {
                // Every event of theirs was retracted: they left the report.
                let person = JSONText.quoted(String(decoding: change.person, as: UTF8.self))
                out.append(contentsOf: "\nevent: removed\ndata: {\(JSONText.quoted(personKey)):\(person)}\n\n".utf8)
            }
        }

        /// Every event of `pieces` from number `id` on.
        mutating func append(_ pieces: ArraySlice<Piece>, from id: Int, to out: inout [UInt8]) {
            for piece in pieces {
                for k in max(0, id - piece.firstId)..<piece.count { append(piece, k, to: &out) }
            }
        }
    }

    private let limit: Int
    private let personKey: String
    /// The number of the latest event.
    package private(set) var lastId = 0

    package init(personKey: String, keptBytes: Int = ChangeFeed.keptBytes) {
        self.personKey = personKey
        limit = keptBytes
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(arrived, nil)
    }

    deinit {
        pthread_cond_destroy(arrived)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        arrived.deallocate()
    }

    private func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Numbers and keeps one body's changes, and wakes the streams. Called
    /// once the lookups answer with the new lines, so that no client sees
    /// an event before a lookup does.
    package func publish(_ changes: MergedChanges) {
        guard !changes.isEmpty else { return }
        locked {
            keep(Piece(changes, firstId: lastId + 1))
            pthread_cond_broadcast(arrived)
        }
    }

    @inline(__always)
    fileprivate static func append(_ s: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// Adds a piece; then keeps at most `limit` bytes of events, but always
    /// the latest piece: the oldest pieces go.
    private func keep(_ piece: Piece) {
        pieces.append(piece)
        keptBytes += piece.memory
        lastId = piece.lastId
        while keptBytes > limit && head < pieces.count - 1 {
            keptBytes -= pieces[head].memory
            head += 1
        }
        if head > 64 && head > pieces.count / 2 {  // the list of pieces, not their bytes
            pieces.removeFirst(head)
            head = 0
        }
    }

    /// The piece that holds event `id` (kept), by bisection.
    private func piece(holding id: Int) -> Int {
        var low = head, high = pieces.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if pieces[mid].firstId <= id { low = mid } else { high = mid - 1 }
        }
        return low
    }

    /// The kept pieces that hold events from number `id` on (written out
    /// by the caller, outside the lock: the slice is the pieces as they
    /// are now, whatever the feed keeps or drops after).
    private func pieces(from id: Int) -> ArraySlice<Piece> {
        guard id <= lastId, head < pieces.count else { return [] }
        return pieces[piece(holding: max(id, firstId))...]
    }

    /// The kept events and the latest number, as a checkpoint keeps them.
    package struct Kept {
        package let lastId: Int
        let pieces: ArraySlice<Piece>
        let personKey: String

        /// Each kept event's number and text, oldest first.
        package var events: [(id: Int, text: [UInt8])] {
            var writer = EventWriter(personKey: personKey)
            var events: [(id: Int, text: [UInt8])] = []
            for piece in pieces {
                for k in 0..<piece.count {
                    var text: [UInt8] = []
                    writer.append(piece, k, to: &text)
                    events.append((piece.firstId + k, text))
                }
            }
            return events
        }
    }

    /// The kept events and the latest number (a checkpoint): the pieces
    /// themselves, written out as text when the checkpoint is written.
    package func kept() -> Kept {
        locked { Kept(lastId: lastId, pieces: pieces[head...], personKey: personKey) }
    }

    /// Puts back what a checkpoint kept.
    package func restore(lastId: Int, events: [(id: Int, text: ArraySlice<UInt8>)]) {
        locked {
            pieces = []
            head = 0
            keptBytes = 0
            self.lastId = lastId
            guard let first = events.first else { return }
            var text: [UInt8] = [], starts: [Int] = []
            for event in events {
                starts.append(text.count)
                text += event.text
            }
            keep(Piece(text: text, starts: starts, firstId: first.id))
            self.lastId = lastId
        }
    }

    /// What a client that saw up to `lastSeen` is sent first (nil: a new
    /// client, who gets what comes from now on): a note of a gap, if any,
    /// then the pieces from `from` on.
    private func catchUp(after lastSeen: Int?) -> (gap: String, pieces: ArraySlice<Piece>, from: Int, next: Int) {
        locked {
            guard let seen = lastSeen else { return ("", [], 0, lastId) }
            let oldest = firstId
            if seen > lastId || seen < oldest - 1 {
                let reason = seen > lastId
                    ? "event \(seen) is later than the latest (\(lastId)): the service's data is not what this client saw"
                    : "events after \(seen) up to \(oldest - 1) are no longer kept"
                let gap = "event: gap\ndata: {\"reason\":\(JSONText.quoted(reason + "; read GET /v1/report again")),\"latest\":\(lastId)}\n\n"
                return (gap, pieces(from: oldest), oldest, lastId)
            }
            return ("", pieces(from: seen + 1), seen + 1, lastId)
        }
    }

    /// Waits up to `seconds` for events after `seen`: a note of a gap, if
    /// the client fell behind what is kept, the pieces from `from` on
    /// (none when no event came), and the latest number.
    private func wait(after seen: Int, seconds: Int) -> (gap: String, pieces: ArraySlice<Piece>, from: Int, next: Int) {
        locked {
            if lastId == seen {
                var deadline = timespec()
                clock_gettime(CLOCK_REALTIME, &deadline)
                deadline.tv_sec += seconds
                while lastId == seen {
                    if pthread_cond_timedwait(arrived, mutex, &deadline) == ETIMEDOUT { break }
                }
            }
            guard lastId > seen else { return ("", [], seen + 1, seen) }
            // A client so slow that what it had not read was dropped.
            if seen < firstId - 1 {
                let gap = "event: gap\ndata: {\"reason\":\"this client fell behind by more than the kept events; read GET /v1/report again\",\"latest\":\(lastId)}\n\n"
                return (gap, pieces(from: firstId), firstId, lastId)
            }
            return ("", pieces(from: seen + 1), seen + 1, lastId)
        }
    }

    /// Streams events to one client until it goes away: what it missed
    /// after `lastSeen`, then each body's changes as they come, and a
    /// comment every `heartbeat` seconds so that a client gone is noticed.
    /// `send` returns false when the client is gone. Events are written
    /// out here, on the client's thread, outside the feed's lock.
    package func stream(after lastSeen: Int?, heartbeat: Int = 15, send: ([UInt8]) -> Bool) {
        var writer = EventWriter(personKey: personKey)
        let first = catchUp(after: lastSeen)
        var text = Array("retry: 1000\n\n".utf8) + Array(first.gap.utf8)
        writer.append(first.pieces, from: first.from, to: &text)
        var seen = first.next
        // `retry` tells EventSource clients how soon to come back.
        guard send(text) else { return }
        while true {
            let next = wait(after: seen, seconds: heartbeat)
            text = Array(next.gap.utf8)
            writer.append(next.pieces, from: next.from, to: &text)
            if text.isEmpty { text = Array(": still here\n\n".utf8) }
            seen = next.next
            guard send(text) else { return }
        }
    }
}
