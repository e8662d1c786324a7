// swift-tools-version:6.0
// The toolchain only: no package dependencies (a user requirement).
import PackageDescription

let package = Package(
    name: "rules",
    products: [
        .library(name: "RulesCore", targets: ["RulesCore"]),
        .executable(name: "rules", targets: ["rules"]),
    ],
    targets: [
        // The language and the engine: source → tokens → AST → checked
        // program → rule graph → engine → report. No terminal I/O lives here.
        .target(name: "RulesCore"),
        // Line editing as a pure state machine: keys in, buffer and actions
        // out. The terminal itself (raw mode, reading, drawing) is in `rules`.
        .target(name: "LineEditor"),
        // The thin command-line front end: argument parsing, files, terminal.
        .executableTarget(name: "rules", dependencies: ["RulesCore", "LineEditor"]),
        .testTarget(name: "RulesCoreTests", dependencies: ["RulesCore", "LineEditor"]),
    ]
)
