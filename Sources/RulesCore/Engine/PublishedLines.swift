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
package final class PublishedLines: @unchecked Sendable {
    private let lock = Lock()
    private var writer: ReportWriter? = nil
    private var ids = ByteTable(capacity: 1024)
    /// By id (in `ids`): 1 when the person is in the report, then their
    /// line state (`stride` words in all).
    private var states: [UInt64] = []
    private var stride = 1

    package init() {}

    /// Sets the changed lines (a person who left the report is removed).
    package func update(_ changes: [ReportChanges.Change]) {
        guard !changes.isEmpty else { return }
        lock.locked {
            for change in changes { change.person.withUnsafeBufferPointer { set($0, change.state) } }
        }
    }

    /// Everyone's line at once, under `program` (a start, a policy change):
    /// the trackers (one per share of the people) tell who is in the report
    /// and their line states.
    package func replaceAll(program: Program, personKey: PersonKey, from trackers: [ReportChanges]) {
        lock.locked {
            writer = ReportWriter(program: program, personKey: personKey, capacity: 4096)
            stride = 1 + writer!.stateWords
            ids = ByteTable(capacity: 1024)
            states = []
            for tracker in trackers { tracker.forEachShown { id, state in set(id, state) } }
        }
    }

    private func set<S: Collection>(_ person: UnsafeBufferPointer<UInt8>, _ state: S?) where S.Element == UInt64 {
        let (id, isNew) = ids.intern(person)
        if isNew { states += repeatElement(0, count: stride) }
        let at = id * stride
        guard let state else { states[at] = 0; return }
        states[at] = 1
        var k = at + 1
        for word in state { states[k] = word; k += 1 }
    }

    /// The person's line (no newline), or nil when they are not in the
    /// report.
    package func line(of person: String) -> [UInt8]? {
        var key = person
        return key.withUTF8 { key in
            lock.locked { () -> [UInt8]? in
                guard let writer, let id = ids.find(key), states[id * stride] != 0 else { return nil }
                writer.removeAll()
                states.withUnsafeBufferPointer { writer.appendLine(id: key, state: $0.baseAddress! + id * stride + 1) }
                writer.dropLast()
                return Array(writer.bytes)
            }
        }
    }
}
