#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An engine's whole state as bytes, to stop a run and continue it later
/// (`rules run --state FILE`, `--resume FILE`), and the crash-safe file it
/// lives in.
///
/// Layout (little-endian), version 5 (what event rules set, the window
/// buffers and the attributes are saved by name, so that a changed policy
/// can resume; kept history; version 4, read too, had no attributes;
/// version 3 saved by index, and read back only into the same policy):
///
///     "RULESCK\0"  magic, 8 bytes
///     UInt32       format version
///     UInt64       policy fingerprint (`Fingerprint`: what the rules mean,
///                  not how they are written)
///     UInt64       length of the body
///     body         see `encode`
///     UInt64       FNV-1a checksum of everything before it
///
/// Into the same policy a checkpoint is read back exactly. Into another
/// (`--resume` with a changed policy; the service's policy change) what
/// people have carries over by name — the score (within the new bounds),
/// each flag, denial and grant set by event rules with its end, the window
/// buffers the new policy has too, kept history (sealed: it is part of the
/// state carried over) — and `Info.notes` says what did not. A damaged or
/// cut file, or another format version, is an error with a reason, never a
/// wrong state.
public enum Checkpoint {
    /// The format version this build writes and reads.
    public static let version: UInt32 = 5
    /// The oldest version this build reads (it had no attributes).
    static let oldestRead: UInt32 = 4
    static let magic = Array("RULESCK\0".utf8)

    /// Why a checkpoint cannot be saved or loaded, in words.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// What a checkpoint says about itself.
    public struct Info: Sendable {
        /// Lines of the stream (across every run that led to it) already in
        /// the state: resume with the lines after these.
        public var lines: Int
        /// People in the state.
        public var people: Int
        /// The latest event time in the state (microseconds since 1970, `Timestamp.perSecond`).
        public var clock: Int64?
        /// Written under another policy than the one it is read into.
        public var policyChanged = false
        /// What did not carry over to a changed policy, one line each
        /// (`rules run --resume` prints them).
        public var notes: [String] = []
    }

    // MARK: - Writing

    /// The state of `engines` (one, or a parallel run's), which together
    /// have read `lines` lines.
    ///
    /// Body: lines; the clock; the slots (kind and name of what each holds);
    /// the buffers (identity and longest window); whether history is kept,
    /// and its limits; each person (id, score, last time, the end in each
    /// slot, each buffer's entries), in byte order of ids; with history, per
    /// person their base if any and their records in arrival order; the
    /// notes on failed expressions.
    package static func encode(_ engines: [Engine], lines: Int) -> [UInt8] {
        encodeUnsealed(engines, lines: lines).bytes
    }

    /// Runs `task(k)` for every engine `k` at once, returning when all are
    /// done (the service's shard threads).
    package typealias InParallel = (_ task: @escaping (Int) -> Void) -> Void

