// swift-tools-version:6.0
// An example of embedding the rules engine in a Swift program: it depends on
// the rules package by path and uses only its public API (docs/LIBRARY.md).
import PackageDescription

let package = Package(
    name: "decisions",
    dependencies: [.package(name: "rules", path: "../..")],
    targets: [
        .executableTarget(name: "decisions", dependencies: [.product(name: "RulesCore", package: "rules")]),
    ]
)
