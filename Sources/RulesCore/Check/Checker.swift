/// Name resolution, types, constants and rule restrictions: turns the AST of
/// all a policy's files into a `CheckedPolicy`, collecting every diagnostic.
struct Checker {
    private var sink = DiagnosticSink()
    private var policy: CheckedPolicy
    private let statements: [Statement]

    // Symbol tables, filled in `collect`.
    private var constantDecls: [String: (expr: Expr, span: Span)] = [:]
    private var constantValues: [String: (IR, ValueType)] = [:]
    private var constantsInProgress: [String] = []
    private var constantsFailed: Set<String> = []
    private var constantsUsed: Set<String> = []
    /// `let`s whose value reads the person's state (the score, flags,
    /// counts, sums, or another such `let`): a named per-person value,
    /// resolved once and read wherever it is named, as of that moment.
    private var personValues: Set<String> = []
    private var personValueChecks: [String: Bool] = [:]
    /// `output NAME = …` declarations, in source order: each is also a
    /// `let` (rules may read it), and the report shows it.
    private var outputDecls: [Name] = []
    /// `attribute NAME = START`: ids in source order (known from `collect`
    /// on, so any expression can name one), the declarations, and each
    /// one's type once its start value is checked (`.any` before: a
    /// start that reads another name being resolved).
    private var attributeIds: [String: Int] = [:]
    private var attributeDecls: [(name: Name, start: Expr)] = []
    private var eventIds: [String: Int] = [:]
    private var eventDeclSpans: [String: Span] = [:]
    /// Event groups (`event infraction = speeding, red light`), and the
    /// event ids each stands for once resolved (sorted; nested groups
    /// flattened).
    private var groupDecls: [String: EventGroup] = [:]
    private var groupMembers: [String: [Int]] = [:]
    private var groupsInProgress: [String] = []
    private var groupsFailed: Set<String> = []
    private var declaredFieldTypes: [Int: [String: ValueType]] = [:]
    private var fieldIds: [String: Int] = [:]
    private var flagSetNames: Set<String> = []
    private var flagIds: [String: Int] = [:]
    private var privilegeIds: [String: Int] = [:]
    private var flagsRead: [String: Span] = [:]
    private var flagsSetAt: [String: Span] = [:]
    private var bufferIds: [WindowBufferSpec: Int] = [:]
    /// Every name use decided so far, by where it stands (a constant's
    /// value is resolved once, but a name is recorded once either way).
    private var uses: [Span: NameUse] = [:]

    init(statements: [Statement], sources: SourceSet) {
        self.statements = statements
        self.policy = CheckedPolicy(sources: sources)
    }

    static func check(_ statements: [Statement], sources: SourceSet) -> (CheckedPolicy, [Diagnostic]) {
        var checker = Checker(statements: statements, sources: sources)
        checker.run()
        return (checker.policy, checker.sink.items)
    }

    /// Records what the name at `span` is.
    private mutating func record(_ name: String, _ kind: NameUse.Kind, _ role: NameUse.Role, at span: Span) {
        uses[span] = NameUse(name: name, kind: kind, role: role, span: span)
    }

    private mutating func report(_ code: DiagnosticCode, _ message: String, at span: Span, help: String? = nil,
                                 notes: [(span: Span, message: String)] = []) {
        sink.add(Diagnostic(code, message, at: span, help: help, notes: notes))
    }

    private mutating func run() {
        collect()
        resolveAllGroups()
        checkAttributes()
        resolveAllConstants()
        checkOutputs()
        checkSettings()
        var stateRules: [CheckedStateRule] = []
        for statement in statements {
            switch statement {
            case .eventRule(let rule): if let r = checkEventRule(rule) { policy.eventRules.append(r) }
            case .stateRule(let rule): if let r = checkStateRule(rule) { stateRules.append(r) }
            // Checked by their own passes before the rules (settings,
            // constants, declarations), by the test runner, or by the loader.
            // Every statement is named here, so a new one does not compile
            // until it is given its place.
            case .settings, .constant, .output, .attribute, .event, .group, .test, .use: break
            }
        }
        let keys = TargetKeys(policy)
        let names = (0..<(policy.flags.count + 2 * policy.privileges.count)).map { keys.shown($0, in: policy) }
        (policy.stateRules, policy.cycle) = RuleGraph.order(stateRules, names: names, sink: &sink)
        policy.bufferReadWindows = Self.windowsReadByStateRules(policy)
        policy.reportExtras = statements.compactMap { statement in
            switch statement {
            case .attribute(let name, _, _): return attributeIds[name.text].map(ReportExtra.attribute)
            case .output(let name, _, _): return policy.outputs.firstIndex { $0.name == name.text }.map(ReportExtra.output)
            default: return nil
            }
        }
        policy.nameUses = uses.values.sorted { ($0.span.file, $0.span.start) < ($1.span.file, $1.span.start) }
        warnUnused()
        warnDuplicates()
        checkRuleNames()
        if !sink.items.contains(where: { $0.severity == .error }) {
            for d in Lints.run(policy) { sink.add(d) }
        }
    }

    // MARK: - Collecting names

    private mutating func collect() {
        var flagNames: Set<String> = []
        var privilegeNames: Set<String> = []
        var reasonNames: Set<String> = []
        func note(_ effects: [Effect]) {
            for e in effects {
                if let reason = e.reason {
                    record(reason.text, .reason, e.kind.isLift ? .lift : .set, at: reason.span)
                    reasonNames.insert(reason.text)
                }
                switch e.kind {
                case .set(let kind, let n, _) where kind.isFlag:
                    record(n.text, .flag, .set, at: n.span)
                    flagNames.insert(n.text)
                    flagSetNames.insert(n.text)
                    if flagsSetAt[n.text] == nil { flagsSetAt[n.text] = n.span }
                case .set(let kind, let n, _):
                    record(n.text, NameUse.Kind(kind), .set, at: n.span)
                    if kind.isFlag { flagNames.insert(n.text) } else { privilegeNames.insert(n.text) }
                case .lift(let kind, let n):
                    record(n.text, NameUse.Kind(kind), .lift, at: n.span)
                    if kind.isFlag { flagNames.insert(n.text) } else { privilegeNames.insert(n.text) }
                case .setAttribute(let n, _): record(n.text, .attribute, .set, at: n.span)
                case .score, .setScore: break
                }
            }
        }
        for statement in statements {
            switch statement {
            case .constant(let name, let expr, let span):
                if let attribute = attributeDecls.first(where: { $0.name.text == name.text }) {
                    report(.duplicateConstant, "constant `\(shown(name.text))` has the name of an attribute", at: name.span,
                           help: "rename one of them", notes: [(attribute.name.span, "the attribute is declared here")])
                } else if let first = constantDecls[name.text] {
                    report(.duplicateConstant, "constant `\(name.text)` is defined twice", at: name.span,
                           help: "rename one of them", notes: [(first.span, "first defined here")])
                } else {
                    constantDecls[name.text] = (expr, span)
                }
                record(name.text, .constant, .declaration, at: name.span)
            case .attribute(let name, let start, _):
                if Self.reportKeys.contains(name.text) {
                    report(.reportKeyTaken, "an attribute cannot be called `\(name.text)`: every report line has that key already", at: name.span,
                           help: "name it otherwise; the report's own keys are `citizen`, `score`, `flags`, `denied` and `granted`")
                } else if let first = constantDecls[name.text]?.span ?? attributeDecls.first(where: { $0.name.text == name.text })?.name.span {
                    report(.duplicateConstant, "attribute `\(shown(name.text))` has the name of another `let`, output or attribute", at: name.span,
                           help: "rename one of them", notes: [(first, "first defined here")])
                } else {
                    attributeIds[name.text] = attributeDecls.count
                    attributeDecls.append((name, start))
                }
                record(name.text, .attribute, .declaration, at: name.span)
            case .output(let name, let expr, let span):
                if let first = constantDecls[name.text]?.span ?? attributeDecls.first(where: { $0.name.text == name.text })?.name.span {
                    report(.duplicateConstant, "output `\(shown(name.text))` has the name of another `let`, output or attribute", at: name.span,
                           help: "rename one of them", notes: [(first, "first defined here")])
                } else {
                    constantDecls[name.text] = (expr, span)
                    outputDecls.append(name)
                }
                record(name.text, .constant, .declaration, at: name.span)
            case .event(let decl): declare(decl)
            case .group(let group):
                if let first = groupDecls[group.name.text] {
                    report(.duplicateDeclaration, "event group `\(shown(group.name.text))` is defined twice", at: group.name.span,
                           help: "keep one definition with all the events", notes: [(first.name.span, "first defined here")])
                } else {
                    groupDecls[group.name.text] = group
                }
                record(group.name.text, .group, .declaration, at: group.name.span)
            case .eventRule(let r): note(r.effects)
            case .stateRule(let r): note(r.effects)
            default: break
            }
        }
        // Flags read by `while` rules but set nowhere are still flags (a
        // warning says so); collect them so ids are stable and sorted.
        for statement in statements {
            if case .stateRule(let r) = statement { collectNames(r.condition, into: &flagNames) }
        }
        policy.flags = flagNames.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        policy.privileges = privilegeNames.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        policy.denialReasons = reasonNames.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        for (i, f) in policy.flags.enumerated() { flagIds[f] = i }
        for (i, p) in policy.privileges.enumerated() { privilegeIds[p] = i }
    }

