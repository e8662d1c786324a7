import Foundation

/// One person's state as of a time: what `rules run` prints per line.
public struct PersonReport: Sendable, Equatable {
    public var citizen: String
    public var score: Int64
    public var flags: [String]
    public var denied: [String]
    public var granted: [String]
}

extension Engine {
    /// People in byte order of their ids.
    func sortedPeople() -> [Int] { people.sortedIds() }

    /// Computes a person's flags, denials and grants as of `time`: event
    /// rules' effects still in force, plus what the state rules hold then.
    /// A denial beats a grant of the same privilege.
    func visit(person: Int, at time: Int64, _ body: (_ flags: [Int], _ denied: [Int], _ granted: [Int]) -> Void) {
        context.focus(person: person, now: time)
        context.line = 0  // a failure here belongs to the report, not to a line
        context.evaluateStateRules()
        var flags: [Int] = [], denied: [Int] = [], granted: [Int] = []
        for f in 0..<program.policy.flags.count where context.active(program.flagSlot[f]) || context.stateFlags[f] {
            flags.append(f)
        }
        for p in 0..<program.policy.privileges.count {
            let isDenied = context.active(program.denySlot[p]) || context.stateDenied[p]
            if isDenied { denied.append(p) }
            else if context.active(program.grantSlot[p]) || context.stateGranted[p] { granted.append(p) }
        }
        body(flags, denied, granted)
    }

    /// One person's state as of `time`, or nil when they had no applied event.
    public func state(of citizen: String, at time: Int64) -> PersonReport? {
        var key = citizen
        guard let p = key.withUTF8({ people.find($0) }) else { return nil }
        let names = program.policy
        var r = PersonReport(citizen: citizen, score: store.score(p), flags: [], denied: [], granted: [])
        visit(person: p, at: time) { flags, denied, granted in
            r.flags = flags.map { names.flags[$0] }
            r.denied = denied.map { names.privileges[$0] }
            r.granted = granted.map { names.privileges[$0] }
        }
        return r
    }

    /// The interned index of a person, by id.
    func personIndex(_ citizen: String) -> Int? {
        var key = citizen
        return key.withUTF8 { people.find($0) }
    }

    /// A person's current score by id bytes; nil before their first event.
    func score(of person: UnsafeBufferPointer<UInt8>) -> Int64? {
        people.find(person).map { store.score($0) }
    }

    /// Global indices of the state rules that hold for `citizen` at `time`.
    func stateRulesHolding(_ citizen: String, at time: Int64) -> [Int] {
        var key = citizen
        guard let p = key.withUTF8({ people.find($0) }) else { return [] }
        context.focus(person: p, now: time)
        context.evaluateStateRules()
        return program.stateRules.enumerated().filter { context.stateRulesHeld[$0.offset] }.map(\.element.index)
    }

    /// The state of every person who had an applied event, as of `asOf`
    /// (default: the stream's clock).
    public func report(asOf: Int64? = nil) -> [PersonReport] {
        guard let time = asOf ?? clock else { return [] }
        let names = program.policy
        return sortedPeople().map { p in
            var r = PersonReport(citizen: people.keyString(p), score: store.score(p), flags: [], denied: [], granted: [])
            visit(person: p, at: time) { flags, denied, granted in
                r.flags = flags.map { names.flags[$0] }
                r.denied = denied.map { names.privileges[$0] }
                r.granted = granted.map { names.privileges[$0] }
            }
            return r
        }
    }

    /// Writes the report as NDJSON, one compact object per person, keys in
    /// the contract's order, straight to bytes.
    public func writeReport(asOf: Int64? = nil, to out: (UnsafeRawBufferPointer) -> Void) {
        Engine.writeReport([self], asOf: asOf, to: out)
    }

    /// The report of several engines that each own some of the people (the
    /// parallel run), merged into one byte order, as of one clock: the
    /// latest of theirs, or `asOf`.
    static func writeReport(_ engines: [Engine], asOf: Int64?, to out: (UnsafeRawBufferPointer) -> Void) {
        guard let time = asOf ?? engines.compactMap(\.clock).max() else { return }
        if engines.count > 1 { return writeMerged(engines, at: time, to: out) }
        let engine = engines[0]
        var writer = ReportWriter(program: engine.program)
        let order = engine.sortedPeople()
        for (k, p) in order.enumerated() {
            engine.prefetchForReport(order, k)
            writer.append(engine, person: p, at: time)
            if writer.buffer.count > 1 << 16 {
                writer.buffer.withUnsafeBytes(out)
                writer.buffer.removeAll(keepingCapacity: true)
            }
        }
        writer.buffer.withUnsafeBytes(out)
    }

    /// One engine's part of a report: its people in byte order of their
    /// ids, each line rendered; `ends[k]` is where the k-th line ends.
    struct ReportPart: @unchecked Sendable {
        var order: [Int] = []
        var bytes: [UInt8] = []
        var ends: [Int] = []
    }

    /// Asks for the state of the people some places ahead in `order`.
    @inline(__always)
    func prefetchForReport(_ order: [Int], _ k: Int) {
        if k + 16 < order.count { store.prefetchForReport(order[k + 16], stage: 0) }
        if k + 8 < order.count { store.prefetchForReport(order[k + 8], stage: 1) }
    }

