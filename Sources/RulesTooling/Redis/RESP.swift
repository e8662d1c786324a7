import RulesCore

/// RESP, the Redis serialization protocol (version 2, which a server speaks
/// until a client asks for another): commands go out as arrays of bulk
/// strings, replies come back as one of five types, each announced by its
/// first byte and ended by CRLF.
///
///     +OK\r\n                simple string      -ERR reason\r\n   error
///     :42\r\n                integer            $5\r\nhello\r\n  bulk string
///     $-1\r\n  *-1\r\n       null               *2\r\n…           array
package enum RESPValue: Equatable, Sendable, CustomStringConvertible {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8])
    case null
    case array([RESPValue])

    /// The bytes of a bulk or simple string.
    package var bytes: [UInt8]? {
        switch self {
        case .bulk(let b): b
        case .simple(let s): Array(s.utf8)
        default: nil
        }
    }

    package var text: String? { bytes.map { String(decoding: $0, as: UTF8.self) } }

    package var description: String {
        switch self {
        case .simple(let s): "+\(s)"
        case .error(let e): "-\(e)"
        case .integer(let n): ":\(n)"
        case .bulk(let b): JSONText.quoted(String(decoding: b, as: UTF8.self))
        case .null: "(nil)"
        case .array(let items): "[" + items.map(\.description).joined(separator: ", ") + "]"
        }
    }
}

/// Encodes commands: `*N` then each argument as a bulk string, into one
/// buffer that a pipeline sends with one write.
package struct RESPWriter {
    package private(set) var bytes: [UInt8] = []

    package init() {}

    package var isEmpty: Bool { bytes.isEmpty }

    package mutating func removeAll() { bytes.removeAll(keepingCapacity: true) }

    /// A whole command of text arguments.
    package mutating func command(_ arguments: [String]) {
        header(arguments.count)
        for a in arguments { argument(a) }
    }

    /// The start of a command of `count` arguments (each then given).
    package mutating func header(_ count: Int) { small(UInt8(ascii: "*"), count) }

    package mutating func argument(_ text: String) {
        var text = text
        text.withUTF8 { argument(UnsafeRawBufferPointer($0)) }
    }

    package mutating func argument(_ raw: UnsafeRawBufferPointer) {
        small(UInt8(ascii: "$"), raw.count)
        bytes.append(bytes: raw)
        withUnsafeBytes(of: Self.lineEnd) { bytes.append(bytes: $0) }
    }

    /// Bytes already encoded (arguments written by another writer).
    package mutating func raw(_ encoded: UnsafeRawBufferPointer) {
        bytes.append(bytes: encoded)
    }

    package mutating func argument(_ array: [UInt8]) {
        array.withUnsafeBytes { argument($0) }
    }

    /// CR LF as it lies in memory.
    private static let lineEnd: UInt16 = UInt16(0x0D) | UInt16(0x0A) << 8

    /// `mark`, `n` in decimal and CR LF, made on the stack and appended at
    /// once: appended a byte at a time, each append is checked on its own
    /// (a changed line's two arguments cost hundreds of instructions so).
    private mutating func small(_ mark: UInt8, _ n: Int) {
        var head: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &head) { h in
            let p = h.baseAddress!.assumingMemoryBound(to: UInt8.self)
            p[0] = mark
            let k = 1 + Self.writeDecimal(UInt64(n), to: p + 1)
            p[k] = 0x0D
            p[k + 1] = 0x0A
            bytes.append(bytes: UnsafeRawBufferPointer(start: p, count: k + 2))
        }
    }

    /// `n` in decimal digits after `out`'s bytes (lengths here; a stream
    /// entry's id in `rules publish`).
    package static func appendDecimal(_ n: UInt64, to out: inout [UInt8]) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { d in
            let p = d.baseAddress!.assumingMemoryBound(to: UInt8.self)
            out.append(bytes: UnsafeRawBufferPointer(start: p, count: writeDecimal(n, to: p)))
        }
    }

    /// `n` in decimal digits at `p` (room for 20); how many.
    private static func writeDecimal(_ n: UInt64, to p: UnsafeMutablePointer<UInt8>) -> Int {
        var digits = 1, power: UInt64 = 10
        while digits < 20 && n >= power {
            digits += 1
            power = power &* 10
        }
        var rest = n
        for k in stride(from: digits - 1, through: 0, by: -1) {
            p[k] = 0x30 + UInt8(rest % 10)
            rest /= 10
        }
        return digits
    }
}

