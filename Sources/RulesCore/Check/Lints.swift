/// The deeper checks of `rules check`, over the checked policy: rules that
/// contradict each other, conditions that can never hold, effects that end
/// inside the window that set them, and privileges granted and denied at
/// once. All are warnings: the policy runs, but probably not as meant.
struct Lints {
    let policy: CheckedPolicy
    var found: [Diagnostic] = []

    static func run(_ policy: CheckedPolicy) -> [Diagnostic] {
        var lints = Lints(policy: policy)
        lints.contradictions()
        lints.impossibleConditions()
        lints.shortEffectsInLongWindows()
        lints.grantedAndDenied()
        return lints.found
    }

    private mutating func warn(_ code: DiagnosticCode, _ message: String, at span: Span, help: String,
                               note: (Span, String)? = nil) {
        found.append(Diagnostic(code, message, at: span, help: help, notes: note.map { [$0] } ?? []))
    }

    private func name(_ kind: TargetKind, _ id: Int) -> String {
        policy.names(of: kind)[id].replacing("_", with: " ")
    }

    private static func word(_ kind: TargetKind, set: Bool) -> String {
        set ? kind.setVerb : kind.liftVerb
    }

    // MARK: - W0507: effects that undo each other on the same events

    /// Two event rules (or one) that always fire together — the same event,
    /// count, window and condition — where one sets what the other lifts:
    /// the one written later always wins, so the other does nothing.
    private mutating func contradictions() {
        // Only rules that fire together can contradict: group them first
        // (a pass over thousands of rules, not a comparison of every pair).
        // Nothing to find unless some target is both set and lifted.
        func key(_ kind: TargetKind, _ id: Int) -> Int { id * TargetKind.allCases.count + kind.index }
        var set = Set<Int>(), lifted = Set<Int>()
        for rule in policy.eventRules {
            for effect in rule.effects {
                switch effect {
                case .set(let kind, let id, _, _): set.insert(key(kind, id))
                case .lift(let kind, let id, _): lifted.insert(key(kind, id))
                case .score, .setScore, .setAttribute: break
                }
            }
        }
        let both = set.intersection(lifted)
        if both.isEmpty { return }
        // A timed rule fires at its deadline, not on its event: with the
        // rules of the same timer only.
        struct Together: Hashable { var events: [Int]; var count: Int?; var window: Int64?; var condition: IR?; var timer: [Int64]? }
        var groups: [Together: [CheckedEventRule]] = [:]
        var order: [Together] = []
        for rule in policy.eventRules where rule.effects.contains(where: {
            switch $0 {
            case .set(let kind, let id, _, _), .lift(let kind, let id, _): return both.contains(key(kind, id))
            case .score, .setScore, .setAttribute: return false
            }
        }) {
            let timer = rule.timer.map { [$0.delay, $0.repeats ? 1 : 0] + $0.unless.map(Int64.init) }
            let key = Together(events: rule.events, count: rule.count, window: rule.window, condition: rule.condition, timer: timer)
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(rule)
        }
        for key in order { contradictions(among: groups[key]!) }
    }

    private mutating func contradictions(among rules: [CheckedEventRule]) {
        for (j, later) in rules.enumerated() {
            for i in 0...j {
                let earlier = rules[i]
                // A lift with a reason undoes only the denial of that reason.
                for case .set(let kind, let id, _, let reason) in earlier.effects {
                    for case .lift(let liftKind, let liftId, let liftReason) in later.effects
                    where liftKind == kind && liftId == id && (liftReason == nil || liftReason == reason) {
                        report(set: (kind, id), setRule: earlier, liftRule: later, laterIsLift: true)
                    }
                }
                guard i != j else { continue }
                for case .lift(let kind, let id, let liftReason) in earlier.effects {
                    for case .set(let setKind, let setId, _, let reason) in later.effects
                    where setKind == kind && setId == id && (liftReason == nil || liftReason == reason) {
                        report(set: (kind, id), setRule: later, liftRule: earlier, laterIsLift: false)
                    }
                }
            }
        }
    }

