import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

/// `rules lsp`: the protocol in process, and once through the binary with
/// real framing.
@Suite("Language server")
struct LanguageServerTests {
    static let uri = "file:///policy.rules"
    static let policy = """
    let margin = 30
    event speeding { speed: number, limit: number }
    speeding where speed > limit + margin → -20
    3 speeding within 30 days → deny driving for 90 days
    while score < 900 → flag low trust
    unpaid debt → flag debtor
    debt paid → clear debtor
    while low trust and debtor → deny rail
    event unpaid debt { amount: number }
    event debt paid { }

    """

    static func request(_ id: Int, _ method: String, _ params: [(String, JSONValue)]) -> JSONValue {
        .object([("jsonrpc", .string("2.0")), ("id", .number(Double(id))), ("method", .string(method)), ("params", .object(params))])
    }

    static func notification(_ method: String, _ params: [(String, JSONValue)]) -> JSONValue {
        .object([("jsonrpc", .string("2.0")), ("method", .string(method)), ("params", .object(params))])
    }

    static func at(_ line: Int, _ character: Int) -> [(String, JSONValue)] {
        [("textDocument", .object([("uri", .string(uri))])),
         ("position", .object([("line", .number(Double(line))), ("character", .number(Double(character)))]))]
    }

    static func opened(_ text: String = policy) -> (LanguageServer, [JSONValue]) {
        var server = LanguageServer()
        _ = server.handle(request(1, "initialize", []))
        let out = server.handle(notification("textDocument/didOpen", [("textDocument", .object([
            ("uri", .string(uri)), ("languageId", .string("rules")), ("version", .number(1)), ("text", .string(text))]))]))
        return (server, out)
    }

    @Test("diagnostics on open and on every change, at the right place (UTF-16 columns)")
    func diagnostics() throws {
        var (server, opened) = Self.opened()
        #expect(opened.first?["params"]?["diagnostics"]?.array?.isEmpty == true)
        let broken = "event speeding { speed: number }\nspeeding where sped > 1 → -5\n"
        let out = server.handle(Self.notification("textDocument/didChange", [
            ("textDocument", .object([("uri", .string(Self.uri)), ("version", .number(2))])),
            ("contentChanges", .array([.object([("text", .string(broken))])]))]))
        let d = try #require(out.first?["params"]?["diagnostics"]?.array?.first)
        #expect(d["code"]?.string == "E0302")
        #expect(d["severity"]?.int == 1)
        #expect(d["range"]?["start"] == .object([("line", .number(1)), ("character", .number(15))]))
        #expect(d["message"]?.string?.contains("did you mean `speed`") == true || d["message"]?.string?.contains("speed") == true)
        // After `→` (one UTF-16 unit, three bytes) columns still count characters.
        let warned = server.handle(Self.notification("textDocument/didChange", [
            ("textDocument", .object([("uri", .string(Self.uri))])),
            ("contentChanges", .array([.object([("text", .string("s → deny x, allow x\n"))])]))]))
        let w = try #require(warned.first?["params"]?["diagnostics"]?.array?.first)
        #expect(w["code"]?.string == "W0507" && w["severity"]?.int == 2)
    }

    @Test("hover: who sets and who reads a flag; an event's declaration and rules")
    func hover() throws {
        var (server, _) = Self.opened()
        let flag = try #require(server.handle(Self.request(2, "textDocument/hover", Self.at(7, 8))).first?["result"]?["contents"]?["value"]?.string)
        #expect(flag.contains("**flag** `low trust`"))
        #expect(flag.contains("set by:\n- line 5: `while score < 900 → flag low trust`"))
        #expect(flag.contains("read by:\n- line 8: `while low trust and debtor → deny rail`"))
        let debtor = try #require(server.handle(Self.request(3, "textDocument/hover", Self.at(5, 22))).first?["result"]?["contents"]?["value"]?.string)
        #expect(debtor.contains("lifted by:\n- line 7: `debt paid → clear debtor`"))
        let event = try #require(server.handle(Self.request(4, "textDocument/hover", Self.at(2, 3))).first?["result"]?["contents"]?["value"]?.string)
        #expect(event.contains("**event** `speeding`") && event.contains("declared:\n- line 2") && event.contains("- line 4: `3 speeding"))
        #expect(server.handle(Self.request(5, "textDocument/hover", Self.at(2, 40))).first?["result"] == .null)
    }

