#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Group commit: records (bodies, policies) that arrive while the log is
/// being synced are written together and share the next sync. Two roles
/// are taken by the requests' own threads, whichever finds one free (a
/// thread waits on its own request, woken when its answer is set or when
/// a role is handed to it): the
/// writer takes everything queued and writes it with one `fsync`; the
/// applier applies what is durable, one record at a time in the order
/// written, each under the engine's lock (reads interleave between them),
/// and answers each as soon as it is applied (its client can send the next
/// body while the rest are applied); once its own record is applied the
/// thread returns to its client and hands the role on. The two run at once — the next
/// records are synced while the last are applied — but a record is never
/// applied before its own sync, and log order and applying order are one
/// order, as a replay needs.
final class GroupCommit: @unchecked Sendable {
    final class Ticket {
        let record: EventLog.Record
        let apply: () -> HTTPResponse
        /// The answer's reason when the log cannot take it.
        let refusal: String
        var answer: HTTPResponse? = nil
        /// Where the record ends in the log, once it is durable.
        var end = 0
        var isDurable = false
        /// Its thread waits only until it is durable (`write`): woken then.
        var writeOnly = false
        /// Where its thread waits (with the group commit's mutex): woken
        /// when its answer is set, or when a role it can take is free.
        let woken = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        init(_ record: EventLog.Record, refusal: String, _ apply: @escaping () -> HTTPResponse) {
            self.record = record
            self.refusal = refusal
            self.apply = apply
            pthread_cond_init(woken, nil)
        }
        deinit {
            pthread_cond_destroy(woken)
            woken.deallocate()
        }
        func wake() { pthread_cond_signal(woken) }
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Records not yet written, and records durable but not yet applied.
    private var queued: [Ticket] = []
    private var durable: [Ticket] = []
    private var writing = false
    private var applying = false
    private let log: EventLog
    /// Runs each record's `apply` (under the engine's lock), given where
    /// the record ends in the log.
    private let applyingRecord: (_ apply: () -> HTTPResponse, _ end: Int) -> HTTPResponse
    /// Syncs and the records they made durable, for the metrics.
    private var counts = (syncs: 0, records: 0)

    var written: (syncs: Int, records: Int) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return counts
    }

    init(log: EventLog, applying: @escaping (_ apply: () -> HTTPResponse, _ end: Int) -> HTTPResponse) {
        self.log = log
        self.applyingRecord = applying
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Makes `record` durable, then runs `apply`; its answer. When the log
    /// cannot take the record: 503 with `refusal` and the reason, and
    /// `apply` does not run.
    func commit(_ record: EventLog.Record, refusal: String, apply: @escaping () -> HTTPResponse) -> HTTPResponse {
        let ticket = Ticket(record, refusal: refusal, apply)
        pthread_mutex_lock(mutex)
        queued.append(ticket)
        pthread_mutex_unlock(mutex)
        return finish(ticket)
    }

    /// The first half of `commit`, for a thread that reads ahead (a
    /// worker's reader): makes `record` durable, taking the writer's role
    /// when it is free, and returns without applying it — `finish` applies
    /// it, on another thread, while this one reads and writes the next.
    /// Another thread's `finish` may apply it first (a policy put behind
    /// it): log order stays applying order. When the log cannot take it,
    /// the refusal (503) instead.
    func write(_ record: EventLog.Record, refusal: String, apply: @escaping () -> HTTPResponse) -> Result<Ticket, Refused> {
        let ticket = Ticket(record, refusal: refusal, apply)
        ticket.writeOnly = true
        pthread_mutex_lock(mutex)
        queued.append(ticket)
        while ticket.answer == nil && !ticket.isDurable {
            if !writing { write(for: ticket) } else { pthread_cond_wait(ticket.woken, mutex) }
        }
        ticket.writeOnly = false
        pthread_mutex_unlock(mutex)
        // Durable, it may be applied already (by a thread behind it).
        if !ticket.isDurable, let answer = ticket.answer { return .failure(Refused(answer: answer)) }
        return .success(ticket)
    }

    struct Refused: Error { let answer: HTTPResponse }

    /// Waits for `ticket`'s answer (taking whichever role is free), once
    /// it is applied — or refused, when it was not yet durable.
    func finish(_ ticket: Ticket) -> HTTPResponse {
        pthread_mutex_lock(mutex)
        while ticket.answer == nil {
            switch role(for: ticket) {
            case .writer?: write(for: ticket)
            case .applier?: applyDurable(for: ticket)
            case nil: pthread_cond_wait(ticket.woken, mutex)
            }
        }
        pthread_mutex_unlock(mutex)
        return ticket.answer!
    }

    private enum Role { case writer, applier }

    /// The role the thread waiting on `ticket` takes now. A durable record
    /// waits only to be applied: its thread does not write records queued
    /// after it meanwhile (their own threads do).
    private func role(for ticket: Ticket) -> Role? {
        guard ticket.isDurable else { return nextRole() }
        return !applying && !durable.isEmpty ? .applier : nil
    }

    /// The role that is free and has work, the writer's first.
    private func nextRole() -> Role? {
        if !writing && !queued.isEmpty { return .writer }
        if !applying && !durable.isEmpty { return .applier }
        return nil
    }

    /// After `ticket`'s thread left a role: a thread is woken for each role
    /// that is free and has work, but the one that thread takes next (none
    /// once its answer is set). Only those threads wake, and the ones whose
    /// answers were set: not every waiting thread at every step.
    private func handOff(from ticket: Ticket) {
        // A thread that only writes takes no role once its record is durable.
        let next = ticket.answer == nil && !(ticket.writeOnly && ticket.isDurable) ? nextRole() : nil
        if !writing && next != .writer, let owner = queued.first(where: { $0 !== ticket }) { owner.wake() }
        if !applying && next != .applier, let owner = durable.first(where: { $0 !== ticket }) { owner.wake() }
    }

    /// The writer: everything queued, written and synced (the mutex held on
    /// entry and on return, not while writing).
    private func write(for ticket: Ticket) {
        writing = true
        let batch = queued
        queued = []
        pthread_mutex_unlock(mutex)
        let outcome = Result { try log.append(batch.map(\.record)) }
        pthread_mutex_lock(mutex)
        switch outcome {
        case .success(let ends):
            for (written, end) in zip(batch, ends) {
                (written.end, written.isDurable) = (end, true)
                if written.writeOnly && written !== ticket { written.wake() }
            }
            durable += batch
            counts = (counts.syncs + 1, counts.records + batch.count)
        case .failure(let error):
            for refused in batch {
                refused.answer = .error(503, "\(refused.refusal): \(error)")
                if refused !== ticket { refused.wake() }
            }
        }
        writing = false
        handOff(from: ticket)
    }

    /// The applier: durable records, applied in order and answered, up to
    /// and including the thread's own (the mutex held on entry and on
    /// return, not while applying).
    private func applyDurable(for ticket: Ticket) {
        applying = true
        // One record at a time, in log order, each answered once applied;
        // after its own, the thread goes back to its client and hands the
        // role on to the owner of the next.
        while !durable.isEmpty && ticket.answer == nil {
            let next = durable.removeFirst()
            pthread_mutex_unlock(mutex)
            let answer = applyingRecord(next.apply, next.end)
            pthread_mutex_lock(mutex)
            next.answer = answer
            if next !== ticket { next.wake() }
        }
        applying = false
        handOff(from: ticket)
    }
}
