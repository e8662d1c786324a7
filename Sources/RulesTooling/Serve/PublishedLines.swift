import RulesCore

/// Each person's report line as the last acknowledged body left it: what
/// `GET /v1/people/ID` answers, under a lock of its own, so that a read
/// never waits for the engine to apply a body (and never sees half of
/// one). Kept from the change feed's changes: after each body, every line
/// that changed — whether a line of the body named the person or time
/// alone reached them — is set here before the body is answered.
package final class PublishedLines: @unchecked Sendable {
    private let lock = Lock()
    /// Strings, not byte arrays: an id of up to 15 bytes is stored inside
    /// its `String`, with no allocation of its own.
    private var lines: [String: String] = [:]

    package init() {}

    /// Sets the changed lines (a person who left the report is removed).
    package func update(_ changes: [ReportChanges.Change]) {
        guard !changes.isEmpty else { return }
        lock.locked {
            for change in changes { lines[String(decoding: change.person, as: UTF8.self)] = change.line.map { String(decoding: $0, as: UTF8.self) } }
        }
    }

    /// Everyone's line at once (a start from a checkpoint).
    package func replaceAll(_ changes: [ReportChanges.Change]) {
        lock.locked {
            lines = [:]
            for change in changes { lines[String(decoding: change.person, as: UTF8.self)] = change.line.map { String(decoding: $0, as: UTF8.self) } }
        }
    }

    package func line(of person: String) -> [UInt8]? {
        lock.locked { lines[person] }.map { Array($0.utf8) }
    }
}
