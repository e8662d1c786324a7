extension Engine {
    /// What the run must report about rules that could not be evaluated
    /// (a missing field, division by zero, a wrong type): which rule, how
    /// often, why, and the first stream line where it happened.
    public func evaluationNotes() -> [String] {
        Engine.evaluationNotes([self])
    }

    /// The notes of several engines (a parallel run), counted together; the
    /// first line is the earliest any of them saw.
    static func evaluationNotes(_ engines: [Engine]) -> [String] {
        var failures: [EvalContext.FailureKey: (count: Int, firstLine: Int)] = [:]
        for engine in engines {
            for (key, stat) in engine.context.failures {
                if let old = failures[key] {
                    let first = [old.firstLine, stat.firstLine].filter { $0 > 0 }.min() ?? 0
                    failures[key] = (old.count + stat.count, first)
                } else {
                    failures[key] = stat
                }
            }
        }
        let program = engines[0].program
        let sources = program.policy.sources
        return failures.sorted { a, b in
            (a.key.rule, a.value.firstLine) < (b.key.rule, b.value.firstLine)
        }.map { key, stat in
            let span = program.ruleSpan(key.rule)
            let (file, line, _) = sources.location(span)
            if key.rule >= program.outputNoteBase {
                let output = program.policy.outputs[key.rule - program.outputNoteBase].name
                let times = stat.count == 1 ? "once" : "\(stat.count) times"
                return "output `\(output)` at \(file):\(line) had no value \(times), so the report shows null: \(key.failure.describe(fields: program.policy.fields))"
            }
            let isAggregate = key.rule >= program.aggregateNoteBase
            let isState = !isAggregate && key.rule >= program.policy.eventRules.count
            let verb = isState ? "was taken as not holding" : isAggregate ? "left out" : "did not fire"
            let times = isState ? (stat.count == 1 ? "once" : "\(stat.count) times")
                : isAggregate ? (stat.count == 1 ? "1 event" : "\(stat.count) events")
                : (stat.count == 1 ? "on 1 event" : "on \(stat.count) events")
            let first = stat.firstLine > 0 ? "first on line \(stat.firstLine) of the stream" : "in the final report"
            let what = isAggregate ? "`\(sources.files[span.file].text(span))`" : "rule"
            return "\(what) at \(file):\(line) \(verb) \(times): \(key.failure.describe(fields: program.policy.fields)) (\(first))"
        }
    }
}
