// Reads events (NDJSON, one per line) from stdin and prints each decision
// as it changes: a flag, denial or grant that starts or ends for someone,
// with the rule behind it.
//
//   swift run decisions ../../rules/citizen.rules < ../citizen.ndjson
import Foundation
import RulesCore

guard CommandLine.arguments.count >= 2 else {
    FileHandle.standardError.write(Data("usage: decisions POLICY.rules... < events.ndjson\n".utf8))
    exit(2)
}
let policy: Policy
do {
    policy = try Policy.load(files: Array(CommandLine.arguments.dropFirst()))
} catch {
    FileHandle.standardError.write(Data("\(error)".utf8))
    exit(1)
}
// Explaining: the engine keeps each person's events, so every decision can
// name the rule and the event behind it.
let engine = RulesEngine(policy: policy, explaining: true)

var lineNumber = 0
while let line = readLine() {
    lineNumber += 1
    // Who the line is about, and their state before it.
    let people = Set(engine.people)
    var before: [String: PersonState] = [:]
    for person in people { before[person] = engine.state(of: person) }
    let (person, outcome) = engine.apply(line: line)
    switch outcome {
    case .rejected(let reason):
        print("line \(lineNumber): rejected: \(reason)")
    case .applied:
        guard let person, let after = engine.state(of: person) else { continue }
        let old = before[person]
        let explanation = engine.explanation(of: person)
        func changes(_ label: String, _ old: [String], _ new: [String]) {
            for name in new where !old.contains(name) { print("\(person): \(label) \(name)  \(why(name))") }
            for name in old where !new.contains(name) { print("\(person): no longer \(label) \(name)") }
        }
        /// The rule behind a decision, from the engine's explanation.
        func why(_ name: String) -> String {
            guard let item = explanation?.items.first(where: { $0.name == name }) else { return "" }
            if let setter = item.setBy.last { return "(set by \(setter.rule.file):\(setter.rule.line): \(setter.rule.text))" }
            if let holder = item.heldBy.first { return "(held by \(holder.rule.file):\(holder.rule.line): \(holder.rule.text), because \(holder.because))" }
            return ""
        }
        changes("flagged", old?.flags ?? [], after.flags)
        changes("denied", old?.denied ?? [], after.denied)
        changes("granted", old?.granted ?? [], after.granted)
    }
}
print("final scores:")
for state in engine.report() { print("  \(state.person): \(state.score)") }
