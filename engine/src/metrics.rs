//! `/metrics`: the server's counters as Prometheus text.
//!
//! Filled in by the metrics work (issue 16): the hub renders this on
//! request from the core's plain counters and the engine's own.

use crate::hub::Hub;

/// The Prometheus exposition of everything the hub can see.
pub(crate) fn render(hub: &Hub) -> String {
    let _ = hub;
    String::new()
}
