#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RulesCore

/// Commands for one round trip (`RedisClient.run`): their RESP bytes one
/// after another, as they will be sent, and for each the key slot that
/// routes it (in a cluster, to the node that holds the slot).
package struct RedisBatch {
    /// Where commands are written; `endCommand` closes each.
    package var writer = RESPWriter()
    private(set) var ends: [Int] = []
    private(set) var slots: [Int] = []

    package init() {}

    /// A batch of commands of text arguments, each routed by its key.
    package init(_ commands: [(key: String, arguments: [String])]) {
        for c in commands { add(key: c.key, c.arguments) }
    }

    package var count: Int { ends.count }
    package var isEmpty: Bool { ends.isEmpty }

    /// Closes the command written into `writer` since the last, routed by
    /// the key slot `slot` (`KeySlot.of`).
    package mutating func endCommand(slot: Int) {
        ends.append(writer.bytes.count)
        slots.append(slot)
    }

    /// Another batch's commands after this one's.
    package mutating func append(_ other: RedisBatch) {
        let base = writer.bytes.count
        other.writer.bytes.withUnsafeBytes { writer.raw($0) }
        ends += other.ends.map { $0 + base }
        slots += other.slots
    }

    package mutating func add(key: String, _ arguments: [String]) {
        writer.command(arguments)
        endCommand(slot: KeySlot.of(key))
    }

    /// Command `i`'s bytes.
    package func bytes(of i: Int) -> ArraySlice<UInt8> {
        writer.bytes[(i == 0 ? 0 : ends[i - 1])..<ends[i]]
    }

    /// Its first `n` commands, as a batch of their own.
    package func prefix(_ n: Int) -> RedisBatch {
        var first = RedisBatch()
        guard n > 0 else { return first }
        writer.bytes.withUnsafeBytes { first.writer.raw(UnsafeRawBufferPointer(rebasing: $0[..<ends[n - 1]])) }
        first.ends = Array(ends[..<n])
        first.slots = Array(slots[..<n])
        return first
    }

    package mutating func removeAll() {
        writer.removeAll()
        ends.removeAll(keepingCapacity: true)
        slots.removeAll(keepingCapacity: true)
    }
}

