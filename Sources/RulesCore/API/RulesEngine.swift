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
    private var applier: EventApplier
    /// Every applied event per person, kept only when explaining.
    private let watch: PersonWatch?
    /// Events and lines taken so far (the next is numbered one more).
    @exclusivity(unchecked) private var sequence = 0
    /// By the first rule that fired and whether one or two did: the outcome
    /// of the last such event, and which rules with which score changes.
    /// Most events fire what an earlier event fired, with the same changes:
    /// their outcome is shared, not allocated per event.
    @exclusivity(unchecked) private var sharedOutcomes: [[FiredRule]?]
    @exclusivity(unchecked) private var sharedKeys: [FiredKey]

    private struct FiredKey: Equatable {
        var second: Int         // the second rule that fired; -1 for none
        var amount: Int64
        var secondAmount: Int64
        /// What a `set score to` of either gave.
        var setTo: Int64? = nil
        var secondSetTo: Int64? = nil
        static let none = FiredKey(second: -2, amount: 0, secondAmount: 0)
    }

    /// `explaining: true` keeps each person's applied events, so that
    /// ``explanation(of:at:)`` can say which rule and which events hold
    /// each flag, denial and grant, since when (this costs memory for every
    /// event; leave it off for plain scoring).
    ///
    /// `trace` receives the audit trail as `rules run --trace` writes it
    /// (docs/TRACE.md): NDJSON records, one per state change, with the rule
    /// and the event behind it, in bytes as they are made. Call
    /// ``finishTrace(at:)`` when done, for the changes time alone makes.
    ///
    /// `corrections` keeps each person's events for a while, so that
    /// ``retract(person:target:at:reason:)`` can take one back and late
    /// events are applied in time order (docs/LANGUAGE.md, "Corrections";
    /// `rules run --retain --lateness`). Typed events then go through their
    /// NDJSON line, which is what is kept.
    public convenience init(policy: Policy, explaining: Bool = false, trace: (([UInt8]) -> Void)? = nil,
                            corrections: Corrections? = nil) {
        self.init(policy: policy, key: .citizen, explaining: explaining, trace: trace, corrections: corrections)
    }

    /// The same, for streams that name the person by another key
    /// (`rules run --person-key user`): NDJSON lines are read by it and the
    /// report is written with it. Throws for a key that cannot be one
    /// (empty, `type`, `time`, `id`) or that the policy reads as a field.
    public convenience init(policy: Policy, personKey: String, explaining: Bool = false,
                            trace: (([UInt8]) -> Void)? = nil, corrections: Corrections? = nil) throws(PersonKeyError) {
        let key = try PersonKey.named(personKey, for: policy.program).get()
        self.init(policy: policy, key: key, explaining: explaining, trace: trace, corrections: corrections)
    }

    private init(policy: Policy, key: PersonKey, explaining: Bool, trace: (([UInt8]) -> Void)?, corrections: Corrections?) {
        self.policy = policy
        engine = Engine(program: policy.program, personKey: key)
        if let corrections { engine.enableCorrections(corrections) }
        applier = EventApplier(engine: engine)
        sharedOutcomes = Array(repeating: nil, count: 2 * policy.rules.count)
        sharedKeys = Array(repeating: .none, count: 2 * policy.rules.count)
        if let trace { engine.enableTrace(write: trace) }
        // Explaining keeps since-when for `while` rules and what each event
        // changed (the watch turns the trace on for it).
        watch = explaining ? PersonWatch(person: nil, engine: engine, origin: { "event \($0)" }) : nil
    }

    /// Ends the audit trail as of `time` (default: the latest event): timed
    /// rules that fire, `while` rules that start or stop holding because
    /// time passed, timed effects that end; then flushes it. Call it last:
    /// the timed rules' firings are kept in the engine.
    public func finishTrace(at time: Date? = nil) {
        engine.finishTrace(asOf: time?.ticks)
    }

    /// An engine that continues from ``checkpoint()``'s bytes. Throws
    /// ``Checkpoint/Failure`` for a checkpoint of another policy, another
    /// version, or a damaged one.
    ///
    /// A checkpoint saved under another policy resumes too (docs/LANGUAGE.md,
    /// "Changing the policy"): what people have carries over by name, and
    /// ``resumeNotes`` says what did not.
    public convenience init(policy: Policy, resumingFrom checkpoint: [UInt8]) throws(Checkpoint.Failure) {
        self.init(policy: policy)
        switch Checkpoint.restore(checkpoint, into: [engine]) {
        case .success(let info): resumeNotes = info.notes
        case .failure(let f): throw f
        }
    }

    /// What did not carry over when this engine resumed from a checkpoint
    /// saved under another policy, one line each; empty otherwise.
    public private(set) var resumeNotes: [String] = []

    /// The same, for an engine reading streams by another person key
    /// (``init(policy:personKey:explaining:trace:)``). A checkpoint holds
    /// people by id, not by key, so the key may differ from the one the
    /// saving engine read. Throws ``PersonKeyError`` for a key that cannot
    /// be one, ``Checkpoint/Failure`` for a checkpoint that does not fit.
    public convenience init(policy: Policy, personKey: String, resumingFrom checkpoint: [UInt8]) throws {
        try self.init(policy: policy, personKey: personKey)
        switch Checkpoint.restore(checkpoint, into: [engine]) {
        case .success(let info): resumeNotes = info.notes
        case .failure(let f): throw f
        }
    }

    deinit { applier.deallocate() }

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
        // With kept history the line is what is kept and replayed.
        if engine.history != nil { return apply(line: event.line(personKey: engine.personKey)).outcome }
        sequence += 1
        var person = event.person
        guard !person.isEmpty else { return .rejected(reason: "\(engine.personKey.quoted) must not be empty") }
        let time = event.time.ticks
        guard time >= Timestamp.earliest && time <= Timestamp.latest else {
            return .rejected(reason: "invalid \"time\" \(event.time): the years 0001–9999 (UTC) only")
        }
        if let reason = EventApplier.apply(person: event.person, type: event.type, time: time, fields: event.fields,
                                           number: sequence, to: engine) {
            return .rejected(reason: reason)
        }
        // The line is written only for an explaining engine; a closure that
        // wrote it would copy the whole event on every call.
        let text = watch == nil ? "" : event.line(personKey: engine.personKey)
        return person.withUTF8 { applied(person: $0, time: time, text: text) }
    }

    /// Takes back `person`'s event with id `target` at `time`, as a
    /// retraction line does: their state becomes what it would be had that
    /// event never been applied. Rejected (with the reason) without
    /// `corrections`, for an unknown or already retracted id, or one older
    /// than the kept history.
    @discardableResult
    public func retract(person: String, target: String, at time: Date, reason: String? = nil) -> Outcome {
        apply(line: StreamLine.retraction(personKey: engine.personKey, person: person, target: target,
                                          time: time.ticks, reason: reason)).outcome
    }

    /// Applies one NDJSON line (one event, as `rules run` reads it); also
    /// says whose event it was, when the line names someone.
    @discardableResult
    public func apply(line text: String) -> (person: String?, outcome: Outcome) {
        var bytes = Array(text.utf8)
        if bytes.last == 0x0A { bytes.removeLast() }
        if bytes.last == 0x0D { bytes.removeLast() }
        sequence += 1
        return bytes.withUnsafeBufferPointer { line in
            switch applier.apply(line: line, number: sequence) {
            case .rejected(let reason, let e):
                return (e.map { String(decoding: $0.person, as: UTF8.self) }, .rejected(reason: reason))
            case .applied(let e):
                return (String(decoding: e.person, as: UTF8.self), applied(person: e.person, time: e.time, text: text))
            case .afterAsOf:
                preconditionFailure("the library's applier has no as-of")
            }
        }
    }

    /// Applies events in order: the same as applying each, and faster on
    /// many people, since it asks for the state of people a few events
    /// ahead while it applies the one at hand (as `rules run` does with
    /// the lines ahead of the reader).
    @discardableResult
    public func apply(_ events: [Event]) -> [Outcome] {
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(events.count)
        for k in events.indices {
            if k + Prefetch.slotDistance < events.endIndex {
                events[k + Prefetch.slotDistance].person.utf8.withContiguousStorageIfAvailable { engine.prefetchSlot($0) }
            }
            if k + Prefetch.stateDistance < events.endIndex {
                events[k + Prefetch.stateDistance].person.utf8.withContiguousStorageIfAvailable { engine.prefetchState($0) }
            }
            outcomes.append(apply(events[k]))
        }
        return outcomes
    }

    /// Applies NDJSON text (one event per line), as `rules run` reads it:
    /// the same reader, the same driver, the same summary.
    public func apply(ndjson text: String) -> (summary: RunSummary, rejections: [Rejection]) {
        var rejections: [Rejection] = []
        engine.lineBase = sequence
        defer { engine.lineBase = 0 }
        let summary = EventStream.run(engine, reader: LineReader(bytes: Array(text.utf8)), asOf: nil, watch: watch) { r, _ in
            rejections.append(r)
        }
        sequence += summary.lines
        return (summary, rejections)
    }

    /// What fired on the event just applied; recorded when explaining.
    private func applied(person: UnsafeBufferPointer<UInt8>, time: Int64, text: String) -> Outcome {
        watch?.record(engine, person: person, text: text, line: sequence, time: time)
        let count = engine.firedRuleCount
        if count == 0 { return .applied(fired: []) }
        guard count <= 2 else { return .applied(fired: firedRules(count)) }
        let (first, amount, setTo) = engine.firedRule(0)
        let (second, secondAmount, secondSetTo) = count == 2 ? engine.firedRule(1) : (-1, 0, nil)
        let key = FiredKey(second: second, amount: amount, secondAmount: secondAmount, setTo: setTo, secondSetTo: secondSetTo)
        let place = 2 * first + count - 1
        if sharedKeys[place] == key, let shared = sharedOutcomes[place] { return .applied(fired: shared) }
        let made = firedRules(count)
        sharedOutcomes[place] = made
        sharedKeys[place] = key
        return .applied(fired: made)
    }

    /// The rules that fired on the event just applied, in source order.
    private func firedRules(_ count: Int) -> [FiredRule] {
        let sites = policy.rules
        return (0..<count).map { k in
            let (index, amount, setTo) = engine.firedRule(k)
            return FiredRule(rule: sites[index], scoreChange: amount, scoreSetTo: setTo)
        }
    }

    /// The latest event time applied so far.
    public var clock: Date? { engine.clock.map(Date.init(ticks:)) }

    /// Everyone with an applied event, in byte order of their ids.
    public var people: [String] { engine.sortedPeople().map { engine.people.keyString($0) } }

    /// A person's state as of `time` (default: the latest event's time), as
    /// `rules run` reports it; nil if they have no applied event.
    public func state(of person: String, at time: Date? = nil) -> PersonState? {
        guard let t = time?.ticks ?? engine.clock, let r = engine.state(of: person, at: t) else { return nil }
        return PersonState(person: r.citizen, score: r.score, flags: r.flags, denied: r.denied, granted: r.granted, outputs: r.outputs, attributes: r.attributes)
    }

    /// Everyone's state as of `time`, in byte order of ids: `rules run`'s report.
    public func report(at time: Date? = nil) -> [PersonState] {
        people.compactMap { state(of: $0, at: time) }
    }

    /// The report as `rules run` prints it: one NDJSON line per person.
    public func reportNDJSON(at time: Date? = nil) -> String {
        var bytes: [UInt8] = []
        engine.writeReport(asOf: time?.ticks) { bytes.append(bytes: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Which rule and which events hold each of a person's flags, denials
    /// and grants, since and until when, and every event that changed
    /// anything — what `rules explain` prints (``PersonExplanation/lines``).
    /// Nil when the person has no applied event, or the engine was not made
    /// with `explaining: true`.
    public func explanation(of person: String, at time: Date? = nil) -> PersonExplanation? {
        guard let watch, let t = time?.ticks ?? engine.clock else { return nil }
        return Explanation.explain(person, engine: engine, timeline: watch.timeline, at: t)
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
    /// Its score change on this event, rounded (0 for a rule with no score
    /// effect); after its `set score to`, if it has one.
    public var scoreChange: Int64
    /// What its `set score to` set the score to (before its later changes,
    /// and before `min`/`max`); nil for a rule without one.
    public var scoreSetTo: Int64? = nil

    public init(rule: RuleSite, scoreChange: Int64, scoreSetTo: Int64? = nil) {
        self.rule = rule
        self.scoreChange = scoreChange
        self.scoreSetTo = scoreSetTo
    }
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
    /// The policy's outputs (`output NAME = …`) in its order, each with its
    /// value as of the same time (nil: none; the report shows null).
    public var outputs: [ReportOutput] = []
    /// The policy's attributes (`attribute NAME = …`) in its order, with
    /// each one's value.
    public var attributes: [ReportAttribute] = []
}
