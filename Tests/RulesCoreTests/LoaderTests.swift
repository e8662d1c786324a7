import Foundation
import Testing
@testable import RulesCore

/// The policy loader: each file read and parsed once, numbered in the
/// order it was read, its statements in source order (a used file's
/// first), diagnostics pointing into the file they are about.
@Suite("Policy loading")
struct LoaderTests {
    /// Counts reads, from the loader's `@Sendable` closure.
    final class Reads: @unchecked Sendable {
        private let lock = NSLock()
        private var counts: [String: Int] = [:]
        func note(_ name: String) { lock.withLock { counts[name, default: 0] += 1 } }
        var all: [String: Int] { lock.withLock { counts } }
    }

    static func loader(_ files: [String: String], reads: Reads) -> PolicyLoader {
        PolicyLoader(read: { name in
            reads.note(name)
            guard let text = files[name] else { return .failure(PolicyLoader.ReadError("No such file or directory")) }
            return .success(Array(text.utf8))
        })
    }

    static let diamond = [
        "a.rules": "use \"b.rules\"\nuse \"c.rules\"\nalpha → -1\n",
        "b.rules": "use \"c.rules\"\nbeta → -2\n",
        "c.rules": "gamma → -3\n",
    ]

    @Test("a file used twice is read once; files numbered as read, statements with a used file's first")
    func order() throws {
        let reads = Reads()
        let loaded = try Self.loader(Self.diamond, reads: reads).load(["a.rules"]).get()
        #expect(reads.all == ["a.rules": 1, "b.rules": 1, "c.rules": 1])
        #expect(loaded.sources.files.map(\.name) == ["a.rules", "b.rules", "c.rules"])
        #expect(loaded.entries == [0])
        #expect(loaded.sourceOrder == [2, 1, 0])
        // Every statement's span points into the file that holds its text.
        let texts = loaded.statements.map { loaded.sources.files[$0.span.file].text($0.span) }
        #expect(texts == ["gamma → -3", "use \"c.rules\"", "beta → -2", "use \"b.rules\"", "use \"c.rules\"", "alpha → -1"])
    }

    @Test("the compiled program's rules come in source order; a file named twice is one entry twice")
    func compiled() throws {
        let reads = Reads()
        let result = try PolicyCompiler.compile(paths: ["a.rules", "c.rules"], loader: Self.loader(Self.diamond, reads: reads)).get()
        let program = try #require(result.program)
        #expect(RuleSite.all(in: program).map { "\($0.file):\($0.line) \($0.text)" }
            == ["c.rules:1 gamma → -3", "b.rules:2 beta → -2", "a.rules:3 alpha → -1"])
        #expect(result.entries == [0, 2])
        #expect(reads.all["c.rules"] == 1)
    }

    @Test("errors in a used file, and a `use` that cannot be read, point at the right file and line")
    func diagnostics() throws {
        let files = [
            "main.rules": "use \"lib.rules\"\nuse \"gone.rules\"\nok → -1\n",
            "lib.rules": "fine → -1\nbroken → bogus\n",
        ]
        let result = try PolicyCompiler.compile(paths: ["main.rules"], loader: Self.loader(files, reads: Reads())).get()
        let places = result.diagnostics.map { d -> String in
            let (file, line, column) = result.sources.location(d.span)
            return "\(file):\(line):\(column) \(d.code.rawValue)"
        }
        #expect(places == ["main.rules:2:1 E0312", "lib.rules:2:10 E0204"], "\(places)")
    }
}
