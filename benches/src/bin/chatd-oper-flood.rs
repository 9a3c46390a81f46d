//! Round trips without and with a flood of wrong `#oper` passwords (also
//! `chatd bench oper-flood`).
//!
//! ```sh
//! cargo build --release --bin chatd --bin chatd-oper-flood
//! target/release/chatd-oper-flood --addresses 10 --burst 20 --backend poll
//! ```

use clap::Parser;

fn main() -> anyhow::Result<()> {
    chatd_benches::commands::OperFloodArgs::parse().run()
}
