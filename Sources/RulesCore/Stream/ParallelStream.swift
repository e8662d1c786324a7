import Foundation

/// `rules run --jobs N`: people are split over N engines by a stable hash of
/// their id, each engine on its own thread. The reader stays sequential: it
/// cuts the input into blocks of whole lines and gives every block to every
/// worker. Each worker numbers every line itself (so line numbers are exact)
/// and applies the lines whose person it owns; because a person's events all
/// go to one engine, in stream order, every person's result is the one a
/// single engine computes. The reports are merged in byte order; rejections
/// are reported in line order.
///
/// Every worker scanning every line costs less than one reader routing them:
/// a line's person sits in its first cache line, which the worker that
/// applies it reads anyway, and no per-line list crosses between threads
/// (docs/PERFORMANCE.md has the measurements).
@_spi(Tooling) public enum ParallelStream {
    public struct Result {
        public var engines: [Engine]
        public var summary: RunSummary
    }

    /// `resume`: a checkpoint to start from (each person's state goes to the
    /// worker that owns them). `maxRejects`: stop at the rejection that goes
    /// over it, as one thread would (the same line; the workers may have
    /// read further, but nothing past that line is reported).
    public static func run(program: Program, fd: Int32, jobs: Int, asOf: Int64? = nil,
                           resume: [UInt8]? = nil, maxRejects: Int? = nil,
                           onReject: (Rejection, [UInt8]) -> Void) -> Swift.Result<ParallelStream.Result, Checkpoint.Failure> {
        let count = max(1, jobs)
        let rejected = RejectCount()
        let workers = (0..<count).map { Worker(program: program, asOf: asOf, index: $0, of: count, rejected: rejected) }
        if let resume {
            if case .failure(let f) = Checkpoint.restore(resume, into: workers.map(\.engine),
                                                         owner: { Router.bucket($0, count) }) {
                return .failure(f)
            }
        }
        for w in workers { w.start() }
        // The reader cuts the input into blocks of whole lines, which the
        // workers share. Blocks are filled in a few reused buffers of 1 MiB
        // (fresh memory for each would cost a page fault per 4 KiB of input;
        // bigger ones, as many faults the first time round).
        let pool = BlockPool(count: 2 * count + 2, size: 1 << 20)
        var carry: [UInt8] = []   // the start of a line cut by the last block
        var readError: String? = nil
        var atEnd = false
        while !atEnd {
            // A line longer than half a pooled buffer gets a buffer of its own.
            let pooled = carry.count <= pool.size / 2
            let storage = pooled ? pool.take() : .allocate(capacity: 2 * carry.count)
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
                pooled ? pool.give(storage) : storage.deallocate()
            } else {
                let block = Block(storage, count: end, users: count, pool: pooled ? pool : nil)
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
                let block = Block(skippedLineOf: length, users: count)
                for w in workers { w.send(block) }
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
            summary.read += w.summary.read
            summary.blank += w.summary.blank
            summary.applied += w.summary.applied
            summary.rejected += w.summary.rejected
            summary.ignoredAfterAsOf += w.summary.ignoredAfterAsOf
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
    /// newline), shared read-only by every worker; its buffer goes back to
    /// the pool when the last worker is done with it. Or, in place of
    /// bytes, one line too long to read (`LineReader.defaultMaxLineBytes`).
    final class Block: @unchecked Sendable {
        let bytes: UnsafeBufferPointer<UInt8>
        /// The length of the line too long to read, when this block is one.
        let skippedLength: Int?
        private let storage: UnsafeMutableBufferPointer<UInt8>
        private let pool: BlockPool?
        private var users: Int
        private let lock = NSLock()

        init(skippedLineOf length: Int, users: Int) {
            storage = .allocate(capacity: 1)
            pool = nil
            self.users = users
            bytes = UnsafeBufferPointer(rebasing: storage[0..<0])
            skippedLength = length
        }

        init(_ storage: UnsafeMutableBufferPointer<UInt8>, count: Int, users: Int, pool: BlockPool?) {
            self.storage = storage
            self.pool = pool
            self.users = users
            bytes = UnsafeBufferPointer(rebasing: storage[0..<count])
            skippedLength = nil
        }

        /// Called once by each worker when it is done with the block.
        func release() {
            lock.lock()
            users -= 1
            let last = users == 0
            lock.unlock()
            guard last else { return }
            if let pool { pool.give(storage) } else { storage.deallocate() }
        }
    }

    /// Reused input buffers; `take` waits while all are in use.
    final class BlockPool: @unchecked Sendable {
        let size: Int
        private var free: [UnsafeMutableBufferPointer<UInt8>]
        private var all: [UnsafeMutableBufferPointer<UInt8>]
        private let lock = NSLock()
        private let available: DispatchSemaphore

        init(count: Int, size: Int) {
            self.size = size
            all = (0..<count).map { _ in .allocate(capacity: size) }
            free = all
            available = DispatchSemaphore(value: count)
        }

        deinit { for b in all { b.deallocate() } }

        func take() -> UnsafeMutableBufferPointer<UInt8> {
            available.wait()
            lock.lock(); defer { lock.unlock() }
            return free.removeLast()
        }

        func give(_ buffer: UnsafeMutableBufferPointer<UInt8>) {
            lock.lock(); free.append(buffer); lock.unlock()
            available.signal()
        }
    }

    /// Decides which worker owns a line, from its person id: the bytes after
    /// `{"citizen":"` when the line starts that way (as streams usually do),
    /// else the id a full parse finds. A line that does not parse belongs to
    /// worker 0, which rejects it with the reason.
    struct Router {
        var parser: EventParser
        let scratch: Engine
        let count: Int

        init(program: Program, count: Int) {
            parser = EventParser(program: program)
            scratch = Engine(program: program)
            self.count = count
        }

        mutating func owner(of line: UnsafeBufferPointer<UInt8>) -> Int {
            if count == 1 { return 0 }
            if let key = EventParser.leadingPerson(line) { return bucket(key) }
            scratch.beginEvent(line: 0)
            guard case .event(let e) = parser.parse(line, into: scratch) else { return 0 }
            return bucket(e.person)
        }

        private func bucket(_ key: UnsafeBufferPointer<UInt8>) -> Int { Self.bucket(key, count) }

        /// The hash's high bits, scaled to `0..<count` (a multiply, not a
        /// division). Not its low bits: each worker's own table of people
        /// places keys by the low bits of the same hash, and a split by them
        /// would leave every worker only half of its slots to use.
        static func bucket(_ key: UnsafeBufferPointer<UInt8>, _ count: Int) -> Int {
            Int((UInt64(ByteTable.hash(key)) &* UInt64(count)) >> 32)
        }
    }

    /// Rejections so far, across workers (for stopping early).
    final class RejectCount: @unchecked Sendable {
        private var count = 0
        private let lock = NSLock()
        var value: Int { lock.lock(); defer { lock.unlock() }; return count }
        func add() { lock.lock(); count += 1; lock.unlock() }
    }

    /// One engine on its own thread, fed the blocks through a bounded queue.
    final class Worker: @unchecked Sendable {
        let engine: Engine
        private var parser: EventParser
        private var router: Router
        private let index: Int
        /// The number of the next line in the stream.
        private var nextLine = 1
        /// The lines of the current block that this worker owns (reused).
        private var owned: [Line] = []

        struct Line {
            var start: Int
            var end: Int
            var number: Int
        }

        private let asOf: Int64?
        private var queue: [Block?] = []
        private let lock = NSLock()
        private let items = DispatchSemaphore(value: 0)
        private let room = DispatchSemaphore(value: 8)
        private let done = DispatchSemaphore(value: 0)
        // Written by the worker thread only, read after `wait()`.
        var summary = RunSummary()
        var rejections: [(Rejection, [UInt8])] = []

        private let rejected: RejectCount

        init(program shared: Program, asOf: Int64?, index: Int, of count: Int, rejected: RejectCount) {
            self.rejected = rejected
            // Its own compiled program: no node or array is shared between
            // workers, so their reference counts never contend.
            let program = shared.copyForThread()
            engine = Engine(program: program)
            parser = EventParser(program: program)
            router = Router(program: program, count: count)
            self.index = index
            self.asOf = asOf
        }

        func start() {
            let thread = Thread { [self] in self.loop() }
            thread.stackSize = 1 << 22
            thread.start()
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

        private func loop() {
            while let block = take() {
                if let length = block.skippedLength {
                    tooLong(length, nextLine)
                    nextLine += 1
                } else {
                    collectOwned(block.bytes)
                    applyOwned(block.bytes)
                }
                block.release()
            }
            parser.deallocate()
            router.parser.deallocate()
            done.signal()
        }

        /// Numbers every line of a block and keeps those whose person this
        /// worker owns. Worker 0 also counts the lines for the summary and
        /// rejects the ones too long to read.
        private func collectOwned(_ all: UnsafeBufferPointer<UInt8>) {
            owned.removeAll(keepingCapacity: true)
            guard let base = all.baseAddress else { return }
            let count = all.count
            var start = 0
            while start < count {
                let newline = memchr(base + start, 0x0A, count - start)
                let end = newline.map { base.distance(to: $0.assumingMemoryBound(to: UInt8.self)) } ?? count
                var lineEnd = end
                if lineEnd > start && base[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                let line = UnsafeBufferPointer(start: base + start, count: lineEnd - start)
                let number = nextLine
                nextLine += 1
                if line.count > LineReader.defaultMaxLineBytes {
                    tooLong(line.count, number)
                } else if let key = EventParser.leadingPerson(line) {
                    if index == 0 { summary.read += 1 }
                    if Router.bucket(key, router.count) == index { owned.append(Line(start: start, end: lineEnd, number: number)) }
                } else if EventStream.isBlank(line) {
                    if index == 0 { summary.blank += 1 }
                } else {
                    if index == 0 { summary.read += 1 }
                    if router.owner(of: line) == index { owned.append(Line(start: start, end: lineEnd, number: number)) }
                }
                start = end + 1
            }
        }

        /// A line too long to read: worker 0 counts and rejects it.
        private func tooLong(_ length: Int, _ number: Int) {
            guard index == 0 else { return }
            summary.read += 1
            reject(LineReader.tooLong(length), UnsafeBufferPointer(start: nil, count: 0), number)
        }

        /// This worker's lines of a block, asking for each person's slot and
        /// state a few lines ahead (as `EventStream` does).
        private func applyOwned(_ all: UnsafeBufferPointer<UInt8>) {
            let base = all.baseAddress!
            owned.withUnsafeBufferPointer { owned in
                func line(_ k: Int) -> UnsafeBufferPointer<UInt8> {
                    UnsafeBufferPointer(start: base + owned[k].start, count: owned[k].end - owned[k].start)
                }
                for k in owned.indices {
                    if k + 8 < owned.count, let key = EventParser.leadingPerson(line(k + 8)) { engine.prefetchSlot(key) }
                    if k + 4 < owned.count, let key = EventParser.leadingPerson(line(k + 4)) { engine.prefetchState(key) }
                    apply(line(k), owned[k].number)
                }
            }
        }

        private func apply(_ line: UnsafeBufferPointer<UInt8>, _ number: Int) {
            engine.beginEvent(line: number)
            switch parser.parse(line, into: engine) {
            case .rejected(let reason):
                reject(reason, line, number)
            case .event(let e):
                if let asOf, e.time > asOf { summary.ignoredAfterAsOf += 1; return }
                if let reason = engine.apply(person: e.person, event: e.event, time: e.time) {
                    reject(reason, line, number)
                } else {
                    summary.applied += 1
                }
            }
        }

        private func reject(_ reason: String, _ line: UnsafeBufferPointer<UInt8>, _ number: Int) {
            summary.rejected += 1
            rejected.add()
            rejections.append((Rejection(line: number, reason: reason), Array(line)))
        }
    }
}
