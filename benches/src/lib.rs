//! Measurements of a running `chatd` process, loopback only, bounded in
//! count and time.
//!
//! - [`server`]: start `chatd serve` as a child process with a given
//!   config and read its RSS and CPU time from `/proc`;
//! - [`connect`]: the connect scenario, N idle connections, time to
//!   connect them all and server RSS per connection;
//! - [`fanout`]: N clients over R rooms, S senders, at a rate or flat out,
//!   with delivery counts and latency percentiles ([`histogram`]).

pub mod connect;
pub mod fanout;
pub mod histogram;
pub mod server;
