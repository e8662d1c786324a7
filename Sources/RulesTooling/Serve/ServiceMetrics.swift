#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RulesCore

/// Requests by route and status, and their latencies, for `GET /metrics`
/// (the Prometheus text format, version 0.0.4). Recorded by the
/// connections as they answer, under a lock of its own: counting never
/// waits for the engine.
package final class ServiceMetrics: @unchecked Sendable {
    /// Upper bounds of the latency histogram's buckets, in seconds.
    static let buckets: [Double] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    private struct Latencies {
        var counts = [Int](repeating: 0, count: ServiceMetrics.buckets.count)
        var sum = 0.0
        var count = 0
    }

    private let lock = Lock()
    private var requests: [String: Int] = [:]        // "route\u{0}status"
    private var latencies: [String: Latencies] = [:]
    private var open = 0

    package init() {}

    /// The route a request counts under: its path with the ids taken out,
    /// so that the labels stay few.
    package static func route(_ request: HTTPRequest) -> String {
        let s = request.segments
        switch (s.first, s.count) {
        case ("metrics", 1): return "/metrics"
        case ("v1", 2) where ["events", "report", "changes", "health", "policy"].contains(s[1]): return "/v1/" + s[1]
        case ("v1", 3) where s[1] == "people": return "/v1/people/ID"
        case ("v1", 4) where s[1] == "people" && s[3] == "explain": return "/v1/people/ID/explain"
        default: return "other"
        }
    }

    package func record(method: String, route: String, status: Int, seconds: Double) {
        let known = ["GET", "POST", "PUT", "HEAD", "DELETE"].contains(method) ? method : "other"
        let key = "\(known) \(route)"
        lock.locked {
            requests[key + "\u{0}\(status)", default: 0] += 1
            var l = latencies[key] ?? Latencies()
            if let b = Self.buckets.firstIndex(where: { seconds <= $0 }) { l.counts[b] += 1 }
            l.sum += seconds
            l.count += 1
            latencies[key] = l
        }
    }

    /// Counts a connection in unless `limit` are open already.
    package func connectionOpened(limit: Int) -> Bool {
        lock.locked {
            guard open < limit else { return false }
            open += 1
            return true
        }
    }
    package func connectionClosed() { lock.locked { open -= 1 } }

    /// The exposition, with the service's own figures (`state`) first.
    package func text(state: [(name: String, help: String, type: String, value: Int)]) -> String {
        var out = ""
        for m in state {
            out += "# HELP \(m.name) \(m.help)\n# TYPE \(m.name) \(m.type)\n\(m.name) \(m.value)\n"
        }
        lock.locked {
            out += "# HELP rules_connections_open Client connections open now.\n# TYPE rules_connections_open gauge\n"
            out += "rules_connections_open \(open)\n"
            out += "# HELP rules_http_requests_total Requests answered, by method and route, and status.\n"
            out += "# TYPE rules_http_requests_total counter\n"
            for key in requests.keys.sorted() {
                let parts = key.split(separator: "\u{0}")
                let (methodRoute, status) = (parts[0].split(separator: " "), parts[1])
                out += "rules_http_requests_total{method=\"\(methodRoute[0])\",route=\"\(methodRoute[1])\",status=\"\(status)\"} \(requests[key]!)\n"
            }
            out += "# HELP rules_http_request_duration_seconds From a request read whole to its answer ready to send.\n"
            out += "# TYPE rules_http_request_duration_seconds histogram\n"
            for key in latencies.keys.sorted() {
                let l = latencies[key]!
                let parts = key.split(separator: " ")
                let labels = "method=\"\(parts[0])\",route=\"\(parts[1])\""
                var cumulative = 0
                for (b, bound) in Self.buckets.enumerated() {
                    cumulative += l.counts[b]
                    out += "rules_http_request_duration_seconds_bucket{\(labels),le=\"\(bound)\"} \(cumulative)\n"
                }
                out += "rules_http_request_duration_seconds_bucket{\(labels),le=\"+Inf\"} \(l.count)\n"
                out += "rules_http_request_duration_seconds_sum{\(labels)} \(l.sum)\n"
                out += "rules_http_request_duration_seconds_count{\(labels)} \(l.count)\n"
            }
        }
        return out
    }
}
