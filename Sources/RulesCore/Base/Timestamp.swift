/// Event time: microseconds since 1970-01-01T00:00:00Z, parsed from ISO-8601
/// bytes without Foundation. Microseconds reach ±292,000 years, so every
/// date from 0001 to 9999 plus any duration up to 1000 years (and the
/// `forever` end, `Int64.max`) fits without overflow; nanoseconds reached
/// only 1678–2262. A fraction finer than a microsecond is truncated. Accepts `2026-01-05` (midnight UTC) and
/// `2026-01-05T08:00:00Z`, with optional seconds, fraction, and an offset
/// `±HH:MM`, `±HHMM` or `±HH` instead of `Z`.
public enum Timestamp {
    /// The engine's clock ticks per second.
    public static let perSecond: Int64 = 1_000_000
    /// Earliest and latest years a stream's time may name.
    static let years = 1...9999
    /// The instants those years hold, in UTC: a time with an offset that
    /// lands outside (`9999-12-31T23:59:59-14:00`) is refused too, so every
    /// time the engine holds can be written back as `YYYY-MM-DDTHH:MM:SSZ`.
    static let earliest: Int64 = Int64(daysFromCivil(year: 1, month: 1, day: 1)) * 86_400 * perSecond
    static let latest: Int64 = Int64(daysFromCivil(year: 10_000, month: 1, day: 1)) * 86_400 * perSecond - 1

    /// `t + d` for a time and a duration, saturating instead of trapping:
    /// every time arithmetic of the engine goes through here (issue 13).
    @inline(__always)
    package static func adding(_ t: Int64, _ d: Int64) -> Int64 {
        let (sum, overflow) = t.addingReportingOverflow(d)
        return overflow ? (d > 0 ? Int64.max : Int64.min) : sum
    }

    /// A duration in seconds as ticks, rounded; nil when it does not fit.
    /// The longest duration the language takes: 1000 years of 365 days.
    package static let longestDurationSeconds = 1000.0 * 31_536_000

    /// The ticks of a duration the language takes — longer than zero, at
    /// most 1000 years, at least a microsecond — and nil for any other (the
    /// checker says which limit a constant breaks; a computed `for` that
    /// breaks one does not fire).
    package static func durationTicks(seconds: Double) -> Int64? {
        guard seconds > 0, seconds <= longestDurationSeconds, let t = ticks(seconds: seconds), t > 0 else { return nil }
        return t
    }

    package static func ticks(seconds: Double) -> Int64? {
        let t = (seconds * Double(perSecond)).rounded()
        guard t.isFinite, abs(t) < 9.2e18 else { return nil }
        return Int64(t)
    }

    /// Microseconds since 1970 of an ISO-8601 date-time or date; nil if it does not parse.
    public static func parse(_ s: String) -> Int64? {
        var s = s
        return s.withUTF8 { parse($0) }
    }

    /// The same, from bytes.
    public static func parse(_ b: UnsafeBufferPointer<UInt8>) -> Int64? {
        parseUTCSeconds(b) ?? parseGeneral(b)
    }

    /// Every accepted shape (the fast path's one included).
    static func parseGeneral(_ b: UnsafeBufferPointer<UInt8>) -> Int64? {
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var v = 0
            for k in i..<(i + n) {
                let d = Int(b[k]) - 48
                guard d >= 0 && d <= 9 else { return nil }
                v = v * 10 + d
            }
            i += n
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < b.count, b[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect(UInt8(ascii: "-")), let month = digits(2), expect(UInt8(ascii: "-")),
              let day = digits(2), (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year) else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        guard years.contains(year) else { return nil }
        if i == b.count { return Int64(days) * 86_400 * perSecond }
        guard i < b.count, b[i] == UInt8(ascii: "T") || b[i] == UInt8(ascii: "t") || b[i] == UInt8(ascii: " ") else { return nil }
        i += 1
        guard let hour = digits(2), hour < 24, expect(UInt8(ascii: ":")), let minute = digits(2), minute < 60 else { return nil }
        var second = 0
        var micros: Int64 = 0
        if expect(UInt8(ascii: ":")) {
            guard let s = digits(2), s < 60 else { return nil }
            second = s
            if expect(UInt8(ascii: ".")) || expect(UInt8(ascii: ",")) {
                var scale: Int64 = perSecond / 10
                let start = i
                while i < b.count, b[i] >= 48, b[i] <= 57 {
                    micros += Int64(b[i] - 48) * scale
                    scale /= 10
                    i += 1
                }
                guard i > start else { return nil }
            }
        }
        guard i < b.count else { return nil }  // a time of day needs Z or an offset
        var offset = 0
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            guard let oh = digits(2), oh < 24 else { return nil }
            var om = 0
            if i < b.count {
                _ = expect(UInt8(ascii: ":"))
                guard let m = digits(2), m < 60 else { return nil }
                om = m
            }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offset)
        let t = seconds * perSecond + micros
        return t >= earliest && t <= latest ? t : nil
    }

    /// The common shape `YYYY-MM-DDTHH:MM:SSZ` read at fixed offsets; nil for
    /// any other shape (then the general parser decides, and explains).
    @inline(__always)
    static func parseUTCSeconds(_ b: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard b.count == 20, b[4] == 0x2D, b[7] == 0x2D, b[10] == 0x54, b[13] == 0x3A, b[16] == 0x3A, b[19] == 0x5A
        else { return nil }
        @inline(__always) func two(_ k: Int) -> Int {
            let h = Int(b[k]) &- 48, l = Int(b[k + 1]) &- 48
            return (UInt(bitPattern: h) < 10 && UInt(bitPattern: l) < 10) ? h * 10 + l : -1
        }
        let hi = two(0), lo = two(2), month = two(5), day = two(8)
        let hour = two(11), minute = two(14), second = two(17)
        guard hi >= 0, lo >= 0, month >= 1, month <= 12, day >= 1, hour >= 0, hour < 24,
              minute >= 0, minute < 60, second >= 0, second < 60 else { return nil }
        let year = hi * 100 + lo
        guard years.contains(year), day <= daysIn(month: month, year: year) else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        return (Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second)) * perSecond
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z: Int) -> (year: Int, month: Int, day: Int) {
        let z = z + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    /// `2026-01-05T08:00:00Z`, with a fraction only when there is one. An
    /// end beyond 9999 (a sanction for 1000 years set in 9500) is written
    /// with ISO 8601's expanded year, `+10499-…`; no stream time is.
    public static func format(_ t: Int64) -> String {
        let micros = ((t % perSecond) + perSecond) % perSecond
        let seconds = (t - micros) / perSecond
        let days = Int((seconds >= 0 ? seconds : seconds - 86_399) / 86_400)
        let rem = Int(seconds - Int64(days) * 86_400)
        let (y, m, d) = civil(fromDays: days)
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        var s = "\(y > 9999 ? "+" : "")\(String(y).leftPadded(4))-\(two(m))-\(two(d))T\(two(rem / 3600)):\(two(rem / 60 % 60)):\(two(rem % 60))"
        if micros != 0 {
            var frac = String(micros).leftPadded(6)
            while frac.hasSuffix("0") { frac.removeLast() }
            s += "." + frac
        }
        return s + "Z"
    }
}