    /// `encode`, all but its checksum and the copy into one array: what
    /// has to be done while the engines stand still (the service holds its
    /// lock meanwhile, and no body is applied). The rest — a third of the
    /// time, the checksum being one multiply per byte — is `Unsealed`'s, on
    /// a thread that holds no lock. With `inParallel`, the engines' ids are
    /// sorted and the people written by every engine's thread at once.
    package static func encodeUnsealed(_ engines: [Engine], lines: Int, inParallel: InParallel? = nil) -> Unsealed {
        var w = ByteWriter()
        w.bytes(magic)
        w.u32(version)
        w.u64(engines[0].program.fingerprint)
        // The body's length goes before it: written once it is known, so
        // that the body is made in place, not made and then copied.
        let lengthAt = w.count
        w.u64(0)
        w.int(lines)
        let clock = engines.compactMap(\.clock).max()
        w.int(clock == nil ? 0 : 1)
        w.i64(clock ?? 0)
        let program = engines[0].program
        w.int(program.slotCount)
        for slot in 0..<program.slotCount {
            // A timed rule's deadline: kind `timer`, named by the rule's
            // text (it carries over while the rule stays as written).
            if let k = program.timer(ofSlot: slot) {
                w.string(Layout.timerKind)
                w.string(program.timerText(k))
                continue
            }
            // A denial for a reason: its kind is `deny:REASON`.
            let (kind, name, reason) = program.target(ofSlot: slot)
            w.string(kind.rawValue + (reason.map { ":" + program.policy.denialReasons[$0] } ?? ""))
            w.string(program.policy.names(of: kind)[name])
        }
        w.int(program.policy.buffers.count)
        for (b, spec) in program.policy.buffers.enumerated() {
            w.string(Fingerprint.identity(of: spec, in: program.policy))
            w.int(spec.cap.map { $0 + 1 } ?? 0)
            w.i64(program.policy.bufferWindows[b])
        }
        let types = program.policy.attributes.map(\.type)
        w.int(types.count)
        for attribute in program.policy.attributes {
            w.string(attribute.name)
            w.string(attribute.type.rawValue)
        }
        let history = engines[0].history
        w.int(history == nil ? 0 : 1)
        w.i64(history?.retain ?? 0)
        w.i64(history?.lateness ?? 0)
        // Everyone the engines know, in byte order of their ids, whichever
        // engine holds them, so the file does not depend on how many
        // threads wrote it (people all of whose events were retracted too:
        // their history still answers for them).
        let order = sortedPeople(engines, inParallel: inParallel)
        w.int(order.count)
        var pieces = [w]
        pieces += writePeople(order, of: engines, types: types, inParallel: inParallel)
        var tail = ByteWriter()
        if history != nil { writeHistory(order, of: engines, types: types, into: &tail) }
        // The notes on expressions that failed, so the summary at the end
        // counts the whole stream.
        var failures: [(EvalContext.FailureKey, (count: Int, firstLine: Int))] = []
        for engine in engines { failures += engine.context.failures.map { ($0.key, $0.value) } }
        failures.sort { ($0.0.rule, $0.1.firstLine) < ($1.0.rule, $1.1.firstLine) }
        tail.int(failures.count)
        for (key, stat) in failures {
            tail.int(key.rule)
            switch key.failure {
            case .missingField(let f): tail.int(0); tail.int(f)
            case .wrongType: tail.int(1); tail.int(0)
            case .divisionByZero: tail.int(2); tail.int(0)
            case .notFinite: tail.int(3); tail.int(0)
            case .badDuration: tail.int(4); tail.int(0)
            }
            tail.int(stat.count)
            tail.int(stat.firstLine)
        }
        pieces.append(tail)
        let body = pieces.reduce(0) { $0 + $1.count } - lengthAt - 8
        pieces[0].setU64(UInt64(body), at: lengthAt)
        return Unsealed(pieces)
    }

    /// A checkpoint as `encodeUnsealed` made it: its bytes in pieces, the
    /// checksum after them not yet taken.
    package final class Unsealed: @unchecked Sendable {
        private let pieces: [ByteWriter]
        private var checksum: UInt64? = nil

        fileprivate init(_ pieces: [ByteWriter]) { self.pieces = pieces }

        deinit { for piece in pieces { piece.deallocate() } }

        /// The finished checkpoint's length.
        package var count: Int { pieces.reduce(8) { $0 + $1.count } }

        /// The finished checkpoint's bytes, in order, in pieces.
        package func write(_ put: (UnsafeRawBufferPointer) -> Void) {
            if checksum == nil {
                checksum = pieces.reduce(Hashing.fnv1aStart) { sum, piece in piece.withBytes { Hashing.fnv1a($0, continuing: sum) } }
            }
            for piece in pieces { piece.withBytes { put(UnsafeRawBufferPointer($0)) } }
            withUnsafeBytes(of: checksum!.littleEndian) { put($0) }
        }

        /// The finished checkpoint as one array.
        package var bytes: [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(count)
            write { out.append(contentsOf: $0) }
            return out
        }
    }

    /// With history kept: per person in `order`, their base if any and
    /// their records in arrival order.
    private static func writeHistory(_ order: [(engine: Int, person: Int)], of engines: [Engine], types: [ValueType], into w: inout ByteWriter) {
        for (e, p) in order {
            let h = engines[e].history!
            if let base = h.bases[p] { w.int(1); w.base(base, types: types) } else { w.int(0) }
            w.int(h.standingCount(p))
            w.int(h.wasSeen(p) ? 1 : 0)
            let records = h.arrived(of: p)
            w.int(records.count)
            for r in records {
                w.i64(r.time)
                w.int(r.line)
                w.int(r.sealed ? 2 : r.retractedAt == nil ? 0 : 1)
                w.int(r.retractedAt ?? 0)
                w.int(r.id == nil ? 0 : 1)
                if let id = r.id { w.int(id.count); w.bytes(id) }
                w.int(r.bytes.count)
                w.bytes(r.bytes)
            }
        }
    }

