#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The key that names the person in each line of a stream and in each line
/// of the report: `citizen` (the contract's) unless `--person-key` says
/// `user`, `account` or `driver`. Like `type` and `time` it is not a field.
///
/// Its bytes live in memory that is never freed (one small allocation per
/// distinct name in a process), so the value is a few plain words (no
/// `String`) that the per-line path copies without reference counting.
public struct PersonKey: Sendable, Hashable, CustomStringConvertible {
    /// The key as written in the stream.
    public var name: String { String(decoding: raw.pointer, as: UTF8.self) }
    /// `{"NAME":"`, the start of a line that names the person first (the
    /// usual layout), which the look-ahead and the `--jobs` router read
    /// without parsing. Its first and last eight bytes as words.
    private let leading: Bytes
    /// The name's bytes, unescaped.
    private let raw: Bytes
    /// Its first eight bytes as `ByteTable.prefix` reads them.
    private let rawPrefix: UInt64
    private let leadingHead: UInt64
    private let leadingTail: UInt64

    /// Immortal bytes (see above); Sendable because they are never written
    /// after creation.
    private struct Bytes: @unchecked Sendable {
        let pointer: UnsafeBufferPointer<UInt8>
    }

    /// The contract's key.
    public static let citizen = PersonKey(validName: "citizen")

    /// Keys a stream's line already gives a meaning to.
    public static let reservedNames = ["type", "time", "id"]

    /// The key named `name`, or why it cannot be one.
    public static func named(_ name: String) -> Result<PersonKey, PersonKeyError> {
        if name.isEmpty { return .failure(PersonKeyError(description: "the person key must not be empty")) }
        if reservedNames.contains(name) {
            return .failure(PersonKeyError(description: "`\(name)` cannot be the person key: every line's `\(name)` has its own meaning"))
        }
        return .success(name == "citizen" ? .citizen : PersonKey(validName: name))
    }

    /// The same, also refused when `program` reads an event field of that
    /// name: the person key is the person's id, never a field.
    /// And refused when an output or attribute of the policy has the name:
    /// a report line would have that key twice.
    package static func named(_ name: String, for program: Program) -> Result<PersonKey, PersonKeyError> {
        named(name).flatMap { key in
            if key != .citizen, program.policy.fields.contains(name) {
                return .failure(PersonKeyError(description: "`\(name)` cannot be the person key: the policy reads `\(name)` as an event field"))
            }
            let extra = program.policy.outputs.contains { $0.name == name } ? "an output"
                : program.policy.attributes.contains { $0.name == name } ? "an attribute" : nil
            guard let extra, key != .citizen else { return .success(key) }
            return .failure(PersonKeyError(description: "`\(name)` cannot be the person key: the policy has \(extra) of that name, which every report line shows"))
        }
    }

    private init(validName name: String) {
        var pattern: [UInt8] = [UInt8(ascii: "{")]
        JSONWriter.appendQuoted(Array(name.utf8), to: &pattern)
        pattern += [UInt8(ascii: ":"), UInt8(ascii: "\"")]
        leading = Self.immortal(pattern)
        raw = Self.immortal(Array(name.utf8))
        rawPrefix = ByteTable.prefix(raw.pointer)
        leadingHead = Self.word(leading.pointer, at: 0)
        leadingTail = Self.word(leading.pointer, at: max(0, pattern.count - 8))
    }

    public var description: String { name }

