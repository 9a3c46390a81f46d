//! The fan-out scenario: N clients over R rooms, S of them sending, for a
//! fixed time, either at a fixed total rate or flat out with a bounded
//! number of messages in flight per sender.
//!
//! The same workload runs against chatd and against peers ([`Peer`]):
//! Redis pub/sub (subscribers SUBSCRIBE, separate connections PUBLISH, as
//! a subscribed Redis connection may not publish) and any line-protocol
//! chat server described by templates for its first line, join and say.
//!
//! Every payload carries its sender, a sequence number and the send time
//! (nanoseconds since the run's start, one clock for the whole process), so
//! each delivery yields a latency. A message is "in flight" until the
//! sender's observer (the first other member of its room) has received it.
//! Receiving runs on its own threads, each with a `Poller` over its share of
//! the sockets, so the generator is not one thread reading thousands of
//! sockets in turn.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use polling::{Event, Events, Poller};

use crate::bench_stream::BenchStream;
use crate::connect::{Greeting, connect_all};
use crate::deliveries::DeliveryScanner;
use crate::histogram::Histogram;
use crate::server::{ServerProcess, self_cpu_time};

/// The server under test and how to speak to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// chatd's native dialect (welcome line, `#join`, `#ping` barrier).
    Chatd,
    /// Redis pub/sub: one channel per room.
    Redis,
    /// A line-protocol chat server.
    Lines(LineTemplates),
}

/// How to speak to a line-protocol chat server. `{n}` is the client's
/// number, `{room}` the room's name (`bench0`, `bench1`, ...), `{payload}`
/// the payload; `\n` separates several lines. Lines end with CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTemplates {
    /// Sent first by every client (empty: nothing).
    pub hello: String,
    /// If set, `join` waits for a line containing this after `hello`
    /// (IRC servers refuse JOIN before registration completes, e.g. `" 001 "`).
    pub registered: Option<String>,
    /// Joins a room.
    pub join: String,
    /// Says a payload in a room.
    pub say: String,
    /// How long to wait after every client has joined: a generic server
    /// offers no barrier to wait on.
    pub settle: Duration,
}

impl LineTemplates {
    /// chatd's IRC listener (docs/IRC.md), spoken to as the IRC peers
    /// are: register as `u{n}`, join after `001`, `PRIVMSG` the room.
    /// Deliveries arrive as `:u{n}!~u{n}@127.0.0.1 PRIVMSG #room :~b ...`;
    /// the payload is found after its marker as in every other dialect.
    pub fn chatd_irc() -> Self {
        Self {
            hello: "NICK u{n}\nUSER u{n} 0 * :u{n}".into(),
            registered: Some(" 001 ".into()),
            join: "JOIN #{room}".into(),
            say: "PRIVMSG #{room} :{payload}".into(),
            // As for the IRC peers: no barrier is awaited after joining,
            // so the run waits this long before the first message.
            settle: Duration::from_secs(2),
        }
    }

