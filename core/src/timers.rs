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
    queue: BTreeMap<(Instant, u64), Stored>,
    next_seq: u64,
}

/// A timer as the queue keeps it. Nearly every connection has a timer
/// pending (its idle check, or an IRC client's registration deadline),
/// so these are most of the queue: they are kept in 16 bytes, where a [`Timer`] (sized by its
/// room-and-account variants) takes 48. The rare rest is boxed
/// (ARCHITECTURE.md, decision 75).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stored {
    Idle(ConnId),
    Fakelag(ConnId),
    NickGrace(ConnId),
    Other(Box<Timer>),
}

impl Stored {
    fn of(timer: Timer) -> Self {
        match timer {
            Timer::Idle(conn) => Self::Idle(conn),
            Timer::Fakelag(conn) => Self::Fakelag(conn),
            Timer::NickGrace(conn) => Self::NickGrace(conn),
            other => Self::Other(Box::new(other)),
        }
    }

    fn into_timer(self) -> Timer {
        match self {
            Self::Idle(conn) => Timer::Idle(conn),
            Self::Fakelag(conn) => Timer::Fakelag(conn),
            Self::NickGrace(conn) => Timer::NickGrace(conn),
            Self::Other(timer) => *timer,
        }
    }

    fn is(&self, timer: &Timer) -> bool {
        match (self, timer) {
            (Self::Idle(a), Timer::Idle(b))
            | (Self::Fakelag(a), Timer::Fakelag(b))
            | (Self::NickGrace(a), Timer::NickGrace(b)) => a == b,
            (Self::Other(stored), timer) => **stored == *timer,
            _ => false,
        }
    }
}

impl Timers {
    /// Arms a timer.
    pub(crate) fn schedule(&mut self, at: Instant, timer: Timer) {
        self.queue.insert((at, self.next_seq), Stored::of(timer));
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
        Some((at, timer.into_timer()))
    }

    /// Disarms the timer `timer` set for `at`, if it is still pending.
    /// Timers share a deadline rarely, so this looks at a handful at most.
    pub(crate) fn cancel(&mut self, at: Instant, timer: &Timer) {
        let key = self
            .queue
            .range((at, 0)..=(at, u64::MAX))
            .find(|(_, pending)| pending.is(timer))
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
    fn timers_of_every_kind_come_back_as_scheduled_and_cancel_by_identity() {
        let start = crate::test_support::epoch();
        let room = RoomName::general();
        let conn = ConnId::new(7);
        let all = [
            Timer::Idle(conn),
            Timer::Fakelag(conn),
            Timer::NickGrace(conn),
            Timer::MuteExpiry {
                room: room.clone(),
                conn,
            },
            Timer::RoomBanExpiry {
                room: room.clone(),
                address: IpAddr::from([127, 0, 0, 1]),
            },
            Timer::ServerBanExpiry(IpAddr::from([127, 0, 0, 2])),
            Timer::AccountMuteExpiry {
                room,
                account: Nick::parse("alice").unwrap(),
            },
        ];
        let mut timers = Timers::default();
        for timer in &all {
            timers.schedule(start, timer.clone());
        }
        let mut fired = Vec::new();
        while let Some((_, timer)) = timers.pop_due(start) {
            fired.push(timer);
        }
        assert_eq!(fired, all);
        for timer in &all {
            timers.schedule(start, timer.clone());
        }
        // Another connection, same kind: nothing goes.
        timers.cancel(start, &Timer::Idle(ConnId::new(8)));
        timers.cancel(start, &Timer::NickGrace(ConnId::new(6)));
        assert_eq!(timers.len(), all.len());
        // Same connection, another kind: only the named one goes.
        timers.cancel(start, &Timer::Fakelag(conn));
        timers.cancel(start, &Timer::ServerBanExpiry(IpAddr::from([127, 0, 0, 2])));
        assert_eq!(timers.len(), all.len() - 2);
        let left: Vec<Timer> = std::iter::from_fn(|| timers.pop_due(start).map(|t| t.1)).collect();
        assert!(!left.contains(&Timer::Fakelag(conn)));
        assert!(left.contains(&Timer::Idle(conn)));
        assert!(left.contains(&Timer::NickGrace(conn)));
    }

    #[test]
    fn a_pending_timer_takes_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Stored>(), 16);
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
