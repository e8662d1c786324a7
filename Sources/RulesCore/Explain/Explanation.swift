/// A readable account of one person's state: their score, and for every
/// flag, denial and grant, which rule holds it, because of which events,
/// since when and until when; then every event that changed anything.
/// One implementation, used by the REPL's `:explain` (and `rules explain`).
public enum Explanation {
    public static func account(of person: String, engine: Engine, timeline: Timeline, at time: Int64) -> [String]? {
        guard let state = engine.state(of: person, at: time) else { return nil }
        let program = engine.program
        let rules = PolicyTests.ruleSites(program)
        var lines = ["\(person) as of \(Timestamp.format(time)): score \(state.score)"]
        let holding = Set(engine.stateRulesHolding(person, at: time))
        let entries = timeline.entries[person] ?? []
        for (kind, names) in [(TargetKind.flag, state.flags), (.deny, state.denied), (.grant, state.granted)] {
            let label = kind == .flag ? "flags" : kind == .deny ? "denied" : "granted"
            if names.isEmpty { lines.append("  \(label): none"); continue }
            lines.append("  \(label):")
            for name in names {
                lines.append("    \(name)")
                engine.context.focus(person: engine.personIndex(person)!, now: time)
                let values = ConditionValues(program: program, context: engine.context)
                lines += reasons(kind, name, program: program, rules: rules, entries: entries, holding: holding, at: time, values: values)
            }
        }
        if !entries.isEmpty {
            lines.append("  events:")
            for entry in timeline.render(person, rules: rules) {
                lines += entry.split(separator: "\n").map { "    " + $0 }
            }
        }
        return lines
    }

    /// Why `name` is set: the `while` rules holding it now, and the event
    /// rules whose effect on it is still in force (since the last lift).
    private static func reasons(_ kind: TargetKind, _ name: String, program: Program, rules: [RuleSite],
                                entries: [Timeline.Entry], holding: Set<Int>, at time: Int64, values: ConditionValues) -> [String] {
        let names = kind == .flag ? program.policy.flags : program.policy.privileges
        guard let id = names.firstIndex(of: name) else { return [] }
        var lines: [String] = []
        for (k, rule) in program.policy.stateRules.enumerated() {
            let index = program.policy.eventRules.count + k
            if holding.contains(index), rule.effects.contains(where: { $0.kind == kind && $0.name == id }) {
                lines.append("      held by \(rules[index].file):\(rules[index].line)  \(rules[index].text)")
                lines.append("        because \(values.render(rule.ast.condition))")
            }
        }
        let (since, end, _) = eventRuleHistory(kind, id, program: program, entries: entries)
        if end > time {
            let until = end == Int64.max ? "until lifted" : "until \(Timestamp.format(end))"
            for (entry, rule) in since {
                lines.append("      set by \(rules[rule].file):\(rules[rule].line)  \(rules[rule].text)")
                lines.append("        on \(entry.origin)  \(entry.text)")
            }
            lines.append("      in force since \(Timestamp.format(since.first!.entry.time)), \(until)")
        }
        return lines
    }

    /// Replays the event rules' effects on one name over a person's events:
    /// the sets still combined into the current end (since the last lift
    /// or expiry), that end, and the last lift.
    static func eventRuleHistory(_ kind: TargetKind, _ id: Int, program: Program, entries: [Timeline.Entry])
        -> (since: [(entry: Timeline.Entry, rule: Int)], end: Int64, lift: (entry: Timeline.Entry, rule: Int)?) {
        var since: [(entry: Timeline.Entry, rule: Int)] = []
        var end: Int64 = Int64.min
        var lift: (entry: Timeline.Entry, rule: Int)? = nil
        for entry in entries {
            for (rule, _) in entry.fired {
                for effect in program.policy.eventRules[rule].effects {
                    switch effect {
                    case .set(let k, let n, let d) where k == kind && n == id:
                        let e = d.map { entry.time.addingReportingOverflow($0).overflow ? Int64.max : entry.time + $0 } ?? Int64.max
                        if end <= entry.time { since = [] }  // what came before had ended
                        end = max(end, e)
                        since.append((entry, rule))
                    case .lift(let k, let n) where k == kind && n == id:
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
        guard let state = engine.state(of: person, at: time) else { return nil }
        // `low trust` and `low_trust` are the same name.
        let name = name.split(separator: " ", omittingEmptySubsequences: true).joined(separator: "_")
        let program = engine.program
        let rules = PolicyTests.ruleSites(program)
        let entries = timeline.entries[person] ?? []
        var lines: [String] = []
        let candidates: [(TargetKind, Int)] =
            (program.policy.flags.firstIndex(of: name).map { [(TargetKind.flag, $0)] } ?? [])
            + (program.policy.privileges.firstIndex(of: name).map { [(TargetKind.deny, $0), (TargetKind.grant, $0)] } ?? [])
        guard !candidates.isEmpty else {
            let help = Suggest.help(for: name, among: program.policy.flags + program.policy.privileges) ?? "no rule sets it"
            return ["the policy has no flag or privilege `\(name)`; \(help)"]
        }
        engine.context.focus(person: engine.personIndex(person)!, now: time)
        let values = ConditionValues(program: program, context: engine.context)
        for (kind, id) in candidates {
            let verb = kind == .flag ? "flagged" : kind == .deny ? "denied" : "granted"
            let held = kind == .flag ? state.flags.contains(name) : kind == .deny ? state.denied.contains(name) : state.granted.contains(name)
            let canSet = program.policy.eventRules.contains { $0.effects.contains { if case .set(let k, let n, _) = $0 { return k == kind && n == id }; return false } }
                || program.policy.stateRules.contains { $0.effects.contains { $0.kind == kind && $0.name == id } }
            if !canSet { continue }
            if held { lines.append("\(person) is \(verb) \(name) as of \(Timestamp.format(time))"); continue }
            if kind == .grant && state.denied.contains(name) {
                lines.append("\(person) is not granted \(name): it is denied, and a denial beats a grant")
                continue
            }
            var reasons: [String] = []
            for (index, rule) in program.policy.eventRules.enumerated()
            where rule.effects.contains(where: { if case .set(let k, let n, _) = $0 { return k == kind && n == id }; return false }) {
                reasons.append("  \(rules[index].file):\(rules[index].line)  \(rules[index].text)")
                let fired = entries.filter { $0.fired.contains { $0.rule == index } }
                guard let last = fired.last else {
                    reasons.append("    never fired for \(person)")
                    continue
                }
                let (_, end, lift) = eventRuleHistory(kind, id, program: program, entries: entries)
                if let lift, lift.entry.time >= last.time {
                    reasons.append("    fired on \(last.origin); lifted by \(rules[lift.rule].file):\(rules[lift.rule].line) on \(lift.entry.origin)")
                } else if end != Int64.min && end <= time {
                    reasons.append("    fired on \(last.origin); ended \(Timestamp.format(end))")
                }
            }
            for (k, rule) in program.policy.stateRules.enumerated() where rule.effects.contains(where: { $0.kind == kind && $0.name == id }) {
                let index = program.policy.eventRules.count + k
                reasons.append("  \(rules[index].file):\(rules[index].line)  \(rules[index].text)")
                reasons.append("    does not hold: \(values.firstFailing(rule.ast.condition))")
            }
            if reasons.isEmpty { continue }
            lines.append("\(person) is not \(verb) \(name) as of \(Timestamp.format(time)); the rules that could do it:")
            lines += reasons
        }
        return lines
    }
}
