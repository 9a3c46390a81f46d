//! backend-poll: the readiness-based backend of chatd (the `polling` crate:
//! epoll on Linux, kqueue on macOS/BSD).
//!
//! This crate is intentionally empty for now. It will drive
//! [`chatd_core::Server`] with readiness I/O; until it exists, nothing here
//! pretends to serve connections.
