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
/// The latest events are kept in memory, at most `keptBytes` of them; a
/// client asking to resume before the oldest kept is told of the gap
/// (`event: gap`) and should read `GET /v1/report` again.
package final class ChangeFeed: @unchecked Sendable {
    package static let keptBytes = 32 << 20

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let arrived = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// The kept events as they go on the wire, one after the other: event
    /// `firstId + k` is `text[starts[first + k]..<starts[first + k + 1]]`
    /// (the last ends at the end). One buffer, not one array per event:
    /// publishing a body costs no allocation per change. The dropped events
    /// before `first` go once they are half of what is held.
    private var text: [UInt8] = []
    private var starts: [Int] = []
    private var first = 0
    /// The number of the oldest kept event.
    private var firstId = 1
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
        guard !changes.isEmpty else { return }
        locked {
            for k in 0..<changes.count {
                let change = changes.view(k)
                lastId += 1
                starts.append(text.count)
                text.append(contentsOf: "id: ".utf8)
                JSONWriter.appendDecimal(lastId, to: &text)
                if let line = change.line {
                    text.append(contentsOf: "\ndata: ".utf8)
                    text.append(contentsOf: line)
                    text.append(contentsOf: "\n\n".utf8)
                } else {
                    // Every event of theirs was retracted: they left the report.
                    let person = JSONText.quoted(String(decoding: change.person, as: UTF8.self))
                    text.append(contentsOf: "\nevent: removed\ndata: {\(JSONText.quoted(personKey)):\(person)}\n\n".utf8)
                }
            }
            dropOldest()
            pthread_cond_broadcast(arrived)
        }
    }

    /// Keeps at most `limit` bytes of events (always the latest event):
    /// the oldest go, and their bytes once they are half the buffer.
    private func dropOldest() {
        let before = first
        while text.count - starts[first] > limit && first < starts.count - 1 { first += 1 }
        firstId += first - before
        if starts[first] > text.count / 2 {
            let gone = starts[first]
            text.removeFirst(gone)
            starts.removeFirst(first)
            first = 0
            for k in starts.indices { starts[k] -= gone }
        }
    }

    /// The bytes of the kept events from number `id` on.
    private func texts(from id: Int) -> [UInt8] {
        let k = first + id - firstId
        return k < starts.count ? Array(text[starts[k]...]) : []
    }

    /// The kept events and the latest number (a checkpoint): the events'
    /// texts are slices of one copy of them.
    package func kept() -> (lastId: Int, events: [(id: Int, text: ArraySlice<UInt8>)]) {
        locked {
            guard first < starts.count else { return (lastId, []) }
            let base = starts[first]
            let copy = Array(text[base...])
            return (lastId, (first..<starts.count).map { k in
                (firstId + k - first, copy[(starts[k] - base)..<((k + 1 < starts.count ? starts[k + 1] : text.count) - base)])
            })
        }
    }

    /// Puts back what a checkpoint kept.
    package func restore(lastId: Int, events: [(id: Int, text: ArraySlice<UInt8>)]) {
        locked {
            self.lastId = lastId
            text = []
            starts = []
            first = 0
            for event in events {
                starts.append(text.count)
                text += event.text
            }
            firstId = events.first?.id ?? lastId + 1
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
