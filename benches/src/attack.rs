//! Attackers against a busy room, and what they cost everyone else.
//!
//! A background of normal chat runs in one room (`#bench0`, a fixed-rate
//! [`fanout`] run) for the whole measurement. A probe client, not in that
//! room, times sequential `#ping` round trips twice: first with only the
//! background, then while attackers are at work. Attackers come from
//! loopback addresses of their own (127.0.0.101 and up), as they would
//! from the network, so per-address limits treat them apart from everyone
//! else:
//!
//! - [`Kind::Slow`]: clients that join the busy room and never read. The
//!   server should cut each off as a slow consumer once its queue passes
//!   `max_outbound_bytes`; an observer in the room records when each
//!   one's `* NICK quit: too slow to receive` arrives, and after the phase
//!   each attacker reads what it was sent to see whether the server closed
//!   its socket.
//! - [`Kind::Flood`]: clients that join the busy room and write chat lines
//!   as fast as the socket takes them, reconnecting whenever they are cut
//!   off, until the phase ends. With rate limiting on, each connection gets
//!   its first lines through, then `! rate-limited` answers, then
//!   `! flooding` and a closed connection.
//!
//! The probe client sends one line per round trip, and every line counts
//! against the per-connection rate limit, so with limits on its pings go
//! out in turn over enough connections that none of them passes its
//! budget ([`probe_connections`]).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chatd_core::RateLimitConfig;

use crate::connect::{connect_and_welcome, connect_from};
use crate::fanout::{self, FanoutMeasurement, FanoutPlan, Peer};
use crate::server::{ServerProcess, self_cpu_time};
use crate::soak::open_fds;

/// The busy room: the fan-out's room when it runs with one room.
pub const ROOM: &str = "bench0";

/// What the attackers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Join the busy room and never read.
    Slow,
    /// Join the busy room and send lines as fast as possible, reconnecting
    /// when cut off.
    Flood,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Slow => "slow",
            Self::Flood => "flood",
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct AttackPlan {
    /// The attack.
    pub kind: Kind,
    /// Attacker clients (each on its own source address).
    pub attackers: usize,
    /// Length of each of the two probe phases.
    pub phase: Duration,
    /// The busy room's members (all of them send).
    pub room_clients: usize,
    /// The busy room's messages per second, in total.
    pub room_rate: u64,
    /// Payload bytes per room message.
    pub payload: usize,
    /// Round trips per second the probe client makes (one at a time).
    pub ping_rate: u64,
    /// The server's rate limits (from its config file), to spread the
    /// probe's pings.
    pub rate_limit: RateLimitConfig,
}

/// The most attackers: each gets one of 127.0.0.101 ..= 127.0.0.250.
pub const MAX_ATTACKERS: usize = 150;

/// The source address of attacker `k`: apart from 127.0.0.1, where the
/// room's members and the probe client connect from.
pub fn attacker_source(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 101 + k as u8))
}

/// Connections the probe needs to make `ping_rate` round trips a second
/// without any of them passing the per-connection rate limit: each keeps
/// to at most two thirds of its budget, so a round trip held up by the
/// attack and the ones sent quickly after it do not tip it over.
pub fn probe_connections(ping_rate: u64, limits: &RateLimitConfig) -> usize {
    if !limits.enabled {
        return 1;
    }
    // Pings in one window over two thirds of the lines allowed in it,
    // rounded up, in integers (milliseconds) so an exact fit stays exact.
    let pings = u128::from(ping_rate) * limits.window.as_millis() * 3;
    let allowed = (u128::from(limits.messages) * 2 * 1000).max(1);
    (pings.div_ceil(allowed) as usize).max(1)
}

/// The `q` quantile of sorted samples (the sample at rank `q * (n - 1)`,
/// as `chatd bench rtt` reports it), in microseconds.
pub fn quantile_us(sorted: &[Duration], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    sorted[(last as f64 * q) as usize].as_secs_f64() * 1e6
}

/// The nickname in chatd's welcome line, `* welcome, you are NICK in ...`.
pub fn welcome_nick(line: &str) -> Option<&str> {
    line.strip_prefix("* welcome, you are ")?
        .split(' ')
        .next()
        .filter(|nick| !nick.is_empty())
}

/// `* NICK quit: REASON` as (NICK, REASON).
pub fn quit_notice(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("* ")?;
    let (nick, reason) = rest.split_once(" quit: ")?;
    (!nick.contains(' ')).then_some((nick, reason))
}

/// Counts the server's answers to a flooding client in its byte stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplyTally {
    /// `! rate-limited` lines.
    pub rate_limited: u64,
    /// `! flooding` lines.
    pub flooding: u64,
    partial: Vec<u8>,
}

