/// Each person's applied events, kept while a correction can still reach
/// them: the event's line (replayed through the same parser and engine as
/// any line), its time, its line number and its id. A correction rebuilds
/// the person from their first kept event (`EventApplier.recompute`); the
/// plain reference model in the tests rebuilds them from the whole stream,
/// and the two are compared.
///
/// Only with `--retain`: without it nothing is kept beyond what windows
/// need, and the engine has no history at all.
final class History {
    struct Record {
        var time: Int64
        /// The line of the stream it came from (for notes and the trail).
        var line: Int
        var id: [UInt8]?
        /// The line as read, replayed on a correction.
        var bytes: [UInt8]
        /// Set by a retraction: the line of the retraction and its reason.
        var retractedAt: Int? = nil
    }

    /// How long after its time an event stays within reach (ticks).
    let retain: Int64
    /// How much earlier than a person's previous event an event may be and
    /// still be applied in time order (ticks).
    let lateness: Int64
    /// Per person (the engine's index), oldest first.
    private(set) var records: [[Record]] = []
    /// People all of whose events were retracted: not in the report.
    private(set) var absent: Set<Int> = []

    init(retain: Int64, lateness: Int64) {
        self.retain = retain
        self.lateness = lateness
    }

    /// Makes room for people up to `person`.
    @inline(__always)
    private func ensure(_ person: Int) {
        while records.count <= person { records.append([]) }
    }

    /// The person's kept events, oldest first.
    func events(of person: Int) -> [Record] {
        person < records.count ? records[person] : []
    }

    /// Keeps an event applied in order (its time is the person's latest).
    func append(person: Int, _ record: Record) {
        ensure(person)
        records[person].append(record)
        absent.remove(person)
    }

    /// Keeps a late event in time order: after every kept event of the same
    /// time or earlier (a tie goes after what is already applied).
    func insert(person: Int, _ record: Record) {
        ensure(person)
        let at = records[person].lastIndex { $0.time <= record.time }.map { $0 + 1 } ?? 0
        records[person].insert(record, at: at)
        absent.remove(person)
    }

    /// The kept event of `person` with this id, or nil.
    func find(person: Int, id: UnsafeBufferPointer<UInt8>) -> Int? {
        guard person < records.count else { return nil }
        return records[person].lastIndex { $0.id.map { $0.elementsEqual(id) } ?? false }
    }

    func markRetracted(person: Int, at index: Int, line: Int) {
        records[person][index].retractedAt = line
        if !records[person].contains(where: { $0.retractedAt == nil }) { absent.insert(person) }
    }

    /// Whether an event at `time` is still within reach of a correction at `now`.
    func reaches(_ time: Int64, from now: Int64) -> Bool {
        Timestamp.adding(time, retain) >= now
    }
}