    /// Everyone the engines know, in byte order of their ids: each engine's
    /// sorted, then merged (each list is in order already: no sort of them
    /// all).
    private static func sortedPeople(_ engines: [Engine], inParallel: InParallel?) -> [(engine: Int, person: Int)] {
        let sortedIds = inParallel.map { eachAtOnce(engines.count, $0) { engines[$0].people.sortedIds() } }
            ?? engines.map { $0.people.sortedIds() }
        var order = sortedIds[0].map { (engine: 0, person: $0) }
        for e in engines.indices.dropFirst() {
            let sorted = sortedIds[e]
            var merged: [(engine: Int, person: Int)] = []
            merged.reserveCapacity(order.count + sorted.count)
            var i = 0
            for p in sorted {
                while i < order.count && engines[order[i].engine].people.precedes(order[i].person, engines[e].people, p) {
                    merged.append(order[i])
                    i += 1
                }
                merged.append((e, p))
            }
            merged += order[i...]
            order = merged
        }
        return order
    }

    /// Everyone in `order`, each id then their state: in one piece, or
    /// with `inParallel` (and people enough) in a piece per engine, each
    /// written by its own thread (the engines are only read).
    private static func writePeople(_ order: [(engine: Int, person: Int)], of engines: [Engine], types: [ValueType],
                                    inParallel: InParallel?) -> [ByteWriter] {
        guard let inParallel, engines.count > 1, order.count >= 4096 else {
            var piece = ByteWriter()
            writePeople(order, order.indices, of: engines, types: types, into: &piece)
            return [piece]
        }
        let cuts = (0...engines.count).map { order.count * $0 / engines.count }
        return eachAtOnce(engines.count, inParallel) { k in
            var piece = ByteWriter()
            writePeople(order, cuts[k]..<cuts[k + 1], of: engines, types: types, into: &piece)
            return piece
        }
    }

    /// `make(k)` for each k below `count` (the engines), all at once by
    /// `inParallel`; the results in order. Each task fills its own slot.
    private static func eachAtOnce<T>(_ count: Int, _ inParallel: InParallel, _ make: @escaping (Int) -> T) -> [T] {
        let made = UnsafeMutableBufferPointer<T>.allocate(capacity: count)
        defer { made.deallocate() }
        inParallel { k in (made.baseAddress! + k).initialize(to: make(k)) }
        return (0..<count).map { (made.baseAddress! + $0).move() }
    }

    /// People `range` of `order`: each id, then their state.
    private static func writePeople(_ order: [(engine: Int, person: Int)], _ range: Range<Int>, of engines: [Engine], types: [ValueType],
                                    into w: inout ByteWriter) {
        // A person takes about their row and their id (more with window
        // entries): reserved once, not grown by doubling.
        if let first = range.first {
            let store = engines[order[first].engine].store
            w.reserve(range.count * (8 * (store.stride + store.buffers.count) + 24))
        }
        // Each engine's tables reached unretained (`engines` keeps them):
        // a retain and a release per person and table cost more than the
        // writing.
        let tables = engines.map { Unmanaged.passUnretained($0.people) }
        let stores = engines.map { Unmanaged.passUnretained($0.store) }
        for k in range {
            // People in order of their ids are scattered in memory: asked
            // for ahead, as the report does.
            if k + Prefetch.reportFirstDistance < range.upperBound {
                let ahead = order[k + Prefetch.reportFirstDistance]
                engines[ahead.engine].prefetchPerson(ahead.person, stage: 0)
            }
            if k + Prefetch.reportSecondDistance < range.upperBound {
                let ahead = order[k + Prefetch.reportSecondDistance]
                engines[ahead.engine].prefetchPerson(ahead.person, stage: 1)
            }
            let (e, p) = order[k]
            tables[e]._withUnsafeGuaranteedRef { $0.withKey(p) { w.int($0.count); w.bytes($0) } }
            stores[e]._withUnsafeGuaranteedRef { w.state(of: p, in: $0, types: types) }
        }
    }

    /// Writes `bytes` to `path` so that a crash at any moment leaves either
    /// the previous file or the new one, whole: a temporary file next to it,
    /// flushed to disk, renamed over it, and the directory flushed.
    public static func writeFile(_ bytes: [UInt8], to path: String) -> Failure? {
        writeFile(to: path) { file in bytes.withUnsafeBytes { file.write($0) } }
    }

