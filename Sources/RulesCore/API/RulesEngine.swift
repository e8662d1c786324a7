#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Runs a ``Policy`` over events, one person's state at a time, exactly as
/// `rules run` does: the same rules fire, the same lines are rejected, the
/// same report comes out.
///
/// An engine has one owner at a time: use it from one thread or task, or
/// guard it; make one engine per thread to go parallel (the policy is
/// shared). It holds no global state.
///
/// ```swift
/// let engine = RulesEngine(policy: policy)
/// engine.apply(Event(person: "alice", type: "speeding", at: "2026-01-05T08:00:00Z")!)
/// engine.state(of: "alice")?.score   // 995
/// ```
public final class RulesEngine {
    /// The policy this engine runs.
    public let policy: Policy
    let engine: Engine
    private var parser: EventParser
    /// Every applied event per person, kept only when explaining.
    private var timeline: Timeline?
    private var sequence = 0

    /// `explaining: true` keeps each person's applied events, so that
    /// ``explanation(of:at:)`` can say which rule and which events hold
    /// each flag, denial and grant, since when (this costs memory for every
    /// event; leave it off for plain scoring).
    ///
    /// `trace` receives the audit trail as `rules run --trace` writes it
    /// (docs/TRACE.md): NDJSON records, one per state change, with the rule
    /// and the event behind it, in bytes as they are made. Call
    /// ``finishTrace(at:)`` when done, for the changes time alone makes.
    public init(policy: Policy, explaining: Bool = false, trace: (([UInt8]) -> Void)? = nil) {
        self.policy = policy
        engine = Engine(program: policy.program)
        parser = EventParser(program: policy.program)
        if explaining { timeline = Timeline() }
        if let trace {
            engine.enableTrace(write: trace)
        } else if explaining {
            engine.enableTrace { _ in }  // keeps since-when for `while` rules; writes nothing
        }
    }

    /// Ends the audit trail as of `time` (default: the latest event):
    /// `while` rules that start or stop holding because time passed, timed
    /// effects that end; then flushes it.
    public func finishTrace(at time: Date? = nil) {
        engine.finishTrace(asOf: time?.ticks)
    }

    /// An engine that continues from ``checkpoint()``'s bytes. Throws
    /// ``Checkpoint/Failure`` for a checkpoint of another policy, another
    /// version, or a damaged one.
    public convenience init(policy: Policy, resumingFrom checkpoint: [UInt8]) throws(Checkpoint.Failure) {
        self.init(policy: policy)
        if case .failure(let f) = Checkpoint.restore(checkpoint, into: [engine]) { throw f }
    }

    deinit { parser.deallocate() }

    /// What applying one event did.
    public enum Outcome: Sendable, Equatable {
        /// The rules that fired, in source order, with their score changes.
        case applied(fired: [FiredRule])
        /// The event was not applied; the reason is the one `rules run`
        /// prints (a missing or mistyped field, a time earlier than the
        /// person's previous event, …).
        case rejected(reason: String)
    }

    /// Applies one event, typed: no NDJSON is written or read. The same
    /// rules fire and the same events are rejected as when ``Event/ndjson``
    /// goes through ``apply(line:)``.
    @discardableResult
    public func apply(_ event: Event) -> Outcome {
        sequence += 1
        lastUnknownType = nil
        engine.beginEvent(line: sequence)
        guard !event.person.isEmpty else { return .rejected(reason: "\"citizen\" must not be empty") }
        let time = event.time.ticks
        guard time >= Timestamp.earliest && time <= Timestamp.latest else {
            return .rejected(reason: "invalid \"time\" \(event.time): the years 0001–9999 (UTC) only")
        }
        let program = policy.program
        // Field names and the type are names, as in a stream line.
        let names = event.fields.keys.sorted()
        var values: [LiteralValue] = []
        for name in names {
            switch event.fields[name]! {
            case .number(let n):
                guard n.isFinite else { return .rejected(reason: "field \(JSONWriter.quoted(name)) is not a finite number") }
                values.append(.number(n))
            case .string(let s): values.append(.string(s))
            case .bool(let b): values.append(.bool(b))
            }
        }
        var type = EventParser.joinedName(event.type)
        let eventId = type.withUTF8 { program.eventTable.find($0) }
        return LiteralFeeder.withStrings(values) { engineValues in
            for (k, name) in names.enumerated() {
                var key = EventParser.joinedName(name)
                if let id = key.withUTF8({ program.fieldTable.find($0) }), !engine.setField(id, engineValues[k]) {
                    return .rejected(reason: "duplicate key \(JSONWriter.quoted(name))")
                }
            }
            var person = event.person
            return person.withUTF8 { bytes in
                finish(person: bytes, event: eventId, time: time, type: type) { event.ndjson }
            }
        }
    }

    /// Applies one NDJSON line (one event, as `rules run` reads it); also
    /// says whose event it was, when the line names someone.
    @discardableResult
    public func apply(line text: String) -> (person: String?, outcome: Outcome) {
        var bytes = Array(text.utf8)
        if bytes.last == 0x0A { bytes.removeLast() }
        if bytes.last == 0x0D { bytes.removeLast() }
        var person: String? = nil
        let outcome = bytes.withUnsafeMutableBufferPointer { apply(line: UnsafeBufferPointer($0), text: text, person: &person) }
        return (person, outcome)
    }

    /// Applies events in order.
    @discardableResult
    public func apply(_ events: [Event]) -> [Outcome] { events.map { apply($0) } }

