//! Measures server RSS per idle connection: starts `chatd serve` with the
//! given config, opens N connections, reads the server's RSS.
//!
//! ```sh
//! cargo build --release --bin chatd --bin chatd-idle
//! target/release/chatd-idle --connections 19000 --config benches/bench.toml --backend poll
//! ```

use chatd_benches::{connect, server};
use clap::Parser;

/// Server RSS per idle connection.
#[derive(Debug, Parser)]
struct Args {
    /// Connections to open (at most about 19,990 with a 20,000-file limit).
    #[arg(long, default_value_t = 1_000)]
    connections: usize,
    #[command(flatten)]
    launch: server::Launch,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = server::ServerProcess::launch(&args.launch)?;
    let report = connect::run(&server, args.connections, true)?;
    println!(
        "backend {}: {} of {} connected, {} failures, in {:.2} s; server RSS {:.1} MiB -> {:.1} MiB = {:.0} bytes per connection",
        args.launch.backend,
        report.connected,
        report.requested,
        report.failures,
        report.elapsed.as_secs_f64(),
        report.rss_before as f64 / 1_048_576.0,
        report.rss_after as f64 / 1_048_576.0,
        report.rss_per_connection(),
    );
    drop(server);
    Ok(())
}
