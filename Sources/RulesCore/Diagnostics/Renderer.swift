/// Renders diagnostics for people:
///
///     citizen.rules:3:1: error: a condition on the person's state needs `while` [E0203]
///       |
///     3 | score < 600 → deny loans
///       | ^^^^^^^^^^^
///       = help: write `while score < 600 → deny loans`
///
/// The first line is the contract's `FILE:LINE:COL: error: MESSAGE`; the
/// stable code closes it. Colour only when asked (the CLI asks on a terminal
/// without NO_COLOR).
public struct DiagnosticRenderer {
    /// The files the spans point into.
    public var sources: SourceSet
    /// ANSI colours (for a terminal).
    public var color: Bool

    /// A renderer for diagnostics of `sources`.
    public init(sources: SourceSet, color: Bool = false) {
        self.sources = sources
        self.color = color
    }

    private func paint(_ s: String, _ code: String) -> String {
        color ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s
    }

    /// One diagnostic as `rules check` prints it: the line, the source with a caret, help and notes.
    public func render(_ d: Diagnostic) -> String {
        let (file, line, column) = sources.location(d.span)
        let label = d.severity == .error ? paint("error", "1;31") : paint("warning", "1;33")
        var out = "\(file):\(line):\(column): \(label): \(paint(d.message, "1")) [\(d.code.rawValue)]\n"
        out += snippet(d.span, caretColor: d.severity == .error ? "1;31" : "1;33")
        let pad = String(repeating: " ", count: gutterWidth(line))
        if let help = d.help { out += "\(pad)\(paint("= help:", "1;36")) \(help)\n" }
        for note in d.notes {
            let (nf, nl, nc) = sources.location(note.span)
            out += "\(pad)\(paint("= note:", "1;34")) \(nf):\(nl):\(nc): \(note.message)\n"
            out += snippet(note.span, caretColor: "1;34")
        }
        return out
    }

    /// Every diagnostic, one after another.
    public func render(_ diagnostics: [Diagnostic]) -> String {
        diagnostics.map(render).joined()
    }

    private func gutterWidth(_ line: Int) -> Int { String(line).count + 1 }

    /// The source line with a gutter and carets under the span (up to the
    /// end of that line). Tabs are shown as one space so carets line up.
    private func snippet(_ span: Span, caretColor: String) -> String {
        let file = sources.files[span.file]
        let line = file.line(of: span.start)
        let text = file.lineText(line).replacing("\t", with: " ")
        let startCol = file.column(of: span.start)
        let endLine = file.line(of: max(span.start, span.end - 1))
        let lineLength = text.unicodeScalars.count
        var endCol = endLine == line ? file.column(of: span.end) : lineLength + 1
        endCol = max(endCol, startCol + 1)
        let width = gutterWidth(line)
        let pad = String(repeating: " ", count: width)
        let bar = paint("|", "1;34")
        let (shown, from) = Self.clip(text, around: startCol - 1)
        let caretStart = startCol - 1 - from + (from > 0 ? 1 : 0)
        let caretCount = min(endCol - startCol, max(1, shown.unicodeScalars.count - caretStart))
        let carets = String(repeating: " ", count: caretStart) + paint(String(repeating: "^", count: caretCount), caretColor)
        return "\(pad)\(bar)\n\(paint(String(line).leftPadded(width - 1, with: " "), "1;34")) \(bar) \(shown)\n\(pad)\(bar) \(carets)\n"
    }

    /// Lines longer than this are shown as a window around the column.
    static let maxShownColumns = 120

    /// `text`, or a window of it around `column` (0-based) marked with `…`
    /// where it was cut; and the column the window starts at.
    static func clip(_ text: String, around column: Int) -> (String, Int) {
        let scalars = Array(text.unicodeScalars)
        guard scalars.count > maxShownColumns else { return (text, 0) }
        let from = max(0, min(column - maxShownColumns / 3, scalars.count - maxShownColumns))
        let to = min(scalars.count, from + maxShownColumns)
        var shown = String(String.UnicodeScalarView(scalars[from..<to]))
        if from > 0 { shown = "…" + shown }
        if to < scalars.count { shown += "…" }
        return (shown, from)
    }

    /// One JSON object per diagnostic, for tools.
    public func json(_ d: Diagnostic) -> String {
        let (file, line, column) = sources.location(d.span)
        let end = sources.location(Span(file: d.span.file, start: d.span.end, end: d.span.end))
        var s = "{\"file\":\(JSONWriter.quoted(file)),\"line\":\(line),\"column\":\(column),\"end_line\":\(end.line),\"end_column\":\(end.column)"
        s += ",\"severity\":\"\(d.severity.rawValue)\",\"code\":\"\(d.code.rawValue)\",\"message\":\(JSONWriter.quoted(d.message))"
        if let help = d.help { s += ",\"help\":\(JSONWriter.quoted(help))" }
        return s + "}"
    }
}
