// swift-tools-version:5.10
// Benchmark tools, never part of the product: a generator of the reference
// workload, a hand-written Swift program for the reference policy that
// `rules run` is measured against, and the library's typed path
// (`RulesEngine.apply(_:)`) on the same events (scripts/bench.sh runs them).
import PackageDescription

let package = Package(
    name: "benchmarks",
    dependencies: [.package(name: "rules", path: "..")],
    targets: [
        .executableTarget(name: "generate", swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        .target(name: "Hints"),
        .executableTarget(name: "baseline", dependencies: ["Hints"], swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        .executableTarget(name: "serve-load", swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        .executableTarget(name: "library", dependencies: [.product(name: "RulesCore", package: "rules")]),
    ]
)
