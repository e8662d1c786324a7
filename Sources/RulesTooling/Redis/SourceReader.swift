#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MemoryHints
import RulesCore

/// A worker's loop (`rules serve … --source`): reads its partitions'
/// streams in order, a batch at a time; each batch is logged, applied and
/// acknowledged as a posted body is; then its changed lines go to the
/// partitions' hashes, and this worker's clock to `NAME:clock`; then a
/// checkpoint when one is due. Where each partition's reading stands is
/// part of the durable state (each batch's record says it), so a restart
/// after kill -9 reads on from exactly there.
///
/// The clock: lines are evaluated as of the latest event time any worker
/// applied. Each worker writes its own to `NAME:clock` (a field per
/// partition it reads) and reads the latest of all; when another's is
/// later than its own, its next batch carries it — a batch with no lines
/// when only the clock moved — and lines that end by time alone change.
package final class SourceReader: @unchecked Sendable {
    private let service: RulesService
    private let source: StreamSource
    private let options: RedisClient.Options
    private let warn: @Sendable (String) -> Void
    /// Entries read per partition per round trip.
    package var perPartition: Int
    private let health = Lock()
    /// By partition: entries applied, the last one's id, and the lag (entries
    /// in the stream not yet applied; nil until asked).
    private var shown: [Int: (applied: Int, last: EntryId, lag: Int?)] = [:]
    private var clockWritten: Int64? = nil
    /// While a backlog is read, changed lines are written at most every
    /// this many seconds (`--write-every`); caught up, after every batch.
    package var writeInterval = SourceReader.defaultWriteInterval
    /// A second: against a quarter, a million-line backlog was read 8–50 %
    /// faster (5 of 5 alternating pairs; Redis's `HSET` time a third).
    package static let defaultWriteInterval = 1.0
    /// `--trim`: entries this worker has applied (and logged) are trimmed
    /// from its streams, as far as Redis trims cheaply (`XTRIM … MINID ~`).
    /// Off by default: kept whole, the streams let a new worker start
    /// from scratch.
    package var trim = false
    private var trimmed: [Int: EntryId] = [:]

    package init(service: RulesService, options: RedisClient.Options, warn: @escaping @Sendable (String) -> Void) {
        precondition(service.source != nil, "a reader for a service with no --source")
        self.service = service
        source = service.source!
        self.options = options
        self.warn = warn
        // 32,768 entries a round trip in all: against 8,192, a worker took
        // a million lines 7 % faster (7 of 8 alternating pairs), against
        // 16,384 6 % (5 of 8) — a fourth of the syncs and round trips;
        // 65,536 was no faster (4 of 8).
        // A batch is this big only when entries wait: a worker that keeps
        // up reads what has come.
        perPartition = max(100, 32768 / source.partitions.count)
        readings = Self.readings(of: source.partitions)
        handoff.room = readings.count
        for (k, p) in service.positions { shown[k] = (p.applied, p.last, nil) }
        service.sourceHealth = { [self] in healthJSON() }
    }

    /// Runs the loop: the reading threads (`readings`) read from Redis and
    /// log what they read (the first also writes the changed lines back);
    /// another thread applies it, in the log's order.
    package func start() {
        // At nice 5, as the shards' helper threads are (and a connection's
        // thread taking writes): lookups come first when the cores are
        // short, and the helper is not starved by the threads it works
        // with — at nice 0 beside it, these took the cores and the applier
        // waited for the helper's shard.
        for reading in readings { startThread { [self] in _ = rules_thread_nice(5); read(reading) } }
        startThread { [self] in _ = rules_thread_nice(5); applyAll() }
    }

    /// What one reading thread reads: its share of the partitions, and
    /// whether it leads — reads the clock, asks for the lag and writes
    /// the changed lines (one thread writes them, so that a person's
    /// lines reach Redis in the order they were taken).
    private struct Reading {
        let partitions: [Int]
        let leads: Bool
    }

    /// Two reading threads, each with its connection and half of the
    /// partitions: while Redis answers one, the other parses, logs and
    /// hands on what it read (with one, Redis and the reader waited for
    /// each other: each was idle half the time).
    private let readings: [Reading]

    private static func readings(of partitions: ClosedRange<Int>) -> [Reading] {
        let count = min(2, partitions.count)
        return (0..<count).map { r in
            Reading(partitions: partitions.filter { ($0 - partitions.lowerBound) % count == r }, leads: r == 0)
        }
    }

    /// Between the readers and the applier: batches logged and not yet
    /// applied, in order (at most one per reader waits: the next is read
    /// and logged while these are applied), and the other way, changed
    /// lines to write.
    private let handoff = Handoff()

    /// A batch read and logged, for the applier: the entries name its
    /// rejected lines; `advanced`, where its partitions stand after it.
    private struct Logged {
        let logged: RulesService.LoggedBatch
        let entries: [Entry]
        let advanced: [Int: StreamPosition]
        /// Whether its changed lines are looked for after it, and handed
        /// back to be written (`SourcedBatch.publishes`).
        let publishes: Bool
    }

    private final class Handoff: @unchecked Sendable {
        private let monitor = Monitor()
        private var ready: [Logged] = []
        /// Batches that may wait at once: one per reading thread.
        var room = 1
        private var writes: [LineWrites] = []
        /// Whether the applier waits for a batch (everything logged is applied).
        private var waiting = false

        private func locked<R>(_ body: () -> R) -> R { monitor.locked(body) }

        /// The applier: the next batch logged, once there is one.
        func next() -> Logged {
            locked {
                waiting = true
                defer { waiting = false }
                while ready.isEmpty { monitor.wait() }
                let next = ready.removeFirst()
                monitor.broadcast()
                return next
            }
        }

        /// The applier: lines to write with the reader's next round trip.
        func write(_ lines: LineWrites) {
            locked {
                writes.append(lines)
                monitor.broadcast()
            }
        }

        /// Whether everything handed on is applied.
        var allApplied: Bool { locked { waiting && ready.isEmpty } }

        enum Put { case handed, write(LineWrites) }

        /// A reader: hands `logged` on once there is room — unless lines
        /// to write come first for a reader that `writes` them (`.write`:
        /// `logged` is still to hand on).
        func put(_ logged: Logged, writes: Bool) -> Put {
            locked {
                while true {
                    if ready.count < room {
                        ready.append(logged)
                        monitor.broadcast()
                        return .handed
                    }
                    if writes, let lines = takeWrites() { return .write(lines) }
                    monitor.wait()
                }
            }
        }

        /// The reader: lines to write, waiting up to `seconds` for some.
        func writes(waiting seconds: Double) -> LineWrites? {
            locked {
                if writes.isEmpty && seconds > 0 { _ = monitor.wait(until: Monitor.deadline(in: seconds)) }
                return takeWrites()
            }
        }

        private func takeWrites() -> LineWrites? {
            guard !writes.isEmpty else { return nil }
            var all = writes.removeFirst()
            for more in writes { all.add(more) }
            writes.removeAll()
            return all
        }
    }

    /// The reading thread: reads each partition's next entries after where
    /// the last batch logged ended (at first, where the durable state
    /// stands), logs them — the log's write and sync on this thread, while
    /// the applier applies the batch before — and hands them on; writes
    /// the changed lines the applier hands back with the next read.
    private func read(_ reading: Reading) {
        var options = self.options
        options.retryFor = nil  // a worker waits for Redis as long as it takes
        let client: RedisClient
        do { client = try RedisClient(host: source.address.host, port: source.address.port, options: options) } catch {
            warn("cannot read \(source): \(error); no events will be applied")
            return
        }
        // Where each partition stands after the last batch logged: the
        // next read starts there.
        var standing = service.positions
        var idle = 0.002, lagAsked = 0.0
        // The latest outside clock logged in a batch of its own.
        var clockLogged = Int64.min
        // Whether a batch this thread logged is held and none has published
        // since (a start may find the log's last batches held): once caught
        // up, it logs a batch that only publishes.
        var holding = service.heldLines > 0
        // Logged but not yet handed on: a failure to write while it waited
        // for the applier keeps it here.
        var held: Logged? = nil
        while true {
            do {
                if let logged = held {
                    try hand(logged, reading, client)
                    held = nil
                    continue
                }
                // The leader's round trip writes too (the state of the
                // others' is nil: they change none of it).
                var state = reading.leads ? stateBatch(handoff.writes(waiting: 0)) : nil
                var batch = state?.batch ?? RedisBatch()
                state?.batch = RedisBatch()  // held once: the reads added after copy nothing
                let writes = batch.count
                addRead(to: &batch, reading, after: standing.mapValues(\.last))
                let raws = try roundTrip(client, batch, writes: writes, state)
                let fetched = try parseRead(raws[writes...], reading)
                if reading.leads && Self.now() - lagAsked > 1 {
                    try askLag(client)
                    lagAsked = Self.now()
                }
                if !fetched.entries.isEmpty {
                    idle = 0.002
                    let advanced = advance(standing, by: fetched.entries)
                    let publishes = publishing(caughtUp: !fetched.full)
                    guard let logged = log(SourcedBatch(positions: advanced, outsideClock: fetched.outside, body: fetched.body, publishes: publishes))
                    else { continue }
                    standing.merge(advanced) { $1 }
                    holding = !publishes
                    held = Logged(logged: logged, entries: fetched.entries, advanced: advanced, publishes: publishes)
                    try hand(held!, reading, client)
                    held = nil
                } else if case let moved = fetched.outside.flatMap({ $0 > max(service.clocks.served ?? .min, clockLogged) ? $0 : nil }),
                          moved != nil || holding {
                    // Caught up, and only the clock moved, or held batches
                    // wait for their changes to be looked for: a batch with
                    // no lines, which publishes.
                    guard let logged = log(SourcedBatch(positions: [:], outsideClock: moved, body: [])) else { continue }
                    if let moved { clockLogged = moved }
                    holding = false
                    _ = publishing(caughtUp: true)
                    held = Logged(logged: logged, entries: [], advanced: [:], publishes: true)
                    try hand(held!, reading, client)
                    held = nil
                } else if !reading.leads {
                    // Caught up: reads again after a while.
                    usleep(UInt32(idle * 1e6))
                    idle = min(idle * 2, 0.1)
                } else if let lines = handoff.writes(waiting: 0) ?? (handoff.allApplied ? service.takeStateWrites() : nil) {
                    // Caught up, and all of it applied: every changed line
                    // is written now (those of a policy put too), whatever
                    // the interval.
                    try writeOnly(client, lines)
                } else if let lines = handoff.writes(waiting: idle) {
                    // Else it reads again after a while, or once the
                    // applier hands lines back.
                    try writeOnly(client, lines)
                } else {
                    idle = min(idle * 2, 0.1)
                }
            } catch {
                warn("reading \(source): \(error); trying again in 1 s")
                sleep(1)
            }
        }
    }

    /// When the readers last logged a batch that publishes.
    private let published = Lock()
    private var lastPublished = SourceReader.now()

    /// Whether the batch about to be logged publishes: when its reader is
    /// caught up (no partition gave all it was asked for), and while a
    /// backlog is read, once every `writeInterval` (of all readers'
    /// batches; 0: every batch) — its changed lines are written then.
    private func publishing(caughtUp: Bool) -> Bool {
        published.locked {
            let now = Self.now()
            guard caughtUp || writeInterval == 0 || now - lastPublished >= writeInterval else { return false }
            lastPublished = now
            return true
        }
    }

    /// Where each partition read stands after `entries`, from `standing`.
    /// (A partition's entries come one after another: the dictionaries are
    /// reached once per partition, not per entry.)
    private func advance(_ standing: [Int: StreamPosition], by entries: [Entry]) -> [Int: StreamPosition] {
        var advanced: [Int: StreamPosition] = [:]
        var start = 0
        while start < entries.count {
            let k = entries[start].partition
            var end = start + 1
            while end < entries.count && entries[end].partition == k { end += 1 }
            var p = advanced[k] ?? standing[k] ?? StreamPosition(last: .zero, applied: 0)
            p.last = entries[end - 1].id
            p.applied += end - start
            advanced[k] = p
            start = end
        }
        return advanced
    }

    /// `batch` made durable; nil when the log cannot take it (said, and
    /// after a second the same entries are read again).
    private func log(_ batch: SourcedBatch) -> RulesService.LoggedBatch? {
        do { return try service.log(batch) } catch {
            warn("applying what was read from \(source): \(error); reading again in 1 s")
            sleep(1)
            return nil
        }
    }

    /// Hands `logged` on once the applier is ready for it, writing the
    /// lines it hands back meanwhile.
    private func hand(_ logged: Logged, _ reading: Reading, _ client: RedisClient) throws {
        while true {
            switch handoff.put(logged, writes: reading.leads) {
            case .handed: return
            case .write(let lines): try writeOnly(client, lines)
            }
        }
    }

    private func writeOnly(_ client: RedisClient, _ lines: LineWrites) throws {
        var state = stateBatch(lines)
        let batch = state.batch
        state.batch = RedisBatch()
        _ = try roundTrip(client, batch, writes: batch.count, state)
    }

    /// Sends `batch`, its first `writes` commands those of `state`, and
    /// reads the replies; `state` is settled once Redis has run them, else
    /// its lines are kept to be written first next time.
    private func roundTrip(_ client: RedisClient, _ batch: RedisBatch, writes: Int, _ state: StateBatch?) throws -> [[UInt8]] {
        guard !batch.isEmpty else { return [] }
        let raws: [[UInt8]]
        do { raws = try client.runRaw(batch) } catch {
            if let state, writes > 0 { unwritten = LineWrites(batch: batch.prefix(writes), people: state.people) }  // every command again: setting a line twice sets it once
            throw error
        }
        if let state, let refused = raws.prefix(writes).first(where: { $0.first == UInt8(ascii: "-") }) {
            unwritten = LineWrites(batch: batch.prefix(writes), people: state.people)
            throw RedisClient.Failure(description: "writing the report lines: \(String(decoding: refused.dropFirst().prefix { $0 != 0x0D }, as: UTF8.self))")
        }
        if let state { written(state) }
        return raws
    }

    /// The applying thread: applies each batch logged, in order; hands the
    /// changed lines back to be written after each batch that publishes —
    /// when caught up (no partition gave all that was asked), and while a
    /// backlog is read at most every `writeInterval`, so that a person
    /// changed in many batches is looked at and written once (each write
    /// costs Redis about what reading a line does; docs/SCALING.md); then
    /// a checkpoint when one is due.
    private func applyAll() {
        while true {
            let next = handoff.next()
            let (_, rejections) = service.apply(next.logged)
            for r in rejections where r.line >= 1 && r.line <= next.entries.count {
                let e = next.entries[r.line - 1]
                warn("\(source.address.stream(e.partition)) \(e.id): \(r.reason)")
            }
            health.locked {
                for (k, p) in next.advanced {
                    shown[k] = (p.applied, p.last, shown[k]?.lag.map { max(0, $0 - (p.applied - (shown[k]?.applied ?? 0))) })
                }
            }
            if next.publishes { handWrites() }
            if service.checkpointDue {
                // A checkpoint never covers a line not in Redis: all are
                // written first (the reader writes them even while it waits
                // to hand on the next batch).
                handWrites()
                while service.stateWrites?.unwritten ?? 0 > 0 { usleep(1000) }
                service.checkpointIfDueNow()
            }
        }
    }

    private func handWrites() {
        if let lines = service.takeStateWrites() { handoff.write(lines) }
    }

    /// One entry read: its partition, id, and where its line is in the
    /// replies read (`raw`: which; `line`: where in it).
    private struct Entry {
        let partition: Int
        let id: EntryId
        let raw: Int
        let line: Range<Int>
    }

    /// Entries read (the lines as one body), and the latest clock any
    /// worker wrote.
    private struct Fetched {
        /// The entries' lines, one per line (`body(of:in:)`).
        var body: [UInt8]
        var entries: [Entry]
        var outside: Int64?
        /// Whether a partition gave all the entries asked for (more may wait).
        var full = false
    }

    /// The commands that read the next entries of every partition, after
    /// `cursor`, and the latest clock any worker wrote.
    private func addRead(to batch: inout RedisBatch, _ reading: Reading, after cursor: [Int: EntryId]) {
        for k in reading.partitions {
            let stream = source.address.stream(k)
            batch.add(key: stream, ["XREAD", "COUNT", "\(perPartition)", "STREAMS", stream, "\(cursor[k] ?? .zero)"])
        }
        guard reading.leads else { return }
        let clockKey = source.address.name + ":clock"
        batch.add(key: clockKey, ["HVALS", clockKey])
    }

    /// The replies of `addRead`'s commands. The replies are kept as they
    /// came and their entries found in place: no value is made per entry.
    private func parseRead(_ replies: ArraySlice<[UInt8]>, _ reading: Reading) throws -> Fetched {
        let raws = Array(replies)
        var entries: [Entry] = [], full = false
        for (r, k) in reading.partitions.enumerated() {
            let before = entries.count
            try entriesOf(raws[r], index: r, partition: k, into: &entries)
            if entries.count - before >= perPartition { full = true }
        }
        var outside: Int64? = nil
        if reading.leads {
            var reader = RESPReader()
            reader.append(raws[raws.count - 1])
            if case .array(let values)? = try reader.next() {
                outside = values.compactMap { $0.text.flatMap { Int64($0) } }.max()
            }
        }
        return Fetched(body: Self.body(of: entries, in: raws), entries: entries, outside: outside, full: full)
    }

    /// The entries of one `XREAD` reply (`*1` of `[key, [[id, [field,
    /// value, …]], …]]`, or a null array when there are none).
    private func entriesOf(_ raw: [UInt8], index r: Int, partition k: Int, into entries: inout [Entry]) throws {
        func refuse() -> RedisClient.Failure {
            let stream = source.address.stream(k)
            var reader = RESPReader()
            reader.append(raw)
            let value = (try? reader.next()).flatMap { $0 }
            if case .error(let e)? = value, e.hasPrefix("WRONGTYPE") { return RedisClient.Failure(description: "\(stream) is not a stream") }
            return RedisClient.Failure(description: "\(stream): XREAD answered \(value.map { "\($0)" } ?? "what is not a reply")")
        }
        var unnamed: [EntryId] = []
        let whole = raw.withUnsafeBufferPointer { bytes -> Bool in
            var c = RESPCursor(bytes)
            if c.null() { return true }
            guard c.array() == 1, c.array() == 2, c.bulk() != nil, let count = c.array(), count >= 0 else { return false }
            entries.reserveCapacity(entries.count + count)
            for _ in 0..<count {
                guard c.array() == 2, let idRange = c.bulk(), let id = EntryId(parsing: UnsafeBufferPointer(rebasing: bytes[idRange])),
                      let fields = c.array(), fields >= 0, fields % 2 == 0 else { return false }
                var line: Range<Int>? = nil
                for _ in 0..<(fields / 2) {
                    guard let name = c.bulk(), let value = c.bulk() else { return false }
                    if line == nil, Self.isLineField(UnsafeBufferPointer(rebasing: bytes[name])) { line = value }
                }
                if line == nil { unnamed.append(id) }
                entries.append(Entry(partition: k, id: id, raw: r, line: line ?? 0..<0))
            }
            return c.atEnd
        }
        guard whole else { throw refuse() }
        for id in unnamed { warn("\(source.address.stream(k)) \(id): no field `line`; skipped (rules publish writes one)") }
    }

    /// Whether a field's name is `line` (four bytes compared at once).
    @inline(__always)
    private static func isLineField(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        name.count == 4 && UInt32(littleEndian: UnsafeRawPointer(name.baseAddress!).loadUnaligned(as: UInt32.self)) == 0x656E_696C  // "enil"
    }

    /// The entries' lines as one body: entry n is line n + 1, copied from
    /// the reply it came in (each reply's memory reached once, not per
    /// entry). Made by the reading thread: the applier's is the longer
    /// part. A newline inside a line (never written by rules publish,
    /// which publishes lines) is JSON's whitespace: a space, so that the
    /// line stays one.
    private static func body(of entries: [Entry], in raws: [[UInt8]]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: entries.reduce(0) { $0 + $1.line.count + 1 }) { out, written in
            var at = 0, k = 0
            for (r, raw) in raws.enumerated() {
                raw.withUnsafeBufferPointer { reply in
                    while k < entries.count && entries[k].raw == r {
                        let line = entries[k].line
                        let to = out.baseAddress! + at
                        if !line.isEmpty { to.update(from: reply.baseAddress! + line.lowerBound, count: line.count) }
                        if memchr(to, 0x0A, line.count) != nil { for i in at..<(at + line.count) where out[i] == 0x0A { out[i] = 0x20 } }
                        out[at + line.count] = 0x0A
                        at += line.count + 1
                        k += 1
                    }
                }
            }
            precondition(k == entries.count, "entries not in the order of their replies")
            written = at
        }
    }

    /// Lines taken to be written whose writing failed: written first next time.
    private var unwritten: LineWrites? = nil

    /// The commands that write the changed lines handed back (and those
    /// whose writing failed), this worker's clock, and, with `--trim`, the
    /// trimming of what is applied; what they settle once Redis has run
    /// them (`written`).
    private struct StateBatch {
        var batch: RedisBatch
        var people: Int
        var clock: Int64?
        var trimming: [Int: EntryId]
    }

    private func stateBatch(_ lines: LineWrites?) -> StateBatch {
        var all = unwritten ?? LineWrites(batch: RedisBatch(), people: 0)
        unwritten = nil
        if let lines { all.add(lines) }
        var batch = all.batch
        all.batch = RedisBatch()  // moved, not copied (a batch's lines are megabytes)
        let own = service.clocks.own
        if let own, own != clockWritten {
            let key = source.address.name + ":clock"
            var arguments = ["HSET", key]
            for k in source.partitions { arguments += ["\(k)", "\(own)"] }
            batch.add(key: key, arguments)
        }
        // Entries up to a logged position are never read again by this
        // worker: a restart reads on after the position its log holds.
        var trimming: [Int: EntryId] = [:]
        if trim {
            for (k, p) in service.positions where p.last > (trimmed[k] ?? .zero) {
                batch.add(key: source.address.stream(k), ["XTRIM", source.address.stream(k), "MINID", "~", "\(p.last)"])
                trimming[k] = p.last
            }
        }
        return StateBatch(batch: batch, people: all.people, clock: own, trimming: trimming)
    }

    private func written(_ state: StateBatch) {
        service.stateWrites?.confirm(state.people)
        clockWritten = state.clock
        trimmed.merge(state.trimming) { $1 }
    }

    /// Each partition's lag: entries added to its stream, less those applied.
    private func askLag(_ client: RedisClient) throws {
        var batch = RedisBatch()
        for k in source.partitions { batch.add(key: source.address.stream(k), ["XINFO", "STREAM", source.address.stream(k)]) }
        let replies = try client.run(batch)
        let positions = service.positions
        health.locked {
            for (k, reply) in zip(source.partitions, replies) {
                let applied = positions[k]?.applied ?? 0
                var added = 0
                if case .array(let fields) = reply {
                    var i = 0
                    while i + 1 < fields.count {
                        if fields[i].text == "entries-added", case .integer(let n) = fields[i + 1] { added = Int(n) }
                        else if fields[i].text == "length", case .integer(let n) = fields[i + 1], added == 0 { added = Int(n) }
                        i += 2
                    }
                }
                shown[k] = (applied, positions[k]?.last ?? .zero, max(0, added - applied))
            }
        }
    }

    /// `"source":{…}` of `GET /v1/health`: the lines that may not yet be in
    /// Redis (`RulesService.unwritten`; those of held batches among them),
    /// each partition's stream, entries applied, the last one's id, and the
    /// lag.
    private func healthJSON() -> String {
        health.locked {
            let items = source.partitions.map { k -> String in
                let s = shown[k] ?? (0, .zero, nil)
                let lag = s.lag.map(String.init) ?? "null"
                return #"{"partition":\#(k),"stream":\#(JSONText.quoted(source.address.stream(k))),"applied":\#(s.applied),"last":"\#(s.last)","lag":\#(lag)}"#
            }
            return #"{"redis":\#(JSONText.quoted(source.address.description)),"unwritten":\#(service.unwritten),"held":\#(service.heldLines),"partitions":[\#(items.joined(separator: ","))]}"#
        }
    }

    private static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }
}
