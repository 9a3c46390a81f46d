//! What TLS costs, against plain text on the same build and backend:
//! S1 over TLS, full handshakes per second, and server memory per idle
//! TLS connection.
//!
//! Each server is started with both a plain and a TLS native listener
//! (`--tls-bind 127.0.0.1:0 --tls-self-signed`), so plain and TLS runs
//! differ only in the transport. Handshakes are full ones: the client
//! keeps no session to resume. The generator does the client half of
//! every handshake and of every record on the same two cores, so its CPU
//! is quoted beside each figure.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rustls::ClientConfig;

use crate::bench_stream::{BenchStream, trusting_client_config};
use crate::connect::{self, connect_from, source_for};
use crate::fanout::{self, FanoutPlan, Peer};
use crate::server::{Launch, ServerProcess, self_cpu_time};

/// S1 over TLS, handshakes per second and idle TLS memory, against plain.
#[derive(Debug, Parser)]
pub struct TlsArgs {
    /// Backends to measure, comma-separated.
    #[arg(long, default_value = "poll,iocp", value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Rounds of S1, plain and TLS alternating; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Sending time of each S1 run, in seconds.
    #[arg(long, default_value_t = 8)]
    pub seconds: u64,
    /// How long to make handshakes, in seconds.
    #[arg(long, default_value_t = 5)]
    pub handshake_seconds: u64,
    /// Threads making handshakes (each connects, handshakes, reads the
    /// welcome and hangs up, in a loop).
    #[arg(long, default_value_t = 2)]
    pub handshake_threads: usize,
    /// Idle connections for the memory figure.
    #[arg(long, default_value_t = 2_000)]
    pub idle: usize,
    /// How to start chatd (`--backend` is ignored: see `--backends`).
    #[command(flatten)]
    pub launch: Launch,
}

/// The flags that give a server a TLS listener beside the plain one.
const TLS_FLAGS: [&str; 3] = ["--tls-bind", "127.0.0.1:0", "--tls-self-signed"];

impl TlsArgs {
    /// Runs every measurement and prints a table per backend.
    pub fn run(self) -> anyhow::Result<()> {
        let config = trusting_client_config();
        for backend in &self.backends {
            let s1 = self.s1(backend, &config)?;
            let handshakes = self.handshakes(backend, &config)?;
            let idle_plain = self.idle(backend, None)?;
            let idle_tls = self.idle(backend, Some(&config))?;
            println!("backend {backend} ({}):", self.launch.config.display());
            println!(
                "  S1 plain  {:>10.0} deliveries/s  (median of {}; server {:.0} ns/delivery, generator CPU {:.1} s/run)",
                s1.plain.rate, self.rounds, s1.plain.server_ns, s1.plain.generator_s
            );
            println!(
                "  S1 TLS    {:>10.0} deliveries/s  (median of {}; server {:.0} ns/delivery, generator CPU {:.1} s/run) = {:.2} of plain",
                s1.tls.rate,
                self.rounds,
                s1.tls.server_ns,
                s1.tls.generator_s,
                s1.tls.rate / s1.plain.rate.max(1.0)
            );
            println!(
                "  handshakes {:>9.0} /s over {} threads ({} in {:.1} s; server {:.0} us CPU each, generator {:.0} us each)",
                handshakes.per_second(),
                self.handshake_threads,
                handshakes.count,
                handshakes.elapsed.as_secs_f64(),
                handshakes.server_cpu.as_secs_f64() * 1e6 / handshakes.count.max(1) as f64,
                handshakes.generator_cpu.as_secs_f64() * 1e6 / handshakes.count.max(1) as f64,
            );
            println!(
                "  idle      plain {:.0} B, TLS {:.0} B per connection ({} connections each)",
                idle_plain, idle_tls, self.idle
            );
        }
        Ok(())
    }

    fn server(&self, backend: &str) -> anyhow::Result<ServerProcess> {
        ServerProcess::launch_backend(&self.launch, backend, &TLS_FLAGS)
    }

    /// S1 (1 room of 100, 10 senders flat out, 64 in flight), plain and
    /// TLS alternating on fresh servers.
    fn s1(&self, backend: &str, config: &Arc<ClientConfig>) -> anyhow::Result<S1Pair> {
        let mut plain = Vec::new();
        let mut tls = Vec::new();
        for round in 0..self.rounds {
            for secure in [false, true] {
                let server = self.server(backend)?;
                let plan = FanoutPlan::s1(
                    Duration::from_secs(self.seconds),
                    secure.then(|| config.clone()),
                    false,
                );
                let addr = if secure {
                    server.tls_addr()?
                } else {
                    server.addr
                };
                let measured = fanout::measure_at(&server, addr, &Peer::Chatd, &plan, false)?;
                let run = S1Run::of(&measured);
                eprintln!(
                    "  {backend} round {} {}: {:.0} deliveries/s, lost {}",
                    round + 1,
                    if secure { "TLS" } else { "plain" },
                    run.rate,
                    measured.report.lost()
                );
                if secure { &mut tls } else { &mut plain }.push(run);
            }
        }
        Ok(S1Pair {
            plain: S1Run::median(plain),
            tls: S1Run::median(tls),
        })
    }

