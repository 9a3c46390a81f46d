//! Measures server RSS per idle connection: starts `chatd serve` with the
//! bench profile, opens N connections, reads the server's RSS (also
//! `chatd bench idle`).
//!
//! ```sh
//! cargo build --release --bin chatd --bin chatd-idle
//! target/release/chatd-idle --connections 19000 --backend poll
//! ```

use clap::Parser;

fn main() -> anyhow::Result<()> {
    chatd_benches::commands::IdleArgs::parse().run()
}
