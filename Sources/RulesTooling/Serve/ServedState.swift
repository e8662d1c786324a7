import RulesCore

/// What the log's records make, one record at a time — the live service's
/// state, and the past states that `as_of` and explanations replay: a body
/// is applied; a policy record makes the engines (the first) or replaces
/// their policy (later ones), carrying people over by name as `rules run
/// --resume` does under another policy. Live and replayed, a record goes
/// through the same code, so a restart makes the same state and numbers
/// the change feed's events the same.
///
/// People are split over `shards` engines by a hash of their id, as
/// `rules run --jobs` splits them: each body is applied by every shard at
/// once, each taking its own people's lines, on threads of its own; then
/// the clock is the latest of theirs, and each shard finds its changed
/// lines as of it. A person's events all go to one engine in order, so
/// every line is the one a single engine makes (a test diffs the two on
/// random policies), and so are the change feed's events and numbers.
final class ServedState {
    private(set) var policy: ServedPolicy! = nil
    /// Lines of every body so far (lines are numbered across bodies).
    private(set) var lines = 0
    private(set) var totals = (bodies: 0, read: 0, applied: 0, rejected: 0)
    /// Events of the change feed, when this state feeds one, and the lines
    /// they leave (the live service's; a replay has neither).
    private let feed: ChangeFeed?
    private let published: PublishedLines?
    private let personKey: String
    private let corrections: Corrections?
    /// Called with each new engine (a watch for an explanation; one shard).
    private let prepare: (Engine) -> PersonWatch?
    private var watch: PersonWatch? = nil
    private var shards: [Shard] = []
    private let shardCount: Int
    private let helpers: ShardThreads

    /// One share of the people: its engine, the tracker of its changed
    /// lines, and what the last body did in it (written by the thread that
    /// applies it, read after).
    private final class Shard {
        let engine: Engine
        var tracker: ReportChanges? = nil
        var summary = RunSummary()
        var rejections: [Rejection] = []
        var changes = ChangeList([])

        init(_ engine: Engine) { self.engine = engine }
    }

    /// Deals bodies' lines to the shards, on any thread: a body is dealt
    /// by the thread that received it, before it waits for its turn to be
    /// applied, so that the one thread that applies bodies one after another
    /// does not (a twelfth of its time at 4 clients). Which shard a line
    /// goes to depends on its id alone, whatever the policy: the routers
    /// (each finds the id of a line that does not start with it, with
    /// scratch memory of its own: one thread at a time) are made from the
    /// first program and serve the state's life.
    private final class Dealers: @unchecked Sendable {
        private let lock = Lock()
        private var first: (program: Program, personKey: PersonKey, count: Int)? = nil
        private var idle: [ParallelStream.Router] = []

        deinit { for router in idle { router.deallocate() } }

        /// Called with the first shards (under the engine's lock).
        func start(program: Program, personKey: PersonKey, count: Int) {
            lock.locked { if first == nil { first = (program, personKey, count) } }
        }

        /// A body's lines dealt; nil before the first shards exist.
        func deal(_ body: UnsafeBufferPointer<UInt8>) -> LineShares? {
            let taken: (ParallelStream.Router, PersonKey, Int)? = lock.locked {
                guard let first else { return nil }
                let router = idle.popLast() ?? ParallelStream.Router(program: first.program, personKey: first.personKey, count: first.count)
                return (router, first.personKey, first.count)
            }
            guard var (router, personKey, count) = taken else { return nil }
            let dealt = LineShares(body, count: count, personKey: personKey, router: &router)
            lock.locked { idle.append(router) }
            return dealt
        }
    }
    private let dealers = Dealers()

    /// A body's lines dealt to the shards (nil for one shard), on the
    /// calling thread: for `take(body:dealt:)`.
    func deal(_ body: [UInt8]) -> LineShares? {
        shardCount > 1 ? body.withUnsafeBufferPointer { dealers.deal($0) } : nil
    }