    /// Bare names of a `while` condition that are not constants are flags.
    private func collectNames(_ e: Expr, into set: inout Set<String>) {
        switch e.kind {
        case .name(let n) where constantDecls[n] == nil && attributeIds[n] == nil && !isConstantWithUnit(n): set.insert(n)
        case .unary(_, let a): collectNames(a, into: &set)
        case .binary(_, let a, let b): collectNames(a, into: &set); collectNames(b, into: &set)
        case .inList(let a, let items): collectNames(a, into: &set); items.forEach { collectNames($0, into: &set) }
        case .call(_, let args): args.forEach { collectNames($0, into: &set) }
        case .conditional(let c, let a, let b): [c, a, b].forEach { collectNames($0, into: &set) }
        default: break
        }
    }

    /// The keys of a stream line that are not event fields (the contract's
    /// "Event streams" and "Corrections"): no declaration may use them.
    static let reservedKeys = [defaultPersonKey, "type", "time", "id"]
    /// The contract's person key (`--person-key` names another at run time).
    static let defaultPersonKey = "citizen"
    static let neverFields: Set<String> = ["type", "time", "id"]

    /// The type of a retraction line (docs/LANGUAGE.md, "Corrections"): it
    /// fires no rule, so no rule or declaration may name it.
    static let retractType = "retract"

    private mutating func reportReservedType(_ name: Name) {
        report(.reservedEventType, "`retract` is the type of a retraction line, which takes an event back and fires no rule",
               at: name.span, help: "name the event type otherwise; a retraction is `{\"type\":\"retract\",\"target\":ID,...}`")
    }

    private mutating func declare(_ decl: EventDecl) {
        policy.hasDeclarations = true
        if decl.name.text == Self.retractType { return reportReservedType(decl.name) }
        if let first = eventDeclSpans[decl.name.text] {
            report(.duplicateDeclaration, "event `\(decl.name.text)` is declared twice", at: decl.name.span,
                   help: "keep one declaration with all the fields", notes: [(first, "first declared here")])
            return
        }
        eventDeclSpans[decl.name.text] = decl.name.span
        record(decl.name.text, .event, .declaration, at: decl.name.span)
        let id = eventId(decl.name.text)
        var types: [String: ValueType] = [:]
        var declared: [(field: Int, type: ValueType)] = []
        for field in decl.fields {
            guard let type = ValueType(rawValue: field.type.text), type != .any, type != .duration else {
                report(.unknownType, "unknown field type `\(field.type.text)`", at: field.type.span,
                       help: Suggest.help(for: field.type.text, among: ["number", "string", "bool"])
                           ?? "field types are `number`, `string` and `bool`")
                continue
            }
            if types[field.name.text] != nil {
                report(.duplicateDeclaration, "field `\(field.name.text)` is declared twice in event `\(decl.name.text)`",
                       at: field.name.span)
                continue
            }
            if Self.reservedKeys.contains(field.name.text) {
                report(.reservedField, "`\(field.name.text)` is a reserved key of every stream line, not a field",
                       at: field.name.span, help: "rename the field; the reserved keys are \(Self.reservedKeys.map { "`\($0)`" }.joined(separator: ", "))")
                continue
            }
            types[field.name.text] = type
            declared.append((fieldId(field.name.text), type))
            record(field.name.text, .field, .declaration, at: field.name.span)
        }
        declaredFieldTypes[id] = types
        policy.events[id].declared = declared
    }

    private mutating func eventId(_ name: String) -> Int {
        if let id = eventIds[name] { return id }
        eventIds[name] = policy.events.count
        policy.events.append(EventInfo(name: name, declared: nil))
        return policy.events.count - 1
    }

    private mutating func fieldId(_ name: String) -> Int {
        if let id = fieldIds[name] { return id }
        fieldIds[name] = policy.fields.count
        policy.fields.append(name)
        return policy.fields.count - 1
    }

    // MARK: - Constants and settings

    private mutating func resolveAllConstants() {
        for name in constantDecls.keys.sorted() { _ = constant(name) }
    }

    /// The folded value of a constant, resolving others on demand; a cycle
    /// is reported once and yields nil.
    private mutating func constant(_ name: String) -> (IR, ValueType)? {
        // A constant that failed was reported once; its uses resolve to
        // nothing (no rule then "never fires", no duration "is missing").
        if let v = constantValues[name] { return constantsFailed.contains(name) ? nil : v }
        guard let decl = constantDecls[name] else { return nil }
        if let k = constantsInProgress.firstIndex(of: name) {
            let cycle = (constantsInProgress[k...] + [name]).map { "`\($0)`" }.joined(separator: " → ")
            let message = constantsInProgress.count - k == 1
                ? "constant `\(name)` is defined in terms of itself"
                : "constants depend on each other in a cycle: \(cycle)"
            report(.constantCycle, message, at: decl.span,
                   help: "give one of the constants in the cycle a value that does not use the others")
            constantValues[name] = (.number(0), .number)
            constantsFailed.formUnion(constantsInProgress[k...])
            return nil
        }
        constantsInProgress.append(name)
        defer { constantsInProgress.removeLast() }
        // An output is about the person whatever it reads: an event's field
        // there is refused as in a per-person `let`.
        if isPersonValue(name) || outputDecls.contains(where: { $0.text == name }) {
            guard let (ir, type) = resolve(decl.expr, scope: .person) else {
                constantValues[name] = (.number(0), .any)
                constantsFailed.insert(name)
                return nil
            }
            personValues.insert(name)
            policy.personValues.insert(name)
            constantValues[name] = (ir, type)
            return (ir, type)
        }
        guard let (ir, type) = resolve(decl.expr, scope: .constant), let value = fold(ir, type: type, at: decl.expr.span) else {
            constantValues[name] = (.number(0), .any)
            constantsFailed.insert(name)
            return nil
        }
        constantValues[name] = (value, type)
        return (value, type)
    }

    /// The keys every report line has: an output cannot be one of them.
    static let reportKeys: Set<String> = [defaultPersonKey, "score", "flags", "denied", "granted"]

    /// Each output: a number, named unlike the report's own keys; in the
    /// policy in source order (the order of its keys in the report).
    private mutating func checkOutputs() {
        for name in outputDecls {
            constantsUsed.insert(name.text)  // the report uses it
            guard let decl = constantDecls[name.text] else { continue }
            if Self.reportKeys.contains(name.text) {
                report(.reportKeyTaken, "an output cannot be called `\(name.text)`: every report line has that key already", at: name.span,
                       help: "name it otherwise; the report's own keys are `citizen`, `score`, `flags`, `denied` and `granted`")
                continue
            }
            // A failed value was reported where it failed.
            guard let (ir, type) = constant(name.text) else { continue }
            guard type == .number else {
                report(.typeMismatch, "an output is a number, but `\(shown(name.text))` is a \(type.rawValue)", at: decl.expr.span,
                       help: type == .bool ? "to report a condition, write `if CONDITION then 1 else 0`" : nil)
                continue
            }
            policy.outputs.append(CheckedOutput(name: name.text, value: ir, expr: decl.expr, span: decl.span))
        }
    }

    /// Whether `let name = …` reads the person's state: its expression
    /// names the score, a count or sum, a flag, or another such `let`.
    /// (Decided by what the expression names, before it is resolved: a
    /// cycle answers false here and is reported when it is resolved.)
    private mutating func isPersonValue(_ name: String) -> Bool {
        if let known = personValueChecks[name] { return known }
        guard let decl = constantDecls[name] else { return false }
        personValueChecks[name] = false
        let reads = readsPerson(decl.expr)
        personValueChecks[name] = reads
        return reads
    }

