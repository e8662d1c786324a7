import Foundation
import RulesCore
import MemoryHints
import RulesTooling
#if canImport(Glibc)
import Glibc
#endif

/// `rules serve POLICY.rules... [--data DIR] [--listen HOST:PORT]`
enum ServeCommand {
    static let help = """
    usage: rules serve POLICY.rules... [--data DIR] [--listen HOST:PORT] [--max-body BYTES]
                       [--checkpoint-every LINES] [--max-connections N] [--idle-timeout SECONDS] [--token-file F] [--read-token-file F]
                       [--jobs N] [--person-key NAME] [--retain DURATION] [--lateness DURATION]
                       [--source redis://HOST:PORT/NAME --partitions A-B/N [--password-file F] [--trim] [--write-every SECONDS]]

    Keeps the engine running and answers over HTTP/1.1 (docs/SERVICE.md):
      POST /v1/events        a body of NDJSON lines; answered once applied
                             and synced to disk: {"read":N,"applied":A,
                             "rejected":R,"rejections":[{"line":K,"reason":…}]}
      GET  /v1/people/ID     that person's report line, as `rules run` prints it
      GET  /v1/people/ID/explain
                             the JSON of `rules explain --format json`
      GET  /v1/report        the whole report (?as_of=TIME)
      GET  /v1/changes       Server-Sent Events: each changed report line
                             after each body; Last-Event-ID resumes
      PUT  /v1/policy        {"files":{"NAME.rules":"TEXT",…}}: checked (422
                             with the diagnostics), then in force from the
                             next line, people carried over by name
      GET  /v1/health        {"status":"ok","clock":…,"people":N,"lines":N}
      GET  /metrics          Prometheus text: lines, people, requests and
                             their latencies by route
    Every acknowledged body and policy is in DIR/events.log before it is
    answered; a restart with the same --data replays it (and serves the
    latest policy it recorded).

    options:
      --data DIR        where the log lives (default: rules-data)
      --listen HOST:PORT
                        where to listen (default: 127.0.0.1:8080; port 0
                        picks a free one); prints `listening on
                        http://HOST:PORT` on stderr when ready
      --max-body BYTES  the largest body accepted (default 67108864: 64 MiB)
      --checkpoint-every LINES
                        write DIR/checkpoint every LINES lines (default:
                        4 per person served, at least 1000000; 0: only on
                        stopping); a start restores it and replays only
                        the log after it
      --max-connections N
                        connections open at once (default 1024); one more
                        is answered 503 and closed
      --idle-timeout SECONDS
                        a connection idle this long is closed, and a
                        request must arrive whole within it (408 otherwise;
                        default 60)
      --token-file F    posts (and every other write) need
                        `Authorization: Bearer TOKEN`, TOKEN the first line
                        of F; 401 otherwise
      --read-token-file F
                        reads need a bearer token too: the one in F, or
                        the write token
      --jobs N          split people over N engines (by a stable hash of
                        their id, as `rules run --jobs`), each body applied
                        by all at once on threads of their own (default 2);
                        the same answers with any N
      --person-key NAME, --retain DURATION, --lateness DURATION
                        as for `rules run`
      --source redis://HOST:PORT/NAME --partitions A-B/N
                        a worker: read the events of partitions A to B of
                        N from the Redis streams NAME:{A} … NAME:{B} (as
                        `rules publish` wrote them) instead of POST (409),
                        each in its order; write each changed report line
                        to the hash NAME:state:{K}; resume exactly where
                        it stood after a restart. HOST:PORT may be any
                        node of a Redis Cluster (docs/SCALING.md)
      --password-file F the Redis password (AUTH), the file's first line
      --trim            a worker trims the entries it has applied from its
                        streams (off: kept whole, they let a new worker
                        start from scratch)
      --write-every SECONDS
                        while a worker catches up on a backlog, it looks
                        for changed lines (for lookups, the change feed
                        and NAME:state:{K}) at most this often, each
                        person once with their latest line (default 1;
                        0: after every batch); caught up, after every
                        batch
      -h, --help        show this help

    exit status: 0 stopped by SIGTERM or SIGINT (what is in flight is
    answered first, then a checkpoint is written), 1 a policy error or a
    data directory that cannot be used, 2 usage error.
    """

