//! What an acceptor does when `accept` fails: one rule for both backends.
//!
//! Out of descriptors (EMFILE, ENFILE) or kernel memory, `accept` fails
//! and leaves the connection in the listener's queue, so the listener
//! stays readable: a readiness loop that just tries again spins at full
//! CPU, and one that logs each failure writes a warning per try (170,000
//! a second were seen). The rule (ARCHITECTURE.md, decision 23): pause
//! accepting for [`ACCEPT_PAUSE`], during which connections wait in the
//! listener's queue (closing some frees descriptors meanwhile), and log
//! the first failure at once, then at most one line per [`LOG_INTERVAL`]
//! with the number of failures since.

use std::io;
use std::time::{Duration, Instant};

/// How long accepting pauses after a failure.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// At most one log line per this interval about failing accepts.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The state of one acceptor's backoff.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// When a failure was last logged.
    last_log: Option<Instant>,
    /// Failures since then that were not logged.
    unlogged: u64,
    /// Failures since accepting last worked.
    failing: u64,
}

impl AcceptBackoff {
    /// `accept` failed at `now` with `error` (neither "would block" nor
    /// "interrupted"): logs if it is time, and says how long to pause
    /// accepting. A connection the peer reset before we took it is no
    /// reason to stop: zero.
    pub fn failed(&mut self, error: &io::Error, now: Instant) -> Duration {
        if error.kind() == io::ErrorKind::ConnectionAborted {
            return Duration::ZERO;
        }
        self.failing += 1;
        let due = self
            .last_log
            .is_none_or(|last| now.duration_since(last) >= LOG_INTERVAL);
        if due {
            tracing::warn!(
                %error,
                since_last_line = self.unlogged,
                "accept failed; pausing accepts for {ACCEPT_PAUSE:?} (at most one such line per {LOG_INTERVAL:?})"
            );
            self.last_log = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        ACCEPT_PAUSE
    }

    /// `accept` worked: after failures, say so once.
    pub fn succeeded(&mut self) {
        if self.failing > 0 {
            tracing::info!(failures = self.failing, "accepting again");
            self.failing = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::other("Too many open files")
    }

    #[test]
    fn failures_pause_and_are_logged_once_per_interval() {
        let mut backoff = AcceptBackoff::default();
        let start = Instant::now();
        assert_eq!(backoff.failed(&emfile(), start), ACCEPT_PAUSE);
        assert_eq!(backoff.last_log, Some(start));
        for i in 1..1_000 {
            let now = start + Duration::from_millis(i);
            assert_eq!(backoff.failed(&emfile(), now), ACCEPT_PAUSE);
        }
        assert_eq!(backoff.last_log, Some(start), "not logged again");
        assert_eq!(backoff.unlogged, 999);
        let later = start + LOG_INTERVAL;
        backoff.failed(&emfile(), later);
        assert_eq!(backoff.last_log, Some(later));
        assert_eq!(backoff.unlogged, 0);
    }

    #[test]
    fn a_connection_reset_before_accept_does_not_pause() {
        let mut backoff = AcceptBackoff::default();
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(backoff.failed(&aborted, Instant::now()), Duration::ZERO);
        assert_eq!(backoff.failing, 0);
    }
}