    private mutating func readsPerson(_ e: Expr) -> Bool {
        e.readsState { n, _ in constantDecls[n] != nil ? isPersonValue(n) : flagIds[n] != nil || attributeIds[n] != nil }
    }

    /// Evaluates a constant expression at check time.
    private mutating func fold(_ ir: IR, type: ValueType, at span: Span) -> IR? {
        switch Folder.evaluate(ir) {
        case .number(let n)? where n.isFinite: return .number(n)
        case .number?:
            report(.invalidConstant, "this constant expression is not a finite number", at: span,
                   help: "check for division by zero")
            return nil
        case .bool(let b)?: return .bool(b)
        case .string(let s)?: return .string(s)
        case nil:
            report(.invalidConstant, "this expression cannot be evaluated", at: span,
                   help: "check for division by zero and mixed types")
            return nil
        }
    }

    private mutating func constantNumber(_ expr: Expr, what: String) -> Double? {
        guard let (ir, type) = resolve(expr, scope: .constant) else { return nil }
        guard type == .number else {
            report(.typeMismatch, "\(what) must be a number, not a \(type.rawValue)", at: expr.span)
            return nil
        }
        guard case .number(let n)? = fold(ir, type: type, at: expr.span) else { return nil }
        return n
    }

    /// A duration in ticks (`Timestamp.perSecond`): a duration literal or a duration constant.
    private mutating func constantDuration(_ expr: Expr, what: String) -> Int64? {
        guard let (ir, type) = resolve(expr, scope: .constant) else { return nil }
        guard type == .duration else {
            let help: String
            if case .number(let n) = expr.kind { help = "add a unit: `\(Arithmetic.format(n)) days`" } else {
                help = "write a number and a unit, like `30 days`"
            }
            report(.durationExpected, "\(what) must be a duration", at: expr.span, help: help)
            return nil
        }
        guard case .number(let seconds)? = fold(ir, type: .number, at: expr.span) else { return nil }
        guard seconds > 0 else {
            report(.badDuration, "\(what) must be longer than zero", at: expr.span)
            return nil
        }
        guard seconds <= Timestamp.longestDurationSeconds else {
            report(.badDuration, "\(what) is longer than 1000 years", at: expr.span)
            return nil
        }
        guard let ticks = Timestamp.ticks(seconds: seconds), ticks > 0 else {
            report(.badDuration, "\(what) must be at least a microsecond", at: expr.span)
            return nil
        }
        return ticks
    }

    private mutating func checkSettings() {
        var seen: [ScoreSettingKind: Span] = [:]
        var start: Double? = nil, lo: Double? = nil, hi: Double? = nil
        var startSpan: Span? = nil
        for case .settings(let parts, _) in statements {
            for part in parts {
                if let first = seen[part.kind] {
                    report(.duplicateSetting, "the score's `\(part.kind.rawValue)` is set twice", at: part.span,
                           notes: [(first, "first set here")])
                    continue
                }
                seen[part.kind] = part.span
                guard let n = constantNumber(part.value, what: "`score \(part.kind.rawValue)`") else { continue }
                guard n == n.rounded() else {
                    report(.badScoreBounds, "the score is a whole number; `\(part.kind.rawValue)` must be one too", at: part.value.span)
                    continue
                }
                guard abs(n) <= Double(Arithmetic.scoreLimit) else {
                    report(.badScoreBounds, "the score stays within ±9,000,000,000,000,000; `\(part.kind.rawValue)` is beyond that",
                           at: part.value.span)
                    continue
                }
                switch part.kind {
                case .startsAt: start = n; startSpan = part.span
                case .min: lo = n
                case .max: hi = n
                }
            }
        }
        if let lo, let hi, lo > hi {
            report(.badScoreBounds, "the score's min (\(Arithmetic.format(lo))) is above its max (\(Arithmetic.format(hi)))",
                   at: seen[.min]!)
        }
        if let s = start, let span = startSpan {
            if let lo, s < lo { report(.badScoreBounds, "the score starts at \(Arithmetic.format(s)), below its min \(Arithmetic.format(lo))", at: span) }
            if let hi, s > hi { report(.badScoreBounds, "the score starts at \(Arithmetic.format(s)), above its max \(Arithmetic.format(hi))", at: span) }
        }
        policy.startScore = Int64(start ?? 0)
        policy.minScore = lo.map { Int64($0) }
        policy.maxScore = hi.map { Int64($0) }
    }

    // MARK: - Rules

    private mutating func checkEventRule(_ written: EventRule) -> CheckedEventRule? {
        if let timer = written.timer { return checkTimedRule(written, timer) }
        var rule = written
        if rule.count == nil, rule.window != nil {
            // `let strikes = 3` then `strikes post removed within 7 days`:
            // the lexer joined the constant into the event's name.
            guard let counted = countFromConstant(rule) else { return nil }
            rule = counted
        }
        guard let events = resolveEvents(rule.event, isRule: true) else { return nil }
        let scope = Scope.event(events, shown: rule.event.text)
        var checked = CheckedEventRule(ast: rule, events: events, effects: [])
        var ok = true
        if let countExpr = rule.count {
            guard case .number(let n) = countExpr.kind, n == n.rounded(), n >= 1, n <= 1_000_000 else {
                report(.badCount, "the count of a counted rule must be a whole number from 1 to 1000000", at: countExpr.span)
                return nil
            }
            checked.count = Int(n)
            checked.countMode = rule.countMode
            guard let windowExpr = rule.window else {
                report(.countWithoutWindow, "a counted rule needs `within`", at: rule.event.span,
                       help: "write `\(Int(n)) \(rule.event.text.replacing("_", with: " ")) within 30 days → …`")
                return nil
            }
            checked.window = constantDuration(windowExpr, what: "the window")
            if checked.window == nil { ok = false }
        } else if let windowExpr = rule.window {
            // The contract's grammar allows it, but without a count the window
            // changes nothing: the rule fires on every matching event.
            if constantDuration(windowExpr, what: "the window") == nil { ok = false }
            report(.windowWithoutCount, "`within` without a count has no effect: this rule fires on every matching event",
                   at: windowExpr.span,
                   help: "write `2 \(rule.event.text.replacing("_", with: " ")) within …` to fire when at least 2 fall in the window")
        }
        if let cond = rule.condition {
            if let (ir, type) = resolve(cond, scope: scope) {
                if expectBool(type, cond.span) { checked.condition = ir } else { ok = false }
            } else { ok = false }
        }
        if let count = checked.count {
            // `exactly N` must tell N in the window from more: it keeps N.
            let restarts = rule.countMode == .every ? policy.sources.files[rule.span.file].text(rule.span) : nil
            checked.counterBuffer = buffer(WindowBufferSpec(events: events, condition: checked.condition, field: nil,
                                                            cap: rule.countMode == .exactly ? count : count - 1, restartsFor: restarts),
                                           window: checked.window ?? 0, at: rule.span)
        }
        for effect in rule.effects {
            if let e = checkEffect(effect, scope: scope) { checked.effects.append(e) } else { ok = false }
        }
        if let cond = checked.condition, cond.isConstant, Folder.evaluate(cond) == .bool(false) {
            report(.ruleNeverFires, "this rule can never fire: its condition is always false", at: rule.condition!.span)
        }
        return ok ? checked : nil
    }

    /// `30 days after EVENT [where C] [unless EVENT] → …`, `every 30 days
    /// [without EVENT] → …`: the delay, the events that arm it (none for
    /// `every`: the person's first event does), those that disarm or
    /// restart it, and effects that read no event (they happen when the
    /// time comes, between events).
    private mutating func checkTimedRule(_ rule: EventRule, _ timer: RuleTimer) -> CheckedEventRule? {
        var ok = true
        var events: [Int] = []
        if !timer.repeats {
            guard let armedBy = resolveEvents(rule.event, isRule: true) else { return nil }
            events = armedBy
        }
        var checked = CheckedEventRule(ast: rule, events: events, effects: [])
        let what = timer.repeats ? "an `every` rule's period" : "the delay before `after`"
        if let ticks = constantDuration(timer.delay, what: what) {
            if timer.repeats && ticks < Self.shortestPeriod {
                report(.badDuration, "\(what) must be at least an hour: it fires once a period for every person, however long their gaps between events",
                       at: timer.delay.span, help: "write `every 1 hour` or longer; for more often, count events in a rule of its own")
                ok = false
            }
            checked.timer = CheckedTimer(delay: ticks, repeats: timer.repeats, unless: [])
        } else { ok = false }
        if let unless = timer.unless {
            if let cancels = resolveEvents(unless, isRule: true) { checked.timer?.unless = cancels } else { ok = false }
        }
        if let cond = rule.condition {
            if let (ir, type) = resolve(cond, scope: .event(events, shown: rule.event.text)) {
                if expectBool(type, cond.span) { checked.condition = ir } else { ok = false }
            } else { ok = false }
        }
        for effect in rule.effects {
            if let e = checkEffect(effect, scope: .timed) { checked.effects.append(e) } else { ok = false }
        }
        if let cond = checked.condition, cond.isConstant, Folder.evaluate(cond) == .bool(false) {
            report(.ruleNeverFires, "this rule can never fire: its condition is always false", at: rule.condition!.span)
        }
        return ok ? checked : nil
    }

