import MemoryHints
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Each person's applied events, kept while a correction can still reach
/// them: the event's line (replayed through the same parser and engine as
/// any line), its time, its line number and its id. A correction rebuilds
/// the person from their base state — fresh, or what a compaction or a
/// policy change left (`bases`) — and their kept events
/// (`EventApplier.rebuilt`); the plain reference model in the tests
/// rebuilds them from the whole stream, and the two are compared. Events no
/// correction can reach any more are folded into the base by a sweep and
/// forgotten (`drop`, `collect`), so what is kept stays within the
/// retention.
///
/// Only with `--retain`: without it nothing is kept beyond what windows
/// need, and the engine has no history at all.
///
/// Keeping an event must cost little more than copying its line: records
/// go one after another into one block of plain memory, each pointing back
/// to the same person's previous record, and each person has only the
/// offset of their latest (one word, no array per person: appending to an
/// array per person cost a cache miss on its header per event — 17 % of
/// the run). A person's records are gathered on a correction, which costs
/// their history, never the stream's. Their order is (time, arrival): a
/// late event takes its place by time, after events of the same time that
/// arrived before it, as the contract says.
final class History {
    /// How long after its time an event stays within reach (ticks).
    let retain: Int64
    /// How much earlier than a person's previous event an event may be and
    /// still be applied in time order (ticks).
    let lateness: Int64

    /// One kept event, read from the block (its bytes are valid until the
    /// next event is kept).
    struct Record {
        /// Where it is in the block.
        let offset: Int
        let time: Int64
        /// Arrival order: ties in time keep it.
        let arrival: Int64
        /// The line of the stream it came from (for notes and the trail).
        let line: Int
        /// The line of the retraction that took it back, if one did.
        let retractedAt: Int?
        /// Applied under an earlier policy, before a resume that changed it:
        /// its effects are in the person's base state (`base(of:)`), and it
        /// is neither replayed nor retracted.
        let sealed: Bool
        let id: UnsafeBufferPointer<UInt8>?
        /// The line as read, replayed on a correction.
        let bytes: UnsafeBufferPointer<UInt8>
    }

    // A record: time, arrival, line, previous record (offset + 1, or 0),
    // retracted at (line, 0: not, -1: sealed), id length (-1: none) and
    // line length as two Int32, then the id's bytes and the line's, padded
    // to 8.
    private static let header = 48

    @exclusivity(unchecked) private var block: UnsafeMutableRawPointer
    @exclusivity(unchecked) private var used = 0
    @exclusivity(unchecked) private var capacity: Int
    @exclusivity(unchecked) private var arrivals: Int64 = 0
    /// What each person has here, in one place (one cache line to load,
    /// asked for with their state: `prefetch`).
    struct Person {
        /// Their latest record's offset + 1 (0: none).
        var latest = 0
        /// How many of their events were not retracted, the ones folded into
        /// their base (`compact`) among them.
        var standing = 0
        /// Whether any event of theirs was ever kept.
        var seen = false
        /// The earliest time among their kept records (`Int64.max`: none):
        /// when it falls out of reach, their history is compacted.
        var oldest = Int64.max
        /// Two bits of each kept id's hash in 128 (a Bloom filter): an id
        /// whose bits are not all set is new, with no walk through their
        /// records — a walk per event with an id cost 3× the run (a cache
        /// miss per record). Never cleared; a false "maybe" costs the walk.
        var idBits: (UInt64, UInt64) = (0, 0)
    }
    @exclusivity(unchecked) private var byPerson: UnsafeMutablePointer<Person>
    @exclusivity(unchecked) private var people = 0

    /// Kept bytes beyond which a sweep (`EventApplier.sweep`) compacts
    /// everyone with events out of reach; after it, twice what is left, and
    /// never less than `sweepFloor`. 0: a sweep before every line (tests).
    private let sweepFloor: Int
    @exclusivity(unchecked) private var budget: Int

