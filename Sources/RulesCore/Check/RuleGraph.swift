/// The dependency graph between state rules: rule A comes before rule B when
/// A sets a flag that B reads. Rules are evaluated in that order, so each rule
/// sees the final value of every flag it reads. A cycle has no such order and
/// is an error that prints the whole cycle.
enum RuleGraph {
    /// Returns the rules in evaluation order: a topological order that keeps
    /// source order wherever the graph allows.
    /// With a cycle, the rules on it come last (in source order) and their
    /// positions in the result are returned too, for `rules graph`.
    static func order(_ rules: [CheckedStateRule], names: [String], sink: inout DiagnosticSink) -> (rules: [CheckedStateRule], cycle: Set<Int>) {
        let edges = successors(rules)
        var indegree = [Int](repeating: 0, count: rules.count)
        for targets in edges { for t in targets { indegree[t] += 1 } }
        // Kahn's algorithm; the lowest source index among the ready rules
        // goes next, so source order is kept where the graph allows.
        var ready = MinHeap((0..<rules.count).filter { indegree[$0] == 0 })
        var order: [Int] = []
        while let next = ready.pop() {
            order.append(next)
            for t in edges[next] {
                indegree[t] -= 1
                if indegree[t] == 0 { ready.push(t) }
            }
        }
        if order.count < rules.count {
            let remaining = Set(0..<rules.count).subtracting(order)
            let cycle = findCycle(in: remaining, edges: edges)
            reportCycle(cycle, rules: rules, names: names, sink: &sink)
            let ordered = order + remaining.sorted()
            let positions = Set(cycle.map { ordered.firstIndex(of: $0)! })
            return (ordered.map { rules[$0] }, positions)
        }
        return (order.map { rules[$0] }, [])
    }

    /// `edges[a]` lists the rules that read a flag rule `a` sets.
    static func successors(_ rules: [CheckedStateRule]) -> [[Int]] {
        var readers: [Int: [Int]] = [:]
        for (i, r) in rules.enumerated() { for f in r.reads { readers[f, default: []].append(i) } }
        return rules.map { r in Array(Set(r.writes.flatMap { readers[$0] ?? [] })).sorted() }
    }

    /// A cycle through the lowest-numbered rule that is on one.
    private static func findCycle(in remaining: Set<Int>, edges: [[Int]]) -> [Int] {
        // Every node left has an incoming edge from another node left, so
        // walking backwards… forwards from any of them must revisit a node.
        var path: [Int] = []
        var onPath: [Int: Int] = [:]
        var node = remaining.min()!
        while onPath[node] == nil {
            onPath[node] = path.count
            path.append(node)
            node = edges[node].first(where: remaining.contains) ?? node
        }
        return Array(path[onPath[node]!...])
    }

    /// `names[key]`: a flag's name, or `denied(P)` / `granted(P)`.
    private static func reportCycle(_ cycle: [Int], rules: [CheckedStateRule], names: [String], sink: inout DiagnosticSink) {
        var notes: [(span: Span, message: String)] = []
        var steps: [String] = []
        for (k, i) in cycle.enumerated() {
            let next = rules[cycle[(k + 1) % cycle.count]]
            let via = rules[i].writes.intersection(next.reads).map { names[$0] }.sorted().first ?? "?"
            steps.append("`\(via)`")
            notes.append((rules[i].ast.span, "this rule sets `\(via)`, which the next rule in the cycle reads"))
        }
        let first = rules[cycle[0]]
        let onlyFlags = !steps.contains { $0.contains("(") }
        let message = cycle.count == 1
            ? "this `while` rule reads \(onlyFlags ? "the flag " : "")\(steps[0]) it sets, so it has no stable value"
            : "state rules form a cycle through \(onlyFlags ? "the flags " : "")\(steps.joined(separator: " → ")) → \(steps[0])"
        sink.add(Diagnostic(.stateRuleCycle, message, at: first.ast.span,
                            help: "what a `while` rule sets must not feed back into its own condition; break the cycle by removing one of these reads",
                            notes: Array(notes.dropFirst(cycle.count == 1 ? 1 : 0))))
    }
}

/// A binary min-heap of rule indices.
struct MinHeap {
    private var items: [Int] = []

    init(_ values: [Int]) { for v in values { push(v) } }

    mutating func push(_ v: Int) {
        items.append(v)
        var i = items.count - 1
        while i > 0, items[(i - 1) / 2] > items[i] {
            items.swapAt(i, (i - 1) / 2)
            i = (i - 1) / 2
        }
    }

    mutating func pop() -> Int? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if items.isEmpty { return top }
        items[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count, items[l] < items[m] { m = l }
            if r < items.count, items[r] < items[m] { m = r }
            if m == i { return top }
            items.swapAt(i, m)
            i = m
        }
    }
}
