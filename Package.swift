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
        // Exclusivity is checked at compile time; the run-time checks on
        // class properties cost ~30% of the engine's instructions (measured
        // with callgrind, docs/PERFORMANCE.md), so release builds drop them.
        .target(
            name: "RulesCore",
            dependencies: ["MemoryHints"],
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        // A prefetch hint, which Swift cannot express (a C header, no code).
        .target(name: "MemoryHints"),
        // Line editing as a pure state machine: keys in, buffer and actions
        // out. The terminal itself (raw mode, reading, drawing) is in `rules`.
        .target(name: "LineEditor"),
        // The thin command-line front end: argument parsing, files, terminal.
        // Release builds on Linux link the Swift runtime statically: every
        // command starts in ~2 ms instead of ~9 ms spent loading and binding
        // shared libraries (docs/PERFORMANCE.md). The flag is needed when
        // compiling too, so that the module links the static libraries' own
        // dependencies. Only FoundationEssentials is used, which keeps ICU's
        // data out of the binary.
        .executableTarget(
            name: "rules", dependencies: ["RulesCore", "LineEditor"],
            swiftSettings: [.unsafeFlags(["-static-stdlib"], .when(platforms: [.linux], configuration: .release))],
            linkerSettings: [.unsafeFlags(["-static-stdlib"], .when(platforms: [.linux], configuration: .release))]
        ),
        .testTarget(name: "RulesCoreTests", dependencies: ["RulesCore", "LineEditor"]),
        // The public API as a user sees it: `import RulesCore`, no @testable.
        .testTarget(name: "RulesAPITests", dependencies: ["RulesCore"]),
    ]
)
