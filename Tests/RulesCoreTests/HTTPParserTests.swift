import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

/// The HTTP/1.1 request parser of `rules serve` (RFC 9112): requests as
/// they arrive, in any split; every malformed request with its status.
@Suite("HTTP requests")
struct HTTPParserTests {
    /// All requests in `bytes`, fed in pieces of the given sizes.
    static func parse(_ bytes: [UInt8], pieces: [Int] = [], limits: HTTPRequestParser.Limits = .init()) -> [Result<HTTPRequest, HTTPError>] {
        var parser = HTTPRequestParser(limits: limits)
        var out: [Result<HTTPRequest, HTTPError>] = []
        var at = 0, k = 0
        while at < bytes.count {
            let n = pieces.isEmpty ? bytes.count : max(1, pieces[k % pieces.count])
            parser.append(bytes[at..<min(bytes.count, at + n)])
            at += n
            k += 1
            while let r = parser.next() {
                out.append(r)
                if case .failure = r { return out }
            }
        }
        return out
    }

    static func one(_ text: String) -> Result<HTTPRequest, HTTPError>? { parse(Array(text.utf8)).first }

    @Test("a GET, a POST with a body, pipelined and split at every byte, come out whole")
    func pipelined() throws {
        let text = "GET /v1/people/dave%20o?as_of=2026-01-01&x=a+b HTTP/1.1\r\nHost: localhost\r\n\r\n"
            + "\r\nPOST /v1/events HTTP/1.1\nHost: x\nContent-Length: 5\nConnection: close\n\nhello"
            + "PUT /v1/policy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;name=v\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n"
        let bytes = Array(text.utf8)
        let whole = Self.parse(bytes).map { try? $0.get() }
        #expect(whole.count == 3)
        let get = try #require(whole[0])
        #expect(get.method == "GET" && get.segments == ["v1", "people", "dave o"] && get.minorVersion == 1 && get.keepAlive)
        #expect(get.query.map { "\($0.name)=\($0.value)" } == ["as_of=2026-01-01", "x=a b"])
        let post = try #require(whole[1])
        #expect(post.body == Array("hello".utf8) && !post.keepAlive && post.header("content-length") == "5")
        let put = try #require(whole[2])
        #expect(put.body == Array("wikipedia".utf8))
        for size in [1, 2, 3, 7, 64] {
            #expect(Self.parse(bytes, pieces: [size]).map { try? $0.get() } == whole, "pieces of \(size)")
        }
        var rng = SeededRandom(seed: 5)
        for _ in 0..<200 {
            let pieces = (0..<20).map { _ in 1 + rng.below(30) }
            #expect(Self.parse(bytes, pieces: pieces).map { try? $0.get() } == whole)
        }
    }

    @Test("an encoded slash stays inside its segment; HTTP/1.0 closes unless asked to keep alive")
    func segmentsAndVersions() throws {
        let slash = try #require(try Self.one("GET /v1/people/a%2Fb/explain HTTP/1.1\r\nHost: h\r\n\r\n")?.get())
        #expect(slash.segments == ["v1", "people", "a/b", "explain"])
        let old = try #require(try Self.one("GET / HTTP/1.0\r\n\r\n")?.get())
        #expect(!old.keepAlive && old.segments == [""])
        #expect(try Self.one("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")?.get().keepAlive == true)
        #expect(try Self.one("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n")?.get().keepAlive == false)
        #expect(Self.one("GET / HTTP/1.1\r\nHost: h\r\n") == nil)  // not whole yet
    }

    @Test("every malformed request is refused with the status the RFC names")
    func malformed() throws {
        var small = HTTPRequestParser.Limits()
        small.maxBody = 10
        small.maxHeader = 200
        small.maxTarget = 100
        let cases: [(String, Int)] = [
            ("GET / HTTP/1.1\r\n\r\n", 400),                                      // no Host
            ("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
            ("GET / HTTP/1.1 x\r\nHost: h\r\n\r\n", 400),
            ("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            ("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),                   // absolute form
            ("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            ("GET / HTTX/1.1\r\nHost: h\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),                          // space before the colon
            ("GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost h\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: h\u{1}\r\n\r\n", 400),
            ("GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            ("GET /a%ff HTTP/1.1\r\nHost: h\r\n\r\n", 400),                       // not UTF-8
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -3\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", 413),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n", 413),
            ("GET /" + String(repeating: "a", count: 120) + " HTTP/1.1\r\nHost: h\r\n\r\n", 414),
            ("GET / HTTP/1.1\r\nHost: h\r\nX: " + String(repeating: "a", count: 300) + "\r\n\r\n", 431),
        ]
        for (text, status) in cases {
            let result = Self.parse(Array(text.utf8), limits: small)
            guard case .failure(let e)? = result.first else {
                Issue.record("accepted: \(text.debugDescription)"); continue
            }
            #expect(e.status == status, "\(text.debugDescription): \(e.message)")
            #expect(!e.message.isEmpty)
        }
        // At the limits exactly: accepted.
        let body = String(repeating: "b", count: 10)
        #expect(try Self.parse(Array("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n\(body)".utf8), limits: small).first?.get().body.count == 10)
        let target = "/" + String(repeating: "a", count: 100 - "GET  HTTP/1.1".count - 1)
        #expect((try? Self.parse(Array("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n".utf8), limits: small).first?.get()) != nil)
        #expect(Self.parse(Array("GET \(target)a HTTP/1.1\r\nHost: h\r\n\r\n".utf8), limits: small).first.map { if case .failure(let e) = $0 { return e.status }; return 0 } == 414)
        // A same Content-Length twice is one length.
        #expect(try Self.one("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab")?.get().body == Array("ab".utf8))
    }

    @Test("random bytes never crash the parser; an error stays the answer")
    func randomBytes() {
        var rng = SeededRandom(seed: 11)
        let pieces = ["GET", "POST", " ", "/", "/v1/", "%2", "%41", "?", "&", "=", "HTTP/1.1", "HTTP/1.0", "\r\n", "\n", ":", "Host",
                      "Content-Length", "Transfer-Encoding", "chunked", "0", "5", "ff", ";", "\t", "\u{0}", "é"]
        for _ in 0..<3000 {
            var text = ""
            for _ in 0..<rng.below(40) { text += rng.pick(pieces) }
            var parser = HTTPRequestParser()
            parser.append(Array(text.utf8))
            var last: Result<HTTPRequest, HTTPError>? = nil
            for _ in 0..<5 {
                guard let r = parser.next() else { break }
                if case .failure(let e) = last { #expect(r == .failure(e)) }
                last = r
            }
        }
    }
}
