import RulesCore

/// `rules lsp`: the Language Server Protocol's messages, without the
/// transport (the command line frames them on stdin/stdout). Each message in
/// gives the messages out: responses, and diagnostics when a document
/// changes.
///
/// Documents are kept whole (full sync) and re-checked on every change: the
/// checker is fast enough (a 2,000-rule file in well under 50 ms, measured by
/// `LanguageServerTests`). Positions are LSP's: 0-based lines, UTF-16
/// characters.
package struct LanguageServer: Sendable {
    public private(set) var shutdownRequested = false
    public private(set) var exitRequested = false
    private var documents: [String: Analysis] = [:]

    public init() {}

    /// The messages that answer `message`.
    public mutating func handle(_ message: JSONValue) -> [JSONValue] {
        let method = message["method"]?.string ?? ""
        let id = message["id"]
        let params = message["params"] ?? .null
        func reply(_ result: JSONValue) -> [JSONValue] {
            guard let id else { return [] }
            return [.object([("jsonrpc", .string("2.0")), ("id", id), ("result", result)])]
        }
        switch method {
        case "initialize": return reply(Self.capabilities)
        case "initialized", "$/cancelRequest", "textDocument/didSave", "workspace/didChangeConfiguration": return []
        case "shutdown":
            shutdownRequested = true
            return reply(.null)
        case "exit":
            exitRequested = true
            return []
        case "textDocument/didOpen":
            guard let doc = params["textDocument"], let uri = doc["uri"]?.string, let text = doc["text"]?.string else { return [] }
            return update(uri, text)
        case "textDocument/didChange":
            guard let uri = params["textDocument"]?["uri"]?.string,
                  let text = params["contentChanges"]?.array?.last?["text"]?.string else { return [] }
            return update(uri, text)
        case "textDocument/didClose":
            guard let uri = params["textDocument"]?["uri"]?.string else { return [] }
            documents[uri] = nil
            return [Self.publish(uri, [])]
        case "textDocument/hover", "textDocument/definition", "textDocument/references",
             "textDocument/formatting", "textDocument/completion", "textDocument/documentSymbol":
            guard let uri = params["textDocument"]?["uri"]?.string, let analysis = documents[uri] else { return reply(.null) }
            let position = params["position"].flatMap { analysis.offset(of: $0) }
            switch method {
            case "textDocument/hover": return reply(position.flatMap { analysis.hover(at: $0) } ?? .null)
            case "textDocument/definition": return reply(position.flatMap { analysis.definition(at: $0) } ?? .null)
            case "textDocument/references":
                let withDeclaration = params["context"]?["includeDeclaration"] != .bool(false)
                return reply(position.map { analysis.references(at: $0, withDeclaration: withDeclaration) } ?? .array([]))
            case "textDocument/formatting": return reply(analysis.formatting())
            case "textDocument/completion": return reply(analysis.completion())
            default: return reply(analysis.symbols())
            }
        default:
            guard let id else { return [] }  // an unknown notification needs no answer
            return [.object([("jsonrpc", .string("2.0")), ("id", id),
                             ("error", .object([("code", .number(-32601)), ("message", .string("method not found: \(method)"))]))])]
        }
    }

    private mutating func update(_ uri: String, _ text: String) -> [JSONValue] {
        let analysis = Analysis(uri: uri, text: text)
        documents[uri] = analysis
        return [Self.publish(uri, analysis.diagnostics())]
    }

    static func publish(_ uri: String, _ diagnostics: [JSONValue]) -> JSONValue {
        .object([("jsonrpc", .string("2.0")), ("method", .string("textDocument/publishDiagnostics")),
                 ("params", .object([("uri", .string(uri)), ("diagnostics", .array(diagnostics))]))])
    }

    static let capabilities: JSONValue = .object([
        ("capabilities", .object([
            ("textDocumentSync", .number(1)),  // full
            ("hoverProvider", .bool(true)),
            ("definitionProvider", .bool(true)),
            ("referencesProvider", .bool(true)),
            ("documentFormattingProvider", .bool(true)),
            ("documentSymbolProvider", .bool(true)),
            ("completionProvider", .object([("triggerCharacters", .array([]))])),
        ])),
        ("serverInfo", .object([("name", .string("rules")), ("version", .string("0.1"))])),
    ])
}

