//! This server as one node of a cluster (docs/CLUSTER.md): what it asks
//! the bus, and what it does with what the bus tells it.

use std::time::Instant;

use crate::cluster::BusEvent;

use super::Server;

impl Server {
    /// What the cluster bus says: it is up or down, a room line in its
    /// order, an answer to this node's post, whisper or claim, another
    /// node's presence, or a node gone. Ignored when the server is not a
    /// node of a cluster.
    pub fn handle_bus(&mut self, now: Instant, event: BusEvent) {
        let _ = (now, event);
    }
}
