import Foundation
import Testing
@testable import RulesCore
@testable import RulesTooling

/// A `redis-server` of a test's own: a free local port, a directory of its
/// own, stopped when the test lets go of it.
final class RedisProcess {
    let port: Int
    let directory: String
    private let extra: [String]
    private(set) var pid: pid_t = 0

    static var available: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server") }

    /// `extra`: more of redis-server's options (`--requirepass`, cluster…).
    init(_ extra: [String] = [], port: Int? = nil) throws {
        self.port = try port ?? Self.freePort()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.extra = extra
        try start()
    }

    /// Starts (again, after `kill9`) on the same port and directory.
    func start() throws {
        let args = ["--port", "\(port)", "--bind", "127.0.0.1", "--dir", directory, "--save", "", "--daemonize", "no",
                    "--logfile", directory + "/log", "--protected-mode", "no"] + extra
        let argv = (["/usr/bin/redis-server"] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        guard posix_spawn(&pid, "/usr/bin/redis-server", &actions, nil, argv, environ) == 0 else { throw TestFailure("cannot start redis-server") }
        for _ in 0..<200 {
            if (try? RedisConnection(host: "127.0.0.1", port: port, timeout: 1)) != nil { return }
            usleep(25_000)
        }
        throw TestFailure("redis-server did not start on \(port): \((try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? "")")
    }

    func kill9() {
        guard pid > 0 else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        pid = 0
    }

    deinit {
        kill9()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// One command, answered (a test's own look at the server).
    func command(_ arguments: [String]) throws -> RESPValue {
        var w = RESPWriter()
        w.command(arguments)
        return try RedisConnection(host: "127.0.0.1", port: port, timeout: 5).exchange(w, replies: 1)[0]
    }

    /// A port free now, whose cluster bus port (10000 above) is free too.
    /// Both below the kernel's ephemeral ports (32768 and up, as Linux
    /// defaults): a port among those could be given to some client's
    /// connection between this check and redis-server's bind (it was, once,
    /// in CI: "Address already in use"), and again before a restart.
    static func freePort() throws -> Int {
        for _ in 0..<100 {
            let port = Int.random(in: 10_000..<22_000)
            if canBind(port) && canBind(port + 10_000) { return port }
        }
        throw TestFailure("no free port for redis-server")
    }

    private static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

/// Three `redis-server`s made one Redis Cluster (no replicas).
final class RedisCluster {
    let nodes: [RedisProcess]

    /// `durable`: each node keeps an append-only file synced at every
    /// write, so that a node killed and started again has its data.
    init(durable: Bool = false) throws {
        nodes = try (0..<3).map { _ in
            try RedisProcess(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"]
                             + (durable ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]))
        }
        let create = try runProcess(URL(fileURLWithPath: "/usr/bin/redis-cli"),
                                    ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" } + ["--cluster-replicas", "0", "--cluster-yes"])
        guard create.status == 0 else { throw TestFailure("redis-cli --cluster create failed: \(create.stdout) \(create.stderr)") }
        for _ in 0..<200 {
            let states = nodes.map { node in (try? node.command(["CLUSTER", "INFO"]))?.text ?? "" }
            if states.allSatisfy({ $0.contains("cluster_state:ok") }) { return }
            usleep(50_000)
        }
        throw TestFailure("the cluster did not become ok")
    }

    /// Waits until every node says the cluster is ok again.
    func waitUntilOk() throws {
        for _ in 0..<300 {
            let states = nodes.map { node in (try? node.command(["CLUSTER", "INFO"]))?.text ?? "" }
            if states.allSatisfy({ $0.contains("cluster_state:ok") }) { return }
            usleep(50_000)
        }
        throw TestFailure("the cluster did not become ok again")
    }

    /// The node id and port of the node that serves `slot`.
    func owner(of slot: Int) throws -> (id: String, node: RedisProcess) {
        for node in nodes {
            let id = try node.command(["CLUSTER", "MYID"]).text!
            guard case .array(let ranges) = try node.command(["CLUSTER", "SLOTS"]) else { continue }
            for case .array(let r) in ranges {
                if case .integer(let from) = r[0], case .integer(let to) = r[1], case .array(let master) = r[2],
                   case .integer(let port) = master[1], from <= slot, slot <= to, port == node.port {
                    return (id, node)
                }
            }
        }
        throw TestFailure("no node serves slot \(slot)")
    }
}

@Suite("Redis", .serialized, .enabled(if: RedisProcess.available, "redis-server is not installed (apt-get install redis-server)"))
struct RedisTests {
    static let policy = Repo.root.appendingPathComponent("rules/citizen.rules").path

    /// What each partition's stream must hold: the stream's lines with a
    /// person, split by the contract's hash, in order.
    static func partitioned(_ lines: [String], among n: Int) -> [[String]] {
        var out = [[String]](repeating: [], count: n)
        for line in lines {
            guard let data = line.data(using: .utf8), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let id = object["citizen"] as? String else { continue }
            out[Partitioning.partition(of: id, among: n)].append(line)
        }
        return out
    }

    /// Every entry of a stream: (id, line), through the client (a cluster
    /// is followed).
    static func entries(_ client: RedisClient, _ stream: String) throws -> [(id: String, line: String)] {
        guard case .array(let all) = try client.run(RedisBatch([(stream, ["XRANGE", stream, "-", "+"])]))[0] else { return [] }
        return all.map { entry in
            guard case .array(let e) = entry, case .array(let fields) = e[1] else { return ("?", "?") }
            #expect(fields.count == 2 && fields[0].text == "line")
            return (e[0].text!, fields[1].text!)
        }
    }

    static func publish(_ args: [String], stdin: String? = nil) throws -> ProcessResult {
        try CLITests.rules(["publish"] + args, stdin: stdin)
    }

    static func write(_ lines: [String]) throws -> String {
        let path = try CLITests.tempDir().appendingPathComponent("events.ndjson").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("rules publish: each line to its person's partition, in order, ids rising across runs; lines with no person named by number; stdin too")
    func publishOne() throws {
        let redis = try RedisProcess()
        let lines = ServeTests.citizenStream(events: 10_000, people: 300, seed: 41)
        let file = try Self.write(lines)
        let address = "redis://127.0.0.1:\(redis.port)/ev"
        let first = try Self.publish(["--to", address, "--partitions", "4", file])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stderr.contains("rules: 10000 lines published to \(address) in 4 partitions in "), "\(first.stderr)")
        let expected = Self.partitioned(lines, among: 4)
        #expect(first.stderr.contains("rules: lines by partition: " + expected.enumerated().map { "{\($0.offset)}: \($0.element.count)" }.joined(separator: ", ")))
        let client = try RedisClient(host: "127.0.0.1", port: redis.port)
        var lastIds: [String] = []
        for k in 0..<4 {
            let got = try Self.entries(client, "ev:{\(k)}")
            #expect(got.map(\.line) == expected[k], "partition \(k)")
            lastIds.append(got.last!.id)
        }
        // A second run appends after the first, from stdin, with bad lines.
        let more = [#"{"citizen":"p1","type":"littering","time":"2027-01-01"}"#, "not json", "", #"{"type":"littering"}"#,
                    #"{"time":"2027-01-02","type":"littering","citizen":"zo\u00e9"}"#, #"{"citizen":7}"#]
        let second = try Self.publish(["--to", address, "--partitions", "4", "-"], stdin: more.joined(separator: "\n") + "\n")
        #expect(second.status == 0)
        #expect(second.stderr.contains("<stdin>:2: not JSON (JSON at byte 0: expected null): no person, so no partition"), "\(second.stderr)")
        #expect(second.stderr.contains(#"<stdin>:4: no "citizen" key: no person, so no partition"#))
        #expect(second.stderr.contains(#"<stdin>:6: "citizen" is not a string: no person, so no partition"#))
        #expect(second.stderr.contains("rules: 2 lines published to \(address) in 4 partitions") && second.stderr.contains("; 3 rejected"), "\(second.stderr)")
        for (line, id) in [(more[0], "p1"), (more[4], "zoé")] {
            let k = Partitioning.partition(of: id, among: 4)
            let got = try Self.entries(client, "ev:{\(k)}")
            guard let entry = got.first(where: { $0.line == line }) else { Issue.record("\(line) is not in partition \(k)"); continue }
            #expect(got.count == expected[k].count + (k == Partitioning.partition(of: "p1", among: 4) && k == Partitioning.partition(of: "zoé", among: 4) ? 2 : 1))
            let (a, b) = (entry.id.split(separator: "-"), lastIds[k].split(separator: "-"))
            #expect(UInt64(a[0])! > UInt64(b[0])!, "ids rise across runs: \(entry.id) after \(lastIds[k])")
        }
    }

    @Test("replies lost with the connection: the lines are sent again, recognised as stored, and each stream holds every line once")
    func lostReplies() throws {
        let redis = try RedisProcess()
        let proxy = try PythonProxy(script: "reply-cutting-proxy.py", [String(redis.port), "1000"])
        let lines = ServeTests.citizenStream(events: 3000, people: 100, seed: 42)
        let result = try Self.publish(["--to", "redis://127.0.0.1:\(proxy.port)/ev", "--partitions", "3", try Self.write(lines)])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("closed the connection; trying again"), "\(result.stderr)")
        #expect(result.stderr.contains("sent again after a lost connection, found stored"), "\(result.stderr)")
        let client = try RedisClient(host: "127.0.0.1", port: redis.port)
        let expected = Self.partitioned(lines, among: 3)
        for k in 0..<3 { #expect(try Self.entries(client, "ev:{\(k)}").map(\.line) == expected[k], "partition \(k)") }
    }

    @Test("a server that goes away mid-stream and comes back: publish waits, then goes on; none there at all: it gives up after --timeout")
    func serverRestart() throws {
        let redis = try RedisProcess(["--appendonly", "yes", "--appendfsync", "always"])
        let lines = ServeTests.citizenStream(events: 20_000, people: 500, seed: 43)
        let feeder = try PipedPublish(["--to", "redis://127.0.0.1:\(redis.port)/ev", "--partitions", "4", "--timeout", "60", "-"])
        try feeder.write(lines[..<10_000].joined(separator: "\n") + "\n")
        usleep(500_000)
        redis.kill9()
        usleep(500_000)
        try redis.start()
        try feeder.write(lines[10_000...].joined(separator: "\n") + "\n")
        let result = feeder.finish()
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("rules: 20000 lines published"), "\(result.stderr)")
        let client = try RedisClient(host: "127.0.0.1", port: redis.port)
        let expected = Self.partitioned(lines, among: 4)
        for k in 0..<4 { #expect(try Self.entries(client, "ev:{\(k)}").map(\.line) == expected[k], "partition \(k)") }
        // Nobody there.
        let port = try RedisProcess.freePort()
        let started = Date()
        let nobody = try Self.publish(["--to", "redis://127.0.0.1:\(port)/ev", "--partitions", "2", "--timeout", "1", "-"], stdin: lines[0] + "\n")
        #expect(nobody.status == 1)
        #expect(nobody.stderr.contains("rules: cannot publish to redis://127.0.0.1:\(port)/ev: cannot connect to 127.0.0.1:\(port): Connection refused"), "\(nobody.stderr)")
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test("a password from a file; none, or a wrong one, is a clear error; a key that is not a stream too; usage errors")
    func passwordsAndMistakes() throws {
        let redis = try RedisProcess(["--requirepass", "s3cret"])
        let dir = try CLITests.tempDir()
        let good = dir.appendingPathComponent("good").path, bad = dir.appendingPathComponent("bad").path
        try "s3cret\n".write(toFile: good, atomically: true, encoding: .utf8)
        try "nope\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let address = "redis://127.0.0.1:\(redis.port)/ev"
        let line = #"{"citizen":"a","type":"littering","time":"2026-01-01"}"# + "\n"
        #expect(try Self.publish(["--to", address, "--partitions", "2", "--password-file", good], stdin: line).status == 0)
        let wrong = try Self.publish(["--to", address, "--partitions", "2", "--password-file", bad], stdin: line)
        #expect(wrong.status == 1 && wrong.stderr.contains("refused the password (--password-file)"), "\(wrong.stderr)")
        let none = try Self.publish(["--to", address, "--partitions", "2"], stdin: line)
        #expect(none.status == 1 && none.stderr.contains("needs a password: give it with --password-file"), "\(none.stderr)")
        let open = try RedisProcess()
        _ = try open.command(["SET", "ev:{1}", "x"])
        let taken = try Self.publish(["--to", "redis://127.0.0.1:\(open.port)/ev", "--partitions", "2"], stdin: line)
        #expect(taken.status == 1 && taken.stderr.contains("ev:{1} exists and is not a stream: choose another NAME"), "\(taken.stderr)")
        for (args, message) in [
            (["--partitions", "2"], "say where to publish: --to redis://HOST:PORT/NAME"),
            (["--to", "redis://127.0.0.1/ev"], "say how many partitions: --partitions N"),
            (["--to", "redis://127.0.0.1/ev", "--partitions", "0"], "--partitions takes a number from 1 to 16384, not 0"),
            (["--to", "redis://127.0.0.1/ev", "--partitions", "16385"], "--partitions takes a number from 1 to 16384, not 16385"),
            (["--to", "redis://127.0.0.1/e{v}", "--partitions", "2"], "the stream name may hold letters"),
            (["--to", "redis://127.0.0.1/ev", "--partitions", "2", "--timeout", "0"], "--timeout takes a number of seconds"),
        ] {
            let r = try Self.publish(args)
            #expect(r.status == 2 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }

    @Test("edges: 1 and 16384 partitions, --timeout 86400, the 20 rejections shown before the rest are counted")
    func edges() throws {
        let redis = try RedisProcess()
        let address = "redis://127.0.0.1:\(redis.port)/edge"
        let line = #"{"citizen":"zo\u00e9","type":"littering","time":"2026-01-01"}"#
        for n in [1, 16384] {
            let r = try Self.publish(["--to", address + "\(n)", "--partitions", "\(n)", "--timeout", "86400", "-"], stdin: line + "\n")
            #expect(r.status == 0 && r.stderr.contains("rules: 1 line published to \(address)\(n) in \(n) partition"), "\(n): \(r.stderr)")
            let k = Partitioning.partition(of: "zoé", among: n)
            guard case .integer(let length) = try redis.command(["XLEN", "edge\(n):{\(k)}"]) else { Issue.record("no stream for \(n)"); continue }
            #expect(length == 1)
        }
        let late = try Self.publish(["--to", address, "--partitions", "2", "--timeout", "86401"])
        #expect(late.status == 2 && late.stderr.contains("--timeout takes a number of seconds from 0 to 86400, not 86401"), "\(late.stderr)")
        let bad = Array(repeating: "not json", count: 25) + [line]
        let shown = try Self.publish(["--to", address, "--partitions", "2", "-"], stdin: bad.joined(separator: "\n") + "\n")
        #expect(shown.status == 0)
        #expect(shown.stderr.contains("<stdin>:20: not JSON") && !shown.stderr.contains("<stdin>:21:"), "\(shown.stderr)")
        #expect(shown.stderr.contains("… and 5 more lines rejected") && shown.stderr.contains("; 25 rejected"), "\(shown.stderr)")
        // A worker of the last of 16384 partitions.
        let w = try RedisWorkerTests.worker(redis.port, "edge16384", "16383/16384", data: ServeTests.dataDirectory())
        let health = try w.curl("/v1/health").body
        #expect(health.contains(#""partitions":[{"partition":16383,"stream":"edge16384:{16383}""#), "\(health)")
    }

    @Test("a three-node cluster: publish spreads partitions over the nodes; the client follows MOVED and ASK while a slot moves")
    func cluster() throws {
        let cluster = try RedisCluster()
        let lines = ServeTests.citizenStream(events: 8000, people: 300, seed: 44)
        let seed = cluster.nodes[1].port
        let result = try Self.publish(["--to", "redis://127.0.0.1:\(seed)/ev", "--partitions", "8", try Self.write(lines)])
        #expect(result.status == 0, "\(result.stderr)")
        let client = try RedisClient(host: "127.0.0.1", port: seed)
        #expect(client.isCluster && client.nodes.count == 3)
        let expected = Self.partitioned(lines, among: 8)
        for k in 0..<8 { #expect(try Self.entries(client, "ev:{\(k)}").map(\.line) == expected[k], "partition \(k)") }
        // Partition 0's slot moves to another node, its stream with it,
        // while the client's map still says the old node.
        let slot = KeySlot.of("ev:{0}")
        let stale = try RedisClient(host: "127.0.0.1", port: seed)  // its map made before the move
        let (fromId, from) = try cluster.owner(of: slot)
        let to = cluster.nodes.first { $0.port != from.port }!
        let toId = try to.command(["CLUSTER", "MYID"]).text!
        #expect(try to.command(["CLUSTER", "SETSLOT", "\(slot)", "IMPORTING", fromId]) == .simple("OK"))
        #expect(try from.command(["CLUSTER", "SETSLOT", "\(slot)", "MIGRATING", toId]) == .simple("OK"))
        #expect(try from.command(["MIGRATE", "127.0.0.1", "\(to.port)", "", "0", "5000", "KEYS", "ev:{0}"]) == .simple("OK"))
        // Mid-move: the old node answers ASK for a key it no longer has.
        let asked = try client.run(RedisBatch([("ev:{0}", ["XADD", "ev:{0}", "*", "line", "during"])]))
        guard case .bulk = asked[0] else { Issue.record("XADD during the move: \(asked[0])"); return }
        for node in cluster.nodes { _ = try node.command(["CLUSTER", "SETSLOT", "\(slot)", "NODE", toId]) }
        // Work done while Redis answers (a worker applies a batch while the
        // next is read): it runs once, though MOVED takes a second round.
        var ran = 0
        let lengths = try stale.runRaw(RedisBatch([("ev:{0}", ["XLEN", "ev:{0}"]), ("ev:{1}", ["XLEN", "ev:{1}"])])) { ran += 1 }
        #expect(ran == 1)
        #expect(lengths == [":\(expected[0].count + 1)\r\n", ":\(expected[1].count)\r\n"].map { Array($0.utf8) })
        // Moved: the old node answers MOVED.
        let moved = try client.run(RedisBatch([("ev:{0}", ["XADD", "ev:{0}", "*", "line", "after"])]))
        guard case .bulk = moved[0] else { Issue.record("XADD after the move: \(moved[0])"); return }
        #expect(try Self.entries(client, "ev:{0}").map(\.line) == expected[0] + ["during", "after"])
        guard case .integer(let n) = try to.command(["XLEN", "ev:{0}"]) else { Issue.record("no stream on the new node"); return }
        #expect(n == expected[0].count + 2)
    }
}

/// A helper script of Tests/Fixtures/redis run with python3; it prints the
/// port it listens on.
final class PythonProxy {
    let port: Int
    private let pid: pid_t

    init(script: String, _ args: [String]) throws {
        let path = Repo.fixtures.appendingPathComponent("redis/\(script)").path
        let (pid, output) = try spawnWithPipe(["/usr/bin/env", "python3", path] + args, childEnd: 1)
        self.pid = pid
        var text: [UInt8] = []
        var byte: UInt8 = 0
        while read(output, &byte, 1) == 1 && byte != 0x0A { text.append(byte) }
        close(output)
        guard let port = Int(String(decoding: text, as: UTF8.self)) else { throw TestFailure("\(script) gave no port") }
        self.port = port
    }

    deinit {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
}

/// `rules publish` reading from a pipe the test writes into, bit by bit.
final class PipedPublish {
    private let pid: pid_t
    private var input: Int32
    private let errPath: String

    init(_ args: [String]) throws {
        guard let binary = Repo.binary else { throw TestFailure("the rules binary was not built") }
        errPath = FileManager.default.temporaryDirectory.appendingPathComponent("publish-\(UUID().uuidString).err").path
        (pid, input) = try spawnWithPipe([binary.path, "publish"] + args, childEnd: 0, stderr: errPath)
    }

    func write(_ text: String) throws {
        let bytes = Array(text.utf8)
        var at = 0
        while at < bytes.count {
            let n = bytes[at...].withUnsafeBytes { Glibc.write(input, $0.baseAddress!, $0.count) }
            guard n > 0 else { throw TestFailure("rules publish stopped reading") }
            at += n
        }
    }

    /// Closes its input; waits for it to end.
    func finish() -> ProcessResult {
        close(input)
        input = -1
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return ProcessResult(status: code, stdout: "", stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    deinit { if input >= 0 { _ = finish() } }
}

/// Workers (`rules serve --source`) against real Redis.
@Suite("Redis workers", .serialized, .enabled(if: RedisProcess.available, "redis-server is not installed (apt-get install redis-server)"))
struct RedisWorkerTests {
    static let policy = RedisTests.policy

    /// A stream whose people get timed denials and windows, so that the
    /// clock the report is evaluated at matters.
    static func stream(_ events: Int, seed: UInt64) -> [String] {
        ServeTests.citizenStream(events: events, people: 400, seed: seed)
    }

    static func worker(_ redis: Int, _ name: String, _ range: String, data: String, extra: [String] = []) throws -> ServeTests.Server {
        try ServeTests.Server([policy, "--data", data, "--source", "redis://127.0.0.1:\(redis)/\(name)", "--partitions", range] + extra)
    }

    /// Waits until every worker has applied every entry of its partitions,
    /// evaluates at `clock`, and has every changed line in Redis.
    static func settle(_ workers: [ServeTests.Server], clock: String, within seconds: Double = 60) throws {
        let deadline = Date().addingTimeInterval(seconds)
        var last = ""
        while Date() < deadline {
            var done = true
            for w in workers {
                let health = try w.curl("/v1/health").body
                last = health
                guard let object = try JSONSerialization.jsonObject(with: Data(health.utf8)) as? [String: Any],
                      let source = object["source"] as? [String: Any], let partitions = source["partitions"] as? [[String: Any]] else {
                    throw TestFailure("health without its partitions: \(health)")
                }
                if object["clock"] as? String != clock || partitions.contains(where: { $0["lag"] as? Int != 0 }) || source["unwritten"] as? Int != 0 { done = false }
                // The lag shown is as of the worker's last look at its
                // streams (once a second): entries added since are counted
                // here, from Redis itself.
                if done, let address = source["redis"] as? String, !(try Self.appliedAll(partitions, redis: address)) { done = false }
            }
            if done { return }
            usleep(100_000)
        }
        throw TestFailure("the workers did not settle at \(clock): \(last)")
    }

    /// Whether each partition's `applied` (in a worker's health) is every
    /// entry ever added to its stream.
    static func appliedAll(_ partitions: [[String: Any]], redis address: String) throws -> Bool {
        let hostPort = address.dropFirst("redis://".count).prefix { $0 != "/" }.split(separator: ":")
        let client = try RedisClient(host: String(hostPort[0]), port: Int(hostPort[1])!)
        for p in partitions {
            guard let stream = p["stream"] as? String, let applied = p["applied"] as? Int else { return false }
            let reply = try client.run(RedisBatch([(stream, ["XINFO", "STREAM", stream])]))[0]
            if case .error(let e) = reply, e.contains("no such key") {
                if applied != 0 { return false }
                continue
            }
            guard case .array(let fields) = reply else { return false }
            var added: Int? = nil
            for i in stride(from: 0, to: fields.count - 1, by: 2) where fields[i].text == "entries-added" {
                if case .integer(let n) = fields[i + 1] { added = Int(n) }
            }
            if added != applied { return false }
        }
        return true
    }

    /// The workers' reports merged, in the report's order (bytes of the ids).
    static func merged(_ workers: [ServeTests.Server]) throws -> String {
        var lines: [String] = []
        for w in workers { lines += try w.curl("/v1/report").body.split(separator: "\n").map(String.init) }
        return lines.sorted { Self.id($0).utf8.lexicographicallyPrecedes(Self.id($1).utf8) }.joined(separator: "\n") + "\n"
    }

    static func id(_ line: String) -> String { String(line.split(separator: "\"")[3]) }

    /// Every line of the partitions' hashes, in the report's order.
    static func hashes(_ client: RedisClient, _ name: String, partitions: Int) throws -> String {
        var lines: [String] = []
        for k in 0..<partitions {
            let key = "\(name):state:{\(k)}"
            guard case .array(let flat) = try client.run(RedisBatch([(key, ["HGETALL", key])]))[0] else { continue }
            for i in stride(from: 0, to: flat.count, by: 2) {
                let (id, line) = (flat[i].text!, flat[i + 1].text!)
                #expect(Self.id(line) == id && Partitioning.partition(of: id, among: partitions) == k, "\(key) \(id)")
                lines.append(line)
            }
        }
        return lines.sorted { Self.id($0).utf8.lexicographicallyPrecedes(Self.id($1).utf8) }.joined(separator: "\n") + "\n"
    }

    static func finalClock(_ lines: [String]) -> String {
        lines.compactMap { line in line.range(of: #""time":""#).map { String(line[$0.upperBound...].prefix(20)) } }.max()!
    }

    @Test("two and four workers with disjoint ranges: merged reports, lookups and the Redis hashes equal one rules run; each lag 0; a post is refused")
    func disjointWorkers() throws {
        let redis = try RedisProcess()
        let lines = Self.stream(12_000, seed: 51)
        let file = try RedisTests.write(lines)
        let expected = try ServeTests.rulesRun([Self.policy], over: lines.joined(separator: "\n") + "\n")
        for (name, ranges) in [("two", ["0-1/4", "2-3/4"]), ("four", ["0/4", "1/4", "2/4", "3/4"])] {
            let published = try RedisTests.publish(["--to", "redis://127.0.0.1:\(redis.port)/\(name)", "--partitions", "4", file])
            #expect(published.status == 0, "\(published.stderr)")
            let workers = try ranges.map { try Self.worker(redis.port, name, $0, data: ServeTests.dataDirectory()) }
            try Self.settle(workers, clock: Self.finalClock(lines))
            #expect(try Self.merged(workers) == expected, "\(name) workers")
            let client = try RedisClient(host: "127.0.0.1", port: redis.port)
            #expect(try Self.hashes(client, name, partitions: 4) == expected, "\(name): the hashes")
            for w in workers { try ServeTests.expectLookupsMatchReport(w, "\(name) workers") }
            let post = try workers[0].curl("/v1/events", ["-X", "POST", "--data-binary", lines[0]])
            #expect(post.status == 409 && post.body.contains("this service reads its events from redis://127.0.0.1:\(redis.port)/\(name)"), "\(post.body)")
        }
    }

    @Test("a worker killed with -9 mid-stream resumes exactly where it stood: no line twice, none lost; then more lines, and a restart of Redis itself; --trim trims only what was applied")
    func killedWorker() throws {
        let redis = try RedisProcess(["--appendonly", "yes", "--appendfsync", "always"])
        let lines = Self.stream(40_000, seed: 52)
        let (first, second) = (Array(lines[..<30_000]), Array(lines[30_000...]))
        let address = "redis://127.0.0.1:\(redis.port)/ev"
        #expect(try RedisTests.publish(["--to", address, "--partitions", "4", try RedisTests.write(first)]).status == 0)
        let (dataA, dataB) = (ServeTests.dataDirectory(), ServeTests.dataDirectory())
        var a: ServeTests.Server? = try Self.worker(redis.port, "ev", "0-1/4", data: dataA, extra: ["--checkpoint-every", "5000", "--trim"])
        let b = try Self.worker(redis.port, "ev", "2-3/4", data: dataB)
        // Killed once it has applied some, not all.
        var applied = 0
        for _ in 0..<400 {
            let health = try a!.curl("/v1/health").body
            applied = Int(health.split(separator: "\"lines\":")[1].prefix { $0.isNumber }) ?? 0
            if applied > 3000 { break }
            usleep(10_000)
        }
        a!.kill9()
        #expect(applied > 0 && applied < 15_000, "killed after \(applied) lines")
        a = try Self.worker(redis.port, "ev", "0-1/4", data: dataA, extra: ["--checkpoint-every", "5000", "--trim"])
        try Self.settle([a!, b], clock: Self.finalClock(first))
        let expectedFirst = try ServeTests.rulesRun([Self.policy], over: first.joined(separator: "\n") + "\n")
        #expect(try Self.merged([a!, b]) == expectedFirst)
        // Redis killed and started again; the second part published after.
        redis.kill9()
        try redis.start()
        #expect(try RedisTests.publish(["--to", address, "--partitions", "4", try RedisTests.write(second)]).status == 0)
        try Self.settle([a!, b], clock: Self.finalClock(lines))
        let expected = try ServeTests.rulesRun([Self.policy], over: lines.joined(separator: "\n") + "\n")
        #expect(try Self.merged([a!, b]) == expected)
        let client = try RedisClient(host: "127.0.0.1", port: redis.port)
        #expect(try Self.hashes(client, "ev", partitions: 4) == expected)
        #expect(a!.stderr.contains("started from") || a!.stderr.contains("replayed"), "\(a!.stderr)")
        // The trimming worker's streams hold at most what Redis trims in
        // whole nodes; the other's are whole.
        let split = RedisTests.partitioned(lines, among: 4)
        for k in 0..<4 {
            guard case .integer(let n) = try redis.command(["XLEN", "ev:{\(k)}"]) else { Issue.record("no stream ev:{\(k)}"); continue }
            if k < 2 { #expect(n < 500 && split[k].count > 5000, "ev:{\(k)} trimmed to \(n) of \(split[k].count)") } else { #expect(n == split[k].count) }
        }
    }

    @Test("a three-node cluster: two workers, one killed with -9 mid-stream and restarted, then a node of the cluster killed and restarted; merged reports and hashes equal one rules run")
    func clusterWorkers() throws {
        let cluster = try RedisCluster(durable: true)
        let all = Self.stream(24_000, seed: 53)
        let lines = Array(all[..<20_000])
        let seed = cluster.nodes[0].port
        #expect(try RedisTests.publish(["--to", "redis://127.0.0.1:\(seed)/ev", "--partitions", "4", try RedisTests.write(lines)]).status == 0)
        let data = ServeTests.dataDirectory()
        var a: ServeTests.Server? = try Self.worker(seed, "ev", "0-1/4", data: data)
        let b = try Self.worker(cluster.nodes[2].port, "ev", "2-3/4", data: ServeTests.dataDirectory())
        usleep(300_000)
        a!.kill9()
        a = try Self.worker(seed, "ev", "0-1/4", data: data)
        try Self.settle([a!, b], clock: Self.finalClock(lines))
        let expected = try ServeTests.rulesRun([Self.policy], over: lines.joined(separator: "\n") + "\n")
        #expect(try Self.merged([a!, b]) == expected)
        #expect(try Self.hashes(try RedisClient(host: "127.0.0.1", port: seed), "ev", partitions: 4) == expected)
        // A node that holds a partition killed with -9 while the workers
        // wait on it, and started again; then the rest of the stream.
        let (_, holder) = try cluster.owner(of: KeySlot.of("ev:{1}"))
        holder.kill9()
        usleep(500_000)
        try holder.start()
        try cluster.waitUntilOk()
        let rest = try RedisTests.publish(["--to", "redis://127.0.0.1:\(seed)/ev", "--partitions", "4", try RedisTests.write(Array(all[20_000...]))])
        #expect(rest.status == 0, "\(rest.stderr)")
        try Self.settle([a!, b], clock: Self.finalClock(all))
        let expectedAll = try ServeTests.rulesRun([Self.policy], over: all.joined(separator: "\n") + "\n")
        #expect(try Self.merged([a!, b]) == expectedAll)
        #expect(try Self.hashes(try RedisClient(host: "127.0.0.1", port: seed), "ev", partitions: 4) == expectedAll)
    }

    @Test("a round trip reads at most 32,768 entries: a backlog of exactly that is one batch, held (more may wait), then a record that only publishes; one more is two batches; all applied either way")
    func batchCap() throws {
        let redis = try RedisProcess()
        let lines = Self.stream(32_769, seed: 77)
        // A full read is held; the next finds nothing (caught up) and logs
        // a record with no lines that publishes — or one line, the last
        // batch, not full, which publishes itself.
        for (name, count, batches) in [("cap", 32_768, 2), ("over", 32_769, 2)] {
            let mine = Array(lines.prefix(count))
            let published = try RedisTests.publish(["--to", "redis://127.0.0.1:\(redis.port)/\(name)", "--partitions", "1", try RedisTests.write(mine)])
            #expect(published.status == 0, "\(published.stderr)")
            // Started once the whole backlog waits, so that the first round
            // trip finds more than it may take.
            let worker = try Self.worker(redis.port, name, "0/1", data: ServeTests.dataDirectory())
            try Self.settle([worker], clock: Self.finalClock(mine))
            #expect(try worker.curl("/v1/report").body + "\n" == ServeTests.rulesRun([Self.policy], over: mine.joined(separator: "\n") + "\n"), "\(name)")
            // Each batch is one record of the log.
            let metrics = try worker.curl("/metrics").body
            #expect(metrics.contains("rules_log_records_total \(batches)\n") && metrics.contains("rules_lines_held 0\n"), "\(name): \(metrics)")
            #expect(try Self.hashes(try RedisClient(host: "127.0.0.1", port: redis.port), name, partitions: 1)
                    == ServeTests.rulesRun([Self.policy], over: mine.joined(separator: "\n") + "\n"), "\(name)")
        }
    }

    @Test("while a backlog is read, each person's line is written once per --write-every, with their latest; 0: after every batch; the hashes equal the report either way")
    func coalescedWrites() throws {
        let redis = try RedisProcess()
        // Four round trips of 32,768 entries (the last not full), 400
        // people: each person's line changes in every batch.
        let lines = Self.stream(3 * 32_768 + 5_000, seed: 78)
        let expected = try ServeTests.rulesRun([Self.policy], over: lines.joined(separator: "\n") + "\n")
        let people = Set(lines.map(Self.id)).count
        var written: [String: Int] = [:]
        for (name, every) in [("slow", "86400"), ("eager", "0")] {
            let published = try RedisTests.publish(["--to", "redis://127.0.0.1:\(redis.port)/\(name)", "--partitions", "1", try RedisTests.write(lines)])
            #expect(published.status == 0, "\(published.stderr)")
            let worker = try Self.worker(redis.port, name, "0/1", data: ServeTests.dataDirectory(), extra: ["--write-every", every])
            try Self.settle([worker], clock: Self.finalClock(lines))
            let client = try RedisClient(host: "127.0.0.1", port: redis.port)
            #expect(try Self.hashes(client, name, partitions: 1) == expected, "\(name)")
            let metrics = try worker.curl("/metrics").body
            #expect(metrics.contains("rules_log_records_total 4\n") && metrics.contains("rules_state_lines_unwritten 0\n"), "\(name): \(metrics)")
            written[name] = metrics.split(separator: "\n").first { $0.hasPrefix("rules_state_lines_written_total ") }.flatMap { Int($0.split(separator: " ")[1]) }
        }
        // Slow: the first three batches' people once the fourth is read
        // (it is not full: caught up), then the fourth's. Eager: each
        // batch's people after it.
        #expect(written["slow"].map { $0 >= people && $0 <= 2 * people } == true, "\(written) for \(people) people")
        #expect(written["eager"].map { $0 > 3 * people } == true, "\(written) for \(people) people")
    }

    /// A start whose log ends with held batches (killed before the record
    /// that publishes them), and nothing more to read: it publishes them
    /// itself — they are looked for, written to Redis, and in lookups.
    @Test("a log that ends with held batches and streams with nothing more: the next start publishes them; the hashes and lookups equal one rules run")
    func startWithHeldBatches() throws {
        let redis = try RedisProcess()
        let lines = Self.stream(3_000, seed: 83)
        #expect(try RedisTests.publish(["--to", "redis://127.0.0.1:\(redis.port)/hl", "--partitions", "1", try RedisTests.write(lines)]).status == 0)
        let client = try RedisClient(host: "127.0.0.1", port: redis.port)
        let ids = try RedisTests.entries(client, "hl:{0}").map(\.id)
        #expect(ids.count == lines.count)
        // The log a worker killed after two held batches leaves.
        let data = ServeTests.dataDirectory()
        let text = try String(contentsOfFile: Self.policy, encoding: .utf8)
        let named = ServedPolicy(paths: [Self.policy], files: [Self.policy: text])
        guard case .success(let compiled) = named.compile(), let program = compiled.program else { throw TestFailure("the test policy does not compile") }
        do {
            let source = StreamSource(address: try RedisAddress(parsing: "redis://127.0.0.1:\(redis.port)/hl"), partitions: 0...0, count: 1)
            let service = try RulesService(policy: ServedPolicy(compiled, paths: [Self.policy]), program: program, data: data, source: source)
            for (from, to) in [(0, 1_000), (1_000, 3_000)] {
                let body = Array(lines[from..<to].map { $0 + "\n" }.joined().utf8)
                let position = StreamPosition(last: try #require(EntryId(bytes: Array(ids[to - 1].utf8))), applied: to)
                _ = service.apply(try service.log(SourcedBatch(positions: [0: position], outsideClock: nil, body: body, publishes: false)))
            }
            #expect(service.heldLines == 3_000 && service.unwritten >= 3_000)
        }
        let worker = try Self.worker(redis.port, "hl", "0/1", data: data, extra: ["--write-every", "86400"])
        try Self.settle([worker], clock: Self.finalClock(lines))
        let expected = try ServeTests.rulesRun([Self.policy], over: lines.joined(separator: "\n") + "\n")
        #expect(try worker.curl("/v1/report").body + "\n" == expected)
        #expect(try Self.hashes(client, "hl", partitions: 1) == expected)
        let first = expected.split(separator: "\n")[0]
        #expect(try worker.curl("/v1/people/\(Self.id(String(first)))").body == first)
        let health = try worker.curl("/v1/health").body
        #expect(health.contains(#""unwritten":0,"held":0,"#), "\(health)")
    }

    @Test("a policy put to a worker: every line it changes is written to the hashes; replayed after kill -9, the lines marked before it are written as the old policy left them, then its changes; the hashes equal the worker's report")
    func policyChange() throws {
        let redis = try RedisProcess()
        let all = Self.stream(12_000, seed: 79)
        // A hundred people have lines only in the first part: after the
        // policy change, nothing but the replay of that part marks them.
        let first = Array(all[..<6_000])
        let rest = all[6_000...].filter { Int(Self.id($0).dropFirst()).map { $0 >= 100 } ?? true }
        let lines = first + rest
        let address = "redis://127.0.0.1:\(redis.port)/pc"
        #expect(try RedisTests.publish(["--to", address, "--partitions", "2", try RedisTests.write(first)]).status == 0)
        let data = ServeTests.dataDirectory()
        var worker: ServeTests.Server? = try Self.worker(redis.port, "pc", "0-1/2", data: data)
        try Self.settle([worker!], clock: Self.finalClock(first))
        let client = try RedisClient(host: "127.0.0.1", port: redis.port)
        let before = try Self.hashes(client, "pc", partitions: 2)
        #expect(before == (try worker!.curl("/v1/report").body + "\n"))
        // Low trust from 950 instead of 900: the lines of everyone between
        // change (flags, and the denials that follow from them).
        let source = try String(contentsOfFile: Self.policy, encoding: .utf8)
        let changed = source.replacingOccurrences(of: "while score < 900 → flag low trust", with: "while score < 950 → flag low trust")
        #expect(changed != source, "the test policy flags low trust below 900")
        let put = try worker!.curl("/v1/policy", ["-X", "PUT", "--data-binary", #"{"files":{"citizen.rules":\#(JSONText.quoted(changed))}}"#])
        #expect(put.status == 200, "\(put.body)")
        try Self.settle([worker!], clock: Self.finalClock(first))
        let after = try Self.hashes(client, "pc", partitions: 2)
        #expect(after == (try worker!.curl("/v1/report").body + "\n"))
        #expect(after != before)
        #expect(try RedisTests.publish(["--to", address, "--partitions", "2", try RedisTests.write(rest)]).status == 0)
        try Self.settle([worker!], clock: Self.finalClock(lines))
        let report = try worker!.curl("/v1/report").body + "\n"
        #expect(try Self.hashes(client, "pc", partitions: 2) == report)
        // Killed (no checkpoint) and the hashes emptied: the replay marks
        // the first part's people under the old policy, then the new
        // policy's changes, then the rest's; all are written once it starts.
        worker!.kill9()
        _ = try client.run(RedisBatch([("pc:state:{0}", ["DEL", "pc:state:{0}"]), ("pc:state:{1}", ["DEL", "pc:state:{1}"])]))
        worker = try Self.worker(redis.port, "pc", "0-1/2", data: data)
        try Self.settle([worker!], clock: Self.finalClock(lines))
        #expect(worker!.stderr.contains("across 1 policy change"), "\(worker!.stderr)")
        #expect(try worker!.curl("/v1/report").body + "\n" == report)
        #expect(try Self.hashes(client, "pc", partitions: 2) == report)
    }

    @Test("a worker stopped with SIGTERM while lines wait to be written: no checkpoint covers them; the next start replays the log and writes them")
    func stopWithLinesWaiting() throws {
        let redis = try RedisProcess()
        // The first batch's people are in no later one: after a start
        // from a checkpoint taken after it, nothing would mark them again.
        let all = Self.stream(3 * 32_768, seed: 80)
        let lines = Array(all[..<32_768]) + all[32_768...].map { $0.replacingOccurrences(of: #"{"citizen":"p"#, with: #"{"citizen":"q"#) }
        #expect(try RedisTests.publish(["--to", "redis://127.0.0.1:\(redis.port)/st", "--partitions", "1", try RedisTests.write(lines)]).status == 0)
        let data = ServeTests.dataDirectory()
        // Full batches, lines written only when caught up: stopped after
        // the first batch, its people's lines are still waiting.
        var worker: ServeTests.Server? = try Self.worker(redis.port, "st", "0/1", data: data, extra: ["--write-every", "86400"])
        var waiting = 0
        for _ in 0..<2000 {
            // Held (not yet looked for) or found and not yet written.
            let metrics = try worker!.curl("/metrics").body
            func gauge(_ name: String) -> Int {
                metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
            }
            waiting = gauge("rules_lines_held") + gauge("rules_state_lines_unwritten")
            if waiting > 0 { break }
            usleep(1_000)
        }
        #expect(worker!.terminate() == 0)
        let stderr = worker!.stderr
        if waiting > 0 && stderr.contains("not yet in Redis") {
            #expect(stderr.contains("no checkpoint written") && !FileManager.default.fileExists(atPath: data + "/checkpoint"), "\(stderr)")
        }
        worker = try Self.worker(redis.port, "st", "0/1", data: data)
        try Self.settle([worker!], clock: Self.finalClock(lines))
        let expected = try ServeTests.rulesRun([Self.policy], over: lines.joined(separator: "\n") + "\n")
        #expect(try worker!.curl("/v1/report").body + "\n" == expected)
        #expect(try Self.hashes(try RedisClient(host: "127.0.0.1", port: redis.port), "st", partitions: 1) == expected)
        #expect(waiting > 0, "stopped before any line waited")
    }

    @Test("a worker whose log cannot grow (a full disk): each batch that does not fit is refused with a warning and read again; given room, it goes on by itself; restarted, from where its log stands; the report and hashes equal one rules run")
    func fullDisk() throws {
        let redis = try RedisProcess()
        let lines = Self.stream(20_000, seed: 81)
        let address = "redis://127.0.0.1:\(redis.port)/fd"
        #expect(try RedisTests.publish(["--to", address, "--partitions", "1", try RedisTests.write(Array(lines[..<500]))]).status == 0)
        let data = ServeTests.dataDirectory()
        // `ulimit -S -f 200`: the log fits the first 500 lines, not the rest
        // (a soft limit: lifted below while it runs).
        var worker: ServeTests.Server? = try ServeTests.Server([Self.policy, "--data", data, "--source", address, "--partitions", "0/1"], fileSizeLimit: 200)
        try Self.settle([worker!], clock: Self.finalClock(Array(lines[..<500])))
        #expect(try RedisTests.publish(["--to", address, "--partitions", "1", try RedisTests.write(Array(lines[500...]))]).status == 0)
        var stderr = ""
        for _ in 0..<100 where !stderr.contains("applying what was read from") {
            usleep(50_000)
            stderr = worker!.stderr
        }
        #expect(stderr.contains("rules: warning: applying what was read from \(address) 0-0/1: the batch was not stored, so not applied: cannot write \(data)/events.log: File too large; reading again in 1 s\n"), "\(stderr)")
        #expect(try worker!.curl("/v1/health").body.contains(#""lines":500,"#))
        // Room again (the limit lifted while it runs): the batches read
        // again from where its log stands are applied, none lost.
        let lifted = try runProcess(URL(fileURLWithPath: "/usr/bin/prlimit"), ["--pid", "\(worker!.pid)", "--fsize=unlimited"])
        #expect(lifted.status == 0, "\(lifted.stderr)")
        try Self.settle([worker!], clock: Self.finalClock(lines))
        let expected = try ServeTests.rulesRun([Self.policy], over: lines.joined(separator: "\n") + "\n")
        #expect(try worker!.curl("/v1/report").body + "\n" == expected)
        let client = try RedisClient(host: "127.0.0.1", port: redis.port)
        #expect(try Self.hashes(client, "fd", partitions: 1) == expected)
        worker!.kill9()
        worker = try Self.worker(redis.port, "fd", "0/1", data: data)
        try Self.settle([worker!], clock: Self.finalClock(lines))
        #expect(try worker!.curl("/v1/report").body + "\n" == expected)
        #expect(try Self.hashes(client, "fd", partitions: 1) == expected)
    }

    @Test("a data directory keeps the partitions it started with; usage errors name what is wrong")
    func claimsAndUsage() throws {
        let redis = try RedisProcess()
        let data = ServeTests.dataDirectory()
        var w: ServeTests.Server? = try Self.worker(redis.port, "ev", "0-1/4", data: data)
        w = nil
        _ = w
        let other = try CLITests.rules(["serve", Self.policy, "--data", data, "--listen", "127.0.0.1:0", "--source", "redis://127.0.0.1:\(redis.port)/ev", "--partitions", "2-3/4"])
        #expect(other.status == 1 && other.stderr.contains("holds the people of redis://127.0.0.1:\(redis.port)/ev 0-1/4, not of redis://127.0.0.1:\(redis.port)/ev 2-3/4"), "\(other.stderr)")
        let plain = try CLITests.rules(["serve", Self.policy, "--data", data, "--listen", "127.0.0.1:0"])
        #expect(plain.status == 1 && plain.stderr.contains("is a worker's, reading redis://127.0.0.1:\(redis.port)/ev 0-1/4"), "\(plain.stderr)")
        for (args, message) in [
            (["--partitions", "0-1/4"], "--partitions goes with --source redis://HOST:PORT/NAME"),
            (["--source", "redis://127.0.0.1/ev"], "--source needs --partitions A-B/N"),
            (["--source", "redis://127.0.0.1/ev", "--partitions", "2-1/4"], "A and B must satisfy 0 ≤ A ≤ B < N"),
            (["--source", "redis://127.0.0.1/ev", "--partitions", "0-4/4"], "A and B must satisfy 0 ≤ A ≤ B < N"),
            (["--source", "redis://127.0.0.1/ev", "--partitions", "0-1"], "--partitions takes A-B/N"),
            (["--source", "redis://127.0.0.1/ev", "--partitions", "0/0"], "N must be from 1 to 16384"),
            (["--password-file", "/dev/null"], "--password-file goes with --source"),
            (["--trim"], "--trim goes with --source"),
            (["--write-every", "1"], "--write-every goes with --source"),
            (["--source", "redis://127.0.0.1/ev", "--partitions", "0/4", "--write-every", "-1"], "--write-every takes seconds from 0 to 86400"),
            (["--source", "redis://127.0.0.1/ev", "--partitions", "0/4", "--write-every", "86401"], "--write-every takes seconds from 0 to 86400"),
        ] {
            let r = try CLITests.rules(["serve", Self.policy, "--data", ServeTests.dataDirectory(), "--listen", "127.0.0.1:0"] + args)
            #expect(r.status == 2 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }
}

/// Starts `argv` with one end of a pipe as its `childEnd` (0: its stdin,
/// 1: its stdout), stderr to `stderr` (else /dev/null); returns its pid and
/// the pipe's other end. The pipe is close-on-exec: no other child (a
/// restarted server) may inherit it, or its reader would never see its end.
func spawnWithPipe(_ argv: [String], childEnd: Int32, stderr: String = "/dev/null") throws -> (pid: pid_t, fd: Int32) {
    var fds: [Int32] = [0, 0]
    pipe(&fds)
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    let (child, parent) = childEnd == 0 ? (fds[0], fds[1]) : (fds[1], fds[0])
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, child, childEnd)
    if childEnd != 1 { posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0) }
    posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    let args = argv.map { strdup($0) } + [nil]
    defer { args.forEach { free($0) } }
    var pid: pid_t = 0
    guard posix_spawn(&pid, argv[0], &actions, nil, args, environ) == 0 else {
        close(child)
        close(parent)
        throw TestFailure("cannot start \(argv[0])")
    }
    close(child)
    return (pid, parent)
}
