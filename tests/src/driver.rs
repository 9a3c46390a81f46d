//! What a transcript needs from a way of running the server.

use std::net::IpAddr;
use std::time::Duration;

use chatd_core::{Config, Dialect};

/// What a client found when it looked for its next line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A complete line, without its LF (an IRC line keeps its CR here; the
    /// runner strips it).
    Line(String),
    /// The server closed the connection and nothing is left unread.
    Closed,
    /// Nothing arrived (the memory driver: nothing pending; a socket
    /// driver: nothing within its time limit).
    Nothing,
}

/// A driver failed to do what a step asked (not a wrong reply: a broken
/// harness, a refused socket, a server that would not start).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DriverError(pub String);

/// One way of running the server under a transcript: in memory, or a real
/// backend over TCP. Every method acts on the client named in the script.
pub trait Driver {
    /// The driver's name, printed with failures.
    fn name(&self) -> &str;

    /// Starts a fresh server (no history) with this config.
    fn start(&mut self, config: &Config) -> Result<(), DriverError>;

    /// Opens a connection for `client` from `from` (a loopback address)
    /// speaking `dialect`: to that dialect's listener, or accepted as it.
    fn connect(&mut self, client: &str, from: IpAddr, dialect: Dialect) -> Result<(), DriverError>;

    /// Sends bytes from `client`.
    fn send(&mut self, client: &str, bytes: &[u8]) -> Result<(), DriverError>;

    /// The next line `client` received.
    fn next_line(&mut self, client: &str) -> Result<Received, DriverError>;

    /// `client` hangs up.
    fn close(&mut self, client: &str) -> Result<(), DriverError>;

    /// Moves virtual time forward and lets due timers fire.
    fn advance(&mut self, by: Duration) -> Result<(), DriverError>;

    /// Shuts the server down gracefully (reason "restarting") and starts a
    /// new one, with the same config, on what the old one persisted.
    fn restart(&mut self) -> Result<(), DriverError>;

    /// Stops the server and releases everything.
    fn stop(&mut self);
}

/// The shutdown reason drivers give on `restart`, so every driver shows
/// the same line.
pub const RESTART_REASON: &str = "restarting";