    /// Applies NDJSON text (one event per line), as `rules run` reads it.
    public func apply(ndjson text: String) -> (summary: RunSummary, rejections: [Rejection]) {
        var rejections: [Rejection] = []
        var summary = RunSummary()
        // The stream reader `rules run` uses: the same lines, blank lines and
        // length limit.
        let reader = LineReader(bytes: Array(text.utf8))
        while let line = reader.next() {
            func reject(_ reason: String) {
                summary.rejected += 1
                rejections.append(Rejection(line: reader.lineNumber, reason: reason))
            }
            if let length = reader.skippedLength { summary.read += 1; reject(LineReader.tooLong(length)); continue }
            if EventStream.isBlank(line) { summary.blank += 1; continue }
            summary.read += 1
            var person: String? = nil
            switch apply(line: line, text: String(decoding: line, as: UTF8.self), person: &person) {
            case .applied:
                summary.applied += 1
                if let type = lastUnknownType { summary.unknownTypes[type, default: 0] += 1 }
            case .rejected(let reason): reject(reason)
            }
        }
        return (summary, rejections)
    }

    /// The type of the last line applied, when no rule or declaration
    /// names it (the summary counts those by type).
    private var lastUnknownType: String? = nil

    private func apply(line: UnsafeBufferPointer<UInt8>, text: String, person who: inout String?) -> Outcome {
        sequence += 1
        lastUnknownType = nil
        engine.beginEvent(line: sequence)
        switch parser.parse(line, into: engine) {
        case .rejected(let reason): return .rejected(reason: reason)
        case .event(let e):
            who = String(decoding: e.person, as: UTF8.self)
            return finish(person: e.person, event: e.event, time: e.time, type: String(decoding: e.type, as: UTF8.self)) { text }
        }
    }

    /// The rest of applying an event whose fields are set, for lines and
    /// typed events alike: the engine applies it; what fired is reported
    /// and, when explaining, recorded (`text` says what the event was).
    private func finish(person: UnsafeBufferPointer<UInt8>, event: Int?, time: Int64, type: @autoclosure () -> String,
                        text: () -> String) -> Outcome {
        let before = timeline == nil ? 0 : (engine.score(of: person) ?? policy.program.policy.startScore)
        if let reason = engine.apply(person: person, event: event, time: time) { return .rejected(reason: reason) }
        if event == nil { lastUnknownType = type() }
        let sites = policy.rules
        let fired = engine.fired.map { FiredRule(rule: sites[$0.rule.index], scoreChange: $0.amounts) }
        if timeline != nil {
            let who = String(decoding: person, as: UTF8.self)
            let after = engine.score(of: person) ?? before
            timeline!.record(who, Timeline.Entry(origin: "event \(sequence)", text: text(), time: time,
                                                 scoreBefore: before, scoreAfter: after,
                                                 fired: engine.fired.map { ($0.rule.index, $0.amounts) },
                                                 held: engine.stateRulesHolding(who, at: time)))
        }
        return .applied(fired: fired)
    }

    /// The latest event time applied so far.
    public var clock: Date? { engine.clock.map(Date.init(ticks:)) }

    /// Everyone with an applied event, in byte order of their ids.
    public var people: [String] { engine.sortedPeople().map { engine.people.keyString($0) } }

    /// A person's state as of `time` (default: the latest event's time), as
    /// `rules run` reports it; nil if they have no applied event.
    public func state(of person: String, at time: Date? = nil) -> PersonState? {
        guard let t = time?.ticks ?? engine.clock, let r = engine.state(of: person, at: t) else { return nil }
        return PersonState(person: r.citizen, score: r.score, flags: r.flags, denied: r.denied, granted: r.granted)
    }

    /// Everyone's state as of `time`, in byte order of ids: `rules run`'s report.
    public func report(at time: Date? = nil) -> [PersonState] {
        people.compactMap { state(of: $0, at: time) }
    }

    /// The report as `rules run` prints it: one NDJSON line per person.
    public func reportNDJSON(at time: Date? = nil) -> String {
        var bytes: [UInt8] = []
        engine.writeReport(asOf: time?.ticks) { bytes += $0 }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Which rule and which events hold each of a person's flags, denials
    /// and grants, since and until when, and every event that changed
    /// anything — what `rules explain` prints (``PersonExplanation/lines``).
    /// Nil when the person has no applied event, or the engine was not made
    /// with `explaining: true`.
    public func explanation(of person: String, at time: Date? = nil) -> PersonExplanation? {
        guard let timeline, let t = time?.ticks ?? engine.clock else { return nil }
        return Explanation.explain(person, engine: engine, timeline: timeline, at: t)
    }

    /// The engine's whole state as bytes (``Checkpoint``); continue with
    /// ``init(policy:resumingFrom:)``.
    public func checkpoint() -> [UInt8] { Checkpoint.encode([engine], lines: sequence) }

    /// Notes on rules whose expressions failed (division by zero, a missing
    /// field), as `rules run` prints them at the end.
    public var notes: [String] { engine.evaluationNotes() }
}

/// A rule that fired on an event, and its score change (rounded).
public struct FiredRule: Sendable, Equatable {
    /// The rule: its file, line and text.
    public var rule: RuleSite
    /// Its score change on this event, rounded (0 for a rule with no score effect).
    public var scoreChange: Int64
}

/// One person's state: what `rules run` prints for them.
public struct PersonState: Sendable, Equatable {
    /// The person's id.
    public var person: String
    /// The score, within the policy's min and max.
    public var score: Int64
    /// Names in the joined form (`low_trust`), sorted by bytes.
    public var flags: [String]
    /// Privileges denied, then granted (a denial beats a grant of the same privilege).
    public var denied: [String]
    /// Privileges granted and not denied.
    public var granted: [String]
}
