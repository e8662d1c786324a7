/// What an effect does to a flag or privilege: the one model of effect
/// kinds. Everything that names, prints, colours or stores a kind asks it
/// here, through exhaustive switches, so a new kind is a compile error at
/// every place that must handle it.
public enum TargetKind: String, Sendable, CaseIterable {
    /// A flag, a denied privilege, a granted privilege.
    case flag, deny, grant

    /// The keyword that sets it (`flag`, `deny`, `grant`): the lexer's
    /// keyword, so a kind without one does not compile.
    var setKeyword: Keyword {
        switch self {
        case .flag: return .flag
        case .deny: return .deny
        case .grant: return .grant
        }
    }
    /// The keyword that lifts what event rules set: `clear`, `allow`, `revoke`.
    var liftKeyword: Keyword {
        switch self {
        case .flag: return .clear
        case .deny: return .allow
        case .grant: return .revoke
        }
    }

    /// The verbs as text (the trail, the graph, messages).
    package var setVerb: String { setKeyword.rawValue }
    package var liftVerb: String { liftKeyword.rawValue }

    /// The kind that hides this one for the same name in a report: a
    /// denial beats a grant of the same privilege (the contract).
    package var hiddenBy: TargetKind? {
        switch self {
        case .grant: return .deny
        case .flag, .deny: return nil
        }
    }

    /// Its key in a report line and its list in an explanation: `flags`,
    /// `denied`, `granted`.
    package var reportKey: String {
        switch self {
        case .flag: return "flags"
        case .deny: return "denied"
        case .grant: return "granted"
        }
    }

    /// How a person is said to have it: `flagged`, `denied`, `granted`.
    package var stateWord: String {
        switch self {
        case .flag: return "flagged"
        case .deny: return "denied"
        case .grant: return "granted"
        }
    }

    /// A flag is a name of its own; denials and grants share the
    /// privileges' names.
    package var isFlag: Bool {
        switch self {
        case .flag: return true
        case .deny, .grant: return false
        }
    }

    /// What the names of this kind are called in messages.
    package var nameKind: String { isFlag ? "flag" : "privilege" }

    /// The colour of its bars on the explanation page.
    package var colour: String {
        switch self {
        case .flag: return "#9a6700"
        case .deny: return "#d1242f"
        case .grant: return "#1a7f37"
        }
    }

    /// The kind a set keyword sets (`deny` → `deny`), or nil.
    package init?(setKeyword keyword: Keyword) {
        guard let kind = Self.allCases.first(where: { $0.setKeyword == keyword }) else { return nil }
        self = kind
    }

    /// The kind a lift keyword lifts (`allow` → `deny`), or nil.
    package init?(liftKeyword keyword: Keyword) {
        guard let kind = Self.allCases.first(where: { $0.liftKeyword == keyword }) else { return nil }
        self = kind
    }

    /// The kind a lift verb lifts (`allow` → `deny`), or nil.
    package init?(liftVerb verb: String) {
        guard let kind = Self.allCases.first(where: { $0.liftVerb == verb }) else { return nil }
        self = kind
    }

    /// A dense index (0, 1, 2), for tables keyed by kind; `allCases` order,
    /// which is also the report's key order.
    @inline(__always) var index: Int {
        switch self {
        case .flag: return 0
        case .deny: return 1
        case .grant: return 2
        }
    }
}

