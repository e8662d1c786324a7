import Foundation

/// `rules run --jobs N`: people are split over N engines by a stable hash of
/// their id, each engine on its own thread. The reader stays sequential —
/// it numbers the lines and hands each to the worker that owns its person —
/// so line numbers are exact, and because a person's events all go to one
/// engine, in stream order, every person's result is the one a single engine
/// computes. The reports are merged in byte order; rejections are reported
/// in line order.
public enum ParallelStream {
    public struct Result {
        public var engines: [Engine]
        public var summary: RunSummary
    }

    public static func run(program: Program, fd: Int32, jobs: Int, asOf: Int64? = nil,
                           onReject: (Rejection, [UInt8]) -> Void) -> Result {
        let workers = (0..<max(1, jobs)).map { _ in Worker(program: program, asOf: asOf) }
        for w in workers { w.start() }
        let reader = LineReader(fd: fd)
        var router = Router(program: program)
        var summary = RunSummary()
        var batches = workers.map { _ in Batch() }
        while let line = reader.next() {
            if EventStream.isBlank(line) { summary.blank += 1; continue }
            summary.read += 1
            let k = router.worker(for: line, of: workers.count)
            batches[k].add(line, number: reader.lineNumber)
            if batches[k].bytes.count >= 1 << 18 {
                workers[k].send(batches[k])
                batches[k] = Batch()
            }
        }
        for (k, w) in workers.enumerated() {
            if !batches[k].lines.isEmpty { w.send(batches[k]) }
            w.finish()
        }
        router.parser.deallocate()
        summary.readError = reader.readError
        var rejections: [(Rejection, [UInt8])] = []
        for w in workers {
            w.wait()
            summary.applied += w.summary.applied
            summary.rejected += w.summary.rejected
            summary.ignoredAfterAsOf += w.summary.ignoredAfterAsOf
            rejections += w.rejections
        }
        for (r, bytes) in rejections.sorted(by: { $0.0.line < $1.0.line }) { onReject(r, bytes) }
        return Result(engines: workers.map(\.engine), summary: summary)
    }

    /// Writes the merged report of a parallel run.
    public static func writeReport(_ result: Result, asOf: Int64?, to out: (UnsafeRawBufferPointer) -> Void) {
        Engine.writeReport(result.engines, asOf: asOf, to: out)
    }

    public static func evaluationNotes(_ result: Result) -> [String] {
        Engine.evaluationNotes(result.engines)
    }

    /// Lines for one worker, copied out of the reader's buffer.
    final class Batch: @unchecked Sendable {
        var bytes: [UInt8] = []
        var lines: [(number: Int, start: Int, count: Int)] = []

        func add(_ line: UnsafeBufferPointer<UInt8>, number: Int) {
            lines.append((number, bytes.count, line.count))
            bytes.append(contentsOf: line)
        }
    }

    /// Picks a line's worker from its person id: the bytes after
    /// `{"citizen":"` when the line starts that way (as streams usually do),
    /// else the id a full parse finds. A line that does not parse goes to
    /// worker 0, which rejects it with the reason.
    struct Router {
        let prefix = Array(#"{"citizen":""#.utf8)
        var parser: EventParser
        let scratch: Engine

        init(program: Program) {
            parser = EventParser(program: program)
            scratch = Engine(program: program)
        }

        mutating func worker(for line: UnsafeBufferPointer<UInt8>, of count: Int) -> Int {
            if count == 1 { return 0 }
            if line.count > prefix.count, line.starts(with: prefix) {
                var i = prefix.count
                while i < line.count, line[i] != 0x22, line[i] != 0x5C { i += 1 }
                if i < line.count, line[i] == 0x22 {
                    return bucket(UnsafeBufferPointer(rebasing: line[prefix.count..<i]), count)
                }
            }
            scratch.beginEvent(line: 0)
            guard case .event(let e) = parser.parse(line, into: scratch) else { return 0 }
            return bucket(e.person, count)
        }

        private func bucket(_ key: UnsafeBufferPointer<UInt8>, _ count: Int) -> Int {
            Int(ByteTable.hash(key) % UInt32(count))
        }
    }

    /// One engine on its own thread, fed batches through a bounded queue.
    final class Worker: @unchecked Sendable {
        let engine: Engine
        private var parser: EventParser
        private let asOf: Int64?
        private var queue: [Batch?] = []
        private let lock = NSLock()
        private let items = DispatchSemaphore(value: 0)
        private let room = DispatchSemaphore(value: 8)
        private let done = DispatchSemaphore(value: 0)
        // Written by the worker thread only, read after `wait()`.
        var summary = RunSummary()
        var rejections: [(Rejection, [UInt8])] = []

        init(program: Program, asOf: Int64?) {
            engine = Engine(program: program)
            parser = EventParser(program: program)
            self.asOf = asOf
        }

        func start() {
            let thread = Thread { [self] in self.loop() }
            thread.stackSize = 1 << 22
            thread.start()
        }

        func send(_ batch: Batch) { put(batch) }
        func finish() { put(nil) }
        func wait() { done.wait() }

        private func put(_ batch: Batch?) {
            room.wait()
            lock.lock(); queue.append(batch); lock.unlock()
            items.signal()
        }

        private func take() -> Batch? {
            items.wait()
            lock.lock(); let b = queue.removeFirst(); lock.unlock()
            room.signal()
            return b
        }

        private func loop() {
            while let batch = take() {
                batch.bytes.withUnsafeBufferPointer { all in
                    for (number, start, count) in batch.lines {
                        apply(UnsafeBufferPointer(rebasing: all[start..<(start + count)]), number)
                    }
                }
            }
            parser.deallocate()
            done.signal()
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
            rejections.append((Rejection(line: number, reason: reason), Array(line)))
        }
    }
}
