import MemoryHints

/// Per-person state in one flat array indexed by an interned person id.
///
/// Each person has a row of `2 + slotCount` words: the score, the time of the
/// last event, then the end times of what event rules set. One row per person
/// (not one array per field) means applying an event touches one cache line
/// of state, not three: with 100k people most rows are cold.
final class PersonStore {
    /// `count` rows of `stride` words, in plain memory that grows by
    /// doubling (an array would be retained around every access).
    @exclusivity(unchecked) private var rows: UnsafeMutablePointer<Int64>
    @exclusivity(unchecked) private var capacity = 0
    /// End times per person: `Self.none` when not set, `Self.forever` when set
    /// until lifted.
    let slotCount: Int
    /// After the slots, one word per attribute (`AttributeWord`), set to
    /// these for a new person.
    let attributeStarts: [Int64]
    let attributeCount: Int
    /// The same starts in memory the store owns: a new person's row is
    /// filled without retaining the array.
    private let startWords: UnsafeMutableBufferPointer<Int64>
    let stride: Int
    let buffers: [WindowBuffer]
    @exclusivity(unchecked) private(set) var count = 0

    static let none = Int64.min
    static let forever = Int64.max

    /// The same buffers, unretained (`buffers` keeps them alive): the
    /// per-event path reaches them without reference counting.
    private let bufferRefs: UnsafeMutableBufferPointer<Unmanaged<WindowBuffer>>

    init(slotCount: Int, attributeStarts: [Int64] = [], buffers: [WindowBuffer]) {
        self.slotCount = slotCount
        self.attributeStarts = attributeStarts
        attributeCount = attributeStarts.count
        startWords = .allocate(capacity: max(1, attributeStarts.count))
        _ = startWords.initialize(from: attributeStarts)
        self.stride = 2 + slotCount + attributeStarts.count
        self.buffers = buffers
        rows = .allocate(capacity: 1)
        let refs = UnsafeMutableBufferPointer<Unmanaged<WindowBuffer>>.allocate(capacity: max(1, buffers.count))
        for (i, b) in buffers.enumerated() { refs[i] = .passUnretained(b) }
        bufferRefs = UnsafeMutableBufferPointer(rebasing: refs[0..<buffers.count])
    }

    deinit {
        rows.deallocate()
        startWords.deallocate()
        UnsafeMutableRawPointer(bufferRefs.baseAddress)?.deallocate()
    }

    @inline(__always)
    func buffer<R>(_ b: Int, _ body: (WindowBuffer) -> R) -> R {
        bufferRefs[b]._withUnsafeGuaranteedRef(body)
    }

    // Unchecked in release: person ids come from the engine's own table.
    @inline(__always) func score(_ person: Int) -> Int64 { assert(person < count); return rows[person &* stride] }
    @inline(__always) func setScore(_ person: Int, _ s: Int64) { assert(person < count); rows[person &* stride] = s }
    @inline(__always) func lastTime(_ person: Int) -> Int64 { assert(person < count); return rows[person &* stride &+ 1] }
    @inline(__always) func setLastTime(_ person: Int, _ t: Int64) { assert(person < count); rows[person &* stride &+ 1] = t }
    /// When what sits in `slot` ends for `person`.
    @inline(__always) func end(_ person: Int, _ slot: Int) -> Int64 {
        assert(person < count && slot < slotCount)
        return rows[person &* stride &+ 2 &+ slot]
    }
    @inline(__always) func setEnd(_ person: Int, _ slot: Int, _ t: Int64) { rows[person &* stride &+ 2 &+ slot] = t }
    /// Attribute `k`'s word for `person`.
    @inline(__always) func attribute(_ person: Int, _ k: Int) -> Int64 {
        assert(person < count && k < attributeCount)
        return rows[person &* stride &+ 2 &+ slotCount &+ k]
    }
    @inline(__always) func setAttribute(_ person: Int, _ k: Int, _ word: Int64) { rows[person &* stride &+ 2 &+ slotCount &+ k] = word }

    /// The report's two-step prefetch: first the row and where the lists
    /// are, later (those cached) the lists themselves.
    @inline(__always)
    func prefetchForReport(_ person: Int, stage: Int) {
        if stage == 0 {
            prefetch(person)
            for b in bufferRefs { b._withUnsafeGuaranteedRef { $0.prefetchListReference(person) } }
        } else {
            for b in bufferRefs { b._withUnsafeGuaranteedRef { $0.prefetchList(person) } }
        }
    }

