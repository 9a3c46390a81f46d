//! The IRC dialect's wire layer: lines to borrowed messages and back, and
//! the masks and hostnames IRC servers check. Nothing here knows about the
//! state machine; it only reads and writes text.

pub mod mask;
pub mod message;
