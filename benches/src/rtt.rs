//! Round-trip latency through the whole server: one client sends `#ping N`
//! and waits for `+ pong N`, sequentially, so each sample crosses socket ->
//! I/O thread -> core thread -> I/O thread -> socket once.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::server::ServerProcess;

/// What the round trips measured.
#[derive(Debug, Clone)]
pub struct RttReport {
    /// Every round trip, sorted.
    pub samples: Vec<Duration>,
    /// Server CPU time over all of them.
    pub server_cpu: Duration,
}

impl RttReport {
    /// The `q` quantile in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        let Some(last) = self.samples.len().checked_sub(1) else {
            return 0.0;
        };
        self.samples[(last as f64 * q) as usize].as_secs_f64() * 1e6
    }

    /// Server CPU per round trip in microseconds.
    pub fn cpu_per_trip_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.samples.len().max(1) as f64
    }
}

/// Times `pings` sequential round trips.
pub fn run(server: &ServerProcess, pings: usize) -> anyhow::Result<RttReport> {
    let stream = TcpStream::connect(server.addr).context("connect")?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let cpu_before = server.cpu_time()?;
    let mut samples = Vec::with_capacity(pings);
    for i in 0..pings {
        let start = Instant::now();
        writer.write_all(format!("#ping {i}\n").as_bytes())?;
        line.clear();
        reader.read_line(&mut line)?;
        samples.push(start.elapsed());
        if line.trim_end() != format!("+ pong {i}") {
            bail!("unexpected reply {line:?}");
        }
    }
    let server_cpu = server.cpu_time()? - cpu_before;
    samples.sort_unstable();
    Ok(RttReport {
        samples,
        server_cpu,
    })
}
