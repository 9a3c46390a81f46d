//! One connected client.

use std::net::SocketAddr;
use std::time::Instant;

use smallvec::SmallVec;

use crate::dialect::Dialect;
use crate::ids::{Nick, RoomName};
use crate::line::LineBuffer;
use crate::rate_limit::SlidingWindow;

/// Whether a connection has shown signs of life recently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Sent something since the last idle check.
    Active,
    /// Sent the idle ping at this instant and waits for any line.
    Pinged(Instant),
}

/// What a connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// An ordinary user.
    User,
    /// A server operator (`#oper`): moderates everywhere.
    Operator,
}

/// A client's recent lines, for rate limiting and flood detection.
#[derive(Debug, Default)]
pub(crate) struct LineLimits {
    /// Lines admitted recently.
    pub(crate) admitted: SlidingWindow,
    /// Lines refused recently.
    pub(crate) refused: SlidingWindow,
}

/// A connected client's state.
#[derive(Debug)]
pub(crate) struct Session {
    /// The peer's address.
    pub(crate) peer: SocketAddr,
    /// The protocol it speaks.
    pub(crate) dialect: Dialect,
    /// Current nickname.
    pub(crate) nick: Nick,
    /// The room the client is in (the native dialect has one at a time).
    pub(crate) room: RoomName,
    /// Framing state: a partial line at most.
    pub(crate) line: LineBuffer,
    /// Rate-limit state, made on the first line: a connection that never
    /// speaks does not pay for it.
    pub(crate) limits: Option<Box<LineLimits>>,
    /// When the client last sent anything.
    pub(crate) last_active: Instant,
    /// Idle-check state.
    pub(crate) liveness: Liveness,
    /// User or operator.
    pub(crate) role: Role,
    /// Whether each chat line is acknowledged.
    pub(crate) ack: bool,
    /// Private rooms this client is invited to (to clean up on disconnect).
    pub(crate) invited_to: SmallVec<[RoomName; 1]>,
    /// Rooms where this client is muted (to clean up on disconnect).
    pub(crate) muted_in: Vec<RoomName>,
    /// When this client's pending idle timer fires (to cancel it on
    /// disconnect rather than leave it pending).
    pub(crate) idle_at: Option<Instant>,
    /// Rooms this client created that still exist, for the per-connection
    /// room limit.
    pub(crate) rooms_created: u16,
}

impl Session {
    pub(crate) fn new(peer: SocketAddr, dialect: Dialect, nick: Nick, room: RoomName, now: Instant) -> Self {
        Self {
            peer,
            dialect,
            nick,
            room,
            line: LineBuffer::default(),
            limits: None,
            last_active: now,
            liveness: Liveness::Active,
            role: Role::User,
            ack: false,
            invited_to: SmallVec::new(),
            muted_in: Vec::new(),
            idle_at: None,
            rooms_created: 0,
        }
    }

    pub(crate) fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }
}
