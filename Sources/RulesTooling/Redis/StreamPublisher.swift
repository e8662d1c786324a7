#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RulesCore

/// `rules publish`: each line of an event stream appended to the Redis
/// stream of its person's partition (`NAME:{K}`, field `line`), in order,
/// many lines per round trip.
///
/// Every entry gets its id from here, not from Redis: `MS-N`, where MS is
/// fixed for the run and partition (now, in milliseconds, or one past the
/// partition's last id if that is later) and N counts the partition's lines
/// from 0. A line sent again after a lost connection therefore cannot be
/// stored twice: Redis refuses an id not above the stream's last, and the
/// refusal is checked — the entry under that id must be this very line,
/// else another writer is using the same stream, and the run stops.
package final class StreamPublisher {
    package struct Summary: Sendable, Equatable {
        /// Lines read, blank ones not counted.
        package var read = 0
        package var published = 0
        package var rejected = 0
        /// Lines found already stored when sent again (after a reconnect).
        package var repeats = 0
        package var byPartition: [Int]
    }

    /// A line that names no person, so has no partition.
    package struct Rejection: Sendable, Equatable {
        package let line: Int
        package let reason: String
    }

    package struct Failure: Error, CustomStringConvertible {
        package let description: String
    }

    private let client: RedisClient
    private let address: RedisAddress
    private let personKey: PersonKey
    /// By partition: its stream's name, and the key slot of that name.
    private let keys: [[UInt8]]
    private let slots: [Int]
    /// By partition: the first part of this run's ids, and the next second part.
    private let idBase: [UInt64]
    @exclusivity(unchecked) private var nextSequence: [UInt64]
    @exclusivity(unchecked) private var batch = RedisBatch()
    /// By command of the batch: its partition and its id's second part.
    @exclusivity(unchecked) private var sent: [(partition: Int, sequence: UInt64)] = []
    @exclusivity(unchecked) private var scratch: [UInt8] = []
    @exclusivity(unchecked) package private(set) var summary: Summary
    /// Lines sent per round trip.
    package var batchSize = 4096

    /// Reads each partition's last id (for this run's ids to follow it).
    package init(client: RedisClient, address: RedisAddress, partitions: Int, personKey: PersonKey = .citizen) throws(Failure) {
        self.client = client
        self.address = address
        self.personKey = personKey
        keys = (0..<partitions).map { Array(address.stream($0).utf8) }
        slots = keys.map(KeySlot.of)
        summary = Summary(byPartition: Array(repeating: 0, count: partitions))
        let asked = RedisBatch((0..<partitions).map { (address.stream($0), ["XINFO", "STREAM", address.stream($0)]) })
        let replies: [RESPValue]
        do { replies = try client.run(asked) } catch { throw Failure(description: error.description) }
        let now = UInt64(Self.milliseconds())
        var bases: [UInt64] = []
        for (k, reply) in replies.enumerated() {
            switch reply {
            case .error(let e) where e.contains("no such key"):
                bases.append(now)
            case .array(let fields):
                guard let last = Self.field("last-generated-id", in: fields).flatMap(Self.entryId) else {
                    throw Failure(description: "\(address.stream(k)): XINFO STREAM gave no last-generated-id")
                }
                bases.append(max(now, last.ms + 1))
            case .error(let e) where e.hasPrefix("WRONGTYPE"):
                throw Failure(description: "\(address.stream(k)) exists and is not a stream: choose another NAME in \(address)")
            default:
                throw Failure(description: "\(address.stream(k)): XINFO STREAM answered \(reply)")
            }
        }
        idBase = bases
        nextSequence = Array(repeating: 0, count: partitions)
    }

    /// Takes one line (numbered from 1): queued for its partition, sent
    /// with the batch it fills. A line naming no person is not sent; why
    /// is returned.
    package func add(_ line: UnsafeBufferPointer<UInt8>, number: Int) throws(Failure) -> Rejection? {
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return nil }
        summary.read += 1
        let k: Int
        if let id = personKey.leadingPerson(line) {
            k = Partitioning.partition(of: UnsafeRawBufferPointer(id), among: keys.count)
        } else {
            switch personKey.person(in: line) {
            case .success(let id): k = id.withUnsafeBytes { Partitioning.partition(of: $0, among: keys.count) }
            case .failure(let why):
                summary.rejected += 1
                return Rejection(line: number, reason: "\(why): no person, so no partition")
            }
        }
        let sequence = nextSequence[k]
        nextSequence[k] += 1
        batch.writer.header(5)
        batch.writer.argument(Self.xadd)
        batch.writer.argument(keys[k])
        Self.entryId(idBase[k], sequence, into: &scratch)
        batch.writer.argument(scratch)
        batch.writer.argument(Self.lineField)
        batch.writer.argument(UnsafeRawBufferPointer(line))
        batch.endCommand(slot: slots[k])
        sent.append((k, sequence))
        if batch.count >= batchSize { try flush() }
        return nil
    }

    private static let xadd = Array("XADD".utf8), lineField = Array("line".utf8)

    /// `MS-N` as bytes, without a `String`.
    private static func entryId(_ ms: UInt64, _ n: UInt64, into out: inout [UInt8]) {
        out.removeAll(keepingCapacity: true)
        RESPWriter.appendDecimal(ms, to: &out)
        out.append(UInt8(ascii: "-"))
        RESPWriter.appendDecimal(n, to: &out)
    }

    /// Entry `i` of the batch's id, as text.
    private func entry(_ i: Int) -> String { "\(idBase[sent[i].partition])-\(sent[i].sequence)" }

    /// Sends what is queued; returns when Redis has stored it.
    package func flush() throws(Failure) {
        guard !batch.isEmpty else { return }
        let replies: [RESPValue]
        do { replies = try client.run(batch) } catch { throw Failure(description: error.description) }
        var doubts: [Int] = []
        for (i, reply) in replies.enumerated() {
            switch reply {
            case .bulk: summary.published += 1; summary.byPartition[sent[i].partition] += 1
            case .error(let e) where e.contains("equal or smaller"): doubts.append(i)
            default: throw Failure(description: "\(address.stream(sent[i].partition)): XADD \(entry(i)) answered \(reply)")
            }
        }
        if !doubts.isEmpty { try settle(doubts) }
        batch.removeAll()
        sent.removeAll(keepingCapacity: true)
    }

    /// Lines Redis refused as already there: each must be stored under its
    /// id (a repeat after a lost reply), or the stream has another writer.
    private func settle(_ doubts: [Int]) throws(Failure) {
        let asked = RedisBatch(doubts.map { i in (address.stream(sent[i].partition), ["XRANGE", address.stream(sent[i].partition), entry(i), entry(i)]) })
        let replies: [RESPValue]
        do { replies = try client.run(asked) } catch { throw Failure(description: error.description) }
        for (i, reply) in zip(doubts, replies) {
            let stream = address.stream(sent[i].partition)
            guard case .array(let entries) = reply, entries.count == 1, case .array(let entry) = entries[0], entry.count == 2,
                  case .array(let fields) = entry[1], fields.count == 2, fields[0].text == "line",
                  fields[1].bytes == Self.lastArgument(Array(batch.bytes(of: i))) else {
                throw Failure(description: "\(stream) already holds another entry at \(entry(i)): is another `rules publish` writing to \(address)? Nothing after it was sent")
            }
            summary.repeats += 1
            summary.published += 1
            summary.byPartition[sent[i].partition] += 1
        }
    }

    /// Sends the rest; the totals.
    package func finish() throws(Failure) -> Summary {
        try flush()
        return summary
    }

    /// The last argument of an encoded command (the line of an `XADD`).
    private static func lastArgument(_ command: [UInt8]) -> [UInt8]? {
        var reader = RESPReader()
        reader.append(command)
        guard case .array(let arguments)? = try? reader.next() else { return nil }
        return arguments.last?.bytes
    }

    /// A stream entry id `MS-N`.
    private static func entryId(_ value: RESPValue) -> (ms: UInt64, sequence: UInt64)? {
        guard let text = value.text else { return nil }
        let parts = text.split(separator: "-")
        guard parts.count == 2, let ms = UInt64(parts[0]), let n = UInt64(parts[1]) else { return nil }
        return (ms, n)
    }

    /// The value after `name` in a flat list of names and values.
    private static func field(_ name: String, in fields: [RESPValue]) -> RESPValue? {
        var k = 0
        while k + 1 < fields.count {
            if fields[k].text == name { return fields[k + 1] }
            k += 2
        }
        return nil
    }

    private static func milliseconds() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return Int64(t.tv_sec) * 1000 + Int64(t.tv_nsec) / 1_000_000
    }
}