impl ReplyTally {
    /// Takes the bytes of one read (lines may be cut anywhere).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &self.partial[start..]) {
            let line = &self.partial[start..start + end];
            if line.starts_with(b"! rate-limited") {
                self.rate_limited += 1;
            } else if line.starts_with(b"! flooding") {
                self.flooding += 1;
            }
            start += end + 1;
        }
        self.partial.drain(..start);
    }
}

/// Round trips of one phase, sorted, and the CPU both sides used in it.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Every round trip, sorted.
    pub samples: Vec<Duration>,
    /// The server's CPU time over the phase.
    pub server_cpu: Duration,
    /// This process's CPU time over the phase: the room's members, the
    /// probe, and the attackers, who share the machine with the server.
    pub generator_cpu: Duration,
}

impl Phase {
    /// Records the CPU used between two readings of (server, generator).
    fn charge(&mut self, from: (Duration, Duration), to: (Duration, Duration)) {
        self.server_cpu = to.0.saturating_sub(from.0);
        self.generator_cpu = to.1.saturating_sub(from.1);
    }

    /// `p50 ... us, p99 ... us, max ... us over N round trips`.
    pub fn describe(&self) -> String {
        format!(
            "{} round trips, p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us; server CPU {:.1} s, generator CPU {:.1} s",
            self.samples.len(),
            quantile_us(&self.samples, 0.5),
            quantile_us(&self.samples, 0.9),
            quantile_us(&self.samples, 0.99),
            quantile_us(&self.samples, 1.0),
            self.server_cpu.as_secs_f64(),
            self.generator_cpu.as_secs_f64(),
        )
    }
}

/// How an attacker's connection ended, seen from its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The server closed it (end of stream).
    Closed,
    /// The server reset it.
    Reset,
    /// Still open, and nothing more arrived: taken out of the chat but
    /// not closed.
    OpenSilent,
    /// Still open and still being sent the room's traffic: never cut off.
    OpenReceiving,
    /// Still open when the phase ended (a flooder stops itself then).
    OpenAtEnd,
}

/// One slow attacker's fate.
#[derive(Debug, Clone)]
pub struct SlowFate {
    /// Its nickname.
    pub nick: String,
    /// From its `#join` to its quit notice in the room, if one came.
    pub cut_off_after: Option<Duration>,
    /// What its socket did when it finally read.
    pub ending: Ending,
    /// Bytes it read then (what the kernel held for it, then the rest).
    pub drained: u64,
}

/// What the flood attackers did and what happened to them.
#[derive(Debug, Clone, Default)]
pub struct FloodFates {
    /// Connections that got their welcome line.
    pub connections: u64,
    /// Connect attempts that failed.
    pub connect_failures: u64,
    /// Lines written whole into the socket (at least this many).
    pub lines_written: u64,
    /// `! rate-limited` answers read back.
    pub rate_limited: u64,
    /// Connections that read `! flooding`.
    pub flooding_notices: u64,
    /// Connections closed or reset by the server.
    pub ended_by_server: u64,
    /// Connections still open when the phase ended.
    pub open_at_end: u64,
    /// From welcome to the server's close, per connection it closed, sorted.
    pub lifetimes: Vec<Duration>,
}

impl FloodFates {
    fn merge(&mut self, other: FloodFates) {
        self.connections += other.connections;
        self.connect_failures += other.connect_failures;
        self.lines_written += other.lines_written;
        self.rate_limited += other.rate_limited;
        self.flooding_notices += other.flooding_notices;
        self.ended_by_server += other.ended_by_server;
        self.open_at_end += other.open_at_end;
        self.lifetimes.extend(other.lifetimes);
    }
}

/// The attackers' side of a run.
#[derive(Debug, Clone)]
pub enum Fates {
    /// One entry per slow attacker.
    Slow(Vec<SlowFate>),
    /// The flooders together.
    Flood(FloodFates),
}

/// What a run measured.
#[derive(Debug)]
pub struct AttackReport {
    /// Round trips with only the background.
    pub without: Phase,
    /// Round trips while the attackers were at work.
    pub with: Phase,
    /// Connections the probe spread its pings over.
    pub probes: usize,
    /// The attackers' fate.
    pub fates: Fates,
    /// Quit notices the observer saw in the busy room until the attackers
    /// let go of their sockets, by reason.
    pub quits_seen: Vec<(String, u64)>,
    /// The background chat.
    pub background: FanoutMeasurement,
    /// Server descriptors before the attack, at the end of the attack
    /// phase, and after the attackers read and let go of their sockets.
    pub fds: [usize; 3],
    /// Server RSS at the same moments.
    pub rss: [u64; 3],
}

