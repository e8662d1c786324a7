/// One rule of the policy: where it stands and its text (the trail,
/// explanations, coverage and the public API name rules by it).
public struct RuleSite: Sendable, Hashable {
    /// The policy file's name.
    public var file: String
    /// Its line (1-based).
    public var line: Int
    /// Its byte offset in the file.
    public var offset: Int
    /// The rule's text.
    public var text: String
    /// Its name (`rule "reckless driving" …`), if it has one.
    public var name: String? = nil

    /// `FILE:LINE  TEXT`, as explanations, test reports and coverage show a rule.
    public var shown: String { "\(file):\(line)  \(text)" }
}

extension RuleSite {
    /// All rules by global index (event rules, then state rules in graph order).
    package static func all(in program: Program) -> [RuleSite] {
        let rules = program.policy.eventRules.map { ($0.ast.span, $0.ast.name) } + program.policy.stateRules.map { ($0.ast.span, $0.ast.name) }
        return rules.map { span, name in
            let (file, line, _) = program.policy.sources.location(span)
            return RuleSite(file: file, line: line, offset: span.start, text: program.policy.sources.files[span.file].text(span), name: name?.text)
        }
    }
}
