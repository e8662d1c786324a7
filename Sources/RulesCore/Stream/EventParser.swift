/// Reads one NDJSON line into an event at byte level: no dictionary, no
/// `String` per line. Fields the policy reads go straight into the evaluation
/// context's
/// field slots; other keys are validated and skipped. Any line that is not a
/// valid event gets a reason, with the column where the trouble is.
struct EventParser {
    struct Parsed {
        var person: UnsafeBufferPointer<UInt8>
        /// nil: a type no rule or declaration names (`type` says which).
        var event: Int?
        var time: Int64
        var type: UnsafeBufferPointer<UInt8>
        /// The line's `"id"`, when it has one (docs/LANGUAGE.md, "Corrections").
        var id: UnsafeBufferPointer<UInt8>? = nil
        /// Set when the line is a retraction (`"type":"retract"`).
        var retraction: Retraction? = nil
    }

    /// What a retraction line names: the id of the event it takes back, and
    /// why (optional).
    struct Retraction {
        var target: UnsafeBufferPointer<UInt8>
        var reason: UnsafeBufferPointer<UInt8>?
    }

    /// The reserved type of a retraction line.
    static let retractType: [UInt8] = Array("retract".utf8)

    enum Outcome {
        case event(Parsed)
        case rejected(String)
    }

    private let program: Program
    let personKey: PersonKey
    private let personKeyMatcher: PersonKey.Matcher
    private let keyIsCitizen: Bool
    // The program's tables, reached without a retain per key (the program,
    // held above, keeps them alive).
    private let fieldTable: Unmanaged<ByteTable>
    private let eventTable: Unmanaged<ByteTable>
    /// Unescaped strings live here while their line is applied; it is sized
    /// to the line before parsing so pointers into it stay valid.
    private var scratch: UnsafeMutableBufferPointer<UInt8>
    private var used = 0

    init(program: Program, personKey: PersonKey = .citizen) {
        self.program = program
        self.personKey = personKey
        personKeyMatcher = personKey.matcher
        keyIsCitizen = personKey == .citizen
        fieldTable = .passUnretained(program.fieldTable)
        eventTable = .passUnretained(program.eventTable)
        scratch = .allocate(capacity: 4096)
    }

    func deallocate() { scratch.deallocate() }

    private struct Reject: Error {
        var reason: String
    }

    /// `fields`: where the fields the policy reads go (an engine's context,
    /// unretained: the engine keeps it); nil to learn only whose event the
    /// line is (the `--jobs` router).
    mutating func parse(_ line: UnsafeBufferPointer<UInt8>, into fields: Unmanaged<EvalContext>?) -> Outcome {
        if scratch.count < 2 * line.count + 16 {
            scratch.deallocate()
            scratch = .allocate(capacity: max(2 * line.count + 16, scratch.count * 2))
        }
        used = 0
        do {
            return .event(try object(line, fields))
        } catch let r as Reject {
            return .rejected(r.reason)
        } catch {
            return .rejected("\(error)")
        }
    }

    // MARK: - The object