    private mutating func report(set target: (TargetKind, Int), setRule: CheckedEventRule, liftRule: CheckedEventRule,
                                 laterIsLift: Bool) {
        let (kind, id) = target
        let set = "`\(Self.word(kind, set: true)) \(name(kind, id))`", lift = "`\(Self.word(kind, set: false)) \(name(kind, id))`"
        let later = laterIsLift ? liftRule : setRule, earlier = laterIsLift ? setRule : liftRule
        let outcome = laterIsLift ? "\(lift) always undoes \(set)" : "\(set) always comes back after \(lift)"
        let same = later.ast.span == earlier.ast.span
        warn(.contradictingRules, "\(outcome): \(same ? "this rule does both" : "the two rules fire on the same events")",
             at: later.ast.span,
             help: "effects apply in source order, so the later one wins every time; give the rules different conditions, or remove one",
             note: same ? nil : (earlier.ast.span, "the other rule"))
    }

    // MARK: - W0508: conditions that can never hold

    private mutating func impossibleConditions() {
        for rule in policy.eventRules {
            guard let condition = rule.condition, !condition.isConstant else { continue }
            if let reason = Feasibility.impossible(condition, policy: policy, expandFlags: false) {
                warn(.conditionNeverHolds, "this condition can never hold: \(reason)", at: rule.ast.condition!.span,
                     help: "the rule never fires; check the bounds and the score's min and max")
            }
        }
        for rule in policy.stateRules where !rule.condition.isConstant {
            if let reason = Feasibility.impossible(rule.condition, policy: policy, expandFlags: false) {
                warn(.conditionNeverHolds, "this condition can never hold: \(reason)", at: rule.ast.condition.span,
                     help: "the rule never holds; check the bounds and the score's min and max")
            }
        }
    }

    // MARK: - W0509: a timed effect shorter than the window that set it

    /// `3 speeding within 30 days → deny driving for 7 days`: when the denial
    /// ends, the three events are still in the window, so the next single
    /// `speeding` denies driving again.
    private mutating func shortEffectsInLongWindows() {
        for rule in policy.eventRules {
            guard let count = rule.count, count > 1, let window = rule.window else { continue }
            for case .set(let kind, let id, .fixed(let duration), _) in rule.effects where duration < window {
                let event = rule.ast.event.text.replacing("_", with: " ")
                warn(.effectShorterThanWindow,
                     "`\(Self.word(kind, set: true)) \(name(kind, id))` lasts \(Self.days(duration)), less than the \(Self.days(window, unit: true)) window that sets it: once it ends, one more `\(event)` sets it again",
                     at: rule.ast.span,
                     help: "if that is meant, nothing to do; to need \(count) new events, make it last as long as the window")
            }
        }
    }

    /// `7 days`, or `30-day` as a modifier (`unit`).
    private static func days(_ ticks: Int64, unit: Bool = false) -> String {
        let seconds = Double(ticks) / Double(Timestamp.perSecond)
        if seconds.truncatingRemainder(dividingBy: 86_400) == 0 {
            let d = Int(seconds / 86_400)
            return unit ? "\(d)-day" : "\(d) day\(d == 1 ? "" : "s")"
        }
        if seconds.truncatingRemainder(dividingBy: 3600) == 0 {
            let h = Int(seconds / 3600)
            return unit ? "\(h)-hour" : "\(h) hour\(h == 1 ? "" : "s")"
        }
        return unit ? "\(Arithmetic.format(seconds))-second" : "\(Arithmetic.format(seconds)) seconds"
    }

    // MARK: - W0510: granted and denied at once

    /// A privilege that `while` rules grant and deny, under conditions that
    /// can hold together: then the denial wins, and the grant shows nothing.
    private mutating func grantedAndDenied() {
        let rules = policy.stateRules
        for grant in rules {
            for case (.grant, let id) in grant.effects {
                for deny in rules where deny.effects.contains(where: { $0.kind == .deny && $0.name == id }) {
                    let both = IR.binary(.and, grant.condition, deny.condition)
                    guard Feasibility.impossible(both, policy: policy, expandFlags: true) == nil else { continue }
                    warn(.grantedAndDenied,
                         "`grant \(name(.grant, id))` here and `deny \(name(.deny, id))` can hold at the same time; then the denial wins",
                         at: grant.ast.span,
                         help: "if the denial should win, nothing to do; otherwise make the conditions exclude each other",
                         note: (deny.ast.span, "the rule that denies it"))
                }
            }
        }
    }
}

/// Whether a condition can hold, by bounds on each field and the score: a
/// conjunction of comparisons against constants that no value satisfies.
/// Anything it cannot reason about (`or`, arithmetic, other flags) counts as
/// possible, so it never warns wrongly.
enum Feasibility {
    struct Range {
        var low = -Double.infinity, lowStrict = false
        var high = Double.infinity, highStrict = false
        var equalText: String? = nil
        /// The comparisons so far, described only when they conflict.
        var atoms: [(BinaryOp, IR)] = []
        /// Set when two equalities disagree.
        var contradicted = false

