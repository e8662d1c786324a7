/// One person's state as of a time: what `rules run` prints per line.
package struct PersonReport: Sendable, Equatable {
    public var citizen: String
    public var score: Int64
    public var flags: [String]
    public var denied: [String]
    public var granted: [String]

    /// The names held of one kind.
    package func names(of kind: TargetKind) -> [String] {
        switch kind {
        case .flag: return flags
        case .deny: return denied
        case .grant: return granted
        }
    }
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
        let flagSlots = program.slots[TargetKind.flag.index], denySlots = program.slots[TargetKind.deny.index]
        let grantSlots = program.slots[TargetKind.grant.index]
        for f in 0..<program.policy.flags.count where context.active(flagSlots[f]) || context.stateHolds(.flag, f) {
            flags.append(f)
        }
        for p in 0..<program.policy.privileges.count {
            let isDenied = context.active(denySlots[p]) || context.stateHolds(.deny, p)
            if isDenied { denied.append(p) }
            else if context.active(grantSlots[p]) || context.stateHolds(.grant, p) { granted.append(p) }
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
    package func stateRulesHolding(_ citizen: String, at time: Int64) -> [Int] {
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
    package static func writeReport(_ engines: [Engine], asOf: Int64?, to out: (UnsafeRawBufferPointer) -> Void) {
        guard let time = asOf ?? engines.compactMap(\.clock).max() else { return }
        if engines.count > 1 { return writeMerged(engines, at: time, to: out) }
        let engine = engines[0]
        let writer = ReportWriter(program: engine.program, personKey: engine.personKey)
        let order = engine.sortedPeople()
        for (k, p) in order.enumerated() {
            engine.prefetchForReport(order, k)
            writer.append(engine, person: p, at: time)
            if writer.count > 1 << 16 {
                out(writer.bytes)
                writer.removeAll()
            }
        }
        out(writer.bytes)
    }

    /// Asks for the state of the people some places ahead in `order`.
    @inline(__always)
    func prefetchForReport(_ order: [Int], _ k: Int) {
        if k + Prefetch.reportFirstDistance < order.count {
            store.prefetchForReport(order[k + Prefetch.reportFirstDistance], stage: 0)
            people.prefetchKeyOffset(order[k + Prefetch.reportFirstDistance])
        }
        if k + Prefetch.reportSecondDistance < order.count {
            store.prefetchForReport(order[k + Prefetch.reportSecondDistance], stage: 1)
            people.prefetchKey(order[k + Prefetch.reportSecondDistance])
        }
    }
}

/// Renders report lines into bytes, with the JSON of every name made once.
/// The bytes go into plain memory it owns (the report writes a few bytes at
/// a time, 100k people and more; an array would be checked and retained on
/// every append).
final class ReportWriter {
    @exclusivity(unchecked) private var storage: UnsafeMutablePointer<UInt8>
    @exclusivity(unchecked) private var capacity: Int
    @exclusivity(unchecked) private(set) var count = 0
    /// Quoted names, one after another; `flagNames[f]` is a range of it.
    private let names: UnsafeMutableBufferPointer<UInt8>
    private let flagNames: [Range<Int>]
    private let privilegeNames: [Range<Int>]
    /// The program's slot tables, one per kind, held here so that writing a
    /// person's line retains none of them.
    private let flagSlots: [Int], denySlots: [Int], grantSlots: [Int]

    /// `{"citizen":`, how every line starts (the person key), as two
    /// overlapping words when it is 8 to 16 bytes long (most keys): two
    /// stores instead of a copy per line.
    private let lineStart: UnsafeBufferPointer<UInt8>
    private let lineStartHead: UInt64, lineStartTail: UInt64

    init(program: Program, personKey: PersonKey, capacity: Int = 1 << 16) {
        lineStart = personKey.reportPrefix
        let n = lineStart.count
        let raw = UnsafeRawPointer(lineStart.baseAddress!)
        lineStartHead = n >= 8 ? raw.loadUnaligned(as: UInt64.self) : 0
        lineStartTail = n >= 8 ? raw.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self) : 0
        flagSlots = program.slots[TargetKind.flag.index]
        denySlots = program.slots[TargetKind.deny.index]
        grantSlots = program.slots[TargetKind.grant.index]
        var all: [UInt8] = []
        func add(_ name: String) -> Range<Int> {
            let start = all.count
            JSONWriter.appendQuoted(Array(name.utf8), to: &all)
            return start..<all.count
        }
        flagNames = program.policy.flags.map(add)
        privilegeNames = program.policy.privileges.map(add)
        names = .allocate(capacity: max(1, all.count))
        _ = names.initialize(from: all)
        self.capacity = max(capacity, 1 << 12)
        storage = .allocate(capacity: self.capacity)
    }

    deinit {
        storage.deallocate()
        names.deallocate()
    }

    /// The bytes written so far.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage, count: count) }

    func removeAll() { count = 0 }

    @inline(__always)
    private func reserve(_ n: Int) {
        if count + n <= capacity { return }
        while count + n > capacity { capacity *= 2 }
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        bigger.update(from: storage, count: count)
        storage.deallocate()
        storage = bigger
    }

    @inline(__always)
    private func put(_ p: UnsafePointer<UInt8>, _ n: Int) {
        reserve(n)
        (storage + count).update(from: p, count: n)
        count += n
    }

    @inline(__always)
    private func put(_ s: StaticString) { put(s.utf8Start, s.utf8CodeUnitCount) }

    @inline(__always)
    private func putLineStart() {
        let n = lineStart.count
        guard n >= 8 && n <= 16 else { return put(lineStart.baseAddress!, n) }
        reserve(n)
        let out = UnsafeMutableRawPointer(storage + count)
        out.storeBytes(of: lineStartHead, as: UInt64.self)
        out.storeBytes(of: lineStartTail, toByteOffset: n - 8, as: UInt64.self)
        count += n
    }

    @inline(__always)
    private func put(_ byte: UInt8) {
        reserve(1)
        storage[count] = byte
        count += 1
    }

    /// The same decisions as `Engine.visit` (which `state(of:)` uses; the
    /// report tests compare the two), written straight into the buffer with
    /// no list built per person.
    func append(_ engine: Engine, person p: Int, at time: Int64) {
        putLineStart()
        engine.people.withKey(p) { key in
            if key.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) {
                var quoted: [UInt8] = []
                JSONWriter.appendQuoted(key[...], to: &quoted)
                quoted.withUnsafeBufferPointer { put($0.baseAddress!, $0.count) }
            } else {
                put(UInt8(ascii: "\""))
                if let base = key.baseAddress { put(base, key.count) }
                put(UInt8(ascii: "\""))
            }
        }
        put(#","score":"#)
        appendDecimal(engine.store.score(p))
        let context = engine.context
        context.focus(person: p, now: time)
        context.line = 0  // a failure here belongs to the report, not to a line
        context.evaluateStateRules()
        put(#","flags":["#)
        var first = true
        for f in flagNames.indices where context.active(flagSlots[f]) || context.stateHolds(.flag, f) {
            name(flagNames[f], &first)
        }
        put(#"],"denied":["#)
        first = true
        for q in privilegeNames.indices where context.active(denySlots[q]) || context.stateHolds(.deny, q) {
            name(privilegeNames[q], &first)
        }
        put(#"],"granted":["#)
        first = true
        for q in privilegeNames.indices where !(context.active(denySlots[q]) || context.stateHolds(.deny, q))
            && (context.active(grantSlots[q]) || context.stateHolds(.grant, q)) {
            name(privilegeNames[q], &first)
        }
        put("]}\n")
    }

    @inline(__always)
    private func name(_ range: Range<Int>, _ first: inout Bool) {
        if !first { put(UInt8(ascii: ",")) }
        put(names.baseAddress! + range.lowerBound, range.count)
        first = false
    }

    /// Digits from the last one, into a small buffer, then copied: a
    /// division by the constant 10 compiles to a multiplication.
    private func appendDecimal(_ n: Int64) {
        if n < 0 { put(UInt8(ascii: "-")) }
        var m = n.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var k = 20
            repeat {
                k -= 1
                digits[k] = UInt8(truncatingIfNeeded: 48 + m % 10)
                m /= 10
            } while m > 0
            put(digits.baseAddress! + k, 20 - k)
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
