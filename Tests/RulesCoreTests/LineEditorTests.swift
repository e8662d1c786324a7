import LineEditor
import Testing

@Suite("Key decoding")
struct KeyDecoderTests {
    static let table: [([UInt8], [Key])] = [
        (Array("ab".utf8), [.character("a"), .character("b")]),
        (Array("→".utf8), [.character("→")]),
        ([0x0D], [.enter]), ([0x09], [.tab]), ([0x7F], [.backspace]), ([0x03], [.interrupt]), ([0x04], [.endOfInput]),
        ([0x01, 0x05, 0x0B, 0x15, 0x17, 0x0C], [.home, .end, .killToEnd, .killToStart, .deleteWordBackward, .clearScreen]),
        (Array("\u{1B}[A\u{1B}[B\u{1B}[C\u{1B}[D".utf8), [.up, .down, .right, .left]),
        (Array("\u{1B}[H\u{1B}[F\u{1B}OH\u{1B}OF".utf8), [.home, .end, .home, .end]),
        (Array("\u{1B}[1~\u{1B}[4~\u{1B}[3~\u{1B}[7~\u{1B}[8~".utf8), [.home, .end, .delete, .home, .end]),
        (Array("\u{1B}[1;5C\u{1B}[1;5D\u{1B}f\u{1B}b".utf8), [.wordRight, .wordLeft, .wordRight, .wordLeft]),
        (Array("\u{1B}[99~x".utf8), [.unknown, .character("x")]),
    ]

    @Test(arguments: table)
    func decode(_ bytes: [UInt8], _ keys: [Key]) {
        var d = KeyDecoder()
        #expect(d.feed(bytes) == keys)
        #expect(!d.isPending)
    }

    @Test("sequences and characters split across reads")
    func split() {
        var d = KeyDecoder()
        #expect(d.feed([0x1B]) == [])
        #expect(d.isPending)
        #expect(d.feed([UInt8(ascii: "[")]) == [])
        #expect(d.feed([UInt8(ascii: "D")]) == [.left])
        let arrow = Array("→".utf8)
        #expect(d.feed([arrow[0]]) == [])
        #expect(d.feed(Array(arrow[1...])) == [.character("→")])
        #expect(d.feed([0x1B]) == [])
        #expect(d.flush() == .unknown)
        #expect(!d.isPending)
    }
}

@Suite("Line editor")
struct LineEditorTests {
    static func type(_ text: String, into e: inout LineEditor) {
        for c in text { _ = e.handle(.character(c)) }
    }

    @Test("typing, moving and deleting")
    func editing() {
        var e = LineEditor()
        Self.type("speding → -5", into: &e)
        #expect(e.line == "speding → -5" && e.cursor == 12)
        _ = e.handle(.home)
        for _ in 0..<3 { _ = e.handle(.right) }
        _ = e.handle(.character("e"))
        #expect(e.line == "speeding → -5")
        _ = e.handle(.end)
        _ = e.handle(.backspace)
        _ = e.handle(.character("9"))
        #expect(e.line == "speeding → -9")
        _ = e.handle(.home)
        _ = e.handle(.delete)
        #expect(e.line == "peeding → -9" && e.cursor == 0)
        #expect(e.handle(.left) == .redraw && e.cursor == 0)
        #expect(e.handle(.backspace) == .none)
    }

    @Test("word jumps and kills")
    func words() {
        var e = LineEditor()
        Self.type("unpaid debt → deny travel", into: &e)
        _ = e.handle(.wordLeft)
        #expect(e.cursor == 19)
        _ = e.handle(.wordLeft)
        #expect(e.cursor == 14)
        _ = e.handle(.wordLeft)
        #expect(e.cursor == 7)
        _ = e.handle(.wordRight)
        #expect(e.cursor == 11)
        _ = e.handle(.deleteWordBackward)
        #expect(e.line == "unpaid  → deny travel" && e.cursor == 7)
        _ = e.handle(.killToEnd)
        #expect(e.line == "unpaid ")
        _ = e.handle(.killToStart)
        #expect(e.line == "" && e.cursor == 0)
    }

    @Test("Enter submits and remembers; Up and Down walk history and come back to the draft")
    func history() {
        var e = LineEditor(history: ["old one"])
        Self.type("first", into: &e)
        #expect(e.handle(.enter) == .submit("first"))
        #expect(e.line == "")
        Self.type("second", into: &e)
        #expect(e.handle(.enter) == .submit("second"))
        #expect(e.history == ["old one", "first", "second"])
        Self.type("draft", into: &e)
        _ = e.handle(.up)
        #expect(e.line == "second")
        _ = e.handle(.up); _ = e.handle(.up)
        #expect(e.line == "old one")
        #expect(e.handle(.up) == .none)
        _ = e.handle(.down); _ = e.handle(.down); _ = e.handle(.down)
        #expect(e.line == "draft" && e.cursor == 5)
        #expect(e.handle(.enter) == .submit("draft"))
        // Blank lines and repeats are not remembered twice.
        #expect(e.handle(.enter) == .submit(""))
        Self.type("draft", into: &e)
        _ = e.handle(.enter)
        #expect(e.history.suffix(2) == ["second", "draft"])
    }

    @Test("Ctrl-C cancels the line; Ctrl-D leaves only on an empty line")
    func interrupts() {
        var e = LineEditor()
        Self.type("half a rule", into: &e)
        #expect(e.handle(.interrupt) == .cancel)
        #expect(e.line == "")
        #expect(e.handle(.endOfInput) == .endOfInput)
        Self.type("ab", into: &e)
        _ = e.handle(.home)
        #expect(e.handle(.endOfInput) == .redraw)
        #expect(e.line == "b")
    }

    @Test("Tab completes the one match, the common prefix, or lists the choices")
    func completion() {
        var e = LineEditor()
        Self.type("2026-01-05 alice: unp", into: &e)
        #expect(e.handle(.tab) == .complete)
        #expect(e.wordBeforeCursor == "unp")
        #expect(e.complete(with: ["unpaid_debt", "speeding"]) == [])
        #expect(e.line == "2026-01-05 alice: unpaid_debt ")

        var f = LineEditor()
        Self.type(":s", into: &f)
        #expect(f.wordBeforeCursor == ":s")
        #expect(f.complete(with: [":state", ":save"]) == [":state", ":save"])
        #expect(f.line == ":s")
        Self.type("t", into: &f)
        #expect(f.complete(with: [":state", ":save"]) == [])
        #expect(f.line == ":state ")

        var g = LineEditor()
        Self.type("while low", into: &g)
        #expect(g.complete(with: ["low_trust", "low_income"]) == [])
        #expect(g.line == "while low_")
    }

    @Test("redrawing puts the cursor back where it is")
    func render() {
        var e = LineEditor()
        Self.type("abc", into: &e)
        _ = e.handle(.left)
        #expect(e.render(prompt: "rules> ", promptWidth: 7) == "\rrules> abc\u{1B}[K\r\u{1B}[9C")
    }
}
