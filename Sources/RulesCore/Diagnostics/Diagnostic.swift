/// Every diagnostic the language reports has a stable code. The codes never
/// change meaning; docs/LANGUAGE.md shows an example of each.
public enum DiagnosticCode: String, Sendable, CaseIterable {
    // Lexical
    /// Unexpected character (E0101; docs/LANGUAGE.md has an example).
    case unexpectedCharacter = "E0101"
    /// Unterminated string (E0102; docs/LANGUAGE.md has an example).
    case unterminatedString = "E0102"
    /// Invalid escape (E0103; docs/LANGUAGE.md has an example).
    case invalidEscape = "E0103"
    /// Malformed number (E0104; docs/LANGUAGE.md has an example).
    case malformedNumber = "E0104"
    /// Invalid utf8 (E0105; docs/LANGUAGE.md has an example).
    case invalidUTF8 = "E0105"
    /// Invalid time (E0106; docs/LANGUAGE.md has an example).
    case invalidTime = "E0106"
    // Syntax
    /// Unexpected token (E0201; docs/LANGUAGE.md has an example).
    case unexpectedToken = "E0201"
    /// Missing arrow (E0202; docs/LANGUAGE.md has an example).
    case missingArrow = "E0202"
    /// Missing while (E0203; docs/LANGUAGE.md has an example).
    case missingWhile = "E0203"
    /// Missing effect (E0204; docs/LANGUAGE.md has an example).
    case missingEffect = "E0204"
    /// Unknown setting (E0205; docs/LANGUAGE.md has an example).
    case unknownSetting = "E0205"
    /// Unclosed bracket (E0206; docs/LANGUAGE.md has an example).
    case unclosedBracket = "E0206"
    /// Expression too deep or too long (E0207; docs/LANGUAGE.md has an example).
    case tooDeep = "E0207"
    /// Too many errors (E0208; docs/LANGUAGE.md has an example).
    case tooManyErrors = "E0208"
    // Names and types
    /// Unknown event (E0301; docs/LANGUAGE.md has an example).
    case unknownEvent = "E0301"
    /// Unknown field (E0302; docs/LANGUAGE.md has an example).
    case unknownField = "E0302"
    /// Unknown name (E0303; docs/LANGUAGE.md has an example).
    case unknownName = "E0303"
    /// Type mismatch (E0304; docs/LANGUAGE.md has an example).
    case typeMismatch = "E0304"
    /// Duplicate constant (E0305; docs/LANGUAGE.md has an example).
    case duplicateConstant = "E0305"
    /// Not constant (E0306; docs/LANGUAGE.md has an example).
    case notConstant = "E0306"
    /// Constant cycle (E0307; docs/LANGUAGE.md has an example).
    case constantCycle = "E0307"
    /// Duplicate declaration (E0308; docs/LANGUAGE.md has an example).
    case duplicateDeclaration = "E0308"
    /// Unknown type (E0309; docs/LANGUAGE.md has an example).
    case unknownType = "E0309"
    /// Duration expected (E0310; docs/LANGUAGE.md has an example).
    case durationExpected = "E0310"
    /// Invalid constant (E0311; docs/LANGUAGE.md has an example).
    case invalidConstant = "E0311"
    /// Unreadable use (E0312; docs/LANGUAGE.md has an example).
    case unreadableUse = "E0312"
    /// Field shadows a constant or flag (E0313; docs/LANGUAGE.md has an example).
    case fieldShadowsName = "E0313"
    /// Reserved field (E0314; docs/LANGUAGE.md has an example).
    case reservedField = "E0314"
    /// Reserved event type (E0315; docs/LANGUAGE.md has an example).
    case reservedEventType = "E0315"
    /// Event group cycle (E0316; docs/LANGUAGE.md has an example).
    case groupCycle = "E0316"
    /// Output named like a report key (E0317; docs/LANGUAGE.md has an example).
    case reportKeyTaken = "E0317"
    // Rules and the rule graph
    /// State rule changes score (E0401; docs/LANGUAGE.md has an example).
    case stateRuleChangesScore = "E0401"
    /// State rule lifts (E0402; docs/LANGUAGE.md has an example).
    case stateRuleLifts = "E0402"
    /// State rule timed (E0403; docs/LANGUAGE.md has an example).
    case stateRuleTimed = "E0403"
    /// Count without window (E0404; docs/LANGUAGE.md has an example).
    case countWithoutWindow = "E0404"
    /// Bad count (E0406; docs/LANGUAGE.md has an example).
    case badCount = "E0406"
    /// State rule cycle (E0407; docs/LANGUAGE.md has an example).
    case stateRuleCycle = "E0407"
    /// Bad score bounds (E0408; docs/LANGUAGE.md has an example).
    case badScoreBounds = "E0408"
    /// Duplicate setting (E0409; docs/LANGUAGE.md has an example).
    case duplicateSetting = "E0409"
    /// Bad duration (E0410; docs/LANGUAGE.md has an example).
    case badDuration = "E0410"
    /// A reason on a `while` rule's denial (E0411; docs/LANGUAGE.md has an example).
    case stateRuleReason = "E0411"
    // Warnings
    /// Flag never set (W0501; docs/LANGUAGE.md has an example).
    case flagNeverSet = "W0501"
    /// Flag never read (W0502; docs/LANGUAGE.md has an example).
    case flagNeverRead = "W0502"
    /// Unused constant (W0503; docs/LANGUAGE.md has an example).
    case unusedConstant = "W0503"
    /// Rule never fires (W0504; docs/LANGUAGE.md has an example).
    case ruleNeverFires = "W0504"
    /// Duplicate rule (W0505; docs/LANGUAGE.md has an example).
    case duplicateRule = "W0505"
    /// Window without count (W0506; docs/LANGUAGE.md has an example).
    case windowWithoutCount = "W0506"
    /// Contradicting rules (W0507; docs/LANGUAGE.md has an example).
    case contradictingRules = "W0507"
    /// Condition never holds (W0508; docs/LANGUAGE.md has an example).
    case conditionNeverHolds = "W0508"
    /// Effect shorter than window (W0509; docs/LANGUAGE.md has an example).
    case effectShorterThanWindow = "W0509"
    /// Granted and denied (W0510; docs/LANGUAGE.md has an example).
    case grantedAndDenied = "W0510"
    /// Event named like a flag (W0511; docs/LANGUAGE.md has an example).
    case eventNamedLikeFlag = "W0511"
    /// Attribute set to itself (W0512; docs/LANGUAGE.md has an example).
    case setToItself = "W0512"

