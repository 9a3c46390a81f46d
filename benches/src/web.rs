//! What the HTTP listener costs, against plain TCP on the same build and
//! backend: S1 with every client on a WebSocket, S1 while `/metrics` is
//! scraped once a second, and server memory per idle WebSocket.
//!
//! Each server is started with its HTTP listener (`--http-bind
//! 127.0.0.1:0`), so TCP and WebSocket runs differ only in the transport.
//! Runs alternate on fresh servers and medians are reported, as in
//! `chatd bench tls`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::bench_stream::BenchStream;
use crate::connect::{connect_from, source_for};
use crate::fanout::{self, FanoutPlan, Peer};
use crate::server::{Launch, ServerProcess};
use crate::tls::{S1Run, read_welcome};

/// S1 over WebSocket, S1 under a `/metrics` scrape, idle WebSocket memory.
#[derive(Debug, Parser)]
pub struct WebArgs {
    /// Backends to measure, comma-separated.
    #[arg(long, default_value = "poll,iocp", value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Rounds of each S1 pair; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Sending time of each S1 run, in seconds.
    #[arg(long, default_value_t = 8)]
    pub seconds: u64,
    /// Idle connections for the memory figure.
    #[arg(long, default_value_t = 2_000)]
    pub idle: usize,
    /// How to start chatd (`--backend` is ignored: see `--backends`).
    #[command(flatten)]
    pub launch: Launch,
}

/// The flags that give a server its HTTP listener.
const HTTP_FLAGS: [&str; 2] = ["--http-bind", "127.0.0.1:0"];

/// Scrapes in one batch of the CPU measurement.
const SCRAPES_PER_BATCH: usize = 500;

/// Connections open while scrapes are timed (S1's size).
const SCRAPE_CONNECTIONS: usize = 100;

/// How often `/metrics` is scraped during the scraped runs.
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

impl WebArgs {
    /// Runs every measurement and prints a table per backend.
    pub fn run(self) -> anyhow::Result<()> {
        for backend in &self.backends {
            let transport = self.pairs(backend, Variant::WebSocket)?;
            let scrape = self.pairs(backend, Variant::Scraped)?;
            let scrape_cpu = self.scrape_cpu(backend)?;
            let idle_tcp = self.idle(backend, false)?;
            let idle_web = self.idle(backend, true)?;
            println!("backend {backend} ({}):", self.launch.config.display());
            println!(
                "  S1 TCP        {:>10.0} deliveries/s  (median of {}; server {:.0} ns/delivery)",
                transport.base.rate, self.rounds, transport.base.server_ns
            );
            println!(
                "  S1 WebSocket  {:>10.0} deliveries/s  (median of {}; server {:.0} ns/delivery) = {:.3} of TCP",
                transport.other.rate,
                self.rounds,
                transport.other.server_ns,
                transport.other.rate / transport.base.rate.max(1.0)
            );
            println!(
                "  S1 scraped    {:>10.0} deliveries/s  (median of {}; /metrics every {:?}, {} scrapes in all) = {:.3} of unscraped {:.0}",
                scrape.other.rate,
                self.rounds,
                SCRAPE_EVERY,
                scrape.scrapes,
                scrape.other.rate / scrape.base.rate.max(1.0),
                scrape.base.rate
            );
            println!(
                "  one scrape    {:.0} us of server CPU (median of {} batches of {SCRAPES_PER_BATCH}, {SCRAPE_CONNECTIONS} connections open) = {:.4}% of one core at one scrape a second",
                scrape_cpu * 1e6,
                self.rounds,
                scrape_cpu * 100.0
            );
            println!(
                "  idle          TCP {:.0} B, WebSocket {:.0} B per connection ({} connections each)",
                idle_tcp, idle_web, self.idle
            );
        }
        Ok(())
    }

