import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `rules run --jobs N`: people are split over N engines by a stable hash of
/// their id, each engine on its own thread. The reader stays sequential: it
/// cuts the input into blocks of whole lines and gives every block to every
/// worker. Each block is cut again into segments, two per worker; each
/// segment is scanned once, by the first worker to claim it, which lists
/// each line under the worker that owns its person. Each worker then
/// applies its own lines of every segment in stream order, and numbers them
/// by the segments' line counts, so line numbers are exact.
/// Because a person's events all go to one engine, in stream order, every
/// person's result is the one a single engine computes. The reports are
/// merged in byte order; rejections are reported in line order.
///
/// A worker scans a block while the others may still be scanning the one
/// before; it applies that earlier block once every segment of it is
/// scanned (it nearly always is), so scanning and applying overlap and
/// every line is scanned once, on the two cores. Scanning whole blocks in
/// the reader instead left a third thread competing for two cores, and
/// every worker scanning every line did the work twice (docs/PERFORMANCE.md).
package enum ParallelStream {
    public struct Result {
        public var engines: [Engine]
        public var summary: RunSummary
    }

    /// `resume`: a checkpoint to start from (each person's state goes to the
    /// worker that owns them). `maxRejects`: stop at the rejection that goes
    /// over it, as one thread would (the same line; the workers may have
    /// read further, but nothing past that line is reported).
    /// `onProgress` is called with the number of lines applied so far, each
    /// time it passes a multiple of `progressInterval`, from a worker thread.
    public static func run(program: Program, personKey: PersonKey = .citizen, fd: Int32, jobs: Int, asOf: Int64? = nil,
                           corrections: Corrections? = nil, resume: [UInt8]? = nil, maxRejects: Int? = nil,
                           progressInterval: Int = 1 << 20, onProgress: (@Sendable (Int) -> Void)? = nil,
                           onReject: (Rejection, [UInt8]) -> Void) -> Swift.Result<ParallelStream.Result, Checkpoint.Failure> {
        let count = max(1, jobs)
        let rejected = RejectCount()
        let workers = (0..<count).map {
            Worker(program: program, personKey: personKey, asOf: asOf, corrections: corrections, index: $0, of: count, rejected: rejected,
                   progress: $0 == 0 ? onProgress.map { (progressInterval, $0) } : nil)
        }
        if let resume {
            if case .failure(let f) = Checkpoint.restore(resume, into: workers.map(\.engine),
                                                         owner: { Router.bucket($0, count) }) {
                return .failure(f)
            }
        }
        for w in workers { w.start() }
        // The reader cuts the input into blocks of whole lines, which the
        // workers share. Blocks are filled in a few reused buffers of
        // 512 KiB (fresh memory for each would cost a page fault per 4 KiB
        // of input); enough of them that the reader keeps ahead of the
        // workers instead of waiting for a block to come back (6 × 1 MiB
        // left the workers waiting for it).
        // Two segments per worker: a worker that is ahead scans the
        // segments the others have not started (see `Worker.scan`).
        let segments = 2 * count
        let pool = BlockPool(count: 4 * count + 4, size: 1 << 19, segments: segments, workers: count)
        var carry: [UInt8] = []   // the start of a line cut by the last block
        var readError: String? = nil
        var atEnd = false
        while !atEnd {
            // A line longer than half a pooled buffer gets a buffer of its own.
            let pooled = carry.count <= pool.size / 2
            let block = pooled ? pool.take() : Block(capacity: 2 * carry.count, segments: segments, workers: count, pool: nil)
            let storage = block.storage
            _ = storage.initialize(from: carry)
            var filled = carry.count
            carry.removeAll(keepingCapacity: true)
            while filled < storage.count {
                let n = read(fd, storage.baseAddress! + filled, storage.count - filled)
                if n > 0 { filled += n; continue }
                if n < 0 && errno == EINTR { continue }
                if n < 0 { readError = String(cString: strerror(errno)) }
                atEnd = true
                break
            }
            var end = filled  // the block: whole lines, or all that is left
            if !atEnd {
                end = filled
                while end > 0 && storage[end - 1] != 0x0A { end -= 1 }
                carry.append(contentsOf: UnsafeBufferPointer(rebasing: storage[end..<filled]))
            }
            if end == 0 {
                block.recycle()
            } else {
                block.prepare(count: end, users: count)
                for w in workers { w.send(block) }
            }
            if carry.count > LineReader.defaultMaxLineBytes {
                // Too long to keep (as `LineReader` does): read on to its end
                // without holding it; every worker counts it, worker 0
                // rejects it.
                var length = carry.count
                carry.removeAll()
                var chunk = [UInt8](repeating: 0, count: 1 << 20)
                while true {
                    let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 {
                        if n < 0 { readError = String(cString: strerror(errno)) }
                        atEnd = true
                        break
                    }
                    if let nl = chunk[0..<n].firstIndex(of: 0x0A) {
                        length += nl
                        carry = Array(chunk[(nl + 1)..<n])
                        break
                    }
                    length += n
                }
                let skipped = Block(capacity: 1, segments: 0, workers: count, pool: nil)
                skipped.prepare(skippedLineOf: length, users: count)
                for w in workers { w.send(skipped) }
            }
            // Enough rejections already: the lines read so far hold the one
            // that went over the limit.
            if let maxRejects, rejected.value > maxRejects { break }
        }
        for w in workers { w.finish() }
        var summary = RunSummary()
        summary.readError = readError
        var rejections: [(Rejection, [UInt8])] = []
        for w in workers {
            w.wait()
            summary.add(w.summary)
            rejections += w.rejections
        }
        rejections.sort { $0.0.line < $1.0.line }
        if let maxRejects, rejections.count > maxRejects {
            summary.stoppedAtLine = rejections[maxRejects].0.line
            rejections.removeLast(rejections.count - maxRejects - 1)
        }
        for (r, bytes) in rejections { onReject(r, bytes) }
        return .success(Result(engines: workers.map(\.engine), summary: summary))
    }

    /// Writes the merged report of a parallel run.
    public static func writeReport(_ result: Result, asOf: Int64?, to out: (UnsafeRawBufferPointer) -> Void) {
        Engine.writeReport(result.engines, asOf: asOf, to: out)
    }

    public static func evaluationNotes(_ result: Result) -> [String] {
        Engine.evaluationNotes(result.engines)
    }

    /// Whole lines of the input (the last block may end without a
    /// newline), shared by every worker, or, in place of bytes, one line
    /// too long to read (`LineReader.defaultMaxLineBytes`). Blocks and
    /// their buffers are reused: a block goes back to its pool when the last
    /// worker is done with it.
    final class Block: @unchecked Sendable {
        let storage: UnsafeMutableBufferPointer<UInt8>
        /// The length of the line too long to read, when this block is one.
        @exclusivity(unchecked) private(set) var skippedLength: Int?
        /// Segment `s` is `storage[bounds[s]..<bounds[s + 1]]`, whole lines.
        @exclusivity(unchecked) private(set) var bounds: [Int]
        /// What was found in segment `s`; written by the worker that claimed
        /// it only, read by all once `waitScanned()` returns.
        let scans: [SegmentScan]
        private let scanned = DispatchGroup()
        /// The next segment no worker has claimed yet.
        private var unclaimed = 0
        private weak var pool: BlockPool?
        private var users = 0
        private let lock = Lock()

        init(capacity: Int, segments: Int, workers: Int, pool: BlockPool?) {
            storage = .allocate(capacity: capacity)
            bounds = [Int](repeating: 0, count: segments + 1)
            scans = (0..<segments).map { _ in SegmentScan(workers: workers) }
            self.pool = pool
        }

        deinit { storage.deallocate() }

        var segmentCount: Int { scans.count }

        /// Readies the first `count` bytes for the workers: cuts them into
        /// segments at line ends.
        func prepare(count: Int, users: Int) {
            skippedLength = nil
            self.users = users
            let n = segmentCount
            for scan in scans { scan.clear() }
            bounds[0] = 0
            for s in 1..<(n + 1) {
                var cut = s == n ? count : max(bounds[s - 1], s * count / n)
                if cut < count, cut > 0, storage[cut - 1] != 0x0A {
                    let base = storage.baseAddress!
                    cut = memchr(base + cut, 0x0A, count - cut).map { base.distance(to: $0.assumingMemoryBound(to: UInt8.self)) + 1 } ?? count
                }
                bounds[s] = cut
            }
            for _ in 0..<n { scanned.enter() }
            unclaimed = 0
        }

        /// A segment for the calling worker to scan, or nil when every
        /// segment is taken.
        func claimSegment() -> Int? {
            lock.lock()
            defer { lock.unlock() }
            guard unclaimed < segmentCount else { return nil }
            unclaimed += 1
            return unclaimed - 1
        }

        func prepare(skippedLineOf length: Int, users: Int) {
            skippedLength = length
            self.users = users
        }

        /// Called by the worker that claimed a segment when it is scanned.
        func segmentScanned() { scanned.leave() }

        func waitScanned() { scanned.wait() }

        /// Called once by each worker when it has applied the block.
        func release() {
            lock.lock()
            users -= 1
            let last = users == 0
            lock.unlock()
            if last { recycle() }
        }

        /// Back to the pool (or freed, for one of a kind).
        func recycle() { pool?.give(self) }
    }

    /// One segment's lines, listed by the worker that owns each.
    final class SegmentScan {
        /// `lines[w]`: worker `w`'s lines, in order.
        @exclusivity(unchecked) var lines: [[Line]]
        /// Lines in the segment, blank ones included.
        @exclusivity(unchecked) var lineCount = 0
        /// Lines too long to read: number within the segment, and length.
        @exclusivity(unchecked) var tooLong: [(number: Int, length: Int)] = []

        init(workers: Int) { lines = [[Line]](repeating: [], count: workers) }

        func clear() {
            for w in lines.indices { lines[w].removeAll(keepingCapacity: true) }
            lineCount = 0
            tooLong.removeAll()
        }
    }

    /// A line to apply: its place in the block, its number within its
    /// segment (from 0), and its person's hash and id length when the line
    /// starts with the id (`PersonKey.leadingPerson`; length 0 otherwise).
    struct Line {
        var start: Int32
        var end: Int32
        var number: Int32
        var hash: UInt32
        var keyLength: Int32
    }

    /// Reused blocks; `take` waits while all are in use.
    final class BlockPool: @unchecked Sendable {
        let size: Int
        private var free: [Block] = []
        private let lock = Lock()
        private let available: DispatchSemaphore

        init(count: Int, size: Int, segments: Int, workers: Int) {
            self.size = size
            // Starts at 0 and is signalled once per block: libdispatch
            // refuses to dispose of a semaphore left below its first value.
            available = DispatchSemaphore(value: 0)
            free = (0..<count).map { _ in Block(capacity: size, segments: segments, workers: workers, pool: self) }
            for _ in free { available.signal() }
        }

        func take() -> Block {
            available.wait()
            lock.lock(); defer { lock.unlock() }
            return free.removeLast()
        }

        func give(_ block: Block) {
            lock.lock(); free.append(block); lock.unlock()
            available.signal()
        }
    }

    /// Decides which worker owns a line, from its person id: the bytes after
    /// `{"citizen":"` (the person key) when the line starts that way (as
    /// streams usually do), else the id a full parse finds (keeping no
    /// field). A line that does not parse belongs to worker 0, which
    /// rejects it with the reason.
    package struct Router {
        var parser: EventParser
        let count: Int

        package init(program: Program, personKey: PersonKey, count: Int) {
            parser = EventParser(program: program, personKey: personKey)
            self.count = count
        }

        /// Frees the parser's scratch memory (the router is a struct).
        package func deallocate() { parser.deallocate() }

        mutating func owner(of line: UnsafeBufferPointer<UInt8>) -> Int {
            if count == 1 { return 0 }
            if let key = parser.personKey.leadingPerson(line) { return bucket(key) }
            guard case .event(let e) = parser.parse(line, into: nil) else { return 0 }
            return bucket(e.person)
        }

        private func bucket(_ key: UnsafeBufferPointer<UInt8>) -> Int { Self.bucket(key, count) }

        /// Which of `count` workers holds the person `key` (`ByteTable.share`).
        package static func bucket(_ key: UnsafeBufferPointer<UInt8>, _ count: Int) -> Int {
            ByteTable.share(of: key, among: count)
        }

        @inline(__always)
        static func bucket(hash: UInt32, _ count: Int) -> Int { ByteTable.share(hash: hash, among: count) }
    }

    /// Rejections so far, across workers (for stopping early).
    final class RejectCount: @unchecked Sendable {
        private var count = 0
        private let lock = Lock()
        var value: Int { lock.lock(); defer { lock.unlock() }; return count }
        func add() { lock.lock(); count += 1; lock.unlock() }
    }

    /// One engine on its own thread, fed the blocks through a bounded queue.
    final class Worker: @unchecked Sendable {
        let engine: Engine
        @exclusivity(unchecked) private var applier: EventApplier
        @exclusivity(unchecked) private var router: Router
        private let index: Int
        /// The number of the first line of the next block to apply.
        @exclusivity(unchecked) private var nextLine = 1
        private var queue: [Block?] = []
        private let lock = Lock()
        private let items = DispatchSemaphore(value: 0)
        private let room = DispatchSemaphore(value: 8)
        private let done = DispatchSemaphore(value: 0)
        // Written by the worker thread only, read after `wait()`.
        @exclusivity(unchecked) var summary = RunSummary()
        @exclusivity(unchecked) var rejections: [(Rejection, [UInt8])] = []

        private let rejected: RejectCount
        /// Worker 0 only: how often, and whom, to tell the lines applied.
        private let progress: (interval: Int, report: @Sendable (Int) -> Void)?

        private let personKey: PersonKey

        init(program shared: Program, personKey: PersonKey, asOf: Int64?, corrections: Corrections?, index: Int, of count: Int, rejected: RejectCount,
             progress: (interval: Int, report: @Sendable (Int) -> Void)?) {
            self.rejected = rejected
            self.progress = progress
            // Its own compiled program: no node or array is shared between
            // workers, so their reference counts never contend.
            let program = shared.copyForThread()
            engine = Engine(program: program, personKey: personKey)
            if let corrections { engine.enableCorrections(corrections) }
            applier = EventApplier(engine: engine, asOf: asOf)
            router = Router(program: program, personKey: personKey, count: count)
            self.personKey = personKey
            self.index = index
        }

        func start() {
            startThread { [self] in self.loop() }
        }

        func send(_ block: Block) { put(block) }
        func finish() { put(nil) }
        func wait() { done.wait() }

        private func put(_ block: Block?) {
            room.wait()
            lock.lock(); queue.append(block); lock.unlock()
            items.signal()
        }

        private func take() -> Block? {
            items.wait()
            lock.lock(); let b = queue.removeFirst(); lock.unlock()
            room.signal()
            return b
        }

        /// Scans its segment of each block, then applies its lines of the
        /// block before (whose other segments are scanned by then, or soon).
        private func loop() {
            var pending: Block? = nil
            while let block = take() {
                if block.skippedLength == nil {
                    while let segment = block.claimSegment() { scan(segment, of: block) }
                }
                if let pending { applyBlock(pending) }
                pending = block
            }
            if let pending { applyBlock(pending) }
            applier.deallocate()
            router.parser.deallocate()
            done.signal()
        }

        /// Lists the lines of a segment under their owners, and counts them.
        /// Segments go to whichever worker claims them first: one that runs
        /// ahead (the reader shares its core with the other) takes more of
        /// the scanning, and the one behind, less, instead of waiting for
        /// each other at every block.
        private func scan(_ segment: Int, of block: Block) {
            let result = block.scans[segment]
            let count = block.bounds[segment + 1]
            let base = block.storage.baseAddress!
            var start = block.bounds[segment]
            var number: Int32 = 0
            while start < count {
                let newline = memchr(base + start, 0x0A, count - start)
                let end = newline.map { base.distance(to: $0.assumingMemoryBound(to: UInt8.self)) } ?? count
                var lineEnd = end
                if lineEnd > start && base[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                let line = UnsafeBufferPointer(start: base + start, count: lineEnd - start)
                if line.count > LineReader.defaultMaxLineBytes {
                    result.tooLong.append((Int(number), line.count))
                } else if let key = personKey.leadingPerson(line) {
                    let hash = ByteTable.hash(key)
                    result.lines[Router.bucket(hash: hash, router.count)].append(
                        Line(start: Int32(start), end: Int32(lineEnd), number: number, hash: hash, keyLength: Int32(key.count)))
                } else if EventStream.isBlank(line) {
                    summary.blank += 1
                } else {
                    result.lines[router.owner(of: line)].append(
                        Line(start: Int32(start), end: Int32(lineEnd), number: number, hash: 0, keyLength: 0))
                }
                number += 1
                start = end + 1
            }
            result.lineCount = Int(number)
            block.segmentScanned()
        }

        /// Applies this worker's lines of every segment of a block, in order.
        private func applyBlock(_ block: Block) {
            let before = nextLine - 1
            defer {
                block.release()
                if let (interval, report) = progress, (nextLine - 1) / interval > before / interval {
                    report((nextLine - 1) / interval * interval)
                }
            }
            if let length = block.skippedLength {
                if index == 0 { tooLong(length, nextLine) }
                nextLine += 1
                return
            }
            block.waitScanned()
            for segment in block.scans {
                if index == 0 {
                    for (number, length) in segment.tooLong { tooLong(length, nextLine + number) }
                }
                applyOwned(segment.lines[index], of: block.storage.baseAddress!)
                nextLine += segment.lineCount
            }
        }

        /// A line too long to read: worker 0 rejects it.
        private func tooLong(_ length: Int, _ number: Int) {
            let reason = LineReader.tooLong(length)
            summary.count(.rejected(reason))
            reject(reason, UnsafeBufferPointer(start: nil, count: 0), number)
        }

        /// Lines of one segment, asking for each person's slot and state a
        /// few lines ahead (as `EventStream` does), from the hash the scan
        /// computed.
        private func applyOwned(_ owned: [Line], of base: UnsafeMutablePointer<UInt8>) {
            let first = nextLine
            owned.withUnsafeBufferPointer { owned in
                for k in owned.indices {
                    let far = k + Prefetch.slotDistance, near = k + Prefetch.stateDistance
                    if far < owned.count, owned[far].keyLength > 0 { engine.prefetchSlot(hash: owned[far].hash) }
                    if near < owned.count, owned[near].keyLength > 0 {
                        let ahead = owned[near]
                        engine.prefetchState(UnsafeBufferPointer(start: base + Int(ahead.start) + personKey.leadingCount,
                                                                 count: Int(ahead.keyLength)), hash: ahead.hash)
                    }
                    let line = owned[k]
                    let bytes = UnsafeBufferPointer(start: base + Int(line.start), count: Int(line.end - line.start))
                    apply(bytes, first + Int(line.number), line.keyLength > 0 ? line.hash : nil)
                }
            }
        }

        /// `hash`: of the id that starts the line, when it does.
        private func apply(_ line: UnsafeBufferPointer<UInt8>, _ number: Int, _ hash: UInt32?) {
            let outcome = applier.apply(line: line, number: number, hash: hash)
            summary.count(outcome)
            if case .rejected(let reason, _) = outcome { reject(reason, line, number) }
        }

        private func reject(_ reason: String, _ line: UnsafeBufferPointer<UInt8>, _ number: Int) {
            rejected.add()
            rejections.append((Rejection(line: number, reason: reason), Array(line)))
        }
    }
}