    @Test("names mean what the checker decided: a field named like an event or a privilege is a field")
    func resolutionTable() throws {
        // `parking` is an event and, in the first rule's condition, a field
        // of the undeclared event `speeding`; `travel` is a privilege and a
        // field. The engine reads both as fields there; so does the hover.
        var (server, _) = Self.opened("""
            parking → -1
            speeding where parking > 1 and travel == "x" → deny travel

            """)
        func hover(_ line: Int, _ character: Int) -> String? {
            server.handle(Self.request(9, "textDocument/hover", Self.at(line, character))).first?["result"]?["contents"]?["value"]?.string
        }
        #expect(hover(1, 17)?.hasPrefix("**field** `parking`") == true, "\(hover(1, 17) ?? "nil")")
        #expect(hover(0, 2)?.hasPrefix("**event** `parking`") == true, "\(hover(0, 2) ?? "nil")")
        #expect(hover(1, 32)?.hasPrefix("**field** `travel`") == true, "\(hover(1, 32) ?? "nil")")
        #expect(hover(1, 56)?.hasPrefix("**privilege** `travel`") == true, "\(hover(1, 56) ?? "nil")")
    }

    @Test("an event group: hover lists its events; definition, references, completion and the outline know it")
    func eventGroup() throws {
        var (server, _) = Self.opened("""
            event infraction = speeding, red light
            infraction → -5
            while count(infraction within 30 days) > 2 → flag reckless

            """)
        func result(_ id: Int, _ method: String, _ params: [(String, JSONValue)]) -> JSONValue? {
            server.handle(Self.request(id, method, params)).first?["result"]
        }
        let hover = try #require(result(2, "textDocument/hover", Self.at(1, 3))?["contents"]?["value"]?.string)
        #expect(hover.hasPrefix("**event group** `infraction`"), "\(hover)")
        #expect(hover.contains("any of: `speeding`, `red light`"), "\(hover)")
        #expect(hover.contains("line 3: `while count(infraction within 30 days) > 2 → flag reckless`"), "\(hover)")
        // A member is an event, with the group's line among its uses.
        let member = try #require(result(3, "textDocument/hover", Self.at(0, 32))?["contents"]?["value"]?.string)
        #expect(member.hasPrefix("**event** `red light`"), "\(member)")
        func start(_ v: JSONValue?) -> [Int] { [v?["range"]?["start"]?["line"]?.int ?? -1, v?["range"]?["start"]?["character"]?.int ?? -1] }
        #expect(start(result(4, "textDocument/definition", Self.at(2, 14))) == [0, 6])
        let refs = try #require(result(5, "textDocument/references", Self.at(0, 8) + [("context", .object([("includeDeclaration", .bool(false))]))])?.array)
        #expect(refs.map { $0["range"]?["start"]?["line"]?.int } == [1, 2])
        let items = try #require(result(6, "textDocument/completion", Self.at(0, 0))?["items"]?.array)
        #expect(items.contains { $0["label"]?.string == "infraction" && $0["detail"]?.string == "group" })
        let symbols = try #require(result(7, "textDocument/documentSymbol", [("textDocument", .object([("uri", .string(Self.uri))]))])?.array)
        #expect(symbols.first?["name"]?.string == "event infraction = …")
    }