/// One document, checked, with its names indexed by what they refer to:
/// the checker's resolution table (`NameUse`), not a guess of its own.
struct Analysis: Sendable {
    typealias Kind = NameUse.Kind
    typealias Occurrence = NameUse
    typealias Role = NameUse.Role

    let uri: String
    let source: SourceFile
    /// The document's index among the policy's files (`use`d files come
    /// before the file that uses them).
    let file: Int
    let result: CompileResult
    let statements: [Statement]
    let occurrences: [Occurrence]

    /// A document on disk is checked with the files it `use`s, read from
    /// disk; its own text is the editor's, saved or not.
    init(uri: String, text: String) {
        self.uri = uri
        var compiled: CompileResult? = nil
        if uri.hasPrefix("file://"), let path = Self.percentDecoded(uri.dropFirst(7)) {
            let bytes = Array(text.utf8), disk = PolicyLoader.files
            let loader = PolicyLoader(read: { $0 == path ? .success(bytes) : disk.read($0) }, canonical: disk.canonical)
            if case .success(let r) = PolicyCompiler.compile(paths: [path], loader: loader, buildProgram: false) { compiled = r }
        }
        let result = compiled ?? PolicyCompiler.compile(SourceSet([SourceFile(name: uri, text: text)]), buildProgram: false)
        let file = result.entries.first ?? 0
        self.result = result
        self.file = file
        source = result.sources.files[file]
        statements = result.statements.filter { $0.span.file == file }
        // Names in every file of the policy: hover and definitions reach
        // into the files this one uses.
        occurrences = result.checked?.nameUses ?? []
    }

    /// A `file://` URI's path: `%XX` escapes decoded (RFC 3986); nil when
    /// an escape is cut or the bytes are not UTF-8.
    static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var rest = text.utf8[...]
        while let byte = rest.popFirst() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard rest.count >= 2, let high = hexValue(rest.removeFirst()), let low = hexValue(rest.removeFirst()) else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The URI of one of the policy's files.
    func uri(of fileIndex: Int) -> String {
        fileIndex == file ? uri : "file://" + result.sources.files[fileIndex].name
    }

    // MARK: - Positions

    /// The byte offset of an LSP position (0-based line, UTF-16 character).
    func offset(of position: JSONValue) -> Int? {
        guard let line = position["line"]?.int, let character = position["character"]?.int, line >= 0 else { return nil }
        guard line < source.lineStarts.count else { return source.bytes.count }
        var i = source.lineStarts[line], units = 0
        while i < source.bytes.count, source.bytes[i] != 0x0A, units < character {
            let b = source.bytes[i]
            let length = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
            units += length == 4 ? 2 : 1
            i += length
        }
        return i
    }

    func position(of offset: Int, in f: SourceFile? = nil) -> JSONValue {
        let f = f ?? source
        let line = f.line(of: offset) - 1
        let start = f.lineStarts[line]
        let units = String(decoding: f.bytes[start..<min(offset, f.bytes.count)], as: UTF8.self).utf16.count
        return .object([("line", .number(Double(line))), ("character", .number(Double(units)))])
    }

    func range(_ span: Span) -> JSONValue {
        let f = span.file < result.sources.files.count ? result.sources.files[span.file] : source
        return .object([("start", position(of: span.start, in: f)), ("end", position(of: max(span.start, span.end), in: f))])
    }

    func location(_ span: Span) -> JSONValue {
        .object([("uri", .string(uri(of: span.file))), ("range", range(span))])
    }

    // MARK: - Features

    func diagnostics() -> [JSONValue] {
        result.diagnostics.filter { $0.span.file == file }.map { d in
            var message = d.message
            if let help = d.help { message += "\n" + help }
            return .object([
                ("range", range(d.span)),
                ("severity", .number(d.severity == .error ? 1 : 2)),
                ("code", .string(d.code.rawValue)),
                ("source", .string("rules")),
                ("message", .string(message)),
            ])
        }
    }

