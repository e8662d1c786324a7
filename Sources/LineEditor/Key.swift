/// A key press, decoded from the bytes a terminal sends.
public enum Key: Equatable, Sendable {
    case character(Character)
    case enter, tab, backspace, delete
    case left, right, up, down, home, end
    case wordLeft, wordRight
    case deleteWordBackward, killToEnd, killToStart
    case interrupt      // Ctrl-C
    case endOfInput     // Ctrl-D
    case clearScreen    // Ctrl-L
    case unknown
}

/// Turns terminal input bytes into keys: UTF-8 characters, control keys,
/// and the escape sequences of xterm-compatible terminals (arrows, Home/End,
/// Delete, Ctrl- and Alt-arrows, Alt-b/f for word jumps).
public struct KeyDecoder: Sendable {
    private var pending: [UInt8] = []

    public init() {}

    /// True while an escape sequence or a UTF-8 character is incomplete.
    public var isPending: Bool { !pending.isEmpty }

    public mutating func feed(_ bytes: [UInt8]) -> [Key] {
        var keys: [Key] = []
        for b in bytes { if let k = feed(b) { keys.append(k) } }
        return keys
    }

    /// A lone Escape that no sequence followed (the caller's read timed out).
    public mutating func flush() -> Key? {
        defer { pending = [] }
        return pending.isEmpty ? nil : .unknown
    }

    public mutating func feed(_ byte: UInt8) -> Key? {
        if pending.isEmpty {
            switch byte {
            case 0x1B: pending = [byte]; return nil
            case 0x0D, 0x0A: return .enter
            case 0x09: return .tab
            case 0x7F, 0x08: return .backspace
            case 0x01: return .home
            case 0x05: return .end
            case 0x02: return .left
            case 0x06: return .right
            case 0x10: return .up
            case 0x0E: return .down
            case 0x03: return .interrupt
            case 0x04: return .endOfInput
            case 0x0B: return .killToEnd
            case 0x15: return .killToStart
            case 0x17: return .deleteWordBackward
            case 0x0C: return .clearScreen
            case 0x00..<0x20: return .unknown
            case 0x20..<0x80: return .character(Character(UnicodeScalar(byte)))
            default: pending = [byte]; return completeUTF8()
            }
        }
        pending.append(byte)
        return pending[0] == 0x1B ? completeEscape() : completeUTF8()
    }

    private mutating func completeUTF8() -> Key? {
        let lead = pending[0]
        let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
        guard pending.count >= length else { return nil }
        defer { pending = [] }
        guard let s = String(validating: pending, as: UTF8.self), let c = s.first else { return .unknown }
        return .character(c)
    }

    private mutating func completeEscape() -> Key? {
        let p = pending
        if p.count == 2 {
            switch p[1] {
            case UInt8(ascii: "["), UInt8(ascii: "O"): return nil
            case UInt8(ascii: "b"): pending = []; return .wordLeft
            case UInt8(ascii: "f"): pending = []; return .wordRight
            case 0x7F: pending = []; return .deleteWordBackward
            default: pending = []; return .unknown
            }
        }
        // CSI or SS3: parameters, then a final byte in 0x40...0x7E.
        let last = p[p.count - 1]
        guard last >= 0x40 && last <= 0x7E else {
            if p.count > 16 { pending = []; return .unknown }
            return nil
        }
        pending = []
        let params = String(decoding: p[2..<(p.count - 1)], as: UTF8.self)
        let ctrl = params.hasSuffix(";5") || params.hasSuffix(";3")
        switch last {
        case UInt8(ascii: "A"): return .up
        case UInt8(ascii: "B"): return .down
        case UInt8(ascii: "C"): return ctrl ? .wordRight : .right
        case UInt8(ascii: "D"): return ctrl ? .wordLeft : .left
        case UInt8(ascii: "H"): return .home
        case UInt8(ascii: "F"): return .end
        case UInt8(ascii: "~"):
            switch params {
            case "1", "7": return .home
            case "4", "8": return .end
            case "3": return .delete
            default: return .unknown
            }
        default: return .unknown
        }
    }
}