impl AttackReport {
    /// Every reason the run failed: background deliveries lost, a slow
    /// reader never cut off or its socket left open, a flood connection
    /// never closed.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let lost = self.background.report.lost();
        if lost > 0 {
            failures.push(format!("the busy room lost {lost} deliveries"));
        }
        match &self.fates {
            Fates::Slow(fates) => {
                let kept = fates.iter().filter(|f| f.cut_off_after.is_none()).count();
                if kept > 0 {
                    failures.push(format!(
                        "{kept} slow readers were never cut off as slow consumers"
                    ));
                }
                let open = fates
                    .iter()
                    .filter(|f| !matches!(f.ending, Ending::Closed | Ending::Reset))
                    .count();
                if open > 0 {
                    failures.push(format!(
                        "{open} slow readers' sockets were still open after the attack"
                    ));
                }
            }
            Fates::Flood(fates) => {
                if fates.ended_by_server == 0 {
                    failures.push("no flooding connection was closed by the server".into());
                }
                if fates.lifetimes.last().is_some_and(|l| *l > FLOOD_GRACE) {
                    failures.push(format!(
                        "a flooding connection stayed open {:.1} s",
                        fates.lifetimes.last().map_or(0.0, Duration::as_secs_f64)
                    ));
                }
            }
        }
        failures
    }

    /// The report as lines for people.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "probe ({} connections, one ping at a time): without attackers {}",
                self.probes,
                self.without.describe()
            ),
            format!(
                "probe ({} connections, one ping at a time): with attackers    {}",
                self.probes,
                self.with.describe()
            ),
        ];
        match &self.fates {
            Fates::Slow(fates) => {
                let mut cut: Vec<Duration> = fates.iter().filter_map(|f| f.cut_off_after).collect();
                cut.sort_unstable();
                let count = |ending| fates.iter().filter(|f| f.ending == ending).count();
                lines.push(format!(
                    "slow readers: {} of {} cut off as slow consumers, {:.2} s after joining (median; first {:.2} s, last {:.2} s); sockets then: {} closed, {} reset, {} open and silent, {} open and still receiving; {:.0} KiB drained from each (median)",
                    cut.len(),
                    fates.len(),
                    quantile_us(&cut, 0.5) / 1e6,
                    quantile_us(&cut, 0.0) / 1e6,
                    quantile_us(&cut, 1.0) / 1e6,
                    count(Ending::Closed),
                    count(Ending::Reset),
                    count(Ending::OpenSilent),
                    count(Ending::OpenReceiving),
                    median(fates.iter().map(|f| f.drained).collect()) as f64 / 1024.0,
                ));
            }
            Fates::Flood(fates) => {
                lines.push(format!(
                    "flooders: {} connections ({} connects failed), at least {} lines written, {} `! rate-limited` read back; {} closed by the server ({} after reading `! flooding`), {} open when the phase ended; connection lifetime p50 {:.1} ms, max {:.1} ms",
                    fates.connections,
                    fates.connect_failures,
                    fates.lines_written,
                    fates.rate_limited,
                    fates.ended_by_server,
                    fates.flooding_notices,
                    fates.open_at_end,
                    quantile_us(&fates.lifetimes, 0.5) / 1e3,
                    quantile_us(&fates.lifetimes, 1.0) / 1e3,
                ));
            }
        }
        let quits: Vec<String> = self
            .quits_seen
            .iter()
            .map(|(reason, n)| format!("{n} \"{reason}\""))
            .collect();
        lines.push(format!(
            "quit notices seen in #{ROOM}: {}",
            if quits.is_empty() {
                "none".to_owned()
            } else {
                quits.join(", ")
            }
        ));
        let report = &self.background.report;
        lines.push(format!(
            "background: sent {}, delivered {} of {} (lost {}), latency p50 {} us, p99 {} us",
            report.sent,
            report.delivered,
            report.expected,
            report.lost(),
            report.latency.quantile(0.5),
            report.latency.quantile(0.99),
        ));
        let [before, during, after] = self.fds;
        let mib = |b: u64| b as f64 / 1_048_576.0;
        lines.push(format!(
            "server: fds {before} before the attack, {during} at its end, {after} after the attackers let go; RSS {:.1} / {:.1} / {:.1} MiB",
            mib(self.rss[0]),
            mib(self.rss[1]),
            mib(self.rss[2]),
        ));
        lines
    }
}

