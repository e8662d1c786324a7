import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

@Suite("RESP, key slots and partitions")
struct RESPTests {
    static func read(_ text: String, piece: Int = Int.max, limits: RESPReader.Limits = .init()) -> (values: [RESPValue], error: RESPReader.Malformed?) {
        let bytes = Array(text.utf8)
        var reader = RESPReader(limits: limits)
        var values: [RESPValue] = []
        var at = 0
        repeat {
            reader.append(bytes[at..<min(bytes.count, at + piece)])
            at = at > bytes.count - piece ? bytes.count : at + piece
            do {
                while let v = try reader.next() { values.append(v) }
            } catch {
                return (values, error)
            }
        } while at < bytes.count
        return (values, nil)
    }

    @Test("every reply type, whole and cut at every byte, reads the same")
    func everyType() {
        let text = "+OK\r\n-ERR no such key\r\n:-42\r\n$5\r\nhe\r\no\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
            + "*2\r\n$6\r\nev:{0}\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\nline\r\n$2\r\n{}\r\n:7\r\n"
        let expected: [RESPValue] = [
            .simple("OK"), .error("ERR no such key"), .integer(-42), .bulk(Array("he\r\no".utf8)), .bulk([]), .null, .null, .array([]),
            .array([.bulk(Array("ev:{0}".utf8)), .array([.array([.bulk(Array("1-0".utf8)), .array([.bulk(Array("line".utf8)), .bulk(Array("{}".utf8))])])])]),
            .integer(7),
        ]
        #expect(Self.read(text).values == expected)
        #expect(Self.read(text).error == nil)
        for piece in 1...9 { #expect(Self.read(text, piece: piece).values == expected, "in pieces of \(piece)") }
    }

    @Test("bytes that are not RESP: refused with the offset and the reason, and the refusal stays", arguments: [
        ("?what\r\n", 0, "a reply starts with `?`, not one of + - : $ *"),
        ("+OK\r\n+OK\n", 8, "a line ends with LF alone, not CRLF"),
        (":12a\r\n", 1, "expected a number, found \"12a\""),
        (":99999999999999999999\r\n", 1, "expected a number, found \"99999999999999999999\""),
        (":9223372036854775808\r\n", 1, "a number too large: \"9223372036854775808\""),
        ("$3\r\nabcd\r\n", 7, "a bulk string of 3 bytes not followed by CRLF"),
        ("$-2\r\n", 1, "a bulk string of -2 bytes (at most 536870912)"),
        ("*-5\r\n", 1, "an array of -5 items (at most 16777216)"),
        ("+O\rK\r\n", 3, "CR not followed by LF"),
    ])
    func malformed(_ text: String, _ offset: Int, _ reason: String) {
        for piece in [Int.max, 1, 2] {
            let (_, error) = Self.read(text, piece: piece)
            #expect(error == RESPReader.Malformed(offset: offset, reason: reason), "in pieces of \(piece)")
        }
        var reader = RESPReader()
        reader.append(Array(text.utf8))
        while (try? reader.next()) != nil {}
        reader.append(Array("+OK\r\n".utf8))
        #expect(throws: RESPReader.Malformed.self) { try reader.next() }
    }

    @Test("limits: a bulk string, an array and nesting at their edge and one past it")
    func limits() {
        var limits = RESPReader.Limits()
        limits.maxBulk = 4
        limits.maxItems = 2
        limits.maxDepth = 2
        #expect(Self.read("$4\r\nabcd\r\n", limits: limits).values == [.bulk(Array("abcd".utf8))])
        #expect(Self.read("$5\r\nabcde\r\n", limits: limits).error?.reason == "a bulk string of 5 bytes (at most 4)")
        #expect(Self.read("*2\r\n:1\r\n:2\r\n", limits: limits).values == [.array([.integer(1), .integer(2)])])
        #expect(Self.read("*3\r\n", limits: limits).error?.reason == "an array of 3 items (at most 2)")
        #expect(Self.read("*1\r\n*1\r\n:1\r\n", limits: limits).values == [.array([.array([.integer(1)])])])
        #expect(Self.read("*1\r\n*1\r\n*1\r\n:1\r\n", limits: limits).error == RESPReader.Malformed(offset: 8, reason: "arrays nested more than 2 deep"))
        // The same edges through `nextRaw`, whose plain elements take a
        // fast path: at the edge the reply's bytes, one past it the same
        // refusal at the same place.
        func raw(_ text: String) -> Result<[UInt8]?, RESPReader.Malformed> {
            var reader = RESPReader(limits: limits)
            reader.append(Array(text.utf8))
            return Result { () throws(RESPReader.Malformed) in try reader.nextRaw() }
        }
        for whole in ["$4\r\nabcd\r\n", "*2\r\n:1\r\n:2\r\n", "*1\r\n*1\r\n:1\r\n"] {
            #expect(raw(whole) == .success(Array(whole.utf8)), "\(whole)")
        }
        #expect(raw("$5\r\nabcde\r\n") == .failure(RESPReader.Malformed(offset: 1, reason: "a bulk string of 5 bytes (at most 4)")))
        #expect(raw("*3\r\n") == .failure(RESPReader.Malformed(offset: 1, reason: "an array of 3 items (at most 2)")))
        #expect(raw("*1\r\n*1\r\n*1\r\n:1\r\n") == .failure(RESPReader.Malformed(offset: 8, reason: "arrays nested more than 2 deep")))
    }

    @Test("a long stream of replies: read bytes are dropped, offsets still count from the connection's start")
    func offsetsAcrossDrops() throws {
        var reader = RESPReader()
        for _ in 0..<10_000 { reader.append(Array("+OK\r\n".utf8)); #expect(try reader.next() == .simple("OK")) }
        reader.append(Array("+OK\n".utf8))
        #expect(throws: RESPReader.Malformed(offset: 50_003, reason: "a line ends with LF alone, not CRLF")) { try reader.next() }
    }

    @Test("commands are written as arrays of bulk strings, which the reader reads back")
    func writer() throws {
        var w = RESPWriter()
        w.command(["XADD", "ev:{3}", "1-0", "line", "{\"citizen\":\"é\"}"])
        w.command(Array(repeating: "x", count: 12))
        #expect(String(decoding: w.bytes.prefix(68), as: UTF8.self) == "*5\r\n$4\r\nXADD\r\n$6\r\nev:{3}\r\n$3\r\n1-0\r\n$4\r\nline\r\n$16\r\n{\"citizen\":\"é\"}\r\n")
        var reader = RESPReader()
        reader.append(w.bytes)
        #expect(try reader.next() == .array(["XADD", "ev:{3}", "1-0", "line", "{\"citizen\":\"é\"}"].map { .bulk(Array($0.utf8)) }))
        #expect(try reader.next() == .array(Array(repeating: .bulk([0x78]), count: 12)))
        for n in [0, 9, 10, 99, 100, 12_345, 1 << 40] {
            var one = RESPWriter()
            one.header(n)
            #expect(one.bytes == Array("*\(n)\r\n".utf8))
        }
        // Entry ids' parts at their edges: every width up to UInt64.max.
        for n: UInt64 in [0, 9, 10, 9_999_999_999_999_999_999, 10_000_000_000_000_000_000, UInt64.max] {
            var out: [UInt8] = [0x2D]
            RESPWriter.appendDecimal(n, to: &out)
            #expect(out == Array("-\(n)".utf8))
            #expect(EntryId(bytes: Array("\(n)-\(n)".utf8)) == EntryId(ms: n, sequence: n))
        }
        #expect(EntryId(bytes: Array("18446744073709551616-0".utf8)) == nil, "one past UInt64.max")
        for bad in ["", "-", "1-", "-1", "1-2-3", "1x-2", "12"] { #expect(EntryId(bytes: Array(bad.utf8)) == nil, "\(bad)") }
        // Twenty digits at most in a part (UInt64.max has twenty; Redis
        // writes no leading zeros): twenty-one are refused, zeros or not.
        #expect(EntryId(bytes: Array("00000000000000000001-0".utf8)) == EntryId(ms: 1, sequence: 0), "twenty digits")
        #expect(EntryId(bytes: Array("000000000000000000001-0".utf8)) == nil, "twenty-one digits")
        #expect(EntryId(bytes: Array("1-000000000000000000001".utf8)) == nil, "twenty-one digits")
    }

    @Test("a worker's batch as the log keeps it reads back, held or not; a record from before batches could be held publishes; a damaged one is refused")
    func sourcedBatchRecord() {
        let positions = [3: StreamPosition(last: EntryId(ms: UInt64.max, sequence: 7), applied: 12), 0: StreamPosition(last: .zero, applied: 0)]
        for publishes in [true, false] {
            for body in [[UInt8](), Array("{\"citizen\":\"a\"}\n".utf8)] {
                let batch = SourcedBatch(positions: positions, outsideClock: publishes ? nil : -5, body: body, publishes: publishes)
                var bytes: [UInt8] = []
                batch.encode(into: &bytes)
                #expect(bytes.count == batch.encodedCount)
                #expect(SourcedBatch(decoding: bytes[...]) == batch)
            }
        }
        // Written before batches could be held: the count of positions
        // alone in the first four bytes (one position, partition 1).
        let old: [UInt8] = [1, 0, 0, 0] + [1, 0, 0, 0] + [5] + Array(repeating: 0, count: 7) + Array(repeating: 0, count: 8)
            + [2] + Array(repeating: 0, count: 7) + Array(repeating: 0, count: 7) + [0x80] + Array("x\n".utf8)
        let read = SourcedBatch(decoding: old[...])
        #expect(read == SourcedBatch(positions: [1: StreamPosition(last: EntryId(ms: 5, sequence: 0), applied: 2)], outsideClock: nil,
                                     body: Array("x\n".utf8), publishes: true))
        // More positions than the bytes can hold, held or not: refused.
        for first: [UInt8] in [[2, 0, 0, 0], [2, 0, 0, 0x80]] { #expect(SourcedBatch(decoding: (first + old.dropFirst(4))[...]) == nil) }
    }

    @Test("a batch's first commands as a batch of their own (what a worker sends again when a write failed): the same bytes, ends and slots")
    func batchPrefix() {
        var batch = RedisBatch()
        batch.add(key: "a", ["HSET", "a", "x", "1"])
        batch.add(key: "b{7}", ["HDEL", "b{7}", "y"])
        batch.add(key: "c", ["XREAD", "COUNT", "10", "STREAMS", "c", "0-0"])
        for n in 0...3 {
            let first = batch.prefix(n)
            #expect(first.count == n)
            #expect((0..<n).map { Array(first.bytes(of: $0)) } == (0..<n).map { Array(batch.bytes(of: $0)) })
            #expect(first.slots == Array(batch.slots.prefix(n)))
            #expect(first.writer.bytes.count == (n == 0 ? 0 : batch.bytes(of: n - 1).endIndex))
        }
    }

    @Test("key slots are the Redis Cluster specification's: CRC16/XMODEM modulo 16384, hash tags")
    func keySlots() {
        #expect(KeySlot.crc16(Array("123456789".utf8)) == 0x31C3)
        // The values `CLUSTER KEYSLOT` gives.
        #expect(KeySlot.of("foo") == 12182)
        #expect(KeySlot.of("bar") == 5061)
        #expect(KeySlot.of("{user1000}.following") == KeySlot.of("{user1000}.followers"))
        #expect(KeySlot.of("foo{}{bar}") == KeySlot.of("foo{}{bar}"), "an empty tag: the whole key")
        #expect(KeySlot.of("foo{}{bar}") != KeySlot.of("bar"))
        #expect(KeySlot.of("foo{{bar}}zap") == KeySlot.of("{bar"))
        #expect(KeySlot.of("ev:{3}") == KeySlot.of("ev:state:{3}"))
        #expect(KeySlot.of("ev:{3}") == KeySlot.of("3"))
    }

    @Test("partitions: FNV-1a 32-bit of the id's UTF-8 bytes, modulo N")
    func partitions() {
        // FNV-1a 32-bit reference values: "" 0x811c9dc5, "a" 0xe40c292c, "foobar" 0xbf9cf968.
        #expect(Partitioning.partition(of: "", among: 1 << 31) == 0x811C_9DC5 % (1 << 31))
        #expect(Partitioning.partition(of: "a", among: 1 << 31) == 0xE40C_292C % (1 << 31))
        #expect(Partitioning.partition(of: "foobar", among: 1 << 31) == 0xBF9C_F968 % (1 << 31))
        #expect(Partitioning.partition(of: "bob", among: 4) == 0)
        #expect(Partitioning.partition(of: "zoé", among: 4) == 2)
        #expect(Partitioning.partition(of: "anyone", among: 1) == 0)
    }

    @Test("addresses: redis://HOST:PORT/NAME, and each mistake named", arguments: [
        ("redis://127.0.0.1:7000/events", "redis://127.0.0.1:7000/events"),
        ("redis://localhost/ev.1", "redis://localhost:6379/ev.1"),
        ("http://127.0.0.1:7000/events", #""http://127.0.0.1:7000/events" is not a Redis address like redis://127.0.0.1:6379/events"#),
        ("redis://127.0.0.1:7000", #""redis://127.0.0.1:7000" names no stream: add /NAME, like redis://127.0.0.1:6379/events"#),
        ("redis://127.0.0.1:7000/", #""redis://127.0.0.1:7000/" names no stream after the /"#),
        ("redis://127.0.0.1:0/ev", #""redis://127.0.0.1:0/ev": the port must be a number from 1 to 65535"#),
        ("redis://:7000/ev", #""redis://:7000/ev" names no host, like redis://127.0.0.1:6379/events"#),
        ("redis://127.0.0.1:7000/ev{1}", #""redis://127.0.0.1:7000/ev{1}": the stream name may hold letters, digits and _ - . : only, not "{""#),
        ("redis://u:secret@127.0.0.1/ev", #""redis://u:secret@127.0.0.1/ev": a password does not go in the address; give it with --password-file"#),
    ])
    func addresses(_ text: String, _ expected: String) {
        do { #expect(try RedisAddress(parsing: text).description == expected) } catch { #expect(error.description == expected) }
    }

    @Test("the person of a line, with or without a policy: read in place when it comes first, parsed otherwise")
    func personOfLine() {
        func person(_ line: String, key: PersonKey = .citizen) -> String {
            Array(line.utf8).withUnsafeBufferPointer {
                switch key.person(in: $0) {
                case .success(let id): String(decoding: id, as: UTF8.self)
                case .failure(let e): "error: \(e)"
                }
            }
        }
        #expect(person(#"{"citizen":"bob","type":"x"}"#) == "bob")
        #expect(person(#"{"type":"x", "citizen" : "zo\u00e9"}"#) == "zoé")
        #expect(person(#"{"citizen":"a\"b"}"#) == "a\"b")
        #expect(person(#"{"type":"x"}"#) == #"error: no "citizen" key"#)
        #expect(person(#"{"citizen":1}"#) == #"error: "citizen" is not a string"#)
        #expect(person(#"{"type":"x","citizen":"a","citizen":"b"}"#) == #"error: duplicate key "citizen""#)
        #expect(person(#"[1]"#) == "error: not a JSON object")
        #expect(person(#"{"user":"u1"}"#, key: try! PersonKey.named("user").get()) == "u1")
    }
}