    public static func == (a: PersonKey, b: PersonKey) -> Bool { a.raw.pointer.baseAddress == b.raw.pointer.baseAddress }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    /// How a report line starts: `{"citizen":`.
    var reportPrefix: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: leading.pointer.dropLast()) }

    /// The key quoted as JSON: `"citizen"`.
    var quoted: String { String(decoding: leading.pointer.dropFirst().dropLast(2), as: UTF8.self) }

    /// What the parser compares each key of a line with: the name's bytes
    /// and, for a name of up to eight bytes, the word that holds them.
    var matcher: Matcher { Matcher(bytes: raw.pointer, prefix: rawPrefix) }

    struct Matcher {
        let bytes: UnsafeBufferPointer<UInt8>
        let prefix: UInt64

        /// Whether a line's (unescaped) key is the person key.
        @inline(__always)
        func matches(_ key: UnsafeBufferPointer<UInt8>) -> Bool {
            guard key.count == bytes.count else { return false }
            if key.count <= 8 { return ByteTable.prefix(key) == prefix }
            return memcmp(key.baseAddress!, bytes.baseAddress!, key.count) == 0
        }
    }

    /// Where the id starts in a line that `leadingPerson` accepts.
    var leadingCount: Int { leading.pointer.count }

    /// The person of a line that starts `{"NAME":"` with an id free of
    /// escapes, found without parsing; nil for any other layout (the full
    /// parse then decides).
    @inline(__always)
    package func leadingPerson(_ line: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8>? {
        let n = leading.pointer.count
        guard line.count > n, let base = line.baseAddress else { return nil }
        if n <= 16 {  // two overlapping words cover 8...16 bytes (a pattern has at least 6)
            guard n >= 8 else { return memcmp(base, leading.pointer.baseAddress!, n) == 0 ? id(line, from: n) : nil }
            guard Self.word(base, at: 0) == leadingHead, Self.word(base, at: n - 8) == leadingTail else { return nil }
        } else {
            guard Self.word(base, at: 0) == leadingHead, memcmp(base, leading.pointer.baseAddress!, n) == 0 else { return nil }
        }
        return id(line, from: n)
    }

    /// The id a stream line names (its bytes, unescaped), or why it names
    /// none: what a line is partitioned by (`rules publish`), asked
    /// without a policy. The usual layout is read without parsing.
    package func person(in line: UnsafeBufferPointer<UInt8>) -> Result<[UInt8], PersonKeyError> {
        if let id = leadingPerson(line) { return .success(Array(id)) }
        let value: JSONValue
        do { value = try JSONValue.parse(String(decoding: line, as: UTF8.self)) } catch {
            return .failure(PersonKeyError(description: "not JSON (\(error))"))
        }
        guard case .object(let members) = value else { return .failure(PersonKeyError(description: "not a JSON object")) }
        let named = members.filter { $0.0 == name }
        guard let first = named.first else { return .failure(PersonKeyError(description: "no \(quoted) key")) }
        guard named.count == 1 else { return .failure(PersonKeyError(description: "duplicate key \(quoted)")) }
        guard case .string(let id) = first.1 else { return .failure(PersonKeyError(description: "\(quoted) is not a string")) }
        return .success(Array(id.utf8))
    }

    @inline(__always)
    private func id(_ line: UnsafeBufferPointer<UInt8>, from n: Int) -> UnsafeBufferPointer<UInt8>? {
        var i = n
        while i < line.count, line[i] != 0x22, line[i] != 0x5C { i += 1 }
        guard i < line.count, line[i] == 0x22, i > n else { return nil }
        return UnsafeBufferPointer(rebasing: line[n..<i])
    }

    @inline(__always)
    private static func word(_ p: UnsafePointer<UInt8>, at offset: Int) -> UInt64 {
        UnsafeRawPointer(p + offset).loadUnaligned(as: UInt64.self)
    }

    private static func word(_ b: UnsafeBufferPointer<UInt8>, at offset: Int) -> UInt64 {
        guard b.count >= offset + 8 else { return 0 }
        return word(b.baseAddress!, at: offset)
    }

    private static let lock = Lock()
    nonisolated(unsafe) private static var interned: [[UInt8]: Bytes] = [:]

    private static func immortal(_ bytes: [UInt8]) -> Bytes {
        lock.lock(); defer { lock.unlock() }
        if let known = interned[bytes] { return known }
        let memory = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: bytes.count)
        _ = memory.initialize(from: bytes)
        let made = Bytes(pointer: UnsafeBufferPointer(memory))
        interned[bytes] = made
        return made
    }
}

/// Why a name cannot be the person key.
public struct PersonKeyError: Error, Sendable, CustomStringConvertible {
    public let description: String
}
