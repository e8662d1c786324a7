import MemoryHints

/// Each person's report line as the last acknowledged body left it: what
/// the service's `GET /v1/people/ID` answers, under a lock of its own, so
/// that a read never waits for the engine to apply a body (and never sees
/// half of one). Kept from the change feed's changes: after each body,
/// every line that changed — whether a line of the body named the person
/// or time alone reached them — is set here before the body is answered.
///
/// A line is kept as its line state (`ReportWriter.lineState`: the score
/// and a bit per name that shows, 16 bytes for most policies) and written
/// when it is asked for. People are kept by share, as the engines hold
/// them (the service's shards), each in a `Share` by their number in their
/// engine: a read finds the share by the id's hash, as the engines were
/// given their people, and the number in that engine's own table of
/// people (`Engine.findPerson`). The change tracker of each engine compares
/// its lines with its share, so what is published is kept once.
package final class PublishedLines: @unchecked Sendable {
    private let lock = Lock()
    private var writer: ReportWriter? = nil
    private var shares: [Share] = []

    /// One engine's people as last published: by their number in it, their
    /// line state (zeros: not in the report, or never published). Written
    /// by `PublishedLines.update` under its lock (or by its tracker alone,
    /// `ReportChanges.publish`, when there are no lookups), read by lookups
    /// under that lock and by its tracker.
    package final class Share: @unchecked Sendable {
        let engine: Engine
        /// Words per person: a line state.
        let stride: Int
        /// The tracker's writer, for the line state's layout only
        /// (`isInReport`, which reads nothing that changes).
        private let writer: ReportWriter
        @exclusivity(unchecked) private var states = UnsafeMutablePointer<UInt64>.allocate(capacity: 0)
        @exclusivity(unchecked) private var capacity = 0
        /// People in the report.
        @exclusivity(unchecked) private(set) var shown = 0

        init(engine: Engine, writer: ReportWriter) {
            self.engine = engine
            self.writer = writer
            stride = writer.stateWords
        }

        deinit { states.deallocate() }

        /// Person `p`'s line state as published (zeros: not in the report),
        /// nil when never published.
        @inline(__always)
        func state(_ p: Int) -> UnsafePointer<UInt64>? { p < capacity ? UnsafePointer(states + p &* stride) : nil }

        @inline(__always)
        func prefetch(_ p: Int) { if p >= 0 && p < capacity { rules_prefetch(states + p &* stride) } }

        /// Publishes person `p`'s line state (nil: not in the report).
        func set(_ p: Int, _ state: UnsafeBufferPointer<UInt64>?) {
            precondition(p >= 0, "a change published without its person's number")
            if p >= capacity { grow(to: p + 1) }
            let row = states + p &* stride
            if writer.isInReport(row) { shown -= 1 }
            guard let state else {
                row.update(repeating: 0, count: stride)
                return
            }
            row.update(from: state.baseAddress!, count: stride)
            if writer.isInReport(row) { shown += 1 }
        }

        /// Room for `people`, the new rows not published (doubling: no copy
        /// per body).
        private func grow(to people: Int) {
            let bigger = max(people, 2 * capacity, 1024)
            let more = UnsafeMutablePointer<UInt64>.allocate(capacity: bigger * stride)
            more.update(from: states, count: capacity * stride)
            (more + capacity * stride).initialize(repeating: 0, count: (bigger - capacity) * stride)
            states.deallocate()
            states = more
            capacity = bigger
        }
    }

    package init() {}

    /// Publishes each share's changed lines (`changes[k]`: share k's, a
    /// person who left the report removed), all at once for reads.
    package func update(_ changes: [ChangeList]) {
        guard changes.contains(where: { !$0.isEmpty }) else { return }
        lock.locked {
            for (k, list) in changes.enumerated() {
                let share = shares[k]
                for c in 0..<list.count {
                    if c + 4 < list.count { share.prefetch(list.view(c + 4).index) }
                    let change = list.view(c)
                    share.set(change.index, change.state)
                }
            }
        }
    }

    /// Puts new shares in force at once, under `program` (a start, a policy
    /// change): their trackers filled them (`ReportChanges.resume`,
    /// `adopt`), in the order of the engines.
    package func install(program: Program, personKey: PersonKey, shares: [Share]) {
        let writer = ReportWriter(program: program, personKey: personKey, capacity: 4096)
        for share in shares { share.engine.peopleLock = share.engine.peopleLock ?? Lock() }
        lock.locked {
            self.writer = writer
            self.shares = shares
        }
    }

    /// People in the report (`GET /v1/health`, `/metrics`): counted as
    /// lines are set, not by going over everyone.
    package var people: Int { lock.locked { shares.reduce(0) { $0 + $1.shown } } }

    /// The person's line (no newline), or nil when they are not in the
    /// report.
    package func line(of person: String) -> [UInt8]? {
        var key = person
        return key.withUTF8 { key in
            lock.locked { () -> [UInt8]? in
                guard let writer, !shares.isEmpty else { return nil }
                let share = shares[shares.count == 1 ? 0 : ByteTable.share(of: key, among: shares.count)]
                guard let p = share.engine.findPerson(key), let state = share.state(p), writer.isInReport(state) else { return nil }
                writer.removeAll()
                writer.appendLine(id: key, state: state)
                writer.dropLast()
                return Array(writer.bytes)
            }
        }
    }
}
