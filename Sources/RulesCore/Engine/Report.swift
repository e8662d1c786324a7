/// One output of a report line (`output credit limit = …`): its key and
/// its value, nil when it had none (the line shows null).
public struct ReportOutput: Sendable, Equatable {
    public var name: String
    public var value: Double?
}

/// One attribute of a report line (`attribute region = …`): its key and
/// value.
public struct ReportAttribute: Sendable, Equatable {
    public var name: String
    public var value: FieldValue
}

/// One person's state as of a time: what `rules run` prints per line.
package struct PersonReport: Sendable, Equatable {
    public var citizen: String
    public var score: Int64
    public var flags: [String]
    public var denied: [String]
    public var granted: [String]
    /// The policy's outputs, in its order: each value, nil when it had none.
    public var outputs: [ReportOutput] = []
    /// The policy's attributes, in its order, with their values.
    public var attributes: [ReportAttribute] = []

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
    /// People all of whose events were retracted are not among them.
    func sortedPeople() -> [Int] {
        guard let history, history.emptied > 0 else { return people.sortedIds() }
        return people.sortedIds().filter { !history.isEmptied($0) }
    }

    /// One person's report line as `rules run` prints it (no newline), as
    /// of `time`; nil when they are not in the report.
    package func reportLine(of citizen: String, at time: Int64) -> String? {
        guard let p = personIndex(citizen), isPresent(p) else { return nil }
        let writer = ReportWriter(program: program, personKey: personKey, capacity: 256)
        writer.append(self, person: p, at: time)
        return String(decoding: writer.bytes, as: UTF8.self).trimmingCharacters(in: "\n")
    }

    /// Whether every event of the person was retracted (so they are not in
    /// the report, though the stream named them).
    package func wasRetracted(_ citizen: String) -> Bool {
        personIndex(citizen).map { !isPresent($0) } ?? false
    }

    /// Whether the person has an applied event that was not retracted.
    func isPresent(_ person: Int) -> Bool { !(history?.isEmptied(person) ?? false) }

    /// Whether `kind` of name `name` shows in the person's report line (the
    /// context focused on them, state rules evaluated): an event rule's
    /// effect in force or a `while` rule holding it, and not hidden by
    /// another kind (a denial beats a grant).
    @inline(__always)
    func shows(_ kind: TargetKind, _ name: Int) -> Bool {
        func holds(_ k: TargetKind) -> Bool {
            (k == .deny ? context.deniedByEventRules(name) : context.active(program.slot(k, name))) || context.stateHolds(k, name)
        }
        guard holds(kind) else { return false }
        if let hider = kind.hiddenBy, holds(hider) { return false }
        return true
    }

    /// A person's report as of `time`: each kind's names that show, by
    /// `TargetKind.index`.
    func visit(person: Int, at time: Int64) -> [[Int]] {
        context.focus(person: person, now: time)
        context.line = 0  // a failure here belongs to the report, not to a line
        context.evaluateStateRules()
        return TargetKind.allCases.map { kind in
            program.policy.names(of: kind).indices.filter { shows(kind, $0) }
        }
    }

    /// A person's report line as values; each kind has its place (the
    /// contract's keys), so a new kind does not compile until it has one.
    private func personReport(_ p: Int, citizen: String, at time: Int64) -> PersonReport {
        asOf(p, time) { personReportNow(p, citizen: citizen, at: time) }
    }

    private func personReportNow(_ p: Int, citizen: String, at time: Int64) -> PersonReport {
        var r = PersonReport(citizen: citizen, score: store.score(p), flags: [], denied: [], granted: [])
        let shown = visit(person: p, at: time)
        for kind in TargetKind.allCases {
            let names = shown[kind.index].map { program.policy.names(of: kind)[$0] }
            switch kind {
            case .flag: r.flags = names
            case .deny: r.denied = names
            case .grant: r.granted = names
            }
        }
        for (k, attribute) in program.policy.attributes.enumerated() {
            let value: FieldValue
            switch AttributeWord.decode(store.attribute(p, k), as: attribute.type) {
            case .number(let x): value = .number(x)
            case .bool(let b): value = .bool(b)
            case .string(let s): value = .string(String(decoding: s.buffer, as: UTF8.self))
            case .failed: value = .number(0)
            }
            r.attributes.append(ReportAttribute(name: attribute.name, value: value))
        }
        // The context is focused on them, their `while` rules evaluated.
        for (k, node) in program.outputs.enumerated() {
            let v = node.eval(context)
            var value: Double? = nil
            if case .number(let x) = v { value = x == 0 ? 0 : x } else { context.noteFailure(rule: program.outputNote(k), v) }
            r.outputs.append(ReportOutput(name: program.policy.outputs[k].name, value: value))
        }
        return r
    }

    /// One person's state as of `time`, or nil when they had no applied event.
    public func state(of citizen: String, at time: Int64) -> PersonReport? {
        var key = citizen
        guard let p = key.withUTF8({ people.find($0) }), isPresent(p) else { return nil }
        return personReport(p, citizen: citizen, at: time)
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
        return asOf(p, time) {
            context.focus(person: p, now: time)
            context.evaluateStateRules()
            return program.stateRules.enumerated().filter { context.stateRulesHeld[$0.offset] }.map(\.element.index)
        }
    }

    /// The state of every person who had an applied event, as of `asOf`
    /// (default: the stream's clock).
    public func report(asOf: Int64? = nil) -> [PersonReport] {
        guard let time = asOf ?? clock else { return [] }
        return sortedPeople().map { personReport($0, citizen: people.keyString($0), at: time) }
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
        if k + Prefetch.reportFirstDistance < order.count { prefetchPerson(order[k + Prefetch.reportFirstDistance], stage: 0) }
        if k + Prefetch.reportSecondDistance < order.count { prefetchPerson(order[k + Prefetch.reportSecondDistance], stage: 1) }
    }

    /// Asks for person `p`'s row and id (stage 0), then, once those are in
    /// cache, for what they point to (stage 1): for a walk over people in
    /// an order of their own (the report, a checkpoint).
    @inline(__always)
    func prefetchPerson(_ p: Int, stage: Int) {
        store.prefetchForReport(p, stage: stage)
        if stage == 0 { people.prefetchKeyOffset(p) } else { people.prefetchKey(p) }
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
    /// Each kind's key (`,"flags":[`) and quoted names, one after another.
    private let names: UnsafeMutableBufferPointer<UInt8>
    /// Per kind, in the report's order (`TargetKind.allCases`): its key's
    /// bytes in `names`, and where its names' slots and byte ranges start
    /// in the flat tables below (plain memory: writing a line retains
    /// nothing).
    private struct KindTable {
        /// Where its names start in the context's table of what state rules hold.
        var stateOffset: Int
        /// Its key (`,"flags":[`, 10 to 16 bytes) as two overlapping words.
        var keyHead: UInt64, keyTail: UInt64
        var key: Range<Int>
        var base: Int
        var count: Int
        /// The table of the kind that hides this one (`hiddenBy`), or -1.
        var hider: Int
        /// Denials for reasons have slots of their own (`deny … because …`).
        var reasons: Bool
    }
    private let kinds: UnsafeMutableBufferPointer<KindTable>
    private let slotTable: UnsafeMutableBufferPointer<Int>
    private let nameRanges: UnsafeMutableBufferPointer<Range<Int>>
    /// One line state, while `append` writes its line.
    private let scratch: UnsafeMutableBufferPointer<UInt64>

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
        var all: [UInt8] = []
        var tables: [KindTable] = [], slots: [Int] = [], ranges: [Range<Int>] = []
        for kind in TargetKind.allCases {
            let keyStart = all.count
            all += Array(",\"\(kind.reportKey)\":[".utf8)
            let names = program.policy.names(of: kind)
            let key = Array(all[keyStart...])
            precondition(key.count >= 8 && key.count <= 16, "a report key of 3 to 11 letters")
            let head = key.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            let tail = key.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: key.count - 8, as: UInt64.self) }
            tables.append(KindTable(stateOffset: EvalContext.stateOffset(of: kind, in: program), keyHead: head, keyTail: tail,
                                    key: keyStart..<all.count, base: slots.count, count: names.count,
                                    hider: kind.hiddenBy?.index ?? -1, reasons: kind == .deny && program.hasReasons))
            for (n, name) in names.enumerated() {
                slots.append(program.slot(kind, n))
                let start = all.count
                JSONWriter.appendQuoted(Array(name.utf8), to: &all)
                ranges.append(start..<all.count)
            }
        }
        names = .allocate(capacity: max(1, all.count))
        _ = names.initialize(from: all)
        kinds = .allocate(capacity: tables.count)
        _ = kinds.initialize(from: tables)
        slotTable = .allocate(capacity: max(1, slots.count))
        _ = slotTable.initialize(from: slots)
        nameRanges = .allocate(capacity: max(1, ranges.count))
        _ = nameRanges.initialize(from: ranges)
        self.capacity = max(capacity, 1 << 12)
        storage = .allocate(capacity: self.capacity)
        inReportBit = ranges.count
        extras = program.policy.reportExtras.map { extra in
            var key = Array(",".utf8)
            switch extra {
            case .attribute(let k):
                let attribute = program.policy.attributes[k]
                JSONWriter.appendQuoted(Array(attribute.name.utf8), to: &key)
                return Extra(key: key + Array(":".utf8), attribute: k, type: attribute.type, output: nil, outputIndex: -1)
            case .output(let k):
                JSONWriter.appendQuoted(Array(program.policy.outputs[k].name.utf8), to: &key)
                return Extra(key: key + Array(":".utf8), attribute: -1, type: .number, output: .passUnretained(program.outputs[k]), outputIndex: k)
            }
        }
        bitBase = 1 + extras.count
        stateWords = bitBase + (ranges.count + 1 + 63) / 64
        scratch = .allocate(capacity: stateWords)
    }

    deinit {
        storage.deallocate()
        names.deallocate()
        kinds.deallocate()
        slotTable.deallocate()
        nameRanges.deallocate()
        scratch.deallocate()
    }

    /// The bytes written so far.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage, count: count) }

    func removeAll() { count = 0 }

    /// Takes back the last byte written (a line's newline).
    func dropLast() { if count > 0 { count -= 1 } }

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
        putWords(lineStartHead, lineStartTail, n)
    }

    /// `n` (8 to 16) bytes given as their first and last eight: two stores.
    @inline(__always)
    private func putWords(_ head: UInt64, _ tail: UInt64, _ n: Int) {
        reserve(n)
        let out = UnsafeMutableRawPointer(storage + count)
        out.storeBytes(of: head, as: UInt64.self)
        out.storeBytes(of: tail, toByteOffset: n - 8, as: UInt64.self)
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
    /// no list built per person: the person's line state, then the line.
    func append(_ engine: Engine, person p: Int, at time: Int64) {
        lineState(engine, person: p, at: time, into: scratch.baseAddress!)
        engine.people.withKey(p) { appendLine(id: $0, state: UnsafePointer(scratch.baseAddress!)) }
    }

    /// Words in a line state: the score, each output's value (its bits),
    /// then one bit per name of the
    /// report (flags, denied, granted, in the report's order) that shows,
    /// and one more bit, set: the person is in the report. A state of
    /// zeros is nobody's line (what the service keeps for a person not in
    /// the report, so that it needs no other word for it).
    let stateWords: Int
    /// The bit after the names'.
    private let inReportBit: Int
    /// A key after the report's own (`,"credit_limit":`): an attribute (its
    /// word from the row) or an output (its node, which the program keeps).
    private struct Extra {
        let key: [UInt8]
        let attribute: Int
        let type: ValueType
        let output: Unmanaged<Node>?
        let outputIndex: Int
    }
    private let extras: [Extra]
    /// The word where the names' bits start: after the score and one word
    /// per extra key.
    private let bitBase: Int
    /// An output without a value (a NaN: outputs never have one).
    static let noValue = Double.nan.bitPattern

    /// Whether `words` (a line state) is a line of the report.
    @inline(__always)
    func isInReport(_ words: UnsafePointer<UInt64>) -> Bool {
        words[bitBase + inReportBit >> 6] & (1 << UInt64(inReportBit & 63)) != 0
    }

    /// A person's line state as of `time`: everything their report line
    /// says but their id, in `stateWords` words — what the service keeps
    /// per person instead of the line (`PublishedLines`, `ReportChanges`).
    func lineState(_ engine: Engine, person p: Int, at time: Int64, into words: UnsafeMutablePointer<UInt64>) {
        if engine.program.hasTimers { return engine.asOf(p, time) { lineStateNow(engine, person: p, at: time, into: words) } }
        lineStateNow(engine, person: p, at: time, into: words)
    }

    /// The same, with no deadline of the person due by `time` (`Engine.asOf`).
    private func lineStateNow(_ engine: Engine, person p: Int, at time: Int64, into words: UnsafeMutablePointer<UInt64>) {
        words[0] = UInt64(bitPattern: engine.store.score(p))
        for w in 1..<stateWords { words[w] = 0 }
        let bits = words + bitBase  // the names' bits, read once: `put` may change `self`
        bits[inReportBit >> 6] = 1 << UInt64(inReportBit & 63)
        let context = engine.context
        context.focus(person: p, now: time)
        context.line = 0  // a failure here belongs to the report, not to a line
        context.evaluateStateRules()
        for k in kinds.indices {
            let table = kinds[k]
            for n in 0..<table.count where holds(table, n, context) {
                if table.hider >= 0 && holds(kinds[table.hider], n, context) { continue }
                let bit = table.base + n
                bits[bit >> 6] |= 1 << UInt64(bit & 63)
            }
        }
        if bitBase > 1 { extraWords(engine, person: p, into: words) }
    }

    /// The attributes' and outputs' words of a line state (after its score).
    private func extraWords(_ engine: Engine, person p: Int, into words: UnsafeMutablePointer<UInt64>) {
        let context = engine.context
        for (j, extra) in extras.enumerated() {
            guard let node = extra.output else {
                words[1 + j] = UInt64(bitPattern: engine.store.attribute(p, extra.attribute))
                continue
            }
            let v = node._withUnsafeGuaranteedRef { $0.eval(context) }
            if case .number(let x) = v {
                words[1 + j] = (x == 0 ? 0 : x).bitPattern  // -0 reads as 0
            } else {
                context.noteFailure(rule: engine.program.outputNote(extra.outputIndex), v)
                words[1 + j] = Self.noValue
            }
        }
    }

    /// The report line (with its newline) of the person `key` whose line
    /// state is `words`.
    func appendLine(id key: UnsafeBufferPointer<UInt8>, state words: UnsafePointer<UInt64>) {
        putLineStart()
        if key.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) {
            var quoted: [UInt8] = []
            JSONWriter.appendQuoted(key[...], to: &quoted)
            quoted.withUnsafeBufferPointer { put($0.baseAddress!, $0.count) }
        } else {
            put(UInt8(ascii: "\""))
            if let base = key.baseAddress { put(base, key.count) }
            put(UInt8(ascii: "\""))
        }
        put(#","score":"#)
        appendDecimal(Int64(bitPattern: words[0]))
        let bits = words + bitBase  // read once: `put` may change `self`
        for k in kinds.indices {
            let table = kinds[k]
            putWords(table.keyHead, table.keyTail, table.key.count)
            var first = true
            for n in 0..<table.count {
                let bit = table.base + n
                if bits[bit >> 6] & (1 << UInt64(bit & 63)) != 0 { name(nameRanges[bit], &first) }
            }
            put(UInt8(ascii: "]"))
        }
        if bitBase > 1 { appendExtras(words) }
        put("}\n")
    }

    /// `,"key":value` for each attribute and output of a line state.
    private func appendExtras(_ words: UnsafePointer<UInt64>) {
        for (j, extra) in extras.enumerated() {
            extra.key.withUnsafeBufferPointer { put($0.baseAddress!, $0.count) }
            let bits = words[1 + j]
            if extra.output != nil && bits == Self.noValue { put("null"); continue }
            AttributeWord.json(Int64(bitPattern: bits), as: extra.type).withUnsafeBufferPointer { put($0.baseAddress!, $0.count) }
        }
    }

    /// `Engine.shows`'s test, on the flat tables: an event rule's effect in
    /// force, or a `while` rule holding it.
    @inline(__always)
    private func holds(_ table: KindTable, _ n: Int, _ context: EvalContext) -> Bool {
        context.active(slotTable[table.base + n]) || context.stateHolds(at: table.stateOffset + n)
            || (table.reasons && context.deniedByEventRules(n))
    }

    @inline(__always)
    private func name(_ range: Range<Int>, _ first: inout Bool) {
        if !first { put(UInt8(ascii: ",")) }
        put(names.baseAddress! + range.lowerBound, range.count)
        first = false
    }

    private func appendDecimal(_ n: Int64) {
        if n < 0 { put(UInt8(ascii: "-")) }
        JSONWriter.withDigits(of: n.magnitude) { put($0.baseAddress!, $0.count) }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