    func occurrence(at offset: Int) -> Occurrence? {
        occurrences.first { $0.span.file == file && $0.span.start <= offset && offset <= $0.span.end }
    }

    func definition(at offset: Int) -> JSONValue? {
        guard let o = occurrence(at: offset) else { return nil }
        let same = occurrences.filter { $0.name == o.name && $0.kind == o.kind }
        let target = same.first { $0.role == .declaration } ?? same.first { $0.role == .set } ?? same.first
        return target.map { location($0.span) }
    }

    func references(at offset: Int, withDeclaration: Bool) -> JSONValue {
        guard let o = occurrence(at: offset) else { return .array([]) }
        return .array(occurrences.filter { $0.name == o.name && $0.kind == o.kind && (withDeclaration || $0.role != .declaration) }
            .map { location($0.span) })
    }

    func hover(at offset: Int) -> JSONValue? {
        guard let o = occurrence(at: offset) else { return nil }
        let same = occurrences.filter { $0.name == o.name && $0.kind == o.kind }
        let shown = o.name.replacing("_", with: " ")
        var text = "**\(o.kind.rawValue)** `\(shown)`\n"
        func lines(_ role: Role) -> [String] {
            var seen = Set<[Int]>()
            return same.filter { $0.role == role }.compactMap { occ in
                let f = result.sources.files[occ.span.file]
                let line = f.line(of: occ.span.start)
                guard seen.insert([occ.span.file, line]).inserted else { return nil }
                let place = occ.span.file == file ? "line \(line)" : "\(f.name):\(line)"
                return "- \(place): `\(f.lineText(line).trimmingCharacters(in: " \t"))`"
            }
        }
        switch o.kind {
        case .flag, .privilege:
            let set = lines(.set), lift = lines(.lift), read = lines(.read)
            text += "\nset by:\n" + (set.isEmpty ? "- no rule" : set.joined(separator: "\n")) + "\n"
            if !lift.isEmpty { text += "\nlifted by:\n" + lift.joined(separator: "\n") + "\n" }
            text += "\nread by:\n" + (read.isEmpty ? "- no rule" : read.joined(separator: "\n")) + "\n"
        case .reason:
            text = "**reason** `\(shown)` (of denials: `deny P because \(shown)`, lifted by `allow P because \(shown)`)\n"
            let set = lines(.set), lift = lines(.lift)
            text += "\ndenied for it by:\n" + (set.isEmpty ? "- no rule" : set.joined(separator: "\n")) + "\n"
            text += "\nlifted by:\n" + (lift.isEmpty ? "- no rule" : lift.joined(separator: "\n")) + "\n"
        case .attribute:
            if let a = result.checked?.attributes.first(where: { $0.name == o.name }) {
                text = "**attribute** `\(shown)` (a \(a.type.rawValue) per person, in the report as `\(o.name)`)\n"
            }
            text += "\n" + lines(.declaration).joined(separator: "\n") + "\n"
            let set = lines(.set), read = lines(.read)
            text += "\nset by:\n" + (set.isEmpty ? "- no rule" : set.joined(separator: "\n")) + "\n"
            text += "\nread by:\n" + (read.isEmpty ? "- no rule" : read.joined(separator: "\n")) + "\n"
        case .event:
            let declared = lines(.declaration)
            text += "\n" + (declared.isEmpty ? "not declared (any fields)" : "declared:\n" + declared.joined(separator: "\n")) + "\n"
            text += "\nrules:\n" + (lines(.read).isEmpty ? "- no rule" : lines(.read).joined(separator: "\n")) + "\n"
        case .group:
            let members = (result.checked?.groups[o.name] ?? []).compactMap { result.checked?.events[$0].name.replacing("_", with: " ") }
            text = "**event group** `\(shown)`\n\n" + lines(.declaration).joined(separator: "\n") + "\n"
            text += "\nany of: " + (members.isEmpty ? "(an error in its definition)" : members.map { "`\($0)`" }.joined(separator: ", ")) + "\n"
            text += "\nused in:\n" + (lines(.read).isEmpty ? "- no rule" : lines(.read).joined(separator: "\n")) + "\n"
        case .constant, .field:
            if result.checked?.outputs.contains(where: { $0.name == o.name }) == true {
                text = "**output** `\(shown)` (per person, in the report as `\(o.name)`)\n"
            } else if result.checked?.personValues.contains(o.name) == true {
                text = "**value** `\(shown)` (per person, read as of each use)\n"
            }
            let declared = lines(.declaration)
            if !declared.isEmpty { text += "\n" + declared.joined(separator: "\n") + "\n" }
            text += "\nused in:\n" + (lines(.read).isEmpty ? "- no rule" : lines(.read).joined(separator: "\n")) + "\n"
        }
        return .object([("contents", .object([("kind", .string("markdown")), ("value", .string(text))])),
                        ("range", range(o.span))])
    }

