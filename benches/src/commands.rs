//! The measurement commands, shared by the `chatd-*` binaries and
//! `chatd bench`. Every one starts what it measures itself, talks only to
//! loopback addresses and stops by itself.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::compare::CompareArgs;
use chatd_core::Dialect;

use crate::fanout::{self, FanoutMeasurement, FanoutPlan};
use crate::oper_flood::{self, FloodPlan};
use crate::server::{Launch, ServerProcess, chatd_peer, parse_dialect};
use crate::{connect, micro, relay, rtt};

/// `chatd bench`: measurements of chatd, loopback only.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Both backends and the peers, alternating over rounds: one table and
    /// one chart.
    Compare(CompareArgs),
    /// Fan-out throughput and latency against one backend.
    Fanout(FanoutArgs),
    /// Idle connections: time to connect them all, server RSS per connection.
    Idle(IdleArgs),
    /// Round-trip latency of `#ping` through the server.
    Rtt(RttArgs),
    /// Round-trip latency without and with a flood of wrong `#oper`
    /// passwords from other addresses.
    OperFlood(OperFloodArgs),
    /// Core microbenchmarks without sockets.
    Micro,
    /// A bare relay (the trivial sink for the generator's ceiling).
    Relay(RelayArgs),
    /// A long steady chat: loss, latency, server RSS and fds over time.
    Soak(crate::soak::SoakArgs),
    /// Another client's round trips without and with slow or flooding
    /// attackers.
    Attack(crate::attack::AttackArgs),
    /// Start-up time and RSS of the server on 0, 1 M and 10 M records of
    /// history (generated data directories).
    History(crate::history::HistoryArgs),
    /// `#history before ID 50` and `#search WORD` latency, idle and under
    /// an S2-lite load, on 1 M records of history.
    HistoryLatency(crate::history_latency::HistoryLatencyArgs),
    /// What TLS costs against plain text: S1 over TLS, full handshakes
    /// per second, server memory per idle TLS connection.
    Tls(crate::tls::TlsArgs),
    /// What the HTTP listener costs against plain TCP: S1 with every
    /// client on a WebSocket, S1 while /metrics is scraped once a second,
    /// server memory per idle WebSocket.
    Web(crate::web::WebArgs),
    /// Two nodes of a cluster through one Redis against one node: S1 with
    /// the room split over both nodes and S2-lite across them, with
    /// Redis's CPU.
    Cluster(crate::cluster::ClusterArgs),
}

impl BenchCommand {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Compare(args) => crate::compare::run(&args),
            Self::Fanout(args) => args.run(),
            Self::Idle(args) => args.run(),
            Self::Rtt(args) => args.run(),
            Self::OperFlood(args) => args.run(),
            Self::Micro => {
                micro::run();
                Ok(())
            }
            Self::Relay(args) => args.run(),
            Self::Soak(args) => args.run(),
            Self::Attack(args) => args.run(),
            Self::History(args) => args.run(),
            Self::HistoryLatency(args) => args.run(),
            Self::Tls(args) => args.run(),
            Self::Web(args) => args.run(),
            Self::Cluster(args) => args.run(),
        }
    }
}

/// Fan-out throughput and latency.
#[derive(Debug, Parser)]
pub struct FanoutArgs {
    /// Connected clients.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Rooms (client i joins room i % rooms).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Senders.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Total messages per second; flat out if absent.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Flat out: messages in flight per sender.
    #[arg(long, default_value_t = 64)]
    pub in_flight: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Sending time in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Generator reader threads.
    #[arg(long, default_value_t = 2)]
    pub readers: usize,
    /// Keep history in memory only (the server's --no-persist).
    #[arg(long)]
    pub no_persist: bool,
    /// What the clients speak: native, or irc (NICK/USER, JOIN, PRIVMSG
    /// on chatd's IRC listener, started on a free port).
    #[arg(long, default_value = "native", value_parser = parse_dialect)]
    pub dialect: Dialect,
    /// How to start chatd.
    #[command(flatten)]
    pub launch: Launch,
}

