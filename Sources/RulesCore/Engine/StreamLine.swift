/// A stream line written from typed parts: what a typed event (the
/// library's `Event`, a test's or the REPL's literal) becomes when it must
/// go through the line path — with kept history, where a correction
/// replays each person's events from their lines. Keys in byte order after
/// the reserved ones, so the same event always makes the same line.
enum StreamLine {
    static func make(personKey: PersonKey, person: String, type: String, time: Int64, id: String? = nil,
                     fields: [(key: String, value: FieldValue)]) -> String {
        var line = #"{\#(personKey.quoted):\#(JSONWriter.quoted(person)),"type":\#(JSONWriter.quoted(type)),"time":\#(JSONWriter.quoted(Timestamp.format(time)))"#
        if let id { line += #","id":\#(JSONWriter.quoted(id))"# }
        for (name, value) in fields.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
            line += ",\(JSONWriter.quoted(name)):"
            switch value {
            case .number(let n): line += n.isFinite ? JSONValue.number(n).text : "null"
            case .string(let s): line += JSONWriter.quoted(s)
            case .bool(let b): line += b ? "true" : "false"
            }
        }
        return line + "}"
    }

    /// A retraction line (docs/LANGUAGE.md, "Corrections").
    static func retraction(personKey: PersonKey, person: String, target: String, time: Int64, reason: String?) -> String {
        make(personKey: personKey, person: person, type: Checker.retractType, time: time,
             fields: [(key: "target", value: .string(target))] + (reason.map { [(key: "reason", value: FieldValue.string($0))] } ?? []))
    }
}

extension Engine {
    /// Applies one stream line through the line path (a fresh applier:
    /// tests and the REPL, one event at a time); the reason when rejected.
    func apply(line: String, number: Int) -> String? {
        var applier = EventApplier(engine: self)
        defer { applier.deallocate() }
        var bytes = Array(line.utf8)
        return bytes.withUnsafeMutableBufferPointer { b in
            switch applier.apply(line: UnsafeBufferPointer(b), number: number) {
            case .rejected(let reason, _): return reason
            case .applied, .afterAsOf: return nil
            }
        }
    }
}
