/// Durations as text outside a policy — `--retain 365 days` on the command
/// line, "more than 30 days before" in a reason — with the policy's own
/// unit words (`Lexer.units`), so that the two never disagree.
package enum DurationText {
    /// `365 days`, `365days`, `12 hours`, `90 seconds`, `1.5 hours`: a
    /// number and a unit word, as ticks; nil for anything else, or a
    /// negative or over 1000 years (the policy's own limit).
    package static func parse(_ text: String) -> Int64? {
        let t = Substring(text).drop { $0 == " " }
        guard let split = t.firstIndex(where: { !($0.isASCII && ($0.isNumber || $0 == "." || $0 == "_")) }) else { return nil }
        let number = String(t[..<split].filter { $0 != "_" })
        var unit = t[split...].drop { $0 == " " }
        while unit.last == " " { unit = unit.dropLast() }
        guard let value = Double(number), value >= 0, let seconds = Lexer.units[String(unit)] else { return nil }
        let total = value * seconds
        guard total <= 1000 * 31_536_000 else { return nil }
        return Int64((total * Double(Timestamp.perSecond)).rounded())
    }

    /// `365 days`, `1 day`, `36 hours`, `90 minutes`, `1.5 seconds`: in the
    /// largest of days, hours, minutes and seconds that measures it whole.
    package static func describe(_ ticks: Int64) -> String {
        let second = Timestamp.perSecond
        for (unit, size) in [("day", 86_400 * second), ("hour", 3_600 * second), ("minute", 60 * second), ("second", second)]
        where ticks >= size && ticks % size == 0 {
            let n = ticks / size
            return "\(n) \(unit)\(n == 1 ? "" : "s")"
        }
        let seconds = Double(ticks) / Double(second)
        return "\(seconds) seconds"
    }
}
