import RulesCore
import RulesTooling
#if canImport(Glibc)
import Glibc
#endif

/// `rules publish --to redis://HOST:PORT/NAME --partitions N [FILE|-]`
enum PublishCommand {
    static let help = """
    usage: rules publish --to redis://HOST:PORT/NAME --partitions N [FILE|-]
                         [--person-key NAME] [--password-file F] [--timeout SECONDS]

    Appends each line of an event stream (NDJSON; FILE, or standard input
    when it is - or left out) to the Redis stream NAME:{K} of its person's
    partition K, as the entry field `line`, in order. K is the FNV-1a
    32-bit hash of the person's id modulo N, so every line of one person
    goes to one stream, in the order given. Workers read the streams back
    (`rules serve POLICY --source redis://HOST:PORT/NAME --partitions A-B/N`;
    docs/SCALING.md).

    HOST:PORT is one Redis server or any node of a Redis Cluster. Lines go
    many to a round trip; a node that restarts is waited for, and a line
    sent again after a lost connection is never stored twice (each entry's
    id is chosen here, and a repeat is recognised).

    options:
      --to redis://HOST:PORT/NAME
                        where to publish (NAME: letters, digits, _ - . :)
      --partitions N    how many partitions the people are split into
                        (1 to 16384); the workers must be told the same N
      --person-key NAME the key that names the person (default: citizen)
      --password-file F the Redis password (AUTH), the file's first line
      --timeout SECONDS how long to keep trying a Redis node that cannot be
                        reached before giving up (default 30)
      -h, --help        show this help

    A line that names no person (not a JSON object, no id, an id that is
    not a string) cannot be partitioned: it is not published, and each is
    reported on stderr with its line number. A summary goes to stderr; on a
    terminal, the lines published so far are counted as it goes.

    exit status: 0 every line with a person was published (even with lines
    rejected), 1 Redis could not be reached or refused a line, or the input
    cannot be read, 2 usage error.
    """

    /// Rejections shown one by one before they are only counted.
    static let shownRejections = 20

    static func run(_ args: [String]) -> Int32 {
        let (arguments, code) = Arguments.forCommand("publish", args, spec: .init(options: ["--to", "--partitions", "--person-key", "--password-file", "--timeout"]),
                                                     help: help)
        guard let parsed = arguments else { return code }
        guard let to = parsed.values["--to"] else { return Main.usageError("say where to publish: --to redis://HOST:PORT/NAME", command: "publish") }
        let address: RedisAddress
        do { address = try RedisAddress(parsing: to) } catch { return Main.usageError("--to: \(error)", command: "publish") }
        guard let text = parsed.values["--partitions"] else { return Main.usageError("say how many partitions: --partitions N", command: "publish") }
        guard let partitions = Int(text), (1...KeySlot.count).contains(partitions) else {
            return Main.usageError("--partitions takes a number from 1 to \(KeySlot.count), not \(text)", command: "publish")
        }
        guard parsed.positionals.count <= 1 else { return Main.usageError("give one stream to publish (a file, or - for stdin)", command: "publish") }
        var options = RedisClient.Options()
        if let text = parsed.values["--timeout"] {
            guard let s = Double(text), s > 0, s <= 86_400 else { return Main.usageError("--timeout takes a number of seconds from 0 to 86400, not \(text)", command: "publish") }
            options.retryFor = s
        }
        let personKey: PersonKey
        switch PersonKey.named(parsed.values["--person-key"] ?? "citizen") {
        case .success(let key): personKey = key
        case .failure(let e): return Main.usageError("--person-key: \(e)", command: "publish")
        }
        if let path = parsed.values["--password-file"] {
            guard let password = ServeCommand.readSecret(path).map({ String(decoding: $0, as: UTF8.self) }) else {
                Terminal.writeErr("rules: --password-file \(path): the file cannot be read, or its first line is empty\n")
                return ExitCode.failure
            }
            options.password = password
        }
        guard let (fd, name) = Terminal.openEvents(parsed.positionals.first ?? "-") else { return ExitCode.failure }
        defer { if fd != 0 { close(fd) } }
        options.onRetry = { Terminal.writeErr("rules: \($0)\n") }
        return publish(LineReader(fd: fd), name: name, to: address, partitions: partitions, personKey: personKey, options: options)
    }

    private static func publish(_ reader: LineReader, name: String, to address: RedisAddress, partitions: Int, personKey: PersonKey,
                                options: RedisClient.Options) -> Int32 {
        let started = Connection.seconds()
        let publisher: StreamPublisher
        do {
            let client = try RedisClient(host: address.host, port: address.port, options: options)
            publisher = try StreamPublisher(client: client, address: address, partitions: partitions, personKey: personKey)
        } catch {
            Terminal.writeErr("rules: cannot publish to \(address): \(error)\n")
            return ExitCode.failure
        }
        let progress = Terminal.isTerminal(2)
        var rejected = 0
        func reject(_ line: Int, _ reason: String) {
            rejected += 1
            if rejected <= shownRejections { Terminal.writeErr("\(name):\(line): \(reason)\n") }
        }
        do {
            while let line = reader.next() {
                if let length = reader.skippedLength {
                    reject(reader.lineNumber, LineReader.tooLong(length))
                    continue
                }
                if let r = try publisher.add(line, number: reader.lineNumber) { reject(r.line, r.reason) }
                if progress && reader.lineNumber % 1_000_000 == 0 {
                    Terminal.writeErr("\r\(reader.lineNumber) lines read, \(publisher.summary.published) published…")
                }
            }
            if let error = reader.readError {
                Terminal.writeErr("rules: cannot read \(name): \(error); the lines before it were published\n")
                _ = try publisher.finish()
                return ExitCode.failure
            }
            let summary = try publisher.finish()
            if progress { Terminal.writeErr("\r\u{1B}[K") }
            report(summary, rejected, to: address, seconds: Connection.seconds() - started)
            return ExitCode.ok
        } catch {
            if progress { Terminal.writeErr("\n") }
            Terminal.writeErr("rules: publishing to \(address) stopped: \(error)\n"
                              + "rules: \(publisher.summary.published) lines were stored before it (the streams hold them in order)\n")
            return ExitCode.failure
        }
    }

    private static func report(_ s: StreamPublisher.Summary, _ rejected: Int, to address: RedisAddress, seconds: Double) {
        if rejected > shownRejections { Terminal.writeErr("… and \(rejected - shownRejections) more lines rejected\n") }
        let rate = seconds > 0 ? Int(Double(s.published) / seconds) : 0
        let counts = s.byPartition.enumerated().map { "{\($0.offset)}: \($0.element)" }.joined(separator: ", ")
        var line = "rules: \(s.published) line\(s.published == 1 ? "" : "s") published to \(address) in \(s.byPartition.count) partition\(s.byPartition.count == 1 ? "" : "s")"
            + " in \(String(format1(seconds))) s (\(rate) lines/s)"
        if rejected > 0 { line += "; \(rejected) rejected" }
        if s.repeats > 0 { line += "; \(s.repeats) sent again after a lost connection, found stored" }
        Terminal.writeErr(line + "\n")
        if s.byPartition.count <= 64 { Terminal.writeErr("rules: lines by partition: \(counts)\n") }
    }

    private static func format1(_ x: Double) -> String {
        let tenths = Int((x * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}

