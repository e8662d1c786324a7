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
        package var person: String
        package var line: String?
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
        let before = engine.clock
        let named = people(namedBy: body)
        var old: [[UInt8]: [UInt8]?] = [:]
        for key in named { old[key] = line(of: key, at: before) }
        apply()
        guard let now = engine.clock else { return [] }
        var changes: [Change] = []
        // Those whom time alone reached (their lines are compared below
        // when the body names them).
        var woken: [[UInt8]] = []
        while let (time, p) = due.peek(), time <= now {
            due.pop()
            guard wake[p] == time else { continue }
            wake[p] = .max
            let key = Array(engine.people.key(p))
            if old[key] != nil { continue }
            let (was, new) = (line(of: key, at: before), line(of: key, at: now))
            if was != new { changes.append(change(key, new)) }
            woken.append(key)
        }
        for key in named {
            let new = line(of: key, at: now)
            if new != old[key]! { changes.append(change(key, new)) }
        }
        for key in named + woken { reschedule(key, after: now) }
        return changes.sorted { $0.person.utf8.lexicographicallyPrecedes($1.person.utf8) }
    }

    /// Every person's line now, by id: a policy change compares them all.
    package func everyone() -> [[UInt8]: [UInt8]] {
        var lines: [[UInt8]: [UInt8]] = [:]
        for p in 0..<engine.people.count {
            let key = Array(engine.people.key(p))
            if let line = line(of: key, at: engine.clock) { lines[key] = line }
        }
        return lines
    }

    /// Who differs between two `everyone()`s, in byte order of ids.
    package static func difference(_ before: [[UInt8]: [UInt8]], _ after: [[UInt8]: [UInt8]]) -> [Change] {
        Set(before.keys).union(after.keys)
            .filter { before[$0] != after[$0] }
            .sorted { $0.lexicographicallyPrecedes($1) }
            .map { Change(person: String(decoding: $0, as: UTF8.self), line: after[$0].map { String(decoding: $0, as: UTF8.self) }) }
    }

    /// Queues everyone for the next change time alone makes to their line
    /// (a tracker made for an engine that has people already).
    package func watchEveryone() {
        guard let now = engine.clock else { return }
        for p in 0..<engine.people.count { reschedule(Array(engine.people.key(p)), after: now) }
    }

    /// Each person a line of the body names, once (lines that name nobody
    /// are rejected and change nothing).
    private func people(namedBy body: [UInt8]) -> [[UInt8]] {
        var seen = Set<[UInt8]>(), order: [[UInt8]] = []
        body.withUnsafeBufferPointer { all in
            var start = 0
            while start < all.count {
                var end = start
                while end < all.count && all[end] != 0x0A { end += 1 }
                var stop = end
                if stop > start && all[stop - 1] == 0x0D { stop -= 1 }
                if case .event(let e) = parser.parse(UnsafeBufferPointer(rebasing: all[start..<stop]), into: nil) {
                    let key = Array(e.person)
                    if seen.insert(key).inserted { order.append(key) }
                }
                start = end + 1
            }
        }
        return order
    }

    /// The person's report line as of `time`, without its newline; nil when
    /// they are not in the report.
    private func line(of key: [UInt8], at time: Int64?) -> [UInt8]? {
        guard let time, let p = key.withUnsafeBufferPointer({ engine.people.find($0) }), engine.isPresent(p) else { return nil }
        writer.removeAll()
        writer.append(engine, person: p, at: time)
        return Array(writer.bytes.dropLast())
    }

    private func change(_ key: [UInt8], _ line: [UInt8]?) -> Change {
        Change(person: String(decoding: key, as: UTF8.self), line: line.map { String(decoding: $0, as: UTF8.self) })
    }

    /// Queues the person for the next time after `time` at which their line
    /// can change by time alone, unless an earlier wake is queued already
    /// (it looks again then, and queues the next).
    private func reschedule(_ key: [UInt8], after time: Int64) {
        guard let p = key.withUnsafeBufferPointer({ engine.people.find($0) }) else { return }
        if wake.count <= p { wake += repeatElement(.max, count: max(p + 1, 2 * wake.count) - wake.count) }
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
