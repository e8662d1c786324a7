import Foundation

/// The reference model's own reading of a stream line, written from
/// docs/LANGUAGE.md's "Event streams" (not from the engine's parser): a
/// strict JSON object, `citizen`/`type`/`time`, and fields.
enum ReferenceStream {
    struct Line {
        var person: [UInt8]
        var type: String
        var time: Int64
        var fields: [String: ReferenceModel.Value]
        /// `"id"`, reserved (docs/LANGUAGE.md, "Corrections").
        var id: [UInt8]? = nil
        /// A retraction line's target (its type is `retract`).
        var target: [UInt8]? = nil
    }

    /// nil when the line is rejected. `readFields`: the fields the policy
    /// reads (a repeated key is rejected only for those and the reserved
    /// keys).
    static func parse(_ bytes: [UInt8], readFields: Set<String>) -> Line? {
        guard String(validating: bytes, as: UTF8.self) != nil else { return nil }
        var json = JSON(bytes: bytes)
        guard case .object(let members)? = json.document() else { return nil }
        var person: [UInt8]? = nil, type: String? = nil, time: Int64? = nil
        var fields: [String: ReferenceModel.Value] = [:]
        var seen: Set<String> = []
        var id: [UInt8]? = nil
        for (rawKey, value) in members {
            let key = name(rawKey)
            switch rawKey {
            case "id":
                guard seen.insert(rawKey).inserted, case .string(let s) = value, !s.isEmpty else { return nil }
                id = s
            case "citizen", "type", "time":
                guard seen.insert(rawKey).inserted, case .string(let s) = value else { return nil }
                if rawKey == "citizen" { guard !s.isEmpty else { return nil }; person = s }
                if rawKey == "type" { type = name(String(decoding: s, as: UTF8.self)) }
                if rawKey == "time" { guard let t = parseTime(String(decoding: s, as: UTF8.self)) else { return nil }; time = t }
            default:
                if readFields.contains(key) { guard seen.insert("field " + key).inserted else { return nil } }
                switch value {
                case .string(let s): fields[key] = .string(s)
                case .number(let n): fields[key] = .number(n)
                case .bool(let b): fields[key] = .bool(b)
                default: return nil
                }
            }
        }
        guard let person, let type, let time else { return nil }
        var line = Line(person: person, type: type, time: time, fields: fields, id: id)
        if type == "retract" {
            // A target, perhaps a reason, nothing else.
            guard case .string(let target)? = fields["target"], !target.isEmpty else { return nil }
            if let reason = fields["reason"], case .string = reason {} else if fields["reason"] != nil { return nil }
            guard Set(fields.keys).isSubset(of: ["target", "reason"]) else { return nil }
            line.target = target
            line.fields = [:]
        }
        return line
    }

    /// A run of spaces is one `_`, as in policy names.
    static func name(_ s: String) -> String {
        var out = "", lastSpace = false
        for c in s {
            if c == " " { if !lastSpace { out.append("_") }; lastSpace = true } else { out.append(c); lastSpace = false }
        }
        return out
    }

    // MARK: - JSON, strictly (RFC 8259)

    indirect enum JSONValue {
        case object([(String, JSONValue)]), array, string([UInt8]), number(Double), bool(Bool), null
    }

    struct JSON {
        let bytes: [UInt8]
        var i = 0

        mutating func document() -> JSONValue? {
            guard let v = value(depth: 0) else { return nil }
            space()
            return i == bytes.count ? v : nil
        }

        mutating func space() {
            while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
        }