/// The longest a flooding connection may stay open before the run counts
/// it as not cut off.
const FLOOD_GRACE: Duration = Duration::from_secs(5);

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Runs the attack against `server`.
pub fn run(server: &ServerProcess, plan: &AttackPlan) -> anyhow::Result<AttackReport> {
    if plan.attackers == 0 || plan.attackers > MAX_ATTACKERS {
        bail!("between 1 and {MAX_ATTACKERS} attackers");
    }
    if plan.room_clients < 2 {
        bail!("the busy room needs at least two members");
    }
    let probes = probe_connections(plan.ping_rate, &plan.rate_limit);
    // The background covers both phases, the setup before them and the
    // attackers' draining after them.
    let background = FanoutPlan {
        clients: plan.room_clients,
        rooms: 1,
        // Every member but the last: the fan-out has sender s observed by
        // member s + 1, so the last member cannot send.
        senders: plan.room_clients.saturating_sub(1),
        rate: Some(plan.room_rate),
        in_flight: 64,
        payload: plan.payload,
        duration: plan.phase * 2 + Duration::from_secs(15),
        reader_threads: 2,
        tls: None,
        web: false,
    };
    std::thread::sleep(Duration::from_millis(200));
    let idle_fds = open_fds(server.pid())?;
    std::thread::scope(|scope| {
        let chat = scope.spawn(|| fanout::measure(server, &Peer::Chatd, &background, false));
        let waiting = Instant::now();
        while open_fds(server.pid())? < idle_fds + plan.room_clients {
            if chat.is_finished() || waiting.elapsed() > Duration::from_secs(70) {
                let error = match chat.join() {
                    Ok(Err(error)) => error,
                    _ => anyhow::anyhow!("the busy room did not connect"),
                };
                return Err(error.context("the background chat"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Its members join and wait for the server to have handled it.
        std::thread::sleep(Duration::from_secs(1));
        let observer = Observer::start(server.addr)?;
        let mut probe = Probe::connect(server.addr, probes)?;
        eprintln!(
            "  #{ROOM}: {} members, {} msgs/s; probing without attackers",
            plan.room_clients, plan.room_rate
        );
        let cpu = || anyhow::Ok((server.cpu_time()?, self_cpu_time()?));
        let started = cpu()?;
        let mut without = probe.phase(plan.phase, plan.ping_rate)?;
        let attacked = cpu()?;
        without.charge(started, attacked);
        let fds_before = open_fds(server.pid())?;
        let rss_before = server.rss_bytes()?;
        eprintln!("  probing with {} {} attackers", plan.attackers, plan.kind);
        let deadline = Instant::now() + plan.phase;
        let (with, fates, during, after, quits) = match plan.kind {
            Kind::Slow => {
                let mut slow = Vec::with_capacity(plan.attackers);
                for k in 0..plan.attackers {
                    slow.push(SlowReader::join(server.addr, k)?);
                }
                let mut with = probe.phase(
                    deadline.saturating_duration_since(Instant::now()),
                    plan.ping_rate,
                )?;
                with.charge(attacked, cpu()?);
                let during = (open_fds(server.pid())?, server.rss_bytes()?);
                let endings: Vec<(Ending, u64)> = std::thread::scope(|drains| {
                    let handles: Vec<_> = slow
                        .iter()
                        .map(|reader| drains.spawn(|| reader.drain()))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or((Ending::OpenReceiving, 0)))
                        .collect()
                });
                let quits = observer.quits();
                let fates = slow
                    .iter()
                    .zip(endings)
                    .map(|(reader, (ending, drained))| SlowFate {
                        nick: reader.nick.clone(),
                        cut_off_after: quits
                            .iter()
                            .find(|q| q.nick == reader.nick && q.reason == "too slow to receive")
                            .map(|q| q.at.saturating_duration_since(reader.joined)),
                        ending,
                        drained,
                    })
                    .collect();
                drop(slow);
                std::thread::sleep(Duration::from_millis(500));
                let after = (open_fds(server.pid())?, server.rss_bytes()?);
                (with, Fates::Slow(fates), during, after, observer.quits())
            }
            Kind::Flood => {
                let flooders: Vec<_> = (0..plan.attackers)
                    .map(|k| {
                        let addr = server.addr;
                        scope.spawn(move || flood(addr, k, deadline))
                    })
                    .collect();
                let mut with = probe.phase(
                    deadline.saturating_duration_since(Instant::now()),
                    plan.ping_rate,
                )?;
                let mut fates = FloodFates::default();
                for flooder in flooders {
                    fates.merge(
                        flooder
                            .join()
                            .map_err(|_| anyhow::anyhow!("a flooder panicked"))?,
                    );
                }
                // The flooders stop at the deadline, as the probe does.
                with.charge(attacked, cpu()?);
                fates.lifetimes.sort_unstable();
                let during = (open_fds(server.pid())?, server.rss_bytes()?);
                std::thread::sleep(Duration::from_millis(500));
                let after = (open_fds(server.pid())?, server.rss_bytes()?);
                (with, Fates::Flood(fates), during, after, observer.quits())
            }
        };
        let measured = chat
            .join()
            .map_err(|_| anyhow::anyhow!("the background chat panicked"))?
            .context("the background chat")?;
        observer.stop();
        // Quits up to the end of the attack: the room's own members leave
        // when the background ends, and those are not the attack's doing.
        let mut quits_seen: Vec<(String, u64)> = Vec::new();
        for quit in quits {
            match quits_seen
                .iter_mut()
                .find(|(reason, _)| *reason == quit.reason)
            {
                Some((_, n)) => *n += 1,
                None => quits_seen.push((quit.reason, 1)),
            }
        }
        Ok(AttackReport {
            without,
            with,
            probes,
            fates,
            quits_seen,
            background: measured,
            fds: [fds_before, during.0, after.0],
            rss: [rss_before, during.1, after.1],
        })
    })
}

/// The probe client: sequential `#ping`s, in turn over its connections.
struct Probe {
    connections: Vec<(TcpStream, BufReader<TcpStream>)>,
    next: usize,
    token: u64,
}

impl Probe {
    fn connect(server: SocketAddr, count: usize) -> anyhow::Result<Self> {
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count {
            let stream = connect_and_welcome(server, IpAddr::V4(Ipv4Addr::LOCALHOST))
                .context("a probe connection")?;
            connections.push((stream.try_clone()?, BufReader::new(stream)));
        }
        Ok(Self {
            connections,
            next: 0,
            token: 0,
        })
    }

    /// Round trips for `length`, at most `rate` a second: the next ping
    /// goes out `1 / rate` after the previous one went, or as soon as its
    /// answer came if that took longer.
    fn phase(&mut self, length: Duration, rate: u64) -> anyhow::Result<Phase> {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        let end = Instant::now() + length;
        let mut samples = Vec::new();
        let mut line = String::new();
        let mut sent_last: Option<Instant> = None;
        while Instant::now() < end {
            if let Some(last) = sent_last {
                std::thread::sleep((last + interval).saturating_duration_since(Instant::now()));
            }
            let which = self.next % self.connections.len();
            let (writer, reader) = &mut self.connections[which];
            self.next += 1;
            self.token += 1;
            let expected = format!("+ pong {}", self.token);
            let start = Instant::now();
            sent_last = Some(start);
            writer.write_all(format!("#ping {}\n", self.token).as_bytes())?;
            // Notices of people arriving in #general share the connection;
            // skip them.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    bail!("the server closed a probe connection");
                }
                let got = line.trim_end();
                if got == expected {
                    break;
                }
                if got.starts_with("! rate-limited") {
                    bail!("the probe was rate limited: {got}");
                }
            }
            samples.push(start.elapsed());
        }
        samples.sort_unstable();
        Ok(Phase {
            samples,
            ..Phase::default()
        })
    }
}

/// A quit notice as the observer saw it.
#[derive(Debug, Clone)]
struct Quit {
    at: Instant,
    nick: String,
    reason: String,
}

/// A member of the busy room that reads everything and notes quits.
struct Observer {
    quits: Arc<Mutex<Vec<Quit>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Observer {
    fn start(server: SocketAddr) -> anyhow::Result<Self> {
        let mut stream =
            connect_and_welcome(server, IpAddr::V4(Ipv4Addr::LOCALHOST)).context("the observer")?;
        stream.write_all(format!("#join {ROOM}\n#ping joined\n").as_bytes())?;
        // A loaded machine may take a while to answer; 5 s of silence is
        // not yet a failure while joining.
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .context("the observer waiting for its join to be answered")?;
            if read == 0 {
                bail!("the observer was disconnected while joining");
            }
            if line.starts_with(b"+ pong joined") {
                break;
            }
        }
        // Short timeouts so the thread sees the stop flag in time.
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        let quits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (quits, stop) = (quits.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-observer".into())
                .spawn(move || {
                    let mut line = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        // On a timeout the bytes read so far stay in `line`.
                        match reader.read_until(b'\n', &mut line) {
                            Ok(0) => return,
                            Ok(_) => {
                                let text = String::from_utf8_lossy(&line);
                                if let Some((nick, reason)) = quit_notice(text.trim_end()) {
                                    let quit = Quit {
                                        at: Instant::now(),
                                        nick: nick.to_owned(),
                                        reason: reason.to_owned(),
                                    };
                                    quits.lock().unwrap_or_else(|e| e.into_inner()).push(quit);
                                }
                                line.clear();
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::WouldBlock
                                        | io::ErrorKind::TimedOut
                                        | io::ErrorKind::Interrupted
                                ) => {}
                            Err(_) => return,
                        }
                    }
                })?
        };
        Ok(Self {
            quits,
            stop,
            thread,
        })
    }

    fn quits(&self) -> Vec<Quit> {
        self.quits.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Reads chatd's welcome line byte by byte (so nothing after it is taken)
/// and returns the nickname in it.
fn read_welcome(stream: &TcpStream) -> anyhow::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        if (&*stream).read(&mut byte)? == 0 {
            bail!("closed before the welcome line");
        }
        line.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&line);
    welcome_nick(text.trim_end())
        .map(str::to_owned)
        .with_context(|| format!("unexpected first line {text:?}"))
}

