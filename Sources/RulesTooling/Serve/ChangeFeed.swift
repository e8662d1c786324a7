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

    /// Its lock; streams waiting for events are woken when some arrive.
    private let monitor = Monitor()
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
    }

    private func locked<R>(_ body: () -> R) -> R { monitor.locked(body) }

    /// Numbers and keeps one body's changes, and wakes the streams. Called
    /// once the lookups answer with the new lines, so that no client sees
    /// an event before a lookup does.
    package func publish(_ changes: MergedChanges) {
        guard !changes.isEmpty else { return }
        locked {
            keep(Piece(changes, firstId: lastId + 1))
            monitor.broadcast()
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

        /// The pieces as a checkpoint holds them: a body's changes made
        /// under `program` (the checkpoint's policy) as ids and line
        /// states, as they are kept; any other as the events' text.
        package func saved(program: Program?) -> [SavedPiece] {
            var writer = EventWriter(personKey: personKey)
            return pieces.map { piece in
                // A line state holds a string attribute as an address in
                // this process: such lines are kept as their text.
                if let changes = piece.changes, let format = changes.format, format.program === program,
                   !format.program.policy.attributes.contains(where: { $0.type == .string }) {
                    var saved = SavedPiece.States(stateWords: format.stateWords)
                    for k in 0..<changes.count { saved.append(changes.view(k)) }
                    return .states(firstId: piece.firstId, saved)
                }
                var text: [UInt8] = [], starts: [Int] = []
                for k in 0..<piece.count {
                    starts.append(text.count)
                    writer.append(piece, k, to: &text)
                }
                return .texts(firstId: piece.firstId, text: text, starts: starts)
            }
        }
    }

    /// A piece as a checkpoint holds it.
    package enum SavedPiece {
        /// Events as text, one after another ("id: …\ndata: …\n\n"), and
        /// where each starts.
        case texts(firstId: Int, text: [UInt8], starts: [Int])
        /// A body's changes under the checkpoint's policy.
        case states(firstId: Int, States)

        /// Ids one after another, where each ends, whether each person is
        /// in the report, and the line states of those who are.
        package struct States {
            package var ids: [UInt8] = []
            package var idEnds: [Int] = []
            package var present: [Bool] = []
            package var states: [UInt64] = []
            package let stateWords: Int

            package init(stateWords: Int) { self.stateWords = stateWords }

            mutating func append(_ change: ChangeView) {
                ids += change.person
                idEnds.append(ids.count)
                present.append(change.present)
                if change.present, let state = change.state { states += state }
            }
        }

        var count: Int {
            switch self {
            case .texts(_, _, let starts): return starts.count
            case .states(_, let saved): return saved.idEnds.count
            }
        }
    }

    /// The kept events and the latest number (a checkpoint): the pieces
    /// themselves, written out when the checkpoint is written.
    package func kept() -> Kept {
        locked { Kept(lastId: lastId, pieces: pieces[head...], personKey: personKey) }
    }

    /// Puts back what a checkpoint kept; `format` reads the line states of
    /// its policy (the one the restored state is under). False when its
    /// line states are not of that policy's size (nothing is kept then).
    @discardableResult
    package func restore(lastId: Int, pieces saved: [SavedPiece], format: LineFormat?) -> Bool {
        for case .states(_, let s) in saved where s.stateWords != format?.stateWords { return false }
        return locked {
            pieces = []
            head = 0
            keptBytes = 0
            for piece in saved {
                switch piece {
                case .texts(let firstId, let text, let starts):
                    guard !starts.isEmpty else { continue }
                    keep(Piece(text: text, starts: starts, firstId: firstId))
                case .states(let firstId, let s):
                    guard !s.idEnds.isEmpty, let format else { continue }  // a format: checked above
                    let list = ChangeList(ids: s.ids, idEnds: s.idEnds, present: s.present, states: s.states, stateWords: s.stateWords, format: format)
                    keep(Piece(MergedChanges([list]), firstId: firstId))
                }
            }
            self.lastId = lastId
            return true
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
                let deadline = Monitor.deadline(in: Double(seconds))
                while lastId == seen && monitor.wait(until: deadline) {}
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