impl FanoutArgs {
    /// Runs and prints one line.
    pub fn run(self) -> anyhow::Result<()> {
        let extra: &[&str] = if self.no_persist {
            &["--no-persist"]
        } else {
            &[]
        };
        let server =
            ServerProcess::launch_dialect(&self.launch, &self.launch.backend, extra, self.dialect)?;
        let plan = FanoutPlan {
            clients: self.clients,
            rooms: self.rooms,
            senders: self.senders,
            rate: self.rate,
            in_flight: self.in_flight,
            payload: self.payload,
            duration: Duration::from_secs(self.seconds),
            reader_threads: self.readers,
            tls: None,
            web: false,
        };
        let measured = fanout::measure(&server, &chatd_peer(self.dialect), &plan, true)?;
        println!(
            "backend {} ({}, {}): {} clients / {} rooms / {} senders, {}: {}",
            self.launch.backend,
            self.dialect,
            self.launch.config.display(),
            plan.clients,
            plan.rooms,
            plan.senders,
            plan.rate.map_or_else(
                || format!("flat out, {} in flight", plan.in_flight),
                |r| format!("{r} msgs/s")
            ),
            describe(&measured),
        );
        Ok(())
    }
}

/// One line with everything a fan-out run measured.
pub fn describe(measured: &FanoutMeasurement) -> String {
    let report = &measured.report;
    let latency = &report.latency;
    format!(
        "sent {}, delivered {} of {} (lost {}), {:.0} deliveries/s; latency p50 {} us, p90 {} us, p99 {} us, p99.9 {} us, max {} us; server CPU {:.2} s ({:.0} ns per delivery), generator CPU {:.2} s, server peak RSS {:.1} MiB",
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
        measured.server_cpu.as_secs_f64(),
        measured.server_cpu.as_nanos() as f64 / report.delivered.max(1) as f64,
        measured.generator_cpu.as_secs_f64(),
        measured.server_peak_rss as f64 / 1_048_576.0,
    )
}

/// Server RSS per idle connection.
#[derive(Debug, Parser)]
pub struct IdleArgs {
    /// Connections to open (at most about 19,990 with a 20,000-file limit).
    #[arg(long, default_value_t = 1_000)]
    pub connections: usize,
    /// What the connections speak: native (wait for the welcome line), or
    /// irc (register with NICK/USER, JOIN a room of 100, wait for its
    /// 366; chatd's IRC listener is started on a free port).
    #[arg(long, default_value = "native", value_parser = parse_dialect)]
    pub dialect: Dialect,
    /// How to start chatd.
    #[command(flatten)]
    pub launch: Launch,
}

impl IdleArgs {
    /// Runs and prints one line.
    pub fn run(self) -> anyhow::Result<()> {
        let server =
            ServerProcess::launch_dialect(&self.launch, &self.launch.backend, &[], self.dialect)?;
        let report = connect::run(&server, self.connections, self.dialect, true)?;
        println!(
            "backend {} ({}, {}): {} of {} connected, {} failures, in {:.2} s; server RSS {:.1} MiB -> {:.1} MiB = {:.0} bytes per connection",
            self.launch.backend,
            self.dialect,
            self.launch.config.display(),
            report.connected,
            report.requested,
            report.failures,
            report.elapsed.as_secs_f64(),
            report.rss_before as f64 / 1_048_576.0,
            report.rss_after as f64 / 1_048_576.0,
            report.rss_per_connection(),
        );
        Ok(())
    }
}

/// Round-trip latency of #ping through the server.
#[derive(Debug, Parser)]
pub struct RttArgs {
    /// Round trips to time.
    #[arg(long, default_value_t = 20_000)]
    pub pings: usize,
    /// How to start chatd.
    #[command(flatten)]
    pub launch: Launch,
}