/// The receive buffer a slow reader asks for. A client that means to stall
/// the server keeps its window small, so the server's queue, not the
/// kernel's buffers, takes the room's traffic from the start: with the
/// default buffers the kernels on both sides hold 2 to 3 MB before the
/// server's queue grows at all.
pub const SLOW_READER_BUFFER: usize = 4096;

/// Connects from `source` with a [`SLOW_READER_BUFFER`] receive buffer, set
/// before connecting so the window offered in the handshake is small.
fn connect_small_window(server: SocketAddr, source: IpAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_recv_buffer_size(SLOW_READER_BUFFER)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&server.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// A client that joins the busy room and never reads (until the end).
struct SlowReader {
    stream: TcpStream,
    nick: String,
    joined: Instant,
}

impl SlowReader {
    fn join(server: SocketAddr, k: usize) -> anyhow::Result<Self> {
        let mut stream =
            connect_small_window(server, attacker_source(k)).context("a slow reader connects")?;
        let nick = read_welcome(&stream)?;
        stream.write_all(format!("#join {ROOM}\n").as_bytes())?;
        Ok(Self {
            stream,
            nick,
            joined: Instant::now(),
        })
    }

    /// Reads what the server sent, up to 5 s: how the connection ends and
    /// how many bytes came.
    fn drain(&self) -> (Ending, u64) {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        let until = Instant::now() + Duration::from_secs(5);
        // A second of silence on an open socket: the server stopped
        // sending to it without closing it.
        if self
            .stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .is_err()
        {
            return (Ending::OpenSilent, total);
        }
        while Instant::now() < until {
            match (&self.stream).read(&mut buffer) {
                Ok(0) => return (Ending::Closed, total),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return (Ending::OpenSilent, total);
                }
                Err(_) => return (Ending::Reset, total),
            }
        }
        (Ending::OpenReceiving, total)
    }
}

