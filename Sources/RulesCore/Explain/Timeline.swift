/// What each applied event did, per person: which rules fired, and every
/// change the engine made to the person's state (its typed trace records,
/// `TraceRecord`). `rules test` failure reports, the REPL, `rules explain`
/// and its JSON all read it; the text is rendered here, once.
public struct Timeline: Sendable {
    /// One applied event and what it did.
    public struct Entry: Sendable {
        /// Where the event came from (`FILE:LINE`) and how it was written.
        public var origin: String
        /// The event as written.
        public var text: String
        /// Its time (microseconds since 1970, `Timestamp.perSecond`).
        public var time: Int64
        /// The score before and after it.
        public var scoreBefore: Int64
        /// The score after it.
        public var scoreAfter: Int64
        /// Global indices of the event rules that fired, in source order
        /// (a rule fires even when it changes nothing).
        public var fired: [Int]
        /// What changed, in the engine's order: what time alone changed
        /// since the person's previous event (records without a line), then
        /// what this event's rules and the `while` rules did.
        package var changes: [TraceRecord]

        /// The end a fired rule gave what it set of `name` (a computed `for`
        /// is known from the event alone): the latest, if it set it twice;
        /// nil when until lifted.
        package func recordedEnd(rule: Int, _ kind: TargetKind, _ name: String) -> Int64? {
            var end: Int64? = nil
            // (A rule's own records: a timed rule's have no line.)
            for r in changes where r.rule == rule {
                if case .set(let k, let n, let until, _) = r.change, k == kind, n == name {
                    guard let until else { return nil }
                    end = max(end ?? .min, until)
                }
            }
            return end
        }

        /// A fired rule's score change (its `±EXPR`s, each rounded, summed).
        public func scoreChange(of rule: Int) -> Int64 {
            for r in changes where r.rule == rule && r.line != nil {
                if case .score(let change, _, _) = r.change { return change }
            }
            return 0
        }

        /// The lines under the event's own: each fired rule with its score
        /// change and what it set or lifted, a clamp, and each `while` rule
        /// that started or stopped holding:
        ///
        ///     fired rules/citizen.rules:45  unpaid debt → -10, flag debtor   (-10)
        ///         flag debtor
        ///     starts holding rules/citizen.rules:51  while low trust and debtor → deny rail
        public func lines(rules: [RuleSite]) -> [String] {
            var lines: [String] = []
            func site(_ rule: Int?) -> String { rule.map { rules[$0].shown } ?? "" }
            for r in changes where r.line == nil { lines.append(r.timePassedText(rules: rules)) }
            for rule in fired {
                let change = scoreChange(of: rule)
                lines.append("fired \(site(rule))\(change == 0 ? "" : "   (\(change > 0 ? "+" : "")\(change))")")
                let effects = changes.filter { $0.rule == rule && $0.line != nil }.compactMap(\.effectText)
                if !effects.isEmpty { lines.append("    " + effects.joined(separator: "; ")) }
            }
            for r in changes where r.line != nil {
                switch r.change {
                case .clamp(let before, let after):
                    let summed = before - scoreBefore
                    lines.append("clamped: \(scoreBefore) \(summed < 0 ? "-" : "+") \(abs(summed)) = \(before), kept within the score's bounds at \(after)")
                case .start, .stop:
                    lines.append(r.holdingText + site(r.rule))
                case .retract(let target, let reason, let before, let after, let remaining):
                    lines.append("score \(before) → \(after) after event \(target) was retracted\(reason.map { ": \($0)" } ?? "")"
                                 + (remaining == 0 ? "; none of their events stands" : ""))
                    lines += correctedEffects
                case .late(let before, let after):
                    lines.append("score \(before) → \(after) with this event applied in time order (it arrived after later ones)")
                    lines += correctedEffects
                default: break
                }
            }
            return lines
        }

        /// What a correction changed of event rules' effects (records with
        /// no rule): `no longer deny driving; now deny driving until …`.
        private var correctedEffects: [String] {
            let texts = changes.filter { $0.rule == nil && $0.line != nil }.compactMap { r -> String? in
                switch r.change {
                case .lift(let kind, let name, let reason): return "no longer \(kind.setVerb) \(name)" + (reason.map { " because \($0)" } ?? "")
                case .set: return r.effectText.map { "now " + $0 }
                default: return nil
                }
            }
            return texts.isEmpty ? [] : ["    " + texts.joined(separator: "; ")]
        }
    }

    /// Each person's events, in order.
    public private(set) var entries: [String: [Entry]] = [:]

    /// An empty timeline.
    public init() {}

    /// Everyone with an event, in byte order of ids.
    public var people: [String] { entries.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) } }

    package mutating func record(_ person: String, _ entry: Entry) {
        entries[person, default: []].append(entry)
    }

    /// The person's events, each followed by what it did:
    ///
    ///     rules/citizen.test.rules:14  2026-01-05 alice: speeding { … }   score 1000 → 995
    ///         fired rules/citizen.rules:34  speeding → -5   (-5)
    package func render(_ person: String, rules: [RuleSite]) -> [String] {
        (entries[person] ?? []).map { e in
            (["\(e.origin)  \(e.text)   score \(e.scoreBefore) → \(e.scoreAfter)"] + e.lines(rules: rules).map { "    " + $0 })
                .joined(separator: "\n")
        }
    }
}

extension TraceRecord {
    /// `flag debtor`, `deny travel until 2026-07-03T00:00:00Z`, `clear
    /// debtor`: what a set or lift record did, in the language's words.
    var effectText: String? {
        switch change {
        case .set(let kind, let name, let until, let reason):
            return "\(kind.setVerb) \(name)" + (reason.map { " because \($0)" } ?? "") + (until.map { " until \(Timestamp.format($0))" } ?? "")
        case .lift(let kind, let name, let reason):
            return "\(kind.liftVerb) \(name)" + (reason.map { " because \($0)" } ?? "")
        case .attribute(let name, let before, let after):
            return "set \(name) to \(after) (was \(before))"
        default:
            return nil
        }
    }

