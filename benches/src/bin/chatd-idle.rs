//! Measures server RSS per idle connection: starts `chatd serve` with the
//! given config, opens N connections, reads the server's RSS.
//!
//! ```sh
//! cargo build --release --bin chatd --bin chatd-idle
//! target/release/chatd-idle --connections 19000 --config benches/bench.toml --backend poll
//! ```

use std::path::PathBuf;

use chatd_benches::{connect, server};
use clap::Parser;

/// Server RSS per idle connection.
#[derive(Debug, Parser)]
struct Args {
    /// Connections to open (at most about 19,990 with a 20,000-file limit).
    #[arg(long, default_value_t = 1_000)]
    connections: usize,
    /// Config file for the server (it must allow that many connections from one address).
    #[arg(long)]
    config: PathBuf,
    /// Backend to measure.
    #[arg(long, default_value = "poll")]
    backend: String,
    /// I/O threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The chatd binary [default: next to this one].
    #[arg(long)]
    chatd: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary = match args.chatd {
        Some(path) => path,
        None => server::sibling_chatd()?,
    };
    let data = std::env::temp_dir().join(format!("chatd-idle-{}", std::process::id()));
    let server = server::ServerProcess::start(
        &binary,
        &[
            "--config".into(),
            args.config.display().to_string(),
            "--backend".into(),
            args.backend.clone(),
            "--threads".into(),
            args.threads.to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--log-level".into(),
            "info".into(),
        ],
    )?;
    let report = connect::run(&server, args.connections, true)?;
    println!(
        "backend {}: {} of {} connected, {} failures, in {:.2} s; server RSS {:.1} MiB -> {:.1} MiB = {:.0} bytes per connection",
        args.backend,
        report.connected,
        report.requested,
        report.failures,
        report.elapsed.as_secs_f64(),
        report.rss_before as f64 / 1_048_576.0,
        report.rss_after as f64 / 1_048_576.0,
        report.rss_per_connection(),
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