    /// The shortest period of an `every` rule, in ticks: one hour.
    static let shortestPeriod: Int64 = 3600 * Timestamp.perSecond

    /// The event types a rule's head or a `count`/`sum` names: one event,
    /// or the members of a group. nil after an error (reported, once).
    private mutating func resolveEvents(_ name: Name, isRule: Bool) -> [Int]? {
        if groupDecls[name.text] != nil {
            record(name.text, .group, .read, at: name.span)
            return members(of: name.text)
        }
        return resolveEvent(name, isRule: isRule).map { [$0] }
    }

    private mutating func resolveEvent(_ name: Name, isRule: Bool) -> Int? {
        if name.text == Self.retractType {
            reportReservedType(name)
            return nil
        }
        if policy.hasDeclarations, eventDeclSpans[name.text] == nil {
            if isRule && flagSetNames.contains(name.text) {
                report(.missingWhile, "`\(name.text)` is a flag, not an event; a rule on a flag needs `while`", at: name.span,
                       help: "write `while \(name.text.replacing("_", with: " ")) → …`")
                return nil
            }
            report(.unknownEvent, "unknown event `\(name.text)`", at: name.span,
                   help: Suggest.help(for: name.text, among: Array(eventDeclSpans.keys) + Array(groupDecls.keys))
                       ?? "declare it: `event \(name.text.replacing("_", with: " ")) { }`")
            return nil
        }
        record(name.text, .event, .read, at: name.span)
        if !policy.hasDeclarations && isRule && flagSetNames.contains(name.text) {
            report(.eventNamedLikeFlag, "`\(name.text)` is also a flag; this rule fires on events of type `\(name.text)`, not while the flag is set",
                   at: name.span, help: "if the flag was meant, write `while \(name.text.replacing("_", with: " ")) → …`")
        }
        return eventId(name.text)
    }

    private mutating func checkStateRule(_ rule: StateRule) -> CheckedStateRule? {
        guard let (ir, type) = resolve(rule.condition, scope: .state), expectBool(type, rule.condition.span) else { return nil }
        var effects: [(kind: TargetKind, name: Int)] = []
        var ok = true
        for effect in rule.effects {
            switch effect.kind {
            case .score, .setScore:
                report(.stateRuleChangesScore, "a `while` rule cannot change the score", at: effect.span,
                       help: "a state rule holds for a span of time, so it has no moment to add points at; change the score from an event rule")
                ok = false
            case .setAttribute(let n, _):
                report(.stateRuleChangesScore, "a `while` rule cannot set an attribute", at: effect.span,
                       help: "a state rule holds for a span of time, so it has no moment to set `\(shown(n.text))` at; set it from an event rule")
                ok = false
            case .lift:
                report(.stateRuleLifts, "a `while` rule cannot lift anything: it holds its effects only while its condition holds",
                       at: effect.span, help: "negate the condition of the rule that sets it instead")
                ok = false
            case .set(let kind, let n, let d):
                if let reason = effect.reason {
                    report(.stateRuleReason, "a `while` rule's denial has no reason: it lasts while the rule holds, and only an event rule's denial can be lifted for its reason",
                           at: reason.span, help: "remove `because \(shown(reason.text))`; `explain` shows the condition that holds")
                    ok = false
                    continue
                }
                if let d {
                    report(.stateRuleTimed, "a `while` rule's effects last exactly as long as its condition; `for` is not allowed",
                           at: d.span, help: "remove `for …`")
                    ok = false
                    continue
                }
                effects.append((kind, targetId(kind, n)))
            }
        }
        if ir.isConstant, Folder.evaluate(ir) == .bool(false) {
            report(.ruleNeverFires, "this rule can never hold: its condition is always false", at: rule.condition.span)
        }
        guard ok else { return nil }
        var reads = Set<Int>()
        // What it reads and sets, as the rule graph's keys: flags, then
        // denials, then grants (`denied(P)` reads P's denials, `granted(P)`
        // its grants and denials: a denial beats a grant).
        let keys = TargetKeys(policy)
        ir.flagsRead(into: &reads)
        ir.privilegesRead { kind, p in
            reads.insert(keys.key(.deny, p))
            if kind == .grant { reads.insert(keys.key(.grant, p)) }
        }
        let writes = Set(effects.map { keys.key($0.kind, $0.name) })
        return CheckedStateRule(ast: rule, condition: ir, effects: effects, reads: reads, writes: writes)
    }

    private mutating func checkEffect(_ effect: Effect, scope: Scope) -> CheckedEffect? {
        switch effect.kind {
        case .score(let sign, let expr):
            guard let (ir, type) = resolve(expr, scope: scope) else { return nil }
            guard type == .number || type == .any else {
                report(.typeMismatch, "a score change must be a number, not a \(type.rawValue)", at: expr.span)
                return nil
            }
            return .score(sign < 0 ? .unary(.negate, ir) : ir)
        case .setScore(let expr):
            guard let (ir, type) = resolve(expr, scope: scope) else { return nil }
            guard type == .number || type == .any else {
                report(.typeMismatch, "the score is set to a number, not a \(type.rawValue)", at: expr.span)
                return nil
            }
            return .setScore(ir)
        case .setAttribute(let n, let expr):
            guard let k = attributeIds[n.text] else {
                report(.unknownName, "no attribute is called `\(shown(n.text))`; `set` sets the score or an attribute", at: n.span,
                       help: Suggest.help(for: n.text, among: attributeIds.keys) ?? "declare it with its start value: `attribute \(shown(n.text)) = 0`")
                return nil
            }
            guard let (ir, type) = resolve(expr, scope: scope) else { return nil }
            if ir == .attribute(k) {
                // `profile → set age to age` where `profile` declares no
                // field `age`: the attribute, not a field, is read.
                let event: String
                if case .event(_, let shown) = scope { event = shown } else { event = "EVENT" }
                report(.setToItself, "this sets `\(shown(n.text))` to itself: `\(shown(n.text))` here is the attribute, so nothing changes", at: expr.span,
                       help: "to read the event's field `\(shown(n.text))`, declare it: `event \(shown(event)) { \(n.text): \(policy.attributes[k].type == .any ? "number" : policy.attributes[k].type.rawValue) }` (a declared field is read before an attribute of its name)")
            }
            let want = policy.attributes[k].type
            guard type == want || type == .any || want == .any else {
                report(.typeMismatch, "attribute `\(shown(n.text))` is a \(want.rawValue), so it cannot be set to a \(type.rawValue)", at: expr.span)
                return nil
            }
            return .setAttribute(k, ir)
        case .set(let kind, let n, let d):
            let reason = effect.reason.flatMap { policy.denialReasons.firstIndex(of: $0.text) }
            guard let d else { return .set(kind, name: targetId(kind, n), duration: .untilLifted, reason: reason) }
            return lasting(d, scope: scope).map { .set(kind, name: targetId(kind, n), duration: $0, reason: reason) }
        case .lift(let kind, let n):
            return .lift(kind, name: targetId(kind, n), reason: effect.reason.flatMap { policy.denialReasons.firstIndex(of: $0.text) })
        }
    }

