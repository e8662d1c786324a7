import RulesCore

/// A worker's changed report lines on their way to Redis: each person's
/// latest line, in their partition's hash `NAME:state:{K}` (a line gone
/// from the report is deleted from it). As bodies are applied (replayed
/// ones too), the people whose lines changed are marked, under the
/// engine's lock; their lines are written out when the reader takes them,
/// as published then: a person changed by many batches between two takes
/// is written once, with their latest line.
package final class StateWrites: @unchecked Sendable {
    private let source: StreamSource
    private let lock = Lock()

    /// People marked in the shares of one policy: by share, their numbers
    /// in its engine, each once.
    private struct Generation {
        let shares: [PublishedLines.Share]
        let renderer: LineRenderer
        var marked: [Marked]
        var count: Int { marked.reduce(0) { $0 + $1.people.count } }
    }

    /// A set of people's numbers: a bit each, and the list of those set.
    private struct Marked {
        var bits: [UInt64] = []
        var people: [Int32] = []

        mutating func insert(_ p: Int) {
            let word = p >> 6, bit = UInt64(1) << UInt64(p & 63)
            if word >= bits.count { bits += [UInt64](repeating: 0, count: max(word + 1 - bits.count, bits.count)) }
            guard bits[word] & bit == 0 else { return }
            bits[word] |= bit
            people.append(Int32(p))
        }

        mutating func removeAll() {
            for p in people { bits[Int(p) >> 6] = 0 }
            people.removeAll(keepingCapacity: true)
        }

        /// `body` for each person in the set, in the order of their numbers
        /// — the order their data lies in memory: read in the order they
        /// were marked (the stream's), each person's published line and id
        /// was a cache miss, and rendering 100,000 lines took 54 ms.
        func forEachInOrder(_ body: (Int) -> Void) {
            if people.count < bits.count {
                // Few set: their numbers sorted cost less than every word.
                for p in people.sorted() { body(Int(p)) }
                return
            }
            for (w, word) in bits.enumerated() where word != 0 {
                var rest = word
                while rest != 0 {
                    body(w << 6 | rest.trailingZeroBitCount)
                    rest &= rest - 1
                }
            }
        }
    }

    @exclusivity(unchecked) private var current: Generation? = nil
    /// Lines of an earlier policy's people, written out when the policy
    /// changed: they go before the current ones.
    @exclusivity(unchecked) private var earlier = RedisBatch()
    @exclusivity(unchecked) private var earlierPeople = 0
    /// People taken whose writing Redis has not yet confirmed.
    @exclusivity(unchecked) private var inFlight = 0
    /// Lines set or deleted that Redis confirmed (`/metrics`).
    @exclusivity(unchecked) private var confirmed = 0

    package init(source: StreamSource) {
        self.source = source
    }

    private func key(_ k: Int) -> [UInt8] { Array(source.address.stateHash(k).utf8) }

    /// Marks the people of `changes` (`changes.lists[k]`: those of
    /// `shares[k]`). Shares other than the last ones marked are a new
    /// policy's: the people marked before are written out first, as the
    /// old policy left them.
    package func add(_ changes: MergedChanges, shares: [PublishedLines.Share]) {
        guard !changes.isEmpty, let format = changes.format else { return }
        lock.locked {
            if let current, !current.shares.elementsEqual(shares, by: ===) {
                earlierPeople += current.count
                render(current, into: &earlier)
                self.current = nil
            }
            if current == nil {
                current = Generation(shares: shares, renderer: LineRenderer(format), marked: Array(repeating: Marked(), count: shares.count))
            }
            for (k, list) in changes.lists.enumerated() {
                for c in 0..<list.count { current!.marked[k].insert(list.view(c).index) }
            }
        }
    }

    /// People whose latest line is not yet confirmed in Redis (`GET
    /// /v1/health`).
    package var unwritten: Int { lock.locked { (current?.count ?? 0) + earlierPeople + inFlight } }

    /// The commands that write every marked person's line as published now
    /// (then no longer marked; in flight until `confirm`). Taken under the
    /// engine's lock: the lines are read from the engines' published shares.
    package func take() -> LineWrites? {
        lock.locked {
            let people = (current?.count ?? 0) + earlierPeople
            guard people > 0 else { return nil }
            var batch = earlier
            earlier = RedisBatch()
            if let generation = current {
                render(generation, into: &batch)
                for k in generation.marked.indices { current!.marked[k].removeAll() }
            }
            inFlight += people
            earlierPeople = 0
            return LineWrites(batch: batch, people: people)
        }
    }

    /// Redis ran the commands of lines taken for `people`.
    package func confirm(_ people: Int) {
        lock.locked {
            confirmed += people
            inFlight -= people
        }
    }

    /// Lines set or deleted in the hashes so far, as Redis confirmed.
    package var written: Int { lock.locked { confirmed } }

    /// Each marked person's line (or its deletion) into `batch`: per
    /// partition one `HDEL` of those gone, one `HSET` of the others.
    private func render(_ generation: Generation, into batch: inout RedisBatch) {
        let first = source.partitions.lowerBound
        var sets = [RESPWriter](repeating: RESPWriter(), count: source.partitions.count)
        var setCounts = [Int](repeating: 0, count: sets.count)
        var gone = [RESPWriter](repeating: RESPWriter(), count: sets.count)
        var goneCounts = setCounts
        for (k, share) in generation.shares.enumerated() {
            generation.marked[k].forEachInOrder { p in
                generation.renderer.published(p, of: share) { id, line in
                    let partition = Partitioning.partition(of: UnsafeRawBufferPointer(id), among: source.count)
                    guard source.partitions.contains(partition) else { return }  // not this worker's: never applied here
                    let i = partition - first
                    if let line {
                        sets[i].argument(UnsafeRawBufferPointer(id))
                        sets[i].argument(UnsafeRawBufferPointer(line))
                        setCounts[i] += 1
                    } else {
                        gone[i].argument(UnsafeRawBufferPointer(id))
                        goneCounts[i] += 1
                    }
                }
            }
        }
        for (i, partition) in source.partitions.enumerated() {
            let key = key(partition)
            for (command, arguments, count) in [("HDEL", gone[i], goneCounts[i]), ("HSET", sets[i], setCounts[i] * 2)] where count > 0 {
                batch.writer.header(2 + count)
                batch.writer.argument(command)
                batch.writer.argument(key)
                arguments.bytes.withUnsafeBytes { batch.writer.raw($0) }
                batch.endCommand(slot: KeySlot.of(key))
            }
        }
    }
}

/// Commands that write changed lines, and how many people's lines they are.
package struct LineWrites {
    var batch: RedisBatch
    var people: Int

    mutating func add(_ more: LineWrites) {
        if batch.isEmpty { batch = more.batch } else { batch.append(more.batch) }
        people += more.people
    }
}
