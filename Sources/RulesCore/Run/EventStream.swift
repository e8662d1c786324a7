/// Feeds an NDJSON stream through an engine, accounting for every line:
/// each is applied, rejected with a reason, or ignored because it lies after
/// `--as-of`. Blank lines carry no event and are only counted.
public struct RunSummary: Sendable {
    /// Lines that were not blank.
    public var read = 0
    /// Events applied.
    public var applied = 0
    /// Lines rejected, each with a reason.
    public var rejected = 0
    /// Events after `--as-of`, not applied.
    public var ignoredAfterAsOf = 0
    /// Blank lines, counted apart.
    public var blank = 0
    /// Applied events of a type no rule or declaration names, by type: they
    /// change nothing but the person's presence, and the summary says so.
    public var unknownTypes: [String: Int] = [:]
    /// Set when reading the stream failed.
    public var readError: String? = nil
    /// Set when `maxRejects` stopped the run: the line of the rejection
    /// that went over the limit. Lines after it were not read.
    public var stoppedAtLine: Int? = nil
    /// Set when `onCheckpoint` failed: the run stopped there.
    public var checkpointError: String? = nil

    /// Lines taken from the stream, blank ones included.
    public var lines: Int { read + blank }

    package init() {}

    /// Adds the counts of another share of the same stream's lines (the
    /// threads of `--jobs`, the service's shards).
    package mutating func add(_ other: RunSummary) {
        read += other.read
        blank += other.blank
        applied += other.applied
        rejected += other.rejected
        ignoredAfterAsOf += other.ignoredAfterAsOf
        unknownTypes.merge(other.unknownTypes, uniquingKeysWith: +)
    }

    mutating func countUnknown(_ type: UnsafeBufferPointer<UInt8>) {
        unknownTypes[String(decoding: type, as: UTF8.self), default: 0] += 1
    }

    /// `; 3 of a type no rule names: parking (2), jaywalking (1)`, or "".
    public var unknownTypesNote: String {
        if unknownTypes.isEmpty { return "" }
        let total = unknownTypes.values.reduce(0, +)
        let list = unknownTypes.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.map { "\($0.key) (\($0.value))" }
        return "; \(total) of a type no rule names: " + list.joined(separator: ", ")
    }
}

extension RunSummary {
    /// Counts one line that was not blank.
    @inline(__always)
    mutating func count(_ outcome: EventApplier.Outcome) {
        read += 1
        switch outcome {
        case .applied(let e):
            applied += 1
            if e.event == nil && e.retraction == nil { countUnknown(e.type) }
        case .rejected: rejected += 1
        case .afterAsOf: ignoredAfterAsOf += 1
        }
    }
}

/// A line that was not applied, and why.
public struct Rejection: Sendable {
    /// Its line number in the stream.
    public var line: Int
    /// Why, as `rules run` says it.
    public var reason: String
}

