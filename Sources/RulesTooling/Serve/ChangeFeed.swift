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
/// The latest events are kept in memory, at most `keptBytes` of them, a
/// body's together (the latest body always); a client asking to resume
/// before the oldest kept is told of the gap
/// (`event: gap`) and should read `GET /v1/report` again.
package final class ChangeFeed: @unchecked Sendable {
    package static let keptBytes = 32 << 20

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let arrived = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// The kept events as they go on the wire, a body's in one piece
    /// (`Prepared`, kept as it was written: publishing copies nothing, and
    /// old events go a body at a time with no bytes moved). Oldest first;
    /// `head` is the first still kept.
    private var pieces: [Piece] = []
    private var head = 0
    /// The bytes of the kept pieces.
    private var keptBytes = 0
    /// The number of the oldest kept event.
    private var firstId: Int { head < pieces.count ? pieces[head].firstId : lastId + 1 }

    private final class Piece {
        let text: [UInt8]
        /// Where each event starts in `text`.
        let starts: [Int]
        let firstId: Int
        init(text: [UInt8], starts: [Int], firstId: Int) { (self.text, self.starts, self.firstId) = (text, starts, firstId) }
        var lastId: Int { firstId + starts.count - 1 }
        func end(_ k: Int) -> Int { k + 1 < starts.count ? starts[k + 1] : text.count }
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

    /// Numbers and keeps one body's changes, and wakes the streams.
    package func publish(_ changes: MergedChanges) {
        commit(prepare(changes))
    }

    /// One body's events as they go on the wire, numbered on from the
    /// latest, not yet kept: made while the lookups are set (`commit`
    /// then keeps them, so that no client sees an event before a lookup
    /// answers with its line).
    package struct Prepared {
        fileprivate var text: [UInt8] = []
        fileprivate var starts: [Int] = []
        fileprivate let firstId: Int
    }

    /// Writes the events of `changes`. Bodies are prepared and committed
    /// one at a time (the service's engine lock), so the numbers are the
    /// ones `commit` gives.
    package func prepare(_ changes: MergedChanges) -> Prepared {
        var prepared = Prepared(firstId: locked { lastId } + 1)
        guard !changes.isEmpty else { return prepared }
        prepared.starts.reserveCapacity(changes.count)
        prepared.text.reserveCapacity(changes.count * 96)
        var id = prepared.firstId
        for k in 0..<changes.count {
            let change = changes.view(k)
            prepared.starts.append(prepared.text.count)
            Self.append("id: ", to: &prepared.text)
            JSONWriter.appendDecimal(id, to: &prepared.text)
            id += 1
            if let line = change.line {
                Self.append("\ndata: ", to: &prepared.text)
                prepared.text.append(contentsOf: line)
                Self.append("\n\n", to: &prepared.text)
            } else {
                // Every event of theirs was retracted: they left the report.
                let person = JSONText.quoted(String(decoding: change.person, as: UTF8.self))
                prepared.text.append(contentsOf: "\nevent: removed\ndata: {\(JSONText.quoted(personKey)):\(person)}\n\n".utf8)
            }
        }
        return prepared
    }

    @inline(__always)
    private static func append(_ s: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// Keeps the prepared events and wakes the streams.
    package func commit(_ prepared: Prepared) {
        guard !prepared.starts.isEmpty else { return }
        locked {
            precondition(prepared.firstId == lastId + 1, "a feed's bodies are prepared and committed one at a time")
            keep(Piece(text: prepared.text, starts: prepared.starts, firstId: prepared.firstId))
            pthread_cond_broadcast(arrived)
        }
    }

    /// Adds a piece; then keeps at most `limit` bytes of events, but always
    /// the latest piece: the oldest pieces go.
    private func keep(_ piece: Piece) {
        pieces.append(piece)
        keptBytes += piece.text.count
        lastId = piece.lastId
        while keptBytes > limit && head < pieces.count - 1 {
            keptBytes -= pieces[head].text.count
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

    /// The bytes of the kept events from number `id` on.
    private func texts(from id: Int) -> [UInt8] {
        guard id <= lastId, head < pieces.count else { return [] }
        let p = piece(holding: max(id, firstId))
        let first = pieces[p]
        var out = Array(first.text[first.starts[max(id, firstId) - first.firstId]...])
        for later in pieces[(p + 1)...] { out += later.text }
        return out
    }

    /// The kept events and the latest number (a checkpoint): the events'
    /// texts are slices of the pieces, not copies.
    package func kept() -> (lastId: Int, events: [(id: Int, text: ArraySlice<UInt8>)]) {
        locked {
            var events: [(id: Int, text: ArraySlice<UInt8>)] = []
            for piece in pieces[head...] {
                for k in piece.starts.indices { events.append((piece.firstId + k, piece.text[piece.starts[k]..<piece.end(k)])) }
            }
            return (lastId, events)
        }
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

    /// The first bytes of a stream for a client that saw up to `lastSeen`
    /// (nil: a new client, who gets what comes from now on).
    private func catchUp(after lastSeen: Int?) -> (text: [UInt8], next: Int) {
        locked {
            guard let seen = lastSeen else { return ([], lastId) }
            let oldest = firstId
            if seen > lastId || seen < oldest - 1 {
                let reason = seen > lastId
                    ? "event \(seen) is later than the latest (\(lastId)): the service's data is not what this client saw"
                    : "events after \(seen) up to \(oldest - 1) are no longer kept"
                let gap = "event: gap\ndata: {\"reason\":\(JSONText.quoted(reason + "; read GET /v1/report again")),\"latest\":\(lastId)}\n\n"
                return (Array(gap.utf8) + texts(from: oldest), lastId)
            }
            return (texts(from: seen + 1), lastId)
        }
    }

    /// Waits up to `seconds` for events after `seen`; their bytes (empty
    /// when none came), and the latest number.
    private func wait(after seen: Int, seconds: Int) -> (text: [UInt8], next: Int) {
        locked {
            if lastId == seen {
                var deadline = timespec()
                clock_gettime(CLOCK_REALTIME, &deadline)
                deadline.tv_sec += seconds
                while lastId == seen {
                    if pthread_cond_timedwait(arrived, mutex, &deadline) == ETIMEDOUT { break }
                }
            }
            guard lastId > seen else { return ([], seen) }
            // A client so slow that what it had not read was dropped.
            if seen < firstId - 1 {
                let gap = "event: gap\ndata: {\"reason\":\"this client fell behind by more than the kept events; read GET /v1/report again\",\"latest\":\(lastId)}\n\n"
                return (Array(gap.utf8) + texts(from: firstId), lastId)
            }
            return (texts(from: seen + 1), lastId)
        }
    }

    /// Streams events to one client until it goes away: what it missed
    /// after `lastSeen`, then each body's changes as they come, and a
    /// comment every `heartbeat` seconds so that a client gone is noticed.
    /// `send` returns false when the client is gone.
    package func stream(after lastSeen: Int?, heartbeat: Int = 15, send: ([UInt8]) -> Bool) {
        var (text, seen) = catchUp(after: lastSeen)
        // `retry` tells EventSource clients how soon to come back.
        guard send(Array("retry: 1000\n\n".utf8) + text) else { return }
        while true {
            let next = wait(after: seen, seconds: heartbeat)
            text = next.text.isEmpty ? Array(": still here\n\n".utf8) : next.text
            seen = next.next
            guard send(text) else { return }
        }
    }
}
