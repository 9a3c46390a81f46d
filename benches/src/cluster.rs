//! Two chatd nodes through one Redis, against one node, on this machine:
//! S1 with the room's 100 members split over the two nodes, and S2-lite
//! (10 rooms of 100, 100 senders, 200 messages/s in all) with every room
//! split the same way, with Redis's CPU beside each figure.
//!
//! Both nodes and Redis share the machine's cores with the generator, so
//! the cluster figures are a floor for separate machines, not a forecast.
//! Runs alternate one node / two nodes on fresh servers (and a fresh
//! Redis), and medians are reported.

use std::cell::Cell;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chatd_core::Dialect;
use clap::Parser;

use crate::fanout::{self, FanoutPlan, FanoutReport, Peer};
use crate::server::{Launch, ServerProcess, self_cpu_time};

/// S1 and S2-lite on two nodes of a cluster against one node.
#[derive(Debug, Parser)]
pub struct ClusterArgs {
    /// Rounds of each pair; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Sending time of each run, in seconds.
    #[arg(long, default_value_t = 8)]
    pub seconds: u64,
    /// The Redis server to start.
    #[arg(long, default_value = "redis-server")]
    pub redis_server: PathBuf,
    /// How to start chatd.
    #[command(flatten)]
    pub launch: Launch,
}

/// One run's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    rate: f64,
    p99_ms: f64,
    lost: u64,
    /// Every chatd node's CPU, in seconds per second of sending.
    nodes_cpu: f64,
    /// Redis's CPU, in seconds per second of sending.
    redis_cpu: f64,
    generator_cpu: f64,
}

/// The two shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    S1,
    S2Lite,
}

impl Shape {
    fn plan(self, seconds: u64) -> FanoutPlan {
        let duration = Duration::from_secs(seconds);
        match self {
            Shape::S1 => FanoutPlan::s1(duration, None, false),
            Shape::S2Lite => FanoutPlan::paced(1_000, 10, 100, 200, duration),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Shape::S1 => "S1",
            Shape::S2Lite => "S2-lite",
        }
    }
}

impl ClusterArgs {
    /// Runs both shapes and prints one table.
    pub fn run(self) -> anyhow::Result<()> {
        println!(
            "cluster, backend {} ({}), median of {} rounds of {} s:",
            self.launch.backend,
            self.launch.config.display(),
            self.rounds,
            self.seconds
        );
        for shape in [Shape::S1, Shape::S2Lite] {
            let mut single = Vec::new();
            let mut double = Vec::new();
            for _ in 0..self.rounds {
                single.push(self.one_node(shape)?);
                double.push(self.two_nodes(shape)?);
            }
            let (one, two) = (median(&single), median(&double));
            println!(
                "  {:<8} one node  {:>10.0} deliveries/s  p99 {:>6.2} ms  lost {:>6}  chatd CPU {:.2}  generator CPU {:.2}",
                shape.name(),
                one.rate,
                one.p99_ms,
                one.lost,
                one.nodes_cpu,
                one.generator_cpu
            );
            println!(
                "  {:<8} two nodes {:>10.0} deliveries/s  p99 {:>6.2} ms  lost {:>6}  chatd CPU {:.2}  Redis CPU {:.2}  generator CPU {:.2}  = {:.2} of one node, p99 {:+.2} ms",
                "",
                two.rate,
                two.p99_ms,
                two.lost,
                two.nodes_cpu,
                two.redis_cpu,
                two.generator_cpu,
                two.rate / one.rate.max(1.0),
                two.p99_ms - one.p99_ms
            );
        }
        println!("  (CPU in cores: seconds of CPU per second of sending)");
        Ok(())
    }

    fn one_node(&self, shape: Shape) -> anyhow::Result<Figures> {
        let data = scratch("single")?;
        let node = ServerProcess::launch_in(
            &self.launch,
            &self.launch.backend,
            &[],
            Dialect::Native,
            &data,
        )?;
        let result = measure(&[&node], None, shape.plan(self.seconds));
        drop(node);
        let _ = std::fs::remove_dir_all(&data);
        result
    }