    fn fill(template: &str, n: usize, room: &str, payload: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        // `\n` may be written out (TOML literal strings) or be a newline.
        let template = template.replace("\\n", "\n");
        for line in template.lines().filter(|l| !l.is_empty()) {
            let line = line
                .replace("{n}", &n.to_string())
                .replace("{room}", room)
                .replace("{payload}", payload);
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        bytes
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct FanoutPlan {
    /// Connected clients.
    pub clients: usize,
    /// Rooms; client `i` joins room `i % rooms`.
    pub rooms: usize,
    /// Senders (the first `senders` clients).
    pub senders: usize,
    /// Total messages per second, or flat out when `None`.
    pub rate: Option<u64>,
    /// Flat out: most unobserved messages per sender.
    pub in_flight: u64,
    /// Payload bytes per message (at least enough for the header).
    pub payload: usize,
    /// How long senders send.
    pub duration: Duration,
    /// Reader threads.
    pub reader_threads: usize,
    /// Speak TLS as this client (chatd's native dialect only).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Connect through a WebSocket: the address is chatd's HTTP listener
    /// and every client upgrades at `/ws` (chatd's native dialect only).
    pub web: bool,
}

impl FanoutPlan {
    /// S1: one room of 100, 10 senders flat out with 64 in flight, 64-byte
    /// payloads, for `duration`, over `tls` or a WebSocket (`web`) if
    /// asked.
    pub fn s1(duration: Duration, tls: Option<Arc<rustls::ClientConfig>>, web: bool) -> Self {
        Self {
            clients: 100,
            rooms: 1,
            senders: 10,
            rate: None,
            in_flight: 64,
            payload: 64,
            duration,
            reader_threads: 2,
            tls,
            web,
        }
    }

    /// `clients` over `rooms`, the first `senders` sending `rate` messages a
    /// second in all, 64-byte payloads, for `duration`, over plain TCP.
    pub fn paced(
        clients: usize,
        rooms: usize,
        senders: usize,
        rate: u64,
        duration: Duration,
    ) -> Self {
        Self {
            clients,
            rooms,
            senders,
            rate: Some(rate),
            in_flight: 64,
            payload: 64,
            duration,
            reader_threads: 2,
            tls: None,
            web: false,
        }
    }
}

/// What it measured.
#[derive(Debug, Clone)]
pub struct FanoutReport {
    /// Messages sent.
    pub sent: u64,
    /// Deliveries expected: each message to every other member of its room.
    pub expected: u64,
    /// Deliveries seen.
    pub delivered: u64,
    /// Sending time.
    pub elapsed: Duration,
    /// Latency of every delivery.
    pub latency: Histogram,
}

impl FanoutReport {
    /// Deliveries per second over the sending time.
    pub fn deliveries_per_second(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }

    /// Deliveries expected but not seen.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }
}

/// A fan-out run with what it cost.
#[derive(Debug, Clone)]
pub struct FanoutMeasurement {
    /// Counts and latencies.
    pub report: FanoutReport,
    /// The server's CPU time during the run.
    pub server_cpu: Duration,
    /// This process's (the generator's) CPU time during the run.
    pub generator_cpu: Duration,
    /// The server's peak resident memory in bytes.
    pub server_peak_rss: u64,
}

/// Runs the scenario against `server` and measures both sides' CPU from
/// the first message sent to the last delivery read: connecting and
/// joining thousands of clients is not the fan-out's cost.
pub fn measure(
    server: &ServerProcess,
    peer: &Peer,
    plan: &FanoutPlan,
    progress: bool,
) -> anyhow::Result<FanoutMeasurement> {
    measure_with(server, peer, plan, progress, || {})
}

/// [`measure`] against another of `server`'s listeners, at `addr` (its
/// TLS listener, say).
pub fn measure_at(
    server: &ServerProcess,
    addr: std::net::SocketAddr,
    peer: &Peer,
    plan: &FanoutPlan,
    progress: bool,
) -> anyhow::Result<FanoutMeasurement> {
    measure_listener(server, addr, peer, plan, progress, || {})
}

/// [`measure`], calling `at_start` once everyone has joined, just before
/// the first message goes out (for a probe that measures under load).
pub fn measure_with(
    server: &ServerProcess,
    peer: &Peer,
    plan: &FanoutPlan,
    progress: bool,
    at_start: impl FnOnce(),
) -> anyhow::Result<FanoutMeasurement> {
    measure_listener(server, server.addr, peer, plan, progress, at_start)
}

/// [`measure_with`] against `server`'s listener at `addr`.
fn measure_listener(
    server: &ServerProcess,
    addr: std::net::SocketAddr,
    peer: &Peer,
    plan: &FanoutPlan,
    progress: bool,
    at_start: impl FnOnce(),
) -> anyhow::Result<FanoutMeasurement> {
    let cpu_now = || {
        at_start();
        anyhow::Ok((self_cpu_time()?, server.cpu_time()?))
    };
    let (report, (generator_before, server_before)) =
        run_then(&[addr], peer, plan, progress, cpu_now)?;
    Ok(FanoutMeasurement {
        server_cpu: server.cpu_time()?.saturating_sub(server_before),
        generator_cpu: self_cpu_time()?.saturating_sub(generator_before),
        server_peak_rss: server.peak_rss_bytes()?,
        report,
    })
}

/// Shared between the sender and the readers.
struct Shared {
    start: Instant,
    stop: AtomicBool,
    /// Per sender: the highest sequence number its observer has seen, plus one.
    observed: Vec<AtomicU64>,
}

/// Runs the scenario against a server at `addr`.
pub fn run(
    addr: std::net::SocketAddr,
    peer: &Peer,
    plan: &FanoutPlan,
    progress: bool,
) -> anyhow::Result<FanoutReport> {
    run_then(&[addr], peer, plan, progress, || Ok(())).map(|(report, ())| report)
}

/// [`run`] with the clients spread over several servers (client `i` on
/// `addrs[i % addrs.len()]`: the nodes of a cluster), calling `at_start`
/// once everyone has joined, just before the first message goes out, and
/// returning what it returned.
pub fn run_then<T>(
    addrs: &[std::net::SocketAddr],
    peer: &Peer,
    plan: &FanoutPlan,
    progress: bool,
    at_start: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(FanoutReport, T)> {
    if plan.rooms == 0 || plan.clients < 2 * plan.rooms {
        bail!("need at least one room and two clients per room");
    }
    // Every room keeps at least one client that only receives; more
    // senders than that leaves the receiver tables short (it used to
    // panic with an index out of bounds).
    if plan.senders == 0 || plan.senders > plan.clients - plan.rooms {
        bail!(
            "need 1..={} senders for {} clients in {} rooms",
            plan.clients - plan.rooms,
            plan.clients,
            plan.rooms
        );
    }
    let (mut streams, mut writers) = setup(addrs, peer, plan, progress)?;
    let shared = Arc::new(Shared {
        start: Instant::now(),
        stop: AtomicBool::new(false),
        observed: (0..plan.senders).map(|_| AtomicU64::new(0)).collect(),
    });
    // Sender s is observed by the next client in its room.
    let observer_of = |sender: usize| sender + plan.rooms;
    // Senders that are not clients (Redis publishers) get replies to drain.
    let separate_publishers = !writers.is_empty();
    if !separate_publishers {
        for stream in streams.iter().take(plan.senders) {
            writers.push(stream.try_clone().context("clone a sender socket")?);
        }
    } else {
        for writer in &writers {
            streams.push(writer.try_clone().context("clone a publisher socket")?);
        }
    }
    let started = at_start()?;
    let readers = spawn_readers(streams, plan, &shared, observer_of)?;
    let (sent, elapsed) = send(&mut writers, peer, plan, &shared, progress)?;
    // Let what is in flight arrive, then stop the readers.
    std::thread::sleep(Duration::from_millis(500));
    shared.stop.store(true, Ordering::SeqCst);
    let mut latency = Histogram::default();
    let mut delivered = 0;
    for reader in readers {
        let (count, histogram) = reader
            .join()
            .map_err(|_| anyhow::anyhow!("a reader thread panicked"))??;
        delivered += count;
        latency.merge(&histogram);
    }
    let members = |room: usize| (0..plan.clients).filter(|c| c % plan.rooms == room).count() as u64;
    // A member does not get its own message back; a separate publisher's
    // message reaches every member.
    let own = u64::from(!separate_publishers);
    let expected = (0..plan.senders)
        .map(|s| sent[s] * (members(s % plan.rooms) - own))
        .sum();
    let report = FanoutReport {
        sent: sent.iter().sum(),
        expected,
        delivered,
        elapsed,
        latency,
    };
    Ok((report, started))
}

/// The longest connecting and joining may take: a server that stalls fails
/// the run instead of hanging it.
const SETUP_LIMIT: Duration = Duration::from_secs(60);

/// Connects everyone and joins the rooms, then waits until the server has
/// handled it all (chatd: a `#ping` answered on every connection; Redis:
/// every subscription confirmed; other servers: the settle time). Returns
/// the clients and, for Redis, the separate publishers.
fn setup(
    addrs: &[std::net::SocketAddr],
    peer: &Peer,
    plan: &FanoutPlan,
    progress: bool,
) -> anyhow::Result<(Vec<BenchStream>, Vec<BenchStream>)> {
    let deadline = Instant::now() + SETUP_LIMIT;
    let Some(&addr) = addrs.first() else {
        bail!("no server to connect to");
    };
    if (plan.tls.is_some() || plan.web) && *peer != Peer::Chatd {
        bail!("TLS and WebSocket are measured with chatd's native dialect only");
    }
    let hello = |i: usize| match peer {
        Peer::Lines(templates) => LineTemplates::fill(&templates.hello, i, &room_of(i, plan), ""),
        _ => Vec::new(),
    };
    let greeting = match peer {
        // Over TLS the welcome is read once the handshake is done.
        Peer::Chatd if plan.tls.is_some() || plan.web => Greeting::None,
        Peer::Chatd => Greeting::ChatdWelcome,
        Peer::Redis => Greeting::None,
        Peer::Lines(_) => Greeting::Send(&hello),
    };
    // Client i goes to server i % n: each server's clients connect in one
    // batch, then are dealt back into client order.
    let mut batches: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(n, &server)| {
            let count = (n..plan.clients).step_by(addrs.len()).count();
            connect_all(server, count, greeting, deadline, progress).into_iter()
        })
        .collect();
    let mut streams = Vec::with_capacity(plan.clients);
    for i in 0..plan.clients {
        let addr = addrs[i % addrs.len()];
        let stream = batches[i % addrs.len()]
            .next()
            .with_context(|| format!("client {i} was not connected"))?
            .with_context(|| format!("client {i} cannot connect"))?;
        let mut stream = match &plan.tls {
            None if plan.web => {
                let mut stream = BenchStream::upgrade(stream, addr, "/ws")
                    .with_context(|| format!("client {i}: WebSocket upgrade"))?;
                wait_for_line(&mut stream, deadline, |line| line.starts_with(b"* welcome"))
                    .with_context(|| format!("client {i}: welcome over a WebSocket"))?;
                stream
            }
            Some(config) => {
                let mut stream = BenchStream::handshake(stream, config.clone())
                    .with_context(|| format!("client {i}: TLS handshake"))?;
                wait_for_line(&mut stream, deadline, |line| line.starts_with(b"* welcome"))
                    .with_context(|| format!("client {i}: welcome over TLS"))?;
                stream
            }
            None => BenchStream::Plain(stream),
        };
        let room = room_of(i, plan);
        let joining = match peer {
            Peer::Chatd => format!("#join {room}\n#ping ready\n").into_bytes(),
            Peer::Redis => resp(&["SUBSCRIBE", &room]),
            // The hello went out on connecting.
            Peer::Lines(templates) if templates.registered.is_none() => {
                LineTemplates::fill(&templates.join, i, &room, "")
            }
            Peer::Lines(_) => Vec::new(),
        };
        stream.write_all(&joining)?;
        streams.push(stream);
    }
    if let Peer::Lines(templates) = peer
        && let Some(registered) = &templates.registered
    {
        // Each client waits for its registration to complete, then joins.
        for (i, stream) in streams.iter_mut().enumerate() {
            wait_for_line(stream, deadline, |line| {
                memchr::memmem::find(line, registered.as_bytes()).is_some()
            })
            .with_context(|| format!("client {i} waiting for {registered:?}"))?;
            let room = room_of(i, plan);
            stream.write_all(&LineTemplates::fill(&templates.join, i, &room, ""))?;
        }
    }
    let mut publishers = Vec::new();
    match peer {
        Peer::Chatd => {
            for stream in &mut streams {
                wait_for_line(stream, deadline, |line| line == b"+ pong ready")?;
            }
        }
        Peer::Redis => {
            for stream in &mut streams {
                wait_for_line(stream, deadline, |line| line == b"subscribe")?;
            }
            for (i, publisher) in connect_all(addr, plan.senders, Greeting::None, deadline, false)
                .into_iter()
                .enumerate()
            {
                publishers.push(BenchStream::Plain(
                    publisher.with_context(|| format!("publisher {i}"))?,
                ));
            }
        }
        Peer::Lines(templates) => std::thread::sleep(templates.settle),
    }
    if progress {
        eprintln!("\r  {} clients in {} rooms", plan.clients, plan.rooms);
    }
    Ok((streams, publishers))
}

/// A command in RESP, Redis's request encoding.
fn resp(parts: &[&str]) -> Vec<u8> {
    let mut bytes = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        bytes.extend_from_slice(format!("${}\r\n{part}\r\n", part.len()).as_bytes());
    }
    bytes
}

/// The room client `i` joins: `bench0`, `bench1`, ...
fn room_of(i: usize, plan: &FanoutPlan) -> String {
    format!("bench{}", i % plan.rooms)
}

/// Reads until a line (without its line end) that `wanted` accepts, or
/// fails at `deadline`. Bytes after that line are dropped.
fn wait_for_line(
    stream: &mut BenchStream,
    deadline: Instant,
    wanted: impl Fn(&[u8]) -> bool,
) -> anyhow::Result<()> {
    let mut pending = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("the server did not finish setting up within {SETUP_LIMIT:?}");
        }
        stream.socket().set_read_timeout(Some(left))?;
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if wanted(line[..end].strip_suffix(b"\r").unwrap_or(&line[..end])) {
                return Ok(());
            }
        }
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            bail!("connection closed while waiting");
        }
        pending.extend_from_slice(&buffer[..n]);
    }
}

