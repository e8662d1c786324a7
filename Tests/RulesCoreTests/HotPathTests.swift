import Foundation
import Testing
@testable import RulesCore

/// The engine's fast paths (docs/PERFORMANCE.md) each checked against the
/// plain way of doing the same thing, on inputs chosen to hit their edges.
@Suite("Fast paths")
struct HotPathTests {
    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 11
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    @Test("the id table finds every key: short, long, sharing a prefix, with zero bytes, across growth")
    func byteTable() {
        var keys: [[UInt8]] = [[], [0], [0, 0], Array("a".utf8), Array("a".utf8) + [0], Array("c0008271".utf8),
                               Array("c0008271x".utf8), Array("c0008271y".utf8), Array("c0008271xx".utf8)]
        var rng = Rng(state: 7)
        for _ in 0..<3000 {
            keys.append((0..<rng.below(24)).map { _ in [UInt8(0), 0x22, 0x63, 0x30, 0x31, 0xFF][rng.below(6)] })
        }
        let table = ByteTable()
        var ids: [[UInt8]: Int] = [:]
        for k in keys {
            let (id, isNew) = k.withUnsafeBufferPointer { table.intern($0) }
            #expect(isNew == (ids[k] == nil))
            if let old = ids[k] { #expect(old == id) } else { ids[k] = id }
        }
        #expect(table.count == ids.count)
        for (k, id) in ids {
            #expect(k.withUnsafeBufferPointer { table.find($0) } == id)
            #expect(Array(table.key(id)) == k)
        }
        #expect(Array("c0008271z".utf8).withUnsafeBufferPointer { table.find($0) } == nil)
        let sorted = table.sortedIds().map { Array(table.key($0)) }
        #expect(sorted == ids.keys.sorted { $0.lexicographicallyPrecedes($1) })
    }

    /// What a window buffer must answer, kept the obvious way.
    struct ModelBuffer {
        var entries: [(Int64, Double)] = []
        let longest: Int64, cap: Int?
        mutating func push(_ t: Int64, _ v: Double) {
            entries.removeAll { $0.0 <= t - longest }
            if let cap { while entries.count >= cap && !entries.isEmpty { entries.removeFirst() } }
            if cap != 0 { entries.append((t, v)) }
        }
        func aggregate(_ now: Int64, _ window: Int64) -> (Int, Double) {
            let inside = entries.filter { $0.0 > now - window && $0.0 <= now }
            return (inside.count, inside.reduce(0) { $0 + $1.1 })
        }
    }

    @Test("window buffers, inline rings and lists alike, answer as the model does", arguments: [nil, 0, 1, 2, 8, 9] as [Int?])
    func windowBuffers(cap: Int?) {
        var rng = Rng(state: UInt64(cap ?? 99) + 1)
        let buffer = WindowBuffer(longestWindow: 50, cap: cap)
        var models = [ModelBuffer](repeating: ModelBuffer(longest: 50, cap: cap), count: 5)
        for _ in models.indices { buffer.addPerson() }
        var clock = [Int64](repeating: 0, count: 5)
        for _ in 0..<2000 {
            let p = rng.below(5)
            clock[p] += Int64(rng.below(20))
            let v = Double(rng.below(10))
            let window = Int64(1 + rng.below(50))
            let got = buffer.aggregate(person: p, now: clock[p], window: window)
            let want = models[p].aggregate(clock[p], window)
            #expect(got.count == want.0 && got.sum == want.1)
            buffer.push(person: p, time: clock[p], value: v)
            models[p].push(clock[p], v)
            #expect(buffer.times(person: p) == models[p].entries.map(\.0))
        }
    }

    @Test("the fixed-shape time reader agrees with the general one")
    func timestamps() {
        var rng = Rng(state: 3)
        let alphabet = Array("0123456789-T:Z".utf8)
        var checked = 0
        for _ in 0..<20000 {
            // Mostly well-formed times with random digits, some bytes swapped.
            var s = Array(String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", 1600 + rng.below(800), rng.below(14),
                                 rng.below(33), rng.below(26), rng.below(62), rng.below(62)).utf8)
            if rng.below(4) == 0 { s[rng.below(s.count)] = alphabet[rng.below(alphabet.count)] }
            s.withUnsafeBufferPointer { b in
                if let fast = Timestamp.parseUTCSeconds(b) {
                    #expect(fast == Timestamp.parseGeneral(b))
                    checked += 1
                } else {
                    #expect(Timestamp.parseGeneral(b) == nil || s.count != 20 || b[10] != 0x54)
                }
            }
        }
        #expect(checked > 1000)
    }

    @Test("a string word is plain exactly up to its first special byte")
    func specialBytes() {
        var rng = Rng(state: 11)
        let special: (UInt8) -> Bool = { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 || $0 >= 0x80 }
        for _ in 0..<50000 {
            var bytes = (0..<8).map { _ in UInt8(0x20 + rng.below(0x5F)) }
            for _ in 0..<rng.below(3) { bytes[rng.below(8)] = UInt8(rng.below(256)) }
            let w = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).littleEndian }
            let mask = EventParser.specialBytes(w)
            let first = bytes.firstIndex(where: special)
            #expect((mask == 0) == (first == nil))
            if let first { #expect(mask.trailingZeroBitCount >> 3 == first) }
        }
    }

    @Test("strings with escapes or special bytes at every offset are read exactly")
    func stringsAtEveryOffset() throws {
        // (as written in the JSON line, as written in the policy)
        let cases = [(#"\""#, #"\""#), (#"\\"#, #"\\"#), (#"\n"#, #"\n"#), ("é", "é"), (#"\u0041"#, "A"), ("b", "b")]
        for offset in 0..<18 {
            let padding = String(repeating: "a", count: offset)
            for (json, policy) in cases {
                let program = try compileOrFail("event e { s: string }\ne where s == \"\(padding)\(policy)z\" → +1\n")
                let line = #"{"citizen":"p","type":"e","time":"2026-01-01","s":"\#(padding)\#(json)z"}"#
                let engine = Engine(program: program)
                let (summary, rejections) = EventStream.run(engine, text: line)
                #expect(summary.applied == 1, "\(rejections)")
                #expect(engine.state(of: "p", at: 0)?.score == 1, "offset \(offset), \(json)")
            }
            let program = try compileOrFail("event e { s: string }\n")
            let control = #"{"citizen":"p","type":"e","time":"2026-01-01","s":"\#(padding)"# + "\u{01}\"}"
            let (summary, rejections) = EventStream.run(Engine(program: program), text: control)
            #expect(summary.rejected == 1)
            #expect(rejections.first?.reason.contains("control character") == true)
        }
    }

    @Test("looking ahead across buffer refills sees exactly the lines the reader will return")
    func lookahead() throws {
        var rng = Rng(state: 5)
        let lines = (0..<500).map { i in "\(i):" + String(repeating: "x", count: rng.below(90)) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ahead-\(UUID().uuidString)").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let reader = LineReader(fd: fd, capacity: 64)
        var ahead = LineReader.Lookahead()
        var index = 0, seenAhead = 0
        while let line = reader.next() {
            #expect(String(decoding: line, as: UTF8.self) == lines[index])
            ahead.lead -= 1
            while ahead.lead < 3, let next = reader.advance(&ahead) {
                #expect(String(decoding: next, as: UTF8.self) == lines[index + ahead.lead])
                seenAhead += 1
            }
            index += 1
        }
        #expect(index == lines.count)
        #expect(seenAhead > 100)
    }
}
