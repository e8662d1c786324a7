import Foundation

/// `rules run --jobs N`: people are split over N engines by a stable hash of
/// their id, each engine on its own thread. The reader stays sequential —
/// it numbers the lines and hands each to the worker that owns its person —
/// so line numbers are exact, and because a person's events all go to one
/// engine, in stream order, every person's result is the one a single engine
/// computes. The reports are merged in byte order; rejections are reported
/// in line order.
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
        // The reader cuts the input into blocks of whole lines, numbers the
        // lines and routes each to the worker that owns its person; workers
        // share the blocks and apply their own lines.
        // Blocks are filled in a few reused buffers (fresh memory for each
        // would cost a page fault per 4 KiB of input).
        let pool = BlockPool(count: 2 * count + 2, size: 1 << 22)
        var router = Router(program: program, count: count)
        defer { router.parser.deallocate() }
        var carry: [UInt8] = []   // the start of a line cut by the last block
        var nextLine = 1
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
                let block = Block(storage, count: end, firstLine: nextLine, users: count, pool: pooled ? pool : nil,
                                  router: &router)
                nextLine += block.lineCount
                for w in workers { w.send(block) }
            }
            if carry.count > LineReader.defaultMaxLineBytes {
                // Too long to keep (as `LineReader` does): read on to its end
                // without holding it, and let worker 0 reject it by number.
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
                let block = Block(skippedLine: nextLine, length: length, users: count)
                nextLine += 1
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
    /// the pool when the last worker is done with it.
    final class Block: @unchecked Sendable {
        let bytes: UnsafeBufferPointer<UInt8>
        let firstLine: Int
        let lineCount: Int
        private let storage: UnsafeMutableBufferPointer<UInt8>
        private let pool: BlockPool?
        private var users: Int
        private let lock = NSLock()

        /// Per worker, the lines it owns: where each is and its number.
        let lines: [[Line]]
        /// Lines that are not blank, and blank ones.
        let read: Int
        let blank: Int

        struct Line {
            var start: Int
            var end: Int
            var number: Int
        }

        /// Lines too long to read (`LineReader.defaultMaxLineBytes`): their
        /// numbers and lengths; worker 0 rejects them.
        let skipped: [(number: Int, length: Int)]

        init(skippedLine number: Int, length: Int, users: Int) {
            storage = .allocate(capacity: 1)
            pool = nil
            self.users = users
            bytes = UnsafeBufferPointer(rebasing: storage[0..<0])
            firstLine = number
            lineCount = 1
            lines = [[Line]](repeating: [], count: users)
            read = 1
            blank = 0
            skipped = [(number, length)]
        }

        /// Splits `storage[0..<count]` into lines and routes each.
        init(_ storage: UnsafeMutableBufferPointer<UInt8>, count: Int, firstLine: Int, users: Int, pool: BlockPool?,
             router: inout Router) {
            self.storage = storage
            self.pool = pool
            self.users = users
            let all = UnsafeBufferPointer(rebasing: storage[0..<count])
            bytes = all
            self.firstLine = firstLine
            var lines = [[Line]](repeating: [], count: users)
            var read = 0, blank = 0
            var skipped: [(number: Int, length: Int)] = []
            var start = 0
            var number = firstLine
            let base = all.baseAddress!
            while start < count {
                let end = memchr(base + start, 0x0A, count - start).map { base.distance(to: $0.assumingMemoryBound(to: UInt8.self)) } ?? count
                var lineEnd = end
                if lineEnd > start && all[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                let line = UnsafeBufferPointer(rebasing: all[start..<lineEnd])
                if line.count > LineReader.defaultMaxLineBytes {
                    read += 1
                    skipped.append((number, line.count))
                } else if EventStream.isBlank(line) {
                    blank += 1
                } else {
                    read += 1
                    lines[router.owner(of: line)].append(Line(start: start, end: lineEnd, number: number))
                }
                start = end + 1
                number += 1
            }
            self.lines = lines
            self.read = read
            self.blank = blank
            self.skipped = skipped
            lineCount = number - firstLine
        }

        /// Called once by each worker after its scan.
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

        static func bucket(_ key: UnsafeBufferPointer<UInt8>, _ count: Int) -> Int {
            Int(ByteTable.hash(key) % UInt32(count))
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
        private let index: Int
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
                if index == 0 { summary.read += block.read; summary.blank += block.blank }
                for (number, length) in block.skipped where index == 0 {
                    reject(LineReader.tooLong(length),
                           UnsafeBufferPointer(rebasing: block.bytes[0..<0]), number)
                }
                applyOwned(block.lines[index], of: block.bytes)
                block.release()
            }
            parser.deallocate()
            done.signal()
        }

        /// This worker's lines of a block, asking for each person's slot and
        /// state a few lines ahead (as `EventStream` does).
        private func applyOwned(_ owned: [Block.Line], of all: UnsafeBufferPointer<UInt8>) {
            func line(_ k: Int) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: all[owned[k].start..<owned[k].end]) }
            for k in owned.indices {
                if k + 8 < owned.count, let key = EventParser.leadingPerson(line(k + 8)) { engine.prefetchSlot(key) }
                if k + 4 < owned.count, let key = EventParser.leadingPerson(line(k + 4)) { engine.prefetchState(key) }
                apply(line(k), owned[k].number)
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
