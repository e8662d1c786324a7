/// Compact JSON output as the contract wants it: raw UTF-8, `/` not escaped,
/// control characters escaped.
package enum JSONWriter {
    /// A whole number's digits, with no `String` made on the way.
    package static func appendDecimal(_ n: Int, to out: inout [UInt8]) {
        if n < 0 { out.append(UInt8(ascii: "-")) }
        withDigits(of: UInt64(n.magnitude)) { out.append(contentsOf: $0) }
    }

    /// The decimal digits of `m`, written from the last one into a small
    /// buffer on the stack (a division by the constant 10 compiles to a
    /// multiplication), for `body` to copy.
    @inline(__always)
    static func withDigits<R>(of m: UInt64, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        var m = m, digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        return withUnsafeMutableBytes(of: &digits) { buffer in
            var k = 24
            repeat {
                k -= 1
                buffer[k] = UInt8(truncatingIfNeeded: 48 + m % 10)
                m /= 10
            } while m > 0
            return body(UnsafeBufferPointer(rebasing: buffer.bindMemory(to: UInt8.self)[k...]))
        }
    }

    /// Bytes that need no escape (the usual case: ids, names) are copied
    /// in one go.
    static func appendQuoted(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        if !bytes.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) {
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: bytes)
            out.append(UInt8(ascii: "\""))
            return
        }
        appendQuoted(bytes[...], to: &out)
    }

    static func appendQuoted<C: Collection>(_ bytes: C, to out: inout [UInt8]) where C.Element == UInt8 {
        out.append(UInt8(ascii: "\""))
        for b in bytes {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0..<0x20:
                out.append(contentsOf: Array("\\u00".utf8))
                let hex = Array("0123456789abcdef".utf8)
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    static func quoted<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        appendQuoted(bytes, to: &out)
        return out
    }

    static func quoted(_ s: String) -> String {
        String(decoding: quoted(Array(s.utf8)), as: UTF8.self)
    }
}

/// JSON string quoting for the command line's own outputs.
package enum JSONText {
    public static func quoted(_ s: String) -> String { JSONWriter.quoted(s) }

    /// Quotes raw input bytes; invalid UTF-8 becomes U+FFFD so the output
    /// stays valid JSON.
    public static func quotedBytes(_ bytes: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        JSONWriter.quoted(Array(String(decoding: bytes, as: UTF8.self).utf8))
    }
}
