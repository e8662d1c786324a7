import RulesCore

/// `rules diff`: two policies over the same stream, person by person — the
/// what-if a policy author runs before shipping a change
/// (docs/LANGUAGE.md, "Corrections" and "The command line"). Each side is
/// exactly a `rules run` of its policy; a person is listed when their two
/// report lines differ, with both lines, and the summary counts what the
/// change does to people: newly denied, granted, flagged by name, scores up
/// and down.
package struct PolicyDiff {
    /// One person whose report line differs; nil where they are absent.
    package struct Change {
        package var person: String
        package var old: PersonReport?
        package var new: PersonReport?
        package var oldLine: String?
        package var newLine: String?
        /// The rules that make the difference: each rule (by its text) that
        /// fired a different number of times for the person, or holds at
        /// the end under one policy and not the other. Only when asked for.
        package var rules: [RuleDifference] = []
    }

    package struct RuleDifference: Equatable {
        /// `FILE:LINE  TEXT` under the policy that has it (the old one's when
        /// both do).
        package var shown: String
        package var oldCount: Int
        package var newCount: Int
        /// For a `while` rule: holding at the end, under each policy.
        package var isStateRule: Bool
    }

    package var changes: [Change] = []
    /// People in either report.
    package var people = 0
    package var oldSummary: RunSummary
    package var newSummary: RunSummary

    /// Runs both programs over `stream` (the bytes of an NDJSON stream).
    /// `rules`: also work out which rules make each difference (keeps every
    /// person's timeline: memory in proportion to the stream).
    package static func run(old: Program, new: Program, stream: [UInt8], personKey: PersonKey = .citizen,
                            asOf: Int64? = nil, corrections: Corrections? = nil, rules: Bool = false) -> PolicyDiff {
        let a = Side(old, stream: stream, personKey: personKey, asOf: asOf, corrections: corrections, rules: rules)
        let b = Side(new, stream: stream, personKey: personKey, asOf: asOf, corrections: corrections, rules: rules)
        var diff = PolicyDiff(oldSummary: a.summary, newSummary: b.summary)
        var i = 0, j = 0
        while i < a.reports.count || j < b.reports.count {
            let x = i < a.reports.count ? a.reports[i] : nil, y = j < b.reports.count ? b.reports[j] : nil
            diff.people += 1
            switch (x, y) {
            case let (x?, y?) where x.citizen == y.citizen:
                if a.lines[i] != b.lines[j] {
                    diff.changes.append(Change(person: x.citizen, old: x, new: y, oldLine: a.lines[i], newLine: b.lines[j]))
                }
                i += 1; j += 1
            case let (x?, y?) where Array(x.citizen.utf8).lexicographicallyPrecedes(Array(y.citizen.utf8)):
                diff.changes.append(Change(person: x.citizen, old: x, oldLine: a.lines[i])); i += 1
            case (let x?, nil):
                diff.changes.append(Change(person: x.citizen, old: x, oldLine: a.lines[i])); i += 1
            case (_, let y?):
                diff.changes.append(Change(person: y.citizen, new: y, newLine: b.lines[j])); j += 1
            case (nil, nil):
                break
            }
        }
        if rules {
            for k in diff.changes.indices { diff.changes[k].rules = Side.differences(diff.changes[k].person, a, b) }
        }
        return diff
    }

    /// One policy's run: its report as values and as the lines `rules run`
    /// prints, in the same order.
    private struct Side {
        let engine: Engine
        let summary: RunSummary
        let reports: [PersonReport]
        let lines: [String]
        let timeline: Timeline?
        let sites: [RuleSite]
        let clock: Int64?

        init(_ program: Program, stream: [UInt8], personKey: PersonKey, asOf: Int64?, corrections: Corrections?, rules: Bool) {
            engine = Engine(program: program, personKey: personKey)
            if let corrections { engine.enableCorrections(corrections) }
            let watch = rules ? PersonWatch(person: nil, engine: engine) : nil
            summary = EventStream.run(engine, reader: LineReader(bytes: stream), asOf: asOf, watch: watch) { _, _ in }
            clock = asOf ?? engine.clock
            reports = engine.report(asOf: asOf)
            var bytes: [UInt8] = []
            engine.writeReport(asOf: asOf) { bytes.append(bytes: $0) }
            lines = bytes.split(separator: 0x0A).map { String(decoding: $0, as: UTF8.self) }
            timeline = watch?.timeline
            sites = RuleSite.all(in: program)
        }

        /// How many times each rule (by text) fired for the person, and the
        /// `while` rules holding at the end.
        func fired(_ person: String) -> (events: [String: (Int, String)], holding: [String: String]) {
            var counts: [String: (Int, String)] = [:]
            for entry in timeline?.entries[person] ?? [] {
                for rule in entry.fired { counts[sites[rule].text, default: (0, sites[rule].shown)].0 += 1 }
            }
            var holding: [String: String] = [:]
            if let clock {
                for rule in engine.stateRulesHolding(person, at: clock) { holding[sites[rule].text] = sites[rule].shown }
            }
            return (counts, holding)
        }

        static func differences(_ person: String, _ a: Side, _ b: Side) -> [RuleDifference] {
            let (x, xh) = a.fired(person), (y, yh) = b.fired(person)
            var out: [RuleDifference] = []
            for text in Set(x.keys).union(y.keys).sorted() where x[text]?.0 != y[text]?.0 {
                out.append(RuleDifference(shown: x[text]?.1 ?? y[text]!.1, oldCount: x[text]?.0 ?? 0, newCount: y[text]?.0 ?? 0, isStateRule: false))
            }
            for text in Set(xh.keys).symmetricDifference(yh.keys).sorted() {
                out.append(RuleDifference(shown: xh[text] ?? yh[text]!, oldCount: xh[text] == nil ? 0 : 1, newCount: yh[text] == nil ? 0 : 1,
                                          isStateRule: true))
            }
            return out
        }
    }

    // MARK: - Rendering

    /// `{"citizen":"dave","old":{…},"new":{…}}`, the key as the stream names it.
    package func jsonLines(personKey: PersonKey = .citizen) -> [String] {
        changes.map { c in
            "{\(JSONText.quoted(personKey.name)):\(JSONText.quoted(c.person)),\"old\":\(c.oldLine ?? "null"),\"new\":\(c.newLine ?? "null")}"
        }
    }

    /// What changes for each person, and the rules that make it:
    ///
    ///     dave: score 985 → 970 (-15); denied + travel; flags - low_trust
    ///         new.rules:12  unpaid debt where amount >= 5000 → deny travel   fired 0 → 2 times
    package func textLines() -> [String] {
        var out: [String] = []
        for c in changes {
            var parts: [String] = []
            switch (c.old, c.new) {
            case (nil, _): parts.append("only under the new policy")
            case (_, nil): parts.append("only under the old policy")
            default: break
            }
            let before = c.old?.score, after = c.new?.score
            if let before, let after, before != after {
                parts.append("score \(before) → \(after) (\(Self.signed(after - before)))")
            } else if before == nil, let after {
                parts.append("score \(after)")
            } else if after == nil, let before {
                parts.append("score was \(before)")
            }
            for kind in TargetKind.allCases {
                let was = Set(c.old?.names(of: kind) ?? []), now = Set(c.new?.names(of: kind) ?? [])
                let added = now.subtracting(was).sorted(), removed = was.subtracting(now).sorted()
                if added.isEmpty && removed.isEmpty { continue }
                parts.append("\(kind.reportKey) " + (added.map { "+ \($0)" } + removed.map { "- \($0)" }).joined(separator: ", "))
            }
            // Outputs by name (the two policies may declare different ones).
            let oldOutputs = c.old?.outputs ?? [], newOutputs = c.new?.outputs ?? []
            func shown(_ v: Double?) -> String { v.map(Arithmetic.format) ?? "null" }
            for o in newOutputs {
                guard let was = oldOutputs.first(where: { $0.name == o.name }) else {
                    if c.old != nil { parts.append("\(o.name) \(shown(o.value)) (new output)") }
                    continue
                }
                if was.value != o.value { parts.append("\(o.name) \(shown(was.value)) → \(shown(o.value))") }
            }
            for o in oldOutputs where c.new != nil && !newOutputs.contains(where: { $0.name == o.name }) {
                parts.append("\(o.name) was \(shown(o.value)) (no longer an output)")
            }
            out.append("\(c.person): " + parts.joined(separator: "; "))
            for r in c.rules {
                let what = r.isStateRule
                    ? (r.newCount > 0 ? "holds only under the new policy" : "holds only under the old policy")
                    : "fired \(r.oldCount) → \(r.newCount) time\(r.newCount == 1 ? "" : "s")"
                out.append("    \(r.shown)   \(what)")
            }
        }
        return out
    }

    /// The summary: people changed; per name, newly and no longer flagged,
    /// denied, granted; scores up and down, with a histogram of the changes
    /// (`histogram`: the text format's).
    package func summaryLines(histogram: Bool) -> [String] {
        var out = ["\(changes.count) of \(people) \(people == 1 ? "person" : "people") changed"
                   + " (\(changes.filter { $0.old == nil }.count) only under the new policy, \(changes.filter { $0.new == nil }.count) only under the old)"]
        for kind in TargetKind.allCases {
            var gained: [String: Int] = [:], lost: [String: Int] = [:]
            for c in changes {
                let was = Set(c.old?.names(of: kind) ?? []), now = Set(c.new?.names(of: kind) ?? [])
                for n in now.subtracting(was) { gained[n, default: 0] += 1 }
                for n in was.subtracting(now) { lost[n, default: 0] += 1 }
            }
            func list(_ counts: [String: Int]) -> String {
                counts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            }
            let verb = kind.stateWord
            if !gained.isEmpty { out.append("newly \(verb): \(list(gained))") }
            if !lost.isEmpty { out.append("no longer \(verb): \(list(lost))") }
        }
        let deltas = changes.compactMap { c -> Int64? in
            guard let a = c.old?.score, let b = c.new?.score, a != b else { return nil }
            return b - a
        }
        let up = deltas.filter { $0 > 0 }, down = deltas.filter { $0 < 0 }
        func range(_ xs: [Int64]) -> String {
            guard let lo = xs.min(), let hi = xs.max() else { return "" }
            return lo == hi ? " (by \(Self.signed(lo)))" : " (by \(Self.signed(lo)) to \(Self.signed(hi)))"
        }
        out.append("score: \(up.count) up\(range(up)), \(down.count) down\(range(down))")
        if histogram && !deltas.isEmpty { out += Self.histogram(deltas) }
        return out
    }

    /// `+5`, `-3`, `0`: a score change.
    static func signed(_ v: Int64) -> String { v > 0 ? "+\(v)" : "\(v)" }

    /// Score changes in up to 8 bins of equal width, one bar each:
    ///
    ///     -20 … -11  ██████ 6
    ///      +1 … +10  ██ 2
    static func histogram(_ deltas: [Int64]) -> [String] {
        let lo = deltas.min()!, hi = deltas.max()!
        let bins = Int64(min(8, deltas.count))
        let width = max(1, (hi - lo + bins) / bins)
        var counts: [Int64: Int] = [:]
        for d in deltas { counts[(d - lo) / width, default: 0] += 1 }
        let most = counts.values.max()!
        let labels = counts.keys.sorted().map { b -> (String, Int) in
            let from = lo + b * width, to = min(hi, from + width - 1)
            return (from == to ? signed(from) : "\(signed(from)) … \(signed(to))", counts[b]!)
        }
        let pad = labels.map(\.0.count).max()!
        return labels.map { label, n in
            String(repeating: " ", count: pad - label.count) + label + "  " + String(repeating: "█", count: max(1, n * 30 / most)) + " \(n)"
        }
    }
}
