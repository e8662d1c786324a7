import Foundation
@testable import RulesCore

/// A deterministic generator (SplitMix64): the same seed, the same case.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func pick<T>(_ xs: [T]) -> T { xs[below(xs.count)] }
}

/// One random case: a policy (one or more files) and a stream.
struct GeneratedCase {
    var seed: UInt64
    var files: [String]
    var lines: [String]
    var asOf: String?
    /// `--retain` and `--lateness` (docs/LANGUAGE.md, "Corrections"), as
    /// the command line takes them; nil keeps no history.
    var retain: String? = nil
    var lateness: String? = nil

    /// The same in ticks, for the engine and the reference.
    var corrections: Corrections? {
        guard retain != nil || lateness != nil else { return nil }
        let r = retain.flatMap(DurationText.parse), l = lateness.flatMap(DurationText.parse) ?? 0
        var c = Corrections(retain: r ?? l, lateness: l)
        // Every other case compacts before every line (the binary cannot:
        // it compacts past 64 MiB, so the two must agree).
        if seed % 2 == 0 { c.sweepFloor = 0 }
        return c
    }

    /// The command line's options for them.
    var correctionOptions: [String] {
        (retain.map { ["--retain", $0] } ?? []) + (lateness.map { ["--lateness", $0] } ?? [])
    }

    var stream: String { lines.map { $0 + "\n" }.joined() }

    /// The case as a person would file it.
    var repro: String {
        var s = "seed \(seed)\n"
        for (k, f) in files.enumerated() { s += "== policy\(k + 1).rules\n\(f)" }
        s += "== events\n\(stream)"
        if let asOf { s += "== as of \(asOf)\n" }
        if !correctionOptions.isEmpty { s += "== \(correctionOptions.joined(separator: " "))\n" }
        return s
    }
}

/// Random policies of every statement kind and random streams with ties,
/// out-of-order, malformed and boundary lines. Policies use a small
/// vocabulary so rules interact: a few event types (one of two words), a
/// few fields, flags set by event rules and by `while` rules, privileges.
struct CaseGenerator {
    var rng: SeededRandom
    let seed: UInt64

    static let types = ["a", "b", "tax filed"]
    static let numberFields = ["x", "y"]
    static let eventFlags = ["f", "g", "low trust"]
    /// `while` rule i sets w_i and reads only w_j with j < i: no cycles.
    static let stateFlags = ["w0", "w1", "w2"]
    static let privileges = ["p", "q", "fast lane"]
    static let durations = ["1 second", "90 minutes", "6 hours", "1 day", "3 days", "1 week", "30 days",
                            "1 year", "300 years", "1000 years", "2 * 7 days", "window"]

    private var declared = false
    /// What rules and windows may name: the event types, and the groups
    /// this policy defines (`event ab = a, b`; one nests another).
    private var eventNames = types
    private var constants: [String] = []
    private var statements: [String] = []
    /// How many `while` rules the policy gets (chosen first, so that event
    /// rules may read the flags they hold).
    private var stateRuleCount = 0

    init(seed: UInt64) {
        self.seed = seed
        rng = SeededRandom(seed: seed)
    }