    fn two_nodes(&self, shape: Shape) -> anyhow::Result<Figures> {
        let redis = self.start_redis()?;
        let url = format!("redis://{}/0", redis.addr);
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for name in ["n1", "n2"] {
            let data = scratch(name)?;
            let flags = [
                "--cluster",
                &url,
                "--node-name",
                name,
                "--http-bind",
                "127.0.0.1:0",
            ];
            nodes.push(ServerProcess::launch_in(
                &self.launch,
                &self.launch.backend,
                &flags,
                Dialect::Native,
                &data,
            )?);
            dirs.push(data);
        }
        for node in &nodes {
            wait_ready(node)?;
        }
        let refs: Vec<&ServerProcess> = nodes.iter().collect();
        let result = measure(&refs, Some(&redis), shape.plan(self.seconds));
        drop(nodes);
        for dir in dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        result
    }

    /// A fresh Redis on a free loopback port, without persistence (the
    /// cluster's history durability is a test, not this measurement).
    fn start_redis(&self) -> anyhow::Result<ServerProcess> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = scratch(&format!("redis-{port}"))?;
        let argv = [
            self.redis_server.display().to_string(),
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.display().to_string(),
        ];
        ServerProcess::start_peer(&argv, SocketAddr::from(([127, 0, 0, 1], port)), dir)
            .with_context(|| {
                format!(
                    "start {} (apt-get install redis-server)",
                    self.redis_server.display()
                )
            })
    }
}

/// Runs `plan` with its clients dealt over `nodes`, measuring every
/// node's CPU, Redis's and the generator's from the first message sent.
fn measure(
    nodes: &[&ServerProcess],
    redis: Option<&ServerProcess>,
    plan: FanoutPlan,
) -> anyhow::Result<Figures> {
    let addrs: Vec<SocketAddr> = nodes.iter().map(|node| node.addr).collect();
    let cpu = || -> anyhow::Result<(Duration, Duration, Duration)> {
        let mut chatd = Duration::ZERO;
        for node in nodes {
            chatd += node.cpu_time()?;
        }
        let redis = match redis {
            Some(redis) => redis.cpu_time()?,
            None => Duration::ZERO,
        };
        Ok((chatd, redis, self_cpu_time()?))
    };
    let started = Cell::new(Instant::now());
    let (report, before): (FanoutReport, _) =
        fanout::run_then(&addrs, &Peer::Chatd, &plan, false, || {
            started.set(Instant::now());
            cpu()
        })?;
    let after = cpu()?;
    let seconds = started.get().elapsed().as_secs_f64().max(1e-9);
    Ok(Figures {
        rate: report.deliveries_per_second(),
        p99_ms: report.latency.quantile(0.99) as f64 / 1000.0,
        lost: report.lost(),
        nodes_cpu: (after.0 - before.0).as_secs_f64() / seconds,
        redis_cpu: (after.1 - before.1).as_secs_f64() / seconds,
        generator_cpu: (after.2 - before.2).as_secs_f64() / seconds,
    })
}

/// Waits until a node's `/readyz` answers 200: its bus reached Redis.
fn wait_ready(node: &ServerProcess) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let http = node.http_addr()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut answer = String::new();
        if let Ok(mut stream) = TcpStream::connect(http) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n");
            let _ = stream.read_to_string(&mut answer);
        }
        if answer.starts_with("HTTP/1.1 200") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("a node was not ready within 10 s: {answer:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh scratch directory for one process of one run.
fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("chatd-bench-cluster-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
    Ok(dir)
}

/// The median of each figure on its own.
fn median(runs: &[Figures]) -> Figures {
    let pick = |field: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(field).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or_default()
    };
    let mut lost: Vec<u64> = runs.iter().map(|f| f.lost).collect();
    lost.sort_unstable();
    Figures {
        rate: pick(|f| f.rate),
        p99_ms: pick(|f| f.p99_ms),
        lost: lost.get(lost.len() / 2).copied().unwrap_or_default(),
        nodes_cpu: pick(|f| f.nodes_cpu),
        redis_cpu: pick(|f| f.redis_cpu),
        generator_cpu: pick(|f| f.generator_cpu),
    }
}
