import RulesCore

/// What the log's records make, one record at a time — the live service's
/// state, and the past states that `as_of` and explanations replay: a body
/// is applied; a policy record makes the engine (the first) or replaces
/// its policy (later ones), carrying people over by name as `rules run
/// --resume` does under another policy. Live and replayed, a record goes
/// through the same code, so a restart makes the same state and numbers
/// the change feed's events the same.
final class ServedState {
    private(set) var engine: Engine! = nil
    private(set) var policy: ServedPolicy! = nil
    /// Lines of every body so far (lines are numbered across bodies).
    private(set) var lines = 0
    private(set) var totals = (bodies: 0, read: 0, applied: 0, rejected: 0)
    /// Events of the change feed, when this state feeds one, and the lines
    /// they leave (the live service's; a replay has neither).
    private let feed: ChangeFeed?
    private let published: PublishedLines?
    private var changes: ReportChanges? = nil
    private let personKey: String
    private let corrections: Corrections?
    /// Called with each new engine (a watch for an explanation).
    private let prepare: (Engine) -> PersonWatch?
    private var watch: PersonWatch? = nil

    init(personKey: String, corrections: Corrections?, feed: ChangeFeed?, published: PublishedLines? = nil,
         prepare: @escaping (Engine) -> PersonWatch? = { _ in nil }) {
        self.personKey = personKey
        self.corrections = corrections
        self.feed = feed
        self.published = published
        self.prepare = prepare
    }

    struct Refused: Error, CustomStringConvertible {
        var description: String
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

    /// Takes a policy record. Returns the notes on what did not carry over
    /// and who changed (nobody for the first policy).
    @discardableResult
    func take(policy: ServedPolicy, program: Program) throws -> (notes: [String], changes: [ReportChanges.Change]) {
        let key = try PersonKey.named(personKey, for: program).get()
        let fresh = Engine(program: program, personKey: key)
        if let corrections { fresh.enableCorrections(corrections) }
        var notes: [String] = []
        if let old = engine {
            switch Checkpoint.restore(Checkpoint.encode([old], lines: lines), into: [fresh]) {
            case .success(let info): notes = info.notes
            case .failure(let f): throw Refused(description: "people could not be carried over to the new policy: \(f)")
            }
        }
        engine = fresh
        self.policy = policy
        var changed: [ReportChanges.Change] = []
        if let feed {
            let tracker = ReportChanges(engine: fresh)
            changed = tracker.adopt(changes)
            changes = tracker
            // Line states mean what the new policy's names are: everyone's anew.
            published?.replaceAll(program: program, personKey: key, from: tracker)
            feed.publish(changed)
        }
        watch = prepare(fresh)
        return (notes, changed)
    }

    /// Takes a policy record as the log holds it.
    func take(policy json: String) throws {
        let policy = try ServedPolicy(json: json)
        switch compile(policy) {
        case .success(let (program, _)): try take(policy: policy, program: program)
        case .failure(let refused): throw Refused(description: "a policy in the log no longer compiles (\(refused)); run the rules that wrote it")
        }
    }

    /// Takes a body: applies its lines (those after `asOf` not), numbered
    /// after every earlier body's.
    @discardableResult
    func take(body: [UInt8], asOf: Int64? = nil) -> (summary: RunSummary, rejections: [Rejection]) {
        engine.lineBase = lines
        var rejections: [Rejection] = []
        var summary: RunSummary? = nil
        let apply = {
            summary = EventStream.run(self.engine, reader: LineReader(bytes: body), asOf: asOf, watch: self.watch) { r, _ in rejections.append(r) }
        }
        if let changes { publish(changes.applying(apply)) } else { apply() }
        let s = summary!
        lines += s.lines
        totals = (totals.bodies + 1, totals.read + s.read, totals.applied + s.applied, totals.rejected + s.rejected)
        return (s, rejections)
    }

    func take(_ record: EventLog.Record, asOf: Int64? = nil) throws {
        switch record {
        case .policy(let json): try take(policy: json)
        case .body(let body): take(body: body, asOf: asOf)
        }
    }

    /// The state as a checkpoint, after the log's records up to `logEnd`.
    func checkpoint(logEnd: Int) -> ServiceCheckpoint {
        let (lastId, events) = feed?.kept() ?? (0, [])
        return ServiceCheckpoint(logEnd: logEnd, lines: lines, totals: totals, policy: policy, lastId: lastId, feed: events,
                                 engine: Checkpoint.encode([engine], lines: lines))
    }

    /// Starts from a checkpoint instead of the log's first records.
    func restore(_ saved: ServiceCheckpoint) throws {
        let program: Program
        switch compile(saved.policy) {
        case .success(let (compiled, _)): program = compiled
        case .failure(let refused): throw Refused(description: "the checkpoint's policy no longer compiles (\(refused))")
        }
        let key = try PersonKey.named(personKey, for: program).get()
        let fresh = Engine(program: program, personKey: key)
        if let corrections { fresh.enableCorrections(corrections) }
        if case .failure(let f) = Checkpoint.restore(saved.engine, into: [fresh]) {
            throw Refused(description: "the checkpoint's engine does not read back: \(f)")
        }
        engine = fresh
        policy = saved.policy
        lines = saved.lines
        totals = saved.totals
        if let feed {
            feed.restore(lastId: saved.lastId, events: saved.feed)
            let tracker = ReportChanges(engine: fresh)
            tracker.resume()
            changes = tracker
            published?.replaceAll(program: program, personKey: key, from: tracker)
        }
        watch = prepare(fresh)
    }

    /// One body's (or policy's) changes: to the lines reads get, then to
    /// the feed.
    private func publish(_ changed: [ReportChanges.Change]) {
        published?.update(changed)
        feed?.publish(changed)
    }

    /// The watch of the latest engine (explanations).
    var currentWatch: PersonWatch? { watch }
}
