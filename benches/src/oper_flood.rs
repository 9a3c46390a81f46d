//! Does a flood of wrong `#oper` passwords slow everyone else down?
//!
//! One client times `#ping` round trips from 127.0.0.1, first alone, then
//! while flooders on 127.0.0.2, 127.0.0.3, ... each send bursts of wrong
//! operator passwords (with Argon2 at the parameters `chatd hash-password`
//! uses) and read the answers. Verifying on the core's thread stalls every
//! round trip behind the hashing; verifying on workers must leave the
//! round trips where they were.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use argon2::password_hash::{PasswordHasher, SaltString};

use crate::connect::{connect_and_welcome, connect_from};
use crate::rtt::RttReport;
use crate::server::ServerProcess;

/// The operator the flood guesses at.
const OPERATOR: &str = "admin";

/// How the flood runs.
#[derive(Debug, Clone)]
pub struct FloodPlan {
    /// Flooding addresses (127.0.0.2 onwards), one connection each.
    pub addresses: usize,
    /// Wrong passwords each flooder sends at once, before reading the
    /// answers.
    pub burst: usize,
    /// Time between the starts of one flooder's bursts (a burst whose
    /// answers take longer starts the next one late).
    pub interval: Duration,
    /// Guess a new unknown name with every attempt instead of the
    /// operator's: what a guesser does against per-name limits, leaving
    /// only the per-address ones.
    pub spread_names: bool,
    /// How long each round-trip phase runs.
    pub seconds: u64,
    /// Time between the timing client's pings.
    pub ping_interval: Duration,
}

/// What the flood got back.
#[derive(Debug, Clone, Copy, Default)]
pub struct FloodCounts {
    /// `#oper` lines sent.
    pub sent: u64,
    /// Answered `! bad-credentials` (checked; before issue 12 an unknown
    /// name got it unchecked).
    pub checked: u64,
    /// Answered `! try-later` (refused without checking).
    pub refused: u64,
}

/// Both phases' round trips and the flood's counts.
#[derive(Debug, Clone)]
pub struct FloodReport {
    /// Round trips with nobody else connected.
    pub quiet: RttReport,
    /// Round trips during the flood.
    pub flooded: RttReport,
    /// What the flood sent and got back while the round trips ran.
    pub flood: FloodCounts,
}

/// A config file: `base` plus an operator whose hash uses the default
/// Argon2 parameters (as `chatd hash-password` makes them), written to
/// the temporary directory.
pub fn config_with_operator(base: &Path) -> anyhow::Result<PathBuf> {
    let mut text =
        std::fs::read_to_string(base).with_context(|| format!("read {}", base.display()))?;
    let salt = SaltString::encode_b64(b"chatd-bench-salt").map_err(anyhow::Error::msg)?;
    let hash = argon2::Argon2::default()
        .hash_password(b"the-real-password", &salt)
        .map_err(anyhow::Error::msg)?;
    text.push_str(&format!(
        "\n[[operators]]\nname = \"{OPERATOR}\"\npassword_hash = \"{hash}\"\n"
    ));
    let path = std::env::temp_dir().join(format!("chatd-oper-flood-{}.toml", std::process::id()));
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Runs both phases against `server`.
pub fn measure(server: &ServerProcess, plan: &FloodPlan) -> anyhow::Result<FloodReport> {
    let quiet = pings(server, plan)?;
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    // Every flooder is welcomed before any floods: a server stalled by
    // the first ones might not welcome the last in time.
    let streams = (0..plan.addresses)
        .map(|i| {
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 250) as u8));
            connect_and_welcome(server.addr, source)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sockets = streams
        .iter()
        .map(|stream| stream.try_clone())
        .collect::<Result<Vec<_>, _>>()?;
    let flooders: Vec<JoinHandle<anyhow::Result<()>>> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let (stop, counts, plan) = (stop.clone(), counts.clone(), plan.clone());
            std::thread::spawn(move || flood(stream, i, &plan, &stop, &counts))
        })
        .collect();
    // The flood's first bursts land before the timing starts.
    std::thread::sleep(Duration::from_millis(500));
    let before = snapshot(&counts);
    let flooded = pings(server, plan);
    let after = snapshot(&counts);
    stop.store(true, Ordering::Relaxed);
    // A stalled server may owe the flooders many answers: cut them off
    // rather than wait for them.
    for socket in &sockets {
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }
    for flooder in flooders {
        match flooder.join() {
            Ok(result) => result?,
            Err(_) => bail!("a flooder panicked"),
        }
    }
    Ok(FloodReport {
        quiet,
        flooded: flooded?,
        flood: FloodCounts {
            sent: after.sent - before.sent,
            checked: after.checked - before.checked,
            refused: after.refused - before.refused,
        },
    })
}

fn snapshot(counts: &[AtomicU64; 3]) -> FloodCounts {
    FloodCounts {
        sent: counts[0].load(Ordering::Relaxed),
        checked: counts[1].load(Ordering::Relaxed),
        refused: counts[2].load(Ordering::Relaxed),
    }
}

/// Round trips from 127.0.0.1, one every `plan.ping_interval`, for
/// `plan.seconds`.
fn pings(server: &ServerProcess, plan: &FloodPlan) -> anyhow::Result<RttReport> {
    let stream = connect_from(server.addr, IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    // A stalled server is what this measures: allow long waits.
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let cpu_before = server.cpu_time()?;
    let start = Instant::now();
    let end = start + Duration::from_secs(plan.seconds);
    let mut samples = Vec::new();
    let mut next = start;
    while Instant::now() < end {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        next += plan.ping_interval;
        let i = samples.len();
        let sent = Instant::now();
        writer.write_all(format!("#ping {i}\n").as_bytes())?;
        let expected = format!("+ pong {i}");
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                bail!("the server closed the timing client");
            }
            match line.trim_end() {
                reply if reply == expected => break,
                // Flooders leaving #general.
                notice if notice.starts_with("* ") => {}
                other => bail!("unexpected reply {other:?}"),
            }
        }
        samples.push(sent.elapsed());
    }
    let server_cpu = server.cpu_time()? - cpu_before;
    samples.sort_unstable();
    Ok(RttReport {
        samples,
        server_cpu,
    })
}

/// One flooder: a burst of wrong passwords every `plan.interval`, reading
/// the answers in between, until told to stop.
fn flood(
    stream: std::net::TcpStream,
    index: usize,
    plan: &FloodPlan,
    stop: &AtomicBool,
    counts: &[AtomicU64; 3],
) -> anyhow::Result<()> {
    stream.set_read_timeout(None)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut guess = 0u64;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut lines = String::new();
        for _ in 0..plan.burst {
            guess += 1;
            let name = if plan.spread_names {
                format!("x{index}n{guess}")
            } else {
                OPERATOR.to_owned()
            };
            lines.push_str(&format!("#oper {name} wrong-{index}-{guess}\n"));
        }
        if writer.write_all(lines.as_bytes()).is_err() {
            break;
        }
        counts[0].fetch_add(plan.burst as u64, Ordering::Relaxed);
        let mut answered = 0;
        while answered < plan.burst {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                bail!("the server closed a flooder");
            }
            // Others joining or leaving #general are not answers.
            if line.starts_with("* ") {
                continue;
            }
            answered += 1;
            if line.starts_with("! bad-credentials") {
                counts[1].fetch_add(1, Ordering::Relaxed);
            } else if line.starts_with("! try-later") {
                counts[2].fetch_add(1, Ordering::Relaxed);
            } else {
                bail!("unexpected answer to #oper: {line:?}");
            }
        }
        next += plan.interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}
