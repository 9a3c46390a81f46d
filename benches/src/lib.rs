//! Measurements of chatd and its peers, loopback only, bounded in count
//! and time. Every command is a `chatd-*` binary and also `chatd bench`.
//!
//! - [`server`]: start `chatd serve` (or a peer) as a child process and
//!   read its RSS and CPU time from `/proc`;
//! - [`connect`]: the connect scenario, N idle connections, time to
//!   connect them all and server RSS per connection;
//! - [`fanout`]: N clients over R rooms, S senders, at a rate or flat out,
//!   with delivery counts and latency percentiles ([`histogram`]), against
//!   chatd, Redis pub/sub or a templated line protocol;
//! - [`rtt`]: round trips of `#ping`; [`micro`]: the core without sockets;
//! - [`oper_flood`]: those round trips with and without a flood of wrong
//!   `#oper` passwords from other addresses;
//! - [`relay`]: the bare relay that shows the generator's ceiling;
//! - [`compare`]: both backends and the [`peers`] side by side over
//!   rounds, with a table and a [`chart`];
//! - [`soak`]: a long steady chat while the server's RSS and descriptors
//!   are sampled; [`attack`]: round trips without and with attackers;
//! - [`history`]: start-up time and RSS against the history on disk;
//!   [`history_latency`]: `#history before` and `#search` latency, idle
//!   and under load;
//! - [`tls`]: S1 over TLS, handshakes per second and idle TLS memory
//!   against plain text ([`bench_stream`]: a generator's plain or TLS
//!   connection);
//! - [`web`]: S1 over WebSocket, S1 while `/metrics` is scraped, and
//!   idle WebSocket memory, against plain TCP;
//! - [`cluster`]: S1 and S2-lite on two nodes through Redis against one
//!   node, with Redis's CPU;
//! - [`commands`]: the command-line front ends.

pub mod attack;
pub mod bench_stream;
pub mod chart;
pub mod cluster;
pub mod commands;
pub mod compare;
pub mod connect;
pub mod deliveries;
pub mod fanout;
pub mod histogram;
pub mod history;
pub mod history_latency;
pub mod micro;
pub mod oper_flood;
pub mod peers;
pub mod relay;
pub mod rtt;
pub mod server;
pub mod soak;
pub mod tls;
pub mod web;
