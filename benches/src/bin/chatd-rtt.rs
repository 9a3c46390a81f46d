//! Round-trip latency through the whole server (also `chatd bench rtt`).
//!
//! ```sh
//! cargo build --release --bin chatd --bin chatd-rtt
//! target/release/chatd-rtt --pings 20000 --backend poll
//! ```

use clap::Parser;

fn main() -> anyhow::Result<()> {
    chatd_benches::commands::RttArgs::parse().run()
}
