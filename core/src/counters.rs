//! What the server has done and holds, for operators' metrics.
//!
//! The core keeps plain counters ([`Counters`], a `u64 += 1` at each
//! event, no atomics, maps or allocation on the path of a message) and
//! computes its gauges ([`Gauges`]) when asked, by walking its state: a
//! scrape comes once a second at most, while connections come and go all
//! the time. The engine reads both on the core's own thread and renders
//! them; no metrics crate enters the core.

use std::collections::BTreeMap;

use crate::dialect::{Arrival, Dialect};
use crate::error::ErrorCode;
use crate::io::Output;

/// The kind of listener a connection came in on: its dialect and
/// transport, as operators tell listeners apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Listener {
    /// The native dialect over plain TCP.
    Native,
    /// The native dialect over TLS.
    NativeTls,
    /// IRC over plain TCP.
    Irc,
    /// IRC over TLS.
    IrcTls,
    /// The HTTP listener (WebSockets of either dialect, and requests not
    /// upgraded), plain.
    Http,
    /// The HTTP listener over TLS.
    Https,
}

impl Listener {
    /// Every kind, in the order metrics list them.
    pub const ALL: [Listener; 6] = [
        Self::Native,
        Self::NativeTls,
        Self::Irc,
        Self::IrcTls,
        Self::Http,
        Self::Https,
    ];

    /// The listener a connection that arrived as `arrival` came through.
    pub fn of(arrival: Arrival) -> Self {
        match (arrival.web, arrival.dialect, arrival.encrypted) {
            (true, _, false) => Self::Http,
            (true, _, true) => Self::Https,
            (false, Dialect::Native, false) => Self::Native,
            (false, Dialect::Native, true) => Self::NativeTls,
            (false, Dialect::Irc, false) => Self::Irc,
            (false, Dialect::Irc, true) => Self::IrcTls,
        }
    }

    /// The HTTP listener, plain or over TLS.
    pub fn web(encrypted: bool) -> Self {
        if encrypted { Self::Https } else { Self::Http }
    }