    @Test("a timed rule: hover on its events lists it; completion offers its words; a field in its effects is a positioned error")
    func timedRule() throws {
        var (server, _) = Self.opened("""
            30 days after fine issued unless fine paid → deny registration
            every 30 days without fine issued → +1

            """)
        func result(_ id: Int, _ method: String, _ params: [(String, JSONValue)]) -> JSONValue? {
            server.handle(Self.request(id, method, params)).first?["result"]
        }
        let paid = try #require(result(2, "textDocument/hover", Self.at(0, 35))?["contents"]?["value"]?.string)
        #expect(paid.hasPrefix("**event** `fine paid`"), "\(paid)")
        #expect(paid.contains("line 1: `30 days after fine issued unless fine paid → deny registration`"), "\(paid)")
        let issued = try #require(result(3, "textDocument/hover", Self.at(1, 25))?["contents"]?["value"]?.string)
        #expect(issued.contains("line 2: `every 30 days without fine issued → +1`"), "\(issued)")
        let items = try #require(result(4, "textDocument/completion", Self.at(0, 0))?["items"]?.array)
        let labels = Set(items.compactMap { $0["label"]?.string })
        #expect(labels.isSuperset(of: ["after", "unless", "every", "without", "fine issued", "fine paid"]))
        let (_, published) = Self.opened("event fine issued { amount: number }\n30 days after fine issued → -amount\n")
        let diagnostics = published.compactMap { $0["params"]?["diagnostics"]?.array }.last ?? []
        #expect(diagnostics.contains { $0["code"]?.string == "E0302" && $0["range"]?["start"]?["line"]?.int == 1 }, "\(diagnostics)")
    }

    @Test("a per-person value: hover says so; definition goes to its `let`")
    func personValue() throws {
        var (server, _) = Self.opened("""
            let live strikes = count(strike within 90 days)
            while live strikes >= 3 → flag repeat offender

            """)
        let hover = try #require(server.handle(Self.request(2, "textDocument/hover", Self.at(1, 8))).first?["result"]?["contents"]?["value"]?.string)
        #expect(hover.hasPrefix("**value** `live strikes` (per person, read as of each use)"), "\(hover)")
        let definition = server.handle(Self.request(3, "textDocument/definition", Self.at(1, 8))).first?["result"]
        #expect(definition?["range"]?["start"]?["line"]?.int == 0)
    }

