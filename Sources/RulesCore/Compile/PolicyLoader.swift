/// Gathers a policy's files: the ones named, and every file they `use`,
/// each once, a used file before the file that uses it (so its rules come
/// first in source order). Reading is the caller's (the library does no I/O
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
        public var sources: SourceSet
        /// Problems with `use` statements, positioned at them.
        public var diagnostics: [Diagnostic]
    }

    public init(read: @escaping @Sendable (String) -> Result<[UInt8], ReadError>, canonical: @escaping @Sendable (String) -> String = { $0 }) {
        self.read = read
        self.canonical = canonical
    }

    /// Loads the named files; an entry that cannot be read is an error
    /// (its path and reason), a `use` that cannot be read a diagnostic.
    public func load(_ paths: [String]) -> Result<Loaded, EntryError> {
        var state = State()
        for path in paths {
            if case .failure(let e) = visit(path, &state) { return .failure(e) }
        }
        return .success(Loaded(sources: state.sources, diagnostics: state.diagnostics))
    }

    public struct EntryError: Error, Sendable {
        public var path: String
        public var reason: String
    }

    private struct State {
        var sources = SourceSet()
        var seen: Set<String> = []
        var diagnostics: [Diagnostic] = []
    }

    private func visit(_ path: String, _ state: inout State) -> Result<Void, EntryError> {
        let key = canonical(path)
        if state.seen.contains(key) { return .success(()) }
        state.seen.insert(key)
        let bytes: [UInt8]
        switch read(path) {
        case .success(let b): bytes = b
        case .failure(let e): return .failure(EntryError(path: path, reason: e.reason))
        }
        let file = SourceFile(name: path, bytes: bytes)
        // The file's index is not known yet; spans of `use` diagnostics are
        // rebased below once it is.
        let (statements, _) = Parser.parse(file, file: 0)
        var pending: [(Diagnostic, Int)] = []
        for case .use(let target, let span) in statements {
            let resolved = Self.resolve(target, from: path)
            if case .failure(let e) = visit(resolved, &state) {
                pending.append((Diagnostic(.unreadableUse, "cannot read `\(target)` (\(resolved)): \(e.reason)", at: span,
                                           help: "the path is relative to the file that uses it"), span.start))
            }
        }
        let index = state.sources.add(file)
        for (var d, _) in pending {
            d.span.file = index
            state.diagnostics.append(d)
        }
        return .success(())
    }

    /// `target` relative to the directory of `from`, unless absolute.
    static func resolve(_ target: String, from: String) -> String {
        if target.hasPrefix("/") { return target }
        guard let slash = from.lastIndex(of: "/") else { return target }
        return String(from[...slash]) + target
    }
}