        mutating func value(depth: Int) -> JSONValue? {
            guard depth < 512 else { return nil }
            space()
            guard i < bytes.count else { return nil }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var members: [(String, JSONValue)] = []
                space()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                while true {
                    space()
                    guard case .string(let k)? = string() else { return nil }
                    space()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
                    i += 1
                    guard let v = value(depth: depth + 1) else { return nil }
                    members.append((String(decoding: k, as: UTF8.self), v))
                    space()
                    guard i < bytes.count else { return nil }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                    return nil
                }
            case UInt8(ascii: "["):
                i += 1
                space()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array }
                while true {
                    guard value(depth: depth + 1) != nil else { return nil }
                    space()
                    guard i < bytes.count else { return nil }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array }
                    return nil
                }
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "t"): return word("true", .bool(true))
            case UInt8(ascii: "f"): return word("false", .bool(false))
            case UInt8(ascii: "n"): return word("null", .null)
            default: return number()
            }
        }

        mutating func word(_ w: String, _ v: JSONValue) -> JSONValue? {
            let w = Array(w.utf8)
            guard i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w else { return nil }
            i += w.count
            return v
        }

        mutating func number() -> JSONValue? {
            let start = i
            if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
            func digits() -> Int { var n = 0; while i < bytes.count, (48...57).contains(bytes[i]) { i += 1; n += 1 }; return n }
            guard i < bytes.count else { return nil }
            if bytes[i] == UInt8(ascii: "0") { i += 1 } else { guard digits() > 0 else { return nil } }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") { i += 1; guard digits() > 0 else { return nil } }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { return nil }
            }
            guard let n = Double(String(decoding: bytes[start..<i], as: UTF8.self)), n.isFinite else { return nil }
            return .number(n)
        }

        mutating func string() -> JSONValue? {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { return nil }
            i += 1
            var out: [UInt8] = []
            while i < bytes.count {
                let b = bytes[i]
                i += 1
                switch b {
                case UInt8(ascii: "\""): return .string(out)
                case 0..<0x20: return nil
                case UInt8(ascii: "\\"):
                    guard i < bytes.count else { return nil }
                    let e = bytes[i]
                    i += 1
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                    case UInt8(ascii: "b"): out.append(8)
                    case UInt8(ascii: "f"): out.append(12)
                    case UInt8(ascii: "n"): out.append(10)
                    case UInt8(ascii: "r"): out.append(13)
                    case UInt8(ascii: "t"): out.append(9)
                    case UInt8(ascii: "u"):
                        guard var code = hex4() else { return nil }
                        if (0xD800..<0xDC00).contains(code) {
                            guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else { return nil }
                            i += 2
                            guard let low = hex4(), (0xDC00..<0xE000).contains(low) else { return nil }
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        }
                        // A lone surrogate is not a character: the line is rejected.
                        guard let scalar = Unicode.Scalar(code) else { return nil }
                        out += Array(String(Character(scalar)).utf8)
                    default: return nil
                    }
                default: out.append(b)
                }
            }
            return nil
        }

        mutating func hex4() -> UInt32? {
            guard i + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[i..<(i + 4)], as: UTF8.self), radix: 16) else { return nil }
            i += 4
            return v
        }
    }

    // MARK: - Time

    /// Microseconds since 1970 of `YYYY-MM-DD` or
    /// `YYYY-MM-DD(T|t| )HH:MM[:SS[(.|,)FRACTION]](Z|z|±HH[:MM]|±HHMM)`,
    /// years 0001–9999.
    static func parseTime(_ s: String) -> Int64? {
        let c = Array(s.utf8)
        var i = 0
        func num(_ n: Int) -> Int? {
            guard i + n <= c.count, c[i..<(i + n)].allSatisfy({ (48...57).contains($0) }) else { return nil }
            defer { i += n }
            return Int(String(decoding: c[i..<(i + n)], as: UTF8.self))
        }
        func eat(_ ch: Character) -> Bool {
            guard i < c.count, c[i] == ch.asciiValue! else { return false }
            i += 1
            return true
        }
        guard let y = num(4), eat("-"), let mo = num(2), eat("-"), let d = num(2),
              (1...9999).contains(y), (1...12).contains(mo), d >= 1, d <= daysIn(mo, y) else { return nil }
        let days = Int64(daysSinceEpoch(y, mo, d))
        if i == c.count { return days * 86_400 * 1_000_000 }
        guard eat("T") || eat("t") || eat(" "), let h = num(2), h < 24, eat(":"), let mi = num(2), mi < 60 else { return nil }
        var sec = 0
        var micros: Int64 = 0
        if eat(":") {
            guard let s = num(2), s < 60 else { return nil }
            sec = s
            if eat(".") || eat(",") {
                var digits = 0
                while i < c.count, (48...57).contains(c[i]) {
                    if digits < 6 { micros = micros * 10 + Int64(c[i] - 48) }
                    digits += 1
                    i += 1
                }
                guard digits > 0 else { return nil }
                for _ in min(digits, 6)..<6 { micros *= 10 }
            }
        }
        var offset = 0
        if eat("Z") || eat("z") {
        } else if i < c.count, c[i] == UInt8(ascii: "+") || c[i] == UInt8(ascii: "-") {
            let sign = c[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            guard let oh = num(2), oh < 24 else { return nil }
            var om = 0
            if i < c.count {
                _ = eat(":")
                guard let m = num(2), m < 60 else { return nil }
                om = m
            }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == c.count else { return nil }
        let t = (days * 86_400 + Int64(h * 3600 + mi * 60 + sec - offset)) * 1_000_000 + micros
        // The instant must lie in the years 0001-9999 in UTC too.
        let first = Int64(daysSinceEpoch(1, 1, 1)) * 86_400 * 1_000_000
        let end = Int64(daysSinceEpoch(9999, 12, 31) + 1) * 86_400 * 1_000_000
        return t >= first && t < end ? t : nil
    }

    static func daysIn(_ month: Int, _ year: Int) -> Int {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    }

    /// Days from 1970-01-01, counted day by year (plain, not clever).
    static func daysSinceEpoch(_ y: Int, _ m: Int, _ d: Int) -> Int {
        func leap(_ y: Int) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }
        var days = 0
        if y >= 1970 { for year in 1970..<y { days += leap(year) ? 366 : 365 } }
        else { for year in y..<1970 { days -= leap(year) ? 366 : 365 } }
        for month in 1..<m { days += daysIn(month, y) }
        return days + d - 1
    }

    // MARK: - Output

    /// A JSON string: raw UTF-8, `/` not escaped, control characters escaped.
    static func quote(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = [0x22]
        for b in bytes {
            switch b {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += Array("\\n".utf8)
            case 0x0D: out += Array("\\r".utf8)
            case 0x09: out += Array("\\t".utf8)
            case 0x08: out += Array("\\b".utf8)
            case 0x0C: out += Array("\\f".utf8)
            case 0..<0x20: out += Array(String(format: "\\u%04x", b).utf8)
            default: out.append(b)
            }
        }
        out.append(0x22)
        return String(decoding: out, as: UTF8.self)
    }
}
