//! chatd-core: the sans-IO chat server.
//!
//! Everything that makes chatd a chat server lives here as a pure state
//! machine: line framing, the native dialect (parse and render), rooms,
//! private messages, moderation, rate limiting, idle checks and history.
//! There are no sockets, threads, files or clocks in this crate.
//!
//! # Contract
//!
//! - Inputs are `handle_*` methods (plus [`Server::accept`]) that take
//!   `now: Instant` first. Bytes may arrive split at any point; framing is
//!   the core's job.
//! - Outputs are drained with [`Server::poll_output`] until `None`; then
//!   [`Server::poll_timeout`] says when to call [`Server::handle_timeout`].
//!   See [`Server`] for the loop.
//! - The core allocates [`ConnId`]s in increasing order, never reused, so
//!   every driver produces byte-identical transcripts for the same script.
//! - Nothing reads a clock (enforced by `clippy.toml`); wall-clock time for
//!   history comes from the anchor given to [`Server::new`].
//! - No input panics the core: peer mistakes become `! code: text` replies
//!   ([`ErrorCode`]); mistakes of the driver are `debug_assert!`s.
//! - Output order is deterministic: members, rooms and fan-out are ordered.

pub mod accounts;
pub mod address;
pub mod cluster;
pub mod command;
pub mod config;
pub mod counters;
pub mod dialect;
pub mod duration;
pub mod error;
pub mod history;
pub mod history_query;
pub mod ids;
pub mod io;
pub mod irc;
pub mod line;
pub mod login;
pub mod native;
pub mod rate_limit;
mod render;
pub mod reply;
mod server;
pub mod text;
mod timers;
pub mod wall_clock;

#[cfg(test)]
mod test_support;

pub use accounts::{Account, AccountChange, AccountWrite, AccountsConfig, HashRequest};
pub use command::{BanTarget, Command};
pub use config::{
    Config, ConfigError, IdleConfig, IrcConfig, LimitsConfig, OperatorConfig, RateLimitConfig,
};
pub use counters::{ClusterGauges, Counters, Gauges};
pub use dialect::{Arrival, Dialect};
pub use error::ErrorCode;
pub use history::{Record, RecordKind, Recovery};
pub use ids::{ConnId, MessageId, NameError, Nick, RoomName};
pub use io::{CloseReason, Output, Priority, Refused};
pub use login::{
    CheckPurpose, LoginConfig, LoginRequest, Password, PasswordCheck, PasswordVerdict,
};
pub use reply::Reply;
#[cfg(feature = "fuzzing")]
pub use server::RoomView;
pub use server::Server;
