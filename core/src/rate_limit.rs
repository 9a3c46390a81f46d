//! Exact sliding-window rate limiting.
//!
//! A window remembers the instants of the events it admitted within the last
//! `window`; an event is admitted only while fewer than `messages` of them
//! remain. Unlike a token bucket or a two-bucket estimate, no span of length
//! `window` can ever hold more than `messages` admitted events (the property
//! tests check exactly that). It costs one `Instant` per admitted event, and
//! nothing at all for a connection that has never spoken.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How many events a window admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Events admitted per window.
    pub messages: u32,
    /// The window's length.
    pub window: Duration,
}

/// The admitted events of one client (or one IP address).
#[derive(Debug, Default, Clone)]
pub struct SlidingWindow {
    admitted: VecDeque<Instant>,
}

impl SlidingWindow {
    /// Admits an event at `now` if the budget allows, and remembers it.
    ///
    /// On refusal returns how long until the oldest remembered event leaves
    /// the window, i.e. the earliest moment a retry can succeed.
    pub fn try_admit(&mut self, now: Instant, budget: Budget) -> Result<(), Duration> {
        self.check(now, budget)?;
        self.record(now);
        Ok(())
    }

    /// Says whether an event at `now` would be admitted, without recording it.
    pub fn check(&mut self, now: Instant, budget: Budget) -> Result<(), Duration> {
        self.forget_before(now, budget.window);
        if self.admitted.len() < budget.messages as usize {
            return Ok(());
        }
        // The budget is full, so there is an oldest event; its expiry is the
        // retry moment. With a zero budget nothing is ever admitted.
        let Some(&oldest) = self.admitted.front() else {
            return Err(budget.window);
        };
        Err((oldest + budget.window).saturating_duration_since(now))
    }

    /// Records an event at `now` (after [`SlidingWindow::check`] allowed it).
    pub fn record(&mut self, now: Instant) {
        self.admitted.push_back(now);
    }

    /// How many remembered events lie within `window` of `now`.
    pub fn count(&mut self, now: Instant, window: Duration) -> usize {
        self.forget_before(now, window);
        self.admitted.len()
    }

    /// Whether the window remembers nothing (so its owner may be dropped).
    pub fn is_empty(&self) -> bool {
        self.admitted.is_empty()
    }

    fn forget_before(&mut self, now: Instant, window: Duration) {
        while let Some(&oldest) = self.admitted.front() {
            if oldest + window > now {
                break;
            }
            self.admitted.pop_front();
        }
        if self.admitted.is_empty() && self.admitted.capacity() > 0 {
            // Give the memory back: idle clients should cost next to nothing.
            self.admitted = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(messages: u32, secs: u64) -> Budget {
        Budget {
            messages,
            window: Duration::from_secs(secs),
        }
    }

    #[test]
    fn admits_budget_then_refuses_with_retry_after() {
        let start = crate::test_support::epoch();
        let mut window = SlidingWindow::default();
        for i in 0..3 {
            assert_eq!(
                window.try_admit(start + Duration::from_secs(i), budget(3, 10)),
                Ok(())
            );
        }
        assert_eq!(
            window.try_admit(start + Duration::from_secs(4), budget(3, 10)),
            Err(Duration::from_secs(6))
        );
        assert_eq!(
            window.try_admit(start + Duration::from_secs(10), budget(3, 10)),
            Ok(())
        );
    }

    #[test]
    fn refused_events_do_not_consume_budget() {
        let start = crate::test_support::epoch();
        let mut window = SlidingWindow::default();
        window.try_admit(start, budget(1, 10)).unwrap();
        for i in 1..9 {
            assert!(
                window
                    .try_admit(start + Duration::from_secs(i), budget(1, 10))
                    .is_err()
            );
        }
        assert!(
            window
                .try_admit(start + Duration::from_secs(10), budget(1, 10))
                .is_ok()
        );
    }

    #[test]
    fn memory_is_released_when_the_window_empties() {
        let start = crate::test_support::epoch();
        let mut window = SlidingWindow::default();
        window.try_admit(start, budget(5, 1)).unwrap();
        assert_eq!(
            window.count(start + Duration::from_secs(2), Duration::from_secs(1)),
            0
        );
        assert!(window.is_empty());
    }
}
