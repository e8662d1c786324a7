import MemoryHints
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whose report line a body of stream lines changes, and to what: the
/// service's change feed (`GET /v1/changes`, docs/SERVICE.md).
///
/// A report line is what `rules run` would print now, as of the latest
/// event time. It changes when a line of the body names the person, and
/// also with no event of theirs, as the clock moves: a timed effect ends,
/// or a window entry leaves a window that reads it. Those times are kept
/// in a queue, one live entry per person, so that a body costs what it
/// names and what comes due, never a look at everyone.
///
/// A person's line before and after is made by the report's own writer,
/// as of the clock before and after the body: the change is exactly the
/// difference between two `GET /v1/people/ID` answers.
package final class ReportChanges {
    private let engine: Engine
    private let writer: ReportWriter
    /// (time, person): the person's line may change by then. Stale entries
    /// (a person woken earlier since) are skipped when they come up.
    @exclusivity(unchecked) private var due = WakeQueue()
    /// By person, the time of their live entry in `due` (`Int64.max`:
    /// none). Raw memory the tracker owns (grown by doubling), as are
    /// `current` and the windows: the loop over a body's people does no
    /// reference counting.
    @exclusivity(unchecked) private var wakes = UnsafeMutablePointer<Int64>.allocate(capacity: 0)
    @exclusivity(unchecked) private var wakeCapacity = 0
    /// The people this body looks at, as a set (open addressing, -1
    /// empty), so that each is looked at once: sized by the body, not by
    /// everyone, and emptied slot by slot after it.
    @exclusivity(unchecked) private var lookSet = UnsafeMutableBufferPointer<Int32>.allocate(capacity: 1024)
    /// What was published for each person, which a body's line states are
    /// compared with, exactly: a line is written only when it changed.
    /// Each body's changes are published into it (`PublishedLines.update`,
    /// or `publish` when there are no lookups) before the next body.
    package let share: PublishedLines.Share
    /// One person's line state as of now, while it is compared.
    private let current: UnsafeMutableBufferPointer<UInt64>
    /// People in `wakes`.
    @exclusivity(unchecked) private var people = 0
    /// Scratch, kept between bodies: whom this body looks at; the changed
    /// ids and lines, one after the other, and where each is.
    @exclusivity(unchecked) private var look: [Int] = []
    @exclusivity(unchecked) private var found: Found
    /// How this tracker's line states read as text.
    package let format: LineFormat

    /// By buffer, the windows that read it, shortest first: all of them one
    /// buffer after another, and where each buffer's start.
    private let flatWindows: UnsafeMutableBufferPointer<Int64>
    private let windowStarts: [Int]

    deinit {
        wakes.deallocate()
        lookSet.deallocate()
        current.deallocate()
        flatWindows.deallocate()
        found.deallocate()
    }

    /// Stale entries `due` may hold beyond twice the live ones before it
    /// is made again (tests give a large negative number: made again at
    /// every push).
    private let queueSlack: Int

    /// People kept for the next look after held bodies (`hold`) before they
    /// are folded into its set (tests give 1: at every held body).
    private let foldAt: Int

    package init(engine: Engine, queueSlack: Int = 4096, foldHeldAt: Int = 1 << 20) {
        self.queueSlack = queueSlack
        foldAt = max(1, foldHeldAt)
        self.engine = engine
        writer = ReportWriter(program: engine.program, personKey: engine.personKey, capacity: 4096)
        let windows = engine.program.policy.bufferReadWindows
        lookSet.initialize(repeating: -1)
        share = PublishedLines.Share(engine: engine, writer: writer)
        current = .allocate(capacity: writer.stateWords)
        current.initialize(repeating: 0)
        windowStarts = [0] + windows.reduce(into: []) { $0.append(($0.last ?? 0) + $1.count) }
        flatWindows = .allocate(capacity: max(1, windowStarts.last!))
        _ = flatWindows.initialize(from: windows.joined())
        format = LineFormat(program: engine.program, personKey: engine.personKey, stateWords: writer.stateWords)
        found = Found(stateWords: writer.stateWords, format: format)
        engine.touched = []
    }

    /// Applies a body (`apply` runs it through the engine) and returns the
    /// people whose line changed, in byte order of their ids.
    package func applying(_ apply: () -> Void) -> ChangeList {
        apply()
        guard let now = engine.clock else { return ChangeList([]) }
        return changes(now: now)
    }

    /// The people whose line changed since the last call, in byte order of
    /// their ids, as of `now`: `look(now:)` and `settle(now:)` at once.
    package func changes(now: Int64) -> ChangeList {
        look(now: now)
        return settle(now: now)
    }

    /// After a body whose changes are not looked for now (a worker's held
    /// batch, `SourcedBatch.publishes`): the people its lines reached stay
    /// for the next `look`. The engine keeps one entry per event; past
    /// `foldAt` of them (8 bytes each) they are folded into the look's set,
    /// each person once — however many batches are held, the memory is
    /// bounded by the people, not the events.
    package func hold() {
        guard var touched = engine.touched, touched.count >= foldAt else { return }
        engine.touched = nil  // the list's only owner: emptied in place
        for p in touched { mark(p) }
        touched.removeAll(keepingCapacity: true)
        engine.touched = touched
    }

    /// The first half of `changes`, for one share of the people (the
    /// service's shards) right after it applied its lines, while their data
    /// is in cache and before the other shares are done: the people the
    /// lines reached and those whom time reached, looked at as of `now`,
    /// this share's own clock. The latest clock of all shares is known only
    /// once all are done; `settle` then looks again at the few whose line
    /// can change between the two (their wake comes by then).
    package func look(now: Int64) {
        // Whom the body's lines reached (the engine kept them as it went)…
        var touched = engine.touched ?? []
        engine.touched = nil
        grow(engine.people.count - 1)
        for (k, p) in touched.enumerated() {
            if k + Prefetch.stateDistance < touched.count { prefetchTracked(touched[k + Prefetch.stateDistance]) }
            mark(p)
        }
        touched.removeAll(keepingCapacity: true)
        engine.touched = touched
        // …and those whom time alone reached.
        while let p = nextDue(by: now) { mark(p) }
        found.removeAll()
        // Each person's state is a cache miss (they were applied a body
        // ago, and their window entries maybe never): asked for ahead, as
        // the report does.
        let order = look
        look = []
        for k in order.indices {
            engine.prefetchForReport(order, k)
            if k + Prefetch.reportSecondDistance < order.count { prefetchTracked(order[k + Prefetch.reportSecondDistance]) }
            let p = order[k]
            compare(p, at: now)
            reschedule(p, after: now)
        }
        look = order
        clearLookSet()
        look.removeAll(keepingCapacity: true)
        found.sort()
        lookedAt = now
    }

    /// The changes `look` found, as of `now` (no earlier than its time):
    /// a person whose line can change after the look's time and by `now`
    /// has a wake by `now` (`reschedule`), so exactly those are looked at
    /// again — anyone else's line is the same at both times.
    package func settle(now: Int64) -> ChangeList {
        if let lookedAt, now > lookedAt {
            var late: [Int] = []
            while let p = nextDue(by: now) { late.append(p) }
            if !late.isEmpty {
                // Their line as of the look is replaced by their line now.
                found.drop(people: Set(late))
                for p in late {
                    compare(p, at: now)
                    reschedule(p, after: now)
                }
                found.sort()
                settledLate += late.count
            }
        }
        lookedAt = nil
        return found.list()
    }

    /// The time of the last `look` not yet settled.
    private var lookedAt: Int64? = nil
    /// People `settle` looked at again (tests: the path is taken).
    package private(set) var settledLate = 0

    /// The next person whose live wake is due by `time`, taken off the
    /// queue (stale entries are skipped).
    private func nextDue(by time: Int64) -> Int? {
        while let (wake, p) = due.peek(), wake <= time {
            due.pop()
            guard wakeTime(p) == wake else { continue }
            setWake(p, .max)
            return p
        }
        return nil
    }

    /// Asks for person `p`'s wake time and published line state.
    @inline(__always)
    private func prefetchTracked(_ p: Int) {
        rules_prefetch(wakes + p)
        share.prefetch(p)
    }

    @inline(__always)
    private func wakeTime(_ p: Int) -> Int64 { wakes[p] }

    @inline(__always)
    private func setWake(_ p: Int, _ time: Int64) {
        if wakes[p] == .max { liveWakes += 1 }
        if time == .max { liveWakes -= 1 }
        wakes[p] = time
    }

    /// People with a live entry in `due`.
    @exclusivity(unchecked) private var liveWakes = 0

    /// Adds person `p` to this body's look, once.
    @inline(__always)
    private func mark(_ p: Int) {
        if 2 * (look.count + 1) > lookSet.count { growLookSet() }
        let mask = lookSet.count - 1
        var i = Int(UInt32(truncatingIfNeeded: p) &* 0x9E37_79B1) & mask
        while lookSet[i] >= 0 {
            if lookSet[i] == Int32(p) { return }
            i = (i + 1) & mask
        }
        lookSet[i] = Int32(p)
        look.append(p)
    }

    private func growLookSet() {
        lookSet.deallocate()
        lookSet = .allocate(capacity: 2 * lookSet.count)
        lookSet.initialize(repeating: -1)
        let mask = lookSet.count - 1
        for p in look {
            var i = Int(UInt32(truncatingIfNeeded: p) &* 0x9E37_79B1) & mask
            while lookSet[i] >= 0 { i = (i + 1) & mask }
            lookSet[i] = Int32(p)
        }
    }

    /// Empties the set of a body's look (only the slots it used).
    private func clearLookSet() {
        let mask = lookSet.count - 1
        for p in look {
            var i = Int(UInt32(truncatingIfNeeded: p) &* 0x9E37_79B1) & mask
            while lookSet[i] != Int32(p) { i = (i + 1) & mask }
            lookSet[i] = -1
        }
    }

    /// Person `p`'s line as of `time` against the one last published: kept
    /// in `found` when it differs (and then true).
    @discardableResult
    private func compare(_ p: Int, at time: Int64) -> Bool {
        let present = evaluate(p, at: time)
        let state = current.baseAddress!, words = current.count
        var same = true
        if let published = share.state(p) {
            for w in 0..<words where published[w] != state[w] { same = false; break }
        } else {
            same = !present  // never published: a change once they are in the report
        }
        if same { return false }
        found.append(engine.people.key(p), person: p, state: present ? UnsafeBufferPointer(current) : nil)
        return true
    }

    /// Person `p`'s line state as of `time` (zeros when they are not in
    /// the report), into `current`; whether they are in the report.
    @inline(__always)
    private func evaluate(_ p: Int, at time: Int64) -> Bool {
        let present = engine.isPresent(p)
        if present { writer.lineState(engine, person: p, at: time, into: current.baseAddress!) }
        else { current.update(repeating: 0) }
        return present
    }

    /// `current` published for person `p` at once (a start: nobody reads
    /// the share yet).
    private func publishCurrent(_ p: Int, present: Bool) {
        share.set(p, present ? UnsafeBufferPointer(current) : nil)
    }

    /// Publishes a body's changes into `share` when no `PublishedLines`
    /// does (a tracker that only feeds: tests, tools).
    package func publish(_ changes: ChangeList) {
        for k in 0..<changes.count {
            let change = changes.view(k)
            share.set(change.index, change.state)
        }
    }

    /// The report line (no newline) last published for person `p`, nil when
    /// none: what a policy change compares with the new policy's line.
    private func shownLine(_ p: Int) -> [UInt8]? {
        guard let state = share.state(p), writer.isInReport(state) else { return nil }
        writer.removeAll()
        engine.people.withKey(p) { writer.appendLine(id: $0, state: state) }
        writer.dropLast()
        return Array(UnsafeRawBufferPointer(writer.bytes))
    }

    /// Wake times for people up to `p` (new ones: no wake).
    private func grow(_ p: Int) {
        guard p >= people else { return }
        if wakeCapacity <= p {
            wakeCapacity = max(p + 1, 2 * wakeCapacity, 1024)  // doubling: no copy per body
            let bigger = UnsafeMutablePointer<Int64>.allocate(capacity: wakeCapacity)
            bigger.update(from: wakes, count: people)
            wakes.deallocate()
            wakes = bigger
        }
        (wakes + people).initialize(repeating: .max, count: p + 1 - people)
        people = p + 1
    }

    /// Starts on an engine restored from a checkpoint: what was published
    /// for each person is their line now (after each body, every line that
    /// changed was published), and everyone is queued for their next
    /// change by time, as of `now` (as `changes`). Fills `share`, which is
    /// not read before it is put in force (`PublishedLines.install`).
    package func resume(now: Int64?) {
        guard let now else { return }
        for p in 0..<engine.people.count {
            grow(p)
            publishCurrent(p, present: evaluate(p, at: now))
            reschedule(p, after: now)
        }
    }

    /// Takes over from the tracker of the engine this one's replaced (a
    /// policy change; the same share of the people): everyone's line as
    /// of `now` (as `changes`) published in `share`, as `resume` does.
    /// Returns whose line the change changed (their lines compared as
    /// text: the two policies' line states do not mean the same), and
    /// queues everyone for the next change time alone makes.
    package func adopt(_ old: ReportChanges?, now: Int64?) -> ChangeList {
        guard let now else { return ChangeList([]) }
        found.removeAll()
        for p in 0..<engine.people.count {
            grow(p)
            let before = old.flatMap { old in engine.people.withKey(p) { old.engine.people.find($0) }.flatMap { old.shownLine($0) } }
            let present = evaluate(p, at: now)
            publishCurrent(p, present: present)
            engine.people.withKey(p) { id in
                guard present else {
                    if before != nil { found.append(id, person: p, state: nil) }
                    return
                }
                writer.removeAll()
                writer.appendLine(id: id, state: current.baseAddress!)
                writer.dropLast()
                // A line that reads the same is no change for the feed.
                if before.map({ $0.elementsEqual(UnsafeRawBufferPointer(writer.bytes)) }) != true {
                    found.append(id, person: p, state: UnsafeBufferPointer(current))
                }
            }
            reschedule(p, after: now)
        }
        found.sort()
        return found.list()
    }

    /// Queues the person for the next time after `time` at which their line
    /// can change by time alone, unless an earlier wake is queued already
    /// (it looks again then, and queues the next).
    private func reschedule(_ p: Int, after time: Int64) {
        guard let next = nextChange(of: p, after: time), next < wakeTime(p) else { return }
        setWake(p, next)
        due.push(next, p)
        // A wake moved earlier leaves its old entry behind, to be skipped
        // when it comes up, maybe a year on: when those are most of the
        // queue, it is made again from the live ones (memory per person).
        if due.count > 2 * liveWakes + queueSlack { rebuildDue() }
    }

    private func rebuildDue() {
        var live: [(time: Int64, person: Int)] = []
        live.reserveCapacity(liveWakes)
        for p in 0..<people where wakes[p] != .max { live.append((wakes[p], p)) }
        due = WakeQueue(live)
    }

    /// The earliest time after `time` at which the person's line can change
    /// with no event of theirs: a timed effect ends (it is in force while
    /// `end > now`), or an entry leaves a window that reads its buffer (it
    /// counts while `entry > now - window`). nil when nothing will.
    private func nextChange(of p: Int, after time: Int64) -> Int64? {
        guard engine.program.hasTimers else { return nextChangeNow(of: p, after: time) }
        // With the deadlines due by `time` fired, as the line was read: what
        // they set ends, and an `every` rule's next period is a deadline
        // too (a deadline is a change time like an end: its slot's).
        return engine.asOf(p, time) { nextChangeNow(of: p, after: time) }
    }

    private func nextChangeNow(of p: Int, after time: Int64) -> Int64? {
        let store = engine.store
        var next = Int64.max
        for slot in 0..<store.slotCount {
            let end = store.end(p, slot)
            if end > time && end != PersonStore.forever { next = min(next, end) }
        }
        for b in 0..<windowStarts.count - 1 {
            let from = windowStarts[b], to = windowStarts[b + 1]
            if from == to { continue }
            store.buffer(b) { buffer in
                buffer.withEntries(person: p) { entries in
                    for entry in entries {
                        for w in from..<to {
                            let leaves = Timestamp.adding(entry.time, flatWindows[w])
                            if leaves > time { next = min(next, leaves); break }
                        }
                    }
                }
            }
        }
        return next == .max ? nil : next
    }
}