    /// Starts loading a person's row and window entries.
    @inline(__always)
    func prefetch(_ person: Int) {
        // A row not aligned to a cache line spans two (rows are `stride`
        // words, seldom eight): its last word asked for too (the same
        // line: free).
        rules_prefetch(rows + person &* stride)
        rules_prefetch(rows + (person &* stride &+ stride &- 1))
        for b in bufferRefs { b._withUnsafeGuaranteedRef { $0.prefetch(person) } }
    }

    func addPerson(score: Int64) {
        if count == capacity {
            capacity = max(1024, capacity * 2)
            let bigger = UnsafeMutablePointer<Int64>.allocate(capacity: capacity * stride)
            bigger.update(from: rows, count: count * stride)
            rows.deallocate()
            rows = bigger
        }
        let row = rows + count * stride
        row[0] = score
        row[1] = Int64.min
        for k in 0..<slotCount { row[2 + k] = Self.none }
        for k in 0..<attributeCount { row[2 + slotCount + k] = startWords[k] }
        for b in buffers { b.addPerson() }
        count += 1
    }
}

/// The times (and values, for `sum`) of one kind of matching event, per
/// person, oldest first. Entries older than the longest window that reads the
/// buffer are dropped; a counted rule's buffer keeps at most N-1 entries.
///
/// Small caps (`3 speeding within 30 days` keeps 2) live inline in plain
/// memory, `cap` entries per person, so a push or a count touches one place;
/// other buffers keep a growable list per person, also in plain memory
/// (`ListHeader`): no Swift array is retained on the way, and where a list
/// is can be read (and prefetched) as a plain field. A class: the engine
/// mutates it in place.
final class WindowBuffer {
    struct Entry {
        var time: Int64
        var value: Double
    }

    let longestWindow: Int64
    let cap: Int?
    /// Caps up to this size are stored inline.
    static let inlineCap = 8
    /// Entries per person stored inline (0 when the lists are used).
    private let width: Int
    private let inline: Bool
    @exclusivity(unchecked) private var flat: UnsafeMutablePointer<Entry>    // inline: `width` per person
    @exclusivity(unchecked) private var counts: UnsafeMutablePointer<UInt8>  // inline: entries in use per person
    @exclusivity(unchecked) private var people = 0, capacity = 0
    /// Otherwise: where each person's entries are, oldest first.
    struct ListHeader {
        var entries: UnsafeMutablePointer<Entry>? = nil
        var count = 0
        var capacity = 0
    }
    @exclusivity(unchecked) private var lists: UnsafeMutablePointer<ListHeader>

    init(longestWindow: Int64, cap: Int?) {
        self.longestWindow = longestWindow
        self.cap = cap
        inline = cap.map { $0 <= Self.inlineCap } ?? false
        width = inline ? cap! : 0
        flat = .allocate(capacity: 1)
        counts = .allocate(capacity: 1)
        lists = .allocate(capacity: 1)
    }

    deinit {
        flat.deallocate()
        counts.deallocate()
        for p in 0..<(inline ? 0 : people) { lists[p].entries?.deallocate() }
        lists.deallocate()
    }

    @inline(__always)
    func prefetch(_ person: Int) {
        if width > 0 { rules_prefetch(flat + person &* width) }
    }

    /// For a list buffer, the entries of a person whose list header was
    /// prefetched earlier (the report reads people in id order, not in the
    /// order they were added, so each person's state is a cache miss).
    @inline(__always)
    func prefetchList(_ person: Int) {
        if !inline, let entries = lists[person].entries { rules_prefetch(entries) }
    }

    @inline(__always)
    func prefetchListReference(_ person: Int) {
        if !inline { rules_prefetch(lists + person) }
    }

    func addPerson() {
        if people == capacity {
            capacity = max(1024, capacity * 2)
            if inline {
                let biggerFlat = UnsafeMutablePointer<Entry>.allocate(capacity: max(1, capacity * width))
                biggerFlat.update(from: flat, count: people * width)
                flat.deallocate()
                flat = biggerFlat
                let biggerCounts = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
                biggerCounts.update(from: counts, count: people)
                counts.deallocate()
                counts = biggerCounts
            } else {
                let bigger = UnsafeMutablePointer<ListHeader>.allocate(capacity: capacity)
                bigger.moveInitialize(from: lists, count: people)
                lists.deallocate()
                lists = bigger
            }
        }
        if inline { counts[people] = 0 } else { (lists + people).initialize(to: ListHeader()) }
        people += 1
    }

    /// A person's list entries, oldest first.
    @inline(__always)
    private func list(_ person: Int) -> UnsafeBufferPointer<Entry> {
        let h = lists[person]
        return UnsafeBufferPointer(start: h.entries, count: h.count)
    }

