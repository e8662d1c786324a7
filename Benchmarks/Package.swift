// swift-tools-version:5.10
// Benchmark tools, never part of the product: a generator of the reference
// workload, and a hand-written Swift program for the reference policy that
// `rules run` is measured against (scripts/bench.sh runs both).
import PackageDescription

let package = Package(
    name: "benchmarks",
    targets: [
        .executableTarget(name: "generate", swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        .target(name: "Hints"),
        .executableTarget(name: "baseline", dependencies: ["Hints"], swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
    ]
)