/// The changed lines of one body as they are found: ids in one buffer,
/// line states in another, then handed out sorted by id, as a
/// `ChangeList`. The buffers are plain memory (a change is appended with
/// two copies, no array's checks), freed by `deallocate`.
private struct Found {
    private var bytes = PlainBuffer<UInt8>()
    private var items: [ChangeList.Item] = []
    /// The changed people's line states, `stateWords` each.
    private var states = PlainBuffer<UInt64>()
    let stateWords: Int
    let format: LineFormat

    init(stateWords: Int, format: LineFormat) {
        self.stateWords = stateWords
        self.format = format
    }

    mutating func removeAll() {
        bytes.removeAll()
        items.removeAll(keepingCapacity: true)
        states.removeAll()
    }

    func deallocate() {
        bytes.deallocate()
        states.deallocate()
        keyed.deallocate()
        spare.deallocate()
        counts.deallocate()
    }

    /// A changed person: their id, number, and line state (nil: they left
    /// the report).
    mutating func append(_ id: UnsafeBufferPointer<UInt8>, person: Int, state: UnsafeBufferPointer<UInt64>?) {
        let start = bytes.count
        bytes.append(contentsOf: id)
        items.append(ChangeList.Item(start: start, idEnd: bytes.count, lineEnd: state == nil ? -1 : bytes.count, state: states.count, person: person))
        if let state { states.append(contentsOf: state) }
    }