impl RttArgs {
    /// Runs and prints one line.
    pub fn run(self) -> anyhow::Result<()> {
        let server = ServerProcess::launch(&self.launch)?;
        let report = rtt::run(&server, self.pings)?;
        println!(
            "backend {} ({}): {} round trips; p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us; server CPU {:.1} us per round trip",
            self.launch.backend,
            self.launch.config.display(),
            report.samples.len(),
            report.quantile_us(0.5),
            report.quantile_us(0.9),
            report.quantile_us(0.99),
            report.quantile_us(1.0),
            report.cpu_per_trip_us(),
        );
        Ok(())
    }
}

/// Round trips without and with a flood of wrong `#oper` passwords.
#[derive(Debug, Parser)]
pub struct OperFloodArgs {
    /// Flooding addresses (127.0.0.2 onwards), one connection each.
    #[arg(long, default_value_t = 10)]
    pub addresses: usize,
    /// Wrong passwords per burst, sent before reading their answers.
    #[arg(long, default_value_t = 20)]
    pub burst: usize,
    /// Milliseconds between one flooder's bursts.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// A new unknown name with every attempt, instead of the operator's.
    #[arg(long)]
    pub spread_names: bool,
    /// Seconds each round-trip phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Microseconds between the timing client's pings.
    #[arg(long, default_value_t = 1000)]
    pub ping_interval_us: u64,
    /// How to start chatd (`--config` gets an operator added).
    #[command(flatten)]
    pub launch: Launch,
}

impl OperFloodArgs {
    /// Runs and prints both phases.
    pub fn run(self) -> anyhow::Result<()> {
        let config = oper_flood::config_with_operator(&self.launch.config)?;
        let launch = Launch {
            config: config.clone(),
            ..self.launch.clone()
        };
        // Each failed login is a warning; thousands of them would only
        // make the bench echo them (it echoes the server's warnings).
        let quiet_auth = ["--log-level", "info,chatd_engine::auth=error"];
        let server = ServerProcess::launch_backend(&launch, &launch.backend, &quiet_auth);
        let _ = std::fs::remove_file(&config);
        let plan = FloodPlan {
            addresses: self.addresses,
            burst: self.burst,
            interval: Duration::from_millis(self.interval_ms),
            spread_names: self.spread_names,
            seconds: self.seconds,
            ping_interval: Duration::from_micros(self.ping_interval_us),
        };
        let report = oper_flood::measure(&server?, &plan)?;
        for (phase, rtt) in [("alone", &report.quiet), ("flooded", &report.flooded)] {
            println!(
                "backend {} {phase:>7}: {} round trips; p50 {:.1} us, p99 {:.1} us, max {:.1} us",
                self.launch.backend,
                rtt.samples.len(),
                rtt.quantile_us(0.5),
                rtt.quantile_us(0.99),
                rtt.quantile_us(1.0),
            );
        }
        let flood = &report.flood;
        println!(
            "flood ({} addresses, {} per burst every {} ms, {}) while timed: {} wrong passwords sent, answers: {} bad-credentials, {} try-later",
            plan.addresses,
            plan.burst,
            plan.interval.as_millis(),
            if plan.spread_names {
                "a new unknown name each"
            } else {
                "all at the operator's name"
            },
            flood.sent,
            flood.checked,
            flood.refused,
        );
        println!(
            "p99 alone {:.1} us, p99 flooded {:.1} us",
            report.quiet.quantile_us(0.99),
            report.flooded.quantile_us(0.99),
        );
        Ok(())
    }
}

/// The bare relay's address.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:9099")]
    pub bind: std::net::SocketAddr,
}

impl RelayArgs {
    /// Serves until killed.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.bind.ip().is_loopback(),
            "the relay serves loopback addresses only"
        );
        // The same accept queue as chatd's: 10,000 clients connect at once.
        relay::serve(chatd_engine::listener::listen(self.bind)?)?;
        Ok(())
    }
}
