/// Gathers a policy's files: the ones named, and every file they `use`,
/// each once. Each file is read and parsed once, here; the compiler takes
/// the statements as they are. Files are numbered in the order they are
/// read (a file before the files it uses), while the statements come in
/// source order — a used file's before those of the file that uses it, so
/// its rules come first. Reading is the caller's (the library does no I/O
/// of its own): `read` returns a file's bytes or the system's reason, and
/// `canonical` names a file uniquely (for example its real path).
package struct PolicyLoader: Sendable {
    public var read: @Sendable (String) -> Result<[UInt8], ReadError>
    public var canonical: @Sendable (String) -> String

    public struct ReadError: Error, Sendable {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
    }

    public struct Loaded: Sendable {
        /// Every file, numbered in the order it was read.
        public var sources: SourceSet
        /// Every file's statements, in source order.
        public var statements: [Statement]
        /// The parser's diagnostics, and problems with `use` statements
        /// (positioned at them).
        public var diagnostics: [Diagnostic]
        /// The named files' numbers, in the order they were named.
        public var entries: [Int]
        /// Every file's number, each used file before the file that uses
        /// it: the order of the statements.
        public var sourceOrder: [Int]
    }

    public init(read: @escaping @Sendable (String) -> Result<[UInt8], ReadError>, canonical: @escaping @Sendable (String) -> String = { $0 }) {
        self.read = read
        self.canonical = canonical
    }

    /// Loads the named files; an entry that cannot be read is an error
    /// (its path and reason), a `use` that cannot be read a diagnostic.
    public func load(_ paths: [String]) -> Result<Loaded, EntryError> {
        var state = State()
        var entries: [Int] = []
        for path in paths {
            switch visit(path, &state) {
            case .success(let index): entries.append(index)
            case .failure(let e): return .failure(e)
            }
        }
        return .success(Loaded(sources: state.sources, statements: state.statements, diagnostics: state.diagnostics,
                               entries: entries, sourceOrder: state.order))
    }

    public struct EntryError: Error, Sendable {
        public var path: String
        public var reason: String
    }

    private struct State {
        var sources = SourceSet()
        var seen: [String: Int] = [:]
        var statements: [Statement] = []
        var diagnostics: [Diagnostic] = []
        var order: [Int] = []
    }

    /// Reads and parses `path` (unless it was already), then the files it
    /// uses; its statements follow theirs. Its file number.
    private func visit(_ path: String, _ state: inout State) -> Result<Int, EntryError> {
        let key = canonical(path)
        if let index = state.seen[key] { return .success(index) }
        let bytes: [UInt8]
        switch read(path) {
        case .success(let b): bytes = b
        case .failure(let e): return .failure(EntryError(path: path, reason: e.reason))
        }
        let file = SourceFile(name: path, bytes: bytes)
        let index = state.sources.add(file)
        state.seen[key] = index
        let (statements, found) = Parser.parse(file, file: index)
        state.diagnostics += found
        for case .use(let target, let span) in statements {
            let resolved = Self.resolve(target, from: path)
            if case .failure(let e) = visit(resolved, &state) {
                state.diagnostics.append(Diagnostic(.unreadableUse, "cannot read `\(target)` (\(resolved)): \(e.reason)", at: span,
                                                    help: "the path is relative to the file that uses it"))
            }
        }
        state.statements += statements
        state.order.append(index)
        return .success(index)
    }

    /// `target` relative to the directory of `from`, unless absolute.
    static func resolve(_ target: String, from: String) -> String {
        if target.hasPrefix("/") { return target }
        guard let slash = from.lastIndex(of: "/") else { return target }
        return String(from[...slash]) + target
    }
}
