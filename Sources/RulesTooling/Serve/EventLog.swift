#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RulesCore

/// The service's append-only log (`--data DIR`, `DIR/events.log`): each
/// acknowledged body, and each policy the service was given, in the order
/// they were acknowledged. A record is written and synced to disk before
/// it is applied and answered, so that after `kill -9` at any moment every
/// acknowledged body is there, and a body whose answer was lost is there
/// whole or not at all.
///
/// File: `RULESLOG` and a version (4 bytes), then records: the length of
/// what follows the checksum (4 bytes) and its checksum (8 bytes, both
/// little-endian; version 2 `Hashing.checksum`, version 1 FNV-1a), then —
/// version 2 — a kind byte (1 a body, 2 a policy, 3 a batch a worker read
/// from Redis streams, `SourcedBatch`) and the payload. Version 1 (bodies only, no kind byte) is
/// rewritten as version 2 when opened. On open, records are read back
/// until the first that is cut short or does not match its checksum — a
/// write a crash interrupted, never acknowledged — and the file is cut
/// there.
package final class EventLog {
    static let magic = Array("RULESLOG".utf8)
    static let version: UInt32 = 2

    /// One record.
    package enum Record: Equatable {
        /// A body of NDJSON lines, as posted.
        case body([UInt8])
        /// A policy, as `ServedPolicy.json`: it applies from the next
        /// record on.
        case policy(String)
        /// Lines a worker read from its partitions, and where it stands.
        case sourced(SourcedBatch)

        /// Bytes of `encoded`.
        var payloadCount: Int {
            switch self {
            case .body(let bytes): return 1 + bytes.count
            case .policy(let json): return 1 + json.utf8.count
            case .sourced(let batch): return 1 + batch.encodedCount
            }
        }

        init?(_ bytes: ArraySlice<UInt8>, version: UInt32) {
            if version == 1 { self = .body(Array(bytes)); return }
            switch bytes.first {
            case 1: self = .body(Array(bytes.dropFirst()))
            case 2: self = .policy(String(decoding: bytes.dropFirst(), as: UTF8.self))
            case 3:
                guard let batch = SourcedBatch(decoding: bytes.dropFirst()) else { return nil }
                self = .sourced(batch)
            default: return nil
            }
        }
    }

    private var fd: Int32
    package let path: String
    /// Where the last whole record ends: a failed append is cut back to it,
    /// so that no garbage sits before the next record.
    private var size = 0
    /// Set when a failed append could not be cut back: nothing more is
    /// written (an acknowledgement after garbage could be lost on replay).
    package private(set) var broken: String? = nil

    package struct Failure: Error, CustomStringConvertible {
        package let description: String
    }

    /// Opens (or creates) the log in `directory`, creating the directory;
    /// `replay` receives each intact record in order. A new log starts
    /// with `first` (the policy named on the command line). Returns the
    /// log, how many bytes of a cut record were dropped from its end, and
    /// whether a version 1 log was rewritten.
    ///
    /// `resumeAt`: where a checkpoint's records end. When a record starts
    /// there (or the log ends there), `start(true)` is called — the caller
    /// restores the checkpoint — and only the records from there on are
    /// replayed; otherwise `start(false)` and every record.
    package static func open(in directory: String, first: Record, resumeAt: Int? = nil, start: (Bool) throws -> Void = { _ in },
                             replay: (Record) throws -> Void) throws -> (EventLog, dropped: Int, upgraded: Bool) {
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw Failure(description: "cannot create \(directory): \(String(cString: strerror(errno)))")
        }
        let path = directory + "/events.log"
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Failure(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        let bytes: [UInt8]
        do { bytes = try readAll(fd, path) } catch { close(fd); throw error }
        let log = EventLog(fd: fd, path: path)
        if bytes.isEmpty {
            try log.write(header(2))
            try log.sync()
            log.size = 12
            try log.append(first)
            try start(false)
            try replay(first)
            return (log, 0, false)
        }
        guard bytes.count >= 12, Array(bytes[0..<8]) == magic else {
            throw Failure(description: "\(path) is not a rules event log")
        }
        let version = UInt32(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self) })
        guard version == 1 || version == 2 else {
            throw Failure(description: "\(path) is a rules event log of version \(version); this rules reads versions 1 and 2")
        }
        var records: [(at: Int, record: Record)] = version == 1 ? [(0, first)] : []
        let end = try scan(bytes, version: version) { records.append(($0, $1)) }
        let resuming = version == 2 && resumeAt.map { at in at == end || records.contains { $0.at == at } } == true
        try start(resuming)
        for (at, record) in records where !resuming || at >= resumeAt! { try replay(record) }
        let dropped = bytes.count - end
        if version == 1 {
            try log.rewrite(records.map(\.record), directory: directory)
            return (log, dropped, true)
        }
        if dropped > 0 && ftruncate(fd, off_t(end)) != 0 {
            throw Failure(description: "cannot cut the interrupted record off \(path): \(String(cString: strerror(errno)))")
        }
        log.size = end
        return (log, dropped, false)
    }

    private static func header(_ version: UInt32) -> [UInt8] {
        var header = magic
        withUnsafeBytes(of: version.littleEndian) { header.append(bytes: $0) }
        return header
    }

    /// Each intact record of the file's bytes, in order; where they end.
    private static func scan(_ bytes: [UInt8], version: UInt32, _ each: (_ at: Int, Record) throws -> Void) throws -> Int {
        var at = 12
        while at + 12 <= bytes.count {
            let length = Int(UInt32(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt32.self) }))
            let sum = UInt64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at + 4, as: UInt64.self) })
            guard at + 12 + length <= bytes.count else { break }
            let payload = bytes[(at + 12)..<(at + 12 + length)]
            let intact = version == 1 ? Hashing.fnv1a(payload) == sum : payload.withUnsafeBytes { Hashing.checksum($0) } == sum
            guard intact, let record = Record(payload, version: version) else { break }
            try each(at, record)
            at += 12 + length
        }
        return at
    }

    /// Replaces a version 1 file by the same records in version 2, the
    /// policy first: written beside it, synced, then renamed over it.
    private func rewrite(_ records: [Record], directory: String) throws {
        let temporary = path + ".upgrading"
        let out = Glibc.open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
        guard out >= 0 else { throw Failure(description: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        close(fd)
        fd = out
        try write(Self.header(2))
        size = 12
        for record in records { try write(Self.framed(record)) }
        try sync()
        guard rename(temporary, path) == 0 else { throw Failure(description: "cannot rename \(temporary) to \(path): \(String(cString: strerror(errno)))") }
        let dir = Glibc.open(directory, O_RDONLY | O_CLOEXEC)
        if dir >= 0 { fsync(dir); close(dir) }
        size = Int(lseek(fd, 0, SEEK_END))
    }

    private static func framed(_ record: Record) -> [UInt8] {
        var framed: [UInt8] = []
        frame(record, into: &framed)
        return framed
    }

    /// Appends `record` framed: its payload's length and checksum, then the
    /// payload (its kind's byte, then its bytes). The payload is written in
    /// place, then summed where it lies: nothing is copied twice.
    private static func frame(_ record: Record, into out: inout [UInt8]) {
        let header = out.count
        out.append(contentsOf: repeatElement(0, count: 12))
        switch record {
        case .body(let body): out.append(1); out += body
        case .policy(let json): out.append(2); out += json.utf8
        case .sourced(let batch): out.append(3); batch.encode(into: &out)
        }
        let payload = out.count - header - 12
        let sum = out.withUnsafeBytes { Hashing.checksum(UnsafeRawBufferPointer(rebasing: $0[(header + 12)...])) }
        out.withUnsafeMutableBytes { b in
            b.storeBytes(of: UInt32(payload).littleEndian, toByteOffset: header, as: UInt32.self)
            b.storeBytes(of: sum.littleEndian, toByteOffset: header + 4, as: UInt64.self)
        }
    }

    private static func readAll(_ fd: Int32, _ path: String) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var offset: off_t = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, offset) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { return bytes }
            bytes += chunk[0..<n]
            offset += off_t(n)
        }
    }

    /// Every record up to `end`, in order, read again from the file (a
    /// past state: `GET /v1/report?as_of=`, explanations). Records after
    /// it may be being written (the group commit syncs the next records
    /// while the last are applied).
    package func records(upTo end: Int, _ each: (Record) throws -> Void) throws {
        let bytes = Array(try Self.readAll(fd, path).prefix(end))
        _ = try Self.scan(bytes, version: Self.version) { try each($1) }
    }

    /// Where the last whole record ends (a checkpoint's `logEnd`).
    package var end: Int { size }

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Appends a record and syncs it to disk: when this returns, the record
    /// survives a crash. Throws (the record is then not acknowledged) when
    /// the disk is full or the file cannot be written.
    package func append(_ record: Record) throws { _ = try append([record]) }

    /// The buffer a batch of records is framed in, between batches.
    private var batch: [UInt8] = []
    private static let keptBatchBytes = 16 << 20

    /// Appends records together, with one sync (group commit): all of them
    /// survive a crash once this returns, or, when it throws, none was
    /// acknowledged and the log is as it was. Returns where each ends.
    @discardableResult
    package func append(_ records: [Record]) throws -> [Int] {
        if let broken { throw Failure(description: broken) }
        // One buffer for them all, each record copied into it once; kept
        // for the next batch (a fresh one each time cost page faults).
        var framed = batch
        batch = []
        defer { framed.removeAll(keepingCapacity: framed.capacity <= Self.keptBatchBytes); batch = framed }
        var ends: [Int] = []
        framed.reserveCapacity(records.reduce(0) { $0 + 13 + $1.payloadCount })
        for record in records {
            Self.frame(record, into: &framed)
            ends.append(size + framed.count)
        }
        do {
            try write(framed)
            try sync()
            size += framed.count
            return ends
        } catch {
            if ftruncate(fd, off_t(size)) != 0 || fsync(fd) != 0 {
                broken = "\(path) could not be cut back after a failed write; nothing more is accepted"
            }
            throw error
        }
    }

    private func write(_ bytes: [UInt8]) throws {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))") }
            written += n
        }
    }

    private func sync() throws {
        guard fsync(fd) == 0 else { throw Failure(description: "cannot sync \(path) to disk: \(String(cString: strerror(errno)))") }
    }
}
