import Foundation
import Testing
@testable import RulesCore

@Suite("Timestamps")
struct TimestampTests {
    static let valid: [(String, String)] = [
        ("2026-01-05", "2026-01-05T00:00:00Z"),
        ("2026-01-05T08:00:00Z", "2026-01-05T08:00:00Z"),
        ("2026-01-05t08:00:00z", "2026-01-05T08:00:00Z"),
        ("2026-01-05 08:00:00Z", "2026-01-05T08:00:00Z"),
        ("2026-01-05T08:00Z", "2026-01-05T08:00:00Z"),
        ("2026-01-05T10:00:00+02:00", "2026-01-05T08:00:00Z"),
        ("2026-01-05T03:30:00-0430", "2026-01-05T08:00:00Z"),
        ("2026-01-05T10:00:00+02", "2026-01-05T08:00:00Z"),
        ("2026-01-05T08:00:00.250Z", "2026-01-05T08:00:00.25Z"),
        ("2024-02-29", "2024-02-29T00:00:00Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
        ("1969-12-31T23:59:59Z", "1969-12-31T23:59:59Z"),
        ("2000-03-01", "2000-03-01T00:00:00Z"),
        // The edges of the years a time may name, and microseconds.
        ("0001-01-01", "0001-01-01T00:00:00Z"),
        ("0001-01-01T14:00:00+14:00", "0001-01-01T00:00:00Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
        ("9999-12-31T09:59:59-14:00", "9999-12-31T23:59:59Z"),
        ("2026-01-05T08:00:00.1234567Z", "2026-01-05T08:00:00.123456Z"),
    ]

    @Test(arguments: valid)
    func roundTrip(_ input: String, _ formatted: String) throws {
        let t = try #require(Timestamp.parse(input))
        #expect(Timestamp.format(t) == formatted)
    }

    static let invalid = [
        "", "2026", "2026-1-5", "2026-13-01", "2026-02-29", "2026-04-31", "2026-01-05T08:00:00",
        "2026-01-05T24:00:00Z", "2026-01-05T08:60:00Z", "2026-01-05T08:00:60Z", "2026-01-05T08:00:00+25:00",
        "2026-01-05T08:00:00Zjunk", "yesterday", "2026-01-05T08:00:00.Z", "0000-01-01", "10000-01-01", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+00:01",
    ]

    @Test(arguments: invalid)
    func rejects(_ input: String) {
        #expect(Timestamp.parse(input) == nil)
    }

    @Test("days from civil agrees with the epoch arithmetic")
    func civil() {
        #expect(Timestamp.daysFromCivil(year: 2026, month: 1, day: 1) == 20454)
        for days in stride(from: -800_000, through: 800_000, by: 997) {
            let (y, m, d) = Timestamp.civil(fromDays: days)
            #expect(Timestamp.daysFromCivil(year: y, month: m, day: d) == days)
        }
    }
}

@Suite("NDJSON events")
struct EventParserTests {
    /// Parses one line against a policy that reads `n`, `s` and `b`; returns
    /// the fields or the rejection reason.
    static func parse(_ line: String) -> Result<(String, String?, Int64, [String: String]), TestFailure> {
        let program = try! compileOrFail("a where n > 0 and s == \"x\" and b → +1")
        let engine = Engine(program: program)
        var parser = EventParser(program: program)
        defer { parser.deallocate() }
        engine.beginEvent(line: 1)
        var bytes = Array(line.utf8)
        return bytes.withUnsafeMutableBufferPointer { buffer in
            switch parser.parse(UnsafeBufferPointer(buffer), into: .passUnretained(engine.context)) {
            case .rejected(let reason): return .failure(TestFailure(reason))
            case .event(let e):
                var fields: [String: String] = [:]
                for (i, name) in program.policy.fields.enumerated() {
                    switch engine.context.fields.value(i) {
                    case .number(let x)?: fields[name] = "\(x)"
                    case .bool(let b)?: fields[name] = "\(b)"
                    case .string(let s)?: fields[name] = String(decoding: UnsafeBufferPointer(start: s.base, count: s.count), as: UTF8.self)
                    default: break
                    }
                }
                let type = e.event.map { program.policy.events[$0].name }
                return .success((String(decoding: e.person, as: UTF8.self), type, e.time, fields))
            }
        }
    }

    static let numbers: [(String, Double)] = [
        ("0", 0), ("-0", -0.0), ("5", 5), ("2.5", 2.5), ("-12.75", -12.75), ("1e3", 1000), ("1E-2", 0.01),
        ("0.1", 0.1), ("123456789012345678901234567890", 123456789012345678901234567890.0),
        ("0.30000000000000004", 0.30000000000000004), ("9007199254740993", 9007199254740992),
        ("1.7976931348623157e308", 1.7976931348623157e308), ("5e-324", Double.leastNonzeroMagnitude),
    ]

    @Test(arguments: numbers)
    func number(_ text: String, _ expected: Double) throws {
        let r = try Self.parse(#"{"citizen":"p","type":"a","time":"2026-01-01","n":\#(text)}"#).get()
        #expect(r.3["n"] == "\(expected)")
    }

    @Test("strings: escapes, surrogate pairs, UTF-8; spaces in the type are underscores")
    func strings() throws {
        let r = try Self.parse(#"{"citizen":"p\u00e9\ud83d\ude00","type":"a","time":"2026-01-01","s":"q\"\\\/\b\f\n\r\t"}"#).get()
        #expect(r.0 == "pé😀")
        #expect(r.3["s"] == "q\"\\/\u{8}\u{c}\n\r\t")
        let spaced = try Self.parse(#"{"citizen":"p","type":"unpaid  debt","time":"2026-01-01"}"#).get()
        #expect(spaced.1 == nil)  // not an event of this policy, but parsed
    }

    static let rejected: [(String, String)] = [
        ("", "empty line"),
        ("[]", "not a JSON object"),
        (#"{"citizen":"p","type":"a"}"#, #"missing "time""#),
        (#"{"type":"a","time":"2026-01-01"}"#, #"missing "citizen""#),
        (#"{"citizen":"","type":"a","time":"2026-01-01"}"#, "must not be empty"),
        (#"{"citizen":"p","type":"a","time":"2026-01-01","n":1,"n":2}"#, #"duplicate key "n""#),
        (#"{"citizen":"p","citizen":"q","type":"a","time":"2026-01-01"}"#, #"duplicate key "citizen""#),
        (#"{"citizen":"p","type":"a","time":"2026-01-01","n":[1,2]}"#, "is an array"),
        (#"{"citizen":"p","type":"a","time":"2026-01-01","n":1e999}"#, "too large"),
        (#"{"citizen":"p","type":"a","time":"2026-01-01","n":01}"#, "leading zero"),
        (#"{"citizen":"p","type":"a","time":"2026-01-01","n":.5}"#, "expected a value"),
        (#"{"citizen":"p","type":"a","time":"2026-01-01","s":"\ud83d"}"#, "unpaired surrogate"),
        (#"{"citizen":"p","type":"a","time":"2026-01-01","s":"\x"}"#, "unknown escape"),
        (#"{"citizen":"p","type":"a","time":"2026-01-01",}"#, "expected a key"),
        (#"{"citizen":"p","type":"a","time":"2026-01-01"}}"#, "unexpected text after the object"),
        (#"{"citizen":"p","type":"a","time":1767225600}"#, #""time" must be a string"#),
        (#"{"citizen":"p","type":true,"time":"2026-01-01"}"#, #""type" must be a string"#),
        (#"{"citizen":"p","type":"a","time":"2026-01-01","x":{"deep":[[[{}]]]}}"#, "is an object"),
        (#"{"citizen":"p","type":"a","time":"2026-01-01","x":tru}"#, "expected a value"),
    ]

    @Test(arguments: rejected)
    func rejects(_ line: String, _ reason: String) {
        guard case .failure(let f) = Self.parse(line) else {
            Issue.record("accepted: \(line)")
            return
        }
        #expect(f.description.contains(reason), "\(f.description)")
    }

    @Test("invalid UTF-8 in a string is rejected with its column")
    func invalidUTF8() {
        let program = try! compileOrFail("a → +1")
        let engine = Engine(program: program)
        var parser = EventParser(program: program)
        defer { parser.deallocate() }
        var bytes = Array(#"{"citizen":"p"#.utf8) + [0xC3, 0x28] + Array(#"","type":"a","time":"2026-01-01"}"#.utf8)
        let outcome = bytes.withUnsafeMutableBufferPointer { parser.parse(UnsafeBufferPointer($0), into: .passUnretained(engine.context)) }
        guard case .rejected(let reason) = outcome else { Issue.record("accepted"); return }
        #expect(reason == "invalid UTF-8 at column 14")
    }

    @Test("a 4 MB line is read whole")
    func longLine() throws {
        let big = String(repeating: "x", count: 4 << 20)
        let (out, rejections) = try runPolicy("a where s != \"\" → +1", #"{"citizen":"p","type":"a","time":"2026-01-01","s":"\#(big)"}"# + "\n")
        #expect(rejections.isEmpty)
        #expect(out == #"{"citizen":"p","score":1,"flags":[],"denied":[],"granted":[]}"# + "\n")
    }

    @Test("CRLF line ends and a missing final newline are fine")
    func lineEnds() throws {
        let (out, rejections) = try runPolicy("a → +1", "{\"citizen\":\"p\",\"type\":\"a\",\"time\":\"2026-01-01\"}\r\n{\"citizen\":\"p\",\"type\":\"a\",\"time\":\"2026-01-02\"}")
        #expect(rejections.isEmpty)
        #expect(out == #"{"citizen":"p","score":2,"flags":[],"denied":[],"granted":[]}"# + "\n")
    }

    @Test("one thread tells its progress at every multiple of the interval")
    func progressOneThread() throws {
        let program = try compileOrFail("event e {}\ne → +1\n")
        let events = (0..<5_500).map { #"{"citizen":"p\#($0 % 30)","type":"e","time":"2026-01-01"}"# }.joined(separator: "\n")
        var told: [Int] = []
        _ = EventStream.run(Engine(program: program), reader: LineReader(bytes: Array(events.utf8)), asOf: nil,
                            progressInterval: 1000, onProgress: { told.append($0) }) { _, _ in }
        #expect(told == [1000, 2000, 3000, 4000, 5000])
    }
}

@Suite("Byte tables and JSON output")
struct ByteTableTests {
    @Test("interning gives dense ids and finds them again after growing")
    func intern() {
        let table = ByteTable()
        for i in 0..<10_000 { #expect(table.intern("key\(i)") == i) }
        for i in stride(from: 0, to: 10_000, by: 7) {
            var k = "key\(i)"
            let found = k.withUTF8 { table.find($0) }
            #expect(found == i)
            #expect(table.keyString(i) == "key\(i)")
        }
        var missing = "nope"
        #expect(missing.withUTF8 { table.find($0) } == nil)
        #expect(table.intern("") == 10_000)
    }

    @Test("JSON quoting escapes quotes, backslashes and control characters only")
    func quoting() {
        #expect(JSONWriter.quoted("a/b \"c\" \\ é\u{1}\u{7f}\n") == #""a/b \"c\" \\ é\u0001\#u{7f}\n""#)
    }
}

@Suite("Window buffers")
struct WindowBufferTests {
    @Test("entries older than the longest window are dropped; counts use (now − window, now]")
    func eviction() {
        let b = WindowBuffer(longestWindow: 10, cap: nil)
        b.addPerson()
        for t in [1, 2, 5, 11, 12] { b.push(person: 0, time: Int64(t), value: Double(t)) }
        #expect(b.aggregate(person: 0, now: 12, window: 10).count == 3)   // 5, 11, 12
        #expect(b.aggregate(person: 0, now: 12, window: 10).sum == 28)
        #expect(b.aggregate(person: 0, now: 12, window: 1).count == 1)
        #expect(b.aggregate(person: 0, now: 30, window: 10).count == 0)
    }

    @Test("a counted rule's buffer keeps only N−1 entries")
    func cap() {
        let b = WindowBuffer(longestWindow: 1000, cap: 2)
        b.addPerson()
        for t in 1...50 { b.push(person: 0, time: Int64(t), value: 1) }
        #expect(b.aggregate(person: 0, now: 50, window: 1000).count == 2)
    }
}

@Suite("Parallel runs")
struct ParallelStreamTests {
    /// Runs `events` with `jobs` threads; the report, the rejections and the summary.
    static func run(_ policy: String, _ events: String, jobs: Int, asOf: Int64? = nil,
                    personKey: PersonKey = .citizen) throws -> (String, [String], RunSummary) {
        let program = try compileOrFail(policy)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("par-\(UUID().uuidString).ndjson").path
        try events.write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var rejected: [String] = []
        let result = try ParallelStream.run(program: program, personKey: personKey, fd: fd, jobs: jobs, asOf: asOf) { r, bytes in
            rejected.append("\(r.line): \(r.reason) | \(String(decoding: bytes, as: UTF8.self))")
        }.get()
        var out: [UInt8] = []
        ParallelStream.writeReport(result, asOf: asOf) { out += $0 }
        return (String(decoding: out, as: UTF8.self), rejected, result.summary)
    }

    @Test("person keys of every length the look-ahead and the router treat apart (1 to 20 bytes, escaped, not ASCII) route as one thread reads them",
          arguments: ["u", "id2", "driver", "subjects", "customer1", "account_no1", "account_no12", "account_holder_id_20", #"we"ird"#, "ügyfél"])
    func personKeys(_ name: String) throws {
        let key = try PersonKey.named(name).get()
        let policy = try ExplainTests.text("rules/citizen.rules")
        let quoted = JSONWriter.quoted(name)
        // The key first (the fast layout) in most lines, last in some.
        let lines = TraceTests.generated(seed: 21, count: 3000).split(separator: "\n").enumerated().map { (k, line) -> String in
            let renamed = line.replacingOccurrences(of: #"{"citizen":"#, with: "{\(quoted):")
            guard k % 5 == 0, let comma = renamed.range(of: #"",""#) else { return renamed }
            // {KEY:"p3","type":…} → {"type":…,KEY:"p3"}
            let id = renamed[renamed.index(renamed.startIndex, offsetBy: quoted.count + 3)..<comma.lowerBound]
            let rest = renamed[renamed.index(comma.lowerBound, offsetBy: 2)...].dropLast()
            return "{" + rest + ",\(quoted):\"" + id + "\"}"
        }
        let stream = lines.joined(separator: "\n") + "\n"
        let one = try Self.run(policy, stream, jobs: 1, personKey: key)
        let two = try Self.run(policy, stream, jobs: 2, personKey: key)
        let expected = try Self.run(policy, TraceTests.generated(seed: 21, count: 3000), jobs: 1)
        #expect(one.1.isEmpty, "\(one.1.prefix(3))")
        #expect(one.0 == expected.0.replacingOccurrences(of: #"{"citizen":"#, with: "{\(quoted):"))
        #expect(two.0 == one.0)
        #expect(two.1 == one.1)
    }

    @Test("any number of threads gives the output of one", arguments: [2, 3, 7])
    func sameAsOneThread(_ jobs: Int) throws {
        let policy = try ExplainTests.text("rules/citizen.rules")
        // A generated stream with bad lines, blank lines, CRLF, escaped ids
        // and keys in another order mixed in.
        var lines = TraceTests.generated(seed: 11, count: 4000).split(separator: "\n").map(String.init)
        lines.insert("not json", at: 17)
        lines.insert("", at: 300)
        lines.insert(#"{"type":"littering","citizen":"p3","time":"2026-12-30"}"#, at: lines.count)
        lines.insert(#"{"citizen":"p\u0034","type":"littering","time":"2026-12-30"}"#, at: lines.count)
        lines.insert(#"{"citizen":"p5","type":"speeding","time":"2020-01-01","speed":1,"limit":2}"#, at: lines.count)
        let events = lines.joined(separator: "\r\n") + "\r\n"
        let one = try Self.run(policy, events, jobs: 1)
        let many = try Self.run(policy, events, jobs: jobs)
        #expect(many.0 == one.0)
        #expect(many.1 == one.1)
        #expect(many.2.read == one.2.read && many.2.applied == one.2.applied && many.2.rejected == one.2.rejected)
        #expect(many.2.blank == 1 && many.2.rejected == 4, "\(many.1)")
        #expect(one.0 == (try runPolicy(policy, events).output))
        let asOf = Timestamp.parse("2026-06-01")
        #expect(try Self.run(policy, events, jobs: jobs, asOf: asOf).0 == (try Self.run(policy, events, jobs: 1, asOf: asOf).0))
    }

    @Test("progress is told from one worker, in whole intervals of lines, up to the last one passed")
    func progress() throws {
        let program = try compileOrFail("event e {}\ne → +1\n")
        let events = (0..<25_000).map { #"{"citizen":"p\#($0 % 300)","type":"e","time":"2026-01-01"}"# }.joined(separator: "\n") + "\n"
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("par-\(UUID().uuidString).ndjson").path
        try events.write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let told = Told()
        _ = ParallelStream.run(program: program, fd: fd, jobs: 2, progressInterval: 1000, onProgress: { told.add($0) }) { _, _ in }
        let values = told.values
        #expect(values.last == 25_000)
        #expect(values.allSatisfy { $0 % 1000 == 0 })
        #expect(zip(values, values.dropFirst()).allSatisfy { $0 < $1 })
    }

    final class Told: @unchecked Sendable {
        private var list: [Int] = []
        private let lock = NSLock()
        func add(_ n: Int) { lock.lock(); list.append(n); lock.unlock() }
        var values: [Int] { lock.lock(); defer { lock.unlock() }; return list }
    }

    @Test("a report of many people merges in byte order of ids, across many batches per thread", arguments: [2, 3])
    func manyPeopleMerged(_ jobs: Int) throws {
        let policy = "score starts at 1000\nevent e { n: number }\ne → +n\nwhile score > 1005 → flag high\n"
        // 9,001 people: more than a few batches of each thread's part; ids of
        // different lengths that share their first 8 bytes, and an id whose
        // bytes sort differently from its digits.
        var lines: [String] = []
        for i in 0...9_000 {
            let id = i % 3 == 0 ? "citizen-\(i)" : "citizen-\(String(repeating: "0", count: i % 5))\(i)"
            lines.append(#"{"citizen":"\#(id)","type":"e","time":"2026-01-01","n":\#(i % 11)}"#)
        }
        lines.append(#"{"citizen":"citizen-é","type":"e","time":"2026-01-02","n":1}"#)
        let events = lines.joined(separator: "\n") + "\n"
        let one = try Self.run(policy, events, jobs: 1)
        let many = try Self.run(policy, events, jobs: jobs)
        #expect(many.0 == one.0)
        let ids = one.0.split(separator: "\n").map { line in
            Array(line.split(separator: "\"")[3].utf8)
        }
        #expect(ids.count == 9_002)
        #expect(zip(ids, ids.dropFirst()).allSatisfy { $0.lexicographicallyPrecedes($1) })
        #expect(one.0.contains(#"{"citizen":"citizen-10","score":1010,"flags":["high"]"#))
    }

    @Test("lines longer than a read buffer, a last line without a newline, and many blocks")
    func blockEdges() throws {
        let policy = "event e { note: string }\ne → +1\n"
        let long = String(repeating: "x", count: 5 << 20)  // longer than many 512 KiB blocks
        var lines: [String] = []
        for i in 0..<60_000 { lines.append(#"{"citizen":"p\#(i % 97)","type":"e","time":"2026-01-01","note":"n"}"#) }
        lines.insert(#"{"citizen":"long","type":"e","time":"2026-01-01","note":"\#(long)"}"#, at: 30_000)
        lines.insert(#"{"citizen":"bad","type":"e","time":"2026-01-01","note":"\#(long)}"#, at: 40_000)
        let events = lines.joined(separator: "\n")  // no newline at the end
        let one = try Self.run(policy, events, jobs: 1)
        let two = try Self.run(policy, events, jobs: 2)
        #expect(two.0 == one.0)
        #expect(two.2.read == 60_002 && two.2.applied == 60_001 && two.2.rejected == 1)
        #expect(two.1.count == 1 && two.1[0].hasPrefix("40001: "))
        #expect(two.0.contains(#"{"citizen":"long","score":1"#))
    }
}
