/// Splits a file descriptor's bytes into lines without copying them: each
/// line is a view into one growing buffer, valid until the next call.
package final class LineReader {
    private let fd: Int32
    @exclusivity(unchecked) private var buffer: UnsafeMutablePointer<UInt8>
    @exclusivity(unchecked) private var capacity: Int
    @exclusivity(unchecked) private var start = 0
    @exclusivity(unchecked) private var end = 0
    @exclusivity(unchecked) private var atEOF = false
    /// Bytes moved out of the front of the buffer so far, so that positions
    /// ahead of the reader survive a refill: absolute = discarded + index.
    @exclusivity(unchecked) private var discarded = 0
    @exclusivity(unchecked) package private(set) var lineNumber = 0
    /// Set when `read` failed; the text of `strerror`.
    @exclusivity(unchecked) package private(set) var readError: String? = nil

    package init(fd: Int32, capacity: Int = 1 << 20, maxLineBytes: Int = LineReader.defaultMaxLineBytes) {
        self.fd = fd
        self.maxLineBytes = maxLineBytes
        self.capacity = capacity
        buffer = .allocate(capacity: capacity)
    }

    /// Lines of bytes already in memory.
    package init(bytes: [UInt8], maxLineBytes: Int = LineReader.defaultMaxLineBytes) {
        fd = -1
        self.maxLineBytes = maxLineBytes
        capacity = max(1, bytes.count)
        buffer = .allocate(capacity: capacity)
        bytes.withUnsafeBufferPointer { if let b = $0.baseAddress { buffer.update(from: b, count: bytes.count) } }
        end = bytes.count
        atEOF = true
    }

    /// Lines of bytes someone else holds, read in place (a service body,
    /// read by every shard at once): they must outlive the reader.
    package init(borrowing bytes: UnsafeBufferPointer<UInt8>, maxLineBytes: Int = LineReader.defaultMaxLineBytes) {
        fd = -1
        self.maxLineBytes = maxLineBytes
        capacity = max(1, bytes.count)
        if let base = bytes.baseAddress {
            buffer = UnsafeMutablePointer(mutating: base)
            owned = false
        } else {
            buffer = .allocate(capacity: 1)
        }
        end = bytes.count
        atEOF = true
    }

    /// Whether `buffer` is this reader's to free (and grow).
    private var owned = true

    deinit { if owned { buffer.deallocate() } }

    /// The next line without its `\n` (and `\r`), or nil at the end.
    ///
    /// A line longer than `maxLineBytes` is not kept: the reader skips to
    /// its end and returns an empty line with `skippedLength` set, so the
    /// caller can reject it by number without holding it in memory.
    package func next() -> UnsafeBufferPointer<UInt8>? {
        skippedLength = nil
        while true {
            if let nl = memchr(buffer + start, 0x0A, end - start) {
                let lineEnd = buffer.distance(to: nl.assumingMemoryBound(to: UInt8.self))
                if lineEnd - start > maxLineBytes { return skipLongLine() }
                return take(upTo: lineEnd, skip: 1)
            }
            if atEOF {
                if start == end { return nil }
                if end - start > maxLineBytes { return skipLongLine() }
                return take(upTo: end, skip: 0)
            }
            if end - start > maxLineBytes { return skipLongLine() }
            fill()
        }
    }

    /// Lines longer than this are rejected, not read into memory.
    static let defaultMaxLineBytes = 16 << 20
    let maxLineBytes: Int
    /// The rejection of a line that was too long (both readers say it so).
    package static func tooLong(_ length: Int, limit: Int = defaultMaxLineBytes) -> String {
        "the line is \(length) bytes, longer than the limit of \(limit >> 20) MiB; it was skipped unread"
    }

    /// Set by `next()` when it skipped a line that was too long: its length.
    @exclusivity(unchecked) package private(set) var skippedLength: Int? = nil

    /// Moves past the line at `start` (its end may not be read yet) and
    /// reports it as skipped.
    private func skipLongLine() -> UnsafeBufferPointer<UInt8> {
        var length = 0
        while true {
            if start == end {
                if atEOF { break }
                fill()
                continue
            }
            if let nl = memchr(buffer + start, 0x0A, end - start) {
                let lineEnd = buffer.distance(to: nl.assumingMemoryBound(to: UInt8.self))
                length += lineEnd - start
                start = lineEnd + 1
                break
            }
            length += end - start
            start = end
        }
        lineNumber += 1
        skippedLength = length
        return UnsafeBufferPointer(start: buffer, count: 0)
    }

    private func take(upTo lineEnd: Int, skip: Int) -> UnsafeBufferPointer<UInt8> {
        var e = lineEnd
        if e > start && buffer[e - 1] == 0x0D { e -= 1 }
        let line = UnsafeBufferPointer(start: buffer + start, count: e - start)
        start = lineEnd + skip
        lineNumber += 1
        return line
    }

    /// A position some lines ahead of the reader, to look at lines before
    /// they are read. `lead` counts those lines; the owner lowers it by one
    /// for every line the reader returns.
    struct Lookahead {
        var position = 0
        var lead = 0
    }

    /// The complete line at `ahead`, moving it one line on; nil when no
    /// complete line is buffered there yet (nothing is read for it).
    @inline(__always)
    func advance(_ ahead: inout Lookahead) -> UnsafeBufferPointer<UInt8>? {
        var from = ahead.position - discarded
        if from < start { from = start; ahead.lead = 0 }  // the reader passed it
        guard from < end, let nl = memchr(buffer + from, 0x0A, end - from) else { return nil }
        let lineEnd = buffer.distance(to: nl.assumingMemoryBound(to: UInt8.self))
        ahead.position = discarded + lineEnd + 1
        ahead.lead += 1
        return UnsafeBufferPointer(start: buffer + from, count: lineEnd - from)
    }

    /// Moves the partial line to the front, grows the buffer if a single
    /// line fills it, and reads more.
    private func fill() {
        assert(owned, "a reader of borrowed bytes has them all")
        if start > 0 {
            memmove(buffer, buffer + start, end - start)
            discarded += start
            end -= start
            start = 0
        }
        if end == capacity {
            let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity * 2)
            bigger.update(from: buffer, count: end)
            buffer.deallocate()
            buffer = bigger
            capacity *= 2
        }
        while true {
            let n = read(fd, buffer + end, capacity - end)
            if n > 0 { end += n; return }
            if n == 0 { atEOF = true; return }
            if errno == EINTR { continue }
            readError = String(cString: strerror(errno))
            atEOF = true
            return
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