/// A client for one Redis server or a whole Redis Cluster, found from any
/// one of its nodes. `run` pipelines a batch of commands: each node's are
/// written at once, then its replies read. Commands on one key run in the
/// order given.
///
/// What the client absorbs, so that its users need not:
/// - a cluster's redirects: `MOVED` (the slot lives elsewhere now: the map
///   of slots is read again) and `ASK` (the key is being moved: that one
///   command goes to the new node, after `ASKING`);
/// - `TRYAGAIN`, `CLUSTERDOWN`, `LOADING` and a node that cannot be
///   reached or drops the connection (it is restarting): tried again with
///   back-off, 50 ms doubling to 2 s, for `retryFor` seconds (nil: as long
///   as it takes).
///
/// A command whose reply was lost with its connection is sent again, so it
/// may run twice: commands given here must be safe to repeat (the stream
/// publisher's `XADD` carries its entry's id, and a repeat is recognised).
package final class RedisClient {
    package struct Options: Sendable {
        /// The longest wait for one connect, write or reply.
        package var timeout: Double = 5
        /// How long to keep trying a node that cannot be reached.
        package var retryFor: Double? = 30
        package var password: String? = nil
        /// Told of each retry (a service logs them).
        package var onRetry: (@Sendable (String) -> Void)? = nil
        package init() {}
    }

    package struct Failure: Error, CustomStringConvertible {
        package let description: String
        /// Whether trying again may help (see `RedisConnection.Failure`).
        package var retryable = true
    }

    private struct Node: Hashable {
        let host: String
        let port: Int
        var name: String { "\(host):\(port)" }
    }

    private let seed: Node
    private let options: Options
    /// Whether the seed is a node of a cluster (else one server holds all).
    package private(set) var isCluster = false
    /// By slot, the node that serves it (a cluster).
    private var slots: [Node?] = []
    private var connections: [Node: RedisConnection] = [:]

    package init(host: String, port: Int, options: Options = Options()) throws(Failure) {
        seed = Node(host: host, port: port)
        self.options = options
        try withRetries { () throws(Failure) in try discover() }
    }

    /// The nodes the client knows (for a cluster, those that serve slots).
    package var nodes: [String] {
        isCluster ? Array(Set(slots.compactMap { $0?.name })).sorted() : [seed.name]
    }

    /// Runs `commands` and returns their replies, in the same order. A
    /// reply that is an error other than a redirect or a "try again" is
    /// returned as it is, for the caller to judge.
    package func run(_ batch: RedisBatch) throws(Failure) -> [RESPValue] {
        try run(batch, read: { c throws(RedisConnection.Failure) in try c.reply() }, error: { $0 })
    }

    /// The same, each reply as the bytes it came in (`RESPReader.nextRaw`):
    /// for replies too large to be worth making values of. `meanwhile`
    /// runs once the commands are sent and before their replies are read,
    /// so that the caller's work and Redis's overlap (a worker applies one
    /// batch while Redis reads out the next); it does not run when sending
    /// failed for good (the call throws).
    package func runRaw(_ batch: RedisBatch, meanwhile: (() -> Void)? = nil) throws(Failure) -> [[UInt8]] {
        try run(batch, meanwhile: meanwhile, read: { c throws(RedisConnection.Failure) in try c.rawReply() }, error: { raw in
            guard raw.first == UInt8(ascii: "-") else { return nil }
            var reader = RESPReader()
            reader.append(raw)
            return try? reader.next()
        })
    }

    /// `run`, replies read by `read`; `error` is a reply's value when it is
    /// one that may be a redirect (nil: it is not).
    private func run<Reply>(_ batch: RedisBatch, meanwhile: (() -> Void)? = nil, read: (RedisConnection) throws(RedisConnection.Failure) -> Reply,
                            error: (Reply) -> RESPValue?) throws(Failure) -> [Reply] {
        var meanwhile = meanwhile
        var answers = [Reply?](repeating: nil, count: batch.count)
        var pending = Array(0..<batch.count)
        var asking: [Int: Node] = [:]
        var delay = 0.05
        let started = Self.now()
        while !pending.isEmpty {
            // Each node's commands, in order (a handful of nodes: a list).
            var order: [Node] = [], groups: [[Int]] = []
            if !isCluster && asking.isEmpty {
                order = [seed]
                groups = [pending]
            } else {
                for i in pending {
                    let node = asking[i] ?? route(slot: batch.slots[i])
                    if let g = order.firstIndex(of: node) { groups[g].append(i) } else {
                        order.append(node)
                        groups.append([i])
                    }
                }
            }
            var trouble: String? = nil, remap = false
            // Every node's commands sent, then the caller's work (the first
            // round only), then every node's replies read.
            var sent: [RedisConnection?] = []
            for (node, indices) in zip(order, groups) {
                do { sent.append(try send(node, batch, indices, asking: asking)) } catch {
                    guard error.retryable else { throw Failure(description: error.description, retryable: false) }
                    trouble = error.description
                    sent.append(nil)
                }
            }
            if let work = meanwhile {
                meanwhile = nil
                work()
            }
            for ((node, indices), connection) in zip(zip(order, groups), sent) {
                guard let connection else { continue }
                let replies: [Reply]
                do { replies = try receive(node, connection, indices, asking: asking, read: read) } catch {
                    guard error.retryable else { throw Failure(description: error.description, retryable: false) }
                    trouble = error.description
                    continue
                }
                for (i, reply) in zip(indices, replies) {
                    asking[i] = nil
                    switch error(reply).flatMap({ Redirect($0, seedHost: seed.host) }) {
                    case .moved(let slot, let to):
                        if slot < slots.count { slots[slot] = to }
                        remap = true
                    case .ask(let to): asking[i] = to
                    case .tryAgain(let why): trouble = "\(node.name): \(why)"
                    case nil: answers[i] = reply
                    }
                }
            }
            pending = pending.filter { answers[$0] == nil }  // (an answer is never nil once given)
            if pending.isEmpty { break }
            if let trouble {
                if let limit = options.retryFor, Self.now() - started > limit {
                    throw Failure(description: "\(trouble) (tried again for \(Int(limit)) s)")
                }
                options.onRetry?("\(trouble); trying again in \(Int(delay * 1000)) ms")
                Self.sleep(delay)
                delay = min(delay * 2, 2)
                remap = remap || isCluster
            }
            if remap, isCluster { try? discover() }
        }
        return answers.map { $0! }
    }

    /// Writes one node's commands together (each after `ASKING` when it
    /// was redirected so); the connection their replies come on.
    private func send(_ node: Node, _ batch: RedisBatch, _ indices: [Int], asking: [Int: Node]) throws(RedisConnection.Failure) -> RedisConnection {
        let connection = try connection(node)
        do {
            if indices.count == batch.count && asking.isEmpty {
                // The whole batch to one node, as written: no copy.
                try connection.send(batch.writer.bytes)
            } else {
                var out: [UInt8] = []
                for i in indices {
                    if asking[i] != nil { out += Self.askingBytes }
                    out += batch.bytes(of: i)
                }
                try connection.send(out)
            }
            return connection
        } catch {
            connections[node] = nil
            throw error
        }
    }

    /// Reads the replies to what `send` wrote to `node`.
    private func receive<Reply>(_ node: Node, _ connection: RedisConnection, _ indices: [Int], asking: [Int: Node],
                                read: (RedisConnection) throws(RedisConnection.Failure) -> Reply) throws(RedisConnection.Failure) -> [Reply] {
        do {
            var replies: [Reply] = []
            replies.reserveCapacity(indices.count)
            for i in indices {
                if asking[i] != nil { _ = try connection.reply() }
                replies.append(try read(connection))
            }
            return replies
        } catch {
            connections[node] = nil
            throw error
        }
    }

    private static let askingBytes: [UInt8] = {
        var w = RESPWriter()
        w.command(["ASKING"])
        return w.bytes
    }()

    private func connection(_ node: Node) throws(RedisConnection.Failure) -> RedisConnection {
        if let c = connections[node], c.isOpen { return c }
        let c = try RedisConnection(host: node.host, port: node.port, timeout: options.timeout, password: options.password)
        connections[node] = c
        return c
    }

    /// The node that serves `slot` (one server: the seed).
    private func route(slot: Int) -> Node {
        guard isCluster else { return seed }
        return slots[slot] ?? seed
    }

    /// Learns whether the seed (or, later, any known node) is part of a
    /// cluster, and if so which node serves each slot (`CLUSTER SLOTS`).
    private func discover() throws(Failure) {
        var asked = [seed]
        for node in Set(slots.compactMap { $0 }) where node != seed { asked.append(node) }
        var last = "no node answered"
        for node in asked {
            let reply: RESPValue
            do {
                var w = RESPWriter()
                w.command(["CLUSTER", "SLOTS"])
                reply = try connection(node).exchange(w, replies: 1)[0]
            } catch {
                connections[node] = nil
                guard error.retryable else { throw Failure(description: error.description, retryable: false) }
                last = error.description
                continue
            }
            switch reply {
            case .error(let e) where e.contains("cluster support disabled"):
                isCluster = false
                return
            case .error(let e) where e.hasPrefix("NOAUTH"):
                throw Failure(description: "\(node.name) needs a password: give it with --password-file (\(e))", retryable: false)
            case .error(let e):
                last = "\(node.name): CLUSTER SLOTS: \(e)"
                continue
            case .array(let ranges):
                var map = [Node?](repeating: nil, count: KeySlot.count)
                for range in ranges {
                    guard case .array(let r) = range, r.count >= 3, case .integer(let from) = r[0], case .integer(let to) = r[1],
                          case .array(let master) = r[2], master.count >= 2, case .integer(let port) = master[1],
                          from >= 0, to < KeySlot.count, from <= to else {
                        throw Failure(description: "\(node.name): CLUSTER SLOTS answered what is not a map of slots: \(range)", retryable: false)
                    }
                    // An empty host means "the address you reached me at".
                    let host = master[0].text.flatMap { $0.isEmpty || $0 == "?" ? nil : $0 } ?? node.host
                    for s in Int(from)...Int(to) { map[s] = Node(host: host, port: Int(port)) }
                }
                isCluster = true
                slots = map
                return
            default:
                throw Failure(description: "\(node.name): CLUSTER SLOTS answered \(reply)", retryable: false)
            }
        }
        throw Failure(description: last)
    }

    /// `body`, tried again with back-off while it fails, for `retryFor`.
    private func withRetries(_ body: () throws(Failure) -> Void) throws(Failure) {
        var delay = 0.05
        let started = Self.now()
        while true {
            do { return try body() } catch {
                guard error.retryable else { throw error }
                if let limit = options.retryFor, Self.now() - started + delay > limit {
                    throw Failure(description: "\(error) (tried for \(Int(limit.rounded(.up))) s)")
                }
                options.onRetry?("\(error); trying again in \(Int(delay * 1000)) ms")
                Self.sleep(delay)
                delay = min(delay * 2, 2)
            }
        }
    }

    /// A reply that says to send the command again, elsewhere or later.
    private enum Redirect {
        case moved(slot: Int, to: Node)
        case ask(to: Node)
        case tryAgain(String)

        /// `seedHost` stands in for an empty host ("where you reached me").
        init?(_ reply: RESPValue, seedHost: String) {
            guard case .error(let e) = reply else { return nil }
            let words = e.split(separator: " ")
            switch words.first {
            case "MOVED", "ASK":
                guard words.count >= 3, let slot = Int(words[1]), let colon = words[2].lastIndex(of: ":"),
                      let port = Int(words[2][words[2].index(after: colon)...]) else { return nil }
                let host = String(words[2][..<colon])
                let node = Node(host: host.isEmpty ? seedHost : host, port: port)
                self = words[0] == "MOVED" ? .moved(slot: slot, to: node) : .ask(to: node)
            case "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN":
                self = .tryAgain(e)
            default:
                return nil
            }
        }
    }

    private static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    private static func sleep(_ seconds: Double) {
        usleep(UInt32(seconds * 1_000_000))
    }
}