    func formatting() -> JSONValue {
        guard case .formatted(let text) = Formatter.format(source), Array(text.utf8) != source.bytes else { return .array([]) }
        let whole = Span(file: file, start: 0, end: source.bytes.count)
        return .array([.object([("range", range(whole)), ("newText", .string(text))])])
    }

    func completion() -> JSONValue {
        var items: [JSONValue] = Keyword.allCases.map { k in
            .object([("label", .string(k.rawValue)), ("kind", .number(14))])  // Keyword
        }
        items += ["min", "max", "abs", "count", "sum", "denied", "granted"].map { .object([("label", .string($0)), ("kind", .number(3))]) }
        items.append(.object([("label", .string("set score to")), ("kind", .number(14))]))
        items.append(.object([("label", .string("output")), ("kind", .number(14))]))
        items.append(.object([("label", .string("attribute")), ("kind", .number(14))]))
        // A timed rule's own words (docs/LANGUAGE.md, "Timed rules").
        for (word, detail) in [("after", "timed rule: `30 days after EVENT [where …] [unless EVENT] → …`"),
                               ("unless", "disarms a timed rule: `… after EVENT unless OTHER → …`"),
                               ("every", "timed rule: `every 30 days [without EVENT] → …`"),
                               ("without", "restarts an `every` rule's period: `every 30 days without EVENT → …`")] {
            items.append(.object([("label", .string(word)), ("kind", .number(14)), ("detail", .string(detail))]))
        }
        var seen = Set<String>()
        let kinds: [Kind: Double] = [.event: 23, .group: 23, .field: 5, .flag: 20, .privilege: 20, .constant: 21, .attribute: 10, .reason: 20]
        for o in occurrences where seen.insert("\(o.kind)/\(o.name)").inserted {
            items.append(.object([("label", .string(o.name.replacing("_", with: " "))),
                                  ("kind", .number(kinds[o.kind]!)), ("detail", .string(o.kind.rawValue))]))
        }
        return .object([("isIncomplete", .bool(false)), ("items", .array(items))])
    }

    /// The outline: one symbol per statement.
    func symbols() -> JSONValue {
        .array(statements.map { statement in
            let span = statement.span
            let (kind, name): (Double, String)
            switch statement {
            case .event(let d): (kind, name) = (24, "event " + d.name.text.replacing("_", with: " "))
            case .group(let g): (kind, name) = (24, "event " + g.name.text.replacing("_", with: " ") + " = …")
            case .constant(let n, _, _): (kind, name) = (14, "let " + n.text.replacing("_", with: " "))
            case .output(let n, _, _): (kind, name) = (7, "output " + n.text.replacing("_", with: " "))
            case .attribute(let n, _, _): (kind, name) = (7, "attribute " + n.text.replacing("_", with: " "))
            case .settings: (kind, name) = (7, "score")
            case .test(let t): (kind, name) = (5, "test \"\(t.name)\"")
            case .use(let path, _): (kind, name) = (2, "use \"\(path)\"")
            case .eventRule, .stateRule:
                let line = source.line(of: span.start)
                var text = source.lineText(line).trimmingCharacters(in: " \t")
                if let hash = text.firstIndex(of: "#") { text = String(text[..<hash]).trimmingCharacters(in: " \t") }
                (kind, name) = (12, text.count > 80 ? String(text.prefix(79)) + "…" : text)
            }
            return .object([("name", .string(name)), ("kind", .number(kind)),
                            ("range", range(span)), ("selectionRange", range(span))])
        })
    }
}