    func renderReportPart(at time: Int64) -> ReportPart {
        var part = ReportPart()
        part.order = sortedPeople()
        part.ends.reserveCapacity(part.order.count)
        var writer = ReportWriter(program: program)
        for (k, p) in part.order.enumerated() {
            prefetchForReport(part.order, k)
            writer.append(self, person: p, at: time)
            part.ends.append(writer.buffer.count)
        }
        part.bytes = writer.buffer
        return part
    }

    /// Each engine renders its own people on its own thread (state rules
    /// are evaluated there too); the parts are then merged by person id.
    private static func writeMerged(_ engines: [Engine], at time: Int64, to out: (UnsafeRawBufferPointer) -> Void) {
        let parts = PartBox(count: engines.count)
        let owners = EngineList(engines)
        DispatchQueue.concurrentPerform(iterations: engines.count) { e in
            parts.set(e, owners.engines[e].renderReportPart(at: time))
        }
        var next = [Int](repeating: 0, count: engines.count)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 16)
        while true {
            var best = -1
            for e in engines.indices where next[e] < parts[e].order.count {
                if best < 0 || engines[e].people.precedes(parts[e].order[next[e]], engines[best].people,
                                                          parts[best].order[next[best]]) { best = e }
            }
            if best < 0 { break }
            let k = next[best]
            let start = k == 0 ? 0 : parts[best].ends[k - 1]
            buffer.append(contentsOf: parts[best].bytes[start..<parts[best].ends[k]])
            next[best] += 1
            if buffer.count > 1 << 16 {
                buffer.withUnsafeBytes(out)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        buffer.withUnsafeBytes(out)
    }

    /// Hands each engine to exactly one rendering thread (an engine has a
    /// single owner at a time; here the owner is that thread).
    private struct EngineList: @unchecked Sendable {
        let engines: [Engine]
        init(_ engines: [Engine]) { self.engines = engines }
    }

    /// Report parts filled in by several threads, each its own index.
    private final class PartBox: @unchecked Sendable {
        private var parts: [ReportPart]
        private let lock = NSLock()
        init(count: Int) { parts = Array(repeating: ReportPart(), count: count) }
        func set(_ i: Int, _ part: ReportPart) { lock.lock(); parts[i] = part; lock.unlock() }
        subscript(i: Int) -> ReportPart { parts[i] }
    }
}

/// Renders report lines into bytes, with the JSON of every name made once.
struct ReportWriter {
    var buffer: [UInt8] = []
    private let flagNames: [[UInt8]]
    private let privilegeNames: [[UInt8]]
    private let open = Array(#"{"citizen":"#.utf8), score = Array(#","score":"#.utf8)
    private let flagsKey = Array(#","flags":"#.utf8), deniedKey = Array(#","denied":"#.utf8)
    private let grantedKey = Array(#","granted":"#.utf8), close = Array("}\n".utf8)

    init(program: Program) {
        flagNames = program.policy.flags.map { JSONWriter.quoted(Array($0.utf8)) }
        privilegeNames = program.policy.privileges.map { JSONWriter.quoted(Array($0.utf8)) }
        buffer.reserveCapacity(1 << 16)
    }

    /// The same decisions as `Engine.visit` (which `state(of:)` uses; the
    /// report tests compare the two), written straight into the buffer with
    /// no list built per person.
    mutating func append(_ engine: Engine, person p: Int, at time: Int64) {
        buffer.append(contentsOf: open)
        engine.people.withKey(p) { JSONWriter.appendQuoted($0, to: &buffer) }
        buffer.append(contentsOf: score)
        appendDecimal(engine.store.score(p))
        let context = engine.context, program = engine.program
        context.focus(person: p, now: time)
        context.line = 0  // a failure here belongs to the report, not to a line
        context.evaluateStateRules()
        buffer.append(contentsOf: flagsKey)
        var first = true
        buffer.append(UInt8(ascii: "["))
        for f in flagNames.indices where context.active(program.flagSlot[f]) || context.stateFlags[f] {
            name(flagNames[f], &first)
        }
        buffer.append(UInt8(ascii: "]"))
        buffer.append(contentsOf: deniedKey)
        first = true
        buffer.append(UInt8(ascii: "["))
        for q in privilegeNames.indices where context.active(program.denySlot[q]) || context.stateDenied[q] {
            name(privilegeNames[q], &first)
        }
        buffer.append(UInt8(ascii: "]"))
        buffer.append(contentsOf: grantedKey)
        first = true
        buffer.append(UInt8(ascii: "["))
        for q in privilegeNames.indices where !(context.active(program.denySlot[q]) || context.stateDenied[q])
            && (context.active(program.grantSlot[q]) || context.stateGranted[q]) {
            name(privilegeNames[q], &first)
        }
        buffer.append(UInt8(ascii: "]"))
        buffer.append(contentsOf: close)
    }

    @inline(__always)
    private mutating func name(_ quoted: [UInt8], _ first: inout Bool) {
        if !first { buffer.append(UInt8(ascii: ",")) }
        buffer.append(contentsOf: quoted)
        first = false
    }

    private mutating func appendDecimal(_ n: Int64) {
        if n < 0 { buffer.append(UInt8(ascii: "-")) }
        let m = n.magnitude
        var divisor: UInt64 = 1
        while m / divisor >= 10 { divisor *= 10 }
        repeat {
            buffer.append(UInt8(48 + (m / divisor) % 10))
            divisor /= 10
        } while divisor > 0
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
