//! A panic on any thread ends the process.
//!
//! The server is several threads that only work together: the core's
//! thread, the I/O threads, the history writer, the acceptor. If one of
//! them dies the others carry on as a zombie (the listener still accepts,
//! nobody answers, SIGTERM goes to a core that is gone), so the only safe
//! answer to a panic is to log it and exit non-zero, and let a supervisor
//! restart the server from its durable history (ARCHITECTURE.md,
//! decision 21).

use std::panic::PanicHookInfo;

/// The exit status after a panic (`EX_SOFTWARE` in sysexits.h).
pub(crate) const PANIC_EXIT_CODE: i32 = 70;

/// Installs the hook: the usual panic message, one log line naming the
/// thread, then exit. A hook rather than `panic = "abort"` alone, because
/// it acts the same in debug and release builds (so tests prove what
/// production does) and exits with a status of our choosing instead of a
/// SIGABRT and possibly a core dump.
pub(crate) fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
        report(info);
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            "a thread panicked; exiting with status {PANIC_EXIT_CODE} so a supervisor can restart chatd"
        );
        // `exit`, not unwinding to `main`: the other threads would keep
        // serving. It flushes stdout without blocking on a held lock.
        std::process::exit(PANIC_EXIT_CODE);
    }));
}
