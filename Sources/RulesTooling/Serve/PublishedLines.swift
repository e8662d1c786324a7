import RulesCore

/// Each person's report line as the last acknowledged body left it: what
/// `GET /v1/people/ID` answers, under a lock of its own, so that a read
/// never waits for the engine to apply a body (and never sees half of
/// one). Kept from the change feed's changes: after each body, every line
/// that changed — whether a line of the body named the person or time
/// alone reached them — is set here before the body is answered.
package final class PublishedLines: @unchecked Sendable {
    private let lock = Lock()
    private var lines: [[UInt8]: [UInt8]] = [:]

    package init() {}

    /// Sets the changed lines (a person who left the report is removed).
    package func update(_ changes: [ReportChanges.Change]) {
        guard !changes.isEmpty else { return }
        lock.locked {
            for change in changes { lines[change.person] = change.line }
        }
    }

    /// Everyone's line at once (a start from a checkpoint).
    package func replaceAll(_ changes: [ReportChanges.Change]) {
        lock.locked {
            lines = [:]
            for change in changes { lines[change.person] = change.line }
        }
    }

    package func line(of person: String) -> [UInt8]? {
        let key = Array(person.utf8)
        return lock.locked { lines[key] }
    }
}
