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
    let stride: Int
    let buffers: [WindowBuffer]
    @exclusivity(unchecked) private(set) var count = 0

    static let none = Int64.min
    static let forever = Int64.max

    /// The same buffers, unretained (`buffers` keeps them alive): the
    /// per-event path reaches them without reference counting.
    private let bufferRefs: UnsafeMutableBufferPointer<Unmanaged<WindowBuffer>>

    init(slotCount: Int, buffers: [WindowBuffer]) {
        self.slotCount = slotCount
        self.stride = 2 + slotCount
        self.buffers = buffers
        rows = .allocate(capacity: 1)
        let refs = UnsafeMutableBufferPointer<Unmanaged<WindowBuffer>>.allocate(capacity: max(1, buffers.count))
        for (i, b) in buffers.enumerated() { refs[i] = .passUnretained(b) }
        bufferRefs = UnsafeMutableBufferPointer(rebasing: refs[0..<buffers.count])
    }

    deinit {
        rows.deallocate()
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
        rules_prefetch(rows + person &* stride)
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
        for b in buffers { b.addPerson() }
        count += 1
    }
}

/// The times (and values, for `sum`) of one kind of matching event, per
/// person, oldest first. Entries older than the longest window that reads the
/// buffer are dropped; a counted rule's buffer keeps at most N-1 entries.
///
/// Small caps (`3 speeding within 30 days` keeps 2) live inline in plain
/// memory, `cap` entries per person, so a push or a count touches one place
/// and no array is retained; other buffers keep an array per person.
/// A class: the engine mutates it in place.
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
    @exclusivity(unchecked) private var lists: [[Entry]] = []                // otherwise

    init(longestWindow: Int64, cap: Int?) {
        self.longestWindow = longestWindow
        self.cap = cap
        inline = cap.map { $0 <= Self.inlineCap } ?? false
        width = inline ? cap! : 0
        flat = .allocate(capacity: 1)
        counts = .allocate(capacity: 1)
    }

    deinit {
        flat.deallocate()
        counts.deallocate()
    }

    @inline(__always)
    func prefetch(_ person: Int) {
        if width > 0 { rules_prefetch(flat + person &* width) }
    }

    /// For a list buffer, the entries of a person whose list reference was
    /// prefetched earlier (the report reads people in id order, not in the
    /// order they were added, so each person's state is a cache miss).
    ///
    /// The list's storage address is read as plain bits, not as an array:
    /// taking the array would retain it, and the retain would wait for the
    /// very cache miss the prefetch is meant to hide (it was a third of the
    /// report's time). Its entries start after the array header (two words
    /// of object header, count and capacity); a prefetch is only a hint, so
    /// a different layout would cost speed, never correctness.
    @inline(__always)
    func prefetchList(_ person: Int) {
        if inline { return }
        lists.withUnsafeBufferPointer { outer in
            let storage = UnsafeRawPointer(outer.baseAddress! + person).load(as: UnsafeRawPointer.self)
            rules_prefetch(storage + 4 * MemoryLayout<Int>.size)
        }
    }

    @inline(__always)
    func prefetchListReference(_ person: Int) {
        if !inline { lists.withUnsafeBufferPointer { rules_prefetch($0.baseAddress! + person) } }
    }

    func addPerson() {
        guard inline else { lists.append([]); return }
        if people == capacity {
            capacity = max(1024, capacity * 2)
            let biggerFlat = UnsafeMutablePointer<Entry>.allocate(capacity: max(1, capacity * width))
            biggerFlat.update(from: flat, count: people * width)
            flat.deallocate()
            flat = biggerFlat
            let biggerCounts = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
            biggerCounts.update(from: counts, count: people)
            counts.deallocate()
            counts = biggerCounts
        }
        counts[people] = 0
        people += 1
    }

    /// Matching events in `(now − window, now]`, and the sum of their values.
    @inline(__always)
    func aggregate(person: Int, now: Int64, window: Int64) -> (count: Int, sum: Double) {
        if inline {
            return Self.aggregate(UnsafeBufferPointer(start: flat + person &* width, count: Int(counts[person])),
                                  now: now, window: window)
        }
        return lists[person].withUnsafeBufferPointer { Self.aggregate($0, now: now, window: window) }
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

    /// The entries kept for a person, oldest first (checkpoints).
    func entries(person: Int) -> [Entry] {
        if inline { return Array(UnsafeBufferPointer(start: flat + person * width, count: Int(counts[person]))) }
        return lists[person]
    }

    /// Puts back a person's entries from a checkpoint (the person was just
    /// added); false when there are more than this buffer can hold.
    func restore(person: Int, _ list: [Entry]) -> Bool {
        if let cap, list.count > cap { return false }
        if inline {
            for (k, e) in list.enumerated() { flat[person * width + k] = e }
            counts[person] = UInt8(list.count)
        } else {
            lists[person] = list
        }
        return true
    }

    /// The times kept for a person, oldest first (the audit trail reads them).
    func times(person: Int) -> [Int64] {
        if inline {
            return UnsafeBufferPointer(start: flat + person * width, count: Int(counts[person])).map(\.time)
        }
        return lists[person].map(\.time)
    }

    func push(person: Int, time: Int64, value: Double) {
        if inline { pushInline(person: person, time: time, value: value); return }
        let from = time &- longestWindow
        var drop = 0
        let n = lists[person].count
        while drop < n && lists[person][drop].time <= from { drop += 1 }
        if let cap, n - drop >= cap { drop = n - cap + 1 }
        if drop > 0 { lists[person].removeFirst(min(drop, n)) }
        if cap == 0 { return }
        lists[person].append(Entry(time: time, value: value))
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