    /// An item's place and its id's first eight bytes as one number.
    private struct Keyed { var key: UInt64, item: Int }
    /// `sort`'s scratch, kept between bodies: the keyed items twice (a
    /// pass reads one and writes the other), the counts of a pass, and
    /// the items in their new order.
    private var keyed = PlainBuffer<Keyed>(), spare = PlainBuffer<Keyed>()
    private let counts = UnsafeMutablePointer<Int>.allocate(capacity: 256)
    private var sorted: [ChangeList.Item] = []

    /// Drops the changes of `people` (their ids and states stay in the
    /// buffers, unreferenced, until `removeAll`).
    mutating func drop(people: Set<Int>) {
        items.removeAll { people.contains($0.person) }
    }

    /// The changes so far, put in byte order of their ids: by the ids'
    /// first eight bytes as one number (a radix sort), then by the rest
    /// where those are equal (most ids differ in them).
    mutating func sort() {
        let n = items.count
        guard n > 1 else { return }
        let base = UnsafePointer(bytes.base)
        keyed.resize(to: n)
        spare.resize(to: n)
        for k in 0..<n { keyed.base[k] = Keyed(key: ByteTable.sortWord(base + items[k].start, items[k].idEnd - items[k].start), item: k) }
        let order = Self.radixSort(keyed.base, spare.base, n, counts)
        var from = 0
        while from < n {
            var to = from + 1
            while to < n && order[to].key == order[from].key { to += 1 }
            if to - from > 1 {
                var same = UnsafeMutableBufferPointer(start: order + from, count: to - from)
                same.sort { a, b in
                    let x = items[a.item], y = items[b.item]
                    let c = memcmp(base + x.start, base + y.start, min(x.idEnd - x.start, y.idEnd - y.start))
                    return c != 0 ? c < 0 : x.idEnd - x.start < y.idEnd - y.start
                }
            }
            from = to
        }
        sorted.removeAll(keepingCapacity: true)
        for k in 0..<n { sorted.append(items[order[k].item]) }
        swap(&items, &sorted)
    }