    static func run(_ args: [String]) -> Int32 {
        let (arguments, code) = Arguments.forCommand("serve", args, spec: .init(options: ["--data", "--listen", "--max-body", "--person-key",
                                                                                         "--retain", "--lateness", "--token-file", "--max-connections", "--checkpoint-every",
                                                                                         "--read-token-file", "--jobs", "--idle-timeout",
                                                                                         "--source", "--partitions", "--password-file", "--write-every"],
                                                                                   flags: ["--trim"]), help: help)
        guard let parsed = arguments else { return code }
        // Before any thread starts (the service starts its shards'): a
        // thread that does not block them would be handed SIGTERM or SIGINT
        // and die of it, with no checkpoint.
        let stopSignals = blockStopSignals()
        guard !parsed.positionals.isEmpty else { return Main.usageError("name at least one policy file", command: "serve") }
        let listen = parsed.values["--listen"] ?? "127.0.0.1:8080"
        guard let colon = listen.lastIndex(of: ":"), let port = UInt16(listen[listen.index(after: colon)...]) else {
            return Main.usageError("--listen takes HOST:PORT, like 127.0.0.1:8080, not \(listen)", command: "serve")
        }
        let host = String(listen[..<colon])
        var maxConnections = 1024
        if let text = parsed.values["--max-connections"] {
            guard let n = Int(text), n >= 1 else { return Main.usageError("--max-connections takes a number from 1, not \(text)", command: "serve") }
            maxConnections = n
        }
        var checkpointEvery: Int? = nil
        if let text = parsed.values["--checkpoint-every"] {
            guard let n = Int(text), n >= 0 else { return Main.usageError("--checkpoint-every takes a number of lines (0: only on stopping), not \(text)", command: "serve") }
            checkpointEvery = n
        }
        var jobs = RulesService.defaultJobs
        if let text = parsed.values["--jobs"] {
            guard let n = Int(text), n >= 1, n <= 64 else { return Main.usageError("--jobs takes a number of engines from 1 to 64, not \(text)", command: "serve") }
            jobs = n
        }
        var limits = HTTPRequestParser.Limits()
        if let text = parsed.values["--max-body"] {
            guard let n = Int(text), n >= 0 else { return Main.usageError("--max-body takes a number of bytes, not \(text)", command: "serve") }
            limits.maxBody = n
        }
        if let text = parsed.values["--idle-timeout"] {
            guard let n = Int(text), n >= 1, n <= 86_400 else { return Main.usageError("--idle-timeout takes a number of seconds from 1 to 86400, not \(text)", command: "serve") }
            limits.idleSeconds = n
        }
        var tokens = RulesService.Tokens()
        for (option, path) in [("--token-file", parsed.values["--token-file"]), ("--read-token-file", parsed.values["--read-token-file"])] {
            guard let path else { continue }
            guard let token = readSecret(path) else {
                Terminal.writeErr("rules: \(option) \(path): the file cannot be read, or its first line is empty; not serving\n")
                return ExitCode.failure
            }
            if option == "--token-file" { tokens.write = token } else { tokens.read = token }
        }
        if tokens.read != nil && tokens.write == nil {
            Terminal.writeErr("rules: warning: --read-token-file without --token-file: reads need a token, writes do not\n")
        }
        var source: StreamSource? = nil
        var redisOptions = RedisClient.Options()
        switch (parsed.values["--source"], parsed.values["--partitions"]) {
        case (nil, nil): break
        case (nil, _?): return Main.usageError("--partitions goes with --source redis://HOST:PORT/NAME", command: "serve")
        case (_?, nil): return Main.usageError("--source needs --partitions A-B/N: which partitions this worker reads", command: "serve")
        case (let url?, let range?):
            do { source = try StreamSource(address: try RedisAddress(parsing: url), partitions: range) } catch {
                return Main.usageError("\(error)", command: "serve")
            }
        }
        if parsed.flags.contains("--trim") && source == nil { return Main.usageError("--trim goes with --source", command: "serve") }
        var writeEvery = SourceReader.defaultWriteInterval
        if let text = parsed.values["--write-every"] {
            guard source != nil else { return Main.usageError("--write-every goes with --source", command: "serve") }
            guard let seconds = Double(text), seconds >= 0, seconds <= 86400 else {
                return Main.usageError("--write-every takes seconds from 0 to 86400 (0: after every batch), not \(text)", command: "serve")
            }
            writeEvery = seconds
        }
        if let path = parsed.values["--password-file"] {
            guard source != nil else { return Main.usageError("--password-file goes with --source", command: "serve") }
            guard let password = readSecret(path) else {
                Terminal.writeErr("rules: --password-file \(path): the file cannot be read, or its first line is empty; not serving\n")
                return ExitCode.failure
            }
            redisOptions.password = String(decoding: password, as: UTF8.self)
        }
        let corrections: Corrections?
        switch parsed.corrections(command: "serve") {
        case .success(let c): corrections = c
        case .failure(let e): return e.code
        }
        guard case .compiled(let compiled) = PolicyLoading.compile(parsed.positionals) else { return ExitCode.failure }
        PolicyLoading.printDiagnostics(compiled)
        guard let program = compiled.program else {
            Terminal.writeErr("rules: the policy has \(PolicyLoading.summary(compiled)); not serving\n")
            return ExitCode.failure
        }
        let personKey: PersonKey
        switch parsed.personKey(command: "serve", program: program) {
        case .success(let key): personKey = key
        case .failure(let e): return e.code
        }
        let data = parsed.values["--data"] ?? "rules-data"
        // A log past a file size limit fails its write (EFBIG) and the post
        // is answered 503, instead of the signal killing the service.
        signal(SIGXFSZ, SIG_IGN)
        let service: RulesService
        do {
            service = try RulesService(policy: ServedPolicy(compiled, paths: parsed.positionals), program: program,
                                       personKey: personKey, corrections: corrections, jobs: jobs, data: data, source: source)
        } catch {
            Terminal.writeErr("rules: \(error)\n")
            return ExitCode.failure
        }
        service.tokens = tokens
        service.checkpointEvery = checkpointEvery
        service.warn = { Terminal.writeErr("rules: warning: \($0)\n") }
        if let note = service.checkpointNote { Terminal.writeErr("rules: \(note)\n") }
        let replayed = service.replayed
        if replayed.bodies > 0 || replayed.dropped > 0 || replayed.policyChanges > 0 {
            Terminal.writeErr("rules: resumed from \(data): \(replayed.bodies) bod\(replayed.bodies == 1 ? "y" : "ies") replayed"
                              + (replayed.policyChanges > 0 ? " across \(replayed.policyChanges) policy change\(replayed.policyChanges == 1 ? "" : "s")" : "")
                              + (replayed.dropped > 0 ? "; \(replayed.dropped) bytes of an interrupted, unacknowledged write dropped" : "") + "\n")
        }
        if replayed.upgraded {
            Terminal.writeErr("rules: \(data)/events.log was rewritten in this version's format (version 2)\n")
        }
        if service.servesLoggedPolicy {
            Terminal.writeErr("rules: serving the policy recorded in \(data)/events.log (the latest it was given), not the files named here, which differ; PUT /v1/policy changes it\n")
        }
        guard let (fd, bound) = listenSocket(host: host, port: port) else { return ExitCode.failure }
        signal(SIGPIPE, SIG_IGN)
        // Each connection's thread would get a malloc arena of its own, and
        // keep the bodies it freed there: two arenas hold the service's
        // memory per person to what `rules run` uses (docs/PERFORMANCE.md).
        rules_limit_malloc_arenas(2)
        stopOnSignals(stopSignals, service, data: data)
        if source != nil {
            redisOptions.onRetry = { Terminal.writeErr("rules: warning: \($0)\n") }
            let reader = SourceReader(service: service, options: redisOptions, warn: { Terminal.writeErr("rules: warning: \($0)\n") })
            reader.trim = parsed.flags.contains("--trim")
            reader.writeInterval = writeEvery
            reader.start()
        }
        Terminal.writeErr("listening on http://\(host):\(bound)\n")
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                // Out of descriptors: wait for connections to close.
                if errno == EMFILE || errno == ENFILE { usleep(10_000); continue }
                Terminal.writeErr("rules: accept failed: \(String(cString: strerror(errno)))\n")
                return ExitCode.failure
            }
            // Every answer is written whole at once; a change feed's events
            // are small writes one after another, each of which Nagle's
            // algorithm would hold until the last was acknowledged.
            var on: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
            Connection.start(client, service: service, limits: limits, maxConnections: maxConnections)
        }
    }

    /// A token file's first line, without its line end and surrounding
    /// blanks; nil when unreadable or empty.
    static func readSecret(_ path: String) -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let first = data.split(separator: 0x0A, maxSplits: 1, omittingEmptySubsequences: false).first ?? Data()
        let token = String(decoding: first, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return token.isEmpty ? nil : Array(token.utf8)
    }

    /// Blocks SIGTERM and SIGINT in this thread, and so in every thread
    /// started after (threads inherit the mask); the set, for
    /// `stopOnSignals`.
    private static func blockStopSignals() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        return set
    }

    /// SIGTERM and SIGINT end the service between two requests, exit 0:
    /// they are blocked in every thread (`blockStopSignals`, before the
    /// first was started) and awaited by one thread of their own.
    private static func stopOnSignals(_ awaited: sigset_t, _ service: RulesService, data: String) {
        startThread {
            var set = awaited, signal: Int32 = 0
            sigwait(&set, &signal)
            service.stop { failure in
                if let failure {
                    Terminal.writeErr("rules: warning: no checkpoint written (\(failure)); the next start replays the log\n")
                }
                Terminal.writeErr("rules: stopped; every acknowledged body is in \(data)/events.log"
                                  + (failure == nil ? ", the state in \(data)/checkpoint" : "") + "\n")
                exit(0)
            }
        }
    }

    /// A listening TCP socket on `host:port` (an IPv4 address) and the port
    /// it got.
    private static func listenSocket(host: String, port: UInt16) -> (Int32, UInt16)? {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &address.sin_addr) == 1 else {
            Terminal.writeErr("rules: --listen needs an IPv4 address, like 127.0.0.1, not \(host)\n")
            return nil
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { Terminal.writeErr("rules: cannot open a socket: \(String(cString: strerror(errno)))\n"); return nil }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 512) == 0 else {
            Terminal.writeErr("rules: cannot listen on \(host):\(port): \(String(cString: strerror(errno)))\n")
            close(fd)
            return nil
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, UInt16(bigEndian: actual.sin_port))
    }
}

