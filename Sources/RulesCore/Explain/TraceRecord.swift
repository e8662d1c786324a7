/// One change of a person's state, as the engine makes it: the audit
/// trail's record, typed. The trail's JSON (`rules run --trace`, the
/// library's `trace:`) and the explanation page are two renderings of
/// these; neither reads the other back. Schema: docs/TRACE.md.
package struct TraceRecord: Sendable {
    package enum Change: Sendable {
        /// The person's first applied event; the score starts here, and
        /// each attribute at its start value (name, value as JSON; none when
        /// the policy declares no attributes).
        case new(scoreAfter: Int64, attributes: [(name: String, value: String)] = [])
        /// An event rule's score change (its `±EXPR`s, each rounded, summed).
        case score(change: Int64, before: Int64, after: Int64)
        /// The event's changes went past `min`/`max`; clamped once.
        case clamp(before: Int64, after: Int64)
        /// An event rule set a flag, denial or grant; `until`: this effect's
        /// own end (nil: until lifted).
        /// A denial's `reason` when it has one (`deny travel because debt`).
        case set(TargetKind, name: String, until: Int64?, reason: String? = nil)
        /// An event rule lifted what event rules had set (for a denial with
        /// a reason: that one).
        case lift(TargetKind, name: String, reason: String? = nil)
        /// An event rule set an attribute (`set region to …`); the values
        /// as JSON (`"north"`, `18`, `true`).
        case attribute(name: String, before: String, after: String)
        /// A `while` rule started or stopped holding these effects.
        case start(holds: [(kind: TargetKind, name: String)])
        case stop(holds: [(kind: TargetKind, name: String)])
        /// A retraction took the event with id `target` back; the person was
        /// rebuilt without it. `remaining`: their events that still stand
        /// (none: they leave the report).
        case retract(target: String, reason: String?, before: Int64, after: Int64, remaining: Int)
        /// An event arrived late and was applied in time order; the person
        /// was rebuilt with it in its place.
        case late(before: Int64, after: Int64)
    }

    /// The stream line of the event behind it; nil when time alone caused it.
    package var line: Int?
    package var time: Int64
    package var person: String
    /// The rule's global index (`RuleSite.all`); nil for `new` and `clamp`.
    package var rule: Int?
    package var change: Change

    /// docs/TRACE.md's `v`: a change that breaks a reader raises it.
    static let version = 1

    /// Writes records as the trail's NDJSON, in 64 KiB writes.
    final class JSON {
        private let sites: [(rule: String, source: String, name: String)]
        private let write: ([UInt8]) -> Void
        private var buffer: [UInt8] = []

        init(sites: [RuleSite], write: @escaping ([UInt8]) -> Void) {
            self.sites = sites.map { (JSONWriter.quoted("\($0.file):\($0.line)"), JSONWriter.quoted($0.text), $0.name.map { #""rule_name":\#(JSONWriter.quoted($0)),"# } ?? "") }
            self.write = write
        }

        func append(_ r: TraceRecord) {
            var s = #"{"v":\#(TraceRecord.version),"line":\#(r.line.map(String.init) ?? "null"),"time":"\#(Timestamp.format(r.time))","citizen":"#
            s += JSONWriter.quoted(r.person)
            // `rule_name` only for a named rule: a policy without names
            // writes the trail it always wrote.
            s += r.rule.map { #","rule":\#(sites[$0].rule),\#(sites[$0].name)"source":\#(sites[$0].source)"# } ?? #","rule":null,"source":null"#
            s += "," + Self.fields(r.change) + "}\n"
            buffer += s.utf8
            if buffer.count > 1 << 16 { flush() }
        }

        func flush() {
            if !buffer.isEmpty { write(buffer); buffer.removeAll(keepingCapacity: true) }
        }

        /// `,"reason":…` for a denial with a reason; nothing otherwise (a
        /// policy without reasons writes the trail it always wrote).
        static func because(_ reason: String?) -> String {
            reason.map { #","reason":\#(JSONWriter.quoted($0))"# } ?? ""
        }

        /// `"effect":…` and its keys, in docs/TRACE.md's order.
        static func fields(_ change: Change) -> String {
            switch change {
            case .new(let after, let attributes):
                // Only a policy with attributes has the key: other trails
                // read as they always did.
                let starts = attributes.isEmpty ? "" : #","attributes":{"#
                    + attributes.map { "\(JSONWriter.quoted($0.name)):\($0.value)" }.joined(separator: ",") + "}"
                return #""effect":"new","score_after":\#(after)\#(starts)"#
            case .score(let change, let before, let after):
                return #""effect":"score","change":\#(change),"score_before":\#(before),"score_after":\#(after)"#
            case .clamp(let before, let after):
                return #""effect":"clamp","score_before":\#(before),"score_after":\#(after)"#
            case .set(let kind, let name, let until, let reason):
                let end = until.map { JSONWriter.quoted(Timestamp.format($0)) } ?? "null"
                return #""effect":"\#(kind.setVerb)","name":\#(JSONWriter.quoted(name))\#(Self.because(reason)),"until":\#(end)"#
            case .lift(let kind, let name, let reason):
                return #""effect":"\#(kind.liftVerb)","name":\#(JSONWriter.quoted(name))\#(Self.because(reason))"#
            case .start(let holds), .stop(let holds):
                let effect = if case .start = change { "start" } else { "stop" }
                let list = holds.map { JSONWriter.quoted("\($0.kind.setVerb) \($0.name)") }.joined(separator: ",")
                return #""effect":"\#(effect)","holds":[\#(list)]"#
            case .retract(let target, let reason, let before, let after, let remaining):
                let why = reason.map(JSONWriter.quoted) ?? "null"
                return #""effect":"retract","target":\#(JSONWriter.quoted(target)),"reason":\#(why),"score_before":\#(before),"score_after":\#(after),"remaining":\#(remaining)"#
            case .late(let before, let after):
                return #""effect":"late","score_before":\#(before),"score_after":\#(after)"#
            case .attribute(let name, let before, let after):
                return #""effect":"set","attribute":\#(JSONWriter.quoted(name)),"before":\#(before),"after":\#(after)"#
            }
        }
    }
}