    /// Full handshakes, each followed by the welcome line, for a while.
    fn handshakes(&self, backend: &str, config: &Arc<ClientConfig>) -> anyhow::Result<Handshakes> {
        let server = self.server(backend)?;
        let addr = server.tls_addr()?;
        let count = AtomicU64::new(0);
        let duration = Duration::from_secs(self.handshake_seconds);
        let (server_before, generator_before) = (server.cpu_time()?, self_cpu_time()?);
        let start = Instant::now();
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let workers: Vec<_> = (0..self.handshake_threads)
                .map(|worker| {
                    let count = &count;
                    scope.spawn(move || -> anyhow::Result<()> {
                        // Each worker its own source address: closed
                        // connections sit in TIME_WAIT on the client side.
                        let source = source_for(worker * connect::PER_SOURCE);
                        while start.elapsed() < duration {
                            handshake_once(addr, source, config.clone())?;
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(())
                    })
                })
                .collect();
            for worker in workers {
                worker
                    .join()
                    .map_err(|_| anyhow::anyhow!("a handshake thread panicked"))??;
            }
            Ok(())
        })?;
        Ok(Handshakes {
            count: count.load(Ordering::Relaxed),
            elapsed: start.elapsed(),
            server_cpu: server.cpu_time()?.saturating_sub(server_before),
            generator_cpu: self_cpu_time()?.saturating_sub(generator_before),
        })
    }

    /// Server RSS growth per idle connection, plain (`None`) or TLS.
    fn idle(&self, backend: &str, tls: Option<&Arc<ClientConfig>>) -> anyhow::Result<f64> {
        let server = self.server(backend)?;
        let addr = match tls {
            Some(_) => server.tls_addr()?,
            None => server.addr,
        };
        std::thread::sleep(Duration::from_millis(200));
        let before = server.rss_bytes()?;
        let mut open = Vec::with_capacity(self.idle);
        for i in 0..self.idle {
            let socket = connect_from(addr, source_for(i))?;
            let mut stream = match tls {
                Some(config) => BenchStream::handshake(socket, config.clone())?,
                None => BenchStream::Plain(socket),
            };
            read_welcome(&mut stream).with_context(|| format!("idle connection {i}"))?;
            open.push(stream);
        }
        // Idle: let the server finish any deferred work.
        std::thread::sleep(Duration::from_millis(500));
        let after = server.rss_bytes()?;
        drop(open);
        Ok(after.saturating_sub(before) as f64 / self.idle.max(1) as f64)
    }
}

/// Connects from `source`, completes a full handshake, reads the welcome
/// line and hangs up.
fn handshake_once(
    addr: SocketAddr,
    source: std::net::IpAddr,
    config: Arc<ClientConfig>,
) -> anyhow::Result<()> {
    let socket = connect_from(addr, source).context("connect")?;
    let mut stream = BenchStream::handshake(socket, config).context("handshake")?;
    read_welcome(&mut stream)?;
    // Say goodbye properly, so the server's side ends without an error.
    let _ = stream.write_all(b"#quit\n");
    Ok(())
}

/// Reads until the end of chatd's welcome line.
pub(crate) fn read_welcome(stream: &mut BenchStream) -> anyhow::Result<()> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 512];
    while !seen.contains(&b'\n') {
        let n = stream.read(&mut buffer)?;
        anyhow::ensure!(n > 0, "closed before the welcome line");
        seen.extend_from_slice(&buffer[..n]);
    }
    anyhow::ensure!(
        seen.starts_with(b"* welcome"),
        "unexpected first line {:?}",
        String::from_utf8_lossy(&seen)
    );
    Ok(())
}

/// One S1 run's figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct S1Run {
    pub(crate) rate: f64,
    pub(crate) server_ns: f64,
    pub(crate) generator_s: f64,
}

impl S1Run {
    /// The figures of one measured run.
    pub(crate) fn of(measured: &fanout::FanoutMeasurement) -> Self {
        Self {
            rate: measured.report.deliveries_per_second(),
            server_ns: measured.server_cpu.as_nanos() as f64
                / measured.report.delivered.max(1) as f64,
            generator_s: measured.generator_cpu.as_secs_f64(),
        }
    }

    /// The run with the median rate.
    pub(crate) fn median(mut runs: Vec<S1Run>) -> S1Run {
        runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        runs.get(runs.len() / 2).copied().unwrap_or(S1Run {
            rate: 0.0,
            server_ns: 0.0,
            generator_s: 0.0,
        })
    }
}

/// S1's median plain and TLS runs.
struct S1Pair {
    plain: S1Run,
    tls: S1Run,
}

/// What the handshake loop measured.
struct Handshakes {
    count: u64,
    elapsed: Duration,
    server_cpu: Duration,
    generator_cpu: Duration,
}

impl Handshakes {
    fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}
