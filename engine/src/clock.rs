//! Where the server's time comes from.
//!
//! Production uses [`SystemClock`]. Tests use [`ManualClock`]: time only
//! moves when the test advances it, and advancing wakes the core's thread
//! so due timers fire, exactly as `advance` does in the memory driver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current monotonic instant.
    fn now(&self) -> Instant;

    /// Milliseconds since the Unix epoch, now.
    fn unix_ms(&self) -> u64;

    /// How long the core's thread may sleep before `deadline` is due.
    /// `None` means: sleep until woken (a manual clock only moves when told).
    fn sleep_until(&self, deadline: Instant) -> Option<Duration>;

    /// Registers a callback run whenever time jumps (manual clocks only).
    fn on_advance(&self, wake: Box<dyn Fn() + Send + Sync>);
}

/// The operating system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            })
    }

    fn sleep_until(&self, deadline: Instant) -> Option<Duration> {
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    fn on_advance(&self, _wake: Box<dyn Fn() + Send + Sync>) {}
}

/// A clock that only moves when [`ManualClock::advance`] is called.
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    start: Instant,
    start_unix_ms: u64,
    elapsed_nanos: AtomicU64,
    wakers: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualClock")
            .field("elapsed", &self.elapsed())
            .finish_non_exhaustive()
    }
}

impl ManualClock {
    /// A clock standing at `start_unix_ms` (milliseconds since the epoch).
    pub fn new(start_unix_ms: u64) -> Self {
        Self {
            inner: Arc::new(ManualInner {
                start: Instant::now(),
                start_unix_ms,
                elapsed_nanos: AtomicU64::new(0),
                wakers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Moves time forward and wakes whoever registered with `on_advance`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.inner.elapsed_nanos.fetch_add(nanos, Ordering::SeqCst);
        let wakers = self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for wake in wakers.iter() {
            wake();
        }
    }

    /// Virtual time since the clock was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.inner.elapsed_nanos.load(Ordering::SeqCst))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.start + self.elapsed()
    }

    fn unix_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.elapsed().as_millis()).unwrap_or(u64::MAX / 2);
        self.inner.start_unix_ms + elapsed
    }

    fn sleep_until(&self, _deadline: Instant) -> Option<Duration> {
        None
    }

    fn on_advance(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let mut wakers = self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        wakers.push(wake);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_wakes() {
        let clock = ManualClock::new(1_000);
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        clock.on_advance(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        let before = clock.now();
        assert_eq!(clock.now(), before);
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now() - before, Duration::from_secs(2));
        assert_eq!(clock.unix_ms(), 3_000);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }
}