    @Test("definition and references of flags, privileges, events and constants")
    func navigation() throws {
        var (server, _) = Self.opened()
        func start(_ v: JSONValue?) -> [Int] { [v?["range"]?["start"]?["line"]?.int ?? -1, v?["range"]?["start"]?["character"]?.int ?? -1] }
        // `margin` used on line 3 → `let margin` on line 1.
        #expect(start(server.handle(Self.request(2, "textDocument/definition", Self.at(2, 34))).first?["result"]) == [0, 4])
        // `debtor` read on line 8 → set on line 6.
        #expect(start(server.handle(Self.request(3, "textDocument/definition", Self.at(7, 22))).first?["result"]) == [5, 19])
        // `speeding` → its declaration.
        #expect(start(server.handle(Self.request(4, "textDocument/definition", Self.at(3, 4))).first?["result"]) == [1, 6])
        let refs = try #require(server.handle(Self.request(5, "textDocument/references", Self.at(5, 20) + [
            ("context", .object([("includeDeclaration", .bool(true))]))])).first?["result"]?.array)
        #expect(refs.map { $0["range"]?["start"]?["line"]?.int } == [5, 6, 7])
    }

    @Test("formatting, completion and the outline")
    func editing() throws {
        var (server, _) = Self.opened("speeding->-5;littering -> -3\n")
        let edits = try #require(server.handle(Self.request(2, "textDocument/formatting", [
            ("textDocument", .object([("uri", .string(Self.uri))])), ("options", .object([]))])).first?["result"]?.array)
        #expect(edits.count == 1 && edits[0]["newText"]?.string == "speeding → -5\nlittering → -3\n")
        (server, _) = Self.opened()
        let items = try #require(server.handle(Self.request(3, "textDocument/completion", Self.at(0, 0))).first?["result"]?["items"]?.array)
        let labels = Set(items.compactMap { $0["label"]?.string })
        #expect(labels.isSuperset(of: ["while", "within", "low trust", "unpaid debt", "margin", "driving", "speed"]))
        let symbols = try #require(server.handle(Self.request(4, "textDocument/documentSymbol", [
            ("textDocument", .object([("uri", .string(Self.uri))]))])).first?["result"]?.array)
        #expect(symbols.count == 10)
        #expect(symbols.first?["name"]?.string == "let margin")
        #expect(symbols[7]["name"]?.string == "while low trust and debtor → deny rail")
        #expect(symbols.last?["name"]?.string == "event debt paid")
    }

    @Test("a file on disk is checked with the files it uses; its own text is the editor's")
    func usedFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lsp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "while score < 900 → flag low trust\n".write(to: dir.appendingPathComponent("base.rules"), atomically: true, encoding: .utf8)
        let main = dir.appendingPathComponent("main.rules")
        try "stale text on disk\n".write(to: main, atomically: true, encoding: .utf8)
        var server = LanguageServer()
        let uri = "file://" + main.path
        func open(_ text: String) -> [JSONValue]? {
            server.handle(Self.notification("textDocument/didOpen", [("textDocument", .object([
                ("uri", .string(uri)), ("languageId", .string("rules")), ("version", .number(1)), ("text", .string(text))]))]))
                .first?["params"]?["diagnostics"]?.array
        }
        #expect(open("use \"base.rules\"\nwhile low trust → deny loans\n")?.isEmpty == true)
        let wrong = try #require(open("use \"base.rules\"\nwhile low trist → deny loans\n")?.first)
        #expect(wrong["range"]?["start"]?["line"]?.int == 1)
        #expect(wrong["message"]?.string?.contains("low trust") == true)
        // Hover and definition reach into the used file.
        _ = open("use \"base.rules\"\nwhile low trust → deny loans\n")
        let hover = try #require(server.handle(Self.request(5, "textDocument/hover", [
            ("textDocument", .object([("uri", .string(uri))])),
            ("position", .object([("line", .number(1)), ("character", .number(8))]))])).first?["result"]?["contents"]?["value"]?.string)
        #expect(hover.contains("set by:\n- ") && hover.contains("base.rules:1: `while score < 900 → flag low trust`"))
        let definition = try #require(server.handle(Self.request(6, "textDocument/definition", [
            ("textDocument", .object([("uri", .string(uri))])),
            ("position", .object([("line", .number(1)), ("character", .number(8))]))])).first?["result"])
        #expect(definition["uri"]?.string?.hasSuffix("/base.rules") == true)
        #expect(definition["range"]?["start"]?["line"]?.int == 0)
    }

    @Test("unknown requests get an error; shutdown then exit")
    func lifecycle() {
        var (server, _) = Self.opened()
        let error = server.handle(Self.request(9, "textDocument/rename", []))
        #expect(error.first?["error"]?["code"]?.int == -32601)
        #expect(server.handle(Self.notification("workspace/somethingNew", [])).isEmpty)
        #expect(server.handle(Self.request(10, "shutdown", [])).first?["result"] == .null)
        _ = server.handle(Self.notification("exit", []))
        #expect(server.shutdownRequested && server.exitRequested)
    }

    @Test("JSON messages: nested values, escapes and surrogate pairs round trip")
    func json() throws {
        let text = #"{"a":[1,2.5,-3e2,true,false,null,{"b":"x\"y\\z\n\u00e9\ud83d\ude00"}],"c":{}}"#
        let value = try JSONValue.parse(text)
        #expect(value["a"]?.array?.count == 7)
        #expect(value["a"]?.array?[6]["b"]?.string == "x\"y\\z\né😀")
        #expect(try JSONValue.parse(value.text) == value)
        for bad in ["{", "[1,]", #"{"a" 1}"#, "tru", #""abc"#, "1 2"] {
            #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(bad) }
        }
    }

    @Test("rules lsp speaks Content-Length framed JSON-RPC on stdin and stdout")
    func overStdio() throws {
        func frame(_ v: JSONValue) -> String { let body = v.text; return "Content-Length: \(body.utf8.count)\r\n\r\n" + body }
        let input = [Self.request(1, "initialize", []), Self.notification("initialized", []),
                     Self.notification("textDocument/didOpen", [("textDocument", .object([("uri", .string(Self.uri)),
                        ("languageId", .string("rules")), ("version", .number(1)), ("text", .string("speeding → →\n"))]))]),
                     Self.request(2, "shutdown", []), Self.notification("exit", [])].map(frame).joined()
        let r = try CLITests.rules(["lsp"], stdin: input)
        #expect(r.status == 0)
        #expect(r.stdout.contains(#""id":1,"result":{"capabilities""#))
        #expect(r.stdout.contains(#""code":"E02"#))
        #expect(r.stdout.contains(#""id":2,"result":null"#))
        let cut = try CLITests.rules(["lsp"], stdin: frame(Self.request(1, "initialize", [])))
        #expect(cut.status == 1)  // the input ended without shutdown and exit
    }
}