    private mutating func object(_ b: UnsafeBufferPointer<UInt8>, _ fields: Unmanaged<EvalContext>?) throws -> Parsed {
        var i = skipSpace(b, 0)
        guard i < b.count, b[i] == UInt8(ascii: "{") else {
            throw Reject(reason: i < b.count ? "not a JSON object (a line must start with `{`)" : "empty line")
        }
        i += 1
        var person: UnsafeBufferPointer<UInt8>? = nil
        var type: UnsafeBufferPointer<UInt8>? = nil
        var time: Int64? = nil
        var id: UnsafeBufferPointer<UInt8>? = nil
        // Read for every line, used only by a retraction: `target` and
        // `reason` are ordinary fields of any other event.
        var target: Value? = nil, reason: Value? = nil
        var otherKey: Int? = nil
        let keyIsCitizen = self.keyIsCitizen
        i = skipSpace(b, i)
        if i < b.count && b[i] == UInt8(ascii: "}") {
            i += 1
        } else {
            while true {
                i = skipSpace(b, i)
                guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw syntax(b, i, "expected a key in double quotes") }
                let keyStart = i
                let key = try string(b, &i)
                i = skipSpace(b, i)
                guard i < b.count, b[i] == UInt8(ascii: ":") else { throw syntax(b, i, "expected `:` after the key") }
                i = skipSpace(b, i + 1)
                let valueStart = i
                let value = try self.value(b, &i)
                switch keyIsCitizen ? Self.keyKind(citizen: key) : keyKind(key) {
                case .person:
                    guard person == nil else { throw Reject(reason: "duplicate key \(personKey.quoted)") }
                    guard case .string(let s) = value else { throw Reject(reason: "\(personKey.quoted) must be a string") }
                    guard s.count > 0 else { throw Reject(reason: "\(personKey.quoted) must not be empty") }
                    person = UnsafeBufferPointer(start: s.base, count: s.count)
                case .type:
                    guard type == nil else { throw Reject(reason: "duplicate key \"type\"") }
                    guard case .string(let s) = value else { throw Reject(reason: "\"type\" must be a string") }
                    type = normalizeType(s)
                case .time:
                    guard time == nil else { throw Reject(reason: "duplicate key \"time\"") }
                    guard case .string(let s) = value else {
                        throw Reject(reason: "\"time\" must be a string like \"2026-01-05T08:00:00Z\"")
                    }
                    guard let t = Timestamp.parse(UnsafeBufferPointer(start: s.base, count: s.count)) else {
                        throw Reject(reason: "invalid \"time\" \(JSONWriter.quoted(String(decoding: UnsafeBufferPointer(start: s.base, count: s.count), as: UTF8.self))): expected an ISO-8601 date-time with Z or an offset, or a date, like \"2026-01-05T08:00:00Z\", in the years 0001–9999 (UTC)")
                    }
                    time = t
                case .id:
                    guard id == nil else { throw Reject(reason: "duplicate key \"id\"") }
                    guard case .string(let s) = value else { throw Reject(reason: "\"id\" must be a string") }
                    guard s.count > 0 else { throw Reject(reason: "\"id\" must not be empty") }
                    id = UnsafeBufferPointer(start: s.base, count: s.count)
                case .field:
                    if key.count == 6 && Self.isTarget(key) { target = value } else if key.count == 6 && Self.isReason(key) { reason = value } else if otherKey == nil { otherKey = keyStart }
                    if case .failed = value {
                        let what = b[valueStart] == UInt8(ascii: "{") ? "an object" : b[valueStart] == UInt8(ascii: "[") ? "an array" : "null"
                        throw Reject(reason: "field \(describeKey(b, keyStart)) is \(what); event fields are numbers, strings or booleans")
                    }
                    // A key the policy reads is found as it is (policy names
                    // have no spaces); only a key that is not is looked for
                    // again as a name (`"speed limit"` is `speed_limit`).
                    var id = fieldTable._withUnsafeGuaranteedRef({ $0.find(key) })
                    if id == nil && key.contains(UInt8(ascii: " ")) {
                        let name = normalizeName(key)
                        id = fieldTable._withUnsafeGuaranteedRef({ $0.find(name) })
                    }
                    if let id, let fields, !fields._withUnsafeGuaranteedRef({ $0.fields.set(id, value) }) {
                        throw Reject(reason: "duplicate key \(describeKey(b, keyStart))")
                    }
                }
                i = skipSpace(b, i)
                guard i < b.count else { throw syntax(b, i, "the object is not closed with `}`") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "}") { i += 1; break }
                throw syntax(b, i, "expected `,` or `}`")
            }
        }
        i = skipSpace(b, i)
        guard i == b.count else { throw syntax(b, i, "unexpected text after the object") }
        guard let person else { throw Reject(reason: "missing \(personKey.quoted)") }
        guard let type else { throw Reject(reason: "missing \"type\"") }
        guard let time else { throw Reject(reason: "missing \"time\"") }
        var parsed = Parsed(person: person, event: eventTable._withUnsafeGuaranteedRef { $0.find(type) }, time: time, type: type, id: id)
        if parsed.event == nil && type.elementsEqual(Self.retractType) {
            parsed.retraction = try retraction(b, target: target, reason: reason, otherKey: otherKey)
        }
        return parsed
    }

    /// A retraction's own keys, checked: it names its target and nothing
    /// else but a reason; a field on it would be lost, so it is refused.
    private func retraction(_ b: UnsafeBufferPointer<UInt8>, target: Value?, reason: Value?, otherKey: Int?) throws -> Retraction {
        guard let target else { throw Reject(reason: "a retraction needs \"target\": the id of the event it takes back") }
        guard case .string(let t) = target, t.count > 0 else { throw Reject(reason: "\"target\" of a retraction must be a non-empty string") }
        var why: UnsafeBufferPointer<UInt8>? = nil
        if let reason {
            guard case .string(let r) = reason else { throw Reject(reason: "\"reason\" of a retraction must be a string") }
            why = UnsafeBufferPointer(start: r.base, count: r.count)
        }
        if let otherKey {
            throw Reject(reason: "a retraction has only \"target\" and \"reason\" besides the reserved keys, not \(describeKey(b, otherKey))")
        }
        return Retraction(target: UnsafeBufferPointer(start: t.base, count: t.count), reason: why)
    }

    @inline(__always)
    private static func isTarget(_ k: UnsafeBufferPointer<UInt8>) -> Bool {
        k[0] == 0x74 && k[1] == 0x61 && k[2] == 0x72 && k[3] == 0x67 && k[4] == 0x65 && k[5] == 0x74
    }

    @inline(__always)
    private static func isReason(_ k: UnsafeBufferPointer<UInt8>) -> Bool {
        k[0] == 0x72 && k[1] == 0x65 && k[2] == 0x61 && k[3] == 0x73 && k[4] == 0x6F && k[5] == 0x6E
    }

    private enum KeyKind { case person, type, time, id, field }

    /// Compares bytes directly: this runs for every key of every line.
    /// The contract's key is compared in place: through `PersonKey`'s
    /// matcher every line cost 160 more instructions (callgrind), as the
    /// compiler then stopped inlining this test.
    @inline(__always)
    private static func keyKind(citizen k: UnsafeBufferPointer<UInt8>) -> KeyKind {
        switch k.count {
        case 7 where k[0] == 0x63 && k[1] == 0x69 && k[2] == 0x74 && k[3] == 0x69 && k[4] == 0x7A && k[5] == 0x65 && k[6] == 0x6E:
            return .person  // "citizen"
        case 4 where k[0] == 0x74 && k[2] == 0x6D && k[3] == 0x65:
            return k[1] == 0x69 ? .time : .field  // "time"
        case 4 where k[0] == 0x74 && k[1] == 0x79 && k[2] == 0x70 && k[3] == 0x65:
            return .type  // "type"
        case 2 where k[0] == 0x69 && k[1] == 0x64:
            return .id  // "id"
        default: return .field
        }
    }

    /// The same for another person key (`--person-key`).
    private func keyKind(_ k: UnsafeBufferPointer<UInt8>) -> KeyKind {
        if personKeyMatcher.matches(k) { return .person }
        let kind = Self.keyKind(citizen: k)
        return kind == .person ? .field : kind
    }

    private func describeKey(_ b: UnsafeBufferPointer<UInt8>, _ start: Int) -> String {
        var end = start + 1
        while end < b.count && b[end] != UInt8(ascii: "\"") { end += b[end] == UInt8(ascii: "\\") ? 2 : 1 }
        return String(decoding: b[start..<min(end + 1, b.count)], as: UTF8.self)
    }

    /// The same rule for a `String` (typed events of the library API).
    static func joinedName(_ s: String) -> String {
        guard s.utf8.contains(0x20) else { return s }
        var out = "", lastSpace = false
        for c in s {
            if c == " " { if !lastSpace { out.append("_") }; lastSpace = true } else { out.append(c); lastSpace = false }
        }
        return out
    }

    /// `unpaid debt` is the event `unpaid_debt`: a run of spaces is one `_`.
    private mutating func normalizeType(_ s: ByteString) -> UnsafeBufferPointer<UInt8> {
        normalizeName(UnsafeBufferPointer(start: s.base, count: s.count))
    }

    /// Type names and field keys are names: `speed limit` is `speed_limit`,
    /// as in the policy.
    @inline(__always)
    private mutating func normalizeName(_ raw: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        guard raw.contains(UInt8(ascii: " ")) else { return raw }
        let start = used
        var lastSpace = false
        for c in raw {
            if c == UInt8(ascii: " ") {
                if !lastSpace { scratch[used] = UInt8(ascii: "_"); used += 1 }
                lastSpace = true
            } else {
                scratch[used] = c; used += 1
                lastSpace = false
            }
        }
        return UnsafeBufferPointer(rebasing: scratch[start..<used])
    }

    // MARK: - Values

    @inline(__always)
    private func skipSpace(_ b: UnsafeBufferPointer<UInt8>, _ from: Int) -> Int {
        var i = from
        while i < b.count {
            let c = b[i]
            if c != 0x20 && c != 0x09 && c != 0x0D && c != 0x0A { break }
            i += 1
        }
        return i
    }

    private func syntax(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ message: String) -> Reject {
        let found = i < b.count ? "`\(String(decoding: [b[i]], as: UTF8.self))`" : "the end of the line"
        return Reject(reason: "invalid JSON at column \(column(b, i)): \(message), found \(found)")
    }

    private func column(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
        var col = 1
        for k in 0..<min(i, b.count) where b[k] & 0xC0 != 0x80 { col += 1 }
        return col
    }

    /// A scalar value. Objects, arrays and `null` are skipped and returned as
    /// `.failed` so the caller can say which key held one.
    private mutating func value(_ b: UnsafeBufferPointer<UInt8>, _ i: inout Int) throws -> Value {
        guard i < b.count else { throw syntax(b, i, "expected a value") }
        switch b[i] {
        case UInt8(ascii: "\""):
            let s = try string(b, &i)
            return .string(ByteString(base: s.baseAddress ?? UnsafePointer(scratch.baseAddress!), count: s.count))
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try number(b, &i))
        case UInt8(ascii: "t"):
            try literal(b, &i, "true"); return .bool(true)
        case UInt8(ascii: "f"):
            try literal(b, &i, "false"); return .bool(false)
        case UInt8(ascii: "n"):
            try literal(b, &i, "null"); return .failed(.wrongType)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            try skipNested(b, &i)
            return .failed(.wrongType)
        default:
            throw syntax(b, i, "expected a value")
        }
    }

    private func literal(_ b: UnsafeBufferPointer<UInt8>, _ i: inout Int, _ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count, UnsafeBufferPointer(rebasing: b[i..<(i + n)]).elementsEqual(UnsafeBufferPointer(start: word.utf8Start, count: n)) else {
            throw syntax(b, i, "expected a value")
        }
        i += n
    }

    /// Skips a nested object or array, validating its brackets and strings.
    private mutating func skipNested(_ b: UnsafeBufferPointer<UInt8>, _ i: inout Int) throws {
        var stack: [UInt8] = []
        while i < b.count {
            let c = b[i]
            switch c {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                if stack.count >= 512 { throw Reject(reason: "JSON nested more than 512 levels deep at column \(column(b, i))") }
                stack.append(c == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]"))
                i += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                guard stack.last == c else { throw syntax(b, i, "mismatched bracket") }
                stack.removeLast()
                i += 1
                if stack.isEmpty { return }
            case UInt8(ascii: "\""):
                let saved = used
                _ = try string(b, &i)
                used = saved
            default:
                i += 1
            }
        }
        throw syntax(b, i, "the nested value is not closed")
    }

    /// A JSON string; the result points into the line when it has no escapes,
    /// else into the scratch buffer. Invalid UTF-8 is rejected.
    private mutating func string(_ b: UnsafeBufferPointer<UInt8>, _ i: inout Int) throws -> UnsafeBufferPointer<UInt8> {
        let open = i
        i += 1
        let start = i
        // Plain bytes are the common case: eight at a time while no byte of
        // the word is `"`, `\\`, a control character or non-ASCII.
        if let base = b.baseAddress {
            let raw = UnsafeRawPointer(base)
            while i + 8 <= b.count {
                let w = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self).littleEndian
                let special = Self.specialBytes(w)
                if special != 0 {
                    i += special.trailingZeroBitCount >> 3
                    if b[i] == UInt8(ascii: "\"") {  // the usual end: no table needed
                        let s = UnsafeBufferPointer(rebasing: b[start..<i])
                        i += 1
                        return s
                    }
                    break
                }
                i += 8
            }
        }
        while i < b.count {
            // One table look-up per byte for the rest.
            if Self.plain[Int(b[i])] { i += 1; continue }
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                let s = UnsafeBufferPointer(rebasing: b[start..<i])
                i += 1
                return s
            }
            if c == UInt8(ascii: "\\") { return try escapedString(b, &i, from: start) }
            if c < 0x20 { throw syntax(b, i, "control character in a string (escape it)") }
            if c >= 0x80 { i = try utf8(b, i) } else { i += 1 }
        }
        throw syntax(b, open, "unterminated string")
    }

    /// High bit set in each byte of `w` that needs attention in a string;
    /// the lowest such byte is exact (higher ones may be false alarms,
    /// which only end the fast loop early).
    @inline(__always)
    static func specialBytes(_ w: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        @inline(__always) func zeroByte(_ x: UInt64) -> UInt64 { (x &- ones) & ~x & highs }
        let quote = zeroByte(w ^ (ones &* 0x22))
        let backslash = zeroByte(w ^ (ones &* 0x5C))
        let control = (w &- ones &* 0x20) & ~w & highs
        return quote | backslash | control | (w & highs)
    }

    private mutating func escapedString(_ b: UnsafeBufferPointer<UInt8>, _ i: inout Int, from start: Int) throws -> UnsafeBufferPointer<UInt8> {
        let outStart = used
        for k in start..<i { scratch[used] = b[k]; used += 1 }
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                return UnsafeBufferPointer(rebasing: scratch[outStart..<used])
            }
            if c < 0x20 { throw syntax(b, i, "control character in a string (escape it)") }
            if c != UInt8(ascii: "\\") {
                let next = c >= 0x80 ? try utf8(b, i) : i + 1
                for k in i..<next { scratch[used] = b[k]; used += 1 }
                i = next
                continue
            }
            guard i + 1 < b.count else { break }
            let e = b[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch[used] = e; used += 1
            case UInt8(ascii: "b"): scratch[used] = 0x08; used += 1
            case UInt8(ascii: "f"): scratch[used] = 0x0C; used += 1
            case UInt8(ascii: "n"): scratch[used] = 0x0A; used += 1
            case UInt8(ascii: "r"): scratch[used] = 0x0D; used += 1
            case UInt8(ascii: "t"): scratch[used] = 0x09; used += 1
            case UInt8(ascii: "u"): try unicodeEscape(b, &i)
            default: throw syntax(b, i - 1, "unknown escape")
            }
        }
        throw syntax(b, start - 1, "unterminated string")
    }

    /// `\uXXXX`, with surrogate pairs, written as UTF-8 (at most 4 bytes,
    /// never more than the 6 or 12 bytes of the escape).
    private mutating func unicodeEscape(_ b: UnsafeBufferPointer<UInt8>, _ i: inout Int) throws {
        func hex4() throws -> UInt32 {
            guard i + 4 <= b.count else { throw syntax(b, i, "expected 4 hex digits after \\u") }
            var v: UInt32 = 0
            for k in i..<(i + 4) {
                let c = b[k]
                let d: UInt32
                switch c {
                case 48...57: d = UInt32(c - 48)
                case 65...70: d = UInt32(c - 55)
                case 97...102: d = UInt32(c - 87)
                default: throw syntax(b, k, "expected a hex digit")
                }
                v = v << 4 | d
            }
            i += 4
            return v
        }
        var code = try hex4()
        if (0xD800...0xDBFF).contains(code) {
            guard i + 2 <= b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else {
                throw syntax(b, i, "unpaired surrogate in \\u escape")
            }
            i += 2
            let low = try hex4()
            guard (0xDC00...0xDFFF).contains(low) else { throw syntax(b, i - 4, "unpaired surrogate in \\u escape") }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00...0xDFFF).contains(code) {
            throw syntax(b, i - 4, "unpaired surrogate in \\u escape")
        }
        for byte in String(Character(UnicodeScalar(code)!)).utf8 { scratch[used] = byte; used += 1 }
    }

    /// Validates one UTF-8 sequence starting at `i`; returns the index after it.
    @inline(__always)
    private func utf8(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) throws -> Int {
        let c = b[i]
        let n: Int
        var min: UInt32
        var code: UInt32
        switch c {
        case 0xC2...0xDF: n = 2; min = 0x80; code = UInt32(c & 0x1F)
        case 0xE0...0xEF: n = 3; min = 0x800; code = UInt32(c & 0x0F)
        case 0xF0...0xF4: n = 4; min = 0x10000; code = UInt32(c & 0x07)
        default: throw Reject(reason: "invalid UTF-8 at column \(column(b, i))")
        }
        guard i + n <= b.count else { throw Reject(reason: "invalid UTF-8 at column \(column(b, i))") }
        for k in 1..<n {
            let cc = b[i + k]
            guard cc & 0xC0 == 0x80 else { throw Reject(reason: "invalid UTF-8 at column \(column(b, i))") }
            code = code << 6 | UInt32(cc & 0x3F)
        }
        guard code >= min, code <= 0x10FFFF, !(0xD800...0xDFFF).contains(code) else {
            throw Reject(reason: "invalid UTF-8 at column \(column(b, i))")
        }
        _ = min
        min = 0
        return i + n
    }

    // MARK: - Numbers

    /// Bytes that need no attention inside a string: not `"`, `\\`, a
    /// control character, or part of a multi-byte UTF-8 sequence.
    private static let plain: [Bool] = (0..<256).map { b in b >= 0x20 && b < 0x80 && b != 0x22 && b != 0x5C }

    private static let powersOf10: [Double] = (0...22).map { pow10($0) }
    private static func pow10(_ n: Int) -> Double { var x = 1.0; for _ in 0..<n { x *= 10 }; return x }

    /// JSON number grammar, exact: small mantissas take the fast path
    /// (exact in a double), anything else goes through `strtod`.
    private func number(_ b: UnsafeBufferPointer<UInt8>, _ i: inout Int) throws -> Double {
        let start = i
        var negative = false
        if b[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        var mantissa: UInt64 = 0
        var digits = 0
        var exponent = 0
        guard i < b.count, b[i] >= 48, b[i] <= 57 else { throw syntax(b, i, "expected a digit") }
        if b[i] == 48 {
            i += 1
            if i < b.count, b[i] >= 48, b[i] <= 57 { throw syntax(b, i, "a number cannot have a leading zero") }
        } else {
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 19 { mantissa = mantissa * 10 + UInt64(b[i] - 48); digits += 1 } else { exponent += 1 }
                i += 1
            }
        }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            guard i < b.count, b[i] >= 48, b[i] <= 57 else { throw syntax(b, i, "expected a digit after `.`") }
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 19 { mantissa = mantissa * 10 + UInt64(b[i] - 48); digits += 1; exponent -= 1 }
                i += 1
            }
        }
        var hasExponent = false
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            hasExponent = true
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            guard i < b.count, b[i] >= 48, b[i] <= 57 else { throw syntax(b, i, "expected a digit in the exponent") }
            while i < b.count, b[i] >= 48, b[i] <= 57 { i += 1 }
        }
        if !hasExponent, digits < 19, mantissa < (1 << 53), exponent >= -22, exponent <= 0 {
            let m = Double(mantissa)
            let v = exponent == 0 ? m : m / Self.powersOf10[-exponent]
            return negative ? -v : v
        }
        return try slowNumber(b, start, i)
    }

    private func slowNumber(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) throws -> Double {
        var text = Array(b[start..<end])
        text.append(0)
        let v = text.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { strtod($0, nil) }
        }
        guard v.isFinite else { throw Reject(reason: "number at column \(column(b, start)) is too large") }
        return v
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
