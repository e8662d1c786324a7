import RulesCore

/// A policy the service runs, as text: what `PUT /v1/policy` takes and
/// what the log records at a change, so that a replay compiles the same
/// policy again whatever files are on disk then.
///
/// JSON: `{"files":{"NAME.rules":"TEXT",…},"paths":["NAME.rules",…]}` —
/// every file, `use`d ones included, and the files named (the policy's
/// entries, in order; all of `files`, sorted by name, when absent, as a
/// PUT body may leave it).
package struct ServedPolicy: Equatable, Sendable {
    package var paths: [String]
    package var files: [String: String]

    package init(paths: [String], files: [String: String]) {
        self.paths = paths
        self.files = files
    }

    /// The files a compilation read, and the ones it was given.
    package init(_ result: CompileResult, paths: [String]) {
        var files: [String: String] = [:]
        for file in result.sources.files { files[file.name] = String(decoding: file.bytes, as: UTF8.self) }
        self.init(paths: paths, files: files)
    }

    package struct Malformed: Error, CustomStringConvertible {
        package var description: String
    }

    /// A PUT body or a log record; `Malformed` says what is wrong.
    package init(json text: String) throws(Malformed) {
        let value: JSONValue
        do { value = try JSONValue.parse(text) } catch { throw Malformed(description: "the body is not JSON: \(error)") }
        guard case .object(let members)? = value["files"], !members.isEmpty else {
            throw Malformed(description: #"the body must be {"files":{"NAME.rules":"TEXT",…}} with at least one file"#)
        }
        var files: [String: String] = [:]
        for (name, text) in members {
            guard let text = text.string else { throw Malformed(description: "file \(JSONText.quoted(name)): its text must be a string") }
            guard !name.isEmpty else { throw Malformed(description: "a file name must not be empty") }
            files[name] = text
        }
        var paths = files.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        if let named = value["paths"] {
            guard let list = named.array?.compactMap(\.string), list.count == named.array?.count, !list.isEmpty,
                  list.allSatisfy({ files[$0] != nil }) else {
                throw Malformed(description: #""paths" must list names of "files""#)
            }
            paths = list
        }
        self.init(paths: paths, files: files)
    }

    /// The JSON, names in byte order (the same policy, the same bytes).
    package var json: String {
        let names = files.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let members = names.map { "\(JSONText.quoted($0)):\(JSONText.quoted(files[$0]!))" }.joined(separator: ",")
        return #"{"files":{\#(members)},"paths":[\#(paths.map(JSONText.quoted).joined(separator: ","))]}"#
    }

    /// Compiled from these texts alone: a `use` of a file not among them
    /// cannot be read.
    package func compile() -> Result<CompileResult, PolicyLoader.EntryError> {
        let files = self.files
        let loader = PolicyLoader(read: { name in
            files[name].map { .success(Array($0.utf8)) } ?? .failure(PolicyLoader.ReadError("no such file among the policy's files"))
        }, canonical: { $0 })
        return PolicyCompiler.compile(paths: paths, loader: loader)
    }
}