    /// The same, the bytes given in pieces by `produce` as it makes them, so
    /// that a file as big as the engine's state is never whole in memory.
    package static func writeFile(to path: String, _ produce: (inout FileSink) -> Void) -> Failure? {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return Failure(description: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var file = FileSink(fd: fd)
        produce(&file)
        file.flush()
        if let reason = file.failure {
            close(fd); unlink(temporary)
            return Failure(description: "cannot write \(temporary): \(reason)")
        }
        guard fsync(fd) == 0, close(fd) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            return Failure(description: "cannot flush \(temporary) to disk: \(reason)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            return Failure(description: "cannot replace \(path): \(reason)")
        }
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]).isEmpty ? "/" : String(path[..<$0]) } ?? "."
        let dfd = open(directory, O_RDONLY)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
        return nil
    }

    // MARK: - Reading

    /// Checks a checkpoint against `program` and says what it holds.
    package static func inspect(_ bytes: [UInt8], program: Program) -> Result<Info, Failure> {
        do {
            var (r, same, version) = try body(of: bytes, program: program)
            let lines = try r.int()
            let hasClock = try r.int() != 0
            let clock = try r.i64()
            let layout = try Layout(&r, version: version)
            let kept = try r.int() == 1, retain = try r.i64()
            _ = try r.i64()
            let people = try r.int()
            let mapped = layout.map(to: program)
            let filled = kept ? EventApplier.fillable(mapped.fresh, in: program) : []
            return .success(Info(lines: lines, people: people, clock: hasClock ? clock : nil, policyChanged: !same,
                                 notes: same ? [] : mapped.notes + layout.mapAttributes(to: program).notes
                                     + Layout.notes(fresh: mapped.fresh, filled: filled, retain: retain, program: program)))
        } catch let f as Failure {
            return .failure(f)
        } catch {
            return .failure(Failure(description: "\(error)"))
        }
    }

    /// The slots and buffers a checkpoint was written with, by name.
    private struct Layout {
        /// A slot's kind: a target (with a denial's reason), or nil for a
        /// timed rule's deadline (`timerKind`; its name is the rule's text).
        var slots: [(kind: TargetKind?, name: String, reason: String?)] = []
        static let timerKind = "timer"
        var buffers: [(identity: String, cap: Int?, window: Int64)] = []
        var attributes: [(name: String, type: ValueType)] = []
        var attributeTypes: [ValueType] { attributes.map(\.type) }

        init(_ r: inout ByteReader, version: UInt32) throws {
            for _ in 0..<(try r.int()) {
                let written = try r.string()
                if written == Self.timerKind {
                    slots.append((nil, try r.string(), nil))
                    continue
                }
                let colon = written.firstIndex(of: ":")
                guard let kind = TargetKind(rawValue: String(written[..<(colon ?? written.endIndex)])), colon == nil || kind == .deny else {
                    throw Failure(description: "a slot of an unknown kind")
                }
                slots.append((kind, try r.string(), colon.map { String(written[written.index(after: $0)...]) }))
            }
            for _ in 0..<(try r.int()) {
                let identity = try r.string(), cap = try r.int()
                buffers.append((identity, cap == 0 ? nil : cap - 1, try r.i64()))
            }
            guard version >= 5 else { return }
            for _ in 0..<(try r.int()) {
                let name = try r.string()
                guard let type = ValueType(rawValue: try r.string()), [.number, .string, .bool].contains(type) else {
                    throw Failure(description: "an attribute of an unknown type")
                }
                attributes.append((name, type))
            }
        }

        /// Where each saved attribute goes in `program` (nil: nowhere: not
        /// there, or of another type), and what is said of those dropped.
        func mapAttributes(to program: Program) -> (map: [Int?], notes: [String]) {
            var notes: [String] = []
            let map = attributes.map { (name, type) -> Int? in
                guard let k = program.policy.attributes.firstIndex(where: { $0.name == name }) else {
                    notes.append("attribute `\(name)` is not in the new policy: dropped")
                    return nil
                }
                guard program.policy.attributes[k].type == type else {
                    notes.append("attribute `\(name)` was a \(type.rawValue) and is a \(program.policy.attributes[k].type.rawValue) in the new policy: it starts again")
                    return nil
                }
                return k
            }
            return (map, notes)
        }

        /// Where each saved slot and buffer goes in `program` (nil: nowhere),
        /// the buffers new in it, and the names that do not carry over.
        func map(to program: Program) -> (slots: [Int?], buffers: [Int?], fresh: [Int], notes: [String]) {
            var notes: [String] = []
            let slots = self.slots.map { (kind, name, reason) -> Int? in
                guard let kind else {
                    if let k = program.timers.indices.first(where: { program.timerText($0) == name }) { return program.timers[k].slot }
                    notes.append("the timed rule `\(name)` is not in the new policy: its deadlines are dropped")
                    return nil
                }
                if let id = program.policy.names(of: kind).firstIndex(of: name) {
                    if let reason {
                        if let r = program.policy.denialReasons.firstIndex(of: reason), program.slot(denying: id, because: r) >= 0 {
                            return program.slot(denying: id, because: r)
                        }
                    } else if program.slot(kind, id) >= 0 {
                        return program.slot(kind, id)
                    }
                }
                notes.append("`\(kind.setVerb) \(name)\(reason.map { " because \($0)" } ?? "")` set by event rules is not in the new policy: dropped")
                return nil
            }
            // Each new buffer takes a saved one that holds the same events
            // (the same cap first: a counted rule's and a `count()`'s buffer
            // of one event type hold different spans of it).
            var buffers = [Int?](repeating: nil, count: self.buffers.count)
            var fresh: [Int] = []
            for (b, spec) in program.policy.buffers.enumerated() {
                let identity = Fingerprint.identity(of: spec, in: program.policy)
                let free = self.buffers.indices.filter { buffers[$0] == nil && self.buffers[$0].identity == identity }
                if let old = free.first(where: { self.buffers[$0].cap == spec.cap }) ?? free.first {
                    buffers[old] = b
                } else {
                    fresh.append(b)
                }
            }
            return (slots, buffers, fresh, notes)
        }

        /// What is said of the new buffers: filled from kept history, or
        /// starting empty.
        static func notes(fresh: [Int], filled: [Int], retain: Int64, program: Program) -> [String] {
            fresh.map { b in
                // As the policy writes it: `count(debt within 30 days)`.
                let span = program.policy.bufferSpans[b]
                let text = "`" + program.policy.sources.files[span.file].text(span) + "`"
                return filled.contains(b)
                    ? "a window new in this policy is filled from the kept history (\(DurationText.describe(retain))): \(text)"
                    : "a window new in this policy starts empty: \(text)"
            }
        }
    }

    /// Loads a checkpoint into fresh engines of `program`: person `key`
    /// goes to `engines[owner(key)]` (one engine: all of them). Written
    /// under another policy, what people have carries over by name (see
    /// the type's comment) and the notes say what did not.
    package static func restore(_ bytes: [UInt8], into engines: [Engine],
                               owner: (UnsafeBufferPointer<UInt8>) -> Int = { _ in 0 }) -> Result<Info, Failure> {
        do {
            let program = engines[0].program
            var (r, same, version) = try body(of: bytes, program: program)
            let lines = try r.int()
            let hasClock = try r.int() != 0
            let clock = try r.i64()
            let layout = try Layout(&r, version: version)
            let kept = try r.int() == 1, retain = try r.i64(), lateness = try r.i64()
            if kept {
                guard retain >= 0, lateness >= 0, lateness <= retain else { throw Failure(description: "impossible correction limits") }
                // An engine given limits of its own (`--retain` on the
                // resume) keeps them.
                for engine in engines where engine.history == nil { engine.enableCorrections(Corrections(retain: retain, lateness: lateness)) }
            }
            if same && (layout.slots.count != program.slotCount || layout.buffers.count != program.policy.buffers.count
                        || (version >= 5 && layout.attributes.count != program.policy.attributes.count)) {
                throw Failure(description: "the checkpoint's state does not fit this policy")
            }
            let (slotMap, bufferMap, fresh, slotNotes) = same
                ? (Array(0..<program.slotCount).map(Optional.some), Array(0..<program.policy.buffers.count).map(Optional.some), [], [])
                : layout.map(to: program)
            var filled: [Int] = []
            let (attributeMap, attributeNotes) = layout.mapAttributes(to: program)
            /// A saved base, in this program's slots, buffers and attributes
            /// (one it does not have starts at its start value).
            func carried(_ saved: History.Base) -> History.Base {
                var ends = [Int64](repeating: PersonStore.none, count: program.slotCount)
                for (old, new) in slotMap.enumerated() { if let new { ends[new] = saved.ends[old] } }
                var entries = [[WindowBuffer.Entry]](repeating: [], count: program.policy.buffers.count)
                for (old, new) in bufferMap.enumerated() {
                    guard let new else { continue }
                    let cap = program.policy.buffers[new].cap ?? Int.max
                    entries[new] = Array(saved.entries[old].suffix(cap))
                }
                var score = saved.score
                if let lo = program.minScore, score < lo { score = lo }
                if let hi = program.maxScore, score > hi { score = hi }
                var attributes = program.attributeStarts
                for (old, new) in attributeMap.enumerated() { if let new { attributes[new] = saved.attributes[old] } }
                return History.Base(score: score, lastTime: saved.lastTime, ends: ends, entries: entries, attributes: attributes)
            }
            let people = try r.int()
            var placed: [(engine: Engine, person: Int)] = []
            for _ in 0..<people {
                let key = try r.take(try r.int())
                let engine = try key.withUnsafeBufferPointer { k -> Engine in
                    let e = owner(k)
                    guard e >= 0 && e < engines.count else { throw Failure(description: "no engine for a person") }
                    return engines[e]
                }
                let state = carried(try r.base(slots: layout.slots.count, buffers: layout.buffers.count, attributes: layout.attributeTypes))
                guard let p = key.withUnsafeBufferPointer({ engine.restorePerson(key: $0, score: state.score, lastTime: state.lastTime,
                                                                                 ends: state.ends, entries: state.entries,
                                                                                 attributes: state.attributes) }) else {
                    throw Failure(description: "the checkpoint names a person twice, or a state that does not fit")
                }
                placed.append((engine, p))
            }
            if kept {
                for (engine, p) in placed {
                    let history = engine.history!
                    if try r.int() == 1 {
                        history.setBase(p, carried(try r.base(slots: layout.slots.count, buffers: layout.buffers.count, attributes: layout.attributeTypes)))
                    }
                    let standing = try r.int(), seen = try r.int() == 1
                    for _ in 0..<(try r.int()) {
                        let time = try r.i64(), line = try r.int(), state = try r.int(), at = try r.int()
                        let id: [UInt8]? = try r.int() == 1 ? try r.take(try r.int()) : nil
                        let line_ = try r.take(try r.int())
                        guard (0...2).contains(state) else { throw Failure(description: "a kept event in an unknown state") }
                        id.withUnsafeBufferPointerIfAny { idBytes in
                            line_.withUnsafeBufferPointer {
                                history.restore(person: p, time: time, line: line, id: idBytes, bytes: $0,
                                                retractedAt: state == 1 ? at : nil, sealed: state == 2)
                            }
                        }
                    }
                    history.restoreCounts(person: p, standing: standing, seen: seen)
                }
                if !same {
                    // Windows the new policy adds, from the kept events;
                    // then what came before is in the state carried over:
                    // the base a correction starts from.
                    for engine in engines {
                        var applier = EventApplier(engine: engine)
                        filled = applier.fillFromHistory(fresh)
                        applier.deallocate()
                    }
                    for (engine, p) in placed { engine.history!.setBase(p, engine.base(of: p)) }
                    for engine in engines { engine.history?.sealAll() }
                }
            } else {
                // No history saved: a correction starts from what was.
                for (engine, p) in placed { engine.history?.setBase(p, engine.base(of: p)) }
            }
            if hasClock { for engine in engines { engine.restoreClock(clock) } }
            for engine in engines { engine.lineBase = lines }
            let failures = try r.int()
            for _ in 0..<failures {
                let rule = try r.int(), kind = try r.int(), field = try r.int(), count = try r.int(), first = try r.int()
                // Notes name the old policy's rules: only the same policy keeps them.
                guard same else { continue }
                guard rule < program.outputNote(program.policy.outputs.count) else {
                    throw Failure(description: "a note names an unknown rule")
                }
                let failure: EvalFailure
                switch kind {
                case 0:
                    guard field >= 0 && field < program.policy.fields.count else { throw Failure(description: "a note names an unknown field") }
                    failure = .missingField(field)
                case 1: failure = .wrongType
                case 2: failure = .divisionByZero
                case 3: failure = .notFinite
                case 4: failure = .badDuration
                default: throw Failure(description: "a note of an unknown kind")
                }
                engines[0].context.failures[.init(rule: rule, failure: failure)] = (count, first)
            }
            guard r.atEnd else { throw Failure(description: "unexpected bytes after the state") }
            let notes = slotNotes + (same ? [] : attributeNotes) + Layout.notes(fresh: fresh, filled: filled, retain: retain, program: program)
            return .success(Info(lines: lines, people: people, clock: hasClock ? clock : nil, policyChanged: !same, notes: notes))
        } catch let f as Failure {
            return .failure(f)
        } catch {
            return .failure(Failure(description: "\(error)"))
        }
    }

    /// Checks the envelope; a reader positioned at the body, and whether the
    /// checkpoint was written under this very policy.
    private static func body(of bytes: [UInt8], program: Program) throws -> (ByteReader, Bool, UInt32) {
        guard bytes.count >= 36, Array(bytes[0..<8]) == magic else {
            throw Failure(description: "not a rules checkpoint (it does not start with the checkpoint's magic bytes)")
        }
        var r = ByteReader(bytes: bytes, position: 8)
        let v = try r.u32()
        guard v >= oldestRead && v <= version else {
            throw Failure(description: "checkpoint format version \(v); this rules reads versions \(oldestRead) to \(version)")
        }
        let stored = Hashing.fnv1a(bytes[0..<(bytes.count - 8)])
        var tail = ByteReader(bytes: bytes, position: bytes.count - 8)
        guard try tail.u64() == stored else {
            throw Failure(description: "the checkpoint is damaged (its checksum does not match)")
        }
        let same = try r.u64() == program.fingerprint
        let length = try r.u64()
        guard length == UInt64(bytes.count - r.position - 8) else {
            throw Failure(description: "the checkpoint is cut short or padded (its length does not match)")
        }
        return (ByteReader(bytes: Array(bytes[r.position..<(bytes.count - 8)]), position: 0), same, v)
    }
}