type ReaderResult = anyhow::Result<(u64, Histogram)>;

fn spawn_readers(
    streams: Vec<BenchStream>,
    plan: &FanoutPlan,
    shared: &Arc<Shared>,
    observer_of: impl Fn(usize) -> usize,
) -> anyhow::Result<Vec<std::thread::JoinHandle<ReaderResult>>> {
    let threads = plan.reader_threads.max(1);
    let mut groups: Vec<Vec<(usize, BenchStream)>> = (0..threads).map(|_| Vec::new()).collect();
    for (index, stream) in streams.into_iter().enumerate() {
        groups[index % threads].push((index, stream));
    }
    // For each client: the sender it observes, if any.
    let mut observes = vec![None; plan.clients];
    for sender in 0..plan.senders {
        observes[observer_of(sender)] = Some(sender);
    }
    let observes = Arc::new(observes);
    let mut handles = Vec::new();
    for group in groups {
        let shared = shared.clone();
        let observes = observes.clone();
        handles.push(
            std::thread::Builder::new()
                .name("bench-reader".into())
                .spawn(move || read_group(group, &shared, &observes))?,
        );
    }
    Ok(handles)
}

fn read_group(
    group: Vec<(usize, BenchStream)>,
    shared: &Shared,
    observes: &[Option<usize>],
) -> ReaderResult {
    let poller = Poller::new()?;
    let mut clients: Vec<(usize, BenchStream, DeliveryScanner)> = Vec::with_capacity(group.len());
    for (key, (index, stream)) in group.into_iter().enumerate() {
        stream.socket().set_nonblocking(true)?;
        // SAFETY: each stream lives in `clients` until this function returns,
        // after the poller (declared first, dropped last) is done with it;
        // the poller is never used after the streams are dropped.
        #[allow(unsafe_code)]
        unsafe {
            poller.add_with_mode(
                stream.socket(),
                Event::readable(key),
                polling::PollMode::Level,
            )?;
        }
        clients.push((index, stream, DeliveryScanner::default()));
    }
    let mut events = Events::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut delivered = 0u64;
    let mut latency = Histogram::default();
    while !shared.stop.load(Ordering::Relaxed) {
        events.clear();
        poller.wait(&mut events, Some(Duration::from_millis(50)))?;
        for event in events.iter() {
            let (index, stream, scanner) = &mut clients[event.key];
            let observed_sender = observes.get(*index).copied().flatten();
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) => bail!("client {index} was disconnected"),
                    Ok(n) => {
                        let now = shared.start.elapsed().as_nanos() as u64;
                        scanner.feed(&buffer[..n], |payload| {
                            delivered += 1;
                            latency.record(now.saturating_sub(payload.sent_at) / 1_000);
                            if observed_sender == Some(payload.sender) {
                                shared.observed[payload.sender]
                                    .fetch_max(payload.seq + 1, Ordering::Release);
                            }
                        });
                        if n < buffer.len() {
                            break;
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    Ok((delivered, latency))
}

/// Most messages one sender puts into one write.
const MAX_BATCH: u64 = 64;

/// Sends until the duration is over; returns messages per sender and the
/// sending time. Each turn, every sender writes all it may send now (its
/// share of the rate that is due, or flat out what its in-flight bound
/// allows) in one write, as a pipelining client does: one syscall per
/// message would cost the generator more than the server's whole work.
fn send(
    writers: &mut [BenchStream],
    peer: &Peer,
    plan: &FanoutPlan,
    shared: &Shared,
    progress: bool,
) -> anyhow::Result<(Vec<u64>, Duration)> {
    let mut sent = vec![0u64; writers.len()];
    let padding = "x".repeat(plan.payload.saturating_sub(40));
    let rooms: Vec<String> = (0..writers.len())
        .map(|sender| room_of(sender, plan))
        .collect();
    let mut payload = String::with_capacity(plan.payload + 64);
    let mut batch = Vec::new();
    let begin = Instant::now();
    let mut next_report = begin + Duration::from_secs(1);
    let mut total = 0u64;
    while begin.elapsed() < plan.duration {
        let mut progressed = false;
        for (sender, writer) in writers.iter_mut().enumerate() {
            let limit = match plan.rate {
                Some(rate) => due_by(begin.elapsed(), rate, sender, plan.senders),
                None => shared.observed[sender].load(Ordering::Acquire) + plan.in_flight,
            };
            let count = limit.saturating_sub(sent[sender]).min(MAX_BATCH);
            if count == 0 {
                continue;
            }
            batch.clear();
            let room = &rooms[sender];
            for seq in sent[sender]..sent[sender] + count {
                let now = shared.start.elapsed().as_nanos();
                payload.clear();
                write!(payload, "~b {sender} {seq} {now} {padding}")?;
                match peer {
                    Peer::Chatd => {
                        batch.extend_from_slice(payload.as_bytes());
                        batch.push(b'\n');
                    }
                    Peer::Redis => batch.extend_from_slice(&resp(&["PUBLISH", room, &payload])),
                    Peer::Lines(templates) => batch.extend_from_slice(&LineTemplates::fill(
                        &templates.say,
                        sender,
                        room,
                        &payload,
                    )),
                }
            }
            writer.write_all(&batch)?;
            sent[sender] += count;
            total += count;
            progressed = true;
        }
        if !progressed {
            // Nothing may go yet: sleep instead of spinning, or the
            // generator steals the CPU the server is being measured on.
            let pause = match plan.rate {
                // The schedule's next message is number `total`.
                Some(rate) => {
                    let due = begin + Duration::from_secs_f64(total as f64 / rate as f64);
                    due.saturating_duration_since(Instant::now())
                }
                None => Duration::from_micros(50),
            };
            std::thread::sleep(pause.min(Duration::from_millis(5)));
        }
        if progress && Instant::now() >= next_report {
            eprint!("\r  {total} sent, {:.0} s", begin.elapsed().as_secs_f64());
            next_report += Duration::from_secs(1);
        }
    }
    if progress {
        eprintln!();
    }
    Ok((sent, begin.elapsed()))
}

/// How many messages `sender` (of `senders`) may have sent `elapsed` into
/// a run at `rate` messages per second in total. Message `k` of the total
/// is due at `k / rate` and belongs to sender `k % senders`, so the senders
/// take turns at even spacing: if each sent its share on the same tick,
/// every tick would be a burst of `senders` messages at once, and the
/// measured latency would be the burst's queueing, not the server's.
fn due_by(elapsed: Duration, rate: u64, sender: usize, senders: usize) -> u64 {
    let last_due = (elapsed.as_secs_f64() * rate as f64) as u64;
    let (sender, senders) = (sender as u64, senders.max(1) as u64);
    if last_due < sender {
        0
    } else {
        (last_due - sender) / senders + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_every_placeholder_and_end_lines_with_crlf() {
        assert_eq!(
            LineTemplates::fill("NICK b{n}\\nJOIN #{room}", 7, "bench1", ""),
            b"NICK b7\r\nJOIN #bench1\r\n"
        );
        assert_eq!(
            LineTemplates::fill("PRIVMSG #{room} :{payload}", 0, "bench0", "~b 1 2 3"),
            b"PRIVMSG #bench0 :~b 1 2 3\r\n"
        );
        assert!(LineTemplates::fill("", 0, "bench0", "").is_empty());
        assert_eq!(
            LineTemplates::fill("NICK b{n}\nUSER b{n} 0 * :b", 2, "bench0", ""),
            b"NICK b2\r\nUSER b2 0 * :b\r\n"
        );
    }

    #[test]
    fn chatd_is_spoken_to_over_irc_with_the_peers_templates() {
        let irc = LineTemplates::chatd_irc();
        assert_eq!(
            LineTemplates::fill(&irc.hello, 12, "bench0", ""),
            b"NICK u12\r\nUSER u12 0 * :u12\r\n"
        );
        assert_eq!(
            LineTemplates::fill(&irc.join, 12, "bench3", ""),
            b"JOIN #bench3\r\n"
        );
        assert_eq!(
            LineTemplates::fill(&irc.say, 12, "bench3", "~b 12 5 99"),
            b"PRIVMSG #bench3 :~b 12 5 99\r\n"
        );
    }

    #[test]
    fn a_fixed_rate_is_spread_evenly_over_the_senders() {
        let at = Duration::from_millis;
        // 100 messages/s over 4 senders: one every 10 ms, in turn.
        let counts = |ms| {
            (0..4)
                .map(|s| due_by(at(ms), 100, s, 4))
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(0), [1, 0, 0, 0]);
        assert_eq!(counts(15), [1, 1, 0, 0]);
        assert_eq!(counts(35), [1, 1, 1, 1]);
        assert_eq!(counts(40), [2, 1, 1, 1]);
        // After one second the total is the rate (plus the one at time 0).
        assert_eq!(counts(1000).iter().sum::<u64>(), 101);
    }

    #[test]
    fn redis_commands_are_resp_arrays() {
        assert_eq!(
            resp(&["PUBLISH", "bench0", "~b 1"]),
            b"*3\r\n$7\r\nPUBLISH\r\n$6\r\nbench0\r\n$4\r\n~b 1\r\n"
        );
    }
}