    /// How long `for EXPR` lasts: fixed when the expression is constant,
    /// computed when the rule fires when it reads the event's fields or the
    /// person's state (`for days days`, `for days * 1 day`, `for base +
    /// count(strike within 1 year) * 1 week`).
    private mutating func lasting(_ written: Expr, scope: Scope) -> Lasting? {
        let d = written
        if !readsRuntime(d, scope: scope) { return constantDuration(d, what: "the duration after `for`").map(Lasting.fixed) }
        guard let (ir, type) = resolve(d, scope: scope) else { return nil }
        guard type == .duration else {
            let text = policy.sources.files[written.span.file].text(written.span)
            if type == .any, case .name(let n) = d.kind {
                report(.durationExpected, "the duration after `for` must be a duration; no constant is named `\(shown(n))`, so it reads a field of the event, a number",
                       at: d.span, help: Suggest.help(for: n, among: constantDecls.keys)
                           ?? "define the constant (`let \(shown(n)) = 30 days`), or multiply the field by a unit: `\(text) * 1 day`")
            } else {
                report(.durationExpected, "the duration after `for` must be a duration, not a \(type == .any ? "number" : type.rawValue)",
                       at: d.span, help: "multiply a number by a unit: `(\(text)) * 1 day`")
            }
            return nil
        }
        return .computed(ir)
    }

    /// Whether an expression reads what is known only when a rule fires: a
    /// field, the score, a flag, a count or sum, or a per-person value.
    private mutating func readsRuntime(_ e: Expr, scope: Scope) -> Bool {
        e.readsState { n, span in
            if let (head, _) = unitSplit(n, span: span, scope: scope) { return readsRuntime(head, scope: scope) }
            return constantDecls[n] == nil || isPersonValue(n)
        }
    }

    /// `ban days`, which the lexer joins into the one name `ban_days`, is
    /// `ban * 1 day` when nothing has the whole name and the first words
    /// name a constant, a per-person value or a declared field of the
    /// rule's events: the head, the unit's seconds and both spans.
    private func unitSplit(_ n: String, span: Span, scope: Scope) -> (head: Expr, unit: Expr)? {
        guard !isKnownWhole(n, scope: scope), let cut = n.lastIndex(of: "_"),
              let seconds = Lexer.units[String(n[n.index(after: cut)...])] else { return nil }
        let head = String(n[..<cut])
        var headKnown = constantDecls[head] != nil
        if case .event(let events, _) = scope, !events.isEmpty, events.allSatisfy({ declaredFieldTypes[$0]?[head] != nil }) { headKnown = true }
        guard headKnown else { return nil }
        // The written words (`ban  days`: maybe more spaces between), split
        // at the space before the unit.
        let text = Array(policy.sources.files[span.file].text(span).utf8)
        let unitAt = (text.lastIndex { $0 == 0x20 || $0 == 0x09 } ?? 0) + 1
        var headEnd = unitAt - 1
        while headEnd > 0 && (text[headEnd - 1] == 0x20 || text[headEnd - 1] == 0x09) { headEnd -= 1 }
        return (Expr(kind: .name(head), span: Span(file: span.file, start: span.start, end: span.start + headEnd)),
                Expr(kind: .duration(seconds), span: Span(file: span.file, start: span.start + unitAt, end: span.end)))
    }

    /// Whether `n` is a constant's name and a unit (`grace_days`), which a
    /// `while` condition reads as their product, not as a flag.
    private func isConstantWithUnit(_ n: String) -> Bool {
        guard let cut = n.lastIndex(of: "_"), Lexer.units[String(n[n.index(after: cut)...])] != nil else { return false }
        return constantDecls[String(n[..<cut])] != nil
    }

    /// Whether `n` names something as it is: a constant, a flag, or a
    /// declared field of the scope's events.
    private func isKnownWhole(_ n: String, scope: Scope) -> Bool {
        if constantDecls[n] != nil || flagIds[n] != nil || attributeIds[n] != nil { return true }
        if case .event(let events, _) = scope { return events.contains { declaredFieldTypes[$0]?[n] != nil } }
        return false
    }

    /// The id of a flag or privilege that `collect` named.
    private func targetId(_ kind: TargetKind, _ n: Name) -> Int {
        kind.isFlag ? flagIds[n.text]! : privilegeIds[n.text]!
    }

    private mutating func expectBool(_ type: ValueType, _ span: Span) -> Bool {
        if type == .bool || type == .any { return true }
        report(.typeMismatch, "a condition must be true or false, not a \(type.rawValue)", at: span,
               help: "compare it: `… > 0`")
        return false
    }

    private mutating func buffer(_ spec: WindowBufferSpec, window: Int64, at span: Span) -> Int {
        if let id = bufferIds[spec] {
            policy.bufferWindows[id] = max(policy.bufferWindows[id], window)
            return id
        }
        bufferIds[spec] = policy.buffers.count
        policy.buffers.append(spec)
        policy.bufferWindows.append(window)
        policy.bufferSpans.append(span)
        return policy.buffers.count - 1
    }

    /// By buffer, the windows through which `while` rules read it, shortest
    /// first. Only those make a report line change with time alone: an
    /// event rule's `where` and a counted rule read a window at the event's
    /// time, never again.
    private static func windowsReadByStateRules(_ policy: CheckedPolicy) -> [[Int64]] {
        var windows = [[Int64]](repeating: [], count: policy.buffers.count)
        // Outputs are in the report too: read as the `while` rules are.
        for condition in policy.stateRules.map(\.condition) + policy.outputs.map(\.value) {
            condition.forEachPart { part in
                if case .aggregate(let buffer, let window, _) = part, !windows[buffer].contains(window) { windows[buffer].append(window) }
            }
        }
        return windows.map { $0.sorted() }
    }

    // MARK: - Expressions

    enum Scope: Equatable {
        /// Inside a constant: literals and other constants only.
        case constant
        /// An event rule's `where` or effect, or a `count`/`sum`'s `where`:
        /// fields, then constants, then flags. The events it may be (more
        /// than one for a group), and the name written for them.
        case event([Int], shown: String)
        /// A `while` condition: flags and constants, score, aggregates.
        case state
        /// A `let` that reads the person's state: as a `while` condition,
        /// but a name must be a constant, a flag or another `let`.
        case person
        /// A timed rule's effect: as `person` (it happens between events,
        /// so it reads no event's fields).
        case timed
    }

    /// Resolves names and computes the type; nil after reporting an error.
    /// Every part of a rule's condition is remembered by its span, so an
    /// explanation can show each part with its value (`score (872) < 900`).
    private mutating func resolve(_ e: Expr, scope: Scope) -> (IR, ValueType)? {
        let resolved = resolvePart(e, scope: scope)
        if let (ir, _) = resolved, scope != .constant, !e.synthetic { policy.parts[e.span] = ir }
        return resolved
    }

    private mutating func resolvePart(_ e: Expr, scope: Scope) -> (IR, ValueType)? {
        switch e.kind {
        case .number(let n): return (.number(n), .number)
        case .duration(let s): return (.number(s), .duration)
        case .string(let s): return (.string(s), .string)
        case .bool(let b): return (.bool(b), .bool)
        case .invalid: return nil
        case .score:
            if scope == .constant { return notConstant(e, "the score") }
            return (.score, .number)
        case .privilege(let kind, let name):
            if scope == .constant { return notConstant(e, "whether `\(shown(name.text))` is \(kind.stateWord)") }
            guard let id = privilegeIds[name.text] else {
                report(.unknownName, "no rule denies or grants `\(shown(name.text))`, so `\(kind.stateWord)(\(shown(name.text)))` is always false",
                       at: name.span, help: Suggest.help(for: name.text, among: policy.privileges)
                           ?? "a privilege is named by a `deny`, `grant`, `allow` or `revoke` effect")
                return nil
            }
            record(name.text, .privilege, .read, at: name.span)
            return (.privilege(kind, id), .bool)
        case .name(let n): return resolveName(n, span: e.span, scope: scope)
        case .unary(let op, let a):
            guard let (ir, t) = resolve(a, scope: scope) else { return nil }
            let want: ValueType = op == .not ? .bool : .number
            if t == .duration && op == .negate { return (.unary(op, ir), .duration) }
            guard t == want || t == .any else { return mismatch(e.span, "`\(op.rawValue)` needs a \(want.rawValue), not a \(t.rawValue)") }
            return (.unary(op, ir), want)
        case .binary(let op, let a, let b): return resolveBinary(op, a, b, span: e.span, scope: scope)
        case .inList(let a, let items):
            guard let (ir, t) = resolve(a, scope: scope) else { return nil }
            var irs: [IR] = []
            for item in items {
                guard let (i, it) = resolve(item, scope: scope) else { return nil }
                if t != .any && it != .any && it != t { return mismatch(item.span, "this list item is a \(it.rawValue) but the value is a \(t.rawValue)") }
                irs.append(i)
            }
            return (.inList(ir, irs), .bool)
        case .conditional(let c, let a, let b):
            guard let (ci, ct) = resolve(c, scope: scope) else { return nil }
            guard ct == .bool || ct == .any else { return mismatch(c.span, "`if` needs a condition (true or false); this is a \(ct.rawValue)") }
            guard let (ai, at) = resolve(a, scope: scope), let (bi, bt) = resolve(b, scope: scope) else { return nil }
            if at != .any && bt != .any && at != bt {
                return mismatch(e.span, "the two values of an `if` must be of one type; here a \(at.rawValue) and a \(bt.rawValue)")
            }
            return (.conditional(ci, ai, bi), at == .any ? bt : at)
        case .call(let fn, let args):
            var irs: [IR] = []
            for arg in args {
                guard let (i, t) = resolve(arg, scope: scope) else { return nil }
                guard t == .number || t == .any else { return mismatch(arg.span, "`\(fn.rawValue)` takes numbers, not a \(t.rawValue)") }
                irs.append(i)
            }
            return (.call(fn, irs), .number)
        case .count(let event, let cond, let window):
            return resolveAggregate(event: event, field: nil, condition: cond, window: window, span: e.span, scope: scope)
        case .sum(let event, let field, let cond, let window):
            return resolveAggregate(event: event, field: field, condition: cond, window: window, span: e.span, scope: scope)
        }
    }

