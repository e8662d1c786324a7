/// One policy file: its name, its bytes, and a line table for turning byte
/// offsets into the line and column numbers people read.
public struct SourceFile: Sendable {
    /// The file's name, as diagnostics show it.
    public let name: String
    /// Its contents.
    public let bytes: [UInt8]
    /// Byte offset of the first byte of every line.
    package let lineStarts: [Int]

    /// A file of `text`.
    public init(name: String, text: String) {
        self.init(name: name, bytes: Array(text.utf8))
    }

    /// A file of raw bytes (diagnostics point at bytes that are not UTF-8).
    public init(name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
        var starts = [0]
        for (i, b) in bytes.enumerated() where b == UInt8(ascii: "\n") {
            starts.append(i + 1)
        }
        self.lineStarts = starts
    }

    /// 1-based line of a byte offset.
    package func line(of offset: Int) -> Int {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return lo + 1
    }

    /// 1-based column of a byte offset, counted in Unicode scalar values
    /// (a tab is one column, `→` is one column), as the contract says.
    func column(of offset: Int) -> Int {
        let start = lineStarts[line(of: offset) - 1]
        var col = 1
        var i = start
        while i < offset && i < bytes.count {
            // Continuation bytes (10xxxxxx) do not start a scalar.
            if bytes[i] & 0xC0 != 0x80 { col += 1 }
            i += 1
        }
        return col
    }

    /// The text of a 1-based line, without its line break.
    package func lineText(_ line: Int) -> String {
        let start = lineStarts[line - 1]
        var end = line < lineStarts.count ? lineStarts[line] - 1 : bytes.count
        if end > start && end <= bytes.count && end - 1 >= start && bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        return String(decoding: bytes[start..<max(start, end)], as: UTF8.self)
    }

    package func text(_ span: Span) -> String {
        String(decoding: bytes[span.start..<span.end], as: UTF8.self)
    }
}

/// A half-open byte range `[start, end)` in one source file. Spans are kept
/// out of AST equality so that two rules that mean the same compare equal.
public struct Span: Sendable, Hashable {
    /// The file's index in its ``SourceSet``.
    public var file: Int
    /// The first byte.
    public var start: Int
    /// The byte after the last.
    public var end: Int

    /// A span of bytes `start..<end` of file `file`.
    public init(file: Int, start: Int, end: Int) {
        self.file = file
        self.start = start
        self.end = end
    }

    func to(_ other: Span) -> Span {
        Span(file: file, start: min(start, other.start), end: max(end, other.end))
    }
}

/// The files of one policy, in command-line order; a span's `file` indexes it.
public struct SourceSet: Sendable {
    /// The files, in load order.
    public private(set) var files: [SourceFile] = []

    /// A set of `files`.
    public init(_ files: [SourceFile] = []) { self.files = files }

    /// Adds a file; its index.
    @discardableResult
    public mutating func add(_ file: SourceFile) -> Int {
        files.append(file)
        return files.count - 1
    }

    /// A span's file name, line and column (1-based; columns count characters).
    public func location(_ span: Span) -> (file: String, line: Int, column: Int) {
        let f = files[span.file]
        return (f.name, f.line(of: span.start), f.column(of: span.start))
    }
}
