#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one way an event reaches an engine. A stream's line is parsed into
/// the engine's field slots, ignored when it lies after `--as-of`, then
/// applied or rejected with its reason; a typed event (the library's
/// `Event`, a test's or the REPL's literal) sets the same slots by name and
/// is applied the same way, with no NDJSON in between. Both stream drivers
/// (`EventStream`, the `ParallelStream` workers), the public API
/// (`RulesEngine`), the test runner and the REPL (`LiteralFeeder`) go
/// through it, and the drivers' `RunSummary.count` counts what it says.
struct EventApplier {
    let engine: Engine
    var parser: EventParser
    /// The engine's evaluation context, unretained (the engine keeps it):
    /// the parser writes the fields there, with no reference counting.
    let context: Unmanaged<EvalContext>
    /// Lines of events after it are read and counted, not applied.
    let asOf: Int64?
    /// Kept history outgrew its budget: compact everyone with events out of
    /// reach before the next line (`Corrections.swift`) — not at once, since
    /// the caller still reads what the line just did.
    var sweepPending = false

    init(engine: Engine, asOf: Int64? = nil) {
        self.engine = engine
        parser = EventParser(program: engine.program, personKey: engine.personKey)
        context = .passUnretained(engine.context)
        self.asOf = asOf
    }

    /// Frees the parser's scratch memory; the applier is not used after.
    func deallocate() { parser.deallocate() }

    enum Outcome {
        /// The event as parsed; its bytes are valid until the next line.
        case applied(EventParser.Parsed)
        /// With the event when the line parsed (the engine refused it).
        case rejected(String, EventParser.Parsed? = nil)
        case afterAsOf
    }

    /// The person key's look-ahead reader (prefetch, `--jobs` routing).
    var personKey: PersonKey { parser.personKey }

    /// Applies line `number` of a stream. `hash`: the `ByteTable.hash` of
    /// the id that starts the line (`PersonKey.leadingPerson`), when the
    /// caller computed it.
    @inline(__always)
    mutating func apply(line: UnsafeBufferPointer<UInt8>, number: Int, hash: UInt32? = nil) -> Outcome {
        if sweepPending { sweep() }
        engine.beginEvent(line: number)
        switch parser.parse(line, into: context) {
        case .rejected(let reason):
            return .rejected(reason)
        case .event(let e):
            if let asOf, e.time > asOf { return .afterAsOf }
            if let history = engine.history { return applyKeeping(e, line: line, number: number, history: history) }
            if let r = e.retraction {
                return .rejected("cannot retract \(JSONWriter.quoted(String(decoding: r.target, as: UTF8.self))): no history is kept (run with --retain DURATION)", e)
            }
            // The hash is of the id at the start of the line; the parser's
            // id is those same bytes unless it had to unescape them.
            let known = hash != nil && e.person.baseAddress == line.baseAddress! + parser.personKey.leadingCount
            if let reason = engine.apply(person: e.person, hash: known ? hash : nil, event: e.event, time: e.time) {
                return .rejected(reason, e)
            }
            return .applied(e)
        }
    }

    /// Applies a typed event: `type` and the field names are names as in a
    /// stream line (spaces count as `_`); a number must be finite.
    /// Returns the reason when it is rejected. Nothing is written as text
    /// or parsed back; the names are looked up in the program's tables as
    /// they are, and string values are copied into the engine's memory.
    static func apply<Fields: Collection>(person: String, type: String, time: Int64, fields: Fields,
                                          number: Int, to engine: Engine) -> String?
    where Fields.Element == (key: String, value: FieldValue) {
        let program = engine.program
        // The person's table slot is asked for first, so that it arrives
        // while the type and fields are looked up (one at a time, nothing
        // further ahead is known).
        var person = person
        let hash = person.withUTF8 { ByteTable.hash($0) }
        engine.prefetchSlot(hash: hash)
        engine.beginEvent(line: number)
        let event = find(type, in: program.eventTable)
        if event == nil && type == Checker.retractType {
            return "a retraction is a stream line ({\"type\":\"retract\",\"target\":ID,...}), not a typed event"
        }
        // One pass over the fields; in the rare event whose strings do not
        // fit the engine's memory for them, a second after it has grown.
        while true {
            engine.beginTypedStrings()
            var fits = true
            for (name, value) in fields {
                if case .number(let n) = value, !n.isFinite {
                    return "field \(JSONWriter.quoted(name)) is not a finite number"
                }
                guard let id = find(name, in: program.fieldTable) else { continue }
                let v: Value
                switch value {
                case .number(let n): v = .number(n)
                case .bool(let b): v = .bool(b)
                case .string(let s):
                    guard let kept = engine.keepTypedString(s) else { fits = false; continue }
                    v = .string(kept)
                }
                if !engine.setField(id, v) { return duplicate(name, among: fields.map(\.key)) }
            }
            if fits { break }
            engine.growTypedStrings(fields.reduce(0) { if case .string(let s) = $1.value { $0 + s.utf8.count } else { $0 } })
            engine.beginEvent(line: number)
        }
        return person.withUTF8 { engine.apply(person: $0, hash: hash, event: event, time: time) }
    }

    /// A name as a line's key or type is found: a run of spaces is one `_`.
    /// The table's names have no spaces, so a name found as it is needs no
    /// joining, and only one not found is searched for spaces.
    @inline(__always)
    private static func find(_ name: String, in table: ByteTable) -> Int? {
        var name = name
        if let id = name.withUTF8({ table.find($0) }) { return id }
        guard name.utf8.contains(0x20) else { return nil }
        var joined = EventParser.joinedName(name)
        return joined.withUTF8 { table.find($0) }
    }

    /// Two names that are one field once spaces count as `_` (`speed limit`
    /// and `speed_limit`): the reason names the later in byte order, so that
    /// it does not depend on a dictionary's order.
    private static func duplicate(_ name: String, among names: [String]) -> String {
        let joined = EventParser.joinedName(name)
        let clashing = names.filter { EventParser.joinedName($0) == joined }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        return "duplicate key \(JSONWriter.quoted(clashing.last ?? name))"
    }
}

extension FieldValue {
    /// A test's or the REPL's literal value, as the library's.
    init(_ literal: LiteralValue) {
        switch literal {
        case .number(let n): self = .number(n)
        case .string(let s): self = .string(s)
        case .bool(let b): self = .bool(b)
        }
    }
}
