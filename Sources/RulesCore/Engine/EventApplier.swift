/// The one way an event reaches an engine. A stream's line is parsed into
/// the engine's field slots, ignored when it lies after `--as-of`, then
/// applied or rejected with its reason; a typed event (the library's
/// `Event`, a test's or the REPL's literal) sets the same slots by name and
/// is applied the same way, with no NDJSON in between. Both stream drivers
/// (`EventStream`, the `ParallelStream` workers), the public API
/// (`RulesEngine`), the test runner and the REPL (`LiteralFeeder`) go
/// through it, and `RunSummary.count` counts what it says.
struct EventApplier {
    let engine: Engine
    private var parser: EventParser
    /// Lines of events after it are read and counted, not applied.
    let asOf: Int64?

    init(engine: Engine, asOf: Int64? = nil) {
        self.engine = engine
        parser = EventParser(program: engine.program, personKey: engine.personKey)
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
        engine.beginEvent(line: number)
        switch parser.parse(line, into: engine) {
        case .rejected(let reason):
            return .rejected(reason)
        case .event(let e):
            if let asOf, e.time > asOf { return .afterAsOf }
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
    /// stream line (spaces count as `_`), the values are already checked.
    /// Returns the reason when it is rejected. Callers check for duplicate
    /// field names, which they can say better (a test names the literal).
    static func apply(person: String, type: String, time: Int64, fields: [(name: String, value: LiteralValue)],
                      number: Int, to engine: Engine) -> String? {
        let program = engine.program
        engine.beginEvent(line: number)
        var typeName = EventParser.joinedName(type)
        let event = typeName.withUTF8 { program.eventTable.find($0) }
        return LiteralFeeder.withStrings(fields.map(\.value)) { values in
            for (k, field) in fields.enumerated() {
                var name = EventParser.joinedName(field.name)
                if let id = name.withUTF8({ program.fieldTable.find($0) }), !engine.setField(id, values[k]) {
                    return "duplicate key \(JSONWriter.quoted(field.name))"
                }
            }
            var person = person
            return person.withUTF8 { engine.apply(person: $0, event: event, time: time) }
        }
    }
}

extension RunSummary {
    /// Counts one line that was not blank.
    @inline(__always)
    mutating func count(_ outcome: EventApplier.Outcome) {
        read += 1
        switch outcome {
        case .applied(let e):
            applied += 1
            if e.event == nil { countUnknown(e.type) }
        case .rejected: rejected += 1
        case .afterAsOf: ignoredAfterAsOf += 1
        }
    }
}
