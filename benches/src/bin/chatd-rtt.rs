//! Round-trip latency through the whole server: one client sends `#ping N`
//! and waits for `+ pong N`, sequentially, so each sample crosses socket ->
//! I/O thread -> core thread -> I/O thread -> socket once. Reports
//! percentiles and the server's CPU time per round trip.
//!
//! ```sh
//! cargo build --release --bin chatd --bin chatd-rtt
//! target/release/chatd-rtt --pings 20000 --config benches/bench.toml --backend poll
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chatd_benches::server;
use clap::Parser;

/// Round-trip latency of #ping through the server.
#[derive(Debug, Parser)]
struct Args {
    /// Round trips to time.
    #[arg(long, default_value_t = 20_000)]
    pings: usize,
    #[command(flatten)]
    launch: server::Launch,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = server::ServerProcess::launch(&args.launch)?;
    let stream = TcpStream::connect(server.addr).context("connect")?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let cpu_before = server.cpu_time()?;
    let mut samples = Vec::with_capacity(args.pings);
    for i in 0..args.pings {
        let start = Instant::now();
        writer.write_all(format!("#ping {i}\n").as_bytes())?;
        line.clear();
        reader.read_line(&mut line)?;
        samples.push(start.elapsed());
        if line.trim_end() != format!("+ pong {i}") {
            bail!("unexpected reply {line:?}");
        }
    }
    let cpu = server.cpu_time()? - cpu_before;
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "backend {}: {} round trips; p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us; server CPU {:.1} us per round trip",
        args.launch.backend,
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        cpu.as_secs_f64() * 1e6 / samples.len() as f64,
    );
    drop(server);
    Ok(())
}
