/// What a policy means, as a number that a checkpoint carries: the same
/// for the same score settings, declarations, rules, windows and buffers
/// however they are written (comments, layout, constants by name or by
/// value). It is the FNV-1a hash of an explicit encoding, written out here
/// case by case, with the language's own spellings — never Swift's names
/// for enum cases, so renaming a case in the code leaves saved state valid.
/// The switches are exhaustive: a new kind of expression or effect does not
/// compile until it is encoded. Changing the encoding is a new `version`.
enum Fingerprint {
    static let version = 1

    static func of(_ policy: CheckedPolicy) -> UInt64 {
        var e = Encoder(policy: policy)
        e.line("rules policy fingerprint \(version)")
        e.line("score \(policy.startScore) min \(e.optional(policy.minScore)) max \(e.optional(policy.maxScore))")
        for event in policy.events {
            let declared = event.declared.map { $0.map { "\(e.quoted(policy.fields[$0.field])):\(e.type($0.type))" } }
            e.line("event \(e.quoted(event.name)) declares \(declared.map { $0.joined(separator: ",") } ?? "nothing")")
        }
        for (b, spec) in policy.buffers.enumerated() {
            e.line("buffer \(b) \(e.buffer(spec)) keeps \(policy.bufferWindows[b])")
        }
        for rule in policy.eventRules {
            var text = "on \(e.events(rule.events))"
            if let condition = rule.condition { text += " where \(e.ir(condition))" }
            if let count = rule.count {
                text += " count \(rule.countMode == .atLeast ? "" : rule.countMode.rawValue + " ")\(count) within \(e.optional(rule.window)) in buffer \(e.optional(rule.counterBuffer))"
            }
            // Timed rules: none leaves the encoding as it was before them.
            if let timer = rule.timer {
                text += " timer \(timer.repeats ? "every" : "after") \(timer.delay)"
                if !timer.unless.isEmpty { text += " unless \(e.events(timer.unless))" }
            }
            e.line(text + " → " + rule.effects.map(e.effect).joined(separator: ", "))
        }
        for rule in policy.stateRules {
            e.line("while \(e.ir(rule.condition)) → " + rule.effects.map { e.target($0.kind, $0.name) }.joined(separator: ", "))
        }
        // Attributes are state; none leaves the encoding as it was.
        for attribute in policy.attributes {
            e.line("attribute \(e.quoted(attribute.name)) \(attribute.type.rawValue) starts \(e.ir(attribute.start))")
        }
        // Outputs shape the report (and the service's saved line states),
        // so they are part of what a policy means; none leaves the
        // encoding as it was before outputs existed.
        for output in policy.outputs {
            e.line("output \(e.quoted(output.name)) = \(e.ir(output.value))")
        }
        return Hashing.fnv1a(e.bytes)
    }

    /// A window buffer by what it holds — the event, its condition, the
    /// field it sums, in names — not by index or cap: how a checkpoint
    /// finds the same buffer in a changed policy.
    package static func identity(of spec: WindowBufferSpec, in policy: CheckedPolicy) -> String {
        let e = Encoder(policy: policy)
        return "\(e.events(spec.events))\(spec.condition.map { " where " + e.ir($0) } ?? "")"
            + (spec.field.map { " summing \(e.quoted(policy.fields[$0]))" } ?? "")
            + (spec.restartsFor.map { " restarting for \(e.quoted($0))" } ?? "")
    }

    private struct Encoder {
        let policy: CheckedPolicy
        var bytes: [UInt8] = []

        mutating func line(_ text: String) { bytes += text.utf8; bytes.append(0x0A) }

        func quoted(_ s: String) -> String { JSONWriter.quoted(s) }

        /// One event by its name, as before groups; a group's events by
        /// their names, sorted (ids differ between policies, names do not).
        func events(_ ids: [Int]) -> String {
            if ids.count == 1 { return quoted(policy.events[ids[0]].name) }
            return "any of " + ids.map { policy.events[$0].name }.sorted().map(quoted).joined(separator: ",")
        }
        func optional<T>(_ v: T?) -> String { v.map { "\($0)" } ?? "none" }

        func type(_ t: ValueType) -> String {
            switch t {
            case .number: "number"
            case .string: "string"
            case .bool: "bool"
            case .duration: "duration"
            case .any: "any"
            }
        }

        func buffer(_ spec: WindowBufferSpec) -> String {
            "of \(events(spec.events)) where \(spec.condition.map(ir) ?? "always")"
                + " sums \(spec.field.map { quoted(policy.fields[$0]) } ?? "nothing") cap \(optional(spec.cap))"
                + (spec.restartsFor.map { " restarting for \(quoted($0))" } ?? "")
        }

        /// A denial's reason; nothing without one (the encoding before reasons).
        func because(_ reason: Int?) -> String {
            reason.map { " because \(quoted(policy.denialReasons[$0]))" } ?? ""
        }

        func target(_ kind: TargetKind, _ name: Int) -> String {
            "\(kind.setVerb) \(quoted(policy.names(of: kind)[name]))"
        }

        func effect(_ effect: CheckedEffect) -> String {
            switch effect {
            case .score(let amount): "score \(ir(amount))"
            case .setScore(let value): "score set to \(ir(value))"
            case .setAttribute(let k, let value): "attribute \(quoted(policy.attributes[k].name)) set to \(ir(value))"
            case .set(let kind, let name, .computed(let duration), let r): target(kind, name) + because(r) + " for computed \(ir(duration))"
            case .set(let kind, let name, let duration, let r): target(kind, name) + because(r) + " for \(optional(duration.fixed))"
            case .lift(let kind, let name, let r): "\(kind.liftVerb) \(quoted(policy.names(of: kind)[name]))" + because(r)
            }
        }

        func ir(_ e: IR) -> String {
            switch e {
            case .number(let n): "\(n.bitPattern)n"
            case .bool(let b): b ? "true" : "false"
            case .string(let s): quoted(s)
            case .field(_, let name): "field \(quoted(name))"
            case .flag(let f): "flag \(quoted(policy.flags[f]))"
            case .privilege(let kind, let p): "\(kind.stateWord) \(quoted(policy.privileges[p]))"
            case .score: "score"
            case .unary(let op, let a): "(\(unary(op)) \(ir(a)))"
            case .binary(let op, let a, let b): "(\(binary(op)) \(ir(a)) \(ir(b)))"
            case .inList(let a, let items): "(in \(ir(a)) [\(items.map(ir).joined(separator: " "))])"
            case .call(let fn, let args): "(\(function(fn)) \(args.map(ir).joined(separator: " ")))"
            case .conditional(let c, let a, let b): "(if \(ir(c)) \(ir(a)) \(ir(b)))"
            case .aggregate(let b, let window, let sum): "(\(sum ? "sum" : "count") buffer \(b) within \(window))"
            case .attribute(let k): "attribute \(quoted(policy.attributes[k].name))"
            }
        }

        func unary(_ op: UnaryOp) -> String {
            switch op {
            case .negate: "-"
            case .not: "not"
            }
        }

        func binary(_ op: BinaryOp) -> String {
            switch op {
            case .add: "+"
            case .sub: "-"
            case .mul: "*"
            case .div: "/"
            case .mod: "%"
            case .eq: "=="
            case .ne: "!="
            case .lt: "<"
            case .le: "<="
            case .gt: ">"
            case .ge: ">="
            case .and: "and"
            case .or: "or"
            }
        }

        func function(_ fn: Builtin) -> String {
            switch fn {
            case .min: "min"
            case .max: "max"
            case .abs: "abs"
            case .count: "count"
            case .sum: "sum"
            }
        }
    }
}