    private mutating func mismatch(_ span: Span, _ message: String) -> (IR, ValueType)? {
        report(.typeMismatch, message, at: span)
        return nil
    }

    private mutating func notConstant(_ e: Expr, _ what: String) -> (IR, ValueType)? {
        report(.notConstant, "\(what) is not known before the rules run, so it cannot be used here", at: e.span,
               help: "constants, score settings, counts and windows take literals and other constants only (a `for` duration may read the event and the person's state)")
        return nil
    }

    private mutating func resolveBinary(_ op: BinaryOp, _ a: Expr, _ b: Expr, span: Span, scope: Scope) -> (IR, ValueType)? {
        guard let (l, lt) = resolve(a, scope: scope), let (r, rt) = resolve(b, scope: scope) else { return nil }
        let ir = IR.binary(op, l, r)
        let known = lt != .any && rt != .any
        switch op {
        case .and, .or:
            for (t, x) in [(lt, a), (rt, b)] where t != .bool && t != .any {
                return mismatch(x.span, "`\(op.rawValue)` joins conditions; this is a \(t.rawValue)")
            }
            return (ir, .bool)
        case .eq, .ne:
            if known && lt != rt { return mismatch(span, "cannot compare a \(lt.rawValue) with a \(rt.rawValue)") }
            return (ir, .bool)
        case .lt, .le, .gt, .ge:
            if known && lt != rt { return mismatch(span, "cannot compare a \(lt.rawValue) with a \(rt.rawValue)") }
            for (t, x) in [(lt, a), (rt, b)] where t == .string || t == .bool {
                return mismatch(x.span, "`\(op.rawValue)` compares numbers; this is a \(t.rawValue)")
            }
            return (ir, .bool)
        case .add, .sub, .mul, .div, .mod:
            if lt == .duration || rt == .duration { return durationArithmetic(op, lt, rt, ir, span) }
            for (t, x) in [(lt, a), (rt, b)] where t != .number && t != .any {
                return mismatch(x.span, "`\(op.rawValue)` needs numbers; this is a \(t.rawValue)")
            }
            return (ir, .number)
        }
    }

    /// `2 * 30 days`, `30 days + 12 hours`, `1 year / 2` are durations.
    private mutating func durationArithmetic(_ op: BinaryOp, _ lt: ValueType, _ rt: ValueType, _ ir: IR, _ span: Span) -> (IR, ValueType)? {
        switch (op, lt, rt) {
        case (.add, .duration, .duration), (.sub, .duration, .duration),
             (.mul, .duration, .number), (.mul, .number, .duration), (.div, .duration, .number),
             // A field of an undeclared event may be a number (if it is not,
             // the rule does not fire, as for any wrong type).
             (.mul, .duration, .any), (.mul, .any, .duration), (.div, .duration, .any):
            return (ir, .duration)
        default:
            return mismatch(span, "cannot use `\(op.rawValue)` on a \(lt.rawValue) and a \(rt.rawValue)")
        }
    }

    /// What a bare name in an expression is, recorded in the table.
    private mutating func resolveName(_ n: String, span: Span, scope: Scope) -> (IR, ValueType)? {
        if let (head, unit) = unitSplit(n, span: span, scope: scope) {
            return resolveBinary(.mul, head, unit, span: span, scope: scope)
        }
        let resolved = resolveNameOnce(n, span: span, scope: scope)
        if let (ir, _) = resolved {
            if constantDecls[n] != nil { record(n, .constant, .read, at: span); return resolved }
            switch ir {
            case .field: record(n, .field, .read, at: span)
            case .flag: record(n, .flag, .read, at: span)
            case .attribute: record(n, .attribute, .read, at: span)
            default: record(n, .constant, .read, at: span)
            }
        }
        return resolved
    }

    private mutating func resolveNameOnce(_ n: String, span: Span, scope: Scope) -> (IR, ValueType)? {
        let asConstant: (IR, ValueType)? = constantDecls[n] != nil ? constant(n) : nil
        if constantDecls[n] != nil {
            constantsUsed.insert(n)
            if asConstant == nil { return nil }
        }
        switch scope {
        case .constant:
            if attributeIds[n] != nil && constantDecls[n] == nil {
                report(.notConstant, "`\(shown(n))` is an attribute of the person, so it is not known before the rules run and cannot be used here",
                       at: span, help: "constants, score settings, counts and windows take literals and other constants only")
                return nil
            }
            if personValues.contains(n) {
                report(.notConstant, "`\(shown(n))` reads the person's state, so it is not known before the rules run and cannot be used here",
                       at: span, help: "constants, score settings, counts and windows take literals and other constants only; a `let` that reads the score, flags, counts or sums is used in conditions, score changes and `for` durations")
                return nil
            }
            if let c = asConstant { return c }
            if constantDecls[n] != nil { return nil }  // failed, and said so
            if reportNotConstantName(n, span: span) { return nil }
            report(.unknownName, "unknown constant `\(n)`", at: span,
                   help: Suggest.help(for: n, among: constantDecls.keys) ?? "define it: `let \(n) = …`")
            return nil
        case .event(let events, let shown):
            if events.allSatisfy({ declaredFieldTypes[$0] != nil }) {
                let (known, type) = declaredType(of: n, in: events, shown: shown, at: span)
                if !known { return nil }
                if let t = type {
                    if constantDecls[n] != nil || flagIds[n] != nil {
                        let other = constantDecls[n] != nil ? "constant" : "flag"
                        report(.fieldShadowsName, "`\(n)` is both a field of event `\(shown)` and a \(other), so it is unclear which one this reads",
                               at: span, help: "rename the field in `event \(shown) { … }` or the \(other)")
                        return nil
                    }
                    // A field named like an attribute is the field here: the
                    // event's own value (`profile → set age to age`).
                    return (.field(fieldId(n), name: n), t)
                }
                if let c = asConstant { return c }
                if let a = attribute(n) { return a }
                if let f = flagIds[n] { noteFlagRead(n, span); return (.flag(f), .bool) }
                if Self.neverFields.contains(n) {
                    report(.reservedField, "`\(n)` is a reserved key of every stream line, not a field", at: span,
                           help: "a rule cannot read it: the line's `type`, `time` and `id` are never event fields")
                    return nil
                }
                if n == Self.defaultPersonKey {
                    report(.unknownField, "event `\(shown)` has no field `\(n)`: the person a line is about is not one of its fields",
                           at: span, help: "a rule reads the event's own fields; every rule is about the line's person already")
                    return nil
                }
                let candidates = Array(commonFields(events).keys) + Array(constantDecls.keys) + policy.flags
                report(.unknownField, "event `\(shown)` has no field `\(n)`, and there is no constant or flag of that name",
                       at: span, help: Suggest.help(for: n, among: candidates)
                           ?? "declare the field in `event \(shown) { … }`")
                return nil
            }
            // Undeclared event: a constant, then a flag that some rule sets,
            // then the event's field. Decided here, once: a stream's keys
            // never change what a name means.
            if let c = asConstant { return c }
            if let a = attribute(n) { return a }
            if flagSetNames.contains(n), let f = flagIds[n] { noteFlagRead(n, span); return (.flag(f), .bool) }
            if Self.neverFields.contains(n) {
                // Never fields, whatever the stream: the condition could
                // only fail. (`citizen` is a field of a stream whose person
                // key is another: `--person-key`.)
                report(.reservedField, "`\(n)` is a reserved key of every stream line, not a field", at: span,
                       help: "a rule cannot read it: the line's `type`, `time` and `id` are never event fields")
                return nil
            }
            return (.field(fieldId(n), name: n), .any)
        case .state:
            if let c = asConstant { return c }
            if let a = attribute(n) { return a }
            if !flagSetNames.contains(n), let event = declaredFieldTypes.first(where: { $0.value[n] != nil })?.key {
                report(.unknownField, "`\(n)` is a field of event `\(policy.events[event].name)`; a `while` rule has no event to read it from",
                       at: span, help: "read fields in an event rule's `where`, or count events with `count(\(policy.events[event].name) where … within …)`")
                return nil
            }
            if let f = flagIds[n] { noteFlagRead(n, span); return (.flag(f), .bool) }
            return nil  // unreachable: `collect` made every bare name a flag
        case .timed:
            if let c = asConstant { return c }
            if let a = attribute(n) { return a }
            if let f = flagIds[n] { noteFlagRead(n, span); return (.flag(f), .bool) }
            if let event = eventDeclaring(n) {
                report(.unknownField, "`\(shown(n))` is a field of event `\(event)`; a timed rule's effects happen when its time comes, with no event to read it from",
                       at: span, help: "read fields in the rule's `where`, or keep the value in an attribute (`attribute \(shown(n)) = 0`, then `\(event.replacing("_", with: " ")) → set \(shown(n)) to \(shown(n))`) and read that")
                return nil
            }
            report(.unknownName, "unknown name `\(shown(n))`: not a constant, a flag or an attribute (a timed rule's effects read no event)", at: span,
                   help: Suggest.help(for: n, among: Array(constantDecls.keys) + policy.flags + Array(attributeIds.keys))
                       ?? "a timed rule's effects may use the score, flags, attributes, counts, sums and constants")
            return nil
        case .person:
            if let c = asConstant { return c }
            if let a = attribute(n) { return a }
            if let f = flagIds[n] { noteFlagRead(n, span); return (.flag(f), .bool) }
            if let event = eventDeclaring(n) {
                report(.unknownField, "`\(shown(n))` is a field of event `\(event)`; a `let` is about the person, not one event, so it cannot read fields",
                       at: span, help: "read fields in an event rule's `where`, or count events with `count(\(event) where … within …)`")
                return nil
            }
            report(.unknownName, "unknown name `\(shown(n))`: not a constant, a flag or another `let`", at: span,
                   help: Suggest.help(for: n, among: Array(constantDecls.keys) + policy.flags + Array(attributeIds.keys))
                       ?? "a `let` that reads the person's state may use the score, flags, counts, sums and constants; an event's fields are read in its rules")
            return nil
        }
    }

