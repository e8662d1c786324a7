// libFuzzer entry point for `scripts/fuzz.sh`, linked against the package's
// library modules built with `-sanitize=fuzzer,address` (it reaches their
// `package` declarations). `RULES_FUZZ_TARGET` says what the bytes are —
// `policy`, `stream`, `engine`, `http` or `resp` — and `FuzzChecks` (its own module, so the
// unit tests replay every finding) says what must hold. A crash, a
// sanitizer report or a broken promise stops the fuzzer with the input.
import Foundation
import RulesCore
import RulesFuzzChecks

private let target = ProcessInfo.processInfo.environment["RULES_FUZZ_TARGET"] ?? "policy"

/// The repository's shipped policies, read once.
private let shipped: [String] = {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    return ["citizen", "moderation", "telematics"].map {
        (try? String(contentsOf: repo.appendingPathComponent("rules/\($0).rules"), encoding: .utf8)) ?? ""
    }
}()

private let citizen: Program = PolicyCompiler.compile(shipped[0]).program!

@_cdecl("LLVMFuzzerTestOneInput")
public func rulesFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let broken: String?
    switch target {
    case "policy": broken = FuzzChecks.policy(bytes)
    case "stream": broken = FuzzChecks.stream(bytes, program: citizen)
    case "engine": broken = FuzzChecks.engine(bytes, policies: shipped)
    case "http": broken = FuzzChecks.http(bytes)
    case "resp": broken = FuzzChecks.resp(bytes)
    default: fatalError("RULES_FUZZ_TARGET is policy, stream, engine, http or resp, not \(target)")
    }
    if let broken { fatalError("broken promise: \(broken)") }
    return 0
}
