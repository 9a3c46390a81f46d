//! The core's timers: one ordered queue of deadlines.
//!
//! Each timer names what it checks, and when it fires the handler looks at
//! the current state and does nothing if the timer has gone stale. That
//! keeps a chat message's hot path free of timer bookkeeping: an idle timer
//! is re-armed only when it fires, not on every line. What ends for good
//! before its timer (an unban, an unmute, a room that empties, a client
//! that leaves) cancels it by its deadline and identity, so a long ban
//! lifted early does not leave its timer behind for years: the number of
//! pending timers stays bounded by the sessions, bans and mutes that exist.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use crate::ids::{ConnId, Nick, RoomName};

/// What a timer checks when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Has this connection been silent too long?
    Idle(ConnId),
    /// May this IRC client's held lines go now (fakelag)?
    Fakelag(ConnId),
    /// Does this mute end now?
    MuteExpiry {
        /// The room.
        room: RoomName,
        /// The muted connection.
        conn: ConnId,
    },
    /// Does this room ban end now?
    RoomBanExpiry {
        /// The room.
        room: RoomName,
        /// The banned address.
        address: IpAddr,
    },
    /// Does this server ban end now?
    ServerBanExpiry(IpAddr),
    /// Does this connection still hold a registered nickname without
    /// being logged in to it (then it is renamed)?
    NickGrace(ConnId),
    /// Does this account's mute end now?
    AccountMuteExpiry {
        /// The room.
        room: RoomName,
        /// The muted account (folded).
        account: Nick,
    },
}

/// Deadlines in order; ties fire in the order they were set.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    queue: BTreeMap<(Instant, u64), Timer>,
    next_seq: u64,
}

impl Timers {
    /// Arms a timer.
    pub(crate) fn schedule(&mut self, at: Instant, timer: Timer) {
        self.queue.insert((at, self.next_seq), timer);
        self.next_seq += 1;
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        let entry = self.queue.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let ((at, _), timer) = entry.remove_entry();
        Some((at, timer))
    }

    /// Disarms the timer `timer` set for `at`, if it is still pending.
    /// Timers share a deadline rarely, so this looks at a handful at most.
    pub(crate) fn cancel(&mut self, at: Instant, timer: &Timer) {
        let key = self
            .queue
            .range((at, 0)..=(at, u64::MAX))
            .find(|(_, pending)| *pending == timer)
            .map(|(&key, _)| key);
        if let Some(key) = key {
            self.queue.remove(&key);
        }
    }

    /// How many timers are armed.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn fires_in_deadline_then_insertion_order() {
        let start = crate::test_support::epoch();
        let mut timers = Timers::default();
        let later = start + Duration::from_secs(5);
        timers.schedule(later, Timer::Idle(ConnId::new(2)));
        timers.schedule(start, Timer::Idle(ConnId::new(3)));
        timers.schedule(later, Timer::Idle(ConnId::new(1)));
        assert_eq!(timers.next_deadline(), Some(start));
        assert_eq!(
            timers.pop_due(start),
            Some((start, Timer::Idle(ConnId::new(3))))
        );
        assert_eq!(timers.pop_due(start), None);
        assert_eq!(
            timers.pop_due(later).map(|t| t.1),
            Some(Timer::Idle(ConnId::new(2)))
        );
        assert_eq!(
            timers.pop_due(later).map(|t| t.1),
            Some(Timer::Idle(ConnId::new(1)))
        );
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn cancel_removes_only_the_named_timer() {
        let start = crate::test_support::epoch();
        let mut timers = Timers::default();
        timers.schedule(start, Timer::Idle(ConnId::new(1)));
        timers.schedule(start, Timer::Idle(ConnId::new(2)));
        timers.cancel(start, &Timer::Idle(ConnId::new(1)));
        timers.cancel(start + Duration::from_secs(1), &Timer::Idle(ConnId::new(2)));
        assert_eq!(timers.len(), 1);
        assert_eq!(
            timers.pop_due(start).map(|t| t.1),
            Some(Timer::Idle(ConnId::new(2)))
        );
    }
}
