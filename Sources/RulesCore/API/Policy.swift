#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A compiled policy: checked, immutable, and safe to share between threads
/// (`Sendable`). Compile it once; make as many ``RulesEngine``s from it as
/// you need.
///
/// ```swift
/// let policy = try Policy.compile("""
///     speeding → -5
///     3 speeding within 30 days → deny driving for 90 days
///     """)
/// ```
public struct Policy: Sendable {
    /// The warnings the checker found (a policy with errors does not
    /// compile). Render them with ``DiagnosticRenderer`` and ``sources``.
    public let warnings: [Diagnostic]
    /// The policy's files, for rendering diagnostics with their source lines.
    public let sources: SourceSet
    let program: Program

    /// Compiles policy text; `name` is the file name diagnostics show.
    /// Throws ``PolicyError`` with every diagnostic when there are errors.
    public static func compile(_ text: String, name: String = "policy.rules") throws(PolicyError) -> Policy {
        try Policy(PolicyCompiler.compile(text, name: name))
    }

    /// Reads and compiles policy files (following their `use` lines).
    /// Throws ``PolicyError`` when a file cannot be read or has errors.
    public static func load(files paths: [String]) throws(PolicyError) -> Policy {
        switch PolicyCompiler.compile(paths: paths, loader: .files) {
        case .success(let result): return try Policy(result)
        case .failure(let error):
            throw PolicyError(diagnostics: [], sources: SourceSet(), message: "cannot read policy \(error.path): \(error.reason)")
        }
    }

    private init(_ result: CompileResult) throws(PolicyError) {
        guard let program = result.program else {
            throw PolicyError(diagnostics: result.diagnostics, sources: result.sources, message: nil)
        }
        self.program = program
        warnings = result.warnings
        sources = result.sources
        rules = RuleSite.all(in: program)
    }

    /// Event types the policy names, in the joined form (`unpaid_debt`).
    public var eventTypes: [String] { program.policy.events.map(\.name) }
    /// Flags and privileges the policy can set, sorted by bytes.
    public var flags: [String] { program.policy.flags }
    /// The privileges the policy can deny or grant, sorted by bytes.
    public var privileges: [String] { program.policy.privileges }
    /// Every rule, in the order the engine numbers them: event rules, then
    /// `while` rules in graph order. (Computed once: every applied event
    /// reports the rules that fired through it.)
    public let rules: [RuleSite]
}

/// Why a policy did not compile: every diagnostic, with positions.
public struct PolicyError: Error, CustomStringConvertible, Sendable {
    /// Errors and warnings, in file order.
    public let diagnostics: [Diagnostic]
    /// The files, for rendering (``DiagnosticRenderer``).
    public let sources: SourceSet
    let message: String?

    /// Only the errors.
    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }

    /// The diagnostics as `rules check` prints them.
    public var description: String {
        message ?? DiagnosticRenderer(sources: sources).render(diagnostics)
    }
}

/// One event about one person, as a Swift value.
///
/// ```swift
/// Event(person: "alice", type: "speeding", time: date, fields: ["speed": 95, "limit": 60])
/// ```
public struct Event: Sendable, Equatable {
    /// Whose event it is (the stream's `citizen`).
    public var person: String
    /// The event type as the policy writes it (`unpaid debt` or `unpaid_debt`).
    public var type: String
    /// When it happened: windows and expiries are measured in event time.
    public var time: Date
    /// The event's fields by name.
    public var fields: [String: FieldValue]
    /// Its id (the stream's `"id"`), unique per person: what a retraction
    /// names (``RulesEngine/retract(person:target:at:reason:)``).
    public var id: String?

    /// An event at `time`.
    public init(person: String, type: String, time: Date, id: String? = nil, fields: [String: FieldValue] = [:]) {
        self.person = person
        self.type = type
        self.time = time
        self.id = id
        self.fields = fields
    }

    /// An event at an ISO-8601 time (`2026-01-05T08:00:00Z`, or a date);
    /// nil when the time does not parse.
    public init?(person: String, type: String, at time: String, id: String? = nil, fields: [String: FieldValue] = [:]) {
        guard let ticks = Timestamp.parse(time) else { return nil }
        self.init(person: person, type: type, time: Date(ticks: ticks), id: id, fields: fields)
    }

    /// The NDJSON line `rules run` would read for this event.
    public var ndjson: String { line(personKey: .citizen) }

    /// The same, naming the person by `personKey`.
    func line(personKey: PersonKey) -> String {
        StreamLine.make(personKey: personKey, person: person, type: type, time: time.ticks, id: id,
                        fields: fields.map { (key: $0.key, value: $0.value) })
    }
}

extension Date {
    /// Microseconds since 1970 (`Timestamp.perSecond`), as the engine counts time.
    var ticks: Int64 {
        let t = (timeIntervalSince1970 * Double(Timestamp.perSecond)).rounded()
        return t >= 9.2e18 ? Int64.max : t <= -9.2e18 ? Int64.min : Int64(t)
    }

    init(ticks: Int64) { self.init(timeIntervalSince1970: Double(ticks) / Double(Timestamp.perSecond)) }
}

extension PolicyLoader {
    /// Reads policy files from disk; `use` targets are told apart by their
    /// real paths.
    package static let files = PolicyLoader(
        read: { path in
            guard let data = FileManager.default.contents(atPath: path) else {
                return .failure(ReadError(FileManager.default.fileExists(atPath: path) ? "cannot be read" : "no such file"))
            }
            return .success(Array(data))
        },
        canonical: { URL(fileURLWithPath: $0).resolvingSymlinksInPath().standardizedFileURL.path })
}