/// One client connection, on a thread of its own: a slow client holds up
/// only its own thread. Requests are read as they arrive, answered in
/// order; an idle connection is closed after `--idle-timeout` seconds, and
/// a request must arrive whole within as long.
enum Connection {
    static func start(_ fd: Int32, service: RulesService, limits: HTTPRequestParser.Limits, maxConnections: Int) {
        func refuse(_ why: String) {
            service.metrics.record(method: "other", route: "refused", status: 503, seconds: 0)
            _ = send(fd, HTTPResponse.error(503, why).bytes(close: true))
            close(fd)
        }
        guard service.metrics.connectionOpened(limit: maxConnections) else {
            return refuse("too many connections: \(maxConnections) are open (--max-connections); try again shortly")
        }
        startThread(stackSize: 1 << 20, orElse: {
            service.metrics.connectionClosed()
            refuse("too many connections: no thread can be started for another")
        }) {
            serve(fd, service, limits)
        }
    }

    /// How long the next `recv` may wait: the idle time, or, inside a
    /// request, what is left of its time to arrive whole.
    private static func setReceiveTimeout(_ fd: Int32, _ seconds: Double) {
        let s = max(seconds, 0.001)
        var timeout = timeval(tv_sec: .init(s), tv_usec: .init((s - s.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    static func serve(_ fd: Int32, _ service: RulesService, _ limits: HTTPRequestParser.Limits) {
        defer {
            close(fd)
            service.metrics.connectionClosed()
        }
        // When the request being read began: it must arrive whole within
        // `idleSeconds`, however slowly its bytes trickle in: each wait for
        // bytes lasts at most what is left of that time.
        let idle = Double(limits.idleSeconds)
        var begun: Double? = nil
        var waitSet = idle
        setReceiveTimeout(fd, idle)
        let tooSlow = HTTPResponse.error(408, "the request did not arrive whole in \(limits.idleSeconds) s (--idle-timeout)")
        var parser = HTTPRequestParser(limits: limits)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var continued = false
        var slice = Slice.standard, niced = false
        while true {
            while let result = parser.next() {
                switch result {
                case .success(let request):
                    continued = false
                    slice.suit(request, niced: &niced)
                    let start = seconds()
                    let route = ServiceMetrics.route(request)
                    switch service.handle(request) {
                    case .response(let answer):
                        // Counted before it is sent: a client that has its
                        // answer finds it counted.
                        service.metrics.record(method: request.method, route: route, status: answer.status, seconds: seconds() - start)
                        guard send(fd, answer.bytes(close: !request.keepAlive)), request.keepAlive else { return }
                    case .changes(let after):
                        service.metrics.record(method: request.method, route: route, status: 200, seconds: seconds() - start)
                        // Server-Sent Events until the client goes: the
                        // body ends when the connection does.
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
                        guard send(fd, Array(head.utf8)) else { return }
                        service.feed.stream(after: after) { send(fd, $0) }
                        return
                    }
                case .failure(let e):
                    service.metrics.record(method: "other", route: "malformed", status: e.status, seconds: 0)
                    _ = send(fd, HTTPResponse.error(e.status, e.message).bytes(close: true))
                    return
                }
            }
            if parser.expectsContinue && !continued {
                continued = true
                guard send(fd, Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) else { return }
            }
            let wait = begun.map { idle - (seconds() - $0) } ?? idle
            if wait != waitSet {
                setReceiveTimeout(fd, wait)
                waitSet = wait
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                // Idle too long: a request begun and not finished is told so.
                if parser.isInside { _ = send(fd, tooSlow.bytes(close: true)) }
                return
            }
            if n <= 0 { return }
            parser.append(chunk[0..<n])
            if !parser.isInside { begun = nil } else if begun == nil { begun = seconds() }
            if let begun, seconds() - begun > idle, parser.isInside {
                _ = send(fd, tooSlow.bytes(close: true))
                return
            }
        }
    }

    /// How long the scheduler lets a connection's thread run: reads (and
    /// the waits between them) on short slices, so that a lookup is not
    /// queued behind the threads applying bodies while both cores are busy;
    /// writes, which apply bodies, on the default. Set per request, when it
    /// changes (a connection's requests are usually of one kind). A thread
    /// that takes a write also runs at nice 5 from then on, as the shards'
    /// helpers do: when the cores are short, lookups go first and bodies
    /// take what is left (alone, the ingest runs as fast: measured in
    /// docs/PERFORMANCE.md). Lowering it again needs a privilege the
    /// service does not have, so it stays for the connection's life.
    enum Slice {
        case standard, short

        /// 0.1 ms, the shortest the kernel takes.
        static let shortNanoseconds: UInt64 = 100_000

        mutating func suit(_ request: HTTPRequest, niced: inout Bool) {
            let wanted: Slice = request.method == "GET" || request.method == "HEAD" ? .short : .standard
            if wanted == .standard && !niced { niced = rules_thread_nice(5) == 0 }
            guard wanted != self else { return }
            _ = rules_thread_slice(wanted == .short ? Self.shortNanoseconds : 0)
            self = wanted
        }
    }

    /// A monotonic clock, in seconds.
    static func seconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    /// Sends all of `bytes`; false when the client is gone.
    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }
}