    /// An attribute read by name, with its type (`.any` while its start
    /// value is being checked).
    private func attribute(_ n: String) -> (IR, ValueType)? {
        guard let k = attributeIds[n] else { return nil }
        return (.attribute(k), k < policy.attributes.count ? policy.attributes[k].type : .any)
    }

    /// Each attribute's start value: a constant number, string or bool,
    /// which gives the attribute its type.
    private mutating func checkAttributes() {
        for (name, start) in attributeDecls {
            var type = ValueType.any, value = IR.number(0)
            if let (ir, t) = resolve(start, scope: .constant), let folded = fold(ir, type: t, at: start.span) {
                if t == .duration || t == .any {
                    report(.typeMismatch, "an attribute is a number, a string or a bool; `\(shown(name.text))` starts as a \(t.rawValue)", at: start.span,
                           help: t == .duration ? "keep a duration as a number of days (`attribute grace days = 30`)" : nil)
                } else {
                    (type, value) = (t, folded)
                }
            }
            policy.attributes.append(CheckedAttribute(name: name.text, type: type, start: value, span: name.span))
        }
    }

    /// A name in a constant place (a `let`, a setting, a count, a
    /// duration) that is not a constant but is something else a policy
    /// author would reach for there: an event's field (`(21 - age) * 1
    /// year`), or a constant or a field followed by a unit (`for days
    /// days`, which the lexer joins into the one name `days_days`).
    /// Reported, and true, when it is one of those.
    private mutating func reportNotConstantName(_ n: String, span: Span) -> Bool {
        if let event = eventDeclaring(n) {
            report(.notConstant, "`\(n.replacing("_", with: " "))` is a field of event `\(event)`: it is not known before the rules run, so it cannot be used here",
                   at: span, help: "constants, score settings, counts and windows take literals and other constants only (a `for` duration may read the event and the person's state)")
            return true
        }
        let words = n.split(separator: "_").map(String.init)
        guard words.count >= 2, let unit = words.last, Lexer.units[unit] != nil else { return false }
        let head = words.dropLast().joined(separator: "_"), shown = head.replacing("_", with: " ")
        // (A constant before a unit is read as their product: `unitSplit`.)
        if let event = eventDeclaring(head) {
            report(.notConstant, "`\(shown)` is a field of event `\(event)`: it is not known before the rules run, so `\(shown) \(unit)` cannot be used here",
                   at: span, help: "windows take literals and constants only: `90 \(unit)`, or `let` one (a `for` duration may read fields)")
            return true
        }
        return false
    }

    /// A rule with `within` and no count whose event name begins with a
    /// constant's name (`strikes post removed`, with `let strikes = 3`):
    /// the constant is the count and the rest names the event. The rule as
    /// it was when no constant begins it (or a whole event or group has the
    /// name); nil when the constant cannot be a count (E0406, reported).
    private mutating func countFromConstant(_ rule: EventRule) -> EventRule? {
        let name = rule.event.text
        if eventDeclSpans[name] != nil || groupDecls[name] != nil { return rule }
        let words = name.split(separator: "_").map(String.init)
        for k in stride(from: words.count - 1, through: 1, by: -1) {
            let head = words[..<k].joined(separator: "_")
            guard constantDecls[head] != nil, !isPersonValue(head) else { continue }
            constantsUsed.insert(head)
            let (headSpan, restSpan) = splitSpan(rule.event.span, afterWords: k)
            record(head, .constant, .read, at: headSpan)
            guard case .number(let n)? = constant(head).flatMap({ Folder.evaluate($0.0) }) else {
                if !constantsFailed.contains(head) {
                    report(.badCount, "the count of a counted rule must be a whole number from 1 to 1000000; constant `\(shown(head))` is not a number", at: headSpan)
                }
                return nil
            }
            guard n == n.rounded(), n >= 1, n <= 1_000_000 else {
                report(.badCount, "the count of a counted rule must be a whole number from 1 to 1000000; constant `\(shown(head))` is \(Arithmetic.format(n))", at: headSpan)
                return nil
            }
            var counted = rule
            counted.count = Expr(kind: .number(n), span: headSpan)
            counted.event = Name(text: words[k...].joined(separator: "_"), span: restSpan)
            return counted
        }
        return rule
    }

    /// A multi-word name's span cut after its `k`-th word (the words as
    /// written: spaces, tabs or `_` between them).
    private func splitSpan(_ span: Span, afterWords k: Int) -> (Span, Span) {
        let text = Array(policy.sources.files[span.file].text(span).utf8)
        func between(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == UInt8(ascii: "_") }
        var i = 0, words = 0, headEnd = 0
        while i < text.count && words < k {
            while i < text.count && !between(text[i]) { i += 1 }
            headEnd = i
            words += 1
            while i < text.count && between(text[i]) { i += 1 }
        }
        return (Span(file: span.file, start: span.start, end: span.start + headEnd),
                Span(file: span.file, start: span.start + i, end: span.end))
    }

    /// The first declared event (in declaration order) with a field `n`.
    private func eventDeclaring(_ n: String) -> String? {
        declaredFieldTypes.keys.sorted().first { declaredFieldTypes[$0]![n] != nil }.map { policy.events[$0].name }
    }

    private mutating func noteFlagRead(_ n: String, _ span: Span) {
        if flagsRead[n] == nil { flagsRead[n] = span }
    }

