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
/// when it is asked for: a copy of every line would cost more per person
/// than the engine's own state.
///
/// People are kept by share, as the engines hold them (the service's
/// shards): a read finds the share by the id's hash, as the engines were
/// given their people; a change is set by the person's number in its
/// engine, so a body's changes cost no hashing but for people new here.
package final class PublishedLines: @unchecked Sendable {
    private let lock = Lock()
    private var writer: ReportWriter? = nil
    private var shares: [Share] = [Share(stride: 1)]
    private var stride = 1

    /// One engine's people.
    private struct Share {
        var ids = ByteTable(capacity: 1024)
        /// By id (in `ids`): 1 when the person is in the report, then their
        /// line state (`stride` words in all).
        var states: [UInt64] = []
        /// By the person's number in the engine: their id here, -1 when
        /// none yet.
        var byEngine: [Int32] = []
        /// People in the report.
        var shown = 0
        let stride: Int

        init(stride: Int) { self.stride = stride }

        func prefetchNumber(_ p: Int) {
            if p >= 0 && p < byEngine.count { byEngine.withUnsafeBufferPointer { rules_prefetch($0.baseAddress! + p) } }
        }

        func prefetchState(_ p: Int) {
            guard p >= 0 && p < byEngine.count else { return }
            let id = Int(byEngine[p])
            if id >= 0 && id * stride < states.count { states.withUnsafeBufferPointer { rules_prefetch($0.baseAddress! + id * stride) } }
        }

        mutating func set<S: Collection>(_ person: UnsafeBufferPointer<UInt8>, engineIndex p: Int, _ state: S?) where S.Element == UInt64 {
            if byEngine.count <= p { byEngine += repeatElement(-1, count: max(p + 1, 2 * byEngine.count) - byEngine.count) }
            var id = Int(byEngine[p])
            if id < 0 {
                id = ids.intern(person).id
                if states.count < (id + 1) * stride { states += repeatElement(0, count: (id + 1) * stride - states.count) }
                byEngine[p] = Int32(id)
            }
            let at = id * stride
            shown -= Int(states[at])
            guard let state else { states[at] = 0; return }
            states[at] = 1
            shown += 1
            var k = at + 1
            for word in state { states[k] = word; k += 1 }
        }
    }

    package init() {}

    /// Sets each share's changed lines (`changes[k]`: share k's, a person
    /// who left the report removed), all at once for reads.
    package func update(_ changes: [ChangeList]) {
        guard changes.contains(where: { !$0.isEmpty }) else { return }
        lock.locked {
            for (k, list) in changes.enumerated() {
                // Each change is a person's number, then their id here, then
                // their state: asked for ahead, a step each.
                for c in 0..<list.count {
                    if c + 8 < list.count { shares[k].prefetchNumber(list.view(c + 8).index) }
                    if c + 4 < list.count { shares[k].prefetchState(list.view(c + 4).index) }
                    let change = list.view(c)
                    shares[k].set(change.person, engineIndex: change.index, change.state)
                }
            }
        }
    }

    /// Everyone's line at once, under `program` (a start, a policy change):
    /// the trackers (one per share of the people, in the order of the
    /// shares) tell who is in the report and their line states.
    package func replaceAll(program: Program, personKey: PersonKey, from trackers: [ReportChanges]) {
        lock.locked {
            writer = ReportWriter(program: program, personKey: personKey, capacity: 4096)
            stride = 1 + writer!.stateWords
            shares = trackers.map { tracker in
                var share = Share(stride: stride)
                tracker.forEachShown { p, id, state in share.set(id, engineIndex: p, state) }
                return share
            }
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
                let share = shares[shares.count == 1 ? 0 : ParallelStream.Router.bucket(key, shares.count)]
                guard let writer, let id = share.ids.find(key), share.states[id * stride] != 0 else { return nil }
                writer.removeAll()
                share.states.withUnsafeBufferPointer { writer.appendLine(id: key, state: $0.baseAddress! + id * stride + 1) }
                writer.dropLast()
                return Array(writer.bytes)
            }
        }
    }
}
