import RulesCore

/// The compiled rule graph as a picture: events → event rules → score,
/// flags and privileges → state rules → flags and privileges. Rules are
/// labelled with `FILE:LINE` and their source; the edges of a cycle (a check
/// error) are drawn in red. Output: Graphviz DOT or Mermaid.
package enum GraphExport {
    public enum Format: String, Sendable { case dot, mermaid }

    struct Node {
        enum Shape { case event, rule, stateRule, score, flag, privilege }
        var id: String
        var label: String
        var shape: Shape
    }

    struct Edge {
        var from: String
        var to: String
        var label: String
        var dashed = false
        var red = false
    }

    /// Draws the policy the checker made, even when the check failed on a cycle.
    public static func render(_ result: CompileResult, format: Format) -> String? {
        guard let policy = result.checked else { return nil }
        let (nodes, edges) = build(policy)
        return format == .dot ? dot(nodes, edges) : mermaid(nodes, edges)
    }

    static func build(_ policy: CheckedPolicy) -> ([Node], [Edge]) {
        var nodes: [Node] = []
        var edges: [Edge] = []
        var seen: Set<String> = []
        func node(_ id: String, _ label: String, _ shape: Node.Shape) {
            if seen.insert(id).inserted { nodes.append(Node(id: id, label: label, shape: shape)) }
        }
        func site(_ span: Span) -> String {
            let (file, line, _) = policy.sources.location(span)
            return "\(file):\(line)\n\(policy.sources.files[span.file].text(span))"
        }
        func target(_ kind: TargetKind, _ name: Int) -> String {
            let label = policy.names(of: kind)[name]
            let id = "\(kind.nameKind):\(label)"
            node(id, label, kind.isFlag ? .flag : .privilege)
            return id
        }
        func because(_ reason: Int?) -> String { reason.map { " because \(policy.denialReasons[$0].replacing("_", with: " "))" } ?? "" }
        /// An attribute's node: a value the person holds, as the score is.
        func attribute(_ a: Int) -> String {
            let name = policy.attributes[a].name
            node("attribute:\(name)", name.replacing("_", with: " "), .score)
            return "attribute:\(name)"
        }
        func readers(_ ir: IR?, into rule: String) {
            guard let ir else { return }
            var flags = Set<Int>(), score = false, buffers = Set<Int>()
            ir.flagsRead(into: &flags)
            ir.reads(score: &score, buffers: &buffers)
            if score { node("score", "score", .score); edges.append(Edge(from: "score", to: rule, label: "reads", dashed: true)) }
            for f in flags.sorted() { edges.append(Edge(from: target(.flag, f), to: rule, label: "reads", dashed: true)) }
            var privileges: [(TargetKind, Int)] = []
            ir.privilegesRead { privileges.append(($0, $1)) }
            for (kind, p) in privileges { edges.append(Edge(from: target(kind, p), to: rule, label: "reads", dashed: true)) }
            var attributes = Set<Int>()
            ir.forEachPart { if case .attribute(let a) = $0 { attributes.insert(a) } }
            for a in attributes.sorted() { edges.append(Edge(from: attribute(a), to: rule, label: "reads", dashed: true)) }
            for b in buffers.sorted() {
                for event in policy.buffers[b].events.map({ policy.events[$0].name }) {
                    node("event:\(event)", event, .event)
                    edges.append(Edge(from: "event:\(event)", to: rule, label: "counts", dashed: true))
                }
            }
        }
        for (i, rule) in policy.eventRules.enumerated() {
            let id = "rule:\(i)"
            node(id, site(rule.ast.span), .rule)
            // A timed rule: its events arm it (the edge says after how
            // long), its `unless` events disarm or restart it.
            let armLabel = rule.timer.map { "after " + DurationText.describe($0.delay) }
            for event in rule.events.map({ policy.events[$0].name }) {  // a group's rule: an edge from each of its events
                node("event:\(event)", event, .event)
                edges.append(Edge(from: "event:\(event)", to: id, label: armLabel ?? rule.count.map { "\($0) within window" } ?? ""))
            }
            if let timer = rule.timer {
                for event in timer.unless.map({ policy.events[$0].name }) {
                    node("event:\(event)", event, .event)
                    edges.append(Edge(from: "event:\(event)", to: id, label: timer.repeats ? "restarts" : "disarms", dashed: true))
                }
            }
            readers(rule.condition, into: id)
            for effect in rule.effects {
                switch effect {
                case .score(let ir):
                    node("score", "score", .score)
                    edges.append(Edge(from: id, to: "score", label: "changes"))
                    readers(ir, into: id)
                case .setScore(let ir):
                    node("score", "score", .score)
                    edges.append(Edge(from: id, to: "score", label: "sets"))
                    readers(ir, into: id)
                case .setAttribute(let a, let ir):
                    edges.append(Edge(from: id, to: attribute(a), label: "sets"))
                    readers(ir, into: id)
                case .set(let kind, let name, _, let reason):
                    edges.append(Edge(from: id, to: target(kind, name), label: kind.setVerb + because(reason)))
                case .lift(let kind, let name, let reason):
                    edges.append(Edge(from: id, to: target(kind, name), label: kind.liftVerb + because(reason)))
                }
            }
        }
        for (k, rule) in policy.stateRules.enumerated() {
            let id = "state:\(k)"
            node(id, site(rule.ast.span), .stateRule)
            let start = edges.count
            readers(rule.condition, into: id)
            for (kind, name) in rule.effects {
                let red = policy.cycle.contains(k) && kind.isFlag
                edges.append(Edge(from: id, to: target(kind, name), label: kind.setVerb, red: red))
            }
            // A flag read on a cycle: its edge into this rule is red too.
            if policy.cycle.contains(k) {
                for e in start..<edges.count where edges[e].to == id && edges[e].from.hasPrefix("flag:") { edges[e].red = true }
            }
        }
        return (nodes, edges)
    }

    // MARK: - DOT

    static func dot(_ nodes: [Node], _ edges: [Edge]) -> String {
        func quote(_ s: String) -> String {
            "\"" + s.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n") + "\""
        }
        var out = "digraph rules {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9];\n"
        for n in nodes {
            let style: String
            switch n.shape {
            case .event: style = "shape=ellipse, style=filled, fillcolor=\"#e8f0fe\""
            case .rule: style = "shape=box"
            case .stateRule: style = "shape=box, style=rounded"
            case .score: style = "shape=doublecircle"
            case .flag: style = "shape=diamond"
            case .privilege: style = "shape=hexagon"
            }
            out += "  \(quote(n.id)) [label=\(quote(n.label)), \(style)];\n"
        }
        for e in edges {
            var attrs: [String] = []
            if !e.label.isEmpty { attrs.append("label=\(quote(e.label))") }
            if e.dashed { attrs.append("style=dashed") }
            if e.red { attrs.append("color=red, fontcolor=red, penwidth=2") }
            out += "  \(quote(e.from)) -> \(quote(e.to))" + (attrs.isEmpty ? "" : " [\(attrs.joined(separator: ", "))]") + ";\n"
        }
        return out + "}\n"
    }

    // MARK: - Mermaid

    static func mermaid(_ nodes: [Node], _ edges: [Edge]) -> String {
        var ids: [String: String] = [:]
        for (i, n) in nodes.enumerated() { ids[n.id] = "n\(i)" }
        func text(_ s: String) -> String {
            "\"" + s.replacing("\"", with: "#quot;").replacing("\n", with: "<br/>") + "\""
        }
        var out = "flowchart LR\n"
        for n in nodes {
            let id = ids[n.id]!, label = text(n.label)
            switch n.shape {
            case .event: out += "  \(id)([\(label)])\n"
            case .rule: out += "  \(id)[\(label)]\n"
            case .stateRule: out += "  \(id)(\(label))\n"
            case .score: out += "  \(id)((\(label)))\n"
            case .flag: out += "  \(id){\(label)}\n"
            case .privilege: out += "  \(id){{\(label)}}\n"
            }
        }
        var red: [Int] = []
        for (i, e) in edges.enumerated() {
            let arrow = e.dashed ? "-.->" : "-->"
            let label = e.label.isEmpty ? "" : "|\(text(e.label))|"
            out += "  \(ids[e.from]!) \(arrow)\(label) \(ids[e.to]!)\n"
            if e.red { red.append(i) }
        }
        if !red.isEmpty { out += "  linkStyle \(red.map(String.init).joined(separator: ",")) stroke:red,stroke-width:2px\n" }
        return out
    }
}