    /// People the trackers keep after held bodies before folding them into
    /// a set (`ReportChanges.hold`; tests give 1).
    private let foldHeldAt: Int

    init(personKey: String, corrections: Corrections?, feed: ChangeFeed?, published: PublishedLines? = nil, shards: Int = 1,
         foldHeldAt: Int = 1 << 20, prepare: @escaping (Engine) -> PersonWatch? = { _ in nil }) {
        self.foldHeldAt = foldHeldAt
        self.personKey = personKey
        self.corrections = corrections
        self.feed = feed
        self.published = published
        self.prepare = prepare
        shardCount = max(1, shards)
        helpers = ShardThreads(shards: shardCount)
    }

    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    /// The engines, one per shard.
    var engines: [Engine] { shards.map(\.engine) }

    /// The engine of a state of one shard (replays).
    var engine: Engine {
        precondition(shards.count == 1, "one engine is asked for, of a state in shards")
        return shards[0].engine
    }

    /// The latest time of any applied event — for a worker, of any event
    /// any worker applied (`outsideClock`): lines are evaluated as of it.
    var clock: Int64? { (shards.compactMap(\.engine.clock) + [outsideClock].compactMap { $0 }).max() }

    /// This state's own latest event time (a worker tells the others).
    var ownClock: Int64? { shards.compactMap(\.engine.clock).max() }

    /// A worker's: where the reading of each partition stands, and the
    /// latest event time the other workers had reached, as of the last
    /// batch taken (`SourcedBatch`).
    private(set) var positions: [Int: StreamPosition] = [:]
    private(set) var outsideClock: Int64? = nil

    /// Told of each body's and each policy change's changed lines, and
    /// the shares that published them (a worker writes them to Redis).
    var onChanges: ((MergedChanges, [PublishedLines.Share]) -> Void)? = nil

    /// People in the report: as the lookups count them when this state
    /// keeps them (the live service), else from the engines' report.
    var people: Int { published?.people ?? shards.reduce(0) { $0 + $1.engine.report().count } }

    func writeReport(to out: (UnsafeRawBufferPointer) -> Void) {
        Engine.writeReport(engines, asOf: clock, to: out)
    }

    /// A policy's program, or why it cannot be one for this service (it
    /// does not compile, or it reads the person key as a field).
    func compile(_ policy: ServedPolicy) -> Result<(Program, CompileResult), Refused> {
        switch policy.compile() {
        case .failure(let e): return .failure(Refused(description: "cannot read \(e.path): \(e.reason)"))
        case .success(let result):
            guard let program = result.program else { return .failure(Refused(description: "the policy has errors")) }
            if case .failure(let e) = PersonKey.named(personKey, for: program) { return .failure(Refused(description: "\(e)")) }
            return .success((program, result))
        }
    }

    /// New empty shards for `program`.
    private func freshShards(_ program: Program) throws -> [Shard] {
        let key = try PersonKey.named(personKey, for: program).get()
        if shardCount > 1 { dealers.start(program: program, personKey: key, count: shardCount) }
        return (0..<shardCount).map { _ in
            let engine = Engine(program: program, personKey: key)
            if let corrections { engine.enableCorrections(corrections) }
            return Shard(engine)
        }
    }

    private func owner(_ id: UnsafeBufferPointer<UInt8>) -> Int { ParallelStream.Router.bucket(id, shardCount) }