    init(retain: Int64, lateness: Int64, sweepFloor: Int = 64 << 20) {
        self.retain = retain
        self.lateness = lateness
        self.sweepFloor = sweepFloor
        budget = sweepFloor
        capacity = 1 << 16
        block = malloc(capacity)!
        byPerson = .allocate(capacity: 1)
    }

    deinit {
        free(block)
        byPerson.deallocate()
    }

    /// Starts loading what the person has here (with their state, a few
    /// lines ahead of the reader).
    @inline(__always)
    func prefetch(_ person: Int) {
        if person < people { rules_prefetch(byPerson + person) }
    }

    /// Room for people up to `person`.
    @inline(__always)
    private func ensure(_ person: Int) {
        guard person >= people else { return }
        let count = max(1024, (person + 1) * 2)
        let bigger = UnsafeMutablePointer<Person>.allocate(capacity: count)
        bigger.update(from: byPerson, count: people)
        (bigger + people).initialize(repeating: Person(), count: count - people)
        byPerson.deallocate()
        byPerson = bigger
        people = count
    }

    /// Keeps an applied event of `person` (in order or late: the order is
    /// by time, then arrival).
    func keep(person: Int, time: Int64, line: Int, id: UnsafeBufferPointer<UInt8>?, bytes: UnsafeBufferPointer<UInt8>) {
        ensure(person)
        let idCount = id?.count ?? 0
        let size = (Self.header + idCount + bytes.count + 7) & ~7
        if used + size > capacity {
            // realloc moves large blocks by remapping pages, not copying.
            capacity = max(capacity * 2, used + size)
            block = realloc(block, capacity)!
        }
        let r = block + used
        r.storeBytes(of: time, as: Int64.self)
        r.storeBytes(of: arrivals, toByteOffset: 8, as: Int64.self)
        r.storeBytes(of: Int64(line), toByteOffset: 16, as: Int64.self)
        r.storeBytes(of: Int64(byPerson[person].latest), toByteOffset: 24, as: Int64.self)
        r.storeBytes(of: Int64(0), toByteOffset: 32, as: Int64.self)
        r.storeBytes(of: Int32(id == nil ? -1 : idCount), toByteOffset: 40, as: Int32.self)
        r.storeBytes(of: Int32(bytes.count), toByteOffset: 44, as: Int32.self)
        if let id, idCount > 0 {
            (r + Self.header).copyMemory(from: id.baseAddress!, byteCount: idCount)
            let (low, high) = Self.bits(id)
            byPerson[person].idBits.0 |= low
            byPerson[person].idBits.1 |= high
        }
        if bytes.count > 0 { (r + Self.header + idCount).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        arrivals += 1
        if byPerson[person].seen && byPerson[person].standing == 0 { emptied -= 1 }
        byPerson[person].latest = used + 1
        byPerson[person].standing += 1
        byPerson[person].seen = true
        byPerson[person].oldest = min(byPerson[person].oldest, time)
        used += size
    }

    private func record(at offset: Int) -> Record {
        let r = UnsafeRawPointer(block + offset)
        let idCount = Int(r.load(fromByteOffset: 40, as: Int32.self))
        let count = Int(r.load(fromByteOffset: 44, as: Int32.self))
        let bytes = (r + Self.header).assumingMemoryBound(to: UInt8.self)
        let retracted = r.load(fromByteOffset: 32, as: Int64.self)
        return Record(offset: offset, time: r.load(as: Int64.self), arrival: r.load(fromByteOffset: 8, as: Int64.self),
                      line: Int(r.load(fromByteOffset: 16, as: Int64.self)), retractedAt: retracted > 0 ? Int(retracted) : nil,
                      sealed: retracted < 0,
                      id: idCount < 0 ? nil : UnsafeBufferPointer(start: bytes, count: idCount),
                      bytes: UnsafeBufferPointer(start: bytes + max(0, idCount), count: count))
    }

    /// Calls `body` with the person's records, newest first (by arrival),
    /// until it returns false.
    private func walk(_ person: Int, _ body: (Record) -> Bool) {
        guard person < people else { return }
        var next = byPerson[person].latest
        while next != 0 {
            let r = record(at: next - 1)
            if !body(r) { return }
            next = Int(UnsafeRawPointer(block + next - 1).load(fromByteOffset: 24, as: Int64.self))
        }
    }

    /// The person's kept events in the order they are applied: by time,
    /// then arrival.
    func events(of person: Int) -> [Record] {
        var all: [Record] = []
        walk(person) { all.append($0); return true }
        return all.sorted { ($0.time, $0.arrival) < ($1.time, $1.arrival) }
    }

    /// Two of 128 bits for an id, from its hash.
    @inline(__always)
    private static func bits(_ id: UnsafeBufferPointer<UInt8>) -> (UInt64, UInt64) {
        let h = UInt64(ByteTable.hash(id)) &* 0x9E37_79B9_7F4A_7C15
        let a = h >> 57, b = (h >> 50) & 127
        @inline(__always) func low(_ bit: UInt64) -> UInt64 { bit < 64 ? 1 << bit : 0 }
        @inline(__always) func high(_ bit: UInt64) -> UInt64 { bit >= 64 ? 1 << (bit - 64) : 0 }
        return (low(a) | low(b), high(a) | high(b))
    }

    /// The person's kept events in the order they arrived (checkpoints).
    func arrived(of person: Int) -> [Record] {
        var all: [Record] = []
        walk(person) { all.append($0); return true }
        return all.reversed()
    }

    /// Puts back a record a checkpoint held (in arrival order): retracted
    /// on line `retractedAt`, or sealed.
    func restore(person: Int, time: Int64, line: Int, id: UnsafeBufferPointer<UInt8>?, bytes: UnsafeBufferPointer<UInt8>,
                 retractedAt: Int?, sealed: Bool) {
        keep(person: person, time: time, line: line, id: id, bytes: bytes)
        if sealed { (block + byPerson[person].latest - 1).storeBytes(of: Int64(-1), toByteOffset: 32, as: Int64.self) }
        if let retractedAt { markRetracted(person: person, record(at: byPerson[person].latest - 1), line: retractedAt) }
    }

    /// Seals every kept record: a resume under a changed policy starts the
    /// person from a base state (`setBase`), and what came before is in it.
    func sealAll() {
        for person in 0..<people {
            var next = byPerson[person].latest
            while next != 0 {
                let r = block + next - 1
                if r.load(fromByteOffset: 32, as: Int64.self) == 0 { r.storeBytes(of: Int64(-1), toByteOffset: 32, as: Int64.self) }
                next = Int(UnsafeRawPointer(r).load(fromByteOffset: 24, as: Int64.self))
            }
        }
    }

    /// A person's state to rebuild from, instead of a fresh one: what they
    /// had when a resume changed the policy. Score, last time, the end of
    /// each effect slot, and each window buffer's entries.
    struct Base {
        var score: Int64
        var lastTime: Int64
        var ends: [Int64]
        var entries: [[WindowBuffer.Entry]]
        /// Each attribute's word (`AttributeWord`).
        var attributes: [Int64] = []
    }

    /// Bases, by person (few: only people carried over a policy change).
    private(set) var bases: [Int: Base] = [:]

    func setBase(_ person: Int, _ base: Base) { bases[person] = base }

    /// The person's kept event with this id that arrived last, or nil.
    func find(person: Int, id: UnsafeBufferPointer<UInt8>) -> Record? {
        guard person < people, id.count > 0 else { return nil }
        let (low, high) = Self.bits(id)
        guard byPerson[person].idBits.0 & low == low && byPerson[person].idBits.1 & high == high else { return nil }
        var found: Record? = nil
        walk(person) { r in
            if let rid = r.id, rid.count == id.count, memcmp(rid.baseAddress!, id.baseAddress!, id.count) == 0 { found = r; return false }
            return true
        }
        return found
    }

    func markRetracted(person: Int, _ r: Record, line: Int) {
        (block + r.offset).storeBytes(of: Int64(line), toByteOffset: 32, as: Int64.self)
        byPerson[person].standing -= 1
        if byPerson[person].standing == 0 { emptied += 1 }
    }

    /// How many people have no event standing (`isEmptied`).
    @exclusivity(unchecked) private(set) var emptied = 0

    /// Whether none of the person's events stands (all retracted): they are
    /// not in the report.
    @inline(__always)
    func isEmptied(_ person: Int) -> Bool {
        person < people && byPerson[person].seen && byPerson[person].standing == 0
    }

    /// How many of the person's kept events stand.
    func standingCount(_ person: Int) -> Int { person < people ? byPerson[person].standing : 0 }

    /// Whether any event of the person was ever kept.
    func wasSeen(_ person: Int) -> Bool { person < people && byPerson[person].seen }

    /// Puts back what a checkpoint said of the person's events: how many
    /// stand (those folded into their base among them) and whether any was
    /// ever kept.
    func restoreCounts(person: Int, standing: Int, seen: Bool) {
        ensure(person)
        let was = isEmptied(person)
        byPerson[person].standing = standing
        byPerson[person].seen = seen
        emptied += (isEmptied(person) ? 1 : 0) - (was ? 1 : 0)
    }

    // MARK: - Compaction

    /// Whether kept history has outgrown its budget: time for a sweep.
    @inline(__always)
    var isOverBudget: Bool { used > budget || sweepFloor == 0 }

    /// Whether the person has kept events no correction can reach any more:
    /// older than `retain` before the earliest time a correction may still
    /// come at (their last event's, less `lateness`).
    @inline(__always)
    func isDue(_ person: Int, lastTime: Int64) -> Bool {
        guard person < people else { return false }
        let oldest = byPerson[person].oldest
        return oldest != Int64.max && Timestamp.adding(oldest, retain &+ lateness) < lastTime
    }

    /// After a sweep: the forgotten records let go, and the next budget.
    func endSweep() {
        if garbage > 0 { collect() }
        budget = max(sweepFloor, 2 * used)
    }

    /// The time before which the person's kept events are out of reach.
    func reach(lastTime: Int64) -> Int64 { lastTime &- lateness &- retain }

    /// Forgets the person's records older than `reach` (their effects are
    /// in the base now), relinking the rest; `endSweep` lets the bytes go.
    func drop(person: Int, before reach: Int64) {
        var kept: [Record] = [], dropped = 0
        walk(person) { r in
            if r.time < reach { dropped += Self.size(r) } else { kept.append(r) }
            return true
        }
        var previous = 0, oldest = Int64.max
        for r in kept.reversed() {
            (block + r.offset).storeBytes(of: Int64(previous), toByteOffset: 24, as: Int64.self)
            previous = r.offset + 1
            oldest = min(oldest, r.time)
        }
        byPerson[person].latest = previous
        byPerson[person].oldest = oldest
        garbage += dropped
    }

    /// Bytes of forgotten records still in the block.
    @exclusivity(unchecked) private var garbage = 0

    private static func size(_ r: Record) -> Int { (header + (r.id?.count ?? 0) + r.bytes.count + 7) & ~7 }

    /// Copies every person's records to a new block, in arrival order,
    /// leaving the forgotten ones behind.
    private func collect() {
        let old = block
        let fresh = malloc(max(1 << 16, used - garbage))!
        var at = 0
        for person in 0..<people where byPerson[person].latest != 0 {
            var previous = 0
            for r in arrived(of: person) {
                let size = Self.size(r)
                (fresh + at).copyMemory(from: old + r.offset, byteCount: size)
                (fresh + at).storeBytes(of: Int64(previous), toByteOffset: 24, as: Int64.self)
                previous = at + 1
                at += size
            }
            byPerson[person].latest = previous
        }
        free(old)
        block = fresh
        capacity = max(1 << 16, used - garbage)
        used = at
        garbage = 0
    }

    /// Whether an event at `time` is still within reach of a correction at `now`.
    func reaches(_ time: Int64, from now: Int64) -> Bool {
        Timestamp.adding(time, retain) >= now
    }

}