    /// S1 (1 room of 100, 10 senders flat out, 64 in flight) on TCP
    /// against `variant`, alternating on fresh servers.
    fn pairs(&self, backend: &str, variant: Variant) -> anyhow::Result<Pair> {
        let mut base = Vec::new();
        let mut other = Vec::new();
        let mut scrapes = 0;
        for round in 0..self.rounds {
            for changed in [false, true] {
                let server = ServerProcess::launch_backend(&self.launch, backend, &HTTP_FLAGS)?;
                let web = changed && variant == Variant::WebSocket;
                let plan = FanoutPlan::s1(Duration::from_secs(self.seconds), None, web);
                let addr = if web {
                    server.http_addr()?
                } else {
                    server.addr
                };
                let scraping = changed && variant == Variant::Scraped;
                let stop = AtomicBool::new(false);
                let scraped = AtomicU64::new(0);
                let http = server.http_addr()?;
                let measured = std::thread::scope(|scope| {
                    if scraping {
                        scope.spawn(|| scrape_until(http, &stop, &scraped));
                    }
                    let measured = fanout::measure_at(&server, addr, &Peer::Chatd, &plan, false);
                    stop.store(true, Ordering::SeqCst);
                    measured
                })?;
                scrapes += scraped.load(Ordering::SeqCst);
                let run = S1Run::of(&measured);
                eprintln!(
                    "  {backend} round {} {}: {:.0} deliveries/s, lost {}",
                    round + 1,
                    if changed { variant.name() } else { "TCP" },
                    run.rate,
                    measured.report.lost()
                );
                if changed { &mut other } else { &mut base }.push(run);
            }
        }
        Ok(Pair {
            base: S1Run::median(base),
            other: S1Run::median(other),
            scrapes,
        })
    }

    /// Server CPU seconds one `/metrics` answer costs, with
    /// [`SCRAPE_CONNECTIONS`] connections open (the gauges walk them):
    /// the median over `rounds` batches of back-to-back scrapes.
    fn scrape_cpu(&self, backend: &str) -> anyhow::Result<f64> {
        let server = ServerProcess::launch_backend(&self.launch, backend, &HTTP_FLAGS)?;
        let http = server.http_addr()?;
        let mut open = Vec::with_capacity(SCRAPE_CONNECTIONS);
        for i in 0..SCRAPE_CONNECTIONS {
            let mut stream = BenchStream::Plain(connect_from(server.addr, source_for(i))?);
            read_welcome(&mut stream)?;
            open.push(stream);
        }
        let mut batches = Vec::with_capacity(self.rounds);
        for _ in 0..self.rounds.max(1) {
            let before = server.cpu_time()?;
            for _ in 0..SCRAPES_PER_BATCH {
                let mut stream = TcpStream::connect(http)?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                write!(stream, "GET /metrics HTTP/1.1\r\nHost: {http}\r\n\r\n")?;
                let mut answer = Vec::new();
                stream.read_to_end(&mut answer)?;
                anyhow::ensure!(answer.starts_with(b"HTTP/1.1 200 "), "a scrape failed");
            }
            let spent = server.cpu_time()?.saturating_sub(before);
            batches.push(spent.as_secs_f64() / SCRAPES_PER_BATCH as f64);
        }
        drop(open);
        batches.sort_by(f64::total_cmp);
        Ok(batches[batches.len() / 2])
    }

    /// Server RSS growth per idle connection, TCP or WebSocket.
    fn idle(&self, backend: &str, web: bool) -> anyhow::Result<f64> {
        let server = ServerProcess::launch_backend(&self.launch, backend, &HTTP_FLAGS)?;
        let addr = if web {
            server.http_addr()?
        } else {
            server.addr
        };
        std::thread::sleep(Duration::from_millis(200));
        let before = server.rss_bytes()?;
        let mut open = Vec::with_capacity(self.idle);
        for i in 0..self.idle {
            let socket = connect_from(addr, source_for(i))?;
            socket.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut stream = if web {
                BenchStream::upgrade(socket, addr, "/ws")?
            } else {
                BenchStream::Plain(socket)
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

/// What a pair of runs changes against plain S1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Every client on a WebSocket.
    WebSocket,
    /// `/metrics` scraped every [`SCRAPE_EVERY`] meanwhile.
    Scraped,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::WebSocket => "WebSocket",
            Self::Scraped => "scraped",
        }
    }
}

/// GETs `/metrics` every [`SCRAPE_EVERY`] until `stop`, counting answers.
fn scrape_until(http: SocketAddr, stop: &AtomicBool, scraped: &AtomicU64) {
    while !stop.load(Ordering::SeqCst) {
        let started = std::time::Instant::now();
        if let Ok(mut stream) = TcpStream::connect(http) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut answer = Vec::new();
            if write!(stream, "GET /metrics HTTP/1.1\r\nHost: {http}\r\n\r\n").is_ok()
                && stream.read_to_end(&mut answer).is_ok()
                && answer.starts_with(b"HTTP/1.1 200 ")
            {
                scraped.fetch_add(1, Ordering::SeqCst);
            }
        }
        while started.elapsed() < SCRAPE_EVERY && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A pair's medians: plain S1 and the variant.
struct Pair {
    base: S1Run,
    other: S1Run,
    scrapes: u64,
}