package enum EventStream {
    /// Runs the whole stream from `fd`. `onReject` gets each rejected line
    /// (its number, reason and raw bytes) as it happens.
    /// `onProgress` is called with the number of lines read so far, every
    /// `progressInterval` lines.
    /// `watch` records, for one person, what each of their events did
    /// (for `rules explain`); without it nothing is recorded.
    /// `maxRejects`: stop at the rejection that goes over it.
    /// `onCheckpoint` is called every `checkpointEvery` lines, between two
    /// lines, with the number of lines taken so far; it returns an error to
    /// stop the run.
    public static func run(_ engine: Engine, fd: Int32, asOf: Int64? = nil,
                           progressInterval: Int = 1 << 20, onProgress: ((Int) -> Void)? = nil,
                           watch: PersonWatch? = nil,
                           maxRejects: Int? = nil,
                           checkpointEvery: Int = 0, onCheckpoint: ((Int) -> String?)? = nil,
                           onReject: (Rejection, UnsafeBufferPointer<UInt8>) -> Void) -> RunSummary {
        run(engine, reader: LineReader(fd: fd), asOf: asOf, progressInterval: progressInterval,
            onProgress: onProgress, watch: watch, maxRejects: maxRejects,
            checkpointEvery: checkpointEvery, onCheckpoint: onCheckpoint, onReject: onReject)
    }

    /// (A share of a body's lines, for one of the service's shards, is run
    /// by `run(_:body:lines:…)`, `LineShares.swift`.)
    package static func run(_ engine: Engine, reader: LineReader, asOf: Int64?,
                    progressInterval: Int = 1 << 20, onProgress: ((Int) -> Void)? = nil,
                    watch: PersonWatch? = nil,
                    maxRejects: Int? = nil,
                    checkpointEvery: Int = 0, onCheckpoint: ((Int) -> String?)? = nil,
                    onReject: (Rejection, UnsafeBufferPointer<UInt8>) -> Void) -> RunSummary {
        var applier = EventApplier(engine: engine, asOf: asOf)
        defer { applier.deallocate() }
        let personKey = applier.personKey
        var summary = RunSummary()
        // Two cursors run ahead of the reader: the far one asks for the
        // person's table slot, the near one (by then the slot is cached) for
        // their state, so the fetches overlap the lines in between.
        var far = LineReader.Lookahead(), near = LineReader.Lookahead()
        loop: while let line = reader.next() {
            if checkpointEvery > 0, let onCheckpoint, reader.lineNumber > 1, (reader.lineNumber - 1) % checkpointEvery == 0 {
                // Every line before this one is in the state; this one is not.
                if let error = onCheckpoint(reader.lineNumber - 1) {
                    summary.checkpointError = error
                    break
                }
            }
            far.lead -= 1; near.lead -= 1
            if let length = reader.skippedLength {
                let reason = LineReader.tooLong(length, limit: reader.maxLineBytes)
                summary.count(.rejected(reason))
                onReject(Rejection(line: reader.lineNumber, reason: reason), line)
                if let maxRejects, summary.rejected > maxRejects { summary.stoppedAtLine = reader.lineNumber; break loop }
                continue
            }
            while far.lead < Prefetch.slotDistance, let ahead = reader.advance(&far) {
                if let key = personKey.leadingPerson(ahead) { engine.prefetchSlot(key) }
            }
            while near.lead < Prefetch.stateDistance, let ahead = reader.advance(&near) {
                if let key = personKey.leadingPerson(ahead) { engine.prefetchState(key) }
            }
            if isBlank(line) { summary.blank += 1; continue }
            // The id's hash, computed once for the apply's look-up.
            let hash = personKey.leadingPerson(line).map { ByteTable.hash($0) }
            let number = reader.lineNumber
            if number % progressInterval == 0, let onProgress { onProgress(number) }
            let outcome = applier.apply(line: line, number: number, hash: hash)
            summary.count(outcome)
            switch outcome {
            case .rejected(let reason, _):
                onReject(Rejection(line: number, reason: reason), line)
                if let maxRejects, summary.rejected > maxRejects { summary.stoppedAtLine = number; break loop }
            case .applied(let e):
                if let watch, watch.matches(e.person) {
                    watch.record(engine, person: e.person, text: String(decoding: line, as: UTF8.self),
                                 line: engine.lineBase + number, time: e.time)
                }
            case .afterAsOf:
                break
            }
        }
        summary.readError = reader.readError
        return summary
    }

    @inline(__always)
    static func isBlank(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
        for c in line where c != 0x20 && c != 0x09 && c != 0x0D { return false }
        return true
    }

    /// Runs a stream held in memory (tests, the library API).
    public static func run(_ engine: Engine, text: String, asOf: Int64? = nil) -> (RunSummary, [Rejection]) {
        var rejections: [Rejection] = []
        let summary = run(engine, reader: LineReader(bytes: Array(text.utf8)), asOf: asOf) { r, _ in rejections.append(r) }
        return (summary, rejections)
    }
}