/// Reads replies from the bytes a connection received, as they arrive: a
/// reply cut anywhere is taken up again where it stopped (an array of a
/// million entries is not parsed again from its start for every chunk).
/// Bytes that are not RESP stop the reader for good, with the offset in
/// the connection's bytes and what was wrong.
package struct RESPReader {
    package struct Limits: Sendable {
        /// The largest bulk string (Redis's own `proto-max-bulk-len`).
        package var maxBulk = 512 << 20
        /// The most items an array may announce.
        package var maxItems = 1 << 24
        /// Arrays within arrays (a stream read is four deep).
        package var maxDepth = 32
        /// The longest simple string, error or number line.
        package var maxLine = 1 << 16
        package init() {}
    }

    package struct Malformed: Error, Equatable, CustomStringConvertible {
        /// Where in the connection's bytes (0 = its first).
        package let offset: Int
        package let reason: String
        package var description: String { "the server's reply is not RESP at byte \(offset): \(reason)" }
    }

    private let limits: Limits
    private var buffer: [UInt8] = []
    /// Where the next element starts in `buffer`.
    private var at = 0
    /// Bytes dropped from the front of `buffer` so far.
    private var dropped = 0
    /// Arrays begun and not yet whole, innermost last.
    private var open: [(remaining: Int, items: [RESPValue])] = []
    private var failure: Malformed? = nil

    package init(limits: Limits = Limits()) { self.limits = limits }

    /// Bytes received and not yet read as a whole reply.
    package var pending: Int { buffer.count - at }

    package mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        // Read bytes are dropped once they are most of the buffer, so that
        // it does not grow with the connection's life.
        if at > 0 && at >= buffer.count / 2 {
            buffer.removeSubrange(0..<at)
            dropped += at
            at = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next whole reply; nil when more bytes are needed.
    package mutating func next() throws(Malformed) -> RESPValue? {
        if let failure { throw failure }
        do {
            while true {
                guard let element = try element() else { return nil }
                guard let value = finish(element) else { continue }
                return value
            }
        } catch {
            failure = error
            throw error
        }
    }

    /// The next whole reply's bytes, as they came, without making values
    /// of them (a stream read's thousands of entries are then taken apart
    /// in place, `RESPCursor`); nil when more bytes are needed, and then
    /// taken up again where it stopped (a reply of a quarter of a megabyte
    /// comes in pieces: each is looked at once). Checked as `next()`
    /// checks, with the same limits. Not to be mixed with `next()` within
    /// one reply.
    package mutating func nextRaw() throws(Malformed) -> [UInt8]? {
        if let failure { throw failure }
        precondition(open.isEmpty, "nextRaw() within a reply next() began")
        let scan = rawScan ?? RawScan()
        var i = at + scan.offset, remaining = scan.remaining, depth = scan.depth
        var ends = scan.ends  // items left in each array open, innermost last
        do throws(Malformed) {
            while remaining > 0 || !ends.isEmpty {
                if remaining == 0 {
                    remaining = ends.removeLast()
                    depth -= 1
                    continue
                }
                // The common elements of a stream read — a length or a
                // count, then a bulk string whole in the buffer — read on
                // a fast path; anything else (a null, an error, a pause, a
                // limit passed, bytes that are not RESP) by the checks
                // below, which say what is wrong and where.
                if let (kind, n, next) = plainElement(at: i) {
                    if kind == UInt8(ascii: "*") {
                        if depth < limits.maxDepth && n <= limits.maxItems {
                            i = next
                            if n > 0 {
                                ends.append(remaining - 1)
                                remaining = n
                                depth += 1
                            } else {
                                remaining -= 1
                            }
                            continue
                        }
                    } else if kind == UInt8(ascii: ":") || n <= limits.maxBulk {
                        i = next
                        remaining -= 1
                        continue
                    }
                }
                // An element is counted once read whole: where a pause
                // leaves off, the next call starts it again.
                guard i < buffer.count, let line = try line(from: i + 1) else {
                    rawScan = RawScan(offset: i - at, remaining: remaining, depth: depth, ends: ends)
                    return nil
                }
                switch buffer[i] {
                case UInt8(ascii: "+"), UInt8(ascii: "-"):
                    i = line.upperBound + 2
                case UInt8(ascii: ":"):
                    _ = try integer(line, at: i + 1)
                    i = line.upperBound + 2
                case UInt8(ascii: "$"):
                    let n = try integer(line, at: i + 1)
                    if n != -1 {
                        guard n >= 0, n <= Int64(limits.maxBulk) else { throw fail(i + 1, "a bulk string of \(n) bytes (at most \(limits.maxBulk))") }
                        let to = line.upperBound + 2 + Int(n)
                        guard to + 2 <= buffer.count else {
                            rawScan = RawScan(offset: i - at, remaining: remaining, depth: depth, ends: ends)
                            return nil
                        }
                        guard buffer[to] == 0x0D, buffer[to + 1] == 0x0A else { throw fail(to, "a bulk string of \(n) bytes not followed by CRLF") }
                        i = to + 2
                    } else {
                        i = line.upperBound + 2
                    }
                case UInt8(ascii: "*"):
                    let n = try integer(line, at: i + 1)
                    i = line.upperBound + 2
                    if n != -1 {
                        guard n >= 0, n <= Int64(limits.maxItems) else { throw fail(line.lowerBound, "an array of \(n) items (at most \(limits.maxItems))") }
                        guard depth < limits.maxDepth else { throw fail(line.lowerBound - 1, "arrays nested more than \(limits.maxDepth) deep") }
                        if n > 0 {
                            ends.append(remaining - 1)
                            remaining = Int(n)
                            depth += 1
                            continue
                        }
                    }
                default:
                    throw fail(i, "a reply starts with \(Self.shown(buffer[i])), not one of + - : $ *")
                }
                remaining -= 1
            }
            rawScan = nil
            defer { at = i }
            return Array(buffer[at..<i])
        } catch {
            failure = error
            throw error
        }
    }

    /// The element at `i` when it is a `$`, `*` or `:` with a length of
    /// 1 to 18 plain digits and CRLF, and a bulk string's bytes and CRLF
    /// are all in the buffer: its kind, number, and where the next element
    /// starts. nil for anything else, which the full checks then read.
    @inline(__always)
    private func plainElement(at i: Int) -> (kind: UInt8, n: Int, next: Int)? {
        buffer.withUnsafeBufferPointer { b -> (UInt8, Int, Int)? in
            guard i + 3 < b.count else { return nil }
            let kind = b[i]
            guard kind == UInt8(ascii: "$") || kind == UInt8(ascii: "*") || kind == UInt8(ascii: ":") else { return nil }
            var j = i + 1, n = 0
            while j < b.count && j - i <= 18 {
                let d = b[j] &- 0x30
                if d >= 10 { break }
                n = n &* 10 &+ Int(d)
                j += 1
            }
            guard j > i + 1, j + 1 < b.count, b[j] == 0x0D, b[j + 1] == 0x0A else { return nil }
            guard kind == UInt8(ascii: "$") else { return (kind, n, j + 2) }
            let to = j + 2 + n
            guard to + 2 <= b.count, b[to] == 0x0D, b[to + 1] == 0x0A else { return nil }
            return (kind, n, to + 2)
        }
    }

    /// Where `nextRaw` stopped in a reply not yet whole: how far into it
    /// (from `at`, which stays its start, also when the buffer's front is
    /// dropped), and the items left at each depth.
    private struct RawScan {
        var offset = 0, remaining = 1, depth = 0
        var ends: [Int] = []
    }
    private var rawScan: RawScan? = nil

    /// What one element read gives: a value, or the start of an array.
    private enum Element {
        case value(RESPValue)
        case arrayStart(Int)
    }

    /// Puts `element` into the arrays open; the reply when it completes
    /// the outermost (or is one on its own).
    private mutating func finish(_ element: Element) -> RESPValue? {
        var value: RESPValue
        switch element {
        case .arrayStart(let count):
            open.append((count, []))
            open[open.count - 1].items.reserveCapacity(min(count, 1024))
            if count > 0 { return nil }
            value = .array(open.removeLast().items)
        case .value(let v): value = v
        }
        while !open.isEmpty {
            open[open.count - 1].items.append(value)
            open[open.count - 1].remaining -= 1
            if open[open.count - 1].remaining > 0 { return nil }
            value = .array(open.removeLast().items)
        }
        return value
    }

    /// One element at `at`, which then moves past it; nil (and `at` where
    /// it was) when its bytes have not all arrived.
    private mutating func element() throws(Malformed) -> Element? {
        guard at < buffer.count else { return nil }
        let start = at
        let kind = buffer[at]
        guard let line = try line(from: at + 1) else { return nil }
        switch kind {
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let text = String(decoding: buffer[line], as: UTF8.self)
            at = line.upperBound + 2
            return .value(kind == UInt8(ascii: "+") ? .simple(text) : .error(text))
        case UInt8(ascii: ":"):
            let n = try integer(line, at: start + 1)
            at = line.upperBound + 2
            return .value(.integer(n))
        case UInt8(ascii: "$"):
            let n = try integer(line, at: start + 1)
            if n == -1 { at = line.upperBound + 2; return .value(.null) }
            guard n >= 0, n <= Int64(limits.maxBulk) else { throw fail(start + 1, "a bulk string of \(n) bytes (at most \(limits.maxBulk))") }
            let from = line.upperBound + 2, to = from + Int(n)
            guard to + 2 <= buffer.count else { return nil }
            guard buffer[to] == 0x0D, buffer[to + 1] == 0x0A else { throw fail(to, "a bulk string of \(n) bytes not followed by CRLF") }
            at = to + 2
            return .value(.bulk(Array(buffer[from..<to])))
        case UInt8(ascii: "*"):
            let n = try integer(line, at: start + 1)
            if n == -1 { at = line.upperBound + 2; return .value(.null) }
            guard n >= 0, n <= Int64(limits.maxItems) else { throw fail(start + 1, "an array of \(n) items (at most \(limits.maxItems))") }
            guard open.count < limits.maxDepth else { throw fail(start, "arrays nested more than \(limits.maxDepth) deep") }
            at = line.upperBound + 2
            return .arrayStart(Int(n))
        default:
            throw fail(start, "a reply starts with \(Self.shown(kind)), not one of + - : $ *")
        }
    }

    /// The bytes from `from` up to the next CRLF (not included); nil when
    /// it has not arrived.
    private func line(from: Int) throws(Malformed) -> Range<Int>? {
        var i = from
        while i < buffer.count {
            if buffer[i] == 0x0D {
                guard i + 1 < buffer.count else { return nil }
                guard buffer[i + 1] == 0x0A else { throw fail(i + 1, "CR not followed by LF") }
                return from..<i
            }
            if buffer[i] == 0x0A { throw fail(i, "a line ends with LF alone, not CRLF") }
            i += 1
            if i - from > limits.maxLine { throw fail(from, "a line longer than \(limits.maxLine) bytes") }
        }
        return nil
    }

    private func integer(_ range: Range<Int>, at offset: Int) throws(Malformed) -> Int64 {
        var negative = false
        var digits = range
        if let first = digits.first, buffer[first] == UInt8(ascii: "-") {
            negative = true
            digits = digits.dropFirst()
        }
        guard !digits.isEmpty, digits.count <= 19 else { throw fail(offset, "expected a number, found \(Self.shown(range, in: buffer))") }
        var n: Int64 = 0
        for i in digits {
            let d = buffer[i] &- 0x30
            guard d < 10 else { throw fail(offset, "expected a number, found \(Self.shown(range, in: buffer))") }
            let (times, o1) = n.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(Int64(d))
            guard !o1, !o2 else { throw fail(offset, "a number too large: \(Self.shown(range, in: buffer))") }
            n = sum
        }
        return negative ? -n : n
    }

    private func fail(_ index: Int, _ reason: String) -> Malformed {
        Malformed(offset: dropped + index, reason: reason)
    }

    private static func shown(_ byte: UInt8) -> String {
        (0x21...0x7E).contains(byte) ? "`\(Character(Unicode.Scalar(byte)))`" : "byte 0x" + String(byte, radix: 16, uppercase: true)
    }

    private static func shown(_ range: Range<Int>, in buffer: [UInt8]) -> String {
        JSONText.quoted(String(decoding: buffer[range.prefix(40)], as: UTF8.self))
    }
}

/// Walks one reply's bytes (`RESPReader.nextRaw`) in place: arrays and bulk
/// strings as counts and ranges, nothing copied. For replies whose shape is
/// known (a stream read); anything else is `nil`. The bytes are the
/// caller's, for as long as it walks them (a stream read's thousands of
/// entries: plain memory, no checked array access per byte).
package struct RESPCursor {
    package let bytes: UnsafeBufferPointer<UInt8>
    package private(set) var at = 0

    package init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// The count of the array here (-1: a null array), or nil.
    package mutating func array() -> Int? { header(UInt8(ascii: "*")) }

    /// The bytes of the bulk string here, or nil.
    package mutating func bulk() -> Range<Int>? {
        guard let n = header(UInt8(ascii: "$")), n >= 0, at + n + 2 <= bytes.count else { return nil }
        defer { at += n + 2 }
        return at..<(at + n)
    }

    /// Whether a null (`*-1` or `$-1`) is here; then past it.
    package mutating func null() -> Bool {
        guard at + 5 <= bytes.count, bytes[at] == UInt8(ascii: "*") || bytes[at] == UInt8(ascii: "$"),
              bytes[at + 1] == UInt8(ascii: "-"), bytes[at + 2] == UInt8(ascii: "1"), bytes[at + 3] == 0x0D else { return false }
        at += 5
        return true
    }

    package var atEnd: Bool { at == bytes.count }

    /// `KIND` + a decimal + CRLF: the decimal (the reader checked the form).
    private mutating func header(_ kind: UInt8) -> Int? {
        guard at < bytes.count, bytes[at] == kind else { return nil }
        var i = at + 1, n = 0, negative = false
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        while i < bytes.count, bytes[i] != 0x0D {
            n = n &* 10 &+ Int(bytes[i] &- 0x30)
            i += 1
        }
        at = i + 2
        return negative ? -n : n
    }
}