/// Lines per write of a flooder: more than the server admits and refuses
/// before it disconnects (40 with the defaults), so one write is a flood.
const FLOOD_LINES: usize = 256;

/// One flooder: connect, join the busy room, write chat lines as fast as
/// the socket takes them while counting the answers, and reconnect when
/// the server cuts the connection, until `deadline`.
fn flood(server: SocketAddr, k: usize, deadline: Instant) -> FloodFates {
    let mut fates = FloodFates::default();
    let chunk: Vec<u8> = (0..FLOOD_LINES)
        .flat_map(|i| {
            format!("flood from attacker {k}, line {i}: all of you, read me\n").into_bytes()
        })
        .collect();
    let mut buffer = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        let stream = match connect_from(server, attacker_source(k)) {
            Ok(stream) => stream,
            Err(_) => {
                fates.connect_failures += 1;
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if read_welcome(&stream).is_err() {
            fates.connect_failures += 1;
            continue;
        }
        fates.connections += 1;
        let born = Instant::now();
        // Short timeouts: the loop alternates writing and reading, and a
        // write the server does not take must not outlast the deadline.
        let timeouts = stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .and_then(|()| stream.set_write_timeout(Some(Duration::from_millis(200))));
        if timeouts.is_err() {
            continue;
        }
        let mut tally = ReplyTally::default();
        let mut ended = false;
        let _ = (&stream).write_all(format!("#join {ROOM}\n").as_bytes());
        while Instant::now() < deadline && !ended {
            if (&stream).write_all(&chunk).is_ok() {
                fates.lines_written += FLOOD_LINES as u64;
            }
            // Read what came back; a write that failed because the server
            // closed shows here as the end of the stream or a reset.
            loop {
                match (&stream).read(&mut buffer) {
                    Ok(0) => {
                        ended = true;
                        break;
                    }
                    Ok(n) => tally.feed(&buffer[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(_) => {
                        ended = true;
                        break;
                    }
                }
            }
        }
        fates.rate_limited += tally.rate_limited;
        fates.flooding_notices += u64::from(tally.flooding > 0);
        if ended {
            fates.ended_by_server += 1;
            fates.lifetimes.push(born.elapsed());
        } else {
            fates.open_at_end += 1;
        }
        // A breath between connections, so the attack is many connections
        // a second rather than a connect storm that measures the
        // generator's ephemeral ports.
        std::thread::sleep(Duration::from_millis(10));
    }
    fates
}

/// `chatd bench attack`: another client's round trips without and with
/// attackers, over a busy room's traffic.
#[derive(Debug, clap::Parser)]
pub struct AttackArgs {
    /// The attack: slow (never read) or flood (send flat out).
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Attacker clients [default: 20 slow readers, 8 flooders].
    #[arg(long)]
    pub attackers: Option<usize>,
    /// Seconds of each probe phase (without, then with the attackers).
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Members of the busy room, all but one sending.
    #[arg(long, default_value_t = 200)]
    pub room_clients: usize,
    /// The busy room's messages per second, in total.
    #[arg(long, default_value_t = 100)]
    pub room_rate: u64,
    /// Payload bytes per room message: with the default rate, 400 KB/s
    /// to each member, so a slow reader passes the kernel's buffers and
    /// its 1 MiB queue in about ten seconds.
    #[arg(long, default_value_t = 4_000)]
    pub payload: usize,
    /// Round trips per second of the probe client.
    #[arg(long, default_value_t = 100)]
    pub ping_rate: u64,
    /// The chatd binary [default: next to this one].
    #[arg(long)]
    pub chatd: Option<std::path::PathBuf>,
    /// Config file for the server: rate limiting on, unlike the bench
    /// profile.
    #[arg(long, default_value = "benches/attack.toml")]
    pub config: std::path::PathBuf,
    /// Backend to measure: poll or iocp.
    #[arg(long, default_value = "poll")]
    pub backend: String,
    /// I/O threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

impl AttackArgs {
    /// Runs the attack, prints the report, and fails if the room lost
    /// deliveries or an attacker was not cut off.
    pub fn run(self) -> anyhow::Result<()> {
        let settings = chatd_engine::settings::Settings::load(&self.config)?;
        let plan = AttackPlan {
            kind: self.kind,
            attackers: self.attackers.unwrap_or(match self.kind {
                Kind::Slow => 20,
                Kind::Flood => 8,
            }),
            phase: Duration::from_secs(self.seconds),
            room_clients: self.room_clients,
            room_rate: self.room_rate,
            payload: self.payload,
            ping_rate: self.ping_rate,
            rate_limit: settings.chat.rate_limit.clone(),
        };
        let launch = crate::server::Launch {
            chatd: self.chatd,
            config: self.config,
            backend: self.backend,
            threads: self.threads,
            server_cpus: None,
        };
        let server = ServerProcess::launch(&launch)?;
        let limits = &settings.chat.rate_limit;
        println!(
            "attack {}, backend {} ({}): {} attackers; #{ROOM} {} members, {} msgs/s of {} bytes; probe {} pings/s; rate limit {}, max_outbound_bytes {}",
            plan.kind,
            launch.backend,
            launch.config.display(),
            plan.attackers,
            plan.room_clients,
            plan.room_rate,
            plan.payload,
            plan.ping_rate,
            if limits.enabled {
                format!(
                    "{} lines per {:?} per connection, flood disconnect after {} refused",
                    limits.messages, limits.window, limits.flood_disconnect_after
                )
            } else {
                "off".to_owned()
            },
            settings.chat.max_outbound_bytes,
        );
        let report = run(&server, &plan)?;
        for line in report.describe() {
            println!("  {line}");
        }
        let failures = report.failures();
        if failures.is_empty() {
            return Ok(());
        }
        bail!("attack run failed: {}", failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(fates: Fates, lost: u64) -> AttackReport {
        use crate::fanout::FanoutReport;
        use crate::histogram::Histogram;
        AttackReport {
            without: Phase::default(),
            with: Phase::default(),
            probes: 1,
            fates,
            quits_seen: Vec::new(),
            background: FanoutMeasurement {
                report: FanoutReport {
                    sent: 10,
                    expected: 100,
                    delivered: 100 - lost,
                    elapsed: Duration::from_secs(1),
                    latency: Histogram::default(),
                },
                server_cpu: Duration::ZERO,
                generator_cpu: Duration::ZERO,
                server_peak_rss: 0,
            },
            fds: [0; 3],
            rss: [0; 3],
        }
    }

    fn slow(cut_off: bool, ending: Ending) -> SlowFate {
        SlowFate {
            nick: "guest1".into(),
            cut_off_after: cut_off.then_some(Duration::from_secs(9)),
            ending,
            drained: 0,
        }
    }

    #[test]
    fn slow_readers_must_be_cut_off_and_their_sockets_closed() {
        let fine = Fates::Slow(vec![slow(true, Ending::Closed), slow(true, Ending::Reset)]);
        assert!(report(fine, 0).failures().is_empty());
        // Announced as gone but the socket kept open (and its queue with
        // it) fails, as does one never cut off.
        let kept = Fates::Slow(vec![
            slow(true, Ending::OpenSilent),
            slow(false, Ending::OpenReceiving),
        ]);
        assert_eq!(
            report(kept, 0).failures(),
            [
                "1 slow readers were never cut off as slow consumers",
                "2 slow readers' sockets were still open after the attack"
            ]
        );
    }

    #[test]
    fn flooders_must_be_closed_soon_and_the_room_must_lose_nothing() {
        let closed = FloodFates {
            ended_by_server: 3,
            lifetimes: vec![Duration::from_millis(2), Duration::from_millis(90)],
            ..FloodFates::default()
        };
        assert!(
            report(Fates::Flood(closed.clone()), 0)
                .failures()
                .is_empty()
        );
        assert_eq!(
            report(Fates::Flood(closed), 4).failures(),
            ["the busy room lost 4 deliveries"]
        );
        let never = FloodFates {
            open_at_end: 8,
            ..FloodFates::default()
        };
        assert_eq!(
            report(Fates::Flood(never), 0).failures(),
            ["no flooding connection was closed by the server"]
        );
        let late = FloodFates {
            ended_by_server: 1,
            lifetimes: vec![Duration::from_secs(6)],
            ..FloodFates::default()
        };
        assert_eq!(
            report(Fates::Flood(late), 0).failures(),
            ["a flooding connection stayed open 6.0 s"]
        );
    }

    #[test]
    fn probes_keep_each_connection_within_two_thirds_of_its_budget() {
        let defaults = RateLimitConfig::default();
        // 20 lines per 10 s: 100 pings/s is 1,000 per window, 13.3 per
        // connection allowed, so 75 connections; one more ping a second
        // needs one more.
        assert_eq!(probe_connections(100, &defaults), 75);
        assert_eq!(probe_connections(101, &defaults), 76);
        assert_eq!(probe_connections(1, &defaults), 1);
        let off = RateLimitConfig {
            enabled: false,
            ..RateLimitConfig::default()
        };
        assert_eq!(probe_connections(10_000, &off), 1);
    }

    #[test]
    fn quantiles_pick_by_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert!((quantile_us(&samples, 0.5) - 50.0).abs() < 1e-6);
        assert!((quantile_us(&samples, 0.99) - 99.0).abs() < 1e-6);
        assert!((quantile_us(&samples, 1.0) - 100.0).abs() < 1e-6);
        assert_eq!(quantile_us(&[], 0.5), 0.0);
    }

    #[test]
    fn welcome_and_quit_lines_are_read() {
        assert_eq!(
            welcome_nick("* welcome, you are guest17 in #general; type #help for commands"),
            Some("guest17")
        );
        assert_eq!(welcome_nick("* you joined #bench0"), None);
        assert_eq!(
            quit_notice("* guest3 quit: too slow to receive"),
            Some(("guest3", "too slow to receive"))
        );
        assert_eq!(
            quit_notice("* guest4 quit: flooding"),
            Some(("guest4", "flooding"))
        );
        // A chat line that merely contains the words is not a notice.
        assert_eq!(quit_notice("[#bench0] bob: * x quit: y"), None);
        assert_eq!(quit_notice("* guest5 quit"), None);
    }

    #[test]
    fn replies_are_counted_across_cut_reads() {
        let mut tally = ReplyTally::default();
        tally.feed(b"* you joined #bench0\n! rate-limited: slow down\n! rate-");
        tally.feed(b"limited: slow down\n! flood");
        assert_eq!((tally.rate_limited, tally.flooding), (2, 0));
        tally.feed(b"ing: you kept sending\n");
        assert_eq!((tally.rate_limited, tally.flooding), (2, 1));
        // A chat line quoting an error is chat, not an error.
        tally.feed(b"[#bench0] eve: ! flooding\n");
        assert_eq!(tally.flooding, 1);
    }

    #[test]
    fn attackers_get_addresses_of_their_own() {
        assert_eq!(attacker_source(0).to_string(), "127.0.0.101");
        assert_eq!(
            attacker_source(MAX_ATTACKERS - 1).to_string(),
            "127.0.0.250"
        );
    }
}
