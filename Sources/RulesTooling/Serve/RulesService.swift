import Foundation
import RulesCore

/// The engine as a live service (`rules serve`; docs/SERVICE.md): one
/// engine owns the state; each request is answered under one lock, so a
/// read never sees half an applied body. A body of events is written to
/// the durable log and synced before it is applied and answered.
///
/// The invariant (the contract's "The service"): at any moment the served
/// state is what `rules run` prints over every acknowledged line, in the
/// order acknowledged — on start the log is replayed into a fresh engine.
package final class RulesService: @unchecked Sendable {
    let log: EventLog
    /// The engine, the policy and the counts the log's records made.
    private let state: ServedState
    private let personKey: PersonKey
    private let corrections: Corrections?
    private let lock = Lock()
    /// What the start found: bodies and policy changes replayed from the
    /// log, bytes of a cut record dropped, whether a version 1 log was
    /// rewritten.
    package let replayed: (bodies: Int, policyChanges: Int, dropped: Int, upgraded: Bool)
    /// Set when the log's policy is not the one named on the command line
    /// (a `PUT /v1/policy` changed it): the log's is served.
    package let servesLoggedPolicy: Bool
    package let metrics = ServiceMetrics()
    package let feed: ChangeFeed
    /// What `GET /v1/people/ID` answers, without the engine's lock.
    private let published: PublishedLines
    /// Bodies and policies arriving together share one sync.
    private var commits: GroupCommit! = nil
    /// Where the last record applied ends in the log: a checkpoint is of
    /// the state after it (a record synced but not yet applied is replayed
    /// after the checkpoint).
    private var appliedEnd = 0
    /// `DIR/checkpoint`, written every `checkpointEvery` lines (0: only on
    /// stopping; nil: `checkpointInterval`'s default) and when the service
    /// stops.
    private let checkpointPath: String
    package var checkpointEvery: Int? = nil

    /// Lines between checkpoints: `--checkpoint-every N`, or by default four
    /// lines per person served and at least a million. A checkpoint writes
    /// everyone, so its cost grows with the people: at a fixed interval a
    /// large enough service would always be writing one. This way a
    /// checkpoint costs the same per line at any size, and a restart
    /// replays at most about four lines a person.
    package static func checkpointInterval(every: Int?, people: Int) -> Int {
        every ?? max(1_000_000, 4 * people)
    }
    /// Where warnings go (stderr, for the command).
    package var warn: @Sendable (String) -> Void = { _ in }
    private var checkpointedLines = 0
    private let backgroundCheckpoint = BackgroundWrite()
    /// What the start did with a checkpoint: nil when there was none.
    package let checkpointNote: String?
    /// A worker's partitions (`--source`): its events come from them, not
    /// from `POST /v1/events`.
    package let source: StreamSource?
    /// A worker's changed lines not yet written to Redis (`NAME:state:{K}`).
    package let stateWrites: StateWrites?
    /// A worker's partitions as `GET /v1/health` shows them.
    package var sourceHealth: (@Sendable () -> String)? = nil

    /// `named`: the policy named on the command line, compiled to
    /// `program`; a new data directory's log starts with it. An existing
    /// log's records are replayed, policies included.
    /// Engines the people are split over when not told (`--jobs`): the
    /// two cores of the machines this is measured on.
    package static let defaultJobs = 2

    package init(policy named: ServedPolicy, program: Program, personKey: PersonKey = .citizen, corrections: Corrections? = nil,
                 jobs: Int = RulesService.defaultJobs, data directory: String, source: StreamSource? = nil) throws {
        self.personKey = personKey
        self.corrections = corrections
        self.source = source
        let feed = ChangeFeed(personKey: personKey.name)
        let published = PublishedLines()
        let state = ServedState(personKey: personKey.name, corrections: corrections, feed: feed, published: published, shards: jobs)
        // A worker's lines changed by the replay below are written to Redis
        // once it is reached, as every later body's are.
        let stateWrites = source.map { StateWrites(source: $0) }
        if let stateWrites { state.onChanges = { stateWrites.add($0, shares: $1) } }
        try Self.claim(directory, for: source)
        var bodies = 0, changes = 0, first = true
        // A checkpoint, when there is one that reads back: the log's tail
        // is replayed after it.
        let checkpointPath = directory + "/checkpoint"
        // A checkpoint being written when the service was killed left its
        // file beside the real one: never read, only in the way.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix("checkpoint.tmp-") {
            try? FileManager.default.removeItem(atPath: directory + "/" + name)
        }
        var saved: ServiceCheckpoint? = nil, note: String? = nil
        if let bytes = FileManager.default.contents(atPath: checkpointPath) {
            do { saved = try ServiceCheckpoint(decoding: Array(bytes)) } catch {
                note = "\(checkpointPath) is ignored (\(error)): the whole log is replayed"
            }
        }
        let (log, dropped, upgraded) = try EventLog.open(in: directory, first: .policy(named.json), resumeAt: saved?.logEnd, start: { resuming in
            guard resuming, let saved else {
                if saved != nil { note = "\(checkpointPath) does not fit the log (it ends elsewhere): the whole log is replayed" }
                return
            }
            do { try state.restore(saved) } catch {
                throw ServedState.Refused(description: "\(checkpointPath) cannot be used: \(error); move it away to replay the whole log")
            }
            first = false
            note = "started from \(checkpointPath) (\(saved.lines) lines), then the log after it"
        }) { record in
            switch record {
            case .policy(let json):
                // The log's first record is the policy it was created with:
                // not a change; not compiled again when it is the one just
                // compiled from the command line.
                if first, json == named.json { try state.take(policy: named, program: program); first = false; return }
                if !first { changes += 1 }
            case .body, .sourced: bodies += 1
            }
            first = false
            try state.take(record)
        }
        self.log = log
        self.state = state
        self.stateWrites = stateWrites
        self.feed = feed
        self.published = published
        replayed = (bodies, changes, dropped, upgraded)
        servesLoggedPolicy = state.policy != named
        self.checkpointPath = checkpointPath
        checkpointNote = note
        checkpointedLines = saved.map { $0.lines } ?? 0
        appliedEnd = log.end
        commits = GroupCommit(log: log) { [unowned self] apply, end in
            lock.locked {
                appliedEnd = end
                defer { noteApplied() }
                return apply()
            }
        }
        noteApplied()
    }

    /// A data directory serves one kind of service for its life: a
    /// worker's records where its events came from (`DIR/source`), and
    /// another worker, other partitions or a service taking posts cannot
    /// use it (their people's states are not in it; docs/SCALING.md on
    /// moving partitions).
    private static func claim(_ directory: String, for source: StreamSource?) throws {
        let path = directory + "/source"
        let recorded = FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
        switch (recorded, source) {
        case (nil, nil): return
        case (let recorded?, nil):
            throw ServedState.Refused(description: "\(directory) is a worker's, reading \(recorded); start it with --source and --partitions as that, or give another --data")
        case (let recorded?, let source?) where recorded != source.description:
            throw ServedState.Refused(description: "\(directory) holds the people of \(recorded), not of \(source); each worker needs the data directory it started with (docs/SCALING.md: moving partitions)")
        case (_?, _?): return
        case (nil, let source?):
            if FileManager.default.fileExists(atPath: directory + "/events.log") {
                throw ServedState.Refused(description: "\(directory) holds a service's posted events; a worker needs a data directory of its own")
            }
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: path, contents: Data((source.description + "\n").utf8)) else {
                throw ServedState.Refused(description: "cannot create \(path)")
            }
        }
    }

    /// A worker's batch in the log, to be applied (`apply(_:)`): its reader
    /// logs the next batch while the applier applies this one.
    package final class LoggedBatch: @unchecked Sendable {
        fileprivate let ticket: GroupCommit.Ticket
        fileprivate let result: Applied
        fileprivate init(_ ticket: GroupCommit.Ticket, _ result: Applied) { (self.ticket, self.result) = (ticket, result) }
    }

    /// What applying a logged batch gave, set by whichever thread applied
    /// it. (The ticket's closure holds this, not the `LoggedBatch` that
    /// holds the ticket: that cycle kept every batch's body alive.)
    fileprivate final class Applied: @unchecked Sendable {
        var value = (summary: RunSummary(), rejections: [Rejection]())
    }

    /// Makes a worker's batch durable, as a posted body is before it is
    /// applied; throws the reason when the log cannot take it.
    package func log(_ batch: SourcedBatch) throws -> LoggedBatch {
        let applied = Applied()
        // Its lines dealt to the shards here, on the reader's thread: the
        // applier's is the longer part.
        let dealt = state.deal(batch.body)
        let written = commits.write(.sourced(batch), refusal: "the batch was not stored, so not applied") { [self] in
            applied.value = state.take(batch, dealt: dealt)
            return .json(200, "{}")
        }
        switch written {
        case .success(let ticket): return LoggedBatch(ticket, applied)
        case .failure(let refused):
            // The answer a post would get, `{"error":"…"}`: its message.
            let body = refused.answer.body
            let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
            let message = object?["error"] as? String ?? String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ServedState.Refused(description: message)
        }
    }

    /// Applies a logged batch (and any record logged before it); its
    /// summary and rejections (line numbers within its body).
    package func apply(_ logged: LoggedBatch) -> (summary: RunSummary, rejections: [Rejection]) {
        _ = commits.finish(logged.ticket)
        return logged.result.value
    }

    /// A worker's reading of its partitions, as of the last batch applied.
    package var positions: [Int: StreamPosition] { lastApplied.locked { lastAppliedState.positions } }

    /// This service's own latest event time, and the one it evaluates at,
    /// as of the last record applied.
    package var clocks: (own: Int64?, served: Int64?) { lastApplied.locked { lastAppliedState.clocks } }

    /// What a worker's readers ask between batches, kept apart from the
    /// engine's lock and set after each record applied: asked under that
    /// lock, a reader could not send its next read until the batch being
    /// applied was done — Redis and the applier then took turns.
    private let lastApplied = Lock()
    private var lastAppliedState: (positions: [Int: StreamPosition], clocks: (own: Int64?, served: Int64?), held: Int) = ([:], (nil, nil), 0)

    /// Called holding the engine's lock, after a record is applied.
    private func noteApplied() {
        let now = (state.positions, (state.ownClock, state.clock), state.heldLines)
        lastApplied.locked { lastAppliedState = now }
    }

    /// Lines applied in held batches, whose changed lines are not yet
    /// looked for (`SourcedBatch.publishes`), as of the last record applied.
    package var heldLines: Int { lastApplied.locked { lastAppliedState.held } }

    /// A worker's report lines that may not yet be in Redis: people whose
    /// changed line Redis has not confirmed, and each line applied in a held
    /// batch (it may have changed one). 0: every line is there. The held
    /// lines are read first: a batch that publishes marks its changed lines
    /// before its held count is 0, so the two read in this order never both
    /// miss them.
    package var unwritten: Int {
        let held = heldLines
        return held + (stateWrites?.unwritten ?? 0)
    }

    /// A worker's changed lines waiting to be written to Redis, as the
    /// engine has them now (nil: none).
    package func takeStateWrites() -> LineWrites? { lock.locked { stateWrites?.take() } }

    /// A checkpoint if one is due: a worker asks after its batch's lines
    /// are in Redis, so that a checkpoint never covers a line not written.
    package func checkpointIfDueNow() { lock.locked { checkpointIfDue() } }

    /// Whether `checkpointIfDueNow` would write one now (a worker first
    /// writes its lines waiting to Redis).
    package var checkpointDue: Bool { lock.locked { isCheckpointDue } }

    /// Writes the checkpoint now: the state after every record logged,
    /// once any checkpoint being written in the background is written.
    /// Called holding the lock.
    private func writeCheckpoint() -> String? {
        backgroundCheckpoint.wait()
        let checkpoint = state.checkpoint(logEnd: appliedEnd)
        let failure = Checkpoint.writeFile(to: checkpointPath) { file in checkpoint.write { file.write($0) } }
        if failure == nil { checkpointedLines = state.lines }
        return failure.map { "\($0)" }
    }

    /// After a body: a checkpoint when `checkpointEvery` lines came since
    /// the last. The state is taken here, under the lock; the file is
    /// written on a thread of its own while the next bodies are applied
    /// (the next checkpoint waits for it, and one is not due while one is
    /// being written). A failure is only reported: the log holds everything.
    private func checkpointIfDue() {
        guard isCheckpointDue, linesNotInRedis == nil else { return }
        let checkpoint = state.checkpoint(logEnd: appliedEnd)
        checkpointedLines = state.lines  // on a failure, tried again after as many lines
        let path = checkpointPath, warn = self.warn
        backgroundCheckpoint.start {
            if let failure = Checkpoint.writeFile(to: path, { file in checkpoint.write { file.write($0) } }) {
                warn("no checkpoint written (\(failure)); the log holds every body, a start replays more of it")
            }
        }
    }

    private var isCheckpointDue: Bool {
        checkpointEvery != 0 && !backgroundCheckpoint.busy && state.heldLines == 0
            && state.lines - checkpointedLines >= Self.checkpointInterval(every: checkpointEvery, people: state.people)
    }

    /// What a request gets: an answer, or the change feed (which the
    /// connection streams, outside the engine's lock).
    package enum Answer {
        case response(HTTPResponse)
        /// Events after this number (nil: from now on).
        case changes(after: Int?)
    }

    /// Bearer tokens (`--token-file`, `--read-token-file`): writes need
    /// `write`; with `read` set, reads need `read` or `write`.
    package var tokens = Tokens()

    package struct Tokens: Sendable {
        package var write: [UInt8]? = nil
        package var read: [UInt8]? = nil
        package init(write: [UInt8]? = nil, read: [UInt8]? = nil) {
            self.write = write
            self.read = read
        }

        /// nil when the request may go on; otherwise the 401 it gets.
        func refusal(_ request: HTTPRequest) -> HTTPResponse? {
            let writes = request.method != "GET" && request.method != "HEAD"
            let accepted = writes ? [write] : (read == nil ? [] : [read, write])
            let needed = accepted.compactMap { $0 }
            if needed.isEmpty { return nil }
            let header = request.header("Authorization") ?? ""
            if header.lowercased().hasPrefix("bearer ") {
                let given = Array(header.utf8.dropFirst(7))
                // Every token compared in full, found or not: the time taken
                // says nothing about how much of a token was right.
                var found = false
                for token in needed { found = Self.same(given, token) || found }
                if found { return nil }
            }
            var refused = HTTPResponse.error(401, header.isEmpty ? "\(writes ? "writing" : "reading") needs Authorization: Bearer TOKEN"
                                                                 : "the bearer token is not one this service accepts for \(writes ? "writing" : "reading")")
            refused.headers.append(("WWW-Authenticate", "Bearer"))
            return refused
        }

        /// Equal bytes, in time that depends only on the lengths.
        static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
            var difference = UInt8(truncatingIfNeeded: a.count ^ b.count) | (a.count == b.count ? 0 : 1)
            for k in 0..<max(a.count, b.count) {
                difference |= (k < a.count ? a[k] : 0) ^ (k < b.count ? b[k] : 0)
            }
            return difference == 0
        }
    }

    /// The answer to one request.
    package func handle(_ request: HTTPRequest) -> Answer {
        if let refused = tokens.refusal(request) { return .response(refused) }
        if request.segments == ["v1", "changes"] {
            guard request.method == "GET" else { return .response(.error(405, "\(request.method) is not allowed on \(request.target); use GET")) }
            guard let text = request.header("Last-Event-ID")?.trimmingCharacters(in: " \t") else { return .changes(after: nil) }
            guard let seen = Int(text), seen >= 0 else {
                return .response(.error(400, "Last-Event-ID takes the number of the last event seen, not \(JSONText.quoted(text))"))
            }
            return .changes(after: seen)
        }
        // A person's line is read from what the last body published: it
        // does not wait for a body being applied.
        if request.method == "GET", request.segments.count == 3, request.segments[0] == "v1", request.segments[1] == "people" {
            return .response(person(request.segments[2]))
        }
        // Writes go through the group commit, which takes the engine's lock
        // only to apply (the sync is outside it).
        if request.segments == ["v1", "events"] && request.method == "POST" { return .response(postEvents(request.body)) }
        if request.segments == ["v1", "policy"] && request.method == "PUT" { return .response(putPolicy(request.body)) }
        return .response(lock.locked { route(request) })
    }

    private func route(_ request: HTTPRequest) -> HTTPResponse {
        let path = request.segments
        if path == ["metrics"] {
            guard request.method == "GET" else { return .error(405, "\(request.method) is not allowed on \(request.target); use GET") }
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")], body: Array(metricsText().utf8))
        }
        guard path.first == "v1", path.count >= 2 else {
            return .error(404, "no such endpoint: \(request.method) \(request.target)")
        }
        let method = request.method
        func only(_ allowed: String, _ answer: () -> HTTPResponse) -> HTTPResponse {
            method == allowed ? answer() : .error(405, "\(method) is not allowed on \(request.target); use \(allowed)")
        }
        switch (path[1], path.count) {
        // POST and PUT went to the group commit (`handle`); any other
        // method is answered here.
        case ("events", 2): return only("POST") { preconditionFailure("a post is committed, not routed") }
        case ("people", 3): return only("GET") { person(path[2]) }
        case ("people", 4) where path[3] == "explain": return only("GET") { explain(path[2]) }
        case ("report", 2): return only("GET") { report(request) }
        case ("health", 2): return only("GET") { health() }
        case ("policy", 2): return only("PUT") { preconditionFailure("a policy is committed, not routed") }
        default: return .error(404, "no such endpoint: \(request.method) \(request.target)")
        }
    }

    /// `POST /v1/events`: durable first, then applied, then answered.
    private func postEvents(_ body: [UInt8]) -> HTTPResponse {
        if let source {
            return .error(409, "this service reads its events from \(source) (--source); publish them there: rules publish --to \(source.address) --partitions \(source.count)")
        }
        // Dealt to the shards here, while other bodies are applied: the
        // thread that applies them one after another has that much less to do.
        let dealt = state.deal(body)
        return commits.commit(.body(body), refusal: "the body was not stored, so not applied") { [self] in
            let (summary, rejections) = state.take(body: body, dealt: dealt)
            checkpointIfDue()
            return Self.answer(summary, rejections)
        }
    }

    private static func answer(_ summary: RunSummary, _ rejections: [Rejection]) -> HTTPResponse {
        let list = rejections.map { #"{"line":\#($0.line),"reason":\#(JSONText.quoted($0.reason))}"# }.joined(separator: ",")
        return .json(200, #"{"read":\#(summary.read),"applied":\#(summary.applied),"rejected":\#(summary.rejected),"rejections":[\#(list)]}"#)
    }

    /// `PUT /v1/policy`: checked first (422 with the diagnostics, nothing
    /// changed); then durable, then in force from the next line on, people
    /// carried over by name.
    private func putPolicy(_ body: [UInt8]) -> HTTPResponse {
        let policy: ServedPolicy
        do { policy = try ServedPolicy(json: String(decoding: body, as: UTF8.self)) } catch {
            return .error(400, "\(error)")
        }
        let result: CompileResult
        switch policy.compile() {
        case .failure(let e):
            return .json(422, #"{"error":\#(JSONText.quoted("cannot read \(e.path): \(e.reason); nothing changed")),"diagnostics":[]}"#)
        case .success(let compiled): result = compiled
        }
        let renderer = DiagnosticRenderer(sources: result.sources, color: false)
        let diagnostics = result.diagnostics.map(renderer.json).joined(separator: ",")
        guard let program = result.program else {
            let errors = result.diagnostics.filter { $0.severity == .error }.count
            return .json(422, #"{"error":\#(JSONText.quoted("the policy has \(errors) error\(errors == 1 ? "" : "s"); nothing changed")),"diagnostics":[\#(diagnostics)]}"#)
        }
        if case .failure(let e) = PersonKey.named(personKey.name, for: program) {
            return .json(422, #"{"error":\#(JSONText.quoted("\(e); nothing changed")),"diagnostics":[\#(diagnostics)]}"#)
        }
        return commits.commit(.policy(policy.json), refusal: "the policy was not stored, so not put in force") { [self] in
            let taken: (notes: [String], changes: [ReportChanges.Change])
            do { taken = try state.take(policy: policy, program: program) } catch {
                // Logged but not taken: a restart would fail on it the same way.
                return .error(500, "the policy was stored but could not be put in force: \(error)")
            }
            let notes = taken.notes.map(JSONText.quoted).joined(separator: ",")
            return .json(200, #"{"people":\#(state.people),"changed":\#(taken.changes.count),"notes":[\#(notes)],"diagnostics":[\#(diagnostics)]}"#)
        }
    }

    /// `GET /v1/people/ID`: the report line `rules run` would print now
    /// (as the last acknowledged body left it).
    private func person(_ id: String) -> HTTPResponse {
        guard let line = published.line(of: id) else { return .error(404, "no applied event for \(JSONText.quoted(id))") }
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: line + [0x0A])
    }

    /// `GET /v1/people/ID/explain`: the JSON of `rules explain --format
    /// json` over every acknowledged line (made again from the log, with
    /// that person's trail: it costs a replay). Events are named by their
    /// line among all acknowledged lines: `line 12`. After a policy change
    /// the account starts at the latest change, from the state carried
    /// over (docs/SERVICE.md).
    private func explain(_ id: String) -> HTTPResponse {
        let past: ServedState
        do {
            past = try replay(asOf: nil) { engine in
                engine.enableTrace(only: id, records: { _ in })
                return PersonWatch(person: id, engine: engine, origin: { "line \($0)" })
            }
        } catch {
            return .error(500, "the log could not be read again: \(error)")
        }
        guard let watch = past.currentWatch, let clock = past.engine.clock,
              let e = Explanation.explain(id, engine: past.engine, timeline: watch.timeline, at: clock) else {
            return .error(404, "no applied event for \(JSONText.quoted(id))")
        }
        return .json(200, e.json)
    }

    /// A state made again from every record of the log, as `rules run`
    /// over them would be (`--as-of`; `prepare` makes a watch on each
    /// engine).
    private func replay(asOf: Int64?, prepare: @escaping (Engine) -> PersonWatch? = { _ in nil }) throws -> ServedState {
        let past = ServedState(personKey: personKey.name, corrections: corrections, feed: nil, prepare: prepare)
        try log.records(upTo: appliedEnd) { try past.take($0, asOf: asOf) }
        return past
    }

    /// Stops the service between two requests (SIGTERM): what is in flight
    /// is answered first; every acknowledged body is already on disk, and a
    /// checkpoint is written so that the next start replays nothing.
    package func stop(_ then: (_ checkpointFailure: String?) -> Never) -> Never {
        lock.locked { then(linesNotInRedis ?? writeCheckpoint()) }
    }

    /// Why a worker may not checkpoint now (nil: it may): a checkpoint
    /// never covers a changed line not yet in Redis, which no replay after
    /// it would mark again. The log after the last checkpoint is replayed
    /// instead, and those lines written then. Called holding the lock.
    private var linesNotInRedis: String? {
        guard let stateWrites else { return nil }
        if state.heldLines > 0 { return "the changes of \(state.heldLines) lines applied are not yet looked for, so not yet in Redis" }
        guard case let n = stateWrites.unwritten, n > 0 else { return nil }
        return "\(n) \(n == 1 ? "person's line is" : "people's lines are") not yet in Redis"
    }

    /// `GET /v1/report[?as_of=TIME]`: what `rules run` prints, byte for byte.
    private func report(_ request: HTTPRequest) -> HTTPResponse {
        var asOf: Int64? = nil
        if let text = request.query.first(where: { $0.name == "as_of" })?.value {
            guard let t = Timestamp.parse(text) else { return .error(400, "as_of takes a date or date-time like 2026-06-01, not \(text)") }
            asOf = t
        }
        var bytes: [UInt8] = []
        if let asOf {
            // As `rules run --as-of` does: the lines after it are not
            // applied, so the past state is made again from the log.
            do { try replay(asOf: asOf).engine.writeReport(asOf: asOf) { bytes.append(bytes: $0) } } catch {
                return .error(500, "the log could not be read again: \(error)")
            }
        } else {
            state.writeReport { bytes.append(bytes: $0) }
        }
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/x-ndjson")], body: bytes)
    }

    /// `GET /metrics`: the service's figures, then the requests'.
    private func metricsText() -> String {
        metrics.text(state: [
            ("rules_bodies_total", "Bodies acknowledged (over the whole log, replayed ones included).", "counter", state.totals.bodies),
            ("rules_lines_read_total", "Lines read from acknowledged bodies (blank lines not counted).", "counter", state.totals.read),
            ("rules_lines_applied_total", "Lines applied.", "counter", state.totals.applied),
            ("rules_lines_rejected_total", "Lines rejected, each with a reason in its answer.", "counter", state.totals.rejected),
            ("rules_people", "People in the report.", "gauge", state.people),
            ("rules_changes_total", "Events of the change feed (GET /v1/changes).", "counter", feed.lastId),
            ("rules_log_syncs_total", "Syncs of the log since the start (bodies arriving together share one).", "counter", commits.written.syncs),
            ("rules_log_records_total", "Records those syncs made durable.", "counter", commits.written.records),
            ("rules_clock_seconds", "The latest event time, in seconds since 1970 (0 before the first).", "gauge",
             Int((state.clock ?? 0) / Timestamp.perSecond)),
        ] + (stateWrites.map { writes in [
            ("rules_state_lines_written_total", "A worker's report lines set in (or deleted from) NAME:state:{K}, as Redis confirmed.", "counter", writes.written),
            ("rules_state_lines_unwritten", "People whose latest line Redis has not yet confirmed.", "gauge", writes.unwritten),
            ("rules_lines_held", "Lines applied in batches read from a backlog whose changed lines are not yet looked for (at most --write-every).", "gauge", state.heldLines),
        ] } ?? []))
    }

    /// `GET /v1/health`.
    private func health() -> HTTPResponse {
        let clock = state.clock.map { JSONText.quoted(Timestamp.format($0)) } ?? "null"
        let partitions = sourceHealth.map { #","source":\#($0())"# } ?? ""
        return .json(200, #"{"status":"ok","clock":\#(clock),"people":\#(state.people),"lines":\#(state.lines)\#(partitions)}"#)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One write at a time on a thread of its own (the service's periodic
/// checkpoint).
final class BackgroundWrite: @unchecked Sendable {
    private let mutex = Lock()
    private let idle = DispatchSemaphore(value: 1)
    private var writing = false

    /// Whether a write is under way.
    var busy: Bool { mutex.locked { writing } }

    /// Starts `write` on a new thread (after the one under way, if any).
    func start(_ write: @escaping @Sendable () -> Void) {
        idle.wait()
        mutex.locked { writing = true }
        startThread { [self] in
            write()
            mutex.locked { writing = false }
            idle.signal()
        }
    }

    /// Waits for the write under way, if any.
    func wait() {
        idle.wait()
        idle.signal()
    }
}