    /// Takes a policy record. Returns the notes on what did not carry over
    /// and who changed (nobody for the first policy).
    @discardableResult
    func take(policy: ServedPolicy, program: Program) throws -> (notes: [String], changes: [ReportChanges.Change]) {
        let fresh = try freshShards(program)
        var notes: [String] = []
        if !shards.isEmpty {
            switch Checkpoint.restore(Checkpoint.encode(engines, lines: lines), into: fresh.map(\.engine), owner: owner) {
            case .success(let info): notes = info.notes
            case .failure(let f): throw Refused(description: "people could not be carried over to the new policy: \(f)")
            }
        }
        let old = shards
        shards = fresh
        self.policy = policy
        var changed = MergedChanges([ChangeList]())
        if let feed {
            let now = clock
            for (k, shard) in shards.enumerated() {
                let tracker = ReportChanges(engine: shard.engine, foldHeldAt: foldHeldAt)
                shard.changes = tracker.adopt(old.isEmpty ? nil : old[k].tracker, now: now)
                shard.tracker = tracker
            }
            changed = mergedChanges()
            // Everyone was compared with what was last published: the
            // changes of held bodies are among these.
            heldLines = 0
            // Line states mean what the new policy's names are: everyone's anew.
            published?.install(program: program, personKey: shards[0].engine.personKey, shares: shards.compactMap(\.tracker?.share))
            feed.publish(changed)
            onChanges?(changed, shards.compactMap(\.tracker?.share))
        }
        watch = shardCount == 1 ? prepare(shards[0].engine) : nil
        return (notes, changed.changes)
    }

    /// Takes a policy record as the log holds it.
    func take(policy json: String) throws {
        let policy = try ServedPolicy(json: json)
        switch compile(policy) {
        case .success(let (program, _)): try take(policy: policy, program: program)
        case .failure(let refused): throw Refused(description: "a policy in the log no longer compiles (\(refused)); run the rules that wrote it")
        }
    }

    /// Lines applied since the changed lines were last looked for: those of
    /// held batches (`SourcedBatch.publishes`), whose changes are found
    /// with the next batch that publishes. A checkpoint is never taken
    /// while there are any (nothing in it says whom they reached).
    private(set) var heldLines = 0

    /// Takes a body: applies its lines (those after `asOf` not), numbered
    /// after every earlier body's; every shard its own people's, at once.
    /// Then the changed lines are looked for and published — unless the
    /// body is held (`publishes` false): they are found with the next
    /// body that publishes, as if the two were one.
    @discardableResult
    func take(body: [UInt8], asOf: Int64? = nil, dealt: LineShares? = nil, publishes: Bool = true) -> (summary: RunSummary, rejections: [Rejection]) {
        let base = lines, watch = self.watch, tracks = feed != nil && publishes, holds = feed != nil && !publishes
        // Every shard reads the body where it is, and looks for its changed
        // lines at once, its people still in cache, as of its own clock;
        // once all are done, the changes are settled as of the latest clock
        // of all (the few people whose line can change between the two are
        // looked at again: `ReportChanges.settle`).
        let before = clock
        body.withUnsafeBufferPointer { bytes in
            // In shards, each reads only its own lines, dealt in one pass
            // (by the thread that received the body, when it came so).
            let dealt = shards.count > 1 ? dealt ?? dealers.deal(bytes) : nil
            helpers.run { [shards] k in
                let shard = shards[k]
                defer {
                    // Its changes looked for at once, as of its own clock
                    // (settled below at the latest of all).
                    if tracks, let own = [shard.engine.clock, before].compactMap({ $0 }).max() { shard.tracker!.look(now: own) }
                    else if holds { shard.tracker!.hold() }
                }
                shard.engine.lineBase = base
                shard.rejections = []
                if let dealt {
                    shard.summary = EventStream.run(shard.engine, body: bytes, lines: dealt.shares[k], asOf: asOf) { r, _ in shard.rejections.append(r) }
                } else {
                    shard.summary = EventStream.run(shard.engine, reader: LineReader(borrowing: bytes), asOf: asOf, watch: watch) { r, _ in
                        shard.rejections.append(r)
                    }
                }
            }
        }
        var summary = RunSummary(), rejections: [Rejection] = []
        for shard in shards {
            summary.add(shard.summary)
            rejections += shard.rejections
        }
        if shards.count > 1 { rejections.sort { $0.line < $1.line } }
        if tracks, let now = clock {
            for shard in shards { shard.changes = shard.tracker!.settle(now: now) }
            // The lookups set, then the events kept (their text is written
            // by the clients that read them).
            if let published { published.update(shards.map(\.changes)) }
            else { for shard in shards { shard.tracker!.publish(shard.changes) } }
            let merged = mergedChanges()
            feed?.publish(merged)
            onChanges?(merged, shards.compactMap(\.tracker?.share))
            for shard in shards { shard.changes = ChangeList([]) }
        }
        if feed != nil { heldLines = publishes ? 0 : heldLines + summary.lines }
        lines += summary.lines
        totals = (totals.bodies + 1, totals.read + summary.read, totals.applied + summary.applied, totals.rejected + summary.rejected)
        return (summary, rejections)
    }