    private mutating func resolveAggregate(event: Name, field: Name?, condition: Expr?, window: Expr,
                                           span: Span, scope: Scope) -> (IR, ValueType)? {
        if scope == .constant { return notConstant(Expr(kind: .invalid, span: span), "a windowed count or sum") }
        guard let eventIds = resolveEvents(event, isRule: false) else { return nil }
        var fieldId: Int? = nil
        if let field {
            if eventIds.allSatisfy({ declaredFieldTypes[$0] != nil }) {
                let (known, type) = declaredType(of: field.text, in: eventIds, shown: event.text, at: field.span)
                if !known { return nil }
                guard let t = type else {
                    report(.unknownField, "event `\(event.text)` has no field `\(field.text)`", at: field.span,
                           help: Suggest.help(for: field.text, among: commonFields(eventIds).keys))
                    return nil
                }
                guard t == .number else {
                    report(.typeMismatch, "`sum` adds numbers; field `\(field.text)` is a \(t.rawValue)", at: field.span)
                    return nil
                }
            }
            fieldId = self.fieldId(field.text)
            record(field.text, .field, .read, at: field.span)
        }
        var condIR: IR? = nil
        if let condition {
            guard let (ir, t) = resolve(condition, scope: .event(eventIds, shown: event.text)), expectBool(t, condition.span) else { return nil }
            condIR = ir
        }
        guard let w = constantDuration(window, what: "the window") else { return nil }
        let id = buffer(WindowBufferSpec(events: eventIds, condition: condIR, field: fieldId, cap: nil), window: w, at: span)
        return (.aggregate(buffer: id, window: w, sum: field != nil), .number)
    }

    // MARK: - Event groups

    private mutating func resolveAllGroups() {
        // A group may not take the name of a declared event or of a
        // retraction: reported, and the name keeps its other meaning.
        for name in groupDecls.keys.sorted() {
            let group = groupDecls[name]!
            if name == Self.retractType {
                reportReservedType(group.name)
                groupDecls[name] = nil
            } else if let declared = eventDeclSpans[name] {
                report(.duplicateDeclaration, "`\(shown(name))` is both a declared event and an event group", at: group.name.span,
                       help: "rename the group; a rule on it means any of its events", notes: [(declared, "declared as an event here")])
                groupDecls[name] = nil
            }
        }
        for name in groupDecls.keys.sorted() {
            if let ids = members(of: name) { policy.groups[name] = ids }
        }
    }

    /// The event ids group `name` stands for, its nested groups flattened;
    /// nil when it has an error (reported once: its uses say nothing more).
    private mutating func members(of name: String) -> [Int]? {
        if let ids = groupMembers[name] { return groupsFailed.contains(name) ? nil : ids }
        guard let group = groupDecls[name] else { return nil }
        if let k = groupsInProgress.firstIndex(of: name) {
            let cycle = (groupsInProgress[k...] + [name]).map { "`\(shown($0))`" }.joined(separator: " → ")
            report(.groupCycle, groupsInProgress.count - k == 1 ? "event group `\(shown(name))` lists itself"
                                                                : "event groups list each other in a cycle: \(cycle)",
                   at: group.name.span, help: "a group lists events, or other groups that do not list it")
            groupMembers[name] = []
            groupsFailed.formUnion(groupsInProgress[k...])
            return nil
        }
        groupsInProgress.append(name)
        defer { groupsInProgress.removeLast() }
        var ids = Set<Int>(), listed = Set<String>(), ok = true
        for member in group.members {
            if !listed.insert(member.text).inserted {
                report(.duplicateDeclaration, "`\(shown(member.text))` is listed twice in event group `\(shown(name))`", at: member.span,
                       help: "remove one of them")
                continue
            }
            if groupDecls[member.text] != nil {
                record(member.text, .group, .read, at: member.span)
                if let nested = members(of: member.text) { ids.formUnion(nested) } else { ok = false }
            } else if let id = resolveEvent(member, isRule: false) {
                ids.insert(id)
            } else {
                ok = false
            }
        }
        if groupMembers[name] == nil { groupMembers[name] = ids.sorted() }
        if !ok { groupsFailed.insert(name) }
        return ok && !groupsFailed.contains(name) ? groupMembers[name] : nil
    }

    /// A name as the author wrote it (`unpaid_debt` → `unpaid debt`).
    private func shown(_ name: String) -> String { name.replacing("_", with: " ") }

    /// The fields every one of `events` declares, with the one type they
    /// all give it.
    private func commonFields(_ events: [Int]) -> [String: ValueType] {
        guard let first = events.first, var common = declaredFieldTypes[first] else { return [:] }
        for event in events.dropFirst() {
            let declared = declaredFieldTypes[event] ?? [:]
            common = common.filter { declared[$0.key] == $0.value }
        }
        return common
    }

    /// The declared type of field `n` for a rule on `events` (all of them
    /// declared): nil when none declares it. For a group, the field must be
    /// declared by every member, with one type; otherwise that is reported
    /// and `known` is false.
    private mutating func declaredType(of n: String, in events: [Int], shown group: String, at span: Span) -> (known: Bool, type: ValueType?) {
        let types = events.map { declaredFieldTypes[$0]?[n] }
        guard let some = types.compactMap({ $0 }).first else { return (true, nil) }
        let names = events.map { shown(policy.events[$0].name) }
        if let lacking = types.firstIndex(where: { $0 == nil }) {
            let having = types.firstIndex { $0 != nil }!
            report(.unknownField, "`\(n)` is a field of `\(names[having])` but not of `\(names[lacking])`, and a rule on `\(shown(group))` reads it from any of them",
                   at: span, help: "declare `\(n)` in `event \(names[lacking]) { … }` too, or write the rule on `\(names[having])` alone")
            return (false, nil)
        }
        if let other = types.firstIndex(where: { $0 != some }) {
            report(.typeMismatch, "field `\(n)` is a \(some.rawValue) in `\(names[0])` but a \(types[other]!.rawValue) in `\(names[other])`; a rule on `\(shown(group))` needs one type",
                   at: span, help: "declare it with the same type in every event of the group")
            return (false, nil)
        }
        return (true, some)
    }

    // MARK: - Warnings

    private mutating func warnUnused() {
        for name in constantDecls.keys.sorted() where !constantsUsed.contains(name) && !constantsFailed.contains(name) {
            let decl = constantDecls[name]!
            let what = personValues.contains(name) ? "value" : "constant"
            report(.unusedConstant, "\(what) `\(name)` is never used", at: decl.span, help: "remove it, or use it in a rule")
        }
        for (name, span) in flagsRead.sorted(by: { $0.key < $1.key }) where !flagSetNames.contains(name) {
            if privilegeIds[name] != nil {
                report(.flagNeverSet, "`\(name.replacing("_", with: " "))` is a privilege, not a flag: a bare name reads a flag, so this is always false", at: span,
                       help: "read the privilege as the report shows it: `denied(\(name.replacing("_", with: " ")))` or `granted(\(name.replacing("_", with: " ")))`")
                continue
            }
            report(.flagNeverSet, "flag `\(name)` is read but no rule sets it, so it is always false", at: span,
                   help: Suggest.help(for: name, among: flagSetNames) ?? "set it with `flag \(name.replacing("_", with: " "))` in some rule")
        }
        for (name, span) in flagsSetAt.sorted(by: { $0.key < $1.key }) where flagsRead[name] == nil {
            report(.flagNeverRead, "flag `\(name)` is set but no rule reads it", at: span,
                   help: "fine if it is meant only for the report; otherwise use it in a `where` or `while`")
        }
    }

    /// A rule's name (`rule "reckless driving" …`) names one rule: the
    /// trail, `explain` and `expect fired` find the rule by it.
    private mutating func checkRuleNames() {
        var seen: [String: Span] = [:]
        for statement in statements {
            let name: Name?
            switch statement {
            case .eventRule(let r): name = r.name
            case .stateRule(let r): name = r.name
            default: continue
            }
            guard let name else { continue }
            if let first = seen[name.text] {
                report(.duplicateDeclaration, "two rules are named \(JSONWriter.quoted(name.text))", at: name.span,
                       help: "a name says which one rule is meant; give this one another", notes: [(first, "first named here")])
            } else {
                seen[name.text] = name.span
            }
        }
    }

    /// Two rules that say the same thing (spans aside) fire twice or hold
    /// twice; the AST dump is their canonical form.
    private mutating func warnDuplicates() {
        var seen: [String: Span] = [:]
        for statement in statements {
            let span: Span
            switch statement {
            case .eventRule(let r): span = r.span
            case .stateRule(let r): span = r.span
            default: continue
            }
            let key = ASTDump.dump(statement)
            if let first = seen[key] {
                let twice = key.hasPrefix("(while") ? "" : ", so it fires twice"
                report(.duplicateRule, "this rule repeats an earlier one\(twice)", at: span,
                       help: "remove one copy", notes: [(first, "first written here")])
            } else {
                seen[key] = span
            }
        }
    }
}
