// The library's typed path against `rules run` (issue 14): the stream's
// events, made into `Event` values before the clock starts, applied one by
// one with `RulesEngine.apply(_:)`, then the report. The report must be
// byte for byte `rules run`'s; the time is from the first event to the
// report written (scripts/bench.sh divides it into `rules run`'s).
//
//   library POLICY.rules EVENTS.ndjson REPORT.ndjson [single|batched]
//     → "events N single SECONDS batched SECONDS" (one of them when named,
//       for profiling)
import Foundation
import RulesCore

let args = CommandLine.arguments
guard args.count == 4 || args.count == 5 else {
    FileHandle.standardError.write(Data("usage: library POLICY.rules EVENTS.ndjson REPORT.ndjson [single|batched]\n".utf8))
    exit(2)
}
let policy = try Policy.load(files: [args[1]])
let text = try String(contentsOfFile: args[2], encoding: .utf8)
let expected = try String(contentsOfFile: args[3], encoding: .utf8)

/// A JSON scalar of a stream line (JSONDecoder tells booleans from numbers).
enum Scalar: Decodable {
    case bool(Bool), number(Double), string(String)
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else { self = .string(try c.decode(String.self)) }
    }
    var text: String { if case .string(let s) = self { return s }; fatalError("not a string") }
}

// The events as an embedder has them: typed values, not text.
var events: [Event] = []
let decoder = JSONDecoder()
for line in text.split(separator: "\n") {
    let object = try decoder.decode([String: Scalar].self, from: Data(line.utf8))
    var fields: [String: FieldValue] = [:]
    for (key, value) in object where !["citizen", "type", "time"].contains(key) {
        switch value {
        case .bool(let b): fields[key] = .bool(b)
        case .number(let n): fields[key] = .number(n)
        case .string(let s): fields[key] = .string(s)
        }
    }
    guard let event = Event(person: object["citizen"]!.text, type: object["type"]!.text,
                            at: object["time"]!.text, fields: fields) else {
        fatalError("a time that does not parse: \(line)")
    }
    events.append(event)
}

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// Applies the events, 1,000 at a time as they would arrive: each batch is
/// made afresh just before it is applied (so it is in the cache, as what
/// just arrived is), and only applying is timed. The report must be
/// `rules run`'s; its time is added.
func measure(_ apply: (RulesEngine, [Event]) -> Void) -> Double {
    let engine = RulesEngine(policy: policy)
    var seconds = 0.0
    var k = 0
    while k < events.count {
        let end = min(k + 1000, events.count)
        let batch = events[k..<end].map {
            Event(person: $0.person, type: $0.type, time: $0.time,
                  fields: Dictionary(uniqueKeysWithValues: $0.fields.map { ($0.key, $0.value) }))
        }
        let start = now()
        apply(engine, batch)
        seconds += now() - start
        k = end
    }
    let start = now()
    let report = engine.reportNDJSON()
    seconds += now() - start
    guard report == expected else {
        FileHandle.standardError.write(Data("the library's report differs from rules run's\n".utf8))
        exit(1)
    }
    return seconds
}

let only = args.count == 5 ? args[4] : nil

// One at a time, as a service applies what arrives.
let single = only == "batched" ? 0 : measure { engine, batch in
    for event in batch {
        if case .rejected(let reason) = engine.apply(event) { fatalError("rejected: \(reason)") }
    }
}
// A batch at a time (`apply(_: [Event])`, which looks ahead as `rules run` does).
let batched = only == "single" ? 0 : measure { engine, batch in
    for outcome in engine.apply(batch) {
        if case .rejected(let reason) = outcome { fatalError("rejected: \(reason)") }
    }
}
print("events \(events.count) single \(single) batched \(batched)")
