#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One body's changed report lines in one engine, in byte order of the
/// ids (`ReportChanges`): ids and line states in buffers of the list's own,
/// each change a view into them. The feed and the lookups read a body's
/// changes through views, so that a change costs no reference counting on
/// its way (a million changed lines made that a tenth of the service's
/// time). A line's text is not written here: whoever needs it writes it
/// from the line state with a `LineRenderer` of the list's `format` (the
/// lookups never do; a change feed's client, when it reads the event).
package final class ChangeList {
    struct Item {
        var start: Int, idEnd: Int
        /// -1: no line (the person left the report); else where the line's
        /// text ends, `idEnd` when the list holds line states instead.
        var lineEnd: Int
        /// Where the line state starts in `states`.
        var state: Int
        /// The person's number in the engine; -1 when not known.
        var person: Int
    }

    private let bytes: UnsafeMutableBufferPointer<UInt8>
    private let states: UnsafeMutableBufferPointer<UInt64>
    private let items: UnsafeMutableBufferPointer<Item>
    private let stateWords: Int
    /// How the line states read as text (nil: a list of texts).
    package let format: LineFormat?

    /// Takes copies of the buffers; `items` are in the list's order.
    init(bytes: UnsafeBufferPointer<UInt8>, states: UnsafeBufferPointer<UInt64>, items: UnsafeBufferPointer<Item>, stateWords: Int, format: LineFormat?) {
        self.format = format
        self.bytes = Self.copy(bytes)
        self.states = Self.copy(states)
        self.items = Self.copy(items)
        self.stateWords = stateWords
    }

    /// The same, from arrays.
    init(bytes: [UInt8], states: [UInt64], items: [Item], stateWords: Int, format: LineFormat?) {
        self.format = format
        self.bytes = bytes.withUnsafeBufferPointer(Self.copy)
        self.states = states.withUnsafeBufferPointer(Self.copy)
        self.items = items.withUnsafeBufferPointer(Self.copy)
        self.stateWords = stateWords
    }

    private static func copy<T>(_ from: UnsafeBufferPointer<T>) -> UnsafeMutableBufferPointer<T> {
        let to = UnsafeMutableBufferPointer<T>.allocate(capacity: from.count)
        _ = to.initialize(from: from)
        return to
    }

    /// A list of changes given as values (tests; a feed fed by hand), in
    /// their order; they have no line states.
    package convenience init(_ changes: [ReportChanges.Change]) {
        var bytes: [UInt8] = [], items: [Item] = []
        for change in changes {
            let start = bytes.count
            bytes += change.person
            let idEnd = bytes.count
            if let line = change.line { bytes += line }
            items.append(Item(start: start, idEnd: idEnd, lineEnd: change.line == nil ? -1 : bytes.count, state: -1, person: change.index))
        }
        self.init(bytes: bytes, states: [], items: items, stateWords: 0, format: nil)
    }

    /// A list read back from a checkpoint: ids one after another (each
    /// ending at `idEnds[k]`), and a line state for each person `present`
    /// (in the report), `stateWords` each, read with `format`.
    package convenience init(ids: [UInt8], idEnds: [Int], present: [Bool], states: [UInt64], stateWords: Int, format: LineFormat) {
        var items: [Item] = [], state = 0
        items.reserveCapacity(idEnds.count)
        for k in idEnds.indices {
            let start = k == 0 ? 0 : idEnds[k - 1]
            items.append(Item(start: start, idEnd: idEnds[k], lineEnd: present[k] ? idEnds[k] : -1, state: present[k] ? state : -1, person: -1))
            if present[k] { state += stateWords }
        }
        self.init(bytes: ids, states: states, items: items, stateWords: stateWords, format: format)
    }

    /// The memory the list holds (what a change feed counts).
    package var memory: Int { bytes.count + 8 * states.count + MemoryLayout<Item>.stride * items.count }

    deinit {
        bytes.deallocate()
        states.deallocate()
        items.deallocate()
    }

    package var count: Int { items.count }
    package var isEmpty: Bool { items.isEmpty }

    /// Change `k`, valid while the list is.
    @inline(__always)
    package func view(_ k: Int) -> ChangeView {
        let item = items[k]
        let base = bytes.baseAddress!
        return ChangeView(person: UnsafeBufferPointer(start: base + item.start, count: item.idEnd - item.start),
                          text: item.lineEnd <= item.idEnd ? nil : UnsafeBufferPointer(start: base + item.idEnd, count: item.lineEnd - item.idEnd),
                          state: item.lineEnd < 0 || item.state < 0 ? nil : UnsafeBufferPointer(start: states.baseAddress! + item.state, count: stateWords),
                          index: item.person, present: item.lineEnd >= 0)
    }

    /// Change `k`'s id, valid while the list is.
    @inline(__always)
    func id(_ k: Int) -> UnsafeBufferPointer<UInt8> {
        let item = items[k]
        return UnsafeBufferPointer(start: bytes.baseAddress! + item.start, count: item.idEnd - item.start)
    }

    /// The changes as values (tests; a policy change's summary).
    package var changes: [ReportChanges.Change] { MergedChanges([self]).changes }
}

/// One change of a `ChangeList`: the person's id; whether they are in the
/// report (false: they left it, every event retracted); their new line's
/// state (`ReportWriter.lineState`) — or, in a list of texts, the line
/// itself (no newline); and the person's number in their engine (-1: not
/// known). `LineRenderer.line(of:)` gives the text either way.
package struct ChangeView {
    package let person: UnsafeBufferPointer<UInt8>
    let text: UnsafeBufferPointer<UInt8>?
    package let state: UnsafeBufferPointer<UInt64>?
    package let index: Int
    package let present: Bool
}

