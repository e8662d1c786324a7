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
        var r = PersonReport(citizen: citizen, score: store.scores[p], flags: [], denied: [], granted: [])
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
        people.find(person).map { store.scores[$0] }
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
            var r = PersonReport(citizen: people.keyString(p), score: store.scores[p], flags: [], denied: [], granted: [])
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
        var order: [(engine: Int, person: Int)] = []
        if engines.count == 1 {
            order = engines[0].sortedPeople().map { (0, $0) }
        } else {
            for (e, engine) in engines.enumerated() { order += engine.sortedPeople().map { (e, $0) } }
            order.sort { a, b in
                engines[a.engine].people.key(a.person).lexicographicallyPrecedes(engines[b.engine].people.key(b.person))
            }
        }
        var writer = ReportWriter(program: engines[0].program)
        for (e, p) in order {
            writer.append(engines[e], person: p, at: time)
            if writer.buffer.count > 1 << 16 {
                writer.buffer.withUnsafeBytes(out)
                writer.buffer.removeAll(keepingCapacity: true)
            }
        }
        writer.buffer.withUnsafeBytes(out)
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

    mutating func append(_ engine: Engine, person p: Int, at time: Int64) {
        buffer.append(contentsOf: open)
        JSONWriter.appendQuoted(engine.people.key(p), to: &buffer)
        buffer.append(contentsOf: score)
        appendDecimal(engine.store.scores[p])
        var lists: ([Int], [Int], [Int]) = ([], [], [])
        engine.visit(person: p, at: time) { lists = ($0, $1, $2) }
        buffer.append(contentsOf: flagsKey); list(lists.0, flagNames)
        buffer.append(contentsOf: deniedKey); list(lists.1, privilegeNames)
        buffer.append(contentsOf: grantedKey); list(lists.2, privilegeNames)
        buffer.append(contentsOf: close)
    }

    private mutating func list(_ ids: [Int], _ names: [[UInt8]]) {
        buffer.append(UInt8(ascii: "["))
        for (k, id) in ids.enumerated() {
            if k > 0 { buffer.append(UInt8(ascii: ",")) }
            buffer.append(contentsOf: names[id])
        }
        buffer.append(UInt8(ascii: "]"))
    }

    private mutating func appendDecimal(_ n: Int64) {
        if n < 0 { buffer.append(UInt8(ascii: "-")) }
        var digits: [UInt8] = []
        var m = n.magnitude
        repeat { digits.append(UInt8(48 + m % 10)); m /= 10 } while m > 0
        buffer.append(contentsOf: digits.reversed())
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
