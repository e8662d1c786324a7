/// What one use of a name in a policy is, as the checker decided it: the
/// resolution table. The language server's hover, definitions, references,
/// rename and highlights read it, so they agree with what the engine runs
/// (a name is never classified twice, by two sets of rules).
package struct NameUse: Sendable, Hashable {
    package enum Kind: String, Sendable { case event, group, field, flag, privilege, constant, attribute, reason }

    /// Where it stands: a declaration, a read (a rule's head or
    /// condition, a constant's value), or what an effect sets or lifts.
    package enum Role: Sendable { case declaration, read, set, lift }

    /// Joined (`unpaid_debt`).
    package var name: String
    package var kind: Kind
    package var role: Role
    package var span: Span
}

extension NameUse.Kind {
    /// The kind of name an effect kind acts on.
    init(_ target: TargetKind) { self = target.isFlag ? .flag : .privilege }
}