    /// Sorts `n` keyed items at `a` by key (`b`: as many, scratch), least
    /// significant byte first, a pass of counting per byte (a body's few
    /// hundred changes: no comparisons at all); where the result is.
    /// Bytes every key shares are skipped, found in one pass first (ids
    /// share their first bytes, `c00…`): no counting for them.
    private static func radixSort(_ a: UnsafeMutablePointer<Keyed>, _ b: UnsafeMutablePointer<Keyed>, _ n: Int,
                                  _ counts: UnsafeMutablePointer<Int>) -> UnsafeMutablePointer<Keyed> {
        let first = a[0].key
        var varying: UInt64 = 0
        for k in 0..<n { varying |= a[k].key ^ first }
        var from = a, to = b
        for shift in Swift.stride(from: UInt64(0), to: 64, by: 8) where (varying >> shift) & 0xFF != 0 {
            counts.update(repeating: 0, count: 256)
            for k in 0..<n { counts[Int(truncatingIfNeeded: (from[k].key >> shift) & 0xFF)] += 1 }
            var at = 0
            for d in 0..<256 { (counts[d], at) = (at, at + counts[d]) }
            for k in 0..<n {
                let item = from[k], d = Int(truncatingIfNeeded: (item.key >> shift) & 0xFF)
                to[counts[d]] = item
                counts[d] += 1
            }
            swap(&from, &to)
        }
        return from
    }

