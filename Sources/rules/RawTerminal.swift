#if canImport(Glibc)
import Glibc
#endif

/// Raw mode for the line editor: keys arrive one by one, nothing is echoed,
/// Ctrl-C is a key rather than a signal. The original settings are restored
/// on every way out — normal exit, and the signals that end a process (the
/// handler restores the terminal, then lets the signal do its work).
enum RawTerminal {
    /// The settings to restore, readable from a signal handler. Heap memory
    /// that is never freed: AddressSanitizer saw `tcgetattr` overflow a
    /// `termios` held in a static variable (the struct as Swift lays it out
    /// is smaller than what glibc writes).
    nonisolated(unsafe) private static let saved: UnsafeMutablePointer<termios> = {
        let p = UnsafeMutablePointer<termios>.allocate(capacity: 1)
        UnsafeMutableRawPointer(p).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<termios>.size)
        return p
    }()
    nonisolated(unsafe) private static var active = false

    static let fatalSignals: [Int32] = [SIGTERM, SIGHUP, SIGQUIT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP]

    /// Output processing (OPOST) stays on, so `\n` still starts a new line.
    static func enable() -> Bool {
        guard tcgetattr(0, saved) == 0 else { return false }
        var raw = saved.pointee
        raw.c_lflag &= ~tcflag_t(ECHO | ICANON | ISIG | IEXTEN)
        raw.c_iflag &= ~tcflag_t(IXON | ICRNL | BRKINT | INPCK | ISTRIP)
        raw.c_cc.6 = 1   // VMIN: one byte is enough
        raw.c_cc.5 = 0   // VTIME: no timeout
        guard tcsetattr(0, TCSAFLUSH, &raw) == 0 else { return false }
        active = true
        for sig in fatalSignals {
            signal(sig) { sig in
                RawTerminal.restore()
                signal(sig, SIG_DFL)
                raise(sig)
            }
        }
        return true
    }

    static func restore() {
        guard active else { return }
        _ = tcsetattr(0, TCSAFLUSH, saved)
        active = false
    }

    /// Reads what is available (at least one byte); nil at end of input.
    /// With `timeoutMs`, returns [] if nothing came in time.
    static func read(timeoutMs: Int32? = nil) -> [UInt8]? {
        if let timeoutMs {
            var fds = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
            if poll(&fds, 1, timeoutMs) == 0 { return [] }
        }
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress!, 256) }
            if n > 0 { return Array(buffer[0..<n]) }
            if n < 0 && errno == EINTR { continue }
            return nil
        }
    }

    /// Columns of the terminal, or 80.
    static var width: Int {
        var size = winsize()
        return ioctl(1, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) : 80
    }
}
