//! The `chatd` command line (`serve`, `connect`, `bench`).
//!
//! Intentionally empty for now: the binary arrives with the first backend, so
//! that no command exists before it can do what it says.
