// The reference workload, written here: the event mix, fields, value
// choices and the time spread of the shared generator's stream
// (../shared/bench/gen_events.py stays the yardstick outside checks use),
// with our own deterministic random numbers.
//
//   generate EVENTS PEOPLE [SEED] [--ids] [--retractions N] > events.ndjson
//
// `--ids` gives every event an id (`"id":"e<line>"`); `--retractions N`
// (with ids) adds about N retraction lines, each taking back a random event
// of the last 30 days of the stream, at the time of the line before it
// (docs/LANGUAGE.md, "Corrections"; scripts/bench-corrections.sh).
#if canImport(Glibc)
import Glibc
#endif

struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func pick<T>(_ xs: [T]) -> T { xs[below(xs.count)] }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

let args = CommandLine.arguments
guard args.count >= 3, let events = Int(args[1]), let people = Int(args[2]) else {
    fputs("usage: generate EVENTS PEOPLE [SEED] [--ids] [--retractions N]\n", stderr)
    exit(2)
}
var rng = SplitMix(state: UInt64(args.count > 3 ? Int(args[3]) ?? 1 : 1))
let withIds = args.contains("--ids") || args.contains("--retractions")
let retractions = args.firstIndex(of: "--retractions").flatMap { $0 + 1 < args.count ? Int(args[$0 + 1]) : nil } ?? 0
/// Each event's person, for retractions (which name the target's person).
var personOf: [Int] = []

// (type, weight): the mix of the reference stream.
let kinds: [(String, Int)] = [
    ("speeding", 30), ("parking", 20), ("unpaid_debt", 5), ("debt_paid", 4), ("volunteer", 10),
    ("jaywalking", 8), ("blood_donation", 3), ("late_payment", 8), ("littering", 7), ("tax_filed", 5),
]
let totalWeight = kinds.reduce(0) { $0 + $1.1 }

func fields(_ kind: String) -> String {
    switch kind {
    case "speeding": return ",\"speed\":\(40 + rng.below(101)),\"limit\":\(rng.pick([30, 50, 60, 80, 100]))"
    case "parking": return ",\"zone\":\"\(rng.pick(["street", "street", "street", "disabled", "bus"]))\""
    case "unpaid_debt": return ",\"amount\":\(rng.pick([50, 200, 1500, 9000, 12000, 40000]))"
    case "debt_paid": return ",\"amount\":\(10 + rng.below(49_991))"
    case "volunteer": return ",\"hours\":\(rng.pick(["1", "2", "2.5", "4", "8", "12"]))"
    case "late_payment": return ",\"days\":\(1 + rng.below(90))"
    case "tax_filed": return ",\"on_time\":\(rng.unit() < 0.8 ? "true" : "false")"
    default: return ""
    }
}

func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

/// `2026-01-05T08:00:00Z` from seconds since the epoch (days-from-civil
/// inverse, proleptic Gregorian).
func stamp(_ t: Int) -> String {
    let days = t / 86_400, rem = t % 86_400
    let z = days + 719_468, era = z / 146_097, doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9
    let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
    return "\(y)-\(two(m))-\(two(d))T\(two(rem / 3600)):\(two(rem / 60 % 60)):\(two(rem % 60))Z"
}

let start = 1_767_225_600  // 2026-01-01T00:00:00Z; the stream spans 2026
let step = Double(365 * 86_400) / Double(max(events, 1))
var out = ""
out.reserveCapacity(1 << 20)
for i in 0..<events {
    var r = rng.below(totalWeight)
    var kind = kinds[0].0
    for (name, weight) in kinds {
        if r < weight { kind = name; break }
        r -= weight
    }
    let person = rng.below(people)
    let citizen = "c" + String(person).leftPadded(7)
    let time = stamp(start + Int(Double(i) * step))
    let id = withIds ? ",\"id\":\"e\(i)\"" : ""
    out += "{\"citizen\":\"\(citizen)\",\"type\":\"\(kind)\",\"time\":\"\(time)\"\(id)\(fields(kind))}\n"
    if retractions > 0 {
        personOf.append(person)
        if rng.below(events) < retractions {
            // An event of the last 30 days (the stream's own pace).
            let back = max(1, Int(Double(30 * 86_400) / step))
            let target = max(0, i - rng.below(min(back, i + 1)))
            let whose = "c" + String(personOf[target]).leftPadded(7)
            out += "{\"citizen\":\"\(whose)\",\"type\":\"retract\",\"target\":\"e\(target)\",\"time\":\"\(time)\",\"reason\":\"benchmark\"}\n"
        }
    }
    if out.utf8.count > 1 << 20 {
        fputs(out, stdout)
        out.removeAll(keepingCapacity: true)
    }
}
fputs(out, stdout)

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
