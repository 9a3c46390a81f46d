//! backend-iocp: the completion-based backend of chatd (compio: IOCP on
//! Windows, io_uring on Linux).
//!
//! This crate is intentionally empty for now. It will drive
//! [`chatd_core::Server`] with completion I/O; until it exists, nothing here
//! pretends to serve connections.
