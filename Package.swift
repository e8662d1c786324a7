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
        // program → rule graph → engine → report, and the public API. This is
        // what an embedder links; no terminal I/O and no tools live here.
        // No unsafe flags on any library target, so that the package can be
        // a versioned dependency: the hot path's own stored properties opt out
        // of run-time exclusivity checks one by one (docs/ARCHITECTURE.md,
        // "The fast path"; the cost measured in docs/PERFORMANCE.md).
        .target(name: "RulesCore", dependencies: ["MemoryHints"]),
        // The tools on top of the core: the formatter, the language server,
        // the REPL session, the test runner, the explanation page and the
        // graph. The `rules` command links it; an embedder need not.
        .target(name: "RulesTooling", dependencies: ["RulesCore"]),
        // What the fuzz targets check (scripts/fuzz.sh), as plain functions
        // that the unit tests replay on every finding.
        .target(name: "RulesFuzzChecks", dependencies: ["RulesCore", "RulesTooling"]),
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
            name: "rules", dependencies: ["RulesCore", "RulesTooling", "LineEditor", "MemoryHints"],
            swiftSettings: [.unsafeFlags(["-static-stdlib"], .when(platforms: [.linux], configuration: .release))],
            linkerSettings: [.unsafeFlags(["-static-stdlib"], .when(platforms: [.linux], configuration: .release))]
        ),
        .testTarget(name: "RulesCoreTests", dependencies: ["RulesCore", "RulesTooling", "RulesFuzzChecks", "LineEditor"]),
        // The public API as a user sees it: `import RulesCore`, no @testable.
        .testTarget(name: "RulesAPITests", dependencies: ["RulesCore"]),
    ]
)