        var empty: Bool { contradicted || low > high || (low == high && (lowStrict || highStrict)) }
    }

    /// A reason the condition cannot hold ("it needs speed > 100 and speed
    /// < 50"), or nil when it might.
    static func impossible(_ ir: IR, policy: CheckedPolicy, expandFlags: Bool) -> String? {
        var atoms: [IR] = []
        conjuncts(ir, policy: policy, expandFlags: expandFlags, depth: 0, into: &atoms)
        var ranges: [String: Range] = [:]
        // The score's own bounds are facts.
        var score = Range()
        if let lo = policy.minScore { score.low = Double(lo) }
        if let hi = policy.maxScore { score.high = Double(hi) }
        ranges["score"] = score
        for atom in atoms {
            guard case .binary(var op, var a, var b) = atom else { continue }
            if case .number = a { swap(&a, &b); op = flipped(op) }
            if case .string = a { swap(&a, &b) }
            let variable: String
            switch a {
            case .score: variable = "score"
            case .field(_, let name): variable = name
            default: continue
            }
            var r = ranges[variable] ?? Range()
            switch b {
            case .number(let c):
                switch op {
                case .gt: if c > r.low || (c == r.low && !r.lowStrict) { r.low = c; r.lowStrict = true }
                case .ge: if c > r.low { r.low = c; r.lowStrict = false }
                case .lt: if c < r.high || (c == r.high && !r.highStrict) { r.high = c; r.highStrict = true }
                case .le: if c < r.high { r.high = c; r.highStrict = false }
                case .eq:
                    let outside = c < r.low || (c == r.low && r.lowStrict) || c > r.high || (c == r.high && r.highStrict)
                    if outside { r.contradicted = true } else { r.low = c; r.high = c; r.lowStrict = false; r.highStrict = false }
                default: continue
                }
            case .string(let s) where op == .eq:
                if let other = r.equalText, other != s { r.contradicted = true }
                r.equalText = s
            default: continue
            }
            r.atoms.append((op, b))
            ranges[variable] = r
            if r.empty {
                let name = variable.replacing("_", with: " ")
                var why = r.atoms.map { "\(name) \($0.0.rawValue) \(describe($0.1))" }
                if variable == "score" {
                    if let lo = policy.minScore { why.append("the score's min is \(lo)") }
                    if let hi = policy.maxScore { why.append("the score's max is \(hi)") }
                }
                return "it needs " + why.joined(separator: " and ")
            }
        }
        return nil
    }

    private static func flipped(_ op: BinaryOp) -> BinaryOp {
        switch op {
        case .lt: return .gt
        case .le: return .ge
        case .gt: return .lt
        case .ge: return .le
        default: return op
        }
    }

    private static func describe(_ ir: IR) -> String {
        switch ir {
        case .number(let n): return Arithmetic.format(n)
        case .string(let s): return "\"\(s)\""
        default: return "…"
        }
    }

    /// The parts of a conjunction; a flag set only by one `while` rule (and
    /// no event rule) stands for that rule's condition when `expandFlags`.
    private static func conjuncts(_ ir: IR, policy: CheckedPolicy, expandFlags: Bool, depth: Int, into atoms: inout [IR]) {
        switch ir {
        case .binary(.and, let a, let b):
            conjuncts(a, policy: policy, expandFlags: expandFlags, depth: depth, into: &atoms)
            conjuncts(b, policy: policy, expandFlags: expandFlags, depth: depth, into: &atoms)
        case .unary(.not, .binary(let op, let a, let b)) where [.lt, .le, .gt, .ge].contains(op):
            let negated: BinaryOp = op == .lt ? .ge : op == .le ? .gt : op == .gt ? .le : .lt
            atoms.append(.binary(negated, a, b))
        case .flag(let f) where expandFlags && depth < 5:
            let setByEvents = policy.eventRules.contains { $0.effects.contains { if case .set(.flag, f, _, _) = $0 { return true }; return false } }
            let setters = policy.stateRules.filter { $0.effects.contains { $0.kind == .flag && $0.name == f } }
            if !setByEvents, setters.count == 1 {
                conjuncts(setters[0].condition, policy: policy, expandFlags: true, depth: depth + 1, into: &atoms)
            }
        default:
            atoms.append(ir)
        }
    }
}
