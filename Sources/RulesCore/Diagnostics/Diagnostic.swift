/// Every diagnostic the language reports has a stable code. The codes never
/// change meaning; docs/LANGUAGE.md shows an example of each.
public enum DiagnosticCode: String, Sendable, CaseIterable {
    // Lexical
    case unexpectedCharacter = "E0101"
    case unterminatedString = "E0102"
    case invalidEscape = "E0103"
    case malformedNumber = "E0104"
    case invalidUTF8 = "E0105"
    case invalidTime = "E0106"
    // Syntax
    case unexpectedToken = "E0201"
    case missingArrow = "E0202"
    case missingWhile = "E0203"
    case missingEffect = "E0204"
    case unknownSetting = "E0205"
    case unclosedBracket = "E0206"
    case tooDeep = "E0207"
    case tooManyErrors = "E0208"
    // Names and types
    case unknownEvent = "E0301"
    case unknownField = "E0302"
    case unknownName = "E0303"
    case typeMismatch = "E0304"
    case duplicateConstant = "E0305"
    case notConstant = "E0306"
    case constantCycle = "E0307"
    case duplicateDeclaration = "E0308"
    case unknownType = "E0309"
    case durationExpected = "E0310"
    case invalidConstant = "E0311"
    case unreadableUse = "E0312"
    // Rules and the rule graph
    case stateRuleChangesScore = "E0401"
    case stateRuleLifts = "E0402"
    case stateRuleTimed = "E0403"
    case countWithoutWindow = "E0404"
    case badCount = "E0406"
    case stateRuleCycle = "E0407"
    case badScoreBounds = "E0408"
    case duplicateSetting = "E0409"
    case badDuration = "E0410"
    // Warnings
    case flagNeverSet = "W0501"
    case flagNeverRead = "W0502"
    case unusedConstant = "W0503"
    case ruleNeverFires = "W0504"
    case duplicateRule = "W0505"
    case windowWithoutCount = "W0506"
    case contradictingRules = "W0507"
    case conditionNeverHolds = "W0508"
    case effectShorterThanWindow = "W0509"
    case grantedAndDenied = "W0510"

    public var severity: Diagnostic.Severity {
        rawValue.hasPrefix("W") ? .warning : .error
    }
}

/// A message about a place in the policy. Collected, never thrown: every
/// stage keeps going and reports all it finds.
public struct Diagnostic: Sendable {
    public enum Severity: String, Sendable { case error, warning }

    public var code: DiagnosticCode
    public var message: String
    public var span: Span
    /// A concrete fix, shown as `help:` under the caret.
    public var help: String?
    /// Other places that explain this one ("first defined here").
    public var notes: [(span: Span, message: String)]

    public var severity: Severity { code.severity }

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
struct DiagnosticSink {
    static let maxErrors = 50
    private static let keep = maxErrors + 1
    private(set) var items: [Diagnostic] = []
    private(set) var errorCount = 0
    private(set) var truncated = false

    mutating func add(_ d: Diagnostic) {
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
