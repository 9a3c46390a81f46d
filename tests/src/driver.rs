//! What a transcript needs from a way of running the server.

use std::net::IpAddr;
use std::time::Duration;

use chatd_core::cluster::NodeName;
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

    /// Starts a cluster of fresh nodes sharing one bus, each a server with
    /// this config as that node. Only a cluster driver runs clusters.
    fn start_cluster(&mut self, config: &Config, nodes: &[NodeName]) -> Result<(), DriverError> {
        let _ = (config, nodes);
        Err(not_a_cluster(self.name()))
    }

    /// Opens a connection for `client` to the server of `node`.
    fn connect_on(
        &mut self,
        client: &str,
        node: &NodeName,
        from: IpAddr,
        dialect: Dialect,
    ) -> Result<(), DriverError> {
        let _ = (client, node, from, dialect);
        Err(not_a_cluster(self.name()))
    }

    /// Does something to one node of the cluster.
    fn node_step(&mut self, step: NodeStep, node: &NodeName) -> Result<(), DriverError> {
        let _ = (step, node);
        Err(not_a_cluster(self.name()))
    }
}

/// What a transcript does to one node of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStep {
    /// The node loses the bus (Redis unreachable): it hears `Down`, and
    /// whatever it asks of the bus is refused until it heals.
    Cut,
    /// The node loses the bus without noticing yet: its requests already
    /// on their way, and its next one, are refused, and then it hears
    /// `Down`.
    CutUnnoticed,
    /// The node reaches the bus again: `Up`, then it catches up.
    Heal,
    /// The node dies: its clients' connections close without a word, and
    /// its lease lapses (the others hear it is gone).
    Kill,
    /// The node stops gracefully: its clients are told and closed, what
    /// it asked of the bus is carried out, then it leaves the cluster (its
    /// lease given back: the others hear it is gone).
    Stop,
    /// A node starts: a new one, or a stopped or killed one again, on what
    /// it persisted.
    Start,
}

impl NodeStep {
    /// The step's word in a transcript.
    pub fn word(self) -> &'static str {
        match self {
            Self::Cut | Self::CutUnnoticed => "cut",
            Self::Heal => "heal",
            Self::Kill => "kill",
            Self::Stop => "stop",
            Self::Start => "start",
        }
    }
}

fn not_a_cluster(driver: &str) -> DriverError {
    DriverError(format!(
        "the {driver} driver runs one server: cluster transcripts need the memory cluster driver"
    ))
}

/// The shutdown reason drivers give on `restart`, so every driver shows
/// the same line.
pub const RESTART_REASON: &str = "restarting";
