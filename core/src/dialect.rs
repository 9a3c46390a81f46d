//! Which protocol a connection speaks.
//!
//! The dialect is a parameter of the connection, chosen by the listener
//! that accepted it ([`crate::Server::accept_as`]). The state machine is
//! the same for every dialect: it emits dialect-neutral events
//! ([`crate::Reply`]) and each connection's dialect renders them.

use serde::{Deserialize, Serialize};

/// The protocol of one connection.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// chatd's own line protocol (docs/PROTOCOL.md): one current room.
    #[default]
    Native,
    /// IRC (RFC 1459/2812 and the modern client protocol, docs/IRC.md):
    /// registration first, then any number of channels.
    Irc,
}

impl Dialect {
    /// The name used in settings, logs and transcripts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Irc => "irc",
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a connection reached the server: what its listener speaks and
/// whether its transport is encrypted. To the core an encrypted
/// connection is like any other, except that passwords may cross it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The listener's dialect.
    pub dialect: Dialect,
    /// The transport is encrypted (TLS).
    pub encrypted: bool,
    /// It came through the HTTP listener as a WebSocket (`/ws`, `/irc`).
    pub web: bool,
}