    mutating func generate() -> GeneratedCase {
        declared = rng.chance(25)
        stateRuleCount = rng.below(4)
        constants = rng.chance(50) ? ["k"] : []
        statements = []
        if rng.chance(60) { statements.append(settings()) }
        if declared {
            for t in Self.types { statements.append("event \(t) { x: number, y: number, s: string, ok: bool }") }
        }
        eventNames = Self.types
        if rng.chance(40) {
            let group = rng.pick(["a, b", "b, tax filed", "a, tax filed", "tax filed"])
            statements.append("event ab = \(group)")
            eventNames.append("ab")
            if rng.chance(40) {
                statements.append("event every = ab, \(rng.pick(Self.types))")
                eventNames.append("every")
            }
        }
        for _ in 0..<(1 + rng.below(6)) { statements.append(eventRule()) }
        // Now and then a chain: the first branch whose condition holds.
        if rng.chance(30) {
            var chain = "\(rng.pick(eventNames)) where \(condition(depth: 1)) → \(effects())"
            for _ in 0..<rng.below(3) { chain += "\nelse where \(condition(depth: 1)) → \(effects())" }
            if rng.chance(60) { chain += "\nelse → \(effects())" }
            statements.append(chain)
        }
        // Several counted rules on one event type, equal and different
        // counts and windows (issue 13's first bug).
        if rng.chance(40) {
            let t = rng.pick(eventNames)
            let n = 1 + rng.below(3)
            for _ in 0..<(2 + rng.below(2)) {
                // The count from a constant now and then (`n a within …`).
                let count = rng.chance(20) ? "n" : "\(rng.chance(50) ? n : 1 + rng.below(4))"
                statements.append("\(rng.chance(20) && count != "n" ? rng.pick(["exactly ", "every "]) : "")\(count) \(t)\(rng.chance(30) ? " where " + condition(depth: 1) : "") within \(duration()) → \(effects())")
            }
        }
        // Timed rules: effects when event time passes a deadline.
        if rng.chance(35) {
            for _ in 0..<(1 + rng.below(2)) { statements.append(timedRule()) }
        }
        for k in 0..<stateRuleCount {
            var rule = stateRule(k)
            // A `while` chain: the branches hold one at a time, each setting
            // only this rule's flag (so no cycle).
            if rng.chance(25) {
                rule += "\nelse while \(stateCondition(depth: 1, k: k)) → deny \(rng.pick(Self.privileges)), flag \(Self.stateFlags[k])"
                if rng.chance(50) { rule += "\nelse → grant \(rng.pick(Self.privileges))" }
            }
            statements.append(rule)
        }
        // Outputs: numbers in the report, read like `while` rules (a
        // state rule may read one too: `total`).
        if statements.contains(where: { $0.contains("total") }) || rng.chance(30) {
            statements.insert("output total = \(outputExpr())", at: rng.below(statements.count + 1))
        }
        if rng.chance(15) { statements.insert("output second one = \(outputExpr())", at: rng.below(statements.count + 1)) }
        // Every flag a rule reads is set by some rule (with declarations an
        // unknown name is an error, not a field).
        for flag in Self.eventFlags where statements.contains(where: { $0.contains(flag) })
            && !statements.contains(where: { $0.contains("flag \(flag)") }) {
            statements.append("b where x > 5 → flag \(flag)\(forClause())")
        }
        // Every privilege a condition reads is named by some effect (else
        // reading it is an error: no rule denies or grants it).
        for p in Self.privileges where statements.contains(where: { $0.contains("denied(\(p))") || $0.contains("granted(\(p))") })
            && !statements.contains(where: { s in ["deny", "grant", "allow", "revoke"].contains { s.contains("\($0) \(p)") } }) {
            statements.append("b where x > 5 → grant \(p)\(forClause())")
        }
        func uses(_ name: String) -> Bool {
            statements.contains { $0.split(whereSeparator: { !$0.isLetter && !$0.isNumber && $0 != "_" }).contains { $0 == name } }
        }
        if uses("live") {
            // A named per-person value (a `let` that reads the state).
            let value = rng.pick(["count(\(aggregateBody()))", "score + count(\(aggregateBody())) * 2",
                                  "sum(\(rng.pick(eventNames)).x within \(duration())) - score", "max(score, count(\(aggregateBody())))"])
            statements.insert("let live = \(value)", at: rng.below(statements.count + 1))
        }
        // Attributes that rules set or read, with their start values.
        if uses("level") { statements.insert("attribute level = \(rng.pick(["0", "-2.5", "10"]))", at: rng.below(statements.count + 1)) }
        if uses("zone") { statements.insert("attribute zone = \(rng.pick(["\"none\"", "\"u\"", "\"\""]))", at: rng.below(statements.count + 1)) }
        if uses("member") { statements.insert("attribute member = \(rng.pick(["false", "true"]))", at: rng.below(statements.count + 1)) }
        if uses("n") { statements.insert("let n = \(rng.pick(["1", "2", "3"]))", at: rng.below(statements.count + 1)) }
        if uses("k") { statements.insert("let k = \(rng.pick(["2", "7", "-3", "2.5", "10_000"]))", at: rng.below(statements.count + 1)) }
        if uses("window") { statements.insert("let window = \(rng.pick(["3 days", "2 * 12 hours", "1000 years"]))", at: rng.below(statements.count + 1)) }
        if uses("base") { statements.append("let base = \(rng.pick(["0", "50", "-5"]))") }
        var files = [""]
        for s in statements {
            if files.count < 3 && rng.chance(10) { files.append("") }
            files[files.count - 1] += s + "\n"
        }
        var lines = stream()
        if statements.contains(where: { $0.hasPrefix("every ") && !$0.hasPrefix("every 300 years") }) {
            // A period of days over thousands of years (a line dated 0001
            // or 9999 among 2026's) is millions of firings: the reference
            // model, which reads every deadline again from the history,
            // would take hours. (The engine's own edges are TimedRuleTests'.)
            lines = lines.filter { !$0.contains("\"9999-") && !$0.contains("\"0001-") }
        }
        var c = GeneratedCase(seed: seed, files: files, lines: lines, asOf: rng.chance(15) ? time(base: 20_454 * 86_400 + rng.below(60) * 86_400) : nil)
        if rng.chance(40) {
            switch rng.below(4) {
            case 0: c.retain = rng.pick(["2 days", "30 days", "1000 years"])
            case 1: c.lateness = rng.pick(["1 day", "2 days"])
            default:
                c.retain = rng.pick(["2 days", "30 days", "1000 years"])
                c.lateness = rng.pick(["1 hour", "1 day", "2 days"])
            }
        }
        return c
    }

    // MARK: - Policies

    private mutating func settings() -> String {
        var parts = ["starts at \(rng.pick(["0", "100", "base", "-5"]))"]
        if rng.chance(50) { parts.append("min \(rng.pick(["-10", "-5", "-100"]))") }
        if rng.chance(50) { parts.append("max \(rng.pick(["200", "1000", "9_000_000_000_000_000"]))") }
        if rng.chance(30) { parts.shuffle(using: &rng) }
        return "score " + parts.joined(separator: ", ")
    }

    private mutating func duration() -> String {
        let d = rng.pick(Self.durations)
        return d
    }

    private mutating func eventRule() -> String {
        let type = rng.pick(eventNames)
        let counted = rng.chance(30)
        var rule = counted ? "\(rng.pick(["", "", "exactly ", "every "]))\(1 + rng.below(3)) " : ""
        rule += type
        if rng.chance(60) { rule += " where " + condition(depth: 2) }
        if counted { rule += " within \(duration())" }
        return rule + " → " + effects()
    }

    /// `D after EVENT [where C] [unless EVENT] → …` or `every D [without
    /// EVENT] → …`, with effects that read no event's fields.
    private mutating func timedRule() -> String {
        var rule: String
        if rng.chance(60) {
            rule = "\(rng.pick(["1 hour", "6 hours", "1 day", "3 days", "30 days", "1 year", "1000 years"])) after \(rng.pick(eventNames))"
            if rng.chance(40) { rule += " where " + condition(depth: 1) }
            if rng.chance(60) { rule += " unless \(rng.pick(eventNames))" }
        } else {
            rule = "every \(rng.pick(["1 day", "3 days", "1 week", "30 days", "1 year", "300 years"]))"
            if rng.chance(60) { rule += " without \(rng.pick(eventNames))" }
        }
        var list: [String] = []
        for _ in 0..<(1 + rng.below(2)) {
            list.append(rng.pick(["+\(1 + rng.below(20))", "-\(1 + rng.below(20))", "set score to \(rng.pick(["0", "100", "score / 2"]))",
                                  "+count(\(aggregateBody()))", "flag \(rng.pick(Self.eventFlags))\(timedFor())",
                                  "deny \(rng.pick(Self.privileges))\(rng.chance(30) ? " because debt" : "")\(timedFor())",
                                  "grant \(rng.pick(Self.privileges))", "clear \(rng.pick(Self.eventFlags))", "allow \(rng.pick(Self.privileges))",
                                  "set level to level + 1", "set member to not member"]))
        }
        return rule + " → " + list.joined(separator: ", ")
    }

    /// A timed rule's `for`: a duration, or one read from the state (it
    /// has no event's fields to read).
    private mutating func timedFor() -> String {
        guard rng.chance(50) else { return "" }
        return rng.chance(20) ? " for (abs(score) + count(\(aggregateBody()))) * 1 minute" : " for \(duration())"
    }

    private mutating func effects() -> String {
        var list: [String] = []
        for _ in 0..<(1 + rng.below(3)) {
            switch rng.below(8) {
            case 0, 1:
                // Now and then the score set, not changed.
                if rng.chance(15) { list.append("set score to " + numberExpr(depth: 1)) }
                else if rng.chance(20) {
                    // An attribute set from the event and the state before it.
                    list.append(rng.pick(["set level to level + " + numberExpr(depth: 1), "set level to score", "set zone to s",
                                          "set zone to \"u\"", "set member to ok", "set member to not member"]))
                }
                else { list.append(rng.pick(["+", "-"]) + numberExpr(depth: 2)) }
            case 2: list.append("flag \(rng.pick(Self.eventFlags))" + forClause())
            case 3:
                // Now and then for a reason, lifted on its own.
                let reason = rng.chance(35) ? " because \(rng.pick(["debt", "court order"]))" : ""
                list.append("deny \(rng.pick(Self.privileges))" + reason + forClause())
            case 4: list.append("grant \(rng.pick(Self.privileges))" + forClause())
            case 5: list.append("clear \(rng.pick(Self.eventFlags))")
            case 6: list.append("allow \(rng.pick(Self.privileges))" + (rng.chance(35) ? " because \(rng.pick(["debt", "court order"]))" : ""))
            default: list.append("revoke \(rng.pick(Self.privileges))")
            }
        }
        return list.joined(separator: ", ")
    }

    private mutating func forClause() -> String {
        guard rng.chance(50) else { return "" }
        // Now and then a duration computed when the rule fires: from a
        // field (zero, negative or missing: the rule does not fire), or the
        // state; `y days` is `y * 1 day` when `y` is a declared field.
        if rng.chance(20) {
            return " for " + rng.pick(["x * 1 hour", "(x + count(\(aggregateBody()))) * 1 day", "abs(score) * 1 minute"]
                                      + (declared ? ["y days"] : []))
        }
        return " for \(duration())"
    }

    private mutating func stateRule(_ k: Int) -> String {
        var c = stateCondition(depth: 2, k: k)
        if rng.chance(20) { c = "not (\(c))" }
        let effect: String
        switch rng.below(3) {
        case 0: effect = "flag \(Self.stateFlags[k])"
        case 1: effect = "deny \(rng.pick(Self.privileges)), flag \(Self.stateFlags[k])"
        default: effect = "grant \(rng.pick(Self.privileges)), flag \(Self.stateFlags[k])"
        }
        return "while \(c) → \(effect)"
    }

    private mutating func stateCondition(depth: Int, k: Int) -> String {
        if depth > 0 && rng.chance(30) {
            return "\(stateCondition(depth: depth - 1, k: k)) \(rng.pick(["and", "or"])) \(stateCondition(depth: depth - 1, k: k))"
        }
        switch rng.below(5) {
        case 0:
            if rng.chance(25) { return "score between \(rng.pick(["-5", "0"])) and \(rng.pick(["0", "10", "100"]))" }
            return "score \(rng.pick(["<", ">=", "=="])) \(rng.pick(["0", "10", "-5", "100"]))"
        case 1: return rng.pick(Self.eventFlags)
        case 2 where k > 0: return Self.stateFlags[rng.below(k)]
        case 3:
            if rng.chance(15) { return "total \(rng.pick([">", "<="])) \(rng.pick(["2", "0", "-1"]))" }
            if rng.chance(15) { return rng.pick(["level >= 3", "zone != \"none\"", "not member"]) }
            if rng.chance(30) { return "live \(rng.pick([">=", "<"])) \(rng.pick(["1", "3", "50"]))" }
            return "count(\(aggregateBody())) >= \(1 + rng.below(3))"
        default: return "sum(\(rng.pick(eventNames)).x within \(duration())) > \(rng.pick(["0", "3", "-1"]))"
        }
    }

    /// An output's value: what a `while` rule may read (no event's fields),
    /// now and then without a value (a division by zero: null).
    private mutating func outputExpr() -> String {
        switch rng.below(6) {
        case 0: return "score * 2 - 1"
        case 1: return "count(\(aggregateBody())) * 10 + score"
        case 2: return "sum(\(rng.pick(eventNames)).x within \(duration())) / count(\(aggregateBody()))"
        case 3:
            // A flag a `while` rule holds, as the report's clock has it.
            let flag = stateRuleCount > 0 && rng.chance(50) ? Self.stateFlags[0] : rng.pick(Self.eventFlags)
            return "if \(flag) then score else 0 - score"
        case 4: return "(if denied(\(rng.pick(Self.privileges))) then 1 else 0) + (if granted(\(rng.pick(Self.privileges))) then 2 else 0)"
        default: return "max(score, \(rng.pick(["0.5", "-2.5", "1_000_000_000_000_000_000_000"]))) / \(rng.pick(["3", "1", "0.1"]))"
        }
    }

    private mutating func aggregateBody() -> String {
        "\(rng.pick(eventNames))\(rng.chance(30) ? " where x > 1" : "") within \(duration())"
    }

    private mutating func condition(depth: Int) -> String {
        if depth > 0 && rng.chance(35) {
            return "\(condition(depth: depth - 1)) \(rng.pick(["and", "or"])) \(condition(depth: depth - 1))"
        }
        switch rng.below(10) {
        case 0:
            // Now and then a privilege as the report shows it.
            if rng.chance(60) { return "\(rng.pick(["denied", "granted", "granted", "not denied"]))(\(rng.pick(Self.privileges)))" }
            return "not \(rng.pick(Self.eventFlags))"
        case 1: return rng.pick(Self.eventFlags)
        case 2: return "s == \(rng.pick(["\"u\"", "\"\"", "\"é\""]))"
        case 3: return rng.pick(["ok", "not ok", "ok == true"])
        case 4:
            if rng.chance(40) { return "x between \(rng.pick(["-3", "1", "2.5"])) and \(rng.pick(["1", "2", "7"]))" }
            return "x in [\(rng.pick(["1, 2", "0", "-3, 2.5, 7"]))]"
        case 5:
            // A flag a `while` rule holds, as of the event (every w_k a
            // state rule may set; the last one might set another).
            if stateRuleCount > 1 && rng.chance(40) { return Self.stateFlags[rng.below(stateRuleCount - 1)] }
            return "score \(rng.pick(["<", ">="])) \(rng.pick(["0", "50", "-3"]))"
        case 6:
            if rng.chance(20) { return rng.pick(["level > 2", "zone == \"u\"", "member", "level <= score"]) }
            if rng.chance(30) { return "live \(rng.pick([">=", "<"])) \(rng.pick(["1", "3", "50"]))" }
            return "count(\(aggregateBody())) \(rng.pick([">=", "<"])) \(1 + rng.below(3))"
        default: return "\(numberExpr(depth: 1)) \(rng.pick(["<", "<=", ">", ">=", "==", "!="])) \(numberExpr(depth: 0))"
        }
    }

    private mutating func numberExpr(depth: Int) -> String {
        if depth > 0 && rng.chance(40) {
            switch rng.below(3) {
            case 0: return "\(numberExpr(depth: depth - 1)) \(rng.pick(["+", "-", "*", "/", "%"])) \(numberExpr(depth: depth - 1))"
            case 1:
                // Two arguments mostly; three now and then (`min(a, b, c)`).
                let more = rng.chance(25) ? ", \(numberExpr(depth: depth - 1))" : ""
                return "\(rng.pick(["min", "max"]))(\(numberExpr(depth: depth - 1)), \(numberExpr(depth: depth - 1))\(more))"
            default:
                // Now and then a value chosen by a condition.
                if rng.chance(30) {
                    return "(if \(condition(depth: 0)) then \(numberExpr(depth: depth - 1)) else \(numberExpr(depth: depth - 1)))"
                }
                return "abs(\(numberExpr(depth: depth - 1)))"
            }
        }
        switch rng.below(6) {
        case 0, 1: return rng.chance(10) ? "score" : rng.pick(Self.numberFields)
        case 2 where !constants.isEmpty: return rng.pick(constants)
        case 3: return "sum(\(rng.pick(eventNames)).x within \(duration()))"
        default: return rng.chance(3) ? "1_000_000_000_000_000_000" : rng.pick(["1", "2.5", "0", "3", "10", "0.5", "-2.5"])
        }
    }

    // MARK: - Streams

    private mutating func stream() -> [String] {
        var lines: [String] = []
        var t = 20_454 * 86_400  // 2026-01-01
        let people = rng.chance(10) ? ["p", "q", "a\\\"b", "é"] : ["p", "q", "r"]
        var ids: [(person: String, id: String)] = []
        var times: [Int] = []
        for k in 0..<rng.below(40) {
            if rng.chance(12) {
                lines.append(retraction(ids: ids, people: people, time: t))
                continue
            }
            switch rng.below(10) {
            case 0: t += 0  // a tie
            case 1:  // out of order, for someone; half the time tying with an earlier line
                if rng.chance(50), !times.isEmpty { t = rng.pick(times) } else { t -= rng.below(3 * 86_400) }
            case 2: t += rng.below(40) * 86_400
            default: t += rng.below(20) * 3600 + rng.below(3) * 60
            }
            var fields: [String] = []
            let type = rng.chance(5) ? "unknown" : rng.pick(Self.types)
            for f in Self.numberFields where rng.chance(declared ? 92 : 70) {
                fields.append("\"\(f)\":\(rng.chance(5) ? "\"7\"" : (rng.chance(4) ? rng.pick(["1e300", "-1e300", "9007199254740993", "-0"]) : rng.pick(["0", "1", "2", "2.5", "-3", "7", "0.1", "-2.5", "3"])))")
            }
            if rng.chance(declared ? 92 : 50) { fields.append("\"s\":\(rng.pick(["\"u\"", "\"\"", "\"\\u00e9\"", "\"e\\u0301\"", "\"\\ud83d\\ude00\"", "\"\\ud800\""]))") }
            if rng.chance(declared ? 92 : 50) { fields.append("\"ok\":\(rng.pick(["true", "false"]))") }
            if rng.chance(5) { fields.append("\"f\":\(rng.pick(["true", "false"]))") }  // a key named like a flag
            if rng.chance(3) { fields.append("\"x\":1") }  // a duplicate of a read field
            let person = rng.pick(people)
            times.append(t)
            var line = "{\"citizen\":\"\(person)\",\"type\":\"\(type)\",\"time\":\"\(time(base: t))\""
            if rng.chance(60) {
                // Ids, now and then one used before (by anyone).
                let id = rng.chance(6) && !ids.isEmpty ? rng.pick(ids).id : "e\(k)"
                line += ",\"id\":\"\(id)\""
                ids.append((person, id))
            }
            for f in fields { line += "," + f }
            line += "}"
            if rng.chance(4) { line = rng.pick(["{", "[]", "null", "{\"citizen\":\"\",\"type\":\"a\",\"time\":\"2026-01-01\"}",
                                                "{\"citizen\":\"p\",\"type\":\"a\"}", "", "   ",
                                                "{\"citizen\":\"p\",\"type\":\"a\",\"time\":\"2026-02-30\"}",
                                                "{\"citizen\":\"p\",\"type\":\"a\",\"time\":\"2026-01-01\",\"x\":1e999}",
                                                "{\"citizen\":\"p\",\"type\":\"a\",\"time\":\"0001-01-01\"}",
                                                "{\"citizen\":\"q\",\"type\":\"b\",\"time\":\"9999-12-31T23:59:59-14:00\",\"x\":1}",
                                                "{\"citizen\":\"p\",\"type\":\"a\",\"time\":\"2026-01-01\",\"x\":null}"]) }
            lines.append(line)
        }
        return lines
    }

    /// A retraction line: mostly of an id its person has, else of someone
    /// else's or an unknown one, now and then malformed.
    private mutating func retraction(ids: [(person: String, id: String)], people: [String], time t: Int) -> String {
        var person = rng.pick(people), target = "zz"
        if !ids.isEmpty && rng.chance(85) {
            let pick = rng.pick(ids)
            target = pick.id
            if rng.chance(85) { person = pick.person }
        }
        var line = "{\"citizen\":\"\(person)\",\"type\":\"retract\",\"time\":\"\(time(base: t - (rng.chance(15) ? rng.below(2 * 86_400) : 0)))\""
        switch rng.below(20) {
        case 0: break                                           // no target
        case 1: line += ",\"target\":\"\(target)\",\"x\":1"       // a field a retraction cannot have
        case 2: line += ",\"target\":7"                          // not a string
        default: line += ",\"target\":\"\(target)\""
        }
        if rng.chance(40) { line += ",\"reason\":\"court ruling 55/2026\"" }
        return line + "}"
    }

    /// An ISO-8601 time for seconds since 1970, in one of the shapes the
    /// contract allows.
    private mutating func time(base seconds: Int) -> String {
        let days = Int(floor(Double(seconds) / 86_400))
        let rem = seconds - days * 86_400
        let (y, m, d) = Self.civil(days)
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let date = "\(String(format: "%04d", y))-\(two(m))-\(two(d))"
        switch rng.below(8) {
        case 0 where rem == 0: return date
        case 1:
            // The same instant at +02:00.
            let local = seconds + 7200
            let ld = Int(floor(Double(local) / 86_400)), lr = local - ld * 86_400
            let (ly, lm, ldd) = Self.civil(ld)
            return "\(String(format: "%04d", ly))-\(two(lm))-\(two(ldd))T\(two(lr / 3600)):\(two(lr / 60 % 60)):\(two(lr % 60))+02:00"
        case 2: return "\(date)T\(two(rem / 3600)):\(two(rem / 60 % 60)):\(two(rem % 60)).250Z"
        default: return "\(date)T\(two(rem / 3600)):\(two(rem / 60 % 60)):\(two(rem % 60))Z"
        }
    }

    /// The generator writes input, so it may use the engine's calendar; the
    /// reference model reads times with its own.
    static func civil(_ days: Int) -> (Int, Int, Int) {
        let (y, m, d) = Timestamp.civil(fromDays: days)
        return (y, m, d)
    }
}
