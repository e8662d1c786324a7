/// What each applied event did, per person: which rules fired and what they
/// changed, and which `while` rules held afterwards. `rules test` failure
/// reports, the REPL and explanations all read it.
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
        /// Global rule indices with their rounded score change.
        public var fired: [(rule: Int, change: Int64)]
        /// `while` rules holding for this person right after the event.
        public var held: [Int]
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

    /// Every rule that fired (or held) on any event.
    var rulesInvolved: Set<Int> {
        var all = Set<Int>()
        for list in entries.values { for e in list { all.formUnion(e.fired.map(\.rule)); all.formUnion(e.held) } }
        return all
    }

    /// The person's events, each followed by what fired and what held:
    ///
    ///     rules/citizen.test.rules:14  2026-01-05 alice: speeding { … }   score 1000 → 995
    ///         fired rules/citizen.rules:34  speeding → -5   (-5)
    package func render(_ person: String, rules: [RuleSite]) -> [String] {
        (entries[person] ?? []).map { e in
            var lines = ["\(e.origin)  \(e.text)   score \(e.scoreBefore) → \(e.scoreAfter)"]
            for (rule, change) in e.fired {
                let site = rules[rule]
                let delta = change == 0 ? "" : "   (\(change > 0 ? "+" : "")\(change))"
                lines.append("    fired \(site.file):\(site.line)  \(site.text)\(delta)")
            }
            let summed = e.fired.reduce(Int64(0)) { $0 + $1.change }
            if e.scoreBefore + summed != e.scoreAfter {
                lines.append("    clamped: \(e.scoreBefore) \(summed < 0 ? "-" : "+") \(abs(summed)) = \(e.scoreBefore + summed), kept within the score's bounds at \(e.scoreAfter)")
            }
            for rule in e.held {
                lines.append("    holds \(rules[rule].file):\(rules[rule].line)  \(rules[rule].text)")
            }
            return lines.joined(separator: "\n")
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
    }

    struct Applied {
        var entry: Timeline.Entry
    }

    /// Applies `e`; the reason when it names something unknown or the
    /// engine rejects it. `origin` and `text` describe it in the timeline.
    package func apply(_ e: EventLiteral, origin: String, text: String) -> Result<Timeline.Entry, LiteralError> {
        var eventName = e.event.text
        let event = eventName.withUTF8({ program.eventTable.find($0) })
        if event == nil && !allowUnknownEvents {
            let help = Suggest.help(for: e.event.text, among: program.policy.events.map(\.name)) ?? "no rule or declaration names it"
            return .failure(LiteralError(span: e.event.span, message: "unknown event `\(e.event.text)`; \(help)"))
        }
        if let event, let declared = program.policy.events[event].declared {
            let names = declared.map { program.policy.fields[$0.field] }
            for (field, _) in e.fields where !names.contains(field.text) {
                let help = Suggest.help(for: field.text, among: names) ?? "its fields: \(names.isEmpty ? "none" : names.joined(separator: ", "))"
                return .failure(LiteralError(span: field.span, message: "event `\(e.event.text)` has no field `\(field.text)`; \(help)"))
            }
        }
        var named: Set<String> = []
        for field in e.fields where !named.insert(field.name.text).inserted {
            return .failure(LiteralError(span: e.span, message: "this event was rejected: field `\(field.name.text)` is given twice"))
        }
        let (_, line, _) = sources.location(e.span)
        if let rejection = EventApplier.apply(person: e.person.text, type: e.event.text, time: e.time,
                                              fields: e.fields.map { (key: $0.name.text, value: FieldValue($0.value)) },
                                              number: line, to: engine) {
            return .failure(LiteralError(span: e.span, message: "this event was rejected: \(rejection)"))
        }
        let before = engine.scoreBefore
        let after = engine.state(of: e.person.text, at: e.time)!.score
        let entry = Timeline.Entry(origin: origin, text: text, time: e.time, scoreBefore: before, scoreAfter: after,
                                   fired: engine.fired.map { ($0.rule.index, $0.amounts) },
                                   held: engine.stateRulesHolding(e.person.text, at: e.time))
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

    public init(person: String?, origin: @escaping (Int) -> String = { "<stdin>:\($0)" }) {
        key = person.map { Array($0.utf8) }
        self.origin = origin
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
        let after = engine.state(of: name, at: time)!.score
        let entry = Timeline.Entry(origin: origin(line), text: text(), time: time,
                                   scoreBefore: engine.scoreBefore, scoreAfter: after,
                                   fired: engine.fired.map { ($0.rule.index, $0.amounts) },
                                   held: engine.stateRulesHolding(name, at: time))
        timeline.record(name, entry)
    }
}
