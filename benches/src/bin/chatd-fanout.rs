//! The fan-out scenario against a freshly started server: N clients over R
//! rooms, S senders, at a total rate or flat out, for a fixed time (also
//! `chatd bench fanout`).
//!
//! ```sh
//! cargo build --release --bin chatd --bin chatd-fanout
//! # S1: 1 room x 100 clients, 10 senders flat out, 64 in flight, 64-byte payloads
//! target/release/chatd-fanout --backend poll \
//!     --clients 100 --rooms 1 --senders 10 --in-flight 64 --payload 64 --seconds 10
//! # S2: 10 rooms x 1,000 clients, 100 senders, 2,000 messages/s in total
//! target/release/chatd-fanout --backend poll \
//!     --clients 10000 --rooms 10 --senders 100 --rate 2000 --seconds 10
//! ```

use clap::Parser;

fn main() -> anyhow::Result<()> {
    chatd_benches::commands::FanoutArgs::parse().run()
}
