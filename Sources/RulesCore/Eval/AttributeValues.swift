#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How an attribute's value (`attribute region = "north"`) sits in one word
/// of a person's row, and of a line state: a number as its bits (`-0` as
/// `0`, so that equal values are equal words), a bool as 0 or 1, a string
/// as the address of its bytes in `StringPool` (equal strings, one
/// address). One word per attribute keeps the row flat, and a line state
/// compared word by word.
enum AttributeWord {
    static func encode(_ v: Value, as type: ValueType) -> Int64? {
        switch (v, type) {
        case (.number(let x), .number), (.number(let x), .any): return Int64(bitPattern: (x == 0 ? 0 : x).bitPattern)
        case (.bool(let b), .bool): return b ? 1 : 0
        case (.string(let s), .string): return StringPool.shared.intern(UnsafeBufferPointer(start: s.base, count: s.count))
        default: return nil
        }
    }

    static func decode(_ word: Int64, as type: ValueType) -> Value {
        switch type {
        case .bool: return .bool(word != 0)
        case .string: return .string(StringPool.bytes(word))
        default: return .number(Double(bitPattern: UInt64(bitPattern: word)))
        }
    }

    /// A constant start value (the checker made it one).
    static func start(_ ir: IR, as type: ValueType) -> Int64 {
        switch ir {
        case .number(let x): return encode(.number(x), as: .number)!
        case .bool(let b): return b ? 1 : 0
        case .string(let s):
            var bytes = Array(s.utf8)
            return bytes.withUnsafeMutableBufferPointer { StringPool.shared.intern(UnsafeBufferPointer($0)) }
        default: return 0
        }
    }

    /// The value as JSON (the report, the trail).
    static func json(_ word: Int64, as type: ValueType) -> [UInt8] {
        switch type {
        case .bool: return Array((word != 0 ? "true" : "false").utf8)
        case .string: return JSONWriter.quoted(StringPool.bytes(word).buffer)
        default: return Array(Arithmetic.format(Double(bitPattern: UInt64(bitPattern: word))).utf8)
        }
    }

    /// The value as the language writes it (`"north"`, `18`, `true`).
    static func text(_ word: Int64, as type: ValueType) -> String {
        String(decoding: json(word, as: type), as: UTF8.self)
    }
}

/// Every string an attribute has held, once, at an address that never
/// changes and is never freed: a person's row and a published line state
/// hold the address, and the service renders lines from them on other
/// threads, after the engine that set them may be gone. Memory grows with
/// the distinct strings ever set, not with people or events.
final class StringPool: @unchecked Sendable {
    static let shared = StringPool()
    private let lock = Lock()
    /// By bytes: the address of their copy (a length word, then the bytes).
    private var addresses: [[UInt8]: Int64] = [:]

    /// The address of the pooled copy of `bytes`.
    func intern(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64 {
        let key = Array(bytes)
        return lock.locked {
            if let known = addresses[key] { return known }
            let raw = UnsafeMutableRawPointer.allocate(byteCount: 8 + key.count, alignment: 8)
            raw.storeBytes(of: key.count, as: Int.self)
            key.withUnsafeBytes { if let source = $0.baseAddress { (raw + 8).copyMemory(from: source, byteCount: key.count) } }
            let address = Int64(Int(bitPattern: raw))
            addresses[key] = address
            return address
        }
    }

    /// The bytes at a pooled address.
    static func bytes(_ address: Int64) -> ByteString {
        let raw = UnsafeRawPointer(bitPattern: Int(address))!
        return ByteString(base: (raw + 8).assumingMemoryBound(to: UInt8.self), count: raw.load(as: Int.self))
    }
}

extension ByteString {
    var buffer: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: base, count: count) }
}