/// Little-endian fixed-width encoding.
/// A file written through a buffer of its own (`Checkpoint.writeFile`):
/// pieces of any size, one `write` per megabyte. The first failure is kept
/// and what follows it is dropped; the caller reports it.
package struct FileSink {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private static let size = 1 << 20
    private(set) var failure: String? = nil

    init(fd: Int32) {
        self.fd = fd
        buffer.reserveCapacity(Self.size)
    }

    package mutating func write(_ bytes: UnsafeRawBufferPointer) {
        if buffer.count + bytes.count > Self.size { flush() }
        if bytes.count >= Self.size { return put(bytes) }
        buffer.append(bytes: bytes)
    }

    package mutating func write(_ bytes: [UInt8]) { bytes.withUnsafeBytes { write($0) } }

    mutating func flush() {
        buffer.withUnsafeBytes { put($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private mutating func put(_ bytes: UnsafeRawBufferPointer) {
        var written = 0
        while failure == nil && written < bytes.count {
            let n = systemWrite(fd, bytes.baseAddress! + written, bytes.count - written)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { failure = n == 0 ? "nothing was written" : String(cString: strerror(errno)) }
            else { written += n }
        }
    }
}

private func systemWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int { write(fd, bytes, count) }

/// Bytes given in pieces, many of them a few bytes long (a length, an id),
/// gathered into chunks of a megabyte before each chunk is added to a
/// checksum and handed on: per piece, the checksum's and the sink's calls
/// cost more than the piece (the service's checkpoint writes its change
/// feed so, hundreds of thousands of pieces: two thirds of its cost went
/// there). The checksum is the same as of the pieces one by one.
package struct ChunkedChecksum {
    private var chunk = PlainBuffer<UInt8>()
    private var sum: Hashing.Checksum
    private let put: (UnsafeRawBufferPointer) -> Void
    private static let size = 1 << 20

    /// For `count` bytes in all, handed on to `put` a chunk at a time.
    package init(count: Int, put: @escaping (UnsafeRawBufferPointer) -> Void) {
        sum = Hashing.Checksum(count: count)
        self.put = put
    }

    package mutating func bytes(_ b: UnsafeRawBufferPointer) {
        if chunk.count + b.count > Self.size { flush() }
        if b.count >= Self.size {
            sum.add(b)
            put(b)
        } else {
            chunk.append(contentsOf: b.bindMemory(to: UInt8.self))
        }
    }

    /// A number's eight bytes, little-endian: one store.
    package mutating func word(_ n: UInt64) {
        if chunk.count + 8 > Self.size { flush() }
        chunk.appendBytes(of: n.littleEndian)
    }

    /// A four-byte number, little-endian.
    package mutating func word(_ n: UInt32) {
        if chunk.count + 4 > Self.size { flush() }
        chunk.appendBytes(of: n.littleEndian)
    }

    private mutating func flush() {
        let bytes = UnsafeRawBufferPointer(start: chunk.base, count: chunk.count)
        sum.add(bytes)
        put(bytes)
        chunk.removeAll()
    }

    /// Hands on what is left; the checksum of every byte given. Not used
    /// after.
    package mutating func finish() -> UInt64 {
        flush()
        chunk.deallocate()
        return sum.value
    }
}

/// A checkpoint's bytes as they are made: in plain memory, each number one
/// store (a checkpoint is millions of them; appended to an array, eight
/// bytes cost a hundred instructions). Whoever holds it last frees it (`deallocate`).
struct ByteWriter {
    private var out = PlainBuffer<UInt8>()
    var count: Int { out.count }
    mutating func bytes<C: Collection>(_ b: C) where C.Element == UInt8 {
        if b.withContiguousStorageIfAvailable({ out.append(contentsOf: $0) }) == nil { for x in b { out.append(x) } }
    }
    mutating func u32(_ v: UInt32) { out.appendBytes(of: v.littleEndian) }
    mutating func u64(_ v: UInt64) { out.appendBytes(of: v.littleEndian) }
    /// Overwrites the eight bytes at `offset`.
    mutating func setU64(_ v: UInt64, at offset: Int) { out.setBytes(of: v.littleEndian, at: offset) }
    /// Room for `n` more bytes.
    mutating func reserve(_ n: Int) { out.reserve(out.count + n) }
    /// The bytes written so far.
    func withBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R { body(UnsafeBufferPointer(start: out.base, count: out.count)) }
    /// Frees its memory; the writer is not used after.
    func deallocate() { out.deallocate() }
    mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    mutating func int(_ v: Int) { i64(Int64(v)) }
    mutating func f64(_ v: Double) { u64(v.bitPattern) }
    mutating func string(_ s: String) { int(s.utf8.count); bytes(s.utf8) }

    /// A person's state as the store holds it, written as `base` writes
    /// it (`Engine.base(of:)` would make arrays for it).
    mutating func state(of p: Int, in store: PersonStore, types: [ValueType]) {
        i64(store.score(p))
        i64(store.lastTime(p))
        for slot in 0..<store.slotCount { i64(store.end(p, slot)) }
        for b in 0..<store.buffers.count {
            store.buffer(b) { buffer in
                buffer.withEntries(person: p) { list in
                    int(list.count)
                    for entry in list { i64(entry.time); f64(entry.value) }
                }
            }
        }
        for (k, type) in types.enumerated() { attribute(store.attribute(p, k), type) }
    }

    /// An attribute's value: a number's bits, a bool as 0 or 1, a string's
    /// bytes (never its address: that is this process's alone).
    mutating func attribute(_ word: Int64, _ type: ValueType) {
        switch type {
        case .string:
            let s = StringPool.bytes(word)
            int(s.count)
            bytes(s.buffer)
        default: i64(word)
        }
    }

    /// A person's state: score, last time, the end in each slot, each
    /// buffer's entries.
    mutating func base(_ b: History.Base, types: [ValueType]) {
        i64(b.score)
        i64(b.lastTime)
        for end in b.ends { i64(end) }
        for list in b.entries {
            int(list.count)
            for entry in list { i64(entry.time); f64(entry.value) }
        }
        for (word, type) in zip(b.attributes, types) { attribute(word, type) }
    }
}

struct ByteReader {
    let bytes: [UInt8]
    var position: Int
    var atEnd: Bool { position == bytes.count }

    mutating func take(_ n: Int) throws -> [UInt8] {
        guard n >= 0, n <= bytes.count - position else {
            throw Checkpoint.Failure(description: "the checkpoint is cut short (at byte \(position))")
        }
        defer { position += n }
        return Array(bytes[position..<(position + n)])
    }

    mutating func u64() throws -> UInt64 {
        let b = try take(8)
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(b[k]) << (8 * UInt64(k)) }
        return v
    }

    mutating func u32() throws -> UInt32 {
        let b = try take(4)
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(b[k]) << (8 * UInt32(k)) }
        return v
    }

    mutating func i64() throws -> Int64 { Int64(bitPattern: try u64()) }
    mutating func string() throws -> String { String(decoding: try take(try int()), as: UTF8.self) }

    mutating func base(slots: Int, buffers: Int, attributes types: [ValueType]) throws -> History.Base {
        let score = try i64(), last = try i64()
        var ends: [Int64] = []
        for _ in 0..<slots { ends.append(try i64()) }
        var entries: [[WindowBuffer.Entry]] = []
        for _ in 0..<buffers {
            var list: [WindowBuffer.Entry] = []
            for _ in 0..<(try int()) { list.append(WindowBuffer.Entry(time: try i64(), value: try f64())) }
            entries.append(list)
        }
        var attributes: [Int64] = []
        for type in types {
            switch type {
            case .string:
                let bytes = try take(try int())
                attributes.append(bytes.withUnsafeBufferPointer { StringPool.shared.intern($0) })
            case .bool:
                let b = try i64()
                guard b == 0 || b == 1 else { throw Checkpoint.Failure(description: "a bool attribute that is neither true nor false") }
                attributes.append(b)
            default: attributes.append(try i64())
            }
        }
        return History.Base(score: score, lastTime: last, ends: ends, entries: entries, attributes: attributes)
    }
    mutating func f64() throws -> Double { Double(bitPattern: try u64()) }

    /// A count or index: never negative, never more than the bytes left
    /// could hold, so a damaged file cannot ask for a huge allocation.
    mutating func int() throws -> Int {
        let v = try i64()
        guard v >= 0, v <= Int64(bytes.count) * 8 + 1 << 40 else {
            throw Checkpoint.Failure(description: "the checkpoint holds an impossible number at byte \(position - 8)")
        }
        return Int(v)
    }
}

extension Optional where Wrapped == [UInt8] {
    func withUnsafeBufferPointerIfAny<R>(_ body: (UnsafeBufferPointer<UInt8>?) -> R) -> R {
        switch self {
        case .some(let bytes): return bytes.withUnsafeBufferPointer { body($0) }
        case .none: return body(nil)
        }
    }
}
