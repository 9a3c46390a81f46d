//! The fan-out scenario against a freshly started server: N clients over R
//! rooms, S senders, at a total rate or flat out, for a fixed time.
//!
//! ```sh
//! cargo build --release --bin chatd --bin chatd-fanout
//! # S1: 1 room x 100 clients, 10 senders flat out, 64 in flight, 64-byte payloads
//! target/release/chatd-fanout --config benches/bench.toml --backend poll \
//!     --clients 100 --rooms 1 --senders 10 --in-flight 64 --payload 64 --seconds 10
//! # S2: 10 rooms x 1,000 clients, 100 senders, 2,000 messages/s in total
//! target/release/chatd-fanout --config benches/bench.toml --backend poll \
//!     --clients 10000 --rooms 10 --senders 100 --rate 2000 --seconds 10
//! ```

use std::time::Duration;

use chatd_benches::fanout::{self, FanoutPlan};
use chatd_benches::server;
use clap::Parser;

/// Fan-out throughput and latency.
#[derive(Debug, Parser)]
struct Args {
    /// Connected clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Rooms (client i joins room i % rooms).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Senders.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Total messages per second; flat out if absent.
    #[arg(long)]
    rate: Option<u64>,
    /// Flat out: messages in flight per sender.
    #[arg(long, default_value_t = 64)]
    in_flight: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Sending time in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Generator reader threads.
    #[arg(long, default_value_t = 2)]
    readers: usize,
    #[command(flatten)]
    launch: server::Launch,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = server::ServerProcess::launch(&args.launch)?;
    let plan = FanoutPlan {
        clients: args.clients,
        rooms: args.rooms,
        senders: args.senders,
        rate: args.rate,
        in_flight: args.in_flight,
        payload: args.payload,
        duration: Duration::from_secs(args.seconds),
        reader_threads: args.readers,
    };
    let own_cpu_before = server::self_cpu_time()?;
    let cpu_before = server.cpu_time()?;
    let report = fanout::run(server.addr, &plan, true)?;
    let server_cpu = server.cpu_time()? - cpu_before;
    let own_cpu = server::self_cpu_time()? - own_cpu_before;
    let peak = server.peak_rss_bytes()?;
    let latency = &report.latency;
    println!(
        "backend {}: {} clients / {} rooms / {} senders, {}: sent {}, delivered {} of {} (lost {}), {:.0} deliveries/s; latency p50 {} us, p90 {} us, p99 {} us, p99.9 {} us, max {} us; server CPU {:.2} s ({:.0} ns per delivery), generator CPU {:.2} s, server peak RSS {:.1} MiB",
        args.launch.backend,
        plan.clients,
        plan.rooms,
        plan.senders,
        plan.rate.map_or_else(
            || format!("flat out, {} in flight", plan.in_flight),
            |r| format!("{r} msgs/s")
        ),
        report.sent,
        report.delivered,
        report.expected,
        report.lost(),
        report.deliveries_per_second(),
        latency.quantile(0.5),
        latency.quantile(0.9),
        latency.quantile(0.99),
        latency.quantile(0.999),
        latency.max(),
        server_cpu.as_secs_f64(),
        server_cpu.as_nanos() as f64 / report.delivered.max(1) as f64,
        own_cpu.as_secs_f64(),
        peak as f64 / 1_048_576.0,
    );
    Ok(())
}
