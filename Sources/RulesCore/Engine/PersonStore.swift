import MemoryHints

/// Per-person state in one flat array indexed by an interned person id.
///
/// Each person has a row of `2 + slotCount` words: the score, the time of the
/// last event, then the end times of what event rules set. One row per person
/// (not one array per field) means applying an event touches one cache line
/// of state, not three: with 100k people most rows are cold.
final class PersonStore {
    private(set) var rows: [Int64] = []
    /// End times per person: `Self.none` when not set, `Self.forever` when set
    /// until lifted.
    let slotCount: Int
    let stride: Int
    let buffers: [WindowBuffer]
    private(set) var count = 0

    static let none = Int64.min
    static let forever = Int64.max

    /// The same buffers, unretained (`buffers` keeps them alive): the
    /// per-event path reaches them without reference counting.
    private let bufferRefs: UnsafeMutableBufferPointer<Unmanaged<WindowBuffer>>

    init(slotCount: Int, buffers: [WindowBuffer]) {
        self.slotCount = slotCount
        self.stride = 2 + slotCount
        self.buffers = buffers
        bufferRefs = .allocate(capacity: max(1, buffers.count))
        for (i, b) in buffers.enumerated() { bufferRefs[i] = .passUnretained(b) }
    }

    deinit { bufferRefs.deallocate() }

    @inline(__always)
    func buffer<R>(_ b: Int, _ body: (WindowBuffer) -> R) -> R {
        bufferRefs[b]._withUnsafeGuaranteedRef(body)
    }

    @inline(__always) func score(_ person: Int) -> Int64 { rows[person &* stride] }
    @inline(__always) func setScore(_ person: Int, _ s: Int64) { rows[person &* stride] = s }
    @inline(__always) func lastTime(_ person: Int) -> Int64 { rows[person &* stride &+ 1] }
    @inline(__always) func setLastTime(_ person: Int, _ t: Int64) { rows[person &* stride &+ 1] = t }
    /// When what sits in `slot` ends for `person`.
    @inline(__always) func end(_ person: Int, _ slot: Int) -> Int64 { rows[person &* stride &+ 2 &+ slot] }
    @inline(__always) func setEnd(_ person: Int, _ slot: Int, _ t: Int64) { rows[person &* stride &+ 2 &+ slot] = t }

    /// Starts loading a person's row and window entries.
    @inline(__always)
    func prefetch(_ person: Int) {
        rows.withUnsafeBufferPointer { rules_prefetch($0.baseAddress! + person &* stride) }
        for b in buffers.indices { buffer(b) { $0.prefetch(person) } }
    }

    func addPerson(score: Int64) {
        rows.append(score)
        rows.append(Int64.min)
        for _ in 0..<slotCount { rows.append(Self.none) }
        for i in buffers.indices { buffers[i].addPerson() }
        count += 1
    }
}

/// The times (and values, for `sum`) of one kind of matching event, per
/// person, oldest first. Entries older than the longest window that reads the
/// buffer are dropped; a counted rule's buffer keeps at most N-1 entries.
///
/// Small caps (`3 speeding within 30 days` keeps 2) live inline in one flat
/// array, `cap` entries per person, so a push or a count touches one place;
/// other buffers keep an array per person.
/// A class: the engine mutates it in place through the store's array (a
/// struct there would be checked for uniqueness and retained on each push).
final class WindowBuffer {
    struct Entry {
        var time: Int64
        var value: Double
    }

    let longestWindow: Int64
    let cap: Int?
    /// Caps up to this size are stored inline.
    static let inlineCap = 8
    private let inline: Bool
    private var flat: [Entry] = []       // inline: `cap` per person
    private var counts: [UInt8] = []     // inline: entries in use per person
    private var lists: [[Entry]] = []    // otherwise

    init(longestWindow: Int64, cap: Int?) {
        self.longestWindow = longestWindow
        self.cap = cap
        inline = cap.map { $0 <= Self.inlineCap } ?? false
    }

    @inline(__always)
    func prefetch(_ person: Int) {
        if inline, cap! > 0 { flat.withUnsafeBufferPointer { rules_prefetch($0.baseAddress! + person &* cap!) } }
    }

    func addPerson() {
        if inline {
            counts.append(0)
            for _ in 0..<cap! { flat.append(Entry(time: 0, value: 0)) }
        } else {
            lists.append([])
        }
    }

    /// Matching events in `(now − window, now]`, and the sum of their values.
    @inline(__always)
    func aggregate(person: Int, now: Int64, window: Int64) -> (count: Int, sum: Double) {
        if inline {
            let base = person &* cap!
            return flat.withUnsafeBufferPointer {
                Self.aggregate(UnsafeBufferPointer(rebasing: $0[base..<base + Int(counts[person])]), now: now, window: window)
            }
        }
        return lists[person].withUnsafeBufferPointer { Self.aggregate($0, now: now, window: window) }
    }

    @inline(__always)
    private static func aggregate(_ list: UnsafeBufferPointer<Entry>, now: Int64, window: Int64) -> (count: Int, sum: Double) {
        let from = now &- window
        var count = 0
        var sum = 0.0
        var i = list.count - 1
        while i >= 0 {
            let e = list[i]
            if e.time <= from { break }
            if e.time <= now { count += 1; sum += e.value }
            i -= 1
        }
        return (count, sum)
    }

    /// The times kept for a person, oldest first (the audit trail reads them).
    func times(person: Int) -> [Int64] {
        if inline {
            let base = person * cap!
            return flat[base..<base + Int(counts[person])].map(\.time)
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
        let cap = self.cap!
        if cap == 0 { return }
        let base = person &* cap, n = Int(counts[person]), from = time &- longestWindow
        flat.withUnsafeMutableBufferPointer { f in
            var drop = 0
            while drop < n && f[base + drop].time <= from { drop += 1 }
            if n - drop >= cap { drop = n - cap + 1 }
            if drop > 0 { for k in drop..<n { f[base + k - drop] = f[base + k] } }
            f[base + n - drop] = Entry(time: time, value: value)
            counts[person] = UInt8(n - drop + 1)
        }
    }
}