/// How a policy's line states read as report lines: what a `LineRenderer`
/// is made from. Shared by every list of changes one tracker makes.
package final class LineFormat: @unchecked Sendable {
    package let program: Program
    let personKey: PersonKey
    /// Words in each of its line states.
    package let stateWords: Int

    init(program: Program, personKey: PersonKey, stateWords: Int) {
        self.program = program
        self.personKey = personKey
        self.stateWords = stateWords
    }

    package func renderer() -> LineRenderer { LineRenderer(self) }
}

/// Writes changed lines as text, each as `GET /v1/people/ID` answers it;
/// one per thread (it has a buffer of its own).
package final class LineRenderer {
    package let format: LineFormat?
    private let writer: ReportWriter?

    /// A renderer of `format`'s line states (nil: of lists of texts only).
    package init(_ format: LineFormat?) {
        self.format = format
        writer = format.map { ReportWriter(program: $0.program, personKey: $0.personKey, capacity: 4096) }
    }

    /// The change's line (no newline), valid until the next call; nil when
    /// the person left the report.
    package func line(of change: ChangeView) -> UnsafeBufferPointer<UInt8>? {
        guard change.present else { return nil }
        if let text = change.text { return text }
        guard let writer, let state = change.state else { preconditionFailure("a line state rendered without its format") }
        writer.removeAll()
        writer.appendLine(id: change.person, state: state.baseAddress!)
        writer.dropLast()
        return writer.bytes.assumingMemoryBound(to: UInt8.self)
    }

    /// Person `p` of `share` as last published: `body` is given their id
    /// and line (no newline; nil when they are not in the report), valid
    /// until it returns. The renderer must be of the share's policy.
    package func published<R>(_ p: Int, of share: PublishedLines.Share,
                              _ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>?) -> R) -> R {
        guard let writer else { preconditionFailure("a published line rendered without its format") }
        return share.engine.people.withKey(p) { id in
            guard let state = share.state(p), writer.isInReport(state) else { return body(id, nil) }
            writer.removeAll()
            writer.appendLine(id: id, state: state)
            writer.dropLast()
            return body(id, writer.bytes.assumingMemoryBound(to: UInt8.self))
        }
    }
}

/// A body's changes across the engines of a state in shards: each
/// engine's list, and the order of them all by id (the feed numbers them
/// so, whatever the shards).
package struct MergedChanges {
    package let lists: [ChangeList]
    /// (list, change) in id order; nil for one list, in its own order.
    private let order: [(list: Int32, item: Int32)]?

    package init(_ lists: [ChangeList]) {
        self.lists = lists
        guard lists.count > 1 else { order = nil; return }
        // Merged two lists at a time, each already in order, by the ids'
        // bytes where they lie (no list is touched in the loop).
        struct Key {
            let id: UnsafePointer<UInt8>
            let count: Int
            let list: Int32, item: Int32
            @inline(__always)
            func precedes(_ other: Key) -> Bool {
                let c = memcmp(id, other.id, min(count, other.count))
                return c != 0 ? c < 0 : count < other.count
            }
        }
        func keys(_ l: Int) -> [Key] {
            (0..<lists[l].count).map { k in
                let id = lists[l].id(k)
                return Key(id: id.baseAddress!, count: id.count, list: Int32(l), item: Int32(k))
            }
        }
        var all = keys(0)
        for l in lists.indices.dropFirst() {
            let other = keys(l)
            var out: [Key] = []
            out.reserveCapacity(all.count + other.count)
            var i = 0, j = 0
            while i < all.count && j < other.count {
                if all[i].precedes(other[j]) { out.append(all[i]); i += 1 } else { out.append(other[j]); j += 1 }
            }
            out += all[i...]
            out += other[j...]
            all = out
        }
        order = all.map { (list: $0.list, item: $0.item) }
    }

    /// Changes given as values, in their order (tests; a feed fed by hand).
    package init(_ changes: [ReportChanges.Change]) { self.init([ChangeList(changes)]) }

    package var count: Int { order?.count ?? lists.first?.count ?? 0 }
    package var isEmpty: Bool { count == 0 }

    @inline(__always)
    package func view(_ k: Int) -> ChangeView {
        guard let order else { return lists[0].view(k) }
        return lists[Int(order[k].list)].view(Int(order[k].item))
    }

    /// How the lists' line states read (every list of one state has the
    /// same policy).
    package var format: LineFormat? { lists.lazy.compactMap(\.format).first }

    /// The memory the lists hold (what a change feed counts).
    package var memory: Int { lists.reduce(0) { $0 + $1.memory } + 8 * (order?.count ?? 0) }

    /// The changes as values, their lines written out (tests; a policy
    /// change's summary).
    package var changes: [ReportChanges.Change] {
        let renderer = LineRenderer(format)
        return (0..<count).map { k in
            let change = view(k)
            return ReportChanges.Change(person: Array(change.person)[...], line: renderer.line(of: change).map { Array($0)[...] })
        }
    }
}

extension ReportChanges {
    /// A changed line as a value: what tests compare.
    package struct Change: Equatable {
        package var person: ArraySlice<UInt8>
        package var line: ArraySlice<UInt8>?
        package var index = -1

        package init(person: ArraySlice<UInt8>, line: ArraySlice<UInt8>?, index: Int = -1) {
            self.person = person
            self.line = line
            self.index = index
        }

        package init(person: String, line: String?) {
            self.init(person: Array(person.utf8)[...], line: line.map { Array($0.utf8)[...] })
        }

        /// The same change: the same person and line.
        package static func == (a: Change, b: Change) -> Bool { a.person == b.person && a.line == b.line }
    }
}