    /// `as time passed, at T: stops holding RULE`: a change no event made.
    func timePassedText(rules: [RuleSite]) -> String {
        let site = rule.map { rules[$0].shown } ?? ""
        return "as time passed, at \(Timestamp.format(time)): \(holdingText)\(site)"
    }

    /// `starts holding `, `stops holding ` for a `while` rule's record.
    var holdingText: String {
        switch change {
        case .start: return "starts holding "
        case .stop: return "stops holding "
        default: return ""
        }
    }
}

/// Applies event literals (tests, the REPL) to an engine, checking their
/// names against the policy first and recording what they did.
package struct LiteralFeeder {
    let program: Program
    let sources: SourceSet
    let engine: Engine
    /// The REPL lets an event of a type no rule names through (nothing
    /// fires); a test treats it as a typo.
    package var allowUnknownEvents = false

    package init(program: Program, sources: SourceSet, engine: Engine, allowUnknownEvents: Bool = false) {
        self.program = program
        self.sources = sources
        self.engine = engine
        self.allowUnknownEvents = allowUnknownEvents
        engine.keepTraceChanges()
    }

    struct Applied {
        var entry: Timeline.Entry
    }

    /// Applies `e`; the reason when it names something unknown or the
    /// engine rejects it. `origin` and `text` describe it in the timeline.
    package func apply(_ e: EventLiteral, origin: String, text: String) -> Result<Timeline.Entry, LiteralError> {
        var eventName = e.event.text
        let event = eventName.withUTF8({ program.eventTable.find($0) })
        // With kept history a literal may carry an id and be a retraction
        // (`retract { target: "t-1", reason: "…" }`), as a line may.
        let isRetraction = engine.history != nil && e.event.text == Checker.retractType
        if event == nil && !allowUnknownEvents && !isRetraction {
            let help = Suggest.help(for: e.event.text, among: program.policy.events.map(\.name)) ?? "no rule or declaration names it"
            return .failure(LiteralError(span: e.event.span, message: "unknown event `\(e.event.text)`; \(help)"))
        }
        if let event, let declared = program.policy.events[event].declared {
            let names = declared.map { program.policy.fields[$0.field] }
            for (field, _) in e.fields where !names.contains(field.text) && !(engine.history != nil && field.text == "id") {
                let help = Suggest.help(for: field.text, among: names) ?? "its fields: \(names.isEmpty ? "none" : names.joined(separator: ", "))"
                return .failure(LiteralError(span: field.span, message: "event `\(e.event.text)` has no field `\(field.text)`; \(help)"))
            }
        }
        var named: Set<String> = []
        for field in e.fields where !named.insert(field.name.text).inserted {
            return .failure(LiteralError(span: e.span, message: "this event was rejected: field `\(field.name.text)` is given twice"))
        }
        let (_, line, _) = sources.location(e.span)
        let fields = e.fields.map { (key: $0.name.text, value: FieldValue($0.value)) }
        let rejection = engine.history == nil
            ? EventApplier.apply(person: e.person.text, type: e.event.text, time: e.time, fields: fields, number: line, to: engine)
            : engine.apply(line: StreamLine.make(personKey: engine.personKey, person: e.person.text, type: e.event.text,
                                                 time: e.time, fields: fields), number: line)
        if let rejection {
            return .failure(LiteralError(span: e.span, message: "this \(isRetraction ? "retraction" : "event") was rejected: \(rejection)"))
        }
        let before = engine.scoreBefore
        var person = e.person.text
        let after = person.withUTF8 { engine.score(of: $0) }!
        let entry = Timeline.Entry(origin: origin, text: text, time: e.time, scoreBefore: before, scoreAfter: after,
                                   fired: engine.fired.map { $0.rule.index }, changes: engine.takeChanges(of: e.person.text))
        return .success(entry)
    }

    package struct LiteralError: Error {
        package var span: Span
        package var message: String
    }
}

/// Follows one person (or everyone) through a stream, recording what each
/// of their events did; everyone else costs one byte comparison per event.
package final class PersonWatch {
    /// nil: everyone (the library's explaining engine).
    let key: [UInt8]?
    /// Names an event by its line number in the whole stream:
    /// `events.ndjson:12`, `event 12`.
    private let origin: (Int) -> String
    public private(set) var timeline = Timeline()

    /// Turns on `engine`'s trace (or its keeping of changes): each entry
    /// lists what its event changed.
    public init(person: String?, engine: Engine, origin: @escaping (Int) -> String = { "<stdin>:\($0)" }) {
        key = person.map { Array($0.utf8) }
        self.origin = origin
        engine.keepTraceChanges(only: person)
    }

    @inline(__always)
    func matches(_ person: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let key else { return true }
        return person.count == key.count && person.elementsEqual(key)
    }

    /// Records the event the engine just applied: line `line` of the
    /// stream, `text`.
    func record(_ engine: Engine, person: UnsafeBufferPointer<UInt8>, text: @autoclosure () -> String, line: Int, time: Int64) {
        let name = String(decoding: person, as: UTF8.self)
        let after = engine.score(of: person)!  // a person all of whose events were retracted has one too
        let entry = Timeline.Entry(origin: origin(line), text: text(), time: time,
                                   scoreBefore: engine.scoreBefore, scoreAfter: after,
                                   fired: engine.fired.map { $0.rule.index }, changes: engine.takeChanges(of: name))
        timeline.record(name, entry)
    }
}
