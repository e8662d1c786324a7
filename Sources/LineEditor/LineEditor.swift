/// The state of one line being edited: text, cursor, history. Keys go in;
/// what the caller must do comes out. No terminal I/O here, so every key's
/// behaviour is unit-tested.
public struct LineEditor: Sendable {
    public private(set) var text: [Character] = []
    public private(set) var cursor = 0
    public private(set) var history: [String]
    /// Index into `history` while browsing it with Up/Down.
    private var browsing: Int? = nil
    /// The line being typed before browsing started.
    private var draft: [Character] = []

    public enum Action: Equatable, Sendable {
        case none
        case redraw
        case submit(String)
        /// Ctrl-C: drop the line (and any statement being continued).
        case cancel
        /// Ctrl-D on an empty line.
        case endOfInput
        /// Tab: the caller looks up completions for `wordBeforeCursor`.
        case complete
        case clearScreen
    }

    public init(history: [String] = []) {
        self.history = history
    }

    public var line: String { String(text) }

    public mutating func handle(_ key: Key) -> Action {
        switch key {
        case .character(let c):
            text.insert(c, at: cursor)
            cursor += 1
        case .enter:
            let submitted = line
            let blank = submitted.allSatisfy { $0 == " " || $0 == "\t" }
            if !blank && history.last != submitted {
                history.append(submitted)
            }
            reset()
            return .submit(submitted)
        case .tab: return .complete
        case .backspace:
            guard cursor > 0 else { return .none }
            cursor -= 1
            text.remove(at: cursor)
        case .delete:
            guard cursor < text.count else { return .none }
            text.remove(at: cursor)
        case .endOfInput:
            if text.isEmpty { return .endOfInput }
            guard cursor < text.count else { return .none }
            text.remove(at: cursor)
        case .left: cursor = max(0, cursor - 1)
        case .right: cursor = min(text.count, cursor + 1)
        case .home: cursor = 0
        case .end: cursor = text.count
        case .wordLeft: cursor = wordStart(before: cursor)
        case .wordRight: cursor = wordEnd(after: cursor)
        case .deleteWordBackward:
            let start = wordStart(before: cursor)
            text.removeSubrange(start..<cursor)
            cursor = start
        case .killToEnd: text.removeSubrange(cursor..<text.count)
        case .killToStart:
            text.removeSubrange(0..<cursor)
            cursor = 0
        case .up: return recall(-1)
        case .down: return recall(+1)
        case .interrupt:
            reset()
            return .cancel
        case .clearScreen: return .clearScreen
        case .unknown: return .none
        }
        return .redraw
    }

    private mutating func reset() {
        text = []
        cursor = 0
        browsing = nil
        draft = []
    }

    /// Up/Down through history; past the newest entry comes the draft back.
    private mutating func recall(_ step: Int) -> Action {
        guard !history.isEmpty else { return .none }
        let current = browsing ?? history.count
        let next = current + step
        guard next >= 0 && next <= history.count else { return .none }
        if browsing == nil { draft = text }
        browsing = next == history.count ? nil : next
        text = next == history.count ? draft : Array(history[next])
        cursor = text.count
        return .redraw
    }

    private func isWord(_ c: Character) -> Bool { c.isLetter || c.isNumber || c == "_" }

    private func wordStart(before i: Int) -> Int {
        var j = i
        while j > 0 && !isWord(text[j - 1]) { j -= 1 }
        while j > 0 && isWord(text[j - 1]) { j -= 1 }
        return j
    }

    private func wordEnd(after i: Int) -> Int {
        var j = i
        while j < text.count && !isWord(text[j]) { j += 1 }
        while j < text.count && isWord(text[j]) { j += 1 }
        return j
    }

    /// The word being typed: letters, digits, `_` and a leading `:`.
    public var wordBeforeCursor: String {
        var j = cursor
        while j > 0 && (isWord(text[j - 1])) { j -= 1 }
        if j > 0 && text[j - 1] == ":" && (j == 1 || text[j - 2] == " ") { j -= 1 }
        return String(text[j..<cursor])
    }

    /// Completes the word before the cursor from `candidates`: the one
    /// match, or the longest prefix they share. Returns the candidates to
    /// list when nothing could be added.
    public mutating func complete(with candidates: [String]) -> [String] {
        let word = wordBeforeCursor
        let matches = candidates.filter { $0.hasPrefix(word) }
        guard let first = matches.first else { return [] }
        var common = first
        for m in matches.dropFirst() {
            while !m.hasPrefix(common) { common.removeLast() }
        }
        if matches.count == 1 { common += " " }
        guard common.count > word.count else { return matches.count > 1 ? matches : [] }
        let insertion = Array(common.dropFirst(word.count))
        text.insert(contentsOf: insertion, at: cursor)
        cursor += insertion.count
        return []
    }

    /// Escape sequences that redraw the line in place after `prompt`
    /// (which has `promptWidth` columns): carriage return, text, clear to
    /// end of line, cursor back to its column.
    public func render(prompt: String, promptWidth: Int) -> String {
        let column = promptWidth + cursor
        return "\r" + prompt + line + "\u{1B}[K" + "\r" + (column > 0 ? "\u{1B}[\(column)C" : "")
    }
}