    /// Error or warning (the code decides).
    /// Whether a diagnostic of this code is an error or a warning.
    public var severity: Diagnostic.Severity {
        rawValue.hasPrefix("W") ? .warning : .error
    }
}

/// A message about a place in the policy. Collected, never thrown: every
/// stage keeps going and reports all it finds.
public struct Diagnostic: Sendable {
    /// An error stops a policy from running; a warning does not.
    public enum Severity: String, Sendable {
        /// The policy does not compile.
        case error
        /// The policy compiles, but probably does not do what was meant.
        case warning
    }

    /// The stable code (`E0302`), never reused for another meaning.
    public var code: DiagnosticCode
    /// What is wrong, in a sentence.
    public var message: String
    /// Where: a byte range of one of the policy's files.
    public var span: Span
    /// A concrete fix, shown as `help:` under the caret.
    public var help: String?
    /// Other places that explain this one ("first defined here").
    public var notes: [(span: Span, message: String)]

    public var severity: Severity { code.severity }

    /// A diagnostic of `code` at `span`.
    public init(_ code: DiagnosticCode, _ message: String, at span: Span,
                help: String? = nil, notes: [(span: Span, message: String)] = []) {
        self.code = code
        self.message = message
        self.span = span
        self.help = help
        self.notes = notes
    }
}

/// Collects diagnostics, with a cap so a garbage file cannot flood the screen.
/// It keeps one error past the cap so the compiler knows to say it stopped.
package struct DiagnosticSink {
    package static let maxErrors = 50
    private static let keep = maxErrors + 1
    private(set) var items: [Diagnostic] = []
    private(set) var errorCount = 0
    private(set) var truncated = false
    /// What was said, so that a mistake read twice (a chain's branches
    /// each read the first branch's condition again) is said once.
    private var said: Set<Said> = []
    private struct Said: Hashable { var code: DiagnosticCode; var span: Span; var message: String }

    mutating func add(_ d: Diagnostic) {
        guard said.insert(Said(code: d.code, span: d.span, message: d.message)).inserted else { return }
        if d.severity == .error {
            if errorCount >= Self.keep {
                truncated = true
                return
            }
            errorCount += 1
        }
        items.append(d)
    }

    var hasErrors: Bool { errorCount > 0 }
    var isFull: Bool { errorCount >= Self.keep }
}