    /// Replaces a person's list entries (room for at least `count`).
    private func setList(_ person: Int, _ entries: some Collection<Entry>) {
        ensureRoom(person, entries.count)
        var k = 0
        for e in entries { lists[person].entries![k] = e; k += 1 }
        lists[person].count = entries.count
    }

    /// Room for `count` entries in the person's list, kept in place.
    private func ensureRoom(_ person: Int, _ count: Int) {
        let h = lists[person]
        if count <= h.capacity { return }
        let room = max(4, count, h.capacity * 2)
        let bigger = UnsafeMutablePointer<Entry>.allocate(capacity: room)
        if let old = h.entries {
            bigger.update(from: old, count: h.count)
            old.deallocate()
        }
        lists[person].entries = bigger
        lists[person].capacity = room
    }

    /// Matching events in `(now − window, now]`, and the sum of their values.
    @inline(__always)
    func aggregate(person: Int, now: Int64, window: Int64) -> (count: Int, sum: Double) {
        if inline {
            return Self.aggregate(UnsafeBufferPointer(start: flat + person &* width, count: Int(counts[person])),
                                  now: now, window: window)
        }
        return Self.aggregate(list(person), now: now, window: window)
    }

    /// The values are added oldest first, as the language defines `sum`:
    /// floating-point addition depends on the order (2.5 + 1e300 − 1e300 is
    /// 0 that way, 2.5 the other), and the reference model found the
    /// newest-first loop this replaced disagreeing with it.
    @inline(__always)
    private static func aggregate(_ list: UnsafeBufferPointer<Entry>, now: Int64, window: Int64) -> (count: Int, sum: Double) {
        let from = now &- window
        var first = list.count
        while first > 0 && list[first - 1].time > from { first -= 1 }
        var count = 0
        var sum = 0.0
        for k in first..<list.count where list[k].time <= now {
            count += 1
            sum += list[k].value
        }
        return (count, sum)
    }

    /// The entries kept for a person, oldest first, for `body` to read
    /// (a checkpoint: no array made per person).
    @inline(__always)
    func withEntries<R>(person: Int, _ body: (UnsafeBufferPointer<Entry>) -> R) -> R {
        body(inline ? UnsafeBufferPointer(start: flat + person * width, count: Int(counts[person])) : list(person))
    }

    /// The entries kept for a person, oldest first (checkpoints).
    func entries(person: Int) -> [Entry] {
        if inline { return Array(UnsafeBufferPointer(start: flat + person * width, count: Int(counts[person]))) }
        return Array(list(person))
    }

    /// Puts back a person's entries from a checkpoint (the person was just
    /// added); false when there are more than this buffer can hold.
    func restore(person: Int, _ list: [Entry]) -> Bool {
        if let cap, list.count > cap { return false }
        if inline {
            for (k, e) in list.enumerated() { flat[person * width + k] = e }
            counts[person] = UInt8(list.count)
        } else {
            setList(person, list)
        }
        return true
    }

    /// The times kept for a person, oldest first (the audit trail reads them).
    func times(person: Int) -> [Int64] {
        if inline {
            return UnsafeBufferPointer(start: flat + person * width, count: Int(counts[person])).map(\.time)
        }
        return list(person).map(\.time)
    }

    /// Forgets a person's entries (an `every` rule fired: it counts again).
    func clear(person: Int) {
        if inline { counts[person] = 0 } else { lists[person].count = 0 }
    }

    func push(person: Int, time: Int64, value: Double) {
        if inline { pushInline(person: person, time: time, value: value); return }
        let from = time &- longestWindow
        let old = list(person)
        let n = old.count
        var drop = 0
        while drop < n && old[drop].time <= from { drop += 1 }
        if let cap, n - drop >= cap { drop = n - cap + 1 }
        drop = min(drop, n)
        if drop > 0, let entries = lists[person].entries {
            // Oldest first: what is kept moves to the front.
            entries.update(from: entries + drop, count: n - drop)
            lists[person].count = n - drop
        }
        if cap == 0 { return }
        let kept = lists[person].count
        ensureRoom(person, kept + 1)
        lists[person].entries![kept] = Entry(time: time, value: value)
        lists[person].count = kept + 1
    }

    @inline(__always)
    private func pushInline(person: Int, time: Int64, value: Double) {
        let cap = width
        if cap == 0 { return }
        let f = flat + person &* cap, n = Int(counts[person]), from = time &- longestWindow
        var drop = 0
        while drop < n && f[drop].time <= from { drop += 1 }
        if n - drop >= cap { drop = n - cap + 1 }
        if drop > 0 { for k in drop..<n { f[k - drop] = f[k] } }
        f[n - drop] = Entry(time: time, value: value)
        counts[person] = UInt8(n - drop + 1)
    }
}
