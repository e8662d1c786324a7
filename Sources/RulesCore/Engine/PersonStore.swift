/// Per-person state in flat arrays indexed by an interned person id.
final class PersonStore {
    var scores: [Int64] = []
    var lastTime: [Int64] = []
    /// End times of what event rules set, `slotCount` per person.
    /// `Self.none` when not set, `Self.forever` when set until lifted.
    var ends: [Int64] = []
    let slotCount: Int
    var buffers: [WindowBuffer]

    static let none = Int64.min
    static let forever = Int64.max

    init(slotCount: Int, buffers: [WindowBuffer]) {
        self.slotCount = slotCount
        self.buffers = buffers
    }

    func addPerson(score: Int64) {
        scores.append(score)
        lastTime.append(Int64.min)
        for _ in 0..<slotCount { ends.append(Self.none) }
        for i in buffers.indices { buffers[i].addPerson() }
    }
}

/// The times (and values, for `sum`) of one kind of matching event, per
/// person, oldest first. Entries older than the longest window that reads the
/// buffer are dropped; a counted rule's buffer keeps at most N-1 entries.
struct WindowBuffer {
    struct Entry {
        var time: Int64
        var value: Double
    }

    private var entries: [[Entry]] = []
    let longestWindow: Int64
    let cap: Int?

    init(longestWindow: Int64, cap: Int?) {
        self.longestWindow = longestWindow
        self.cap = cap
    }

    mutating func addPerson() { entries.append([]) }

    /// Matching events in `(now − window, now]`, and the sum of their values.
    @inline(__always)
    func aggregate(person: Int, now: Int64, window: Int64) -> (count: Int, sum: Double) {
        let list = entries[person]
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
    func times(person: Int) -> [Int64] { entries[person].map(\.time) }

    mutating func push(person: Int, time: Int64, value: Double) {
        let from = time &- longestWindow
        var drop = 0
        let list = entries[person]
        while drop < list.count && list[drop].time <= from { drop += 1 }
        if let cap, list.count - drop >= cap { drop = list.count - cap + 1 }
        if drop > 0 { entries[person].removeFirst(min(drop, list.count)) }
        if cap == 0 { return }
        entries[person].append(Entry(time: time, value: value))
    }
}