    /// The changes as a list (in the order they are in: `sort` first), and
    /// this emptied for the next body.
    mutating func list() -> ChangeList {
        let list = items.withUnsafeBufferPointer {
            ChangeList(bytes: UnsafeBufferPointer(start: bytes.base, count: bytes.count), states: UnsafeBufferPointer(start: states.base, count: states.count),
                       items: $0, stateWords: stateWords, format: format)
        }
        removeAll()
        return list
    }
}

/// A binary min-heap of (time, person).
private struct WakeQueue {
    private var items: [(time: Int64, person: Int)] = []

    init() {}

    /// A queue of `items` (a heap made in place, bottom up).
    init(_ items: [(time: Int64, person: Int)]) {
        self.items = items
        var k = items.count / 2
        while k > 0 {
            k -= 1
            siftDown(k)
        }
    }

    var count: Int { items.count }

    func peek() -> (Int64, Int)? { items.first.map { ($0.time, $0.person) } }

    mutating func push(_ time: Int64, _ person: Int) {
        items.append((time, person))
        var k = items.count - 1
        while k > 0 {
            let parent = (k - 1) / 2
            guard items[k].time < items[parent].time else { break }
            items.swapAt(k, parent)
            k = parent
        }
    }

    mutating func pop() {
        let last = items.removeLast()
        guard !items.isEmpty else { return }
        items[0] = last
        siftDown(0)
    }

    private mutating func siftDown(_ start: Int) {
        var k = start
        while true {
            let l = 2 * k + 1, r = l + 1
            var least = k
            if l < items.count && items[l].time < items[least].time { least = l }
            if r < items.count && items[r].time < items[least].time { least = r }
            if least == k { return }
            items.swapAt(k, least)
            k = least
        }
    }
}
