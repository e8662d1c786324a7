#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RulesCore
import RulesTooling

/// What the fuzz targets check (scripts/fuzz.sh, Fuzz/FuzzTargets.swift),
/// as plain functions so that every input a fuzzer found is replayed by
/// the unit tests too (Tests/Fixtures/fuzz). Each returns the promise the
/// code broke, or nil; a crash or a sanitizer report is a finding as well.
package enum FuzzChecks {
    /// A policy: lexer, parser, checker, diagnostics (text and JSON), and
    /// its `test` blocks run.
    package static func policy(_ bytes: [UInt8]) -> String? {
        let text = String(decoding: bytes, as: UTF8.self)
        let result = PolicyCompiler.compile(text)
        let renderer = DiagnosticRenderer(sources: result.sources)
        _ = renderer.render(result.diagnostics)
        for d in result.diagnostics { _ = renderer.json(d) }
        if result.diagnostics.filter({ $0.severity == .error }).count > DiagnosticSink.maxErrors + 1 {
            return "more errors than the cap"
        }
        if result.program != nil { _ = PolicyTests.run(result, testsIn: 0) }
        return formatRoundTrip(text)
    }

    /// The formatter on a file that parses: formatting twice changes
    /// nothing, and the result parses to the same statements.
    package static func formatRoundTrip(_ text: String) -> String? {
        guard case .formatted(let once) = Formatter.format(text) else { return nil }
        guard case .formatted(let twice) = Formatter.format(once) else { return "the formatted file does not parse" }
        if twice != once { return "formatting is not idempotent" }
        func meaning(_ t: String) -> [String] {
            Parser.parse(SourceFile(name: "x", text: t), file: 0).statements.map(ASTDump.dump)
        }
        if meaning(once) != meaning(text) { return "formatting changed the meaning" }
        return nil
    }

    /// An NDJSON stream over `program`: every line applied or rejected, and
    /// the counts add up.
    package static func stream(_ bytes: [UInt8], program: Program) -> String? {
        let engine = Engine(program: program)
        var rejected = 0
        let summary = EventStream.run(engine, reader: LineReader(bytes: bytes), asOf: nil) { _, _ in rejected += 1 }
        var lines = 0, start = 0
        for (i, b) in bytes.enumerated() where b == 0x0A { lines += 1; start = i + 1 }
        if start < bytes.count { lines += 1 }
        if summary.read + summary.blank != lines { return "lines read \(summary.read + summary.blank) of \(lines)" }
        if summary.read != summary.applied + summary.rejected + summary.ignoredAfterAsOf { return "read ≠ applied + rejected" }
        if rejected != summary.rejected { return "a rejection was not reported" }
        var out: [UInt8] = []
        engine.writeReport { out.append(bytes: $0) }
        return nil
    }

    /// Bytes → events of one of `policies`: byte 0 picks the policy, then
    /// each group of 4 bytes is (event type, person, time step, field
    /// value); the last byte picks where a checkpoint cuts the run. The
    /// report of one thread, of two, and of the cut run must be identical.
    package static func engine(_ bytes: [UInt8], policies: [String]) -> String? {
        guard let first = bytes.first, !policies.isEmpty else { return nil }
        guard let program = PolicyCompiler.compile(policies[Int(first) % policies.count]).program else { return nil }
        let events = program.policy.events
        guard !events.isEmpty else { return nil }
        var time: Int64 = 1_767_225_600
        var lines: [String] = []
        var k = 1
        while k + 4 <= bytes.count {
            let event = events[Int(bytes[k]) % events.count]
            time += Int64(bytes[k + 2]) * Int64(bytes[k + 2]) * 97
            let type = event.name.replacing("_", with: " ")
            var line = #"{"citizen":"p\#(bytes[k + 1] % 7)","type":"\#(type)","time":"\#(Timestamp.format(time * Timestamp.perSecond))""#
            for (field, type) in event.declared ?? [] {
                let v = Int(bytes[k + 3]), name = program.policy.fields[field]
                switch type {
                case .number: line += #","\#(name)":\#(v * v - 100)"#
                case .bool: line += #","\#(name)":\#(v % 2 == 0)"#
                default: line += #","\#(name)":"v\#(v % 3)""#
                }
            }
            lines.append(line + "}")
            k += 4
        }
        func run(_ lines: ArraySlice<String>, into engine: Engine) {
            _ = EventStream.run(engine, reader: LineReader(bytes: Array((lines.joined(separator: "\n") + "\n").utf8)), asOf: nil) { _, _ in }
        }
        func report(_ engines: [Engine]) -> [UInt8] {
            var out: [UInt8] = []
            Engine.writeReport(engines, asOf: nil) { out.append(bytes: $0) }
            return out
        }
        let one = Engine(program: program)
        run(lines[...], into: one)
        let expected = report([one])

        let path = FileManager.default.temporaryDirectory.path + "/rules-fuzz-\(UUID().uuidString).ndjson"
        guard FileManager.default.createFile(atPath: path, contents: Data((lines.joined(separator: "\n") + "\n").utf8)) else {
            return nil  // no temporary file here: nothing to compare
        }
        defer { unlink(path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        guard case .success(let parallel) = ParallelStream.run(program: program, fd: fd, jobs: 2, onReject: { _, _ in }) else {
            return "the parallel run failed"
        }
        if report(parallel.engines) != expected { return "two threads disagree with one" }

        let cut = lines.isEmpty ? 0 : Int(bytes[bytes.count - 1]) % (lines.count + 1)
        let before = Engine(program: program), after = Engine(program: program)
        run(lines[..<cut], into: before)
        guard case .success = Checkpoint.restore(Checkpoint.encode([before], lines: cut), into: [after]) else {
            return "a checkpoint did not load back"
        }
        run(lines[cut...], into: after)
        if report([after]) != expected { return "a run cut by a checkpoint disagrees with a whole run" }

        // Retractions (docs/LANGUAGE.md, "Corrections"): with ids, and a
        // retraction of every event whose byte is odd, one line later (at
        // that line's time, when within the 30 days kept) or at once, the
        // stream gives the stream without those events as of the same time
        // — compacting before every line, so that folding and rebuilding
        // meet.
        let keep = 30 * 86_400 * Timestamp.perSecond
        var corrected: [String] = [], without: [String] = []
        var pending: (line: String, time: Int64)? = nil
        func retraction(_ n: Int, at t: Int64) -> String {
            #"{"citizen":"p\#(bytes[2 + 4 * n] % 7)","type":"retract","target":"e\#(n)","time":"\#(Timestamp.format(t))"}"#
        }
        var times: [Int64] = []
        var t: Int64 = 1_767_225_600
        for n in lines.indices {
            t += Int64(bytes[3 + 4 * n]) * Int64(bytes[3 + 4 * n]) * 97
            times.append(t * Timestamp.perSecond)
        }
        for (n, line) in lines.enumerated() {
            corrected.append(String(line.dropLast()) + #","id":"e\#(n)"}"#)
            if let p = pending { corrected.append(p.line); pending = nil }
            guard bytes[1 + 4 * n] & 1 == 1 else { without.append(line); continue }
            if n + 1 < lines.count && times[n + 1] - times[n] <= keep {
                pending = (retraction(n, at: times[n + 1]), times[n + 1])
            } else {
                corrected.append(retraction(n, at: times[n]))
            }
        }
        var limits = Corrections(retain: keep)
        limits.sweepFloor = 0
        let withRetractions = Engine(program: program)
        withRetractions.enableCorrections(limits)
        run(corrected[...], into: withRetractions)
        let plain = Engine(program: program)
        run(without[...], into: plain)
        var a: [UInt8] = [], b: [UInt8] = []
        let clock = times.last ?? 0
        Engine.writeReport([withRetractions], asOf: clock) { a.append(bytes: $0) }
        Engine.writeReport([plain], asOf: clock) { b.append(bytes: $0) }
        if a != b { return "a stream with retractions disagrees with the stream without those events" }
        return nil
    }

    /// The Redis client's reply reader (RESP): any bytes, whole or cut into
    /// pieces (their size from the first byte), give the same replies and
    /// the same refusal, at the same offset; nothing crashes; a refusal
    /// stays; every reply read is one the writer's encoding reads back as.
    package static func resp(_ bytes: [UInt8]) -> String? {
        var limits = RESPReader.Limits()
        limits.maxBulk = 1 << 16
        limits.maxItems = 1 << 12
        limits.maxDepth = 8
        limits.maxLine = 1 << 10
        /// What `take` reads from the bytes given in pieces of `piece`,
        /// each reply described, until the end or a refusal.
        func replies(_ piece: Int, _ take: (inout RESPReader) throws(RESPReader.Malformed) -> String?) -> [String] {
            var reader = RESPReader(limits: limits)
            var out: [String] = []
            var at = 0
            while at < bytes.count {
                reader.append(bytes[at..<min(bytes.count, at + piece)])
                at += piece
                do {
                    while let reply = try take(&reader) {
                        out.append(reply)
                        if reply.hasPrefix("a raw reply") { return out }
                    }
                } catch {
                    out.append("error \(error)")
                    if (try? reader.next()) != nil { out.append("a refusal that did not stay") }
                    return out
                }
            }
            return out
        }
        func run(_ piece: Int) -> [String] {
            replies(piece) { r throws(RESPReader.Malformed) in try r.next()?.description }
        }
        /// The same through `nextRaw`: each reply's bytes, read again by
        /// a reader of their own, must be the reply `next` gave.
        func raw(_ piece: Int) -> [String] {
            replies(piece) { r throws(RESPReader.Malformed) in
                guard let reply = try r.nextRaw() else { return nil }
                var again = RESPReader(limits: limits)
                again.append(reply)
                guard let value = try? again.next(), (try? again.next()) == .some(nil) else { return "a raw reply that is not one reply" }
                return value.description
            }
        }
        let whole = run(max(1, bytes.count))
        let cut = run(1 + Int(bytes.first ?? 0) % 13)
        if let broken = whole.first(where: { $0.hasPrefix("a refusal") }) { return broken }
        if whole != cut { return "the same bytes in pieces gave other replies: \(whole) / \(cut)" }
        let rawWhole = raw(max(1, bytes.count)), rawCut = raw(1 + Int(bytes.first ?? 0) % 13)
        if rawWhole != whole { return "nextRaw read other replies than next: \(rawWhole) / \(whole)" }
        return rawCut == whole ? nil : "nextRaw in pieces read other replies: \(rawCut) / \(whole)"
    }

    /// `rules serve`'s request parser (RFC 9112): any bytes, whole or cut
    /// into pieces (their size from the first byte), give the same requests
    /// and the same refusal; nothing crashes; a refusal is a 4xx or 5xx
    /// with a reason and stays the answer.
    package static func http(_ bytes: [UInt8]) -> String? {
        var limits = HTTPRequestParser.Limits()
        limits.maxBody = 4096
        limits.maxHeader = 2048
        limits.maxTarget = 1024
        func run(_ piece: Int) -> [String] {
            var parser = HTTPRequestParser(limits: limits)
            var out: [String] = []
            var at = 0
            while at < bytes.count {
                parser.append(bytes[at..<min(bytes.count, at + piece)])
                at += piece
                while let r = parser.next() {
                    switch r {
                    case .success(let q):
                        out.append("\(q.method) \(q.segments) \(q.query.map { "\($0.name)=\($0.value)" }) \(q.minorVersion) \(q.headers.map { "\($0.name):\($0.value)" }) \(q.body)")
                    case .failure(let e):
                        out.append("error \(e.status)")
                        if e.status < 400 || e.status > 599 || e.message.isEmpty { out.append("a refusal without a status or reason") }
                        if parser.next() != .failure(e) { out.append("a refusal that did not stay") }
                        return out
                    }
                }
            }
            return out
        }
        let whole = run(max(1, bytes.count))
        let cut = run(1 + Int(bytes.first ?? 0) % 17)
        if whole.contains(where: { $0.hasPrefix("a refusal") }) { return whole.first { $0.hasPrefix("a refusal") } }
        return whole == cut ? nil : "the same bytes in pieces gave other requests: \(whole) / \(cut)"
    }
}
