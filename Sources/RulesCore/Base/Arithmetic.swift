/// Numbers as the language writes them and the score's arithmetic: the
/// bottom layer, used everywhere, using nothing. (The operators' and
/// functions' arithmetic extends it in Check/Folder.swift.)
package enum Arithmetic {
    /// `5`, `2.5`: numbers as a policy author writes them.
    package static func format(_ n: Double) -> String {
        if n == n.rounded() && abs(n) < 1e15 { return String(Int64(n)) }
        return String(n)
    }

    /// How far the score reaches either way: it saturates here instead of
    /// wrapping (the contract's ±9·10^15, inside the range where doubles
    /// are exact integers).
    static let scoreLimit: Int64 = 9_000_000_000_000_000

    /// A score change: rounded to the nearest integer, halves away from
    /// zero, and stopped at the score's limit (NaN is no change).
    @inline(__always)
    static func roundScore(_ x: Double) -> Int64 {
        let r = x.rounded(.toNearestOrAwayFromZero)
        let limit = Double(scoreLimit)
        return r.isNaN ? 0 : Int64(Swift.max(-limit, Swift.min(limit, r)))
    }

    /// `a + b` for scores and score changes, stopped at ±`scoreLimit`:
    /// the one place the engine, the trail and explanations add points.
    @inline(__always)
    static func addScore(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        if overflow { return b > 0 ? scoreLimit : -scoreLimit }
        return Swift.max(-scoreLimit, Swift.min(scoreLimit, sum))
    }
}
