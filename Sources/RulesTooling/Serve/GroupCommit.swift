#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Group commit: records (bodies, policies) that arrive while the log is
/// being synced are written together and share the next sync. The first
/// request to find no commit under way leads: it takes everything queued,
/// writes it with one `fsync`, then applies each record in the order
/// written, each under the engine's lock (reads interleave between them),
/// and hands each request its answer. Log order and applying order are
/// one order, as a replay needs.
final class GroupCommit: @unchecked Sendable {
    final class Ticket {
        let record: EventLog.Record
        let apply: () -> HTTPResponse
        var answer: HTTPResponse? = nil
        init(_ record: EventLog.Record, _ apply: @escaping () -> HTTPResponse) {
            self.record = record
            self.apply = apply
        }
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let answered = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var queue: [Ticket] = []
    private var leading = false
    private let log: EventLog
    /// Runs each record's `apply` (under the engine's lock), given where
    /// the record ends in the log.
    private let applying: (_ apply: () -> HTTPResponse, _ end: Int) -> HTTPResponse
    /// Syncs and the records they made durable, for the metrics.
    private var counts = (syncs: 0, records: 0)

    var written: (syncs: Int, records: Int) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return counts
    }

    init(log: EventLog, applying: @escaping (_ apply: () -> HTTPResponse, _ end: Int) -> HTTPResponse) {
        self.log = log
        self.applying = applying
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(answered, nil)
    }

    deinit {
        pthread_cond_destroy(answered)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        answered.deallocate()
    }

    /// Makes `record` durable, then runs `apply`; its answer. When the log
    /// cannot take the record: 503 with `refusal` and the reason, and
    /// `apply` does not run.
    func commit(_ record: EventLog.Record, refusal: String, apply: @escaping () -> HTTPResponse) -> HTTPResponse {
        let ticket = Ticket(record, apply)
        pthread_mutex_lock(mutex)
        queue.append(ticket)
        while ticket.answer == nil {
            if leading {
                pthread_cond_wait(answered, mutex)
                continue
            }
            leading = true
            let batch = queue
            queue = []
            pthread_mutex_unlock(mutex)
            var answers: [HTTPResponse]
            do {
                let ends = try log.append(batch.map(\.record))
                answers = zip(batch, ends).map { t, end in applying(t.apply, end) }
            } catch {
                answers = batch.map { _ in .error(503, "\(refusal): \(error)") }
            }
            pthread_mutex_lock(mutex)
            for (t, answer) in zip(batch, answers) { t.answer = answer }
            counts = (counts.syncs + 1, counts.records + batch.count)
            leading = false
            pthread_cond_broadcast(answered)
        }
        pthread_mutex_unlock(mutex)
        return ticket.answer!
    }
}
