#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An engine's whole state as bytes, to stop a run and continue it later
/// (`rules run --state FILE`, `--resume FILE`), and the crash-safe file it
/// lives in.
///
/// Layout (little-endian), version 3 (the fingerprint from `Fingerprint`'s
/// explicit encoding; version 2 hashed Swift's descriptions of the rules,
/// version 1 counted nanoseconds):
///
///     "RULESCK\0"  magic, 8 bytes
///     UInt32       format version
///     UInt64       policy fingerprint (`Fingerprint`: what the rules mean,
///                  not how they are written)
///     UInt64       length of the body
///     body         see `encode`
///     UInt64       FNV-1a checksum of everything before it
///
/// A checkpoint is only read back into an engine of the same policy; any
/// mismatch — another policy, another version, a damaged or cut file — is an
/// error with a reason, never a wrong state.
public enum Checkpoint {
    /// The format version this build writes and reads.
    public static let version: UInt32 = 3
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
    }

    // MARK: - Writing

    /// The state of `engines` (one, or a parallel run's), which together
    /// have read `lines` lines.
    package static func encode(_ engines: [Engine], lines: Int) -> [UInt8] {
        var w = ByteWriter()
        w.bytes(magic)
        w.u32(version)
        w.u64(engines[0].program.fingerprint)
        var body = ByteWriter()
        body.int(lines)
        let clock = engines.compactMap(\.clock).max()
        body.int(clock == nil ? 0 : 1)
        body.i64(clock ?? 0)
        let program = engines[0].program
        body.int(program.slotCount)
        body.int(program.policy.buffers.count)
        // People in byte order of their ids, whichever engine holds them, so
        // the file does not depend on how many threads wrote it.
        var order: [(engine: Int, person: Int)] = []
        for (e, engine) in engines.enumerated() { order += engine.sortedPeople().map { (e, $0) } }
        if engines.count > 1 {
            order.sort { engines[$0.engine].people.precedes($0.person, engines[$1.engine].people, $1.person) }
        }
        body.int(order.count)
        for (e, p) in order {
            let engine = engines[e], store = engine.store
            engine.people.withKey(p) { body.int($0.count); body.bytes($0) }
            body.i64(store.score(p))
            body.i64(store.lastTime(p))
            for slot in 0..<store.slotCount { body.i64(store.end(p, slot)) }
            for b in store.buffers {
                let entries = b.entries(person: p)
                body.int(entries.count)
                for entry in entries { body.i64(entry.time); body.f64(entry.value) }
            }
        }
        // The notes on expressions that failed, so the summary at the end
        // counts the whole stream.
        var failures: [(EvalContext.FailureKey, (count: Int, firstLine: Int))] = []
        for engine in engines { failures += engine.context.failures.map { ($0.key, $0.value) } }
        failures.sort { ($0.0.rule, $0.1.firstLine) < ($1.0.rule, $1.1.firstLine) }
        body.int(failures.count)
        for (key, stat) in failures {
            body.int(key.rule)
            switch key.failure {
            case .missingField(let f): body.int(0); body.int(f)
            case .wrongType: body.int(1); body.int(0)
            case .divisionByZero: body.int(2); body.int(0)
            case .notFinite: body.int(3); body.int(0)
            }
            body.int(stat.count)
            body.int(stat.firstLine)
        }
        w.u64(UInt64(body.out.count))
        w.bytes(body.out)
        w.u64(Hashing.fnv1a(w.out))
        return w.out
    }

    /// Writes `bytes` to `path` so that a crash at any moment leaves either
    /// the previous file or the new one, whole: a temporary file next to it,
    /// flushed to disk, renamed over it, and the directory flushed.
    public static func writeFile(_ bytes: [UInt8], to path: String) -> Failure? {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return Failure(description: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                let reason = String(cString: strerror(errno))
                close(fd); unlink(temporary)
                return Failure(description: "cannot write \(temporary): \(reason)")
            }
            written += n
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
            var r = try body(of: bytes, program: program)
            let lines = try r.int()
            let hasClock = try r.int() != 0
            let clock = try r.i64()
            _ = try r.int(); _ = try r.int()
            let people = try r.int()
            return .success(Info(lines: lines, people: people, clock: hasClock ? clock : nil))
        } catch let f as Failure {
            return .failure(f)
        } catch {
            return .failure(Failure(description: "\(error)"))
        }
    }

    /// Loads a checkpoint into fresh engines of `program`: person `key`
    /// goes to `engines[owner(key)]` (one engine: all of them).
    package static func restore(_ bytes: [UInt8], into engines: [Engine],
                               owner: (UnsafeBufferPointer<UInt8>) -> Int = { _ in 0 }) -> Result<Info, Failure> {
        do {
            let program = engines[0].program
            var r = try body(of: bytes, program: program)
            let lines = try r.int()
            let hasClock = try r.int() != 0
            let clock = try r.i64()
            guard try r.int() == program.slotCount, try r.int() == program.policy.buffers.count else {
                throw Failure(description: "the checkpoint's state does not fit this policy")
            }
            let people = try r.int()
            for _ in 0..<people {
                let n = try r.int()
                let key = try r.take(n)
                let engine = try key.withUnsafeBufferPointer { k -> Engine in
                    let e = owner(k)
                    guard e >= 0 && e < engines.count else { throw Failure(description: "no engine for a person") }
                    return engines[e]
                }
                let score = try r.i64(), last = try r.i64()
                var ends: [Int64] = []
                for _ in 0..<program.slotCount { ends.append(try r.i64()) }
                var entries: [[WindowBuffer.Entry]] = []
                for _ in 0..<program.policy.buffers.count {
                    let count = try r.int()
                    var list: [WindowBuffer.Entry] = []
                    for _ in 0..<count { list.append(WindowBuffer.Entry(time: try r.i64(), value: try r.f64())) }
                    entries.append(list)
                }
                guard key.withUnsafeBufferPointer({ engine.restorePerson(key: $0, score: score, lastTime: last,
                                                                         ends: ends, entries: entries) }) else {
                    throw Failure(description: "the checkpoint names a person twice")
                }
            }
            if hasClock { for engine in engines { engine.restoreClock(clock) } }
            for engine in engines { engine.lineBase = lines }
            let failures = try r.int()
            for _ in 0..<failures {
                let rule = try r.int(), kind = try r.int(), field = try r.int(), count = try r.int(), first = try r.int()
                guard rule < program.aggregateNote(program.policy.buffers.count) else {
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
                default: throw Failure(description: "a note of an unknown kind")
                }
                engines[0].context.failures[.init(rule: rule, failure: failure)] = (count, first)
            }
            guard r.atEnd else { throw Failure(description: "unexpected bytes after the state") }
            return .success(Info(lines: lines, people: people, clock: hasClock ? clock : nil))
        } catch let f as Failure {
            return .failure(f)
        } catch {
            return .failure(Failure(description: "\(error)"))
        }
    }

    /// Checks the envelope; a reader positioned at the body.
    private static func body(of bytes: [UInt8], program: Program) throws -> ByteReader {
        guard bytes.count >= 36, Array(bytes[0..<8]) == magic else {
            throw Failure(description: "not a rules checkpoint (it does not start with the checkpoint's magic bytes)")
        }
        var r = ByteReader(bytes: bytes, position: 8)
        let v = try r.u32()
        guard v == version else {
            throw Failure(description: "checkpoint format version \(v); this rules reads version \(version)")
        }
        let stored = Hashing.fnv1a(bytes[0..<(bytes.count - 8)])
        var tail = ByteReader(bytes: bytes, position: bytes.count - 8)
        guard try tail.u64() == stored else {
            throw Failure(description: "the checkpoint is damaged (its checksum does not match)")
        }
        guard try r.u64() == program.fingerprint else {
            throw Failure(description: "the checkpoint was made with a different policy")
        }
        let length = try r.u64()
        guard length == UInt64(bytes.count - r.position - 8) else {
            throw Failure(description: "the checkpoint is cut short or padded (its length does not match)")
        }
        return ByteReader(bytes: Array(bytes[r.position..<(bytes.count - 8)]), position: 0)
    }
}

/// Little-endian fixed-width encoding.
struct ByteWriter {
    var out: [UInt8] = []
    mutating func bytes<C: Collection>(_ b: C) where C.Element == UInt8 { out.append(contentsOf: b) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    mutating func int(_ v: Int) { i64(Int64(v)) }
    mutating func f64(_ v: Double) { u64(v.bitPattern) }
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
