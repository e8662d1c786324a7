import Dispatch

/// The report of a parallel run: each engine renders its own people, in
/// byte order of their ids, on a thread of its own, and the calling thread
/// merges the lines into one byte order as they come.
///
/// Lines travel in small batches through a few reused buffers per engine,
/// so rendering, merging and writing overlap, and the memory written is
/// the same few hundred KiB over and over (rendering each engine's whole
/// part first cost a page fault every 30 lines and left the merge to run
/// alone at the end; docs/PERFORMANCE.md).
extension Engine {
    static func writeMerged(_ engines: [Engine], at time: Int64, to out: (UnsafeRawBufferPointer) -> Void) {
        let channels = engines.map { ReportChannel(engine: $0) }
        for channel in channels { channel.startRendering(at: time) }
        var batches = channels.map { $0.next() }
        var next = [Int](repeating: 0, count: engines.count)
        var output = OutputBuffer()
        defer { output.deallocate() }
        /// Whether engine `e`'s next person's id sorts before engine `f`'s:
        /// their first eight bytes decide, unless they are equal. (Given
        /// the state, not capturing it: a captured `var` is checked for
        /// exclusive access at run time on every use.)
        func comesFirst(_ e: Int, _ f: Int, _ batches: [ReportBatch?], _ next: [Int]) -> Bool {
            let x = batches[e]!, y = batches[f]!
            let a = x.keys[next[e]], b = y.keys[next[f]]
            if a != b { return a < b }
            return engines[e].people.precedes(x.people[next[e]], engines[f].people, y.people[next[f]])
        }
        while true {
            var best = -1
            for e in engines.indices where batches[e] != nil {
                if best < 0 || comesFirst(e, best, batches, next) { best = e }
            }
            if best < 0 { break }
            let batch = batches[best]!
            let k = next[best]
            output.append(batch.line(k), out)
            next[best] += 1
            if next[best] == batch.people.count {
                channels[best].done(with: batch)
                batches[best] = channels[best].next()
                next[best] = 0
            }
        }
        output.flush(out)
        for channel in channels { channel.wait() }
    }
}

/// The rendered lines of some people of one engine, in id order.
final class ReportBatch {
    let lines: ReportWriter
    @exclusivity(unchecked) var people: [Int] = []
    /// `keys[k]`: the k-th person's `ByteTable.sortKey`, which decides most
    /// comparisons of the merge.
    @exclusivity(unchecked) var keys: [UInt64] = []
    /// `ends[k]`: where the k-th line ends in `lines`.
    @exclusivity(unchecked) var ends: [Int] = []

    init(program: Program, personKey: PersonKey, people capacity: Int) {
        lines = ReportWriter(program: program, personKey: personKey, capacity: 160 * capacity)
        people.reserveCapacity(capacity)
        keys.reserveCapacity(capacity)
        ends.reserveCapacity(capacity)
    }

    func line(_ k: Int) -> UnsafeRawBufferPointer {
        let start = k == 0 ? 0 : ends[k - 1]
        return UnsafeRawBufferPointer(rebasing: lines.bytes[start..<ends[k]])
    }

    func clear() {
        lines.removeAll()
        people.removeAll(keepingCapacity: true)
        keys.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
    }
}

/// One engine's rendering thread and the batches it hands over: a ring of
/// `slots` batches; the renderer fills them in order and waits for a free
/// one, the merger takes them in the same order and gives them back.
/// An empty batch ends the engine's part.
final class ReportChannel: @unchecked Sendable {
    static let slots = 4
    static let peoplePerBatch = 2048

    private let engine: Engine
    private let ring: [ReportBatch]
    private let filled = DispatchSemaphore(value: 0)
    // Starts at 0 and is signalled once per slot: libdispatch refuses to
    // dispose of a semaphore left below the value it was created with.
    private let free = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    @exclusivity(unchecked) private var taken = 0  // batches the merger has taken (merger thread only)

    init(engine: Engine) {
        self.engine = engine
        ring = (0..<Self.slots).map { _ in ReportBatch(program: engine.program, personKey: engine.personKey, people: Self.peoplePerBatch) }
        for _ in ring { free.signal() }
    }

    /// Renders the engine's people as of `time` on a new thread. The engine
    /// belongs to that thread until `wait()` returns.
    func startRendering(at time: Int64) {
        startThread { [self] in
            render(at: time)
            finished.signal()
        }
    }

    private func render(at time: Int64) {
        let order = engine.sortedPeople()
        var start = 0, slot = 0
        while true {
            free.wait()
            let batch = ring[slot]
            batch.clear()
            let end = min(order.count, start + Self.peoplePerBatch)
            for k in start..<end {
                engine.prefetchForReport(order, k)
                batch.lines.append(engine, person: order[k], at: time)
                batch.people.append(order[k])
                batch.keys.append(engine.people.sortKey(order[k]))
                batch.ends.append(batch.lines.count)
            }
            filled.signal()
            if end == start { return }  // the empty batch that ends the part
            slot = (slot + 1) % Self.slots
            start = end
        }
    }

    /// The next batch, waiting for it; nil once the engine's part is over.
    func next() -> ReportBatch? {
        filled.wait()
        let batch = ring[taken % Self.slots]
        taken += 1
        return batch.people.isEmpty ? nil : batch
    }

    /// Gives a merged batch back to the renderer.
    func done(with batch: ReportBatch) { free.signal() }

    func wait() { finished.wait() }
}

/// Collects small writes into 64 KiB ones.
private struct OutputBuffer {
    private let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
    private var count = 0

    func deallocate() { storage.deallocate() }

    mutating func append(_ bytes: UnsafeRawBufferPointer, _ out: (UnsafeRawBufferPointer) -> Void) {
        if count + bytes.count > storage.count {
            flush(out)
            if bytes.count > storage.count { out(bytes); return }
        }
        UnsafeMutableRawBufferPointer(rebasing: storage[count..<(count + bytes.count)]).copyMemory(from: bytes)
        count += bytes.count
    }

    mutating func flush(_ out: (UnsafeRawBufferPointer) -> Void) {
        if count > 0 { out(UnsafeRawBufferPointer(rebasing: storage[0..<count])) }
        count = 0
    }
}
