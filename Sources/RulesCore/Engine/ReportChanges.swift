#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whose report line a body of stream lines changes, and to what: the
/// service's change feed (`GET /v1/changes`, docs/SERVICE.md).
///
/// A report line is what `rules run` would print now, as of the latest
/// event time. It changes when a line of the body names the person, and
/// also with no event of theirs, as the clock moves: a timed effect ends,
/// or a window entry leaves a window that reads it. Those times are kept
/// in a queue, one live entry per person, so that a body costs what it
/// names and what comes due, never a look at everyone.
///
/// A person's line before and after is made by the report's own writer,
/// as of the clock before and after the body: the change is exactly the
/// difference between two `GET /v1/people/ID` answers.
package final class ReportChanges {
    /// One changed line: the person's id and their new report line (no
    /// newline), or nil when they left the report (every event retracted).
    package struct Change: Equatable {
        package var person: [UInt8]
        package var line: [UInt8]?

        package init(person: [UInt8], line: [UInt8]?) {
            self.person = person
            self.line = line
        }

        package init(person: String, line: String?) {
            self.init(person: Array(person.utf8), line: line.map { Array($0.utf8) })
        }
    }

    private let engine: Engine
    private var parser: EventParser
    private let writer: ReportWriter
    /// By buffer: the windows that read it, shortest first.
    private let windows: [[Int64]]
    /// (time, person): the person's line may change by then. Stale entries
    /// (a person woken earlier since) are skipped when they come up.
    private var due = WakeQueue()
    /// By person: the time of their live entry in `due`, or `Int64.max`.
    private var wake: [Int64] = []
    /// By person: a checksum of the line last published for them (0: none,
    /// not in the report). A body compares each line it may have changed
    /// with it — one line written per person, not the line before and the
    /// line after; two lines that differ have the same checksum by a chance
    /// of 2⁻⁶⁴.
    private var shown: [UInt64] = []
    /// By person: the number of the last body that looked at them (each
    /// person's line is looked at once per body).
    private var lookedIn: [UInt32] = []
    private var bodies: UInt32 = 0

    package init(engine: Engine) {
        self.engine = engine
        parser = EventParser(program: engine.program, personKey: engine.personKey)
        writer = ReportWriter(program: engine.program, personKey: engine.personKey, capacity: 4096)
        windows = engine.program.policy.bufferReadWindows
    }

    deinit { parser.deallocate() }

    /// Applies a body (`apply` runs it through the engine) and returns the
    /// people whose line changed, in byte order of their ids.
    package func applying(_ body: [UInt8], _ apply: () -> Void) -> [Change] {
        bodies &+= 1
        if bodies == 0 {  // wrapped: every stamp is old again
            for k in lookedIn.indices { lookedIn[k] = 0 }
            bodies = 1
        }
        // Whom the body names: known people now, new ones once they exist.
        var look: [Int] = [], newcomers: [[UInt8]] = []
        body.withUnsafeBufferPointer { all in
            forEachPerson(in: all) { key in
                if let p = engine.people.find(key) { mark(p, &look) } else { newcomers.append(Array(key)) }
            }
        }
        apply()
        guard let now = engine.clock else { return [] }
        for key in newcomers {
            if let p = key.withUnsafeBufferPointer({ engine.people.find($0) }) { mark(p, &look) }
        }
        // And those whom time alone reached.
        while let (time, p) = due.peek(), time <= now {
            due.pop()
            guard wake[p] == time else { continue }
            wake[p] = .max
            mark(p, &look)
        }
        var changes: [Change] = []
        for p in look {
            if let line = compare(p, at: now) { changes.append(line) }
            reschedule(p, after: now)
        }
        changes.sort { a, b in
            a.person.withUnsafeBufferPointer { x in
                b.person.withUnsafeBufferPointer { y in
                    let c = memcmp(x.baseAddress ?? UnsafePointer(bitPattern: 1)!, y.baseAddress ?? UnsafePointer(bitPattern: 1)!, min(x.count, y.count))
                    return c != 0 ? c < 0 : x.count < y.count
                }
            }
        }
        return changes
    }

    /// Adds person `p` to this body's look, once.
    private func mark(_ p: Int, _ look: inout [Int]) {
        grow(p)
        guard lookedIn[p] != bodies else { return }
        lookedIn[p] = bodies
        look.append(p)
    }

    /// Person `p`'s line as of `time` against the one last published: the
    /// change, or nil when it is the same.
    private func compare(_ p: Int, at time: Int64) -> Change? {
        var sum: UInt64 = 0
        if engine.isPresent(p) {
            write(p, at: time)
            sum = max(1, Hashing.checksum(writer.bytes))
        }
        guard sum != shown[p] else { return nil }
        shown[p] = sum
        return Change(person: Array(engine.people.key(p)), line: sum == 0 ? nil : Array(writer.bytes))
    }

    /// Calls `each` with the id of each line of the body that names one
    /// (a line that names nobody is rejected and changes nothing): read at
    /// the start of the line where it is, else by the full parse.
    private func forEachPerson(in all: UnsafeBufferPointer<UInt8>, _ each: (UnsafeBufferPointer<UInt8>) -> Void) {
        var start = 0
        while start < all.count {
            let rest = UnsafeBufferPointer(rebasing: all[start...])
            let end = rest.firstIndex(of: 0x0A).map { start + $0 } ?? all.count
            var stop = end
            if stop > start && all[stop - 1] == 0x0D { stop -= 1 }
            let line = UnsafeBufferPointer(rebasing: all[start..<stop])
            if let key = engine.personKey.leadingPerson(line) {
                each(key)
            } else if case .event(let e) = parser.parse(line, into: nil) {
                each(e.person)
            }
            start = end + 1
        }
    }

    /// Writes person `p`'s report line as of `time`, without its newline,
    /// into `writer`.
    private func write(_ p: Int, at time: Int64) {
        writer.removeAll()
        writer.append(engine, person: p, at: time)
        writer.dropLast()
    }

    private func grow(_ p: Int) {
        if wake.count <= p {
            let size = max(p + 1, 2 * wake.count)
            wake += repeatElement(.max, count: size - wake.count)
            shown += repeatElement(0, count: size - shown.count)
            lookedIn += repeatElement(0, count: size - lookedIn.count)
        }
    }

    /// Starts on an engine restored from a checkpoint: what was published
    /// for each person is their line now (after each body, every line that
    /// changed was published), and everyone is queued for their next
    /// change by time.
    /// Returns everyone's line (to publish; not changes of the feed).
    package func resume() -> [Change] {
        guard let now = engine.clock else { return [] }
        var lines: [Change] = []
        for p in 0..<engine.people.count {
            grow(p)
            if let line = compare(p, at: now) { lines.append(line) }
            reschedule(p, after: now)
        }
        return lines
    }

    /// Takes over from the tracker of the engine this one's replaced (a
    /// policy change): what was published for each person, by id. Returns
    /// whose line the change changed, and queues everyone for the next
    /// change time alone makes.
    package func adopt(_ old: ReportChanges?) -> [Change] {
        guard let now = engine.clock else { return [] }
        var changes: [Change] = []
        for p in 0..<engine.people.count {
            grow(p)
            if let old {
                let known = engine.people.withKey(p) { old.engine.people.find($0) }
                shown[p] = known.map { $0 < old.shown.count ? old.shown[$0] : 0 } ?? 0
            }
            if let change = compare(p, at: now) { changes.append(change) }
            reschedule(p, after: now)
        }
        return changes
    }

    /// Queues the person for the next time after `time` at which their line
    /// can change by time alone, unless an earlier wake is queued already
    /// (it looks again then, and queues the next).
    private func reschedule(_ p: Int, after time: Int64) {
        guard let next = nextChange(of: p, after: time), next < wake[p] else { return }
        wake[p] = next
        due.push(next, p)
    }

    /// The earliest time after `time` at which the person's line can change
    /// with no event of theirs: a timed effect ends (it is in force while
    /// `end > now`), or an entry leaves a window that reads its buffer (it
    /// counts while `entry > now - window`). nil when nothing will.
    private func nextChange(of p: Int, after time: Int64) -> Int64? {
        let store = engine.store
        var next = Int64.max
        for slot in 0..<store.slotCount {
            let end = store.end(p, slot)
            if end > time && end != PersonStore.forever { next = min(next, end) }
        }
        for (b, buffer) in store.buffers.enumerated() {
            for entry in buffer.entries(person: p) {
                for w in windows[b] {
                    let leaves = Timestamp.adding(entry.time, w)
                    if leaves > time { next = min(next, leaves); break }
                }
            }
        }
        return next == .max ? nil : next
    }
}

/// A binary min-heap of (time, person).
private struct WakeQueue {
    private var items: [(time: Int64, person: Int)] = []

    func peek() -> (Int64, Int)? { items.first.map { ($0.time, $0.person) } }

    mutating func push(_ time: Int64, _ person: Int) {
        items.append((time, person))
        var k = items.count - 1
        while k > 0 {
            let parent = (k - 1) / 2
            guard items[k].time < items[parent].time else { break }
            items.swapAt(k, parent)
            k = parent
        }
    }

    mutating func pop() {
        let last = items.removeLast()
        guard !items.isEmpty else { return }
        items[0] = last
        var k = 0
        while true {
            let l = 2 * k + 1, r = l + 1
            var least = k
            if l < items.count && items[l].time < items[least].time { least = l }
            if r < items.count && items[r].time < items[least].time { least = r }
            if least == k { return }
            items.swapAt(k, least)
            k = least
        }
    }
}
