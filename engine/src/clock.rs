//! Where the server's time comes from.
//!
//! Production uses [`SystemClock`]. Tests use [`ManualClock`]: time only
//! moves when the test advances it, and advancing wakes the core's thread
//! so due timers fire, exactly as `advance` does in the memory driver.
//!
//! The core derives calendar time (history timestamps) from the monotonic
//! clock and one anchor. The two drift apart over a long uptime (NTP
//! slews the system clock, an operator corrects it), so the hub
//! re-anchors the core to the wall clock every
//! [`Clock::wall_clock_every`] ([`WallClockSync`]).

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

    /// How often the core's calendar time is re-anchored to
    /// [`Clock::unix_ms`]. `None` (the default) never: a manual clock's
    /// wall time moves with its monotonic time, so there is no drift, and
    /// transcripts stay byte-identical.
    fn wall_clock_every(&self) -> Option<Duration> {
        None
    }
}

/// How often [`SystemClock`] re-anchors the core's calendar time.
pub const WALL_CLOCK_EVERY: Duration = Duration::from_secs(60);

/// When the hub next feeds the wall clock to the core.
#[derive(Debug)]
pub struct WallClockSync {
    every: Option<Duration>,
    next: Option<Instant>,
}

impl WallClockSync {
    /// A schedule for `clock`, whose wall time the core was anchored to at
    /// `now`.
    pub fn new(clock: &dyn Clock, now: Instant) -> Self {
        let every = clock.wall_clock_every();
        Self {
            every,
            next: every.map(|every| now + every),
        }
    }

    /// The wall time to feed the core (`handle_wall_clock(now, ms)`), when
    /// one is due at `now`. Checked before every event the hub handles, so
    /// a record is never stamped from an anchor older than the interval,
    /// however long the hub slept.
    pub fn due(&mut self, clock: &dyn Clock, now: Instant) -> Option<u64> {
        let (every, next) = (self.every?, self.next?);
        if now < next {
            return None;
        }
        self.next = Some(now + every);
        Some(clock.unix_ms())
    }
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

    fn wall_clock_every(&self) -> Option<Duration> {
        Some(WALL_CLOCK_EVERY)
    }
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

    /// A manual clock whose wall time runs ahead of its monotonic time by
    /// `drift_ms`, and which asks to be re-anchored every minute.
    struct Drifting {
        clock: ManualClock,
        drift_ms: AtomicU64,
    }

    impl Clock for Drifting {
        fn now(&self) -> Instant {
            self.clock.now()
        }
        fn unix_ms(&self) -> u64 {
            self.clock.unix_ms() + self.drift_ms.load(Ordering::SeqCst)
        }
        fn sleep_until(&self, deadline: Instant) -> Option<Duration> {
            self.clock.sleep_until(deadline)
        }
        fn on_advance(&self, wake: Box<dyn Fn() + Send + Sync>) {
            self.clock.on_advance(wake);
        }
        fn wall_clock_every(&self) -> Option<Duration> {
            Some(WALL_CLOCK_EVERY)
        }
    }

    #[test]
    fn the_wall_clock_is_fed_once_a_minute_with_its_drift() {
        let clock = Drifting {
            clock: ManualClock::new(1_000_000),
            drift_ms: AtomicU64::new(0),
        };
        let mut sync = WallClockSync::new(&clock, clock.now());
        clock.clock.advance(Duration::from_secs(59));
        clock.drift_ms.store(5_000, Ordering::SeqCst);
        assert_eq!(sync.due(&clock, clock.now()), None);
        clock.clock.advance(Duration::from_secs(1));
        assert_eq!(
            sync.due(&clock, clock.now()),
            Some(1_000_000 + 60_000 + 5_000)
        );
        assert_eq!(sync.due(&clock, clock.now()), None, "once per interval");
        // After a long sleep: due at once, then a minute from then.
        clock.clock.advance(Duration::from_secs(3_600));
        assert!(sync.due(&clock, clock.now()).is_some());
        clock.clock.advance(Duration::from_secs(30));
        assert_eq!(sync.due(&clock, clock.now()), None);
    }

    #[test]
    fn a_manual_clock_is_never_re_anchored_and_the_system_clock_is() {
        let manual = ManualClock::new(0);
        let mut sync = WallClockSync::new(&manual, manual.now());
        manual.advance(Duration::from_secs(86_400));
        assert_eq!(sync.due(&manual, manual.now()), None);
        assert_eq!(SystemClock.wall_clock_every(), Some(WALL_CLOCK_EVERY));
    }

    #[test]
    fn history_timestamps_follow_the_wall_clock_fed_to_the_core() {
        use chatd_core::{Config, Output, Server};
        let clock = Drifting {
            clock: ManualClock::new(1_795_000_000_000),
            drift_ms: AtomicU64::new(0),
        };
        let start = clock.now();
        let mut server = Server::new(Config::default(), start, clock.unix_ms()).expect("server");
        let mut sync = WallClockSync::new(&clock, start);
        let conn = server
            .accept(start, "127.0.0.1:1".parse().expect("address"))
            .expect("accepted");
        // The system clock is corrected by an hour while the server runs.
        clock.drift_ms.store(3_600_000, Ordering::SeqCst);
        clock.clock.advance(WALL_CLOCK_EVERY);
        let now = clock.now();
        if let Some(unix_ms) = sync.due(&clock, now) {
            server.handle_wall_clock(now, unix_ms);
        }
        server.handle(now, conn, b"hello\n");
        let stamped = std::iter::from_fn(|| server.poll_output())
            .find_map(|output| match output {
                Output::Persist(record) => Some(record.ts),
                _ => None,
            })
            .expect("a history record");
        assert_eq!(stamped, clock.unix_ms());
    }
}
