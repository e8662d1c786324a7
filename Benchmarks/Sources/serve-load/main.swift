// Ingest load for `rules serve` (scripts/bench-serve.sh runs it), compiled:
// on a machine the client shares with the server, a client in Python took
// a third as much CPU as the server, and that is the server's to use.
//
//     serve-load PORT EVENTS.ndjson [CLIENTS] [LINES_PER_BODY]
//
// Splits the stream by person into CLIENTS parts (each person's events stay
// in order, in one part), cuts each part into bodies of LINES_PER_BODY
// lines, and posts them from CLIENTS threads at once, each on one keep-alive
// connection, every body acknowledged (durable) before the next. People are
// independent, so the final report equals `rules run` over the whole stream.
//
// Each request goes out as common clients send it: with TCP_NODELAY, as
// curl sets by default, and head and body in one write, as Python's
// http.client does ("to avoid performance problems caused by the
// interaction between delayed ack and the Nagle algorithm", its source
// says). Sent in two writes without it, the body's last segment waited for
// the server to acknowledge the head: 15-20 % fewer lines per second at 4
// clients, the client's delay and not the service's (docs/PERFORMANCE.md).
// Prints: lines, seconds, lines per second, and the answers' latency
// percentiles. A body not answered 200, or a rejected line, fails the run.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("serve-load: \(message)\n".utf8))
    exit(1)
}

let arguments = CommandLine.arguments
guard arguments.count >= 3, let port = UInt16(arguments[1]) else {
    fail("usage: serve-load PORT EVENTS.ndjson [CLIENTS] [LINES_PER_BODY]")
}
let clients = arguments.count > 3 ? Int(arguments[3]) ?? 4 : 4
let perBody = arguments.count > 4 ? Int(arguments[4]) ?? 1000 : 1000
guard let stream = FileManager.default.contents(atPath: arguments[2]) else { fail("cannot read \(arguments[2])") }

/// The citizen id of a generated line: the bytes after `"citizen":"`.
func personHash(_ line: UnsafeRawBufferPointer) -> UInt32 {
    let key = Array(#""citizen":""#.utf8)
    var start = 0
    while start + key.count <= line.count {
        if line[start] == key[0] && zip(key, line[start..<(start + key.count)]).allSatisfy({ $0 == $1 }) { break }
        start += 1
    }
    start += key.count
    var hash: UInt32 = 2_166_136_261
    while start < line.count && line[start] != UInt8(ascii: "\"") {
        hash = (hash ^ UInt32(line[start])) &* 16_777_619
        start += 1
    }
    return hash
}

/// A body as a whole request, head and body in one buffer (made before
/// the clock starts).
func request(_ body: [UInt8]) -> [UInt8] {
    Array("POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
}

// Each part as its requests, each request as one buffer.
var parts = Array(repeating: [[UInt8]](), count: clients)
var open = Array(repeating: ([UInt8](), 0), count: clients)
var lines = 0
stream.withUnsafeBytes { all in
    var start = 0
    while start < all.count {
        var end = start
        while end < all.count && all[end] != UInt8(ascii: "\n") { end += 1 }
        if end < all.count { end += 1 }
        let line = UnsafeRawBufferPointer(rebasing: all[start..<end])
        let part = Int(personHash(line) % UInt32(clients))
        open[part].0.append(contentsOf: line)
        open[part].1 += 1
        if open[part].1 == perBody {
            parts[part].append(request(open[part].0))
            open[part] = ([], 0)
        }
        lines += 1
        start = end
    }
}
for part in 0..<clients where open[part].1 > 0 { parts[part].append(request(open[part].0)) }

@Sendable func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

final class Results: @unchecked Sendable {
    let lock = NSLock()
    var latencies: [Double] = []
    var failures: [String] = []
}
let results = Results()

/// Posts `requests` one after the other on one connection.
@Sendable func post(_ requests: [[UInt8]]) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { fail("cannot connect to 127.0.0.1:\(port)") }
    var on: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    var mine: [Double] = [], failed: [String] = []
    var answer = [UInt8](repeating: 0, count: 1 << 16)
    for request in requests {
        let t = now()
        sendAll(fd, request)
        let (status, text) = readAnswer(fd, &answer)
        mine.append(now() - t)
        if status != 200 || !text.contains(#""rejected":0"#) { failed.append(String(text.prefix(300))) }
    }
    close(fd)
    results.lock.lock()
    results.latencies += mine
    results.failures += failed
    results.lock.unlock()
}

@Sendable func sendAll(_ fd: Int32, _ bytes: [UInt8]) {
    bytes.withUnsafeBytes { all in
        var sent = 0
        while sent < all.count {
            let n = send(fd, all.baseAddress! + sent, all.count - sent, Int32(MSG_NOSIGNAL))
            if n <= 0 { fail("the server closed the connection") }
            sent += n
        }
    }
}

/// One answer: its status and its text (head and body).
@Sendable func readAnswer(_ fd: Int32, _ buffer: inout [UInt8]) -> (Int, String) {
    var have = 0
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + have, $0.count - have, 0) }
        if n <= 0 { fail("the server closed the connection before answering") }
        have += n
        let text = String(decoding: buffer[..<have], as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { continue }
        let head = text[..<split.lowerBound].lowercased()
        guard let lengthLine = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
              let length = Int(lengthLine.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) else {
            fail("an answer without Content-Length")
        }
        let headBytes = text.utf8.distance(from: text.utf8.startIndex, to: split.upperBound)
        if have < headBytes + length { continue }
        let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
        return (status, text)
    }
}

let start = now()
let done = DispatchGroup()
for requests in parts {
    done.enter()
    Thread.detachNewThread { post(requests); done.leave() }
}
done.wait()
let seconds = now() - start
if !results.failures.isEmpty { fail("\(results.failures.count) bodies failed, the first: \(results.failures[0])") }
let latencies = results.latencies.sorted()
func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(p / 100 * Double(latencies.count)))] * 1000 }
print("lines \(lines) seconds \(String(format: "%.3f", seconds)) per_second \(Int((Double(lines) / seconds).rounded())) "
      + "bodies \(latencies.count) p50_ms \(String(format: "%.2f", percentile(50))) p99_ms \(String(format: "%.2f", percentile(99)))")
