import RulesCore
import RulesTooling
#if canImport(Glibc)
import Glibc
#endif

/// `rules lsp` — the language server on stdin/stdout: JSON-RPC messages
/// framed by `Content-Length` headers (the LSP base protocol). The protocol
/// itself is `LanguageServer` in RulesCore.
enum LspCommand {
    static let help = """
    usage: rules lsp

    Runs the language server for editors, speaking the Language Server
    Protocol on standard input and output: diagnostics as you type, hover,
    go to definition, find references, formatting, completion and the
    outline. Editors start it themselves; see editors/README.md for Neovim,
    Helix and VS Code.

    options:
      -h, --help   show this help

    exit status: 0 after the client's shutdown and exit, 1 when the input
    ends or breaks without them.
    """

    static func run(_ args: [String]) -> Int32 {
        let (arguments, code) = Arguments.forCommand("lsp", args, spec: .init(), help: help)
        guard let parsed = arguments else { return code }
        guard parsed.positionals.isEmpty else { return Main.usageError("lsp takes no arguments", command: "lsp") }
        var server = LanguageServer()
        var input = FramedInput()
        while let body = input.next() {
            guard let message = try? JSONValue.parse(body) else {
                send(.object([("jsonrpc", .string("2.0")), ("id", .null),
                              ("error", .object([("code", .number(-32700)), ("message", .string("parse error"))]))]))
                continue
            }
            for reply in server.handle(message) { send(reply) }
            if server.exitRequested { return server.shutdownRequested ? ExitCode.ok : ExitCode.failure }
        }
        return ExitCode.failure
    }

    private static func send(_ message: JSONValue) {
        let body = Array(message.text.utf8)
        let frame = Array("Content-Length: \(body.count)\r\n\r\n".utf8) + body
        _ = frame.withUnsafeBytes { Terminal.writeAll(fd: 1, $0) }
    }
}

/// Messages from stdin: headers up to an empty line, then exactly
/// `Content-Length` bytes.
struct FramedInput {
    private var buffer: [UInt8] = []
    private var atEnd = false

    mutating func next() -> String? {
        while true {
            if let headerEnd = find([0x0D, 0x0A, 0x0D, 0x0A]) {
                let header = String(decoding: buffer[0..<headerEnd], as: UTF8.self)
                var length: Int? = nil
                for line in header.split(separator: "\r\n") {
                    let parts = line.split(separator: ":", maxSplits: 1)
                    if parts.count == 2, parts[0].lowercased() == "content-length" {
                        length = Int(parts[1].drop { $0 == " " || $0 == "\t" })
                    }
                }
                guard let length, length >= 0 else {
                    buffer.removeFirst(headerEnd + 4)  // a frame without a length: skip its header
                    continue
                }
                while buffer.count < headerEnd + 4 + length && !atEnd { fill() }
                guard buffer.count >= headerEnd + 4 + length else { return nil }
                let body = String(decoding: buffer[(headerEnd + 4)..<(headerEnd + 4 + length)], as: UTF8.self)
                buffer.removeFirst(headerEnd + 4 + length)
                return body
            }
            if atEnd { return nil }
            fill()
        }
    }

    private func find(_ pattern: [UInt8]) -> Int? {
        guard buffer.count >= pattern.count else { return nil }
        for i in 0...(buffer.count - pattern.count) where buffer[i] == pattern[0] && Array(buffer[i..<(i + pattern.count)]) == pattern {
            return i
        }
        return nil
    }

    private mutating func fill() {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress!, $0.count) }
            if n > 0 { buffer += chunk[0..<n]; return }
            if n < 0 && errno == EINTR { continue }
            atEnd = true
            return
        }
    }
}
