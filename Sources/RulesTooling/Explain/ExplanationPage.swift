import RulesCore

/// `rules explain … --html OUT.html`: one self-contained page (no network,
/// inline SVG) with the person's score over time, each flag, denial and
/// grant as a bar over the same time axis, and the account beneath.
/// The intervals come from the audit trail, so a `while` rule's bar starts
/// and stops at the exact instants the trail records.
package enum ExplanationPage {
    struct Interval {
        var label: String
        var start: Int64
        var end: Int64?   // nil: still in force at the end of the axis
        var kind: TargetKind
    }

    /// Builds the page from the explanation and the person's trail records.
    public static func html(_ explanation: PersonExplanation, trace: [TraceRecord]) -> String {
        let (points, intervals) = series(explanation, trace)
        let first = points.first?.time ?? explanation.asOf
        let last = max(explanation.asOf, first + 1)
        let svg = chart(points: points, intervals: intervals, from: first, to: last, asOf: explanation.asOf)
        let title = "\(explanation.person) — score \(explanation.score) as of \(Timestamp.format(explanation.asOf))"
        let account = explanation.lines.joined(separator: "\n")
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
        <style>
        body { font: 14px/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #1f2328; }
        h1 { font-size: 20px; margin: 0 0 12px; }
        svg { border: 1px solid #d0d7de; border-radius: 6px; background: #fff; }
        pre { background: #f6f8fa; padding: 12px; border-radius: 6px; overflow-x: auto; font-size: 12px; }
        .legend span { display: inline-block; margin-right: 16px; }
        .sw { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: -1px; margin-right: 4px; }
        </style></head><body>
        <h1>\(escape(title))</h1>
        <p class="legend"><span><i class="sw" style="background:#2f6fdd"></i>score</span><span><i class="sw" style="background:#d1242f"></i>denied</span><span><i class="sw" style="background:#1a7f37"></i>granted</span><span><i class="sw" style="background:#9a6700"></i>flag</span></p>
        \(svg)
        <h2>Account</h2>
        <pre>\(escape(account))</pre>
        </body></html>

        """
    }

    struct Point { var time: Int64; var score: Int64 }

    /// Score steps and sanction intervals for one person, from the trail.
    static func series(_ e: PersonExplanation, _ trace: [TraceRecord]) -> ([Point], [Interval]) {
        var points: [Point] = []
        var open: [String: Interval] = [:]     // "deny travel" → interval being built
        var done: [Interval] = []
        var holds: [Int: [String]] = [:]       // while rule → its effects
        func close(_ key: String, at t: Int64) {
            if var i = open.removeValue(forKey: key) { i.end = t; done.append(i) }
        }
        for r in trace {
            let time = r.time
            switch r.change {
            case .new(let after, _), .score(_, _, let after), .clamp(_, let after),
                 .retract(_, _, _, let after, _), .late(_, let after):
                points.append(Point(time: time, score: after))
            case .set(let kind, let name, let until, let reason):
                let key = "\(kind.setVerb) \(name)" + (reason.map { " because \($0)" } ?? "")
                if var i = open[key], i.end.map({ $0 > time }) ?? true {
                    i.end = i.end.flatMap { end in until.map { max($0, end) } }
                    open[key] = i
                } else {
                    if let old = open.removeValue(forKey: key) { done.append(old) }
                    open[key] = Interval(label: key, start: time, end: until, kind: kind)
                }
            case .lift(let kind, let name, let reason):
                close("\(kind.setVerb) \(name)" + (reason.map { " because \($0)" } ?? ""), at: time)
            case .attribute:
                break  // a value, not a span of time: the event list shows it
            case .start(let effects):
                let rule = r.rule ?? -1
                holds[rule] = effects.map { "\($0.kind.setVerb) \($0.name)" }
                for (h, effect) in zip(holds[rule]!, effects) {
                    done.append(Interval(label: h, start: time, end: nil, kind: effect.kind))
                }
            case .stop:
                for h in holds.removeValue(forKey: r.rule ?? -1) ?? [] {
                    if let k = done.lastIndex(where: { $0.label == h && $0.end == nil }) { done[k].end = time }
                }
            }
        }
        done += open.values
        done.sort { ($0.label, $0.start) < ($1.label, $1.start) }
        return (points, done)
    }

    static func chart(points: [Point], intervals: [Interval], from: Int64, to: Int64, asOf: Int64) -> String {
        let width = 960.0, left = 150.0, right = 20.0, chartTop = 20.0, chartHeight = 180.0
        let labels = Array(Set(intervals.map(\.label))).sorted()
        let rowHeight = 22.0
        let barsTop = chartTop + chartHeight + 40
        let height = barsTop + Double(labels.count) * rowHeight + 30
        let span = Double(to - from)
        func x(_ t: Int64) -> Double { left + (width - left - right) * Double(t - from) / span }
        let scores = points.map(\.score)
        let lo = Double(scores.min() ?? 0), hi = Double(scores.max() ?? 1)
        let pad = max(1, (hi - lo) * 0.1)
        func y(_ s: Int64) -> Double { chartTop + chartHeight * (1 - (Double(s) - (lo - pad)) / ((hi + pad) - (lo - pad))) }
        let grey = "#57606a"
        var svg = "<svg xmlns='http://www.w3.org/2000/svg' width='\(Int(width))' height='\(Int(height))' viewBox='0 0 \(Int(width)) \(Int(height))' font-family='Helvetica, Arial, sans-serif' font-size='11'>"
        // Axes and ticks.
        svg += "<line x1='\(left)' y1='\(chartTop + chartHeight)' x2='\(width - right)' y2='\(chartTop + chartHeight)' stroke='#8c959f'/>"
        for k in 0...4 {
            let t = from + Int64(Double(k) / 4 * span)
            let anchor = k == 0 ? "start" : k == 4 ? "end" : "middle"
            svg += "<text x='\(x(t))' y='\(chartTop + chartHeight + 16)' text-anchor='\(anchor)' fill='\(grey)'>\(escape(String(Timestamp.format(t).prefix(10))))</text>"
        }
        for s in Set([Int64(lo), Int64(hi)]).sorted() {
            svg += "<text x='\(left - 8)' y='\(y(s) + 4)' text-anchor='end' fill='\(grey)'>\(s)</text>"
            svg += "<line x1='\(left)' y1='\(y(s))' x2='\(width - right)' y2='\(y(s))' stroke='#eaeef2'/>"
        }
        svg += "<text x='\(left - 8)' y='\(chartTop - 6)' text-anchor='end' fill='\(grey)'>score</text>"
        // The score as steps: it changes only at events.
        if let first = points.first {
            var path = "M\(x(first.time)),\(y(first.score))"
            for p in points.dropFirst() { path += " H\(x(p.time)) V\(y(p.score))" }
            path += " H\(x(to))"
            svg += "<path d='\(path)' fill='none' stroke='#2f6fdd' stroke-width='2'/>"
            for p in points { svg += "<circle cx='\(x(p.time))' cy='\(y(p.score))' r='2.5' fill='#2f6fdd'/>" }
        }
        // Sanctions and grants as bars on the same axis.
        for (row, label) in labels.enumerated() {
            let top = barsTop + Double(row) * rowHeight
            svg += "<text x='\(left - 8)' y='\(top + 14)' text-anchor='end'>\(escape(label))</text>"
            svg += "<line x1='\(left)' y1='\(top + rowHeight - 2)' x2='\(width - right)' y2='\(top + rowHeight - 2)' stroke='#f0f2f4'/>"
            for i in intervals where i.label == label {
                let start = x(max(i.start, from)), end = x(min(i.end ?? to, to))
                let tip = escape("\(label): \(Timestamp.format(i.start)) – \(i.end.map(Timestamp.format) ?? "…")")
                svg += "<rect x='\(start)' y='\(top + 3)' width='\(max(2, end - start))' height='\(rowHeight - 8)' rx='3' fill='\(i.kind.colour)' opacity='0.85'><title>\(tip)</title></rect>"
            }
        }
        svg += "<line x1='\(x(asOf))' y1='\(chartTop)' x2='\(x(asOf))' y2='\(height - 20)' stroke='#8c959f' stroke-dasharray='4 3'/>"
        svg += "<text x='\(x(asOf))' y='\(height - 6)' text-anchor='end' fill='\(grey)'>as of \(escape(Timestamp.format(asOf)))</text>"
        return svg + "</svg>"
    }

    static func escape(_ s: String) -> String {
        s.replacing("&", with: "&amp;").replacing("<", with: "&lt;").replacing(">", with: "&gt;").replacing("\"", with: "&quot;")
    }
}