    /// The label value in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::NativeTls => "native-tls",
            Self::Irc => "irc",
            Self::IrcTls => "irc-tls",
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    /// What connections of this listener may speak: a dialect listener
    /// speaks its own; the HTTP listener carries both over WebSockets and
    /// HTTP itself before an upgrade.
    pub fn protocols(self) -> &'static [Protocol] {
        match self {
            Self::Native | Self::NativeTls => &[Protocol::Native],
            Self::Irc | Self::IrcTls => &[Protocol::Irc],
            Self::Http | Self::Https => &[Protocol::Native, Protocol::Irc, Protocol::Http],
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a connection speaks now: a dialect, or HTTP while a connection to
/// the HTTP listener has not (yet) become a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// The native dialect.
    Native,
    /// The IRC dialect.
    Irc,
    /// Plain HTTP, not upgraded.
    Http,
}

impl Protocol {
    /// The label value in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Irc => "irc",
            Self::Http => "http",
        }
    }

    /// A session's dialect.
    pub fn of(dialect: Dialect) -> Self {
        match dialect {
            Dialect::Native => Self::Native,
            Dialect::Irc => Self::Irc,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The codes a connection can be refused with at admission, listed by
/// metrics even before the first refusal (so a rate over them starts at
/// zero rather than at the first refusal).
pub const ADMISSION_CODES: [ErrorCode; 3] = [
    ErrorCode::ServerFull,
    ErrorCode::TooManyConnections,
    ErrorCode::Banned,
];

/// Everything the server counted since it started. Plain data: the
/// server adds to it as it goes, and [`crate::Server::counters`] lends
/// it out.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Connections admitted, by listener (an HTTP connection counts once,
    /// when admitted, not again when it upgrades).
    pub accepted: [u64; Listener::ALL.len()],
    /// Connections refused at admission, by the refusal's code. A map,
    /// since any code may be used, but touched only per refusal, and a
    /// code's entry is made once.
    pub refused: BTreeMap<ErrorCode, u64>,
    /// Lines the core framed from connections' bytes (including lines it
    /// discarded: too long, not UTF-8, control characters).
    pub lines_in: u64,
    /// Bytes given to [`crate::Server::handle`].
    pub bytes_in: u64,
    /// Deliveries: one per recipient of each send or broadcast output.
    pub deliveries_out: u64,
    /// Bytes of each send or broadcast output times its recipients.
    pub bytes_out: u64,
    /// Lines dropped (native) or held back (IRC fakelag) by the rate
    /// limit, including the line that tipped a connection into a flood
    /// disconnect.
    pub rate_limited: u64,
    /// Connections closed for flooding.
    pub flood_disconnects: u64,
    /// Connections closed because they could not receive fast enough.
    pub slow_consumers: u64,
}

impl Counters {
    /// Connections admitted through `listener`.
    pub fn accepted_on(&self, listener: Listener) -> u64 {
        self.accepted[listener.index()]
    }

    /// Refusals by code: every [`ADMISSION_CODES`] (zero if none yet)
    /// and any other code used, in code order.
    pub fn refusals(&self) -> Vec<(ErrorCode, u64)> {
        let mut all = self.refused.clone();
        for code in ADMISSION_CODES {
            all.entry(code).or_insert(0);
        }
        all.into_iter().collect()
    }

    pub(crate) fn accept(&mut self, listener: Listener) {
        self.accepted[listener.index()] += 1;
    }

    pub(crate) fn refuse(&mut self, code: ErrorCode) {
        *self.refused.entry(code).or_insert(0) += 1;
    }

    /// Counts an output on its way to the driver.
    pub(crate) fn output(&mut self, output: &Output) {
        let (recipients, bytes) = match output {
            Output::Send { bytes, .. } => (1, bytes.len()),
            Output::Broadcast {
                to, except, bytes, ..
            } => {
                // `to` is in increasing id order (Output::Broadcast).
                let skipped = except.is_some_and(|skip| to.binary_search(&skip).is_ok());
                (to.len() - usize::from(skipped), bytes.len())
            }
            _ => return,
        };
        let recipients = recipients as u64;
        self.deliveries_out += recipients;
        self.bytes_out += recipients * bytes as u64;
    }
}

/// What the server holds now, computed by [`crate::Server::gauges`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Open connections, by listener and protocol (read through
    /// [`Gauges::connections`]).
    connections: [[u64; 3]; Listener::ALL.len()],
    /// Rooms that exist.
    pub rooms: u64,
    /// Bytes of recent history held in memory.
    pub history_bytes: u64,
    /// On a node of a cluster: its view of the cluster.
    pub cluster: Option<ClusterGauges>,
}

/// A node's view of its cluster, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterGauges {
    /// Whether the bus reaches the shared store.
    pub up: bool,
    /// Users of other nodes this node knows of.
    pub remote_users: u64,
    /// Nickname claims waiting for the store's answer.
    pub claims_in_flight: u64,
}

impl Gauges {
    /// Open connections of `listener` speaking `protocol`.
    pub fn connections_of(&self, listener: Listener, protocol: Protocol) -> u64 {
        self.connections[listener.index()][protocol.index()]
    }

    /// Every listener and protocol a connection can have, with how many
    /// connections have them now, in listener order.
    pub fn connections(&self) -> impl Iterator<Item = (Listener, Protocol, u64)> + '_ {
        Listener::ALL.into_iter().flat_map(move |listener| {
            listener
                .protocols()
                .iter()
                .map(move |&protocol| (listener, protocol, self.connections_of(listener, protocol)))
        })
    }

    pub(crate) fn add_connection(&mut self, listener: Listener, protocol: Protocol) {
        self.connections[listener.index()][protocol.index()] += 1;
    }
}
