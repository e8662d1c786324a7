/// A compact S-expression form of the AST, for parser tests and debugging:
/// `(rule speeding (where (> speed (+ limit 30))) (-20))`.
package enum ASTDump {
    package static func dump(_ s: Statement) -> String {
        switch s {
        case .settings(let parts, _):
            return "(score " + parts.map { "(\($0.kind.rawValue) \(dump($0.value)))" }.joined(separator: " ") + ")"
        case .constant(let n, let e, _): return "(let \(n.text) \(dump(e)))"
        case .output(let n, let e, _): return "(output \(n.text) \(dump(e)))"
        case .attribute(let n, let e, _): return "(attribute \(n.text) \(dump(e)))"
        case .event(let d):
            return "(event \(d.name.text)" + d.fields.map { " (\($0.name.text) \($0.type.text))" }.joined() + ")"
        case .group(let g): return "(group \(g.name.text)" + g.members.map { " \($0.text)" }.joined() + ")"
        case .eventRule(let r):
            var out = "(rule"
            if let t = r.timer {
                out += t.repeats ? " (every \(dump(t.delay)))" : " (after \(dump(t.delay)))"
                if let u = t.unless { out += " (unless \(u.text))" }
            }
            if r.countMode != .atLeast { out += " \(r.countMode.rawValue)" }
            if let c = r.count { out += " \(dump(c))" }
            out += " \(r.event.text)"
            if let c = r.condition { out += " (where \(dump(c)))" }
            if let w = r.window { out += " (within \(dump(w)))" }
            return out + " " + r.effects.map(dump).joined(separator: " ") + ")"
        case .stateRule(let r):
            return "(while \(dump(r.condition)) " + r.effects.map(dump).joined(separator: " ") + ")"
        case .use(let path, _): return "(use \(JSONWriter.quoted(path)))"
        case .test(let t): return "(test \(JSONWriter.quoted(t.name))" + t.steps.map { " " + dump($0) }.joined() + ")"
        }
    }

    static func dump(_ step: TestStep) -> String {
        switch step {
        case .event(let e):
            let fields = e.fields.map { " (\($0.name.text) \(dump($0.value)))" }.joined()
            let times = e.repeats == 1 ? "" : " (× \(e.repeats))"
            return "(event \(Timestamp.format(e.time)) \(e.person.text) \(e.event.text)\(fields)\(times))"
        case .expect(let x):
            let at = x.at.map { "at \(Timestamp.format($0)) " } ?? ""
            switch x.kind {
            case .score(let p, let op, let v, let output):
                return "(expect \(at)\(p.text) \(output?.text ?? "score") \(op.rawValue) \(Arithmetic.format(v)))"
            case .scoreBetween(let p, let lo, let hi, let output):
                return "(expect \(at)\(p.text) \(output?.text ?? "score") between \(Arithmetic.format(lo)) \(Arithmetic.format(hi)))"
            case .value(let p, let a, let op, let v): return "(expect \(at)\(p.text) \(a.text) \(op.rawValue) \(dump(v)))"
            case .holds(let p, let k, let n, let neg): return "(expect \(at)\(p.text) \(neg ? "not " : "")\(k.rawValue) \(n.text))"
            case .exactly(let p, let k, let names): return "(expect \(at)\(p.text) \(k.rawValue) [\(names.map(\.text).joined(separator: " "))])"
            case .fired(let text, _, let neg): return "(expect \(at)\(neg ? "not " : "")fired \(JSONWriter.quoted(text)))"
            }
        }
    }

    static func dump(_ v: LiteralValue) -> String {
        switch v {
        case .number(let n): return Arithmetic.format(n)
        case .string(let s): return JSONWriter.quoted(s)
        case .bool(let b): return b ? "true" : "false"
        }
    }

    static func dump(_ e: Effect) -> String {
        func timed(_ verb: String, _ n: Name, _ d: Expr?) -> String {
            "(\(verb) \(n.text)" + (d.map { " (for \(dump($0)))" } ?? "") + ")"
        }
        switch e.kind {
        case .score(let sign, let x): return "(\(sign < 0 ? "-" : "+")\(dump(x)))"
        case .setScore(let x): return "(set score \(dump(x)))"
        case .setAttribute(let n, let x): return "(set \(n.text) \(dump(x)))"
        case .set(let kind, let n, let d): return timed(kind.setVerb, n, d)
        case .lift(let kind, let n): return "(\(kind.liftVerb) \(n.text))"
        }
    }

    static func dump(_ e: Expr) -> String {
        switch e.kind {
        case .number(let n): return Arithmetic.format(n)
        case .privilege(let kind, let name): return "(\(kind.stateWord) \(name.text))"
        case .string(let s): return JSONWriter.quoted(s)
        case .bool(let b): return b ? "true" : "false"
        case .duration(let s): return "\(Arithmetic.format(s))s"
        case .name(let n): return n
        case .score: return "score"
        case .unary(let op, let a): return "(\(op.rawValue) \(dump(a)))"
        case .binary(let op, let a, let b): return "(\(op.rawValue) \(dump(a)) \(dump(b)))"
        case .inList(let a, let items): return "(in \(dump(a)) [" + items.map(dump).joined(separator: " ") + "])"
        case .conditional(let c, let a, let b): return "(if \(dump(c)) \(dump(a)) \(dump(b)))"
        case .call(let f, let args): return "(\(f.rawValue) " + args.map(dump).joined(separator: " ") + ")"
        case .count(let ev, let c, let w):
            return "(count \(ev.text)" + (c.map { " (where \(dump($0)))" } ?? "") + " (within \(dump(w))))"
        case .sum(let ev, let f, let c, let w):
            return "(sum \(ev.text).\(f.text)" + (c.map { " (where \(dump($0)))" } ?? "") + " (within \(dump(w))))"
        case .invalid: return "<invalid>"
        }
    }
}
