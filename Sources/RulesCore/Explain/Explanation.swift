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
                lines += reasons(kind, name, program: program, rules: rules, entries: entries, holding: holding, at: time)
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
                                entries: [Timeline.Entry], holding: Set<Int>, at time: Int64) -> [String] {
        let names = kind == .flag ? program.policy.flags : program.policy.privileges
        guard let id = names.firstIndex(of: name) else { return [] }
        var lines: [String] = []
        for (k, rule) in program.policy.stateRules.enumerated() {
            let index = program.policy.eventRules.count + k
            if holding.contains(index), rule.effects.contains(where: { $0.kind == kind && $0.name == id }) {
                lines.append("      held by \(rules[index].file):\(rules[index].line)  \(rules[index].text)  (its condition holds now)")
            }
        }
        // Replay the event rules' effects on this one name.
        var since: [(entry: Timeline.Entry, rule: Int)] = []
        var end: Int64 = Int64.min
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
                    default: break
                    }
                }
            }
        }
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
}