    /// The shards' changes, each in byte order of ids, as one list in that
    /// order (the feed numbers them so, whatever the shards).
    private func mergedChanges() -> MergedChanges { MergedChanges(shards.map(\.changes)) }

    func take(_ record: EventLog.Record, asOf: Int64? = nil) throws {
        switch record {
        case .policy(let json): try take(policy: json)
        case .body(let body): take(body: body, asOf: asOf)
        case .sourced(let batch): take(batch, asOf: asOf)
        }
    }

    /// Takes a worker's batch: its lines, as of the outside clock when that
    /// is later than this state's own; then where each partition stands.
    @discardableResult
    func take(_ batch: SourcedBatch, asOf: Int64? = nil, dealt: LineShares? = nil) -> (summary: RunSummary, rejections: [Rejection]) {
        if let outside = batch.outsideClock, outside > (outsideClock ?? .min) { outsideClock = outside }
        defer { positions.merge(batch.positions) { $1 } }
        return take(body: batch.body, asOf: asOf, dealt: dealt, publishes: batch.publishes)
    }

    /// The state as a checkpoint, after the log's records up to `logEnd`.
    func checkpoint(logEnd: Int) -> ServiceCheckpoint {
        var saved = ServiceCheckpoint(logEnd: logEnd, lines: lines, totals: totals, policy: policy, feed: feed?.kept(), program: shards.first?.engine.program,
                                      unsealedEngine: Checkpoint.encodeUnsealed(engines, lines: lines, inParallel: { [helpers] in helpers.run($0) }))
        saved.positions = positions
        saved.outsideClock = outsideClock
        return saved
    }

    /// Starts from a checkpoint instead of the log's first records.
    func restore(_ saved: ServiceCheckpoint) throws {
        let program: Program
        switch compile(saved.policy) {
        case .success(let (compiled, _)): program = compiled
        case .failure(let refused): throw Refused(description: "the checkpoint's policy no longer compiles (\(refused))")
        }
        let fresh = try freshShards(program)
        if case .failure(let f) = Checkpoint.restore(saved.engine, into: fresh.map(\.engine), owner: owner) {
            throw Refused(description: "the checkpoint's engine does not read back: \(f)")
        }
        shards = fresh
        policy = saved.policy
        lines = saved.lines
        totals = saved.totals
        positions = saved.positions
        outsideClock = saved.outsideClock
        if let feed {
            let now = clock
            for shard in shards {
                let tracker = ReportChanges(engine: shard.engine, foldHeldAt: foldHeldAt)
                tracker.resume(now: now)
                shard.tracker = tracker
            }
            guard feed.restore(lastId: saved.lastId, pieces: saved.feed, format: shards.first?.tracker?.format) else {
                throw Refused(description: "the checkpoint's change feed is not of its policy")
            }
            published?.install(program: program, personKey: shards[0].engine.personKey, shares: shards.compactMap(\.tracker?.share))
        }
        watch = shardCount == 1 ? prepare(shards[0].engine) : nil
    }

    /// The watch of the latest engine (explanations).
    var currentWatch: PersonWatch? { watch }
}
