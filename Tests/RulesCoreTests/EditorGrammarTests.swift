import Foundation
import Testing

/// editors/rules.tmLanguage.json, applied the way a TextMate engine does
/// (the earliest match on a line wins, ties go to the first pattern;
/// `begin`/`end` for strings; lookbehinds see the whole line) with
/// NSRegularExpression standing in for
/// Oniguruma — the grammar uses only what both understand.
@Suite("TextMate grammar")
struct EditorGrammarTests {
    struct Rule {
        var scope: String
        var match: NSRegularExpression?
        var begin: String?
        var end: String?
    }

    static func rules() throws -> [Rule] {
        let data = try Data(contentsOf: Repo.root.appendingPathComponent("editors/rules.tmLanguage.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(json["scopeName"] as? String == "source.rules")
        let repository = try #require(json["repository"] as? [String: [String: Any]])
        let order = try #require(json["patterns"] as? [[String: String]]).compactMap { $0["include"]?.dropFirst() }
        return try order.map { name in
            let r = try #require(repository[String(name)])
            let scope = try #require(r["name"] as? String)
            if let m = r["match"] as? String {
                return Rule(scope: scope, match: try NSRegularExpression(pattern: m, options: [.anchorsMatchLines]))
            }
            return Rule(scope: scope, begin: r["begin"] as? String, end: r["end"] as? String)
        }
    }

    /// (text, scope) for every scoped token of a line.
    static func tokenize(_ line: String, _ rules: [Rule]) -> [(String, String)] {
        let ns = line as NSString
        var tokens: [(String, String)] = []
        var i = 0
        while i < ns.length {
            var best: (start: Int, end: Int, scope: String)? = nil
            for rule in rules {
                if let regex = rule.match,
                   let m = regex.firstMatch(in: line, options: [.withTransparentBounds], range: NSRange(location: i, length: ns.length - i)) {
                    if best == nil || m.range.location < best!.start { best = (m.range.location, m.range.location + m.range.length, rule.scope) }
                } else if let begin = rule.begin, let end = rule.end {
                    let r = ns.range(of: begin, range: NSRange(location: i, length: ns.length - i))
                    guard r.location != NSNotFound, best == nil || r.location < best!.start else { continue }
                    var j = r.location + r.length
                    while j < ns.length, ns.substring(with: NSRange(location: j, length: 1)) != end {
                        j += ns.substring(with: NSRange(location: j, length: 1)) == "\\" ? 2 : 1
                    }
                    best = (r.location, min(ns.length, j + 1), rule.scope)
                }
            }
            guard let b = best, b.end > b.start else { break }
            tokens.append((ns.substring(with: NSRange(location: b.start, length: b.end - b.start)), b.scope))
            i = b.end
        }
        return tokens
    }

    @Test("the shipped policies tokenise: keywords, effects, arrows, durations, strings, times and comments")
    func shippedPolicies() throws {
        let rules = try Self.rules()
        var scopes: [String: Set<String>] = [:]
        for name in ["citizen", "citizen.test", "moderation", "moderation.test", "telematics", "telematics.test"] {
            let text = try String(contentsOf: Repo.root.appendingPathComponent("rules/\(name).rules"), encoding: .utf8)
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                let tokens = Self.tokenize(String(line), rules)
                for (token, scope) in tokens { scopes[scope, default: []].insert(token) }
                // A comment is one token to the end of the line, and nothing
                // inside it is scoped as code.
                if let hash = line.firstIndex(of: "#"), !line[..<hash].contains("\"") {
                    #expect(tokens.last?.1 == "comment.line.number-sign.rules", "\(line)")
                }
            }
        }
        #expect(scopes["keyword.control.rules"]?.isSuperset(of: ["while", "where", "within", "event", "let", "test", "expect"]) == true)
        #expect(scopes["keyword.other.effect.rules"]?.isSuperset(of: ["deny", "flag", "grant", "clear", "allow"]) == true)
        #expect(scopes["keyword.operator.arrow.rules"] == ["→"])
        #expect(scopes["constant.numeric.duration.rules"]?.contains("30 days") == true)
        #expect(scopes["string.quoted.double.rules"]?.contains("\"disabled\"") == true)
        #expect(scopes["constant.other.time.rules"]?.contains { $0.hasPrefix("2026-") } == true)
        #expect(scopes["support.function.rules"]?.contains("min") == true)
        #expect(scopes["storage.type.rules"]?.contains { $0.hasSuffix("number") } == true)
        // Names are not keywords: `low trust` and `fast lane` stay plain text.
        for keywordScope in ["keyword.control.rules", "keyword.other.effect.rules", "keyword.operator.logical.rules"] {
            #expect(scopes[keywordScope]?.isDisjoint(with: ["low", "trust", "fast", "lane", "debtor"]) == true)
        }
    }

    @Test("an event group's name is a type's name; an event declaration's is plain")
    func eventGroup() throws {
        let rules = try Self.rules()
        let group = Self.tokenize("event distracted driving = phone use, speeding  # both", rules)
        #expect(group.map(\.0) == ["event", "distracted driving", "=", "# both"])
        #expect(group[1].1 == "entity.name.type.group.rules")
        let declaration = Self.tokenize("event speeding { over: number }", rules)
        #expect(!declaration.contains { $0.1 == "entity.name.type.group.rules" })
    }

    @Test("`set score to` is an effect; `set` elsewhere is a word of a name")
    func setScore() throws {
        let rules = try Self.rules()
        let tokens = Self.tokenize("amnesty → set score to 1000", rules)
        #expect(tokens.map(\.0) == ["→", "set", "score", "1000"])
        #expect(tokens[1].1 == "keyword.other.effect.rules")
        #expect(!Self.tokenize("set up fee → -5", rules).contains { $0.0 == "set" })
        // `rule` before a name is a keyword; in an event's name it is not.
        #expect(Self.tokenize(#"rule "reckless" speeding → -5"#, rules).first?.1 == "keyword.control.rules")
        #expect(!Self.tokenize("rule violation → -5", rules).contains { $0.0 == "rule" })
        // `output` starting a declaration is a keyword; an event called so is not.
        #expect(Self.tokenize("output credit limit = score * 2", rules).first?.1 == "keyword.control.rules")
        #expect(!Self.tokenize("output produced → +1", rules).contains { $0.0 == "output" })
        #expect(!Self.tokenize("let low output = 3", rules).contains { $0.0 == "output" })
        #expect(Self.tokenize(#"attribute region = "unknown""#, rules).first?.1 == "keyword.control.rules")
        let set = Self.tokenize("purchase → set points to points + amount", rules)
        #expect(set.first { $0.0 == "set" }?.1 == "keyword.other.effect.rules", "\(set)")
    }

    @Test("a timed rule's own words: `after` a duration, `unless`, `every` and `without`")
    func timedRules() throws {
        let rules = try Self.rules()
        let after = Self.tokenize("30 days after fine issued unless fine paid → deny registration", rules)
        #expect(after.map(\.0) == ["30 days", "after", "unless", "→", "deny"], "\(after)")
        #expect(after[1].1 == "keyword.control.rules" && after[2].1 == "keyword.control.rules")
        let every = Self.tokenize("every 30 days without infraction → +1", rules)
        #expect(every.map(\.0) == ["every", "30 days", "without", "→", "+", "1"], "\(every)")
        // `after` elsewhere is a word of a name.
        #expect(!Self.tokenize("late after curfew → -5", rules).contains { $0.0 == "after" })
    }

    @Test("a line of every kind of token")
    func oneLine() throws {
        let tokens = Self.tokenize(#"3 speeding where zone == "a\"b" and not x >= 2.5 → deny travel for 90 days  # why"#, try Self.rules())
        #expect(tokens.map(\.0) == ["3", "where", "==", #""a\"b""#, "and", "not", ">=", "2.5", "→", "deny", "for", "90 days", "# why"])
    }
}
