/// A readable account of one person's state: their score, and for every
/// flag, denial and grant, which rule holds it, because of which events,
/// since when and until when; then every event that changed anything.
/// One implementation, used by the REPL's `:explain` (and `rules explain`).
/// One person's state as of a time, with the reason for every part of it.
public struct PersonExplanation: Sendable {
    /// A `while` rule that holds an item now.
    public struct Holder: Sendable {
        /// A `while` rule holding it, with its condition and values.
        public var rule: RuleSite
        /// Its condition with the values that make it true (`score (875) < 900`).
        public var because: String
        /// When it started holding, if the audit trail was on.
        public var since: Int64?
    }

    /// An event rule that set an item, still in force.
    public struct Setter: Sendable {
        /// An event rule whose effect is in force, and the event it fired on.
        public var rule: RuleSite
        /// Where the event came from (a stream line, a test, the REPL).
        public var origin: String
        /// The event as written.
        public var event: String
        /// A denial's reason (`deny travel because debt`), if it has one.
        public var reason: String? = nil
    }

    /// One flag, denial or grant, and why it holds.
    public struct Item: Sendable {
        /// Flag, denied or granted.
        public var kind: TargetKind
        /// Its name, joined (`low_trust`).
        public var name: String
        /// The `while` rules holding it.
        public var heldBy: [Holder]
        /// The event rules whose effect on it is in force.
        public var setBy: [Setter]
        /// When the event rules' effect began and ends (nil: until lifted).
        public var since: Int64?
        /// When the event rules' effect ends (nil: until lifted, or held by a `while` rule).
        public var until: Int64?
    }

    /// One output (`output credit limit = …`): its value (nil: none, the
    /// report shows null), its expression and what it read.
    public struct Output: Sendable {
        public var name: String
        public var value: Double?
        /// `max(0, score - 400) * 2 with score (522)`.
        public var because: String
    }

    /// One attribute (`attribute region = …`): its value, and the event
    /// rule and event that set it last (none: its start value).
    public struct Attribute: Sendable {
        public var name: String
        /// As the language writes it: `"north"`, `17`, `true`.
        public var value: String
        public var setBy: Setter?
    }

    /// Whose state.
    public var person: String
    /// As of when (microseconds since 1970, `Timestamp.perSecond`).
    public var asOf: Int64
    /// The score then.
    public var score: Int64
    /// Every flag, denial and grant, with its reasons.
    public var items: [Item]
    /// The policy's outputs, in its order (none: the account has no such part).
    public var outputs: [Output] = []
    /// The policy's attributes, in its order (none: no such part).
    public var attributes: [Attribute] = []
    /// Every event of the person, with what it did.
    public var events: [Timeline.Entry]
    /// What time alone changed after their latest event, up to `asOf`
    /// (`while` rules that started or stopped holding).
    package var later: [TraceRecord] = []
    /// The policy's rules, by the engine's numbering.
    public var rules: [RuleSite]

    /// The readable account.
    public var lines: [String] {
        var lines = ["\(person) as of \(Timestamp.format(asOf)): score \(score)"]
        for kind in TargetKind.allCases {
            let label = kind.reportKey
            let mine = items.filter { $0.kind == kind }
            if mine.isEmpty { lines.append("  \(label): none"); continue }
            lines.append("  \(label):")
            for item in mine {
                lines.append("    \(item.name)")
                for h in item.heldBy {
                    lines.append("      held by \(h.rule.shown)")
                    lines.append("        because \(h.because)")
                    if let since = h.since {
                        lines.append("        since \(Timestamp.format(since)), for as long as that holds")
                    }
                }
                for s in item.setBy {
                    lines.append("      set by \(s.rule.shown)" + (s.reason.map { "  (because \($0))" } ?? ""))
                    lines.append(s.event.isEmpty ? "        on \(s.origin)" : "        on \(s.origin)  \(s.event)")
                }
                if let since = item.since {
                    let until = item.until.map { "until \(Timestamp.format($0))" } ?? "until lifted"
                    lines.append("      in force since \(Timestamp.format(since)), \(until)")
                }
            }
        }
        if !attributes.isEmpty {
            lines.append("  attributes:")
            for a in attributes {
                lines.append("    \(a.name) \(a.value)")
                if let s = a.setBy {
                    lines.append("      set by \(s.rule.shown)")
                    lines.append(s.event.isEmpty ? "        on \(s.origin)" : "        on \(s.origin)  \(s.event)")
                } else {
                    lines.append("      its start value: no rule has set it")
                }
            }
        }
        if !outputs.isEmpty {
            lines.append("  outputs:")
            for o in outputs { lines.append("    \(o.name) \(o.value.map(Arithmetic.format) ?? "null") = \(o.because)") }
        }
        if !events.isEmpty {
            lines.append("  events:")
            var timeline = Timeline()
            for e in events { timeline.record(person, e) }
            for entry in timeline.render(person, rules: rules) {
                lines += entry.split(separator: "\n").map { "    " + $0 }
            }
        }
        lines += later.map { "  " + $0.timePassedText(rules: rules) }
        return lines
    }

