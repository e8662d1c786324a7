/// How far ahead the per-event paths ask for memory they will need
/// (`rules_prefetch`, Sources/MemoryHints), measured on the reference
/// workload (docs/PERFORMANCE.md, "What the profile showed"). A person's
/// table slot is asked for first; once it is cached their state can be
/// found and is asked for too, a few events before it is used.
enum Prefetch {
    /// Events (lines) ahead whose person's table slot is asked for.
    static let slotDistance = 8
    /// Events ahead whose person's state (row, window entries) is asked for.
    static let stateDistance = 4
    /// The report, in id order: people this far ahead get their row and
    /// where their id's bytes are asked for…
    static let reportFirstDistance = 16
    /// …and, this far ahead (those now cached), their window lists and the
    /// id's bytes.
    static let reportSecondDistance = 8
}