    /// The same account as one JSON object (`rules explain --format json`).
    public var json: String {
        func q(_ s: String) -> String { JSONWriter.quoted(s) }
        func site(_ r: RuleSite) -> String {
            #"{"rule":\#(q("\(r.file):\(r.line)")),\#(r.name.map { #""rule_name":\#(q($0)),"# } ?? "")"source":\#(q(r.text))"#
        }
        let list = items.map { item -> String in
            let held = item.heldBy.map { h in
                site(h.rule) + #","because":\#(q(h.because)),"since":\#(h.since.map { q(Timestamp.format($0)) } ?? "null")}"#
            }.joined(separator: ",")
            let set = item.setBy.map { s in
                site(s.rule) + (s.reason.map { #","reason":\#(q($0))"# } ?? "") + #","event":\#(q(s.origin)),"input":\#(q(s.event))}"#
            }.joined(separator: ",")
            let since = item.since.map { q(Timestamp.format($0)) } ?? "null"
            let until = item.until.map { q(Timestamp.format($0)) } ?? "null"
            return #"{"kind":"\#(item.kind.rawValue)","name":\#(q(item.name)),"held_by":[\#(held)],"set_by":[\#(set)],"since":\#(since),"until":\#(until)}"#
        }.joined(separator: ",")
        let evs = events.map { e -> String in
            let fired = e.fired.map { site(rules[$0]) + #","change":\#(e.scoreChange(of: $0))}"# }.joined(separator: ",")
            // The trail's records (docs/TRACE.md), without what the event
            // itself says: the rule, the time when time alone made it, the
            // effect and its fields.
            let changes = e.changes.map { r -> String in
                let rule = r.rule.map { #""rule":\#(q("\(rules[$0].file):\(rules[$0].line)")),"# } ?? ""
                let time = r.line == nil ? #""time":\#(q(Timestamp.format(r.time))),"# : ""
                return "{" + rule + time + TraceRecord.JSON.fields(r.change) + "}"
            }.joined(separator: ",")
            return #"{"event":\#(q(e.origin)),"input":\#(q(e.text)),"time":\#(q(Timestamp.format(e.time))),"score_before":\#(e.scoreBefore),"score_after":\#(e.scoreAfter),"fired":[\#(fired)],"changes":[\#(changes)]}"#
        }.joined(separator: ",")
        let attrs = attributes.isEmpty ? "" : #","attributes":["# + attributes.map { a in
            let set = a.setBy.map { site($0.rule) + #","event":\#(q($0.origin)),"input":\#(q($0.event))}"# } ?? "null"
            return #"{"name":\#(q(a.name)),"value":\#(a.value),"set_by":\#(set)}"#
        }.joined(separator: ",") + "]"
        // Only a policy with outputs has the key: other accounts read as before.
        let outs = outputs.isEmpty ? "" : #","outputs":["# + outputs.map { o in
            #"{"name":\#(q(o.name)),"value":\#(o.value.map(Arithmetic.format) ?? "null"),"because":\#(q(o.because))}"#
        }.joined(separator: ",") + "]"
        return #"{"citizen":\#(q(person)),"as_of":\#(q(Timestamp.format(asOf))),"score":\#(score),"state":[\#(list)]\#(attrs)\#(outs),"events":[\#(evs)]}"#
    }
}

/// A readable account of one person's state: their score, and for every
/// flag, denial and grant, which rule holds it, because of which events,
/// since when and until when; then every event that changed anything.
/// One implementation, used by the REPL's `:explain` and `rules explain`.
package enum Explanation {
    public static func account(of person: String, engine: Engine, timeline: Timeline, at time: Int64) -> [String]? {
        explain(person, engine: engine, timeline: timeline, at: time)?.lines
    }

    public static func explain(_ person: String, engine: Engine, timeline: Timeline, at time: Int64) -> PersonExplanation? {
        guard let state = engine.state(of: person, at: time) else { return nil }
        let program = engine.program
        let rules = RuleSite.all(in: program)
        let holding = Set(engine.stateRulesHolding(person, at: time))
        let pending = engine.timedFirings(of: person, at: time)
        let entries = Self.withTimedFirings(timeline.entries[person] ?? [], pending: pending, program: program)
        let index = engine.personIndex(person)!
        // The trail knows since when each `while` rule holds. (Timed rules
        // are not fired for good here: a person's later line may still come
        // before their deadlines — whoever is done with the stream fires
        // them first, as `rules explain` does.)
        engine.finishTrace(asOf: time, firingTimers: false)
        let since = (engine.observer as? Tracer)?.holdingSince[index] ?? [:]
        engine.context.focus(person: index, now: time)
        let values = ConditionValues(program: program, context: engine.context)
        var items: [PersonExplanation.Item] = []
        for (kind, names) in [(TargetKind.flag, state.flags), (.deny, state.denied), (.grant, state.granted)] {
            for name in names {
                items.append(item(kind, name, program: program, rules: rules, entries: entries, holding: holding, at: time,
                                  values: values, since: since))
            }
        }
        var explained = PersonExplanation(person: person, asOf: time, score: state.score, items: items, events: timeline.entries[person] ?? [],
                                          later: engine.pendingChanges(of: person).filter { $0.line == nil } + pending, rules: rules)
        for (k, attribute) in program.policy.attributes.enumerated() {
            // The last event whose rule set it (the trail's records).
            var setBy: PersonExplanation.Setter? = nil
            for entry in entries {
                for r in entry.changes {
                    if case .attribute(let name, _, _) = r.change, name == attribute.name, let rule = r.rule {
                        setBy = .init(rule: rules[rule], origin: entry.origin, event: entry.text)
                    }
                }
            }
            explained.attributes.append(.init(name: attribute.name,
                                              value: AttributeWord.text(engine.store.attribute(index, k), as: attribute.type), setBy: setBy))
        }
        engine.context.focus(person: index, now: time)
        engine.context.evaluateStateRules()
        for (output, value) in zip(program.policy.outputs, state.outputs) {
            let text = program.policy.sources.files[output.expr.span.file].text(output.expr.span)
            let inputs = values.inputs(output.expr)
            var because = inputs == ["\(text) (\(values.value(output.expr)))"] ? text
                : text + (inputs.isEmpty ? "" : " with " + inputs.joined(separator: ", "))
            if value.value == nil { because += "; \(values.value(output.expr))" }
            explained.outputs.append(.init(name: output.name, value: value.value, because: because))
        }
        return explained
    }

    /// Why `name` is set: the `while` rules holding it now, and the event
    /// rules whose effect on it is still in force (since the last lift).
    private static func item(_ kind: TargetKind, _ name: String, program: Program, rules: [RuleSite],
                             entries: [Timeline.Entry], holding: Set<Int>, at time: Int64, values: ConditionValues,
                             since holdSince: [Int: Int64]) -> PersonExplanation.Item {
        var item = PersonExplanation.Item(kind: kind, name: name, heldBy: [], setBy: [], since: nil, until: nil)
        guard let id = program.policy.names(of: kind).firstIndex(of: name) else { return item }
        for (k, rule) in program.policy.stateRules.enumerated() {
            let index = program.policy.eventRules.count + k
            if holding.contains(index), rule.effects.contains(where: { $0.kind == kind && $0.name == id }) {
                item.heldBy.append(.init(rule: rules[index], because: values.render(rule.ast.condition), since: holdSince[index]))
            }
        }
        // Each denial for a reason is its own (lifted on its own): the
        // item is in force since the earliest of those in force, until the
        // latest end.
        let keys: [Int?] = [nil] + (kind == .deny ? program.reasonSlots[id].map { Optional($0.reason) } : [])
        var latest = Int64.min
        for key in keys {
            let (since, end, _) = eventRuleHistory(kind, id, reason: .only(key), program: program, entries: entries)
            guard end > time, let first = since.first else { continue }
            let reason = key.map { program.policy.denialReasons[$0] }
            item.setBy += since.map { .init(rule: rules[$0.rule], origin: $0.entry.origin, event: $0.entry.text, reason: reason) }
            item.since = min(item.since ?? .max, first.entry.time)
            latest = max(latest, end)
        }
        if latest != Int64.min { item.until = latest == Int64.max ? nil : latest }
        return item
    }

    /// Replays the event rules' effects on one name over a person's events:
    /// the sets still combined into the current end (since the last lift
    /// or expiry), that end, and the last lift.
    /// Which denials of a name a history follows: all of them as one (as
    /// before reasons), or those of one reason (nil: without one).
    enum Reasons { case all, only(Int?) }

    static func eventRuleHistory(_ kind: TargetKind, _ id: Int, reason: Reasons = .all, program: Program, entries: [Timeline.Entry])
        -> (since: [(entry: Timeline.Entry, rule: Int)], end: Int64, lift: (entry: Timeline.Entry, rule: Int)?) {
        func follows(_ r: Int?) -> Bool {
            if case .only(let wanted) = reason { return r == wanted }
            return true
        }
        /// A lift without a reason lifts every denial of the name.
        func lifts(_ r: Int?) -> Bool { r == nil || follows(r) }
        var since: [(entry: Timeline.Entry, rule: Int)] = []
        var end: Int64 = Int64.min
        var lift: (entry: Timeline.Entry, rule: Int)? = nil
        for entry in entries {
            for rule in entry.fired {
                for effect in program.policy.eventRules[rule].effects {
                    switch effect {
                    case .set(let k, let n, let d, let r) where k == kind && n == id && follows(r):
                        let e: Int64
                        switch d {
                        case .untilLifted: e = .max
                        case .fixed(let ticks): e = Timestamp.adding(entry.time, ticks)
                        case .computed: e = entry.recordedEnd(rule: rule, k, program.policy.names(of: k)[n]) ?? .max
                        }
                        if end <= entry.time { since = [] }  // what came before had ended
                        end = max(end, e)
                        since.append((entry, rule))
                    case .lift(let k, let n, let r) where k == kind && n == id && lifts(r):
                        since = []
                        end = Int64.min
                        lift = (entry, rule)
                    default: break
                    }
                }
            }
        }
        return (since, end, lift)
    }

    /// Why `name` (a flag or privilege) is *not* held as of `time`: every
    /// rule that could set it, and what stopped it — for a `while` rule the
    /// first part of its condition that fails, with its values; for an event
    /// rule whether it fired, and if so what ended or lifted it.
    public static func whyNot(_ name: String, of person: String, engine: Engine, timeline: Timeline, at time: Int64) -> [String]? {
        answerWhyNot(name, of: person, engine: engine, timeline: timeline, at: time)?.lines
    }

    public static func answerWhyNot(_ name: String, of person: String, engine: Engine, timeline: Timeline, at time: Int64) -> WhyNot? {
        guard let state = engine.state(of: person, at: time) else { return nil }
        // `low trust` and `low_trust` are the same name.
        let name = name.split(separator: " ", omittingEmptySubsequences: true).joined(separator: "_")
        let program = engine.program
        let rules = RuleSite.all(in: program)
        let entries = Self.withTimedFirings(timeline.entries[person] ?? [], pending: engine.timedFirings(of: person, at: time), program: program)
        var answer = WhyNot(person: person, name: name, asOf: time, unknown: nil, answers: [])
        let candidates: [(TargetKind, Int)] =
            (program.policy.flags.firstIndex(of: name).map { [(TargetKind.flag, $0)] } ?? [])
            + (program.policy.privileges.firstIndex(of: name).map { [(TargetKind.deny, $0), (TargetKind.grant, $0)] } ?? [])
        guard !candidates.isEmpty else {
            answer.unknown = Suggest.help(for: name, among: program.policy.flags + program.policy.privileges) ?? "no rule sets it"
            return answer
        }
        engine.context.focus(person: engine.personIndex(person)!, now: time)
        let values = ConditionValues(program: program, context: engine.context)
        for (kind, id) in candidates {
            let setters = program.policy.eventRules.indices.filter { i in
                program.policy.eventRules[i].effects.contains { if case .set(let k, let n, _, _) = $0 { return k == kind && n == id }; return false }
            }
            let holders = program.policy.stateRules.indices.filter { k in
                program.policy.stateRules[k].effects.contains { $0.kind == kind && $0.name == id }
            }
            if setters.isEmpty && holders.isEmpty { continue }
            let held = state.names(of: kind).contains(name)
            var a = WhyNot.Answer(kind: kind, held: held, beatenByDenial: !held && kind == .grant && state.denied.contains(name), rules: [])
            if held || a.beatenByDenial { answer.answers.append(a); continue }
            for index in setters {
                if program.policy.eventRules[index].timer != nil {
                    a.rules.append((rules[index], timedStatus(index, person: person, entries: entries, at: time, engine: engine)))
                    continue
                }
                let fired = entries.filter { $0.fired.contains(index) }
                var status = "never fired for \(person)"
                if let last = fired.last {
                    let (_, end, lift) = eventRuleHistory(kind, id, program: program, entries: entries)
                    if let lift, lift.entry.time >= last.time {
                        status = "fired on \(last.origin); lifted by \(rules[lift.rule].file):\(rules[lift.rule].line) on \(lift.entry.origin)"
                    } else if end != Int64.min && end <= time {
                        status = "fired on \(last.origin); ended \(Timestamp.format(end))"
                    } else {
                        status = "fired on \(last.origin)"
                    }
                }
                a.rules.append((rules[index], status))
            }
            for k in holders {
                let index = program.policy.eventRules.count + k
                a.rules.append((rules[index], "does not hold: \(values.firstFailing(program.policy.stateRules[k].ast.condition))"))
            }
            answer.answers.append(a)
        }
        return answer
    }
}

extension Explanation {
    /// The person's entries with each timed rule's firing as an entry of
    /// its own, in time order — before the event whose entry lists it, and
    /// those still `pending` (fired only on a copy, as of the time asked
    /// about) at the end — so that what a timed rule set is found set by
    /// it, as an event rule's is by its event.
    static func withTimedFirings(_ entries: [Timeline.Entry], pending: [TraceRecord], program: Program) -> [Timeline.Entry] {
        guard program.hasTimers else { return entries }
        let timed = Set(program.timers.map(\.rule))
        func isFiring(_ r: TraceRecord) -> Bool { r.line == nil && r.rule.map(timed.contains) == true }
        func firings(_ records: [TraceRecord], scoreFrom start: Int64) -> [Timeline.Entry] {
            var out: [Timeline.Entry] = [], score = start
            for r in records where isFiring(r) {
                if let last = out.last, last.time == r.time, last.fired == [r.rule!] {
                    out[out.count - 1].changes.append(r)
                } else {
                    out.append(Timeline.Entry(origin: "its deadline, \(Timestamp.format(r.time)) (time alone)", text: "", time: r.time,
                                              scoreBefore: score, scoreAfter: score,
                                              fired: [r.rule!], changes: [r]))
                }
                if case .score(_, _, let after) = r.change { score = after; out[out.count - 1].scoreAfter = after }
            }
            return out
        }
        var result: [Timeline.Entry] = []
        for entry in entries {
            result += firings(entry.changes, scoreFrom: result.last?.scoreAfter ?? entry.scoreBefore)
            result.append(entry)
        }
        return result + firings(pending, scoreFrom: result.last?.scoreAfter ?? 0)
    }

    /// Where a timed rule stands for the person as of `time`: when it last
    /// fired, or when it will (armed), or that nothing armed it.
    static func timedStatus(_ index: Int, person: String, entries: [Timeline.Entry], at time: Int64, engine: Engine) -> String {
        let program = engine.program
        let rule = program.policy.eventRules[index]
        let firings = entries.flatMap(\.changes).filter { $0.line == nil && $0.rule == index }.map(\.time)
        let shown = { (ids: [Int]) in ids.map { "`\(program.policy.events[$0].name.replacing("_", with: " "))`" }.joined(separator: " or ") }
        guard let k = program.timers.firstIndex(where: { $0.rule == index }), let p = engine.personIndex(person) else { return "never fired for \(person)" }
        let deadline = engine.asOf(p, time) { engine.store.end(p, program.timers[k].slot) }
        var status = firings.last.map { "fired as time passed, at \(Timestamp.format($0)); what it set has ended or was lifted since" }
        if deadline != PersonStore.none && deadline > time {
            let unless = rule.timer!.unless.isEmpty ? "" : " unless \(shown(rule.timer!.unless)) comes first"
            status = (status.map { $0 + "; " } ?? "") + "armed: fires at \(Timestamp.format(deadline))\(unless)"
        }
        if let status { return status }
        if rule.timer!.repeats { return "not armed yet for \(person)" }
        let disarm = rule.timer!.unless.isEmpty ? "" : ", or \(shown(rule.timer!.unless)) disarmed it"
        return "not armed: no \(shown(rule.events)) armed it for \(person)\(disarm)"
    }
}

/// The answer to "why is this *not* held?", as text or data.
package struct WhyNot: Sendable {
    public struct Answer: Sendable {
        public var kind: TargetKind
        public var held: Bool
        /// A grant that is there but loses to a denial.
        public var beatenByDenial: Bool
        public var rules: [(site: RuleSite, status: String)]
    }

    public var person: String
    public var name: String
    public var asOf: Int64
    /// Set when the policy has no such name: the hint to show.
    public var unknown: String?
    public var answers: [Answer]

    public var lines: [String] {
        if let unknown { return ["the policy has no flag or privilege `\(name)`; \(unknown)"] }
        var lines: [String] = []
        let at = Timestamp.format(asOf)
        for a in answers {
            let verb = a.kind.stateWord
            if a.held { lines.append("\(person) is \(verb) \(name) as of \(at)"); continue }
            if a.beatenByDenial { lines.append("\(person) is not granted \(name): it is denied, and a denial beats a grant"); continue }
            lines.append("\(person) is not \(verb) \(name) as of \(at); the rules that could do it:")
            for (site, status) in a.rules {
                lines.append("  \(site.shown)")
                lines.append("    \(status)")
            }
        }
        return lines
    }

    public var json: String {
        func q(_ s: String) -> String { JSONWriter.quoted(s) }
        if let unknown { return #"{"citizen":\#(q(person)),"name":\#(q(name)),"error":\#(q("the policy has no flag or privilege `\(name)`; \(unknown)"))}"# }
        let list = answers.map { a in
            let rules = a.rules.map { #"{"rule":\#(q("\($0.site.file):\($0.site.line)")),"source":\#(q($0.site.text)),"why":\#(q($0.status))}"# }
            return #"{"kind":"\#(a.kind.rawValue)","held":\#(a.held),"denial_beats_grant":\#(a.beatenByDenial),"rules":[\#(rules.joined(separator: ","))]}"#
        }
        return #"{"citizen":\#(q(person)),"name":\#(q(name)),"as_of":\#(q(Timestamp.format(asOf))),"answers":[\#(list.joined(separator: ","))]}"#
    }
}
