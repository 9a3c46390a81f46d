//! `chatd bench history`: how long `chatd serve` takes to start, and how
//! much memory it holds right after, on a data directory of R records.
//!
//! For each record count it writes a data directory (1,000 rooms by
//! default) straight to disk with [`chatd_core::history::encode`], in the
//! segmented layout of issue 14 (`<room>/<FIRSTID>.log`, 20-digit
//! FIRSTID, 4 MiB segments, an `.idx` beside every sealed one as the
//! writer leaves it) or the flat layout of earlier builds (`<room>.log`),
//! plus one reservation line in `_ids.log`. Then it starts
//! the server on it a few times and measures, for each start, the time
//! from spawn to the start-up line and to the welcome line of a first
//! connection, and the server's RSS (VmRSS) and peak RSS (VmHWM) at that
//! moment. Loopback only; each start is bounded (`--timeout`) and the
//! data directories are removed at the end.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chatd_core::history::encode;
use chatd_core::{Dialect, MessageId, Nick, Record, RecordKind, RoomName};
use chatd_engine::listener::parse_listening;
use chatd_engine::persist::index::IndexBuilder;
use clap::{Parser, ValueEnum};

use crate::server::{Launch, unused_listeners_off};

/// Start-up time and RSS against the records on disk.
#[derive(Debug, Parser)]
pub struct HistoryArgs {
    /// Record counts to measure, comma-separated (`k` and `M` suffixes).
    #[arg(long, default_value = "0,1M,10M", value_delimiter = ',', value_parser = parse_count)]
    pub records: Vec<u64>,
    /// Rooms the records are spread over (each record's room drawn
    /// uniformly at random, the same on every run).
    #[arg(long, default_value_t = 1_000)]
    pub rooms: usize,
    /// Starts per record count.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Longest wait for one start, in seconds; a start that takes longer is
    /// reported as a timeout.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// On-disk layout: segmented (`<room>/<FIRSTID>.log`, issue 14) or flat
    /// (`<room>.log`, what builds before issue 14 read).
    #[arg(long, value_enum, default_value_t = Layout::Segmented)]
    pub layout: Layout,
    /// Segment size of the segmented layout, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub segment_bytes: u64,
    /// Bytes of text per record (about).
    #[arg(long, default_value_t = 120)]
    pub text_bytes: usize,
    /// Where to make the data directories [default: the system's temp dir].
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// How to start chatd.
    #[command(flatten)]
    pub launch: Launch,
}

/// How the generated history is laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    /// `<data>/<room>/<FIRSTID>.log` segments (issue 14).
    Segmented,
    /// `<data>/<room>.log`, one log per room (before issue 14).
    Flat,
}

/// Parses `1000`, `1_000`, `500k`, `10M`.
pub fn parse_count(text: &str) -> Result<u64, String> {
    let clean = text.trim().replace('_', "");
    let (digits, scale) = match clean.char_indices().last() {
        Some((at, 'k' | 'K')) => (&clean[..at], 1_000),
        Some((at, 'm' | 'M')) => (&clean[..at], 1_000_000),
        _ => (clean.as_str(), 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("not a count: {text:?} (e.g. 0, 500k, 10M)"))
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Records written (reservation not counted).
    pub records: u64,
    /// Log files written (segments or flat logs, `_ids.log` not counted).
    pub logs: usize,
    /// `.idx` files written (one per sealed segment).
    pub indexes: usize,
    /// Bytes of all logs, `_ids.log` included.
    pub bytes: u64,
}

/// splitmix64: the same records on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A word in one record of every [`RARE_EVERY`] (for searches that must
/// look through everything).
pub const RARE_WORD: &str = "zyzzogeton";
/// How often [`RARE_WORD`] appears: in record `k * RARE_EVERY + RARE_EVERY / 2`.
pub const RARE_EVERY: u64 = 100_000;

/// Words the texts are made of.
const WORDS: [&str; 32] = [
    "the", "build", "is", "green", "again", "who", "broke", "deploy", "lunch", "at", "noon",
    "review", "please", "merged", "thanks", "looks", "good", "to", "me", "ticket", "server",
    "restart", "tonight", "coffee", "meeting", "moved", "friday", "logs", "rotate", "disk", "full",
    "ok",
];

/// A log being written: a segment (or a flat log) and its size so far.
struct Open {
    out: BufWriter<File>,
    len: u64,
    /// The segment's path, for its `.idx` when it is sealed.
    path: PathBuf,
    /// Its index as the server's writer builds it (segmented layout only).
    index: Option<IndexBuilder>,
}

impl Open {
    /// Flushes the log and, for a sealed segment, writes its `.idx` as the
    /// writer does at a seal (the newest segment of a room has none).
    fn close(mut self, sealed: bool) -> io::Result<()> {
        self.out.flush()?;
        if let (true, Some(index)) = (sealed, self.index) {
            fs::write(self.path.with_extension("idx"), index.finish())?;
        }
        Ok(())
    }
}

/// `count` room names `{prefix}0`, `{prefix}1`, ... (`width` digits at
/// least, zero-padded).
pub fn room_names(prefix: &str, count: usize, width: usize) -> io::Result<Vec<RoomName>> {
    (0..count.max(1))
        .map(|i| RoomName::parse(&format!("{prefix}{i:0width$}")).map_err(io::Error::other))
        .collect()
}

/// Writes `records` records, each in a room of `rooms` drawn at random,
/// into `dir` (created if missing) in `layout`, plus one reservation line
/// in `_ids.log` above the last id. Ids run from 1; the newest record is
/// about now.
pub fn generate(
    dir: &Path,
    records: u64,
    rooms: &[RoomName],
    layout: Layout,
    segment_bytes: u64,
    text_bytes: usize,
) -> io::Result<Generated> {
    fs::create_dir_all(dir)?;
    if rooms.is_empty() {
        return Err(io::Error::other("no rooms to write"));
    }
    let nicks: Vec<Nick> = (0..100)
        .map(|i| Nick::parse(&format!("user{i}")).map_err(io::Error::other))
        .collect::<io::Result<_>>()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // One record every 10 ms up to now.
    let first_ts = now.saturating_sub(records.saturating_mul(10));
    let mut rng = Rng(14);
    let mut open: HashMap<usize, Open> = HashMap::new();
    let mut generated = Generated {
        records,
        logs: 0,
        indexes: 0,
        bytes: 0,
    };
    let mut text = String::new();
    for id in 1..=records {
        let room = rng.below(rooms.len() as u64) as usize;
        text.clear();
        if id % RARE_EVERY == RARE_EVERY / 2 {
            text.push_str(RARE_WORD);
        }
        while text.len() < text_bytes {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        }
        let record = Record {
            id: MessageId::new(id),
            room: rooms[room].clone(),
            ts: first_ts + id * 10,
            from: nicks[rng.below(nicks.len() as u64) as usize],
            kind: if rng.below(50) == 0 {
                RecordKind::Action
            } else {
                RecordKind::Msg
            },
            text: text.clone(),
            to: None,
            private: false,
        };
        let line = encode(&record);
        let full = open
            .get(&room)
            .is_some_and(|log| layout == Layout::Segmented && log.len >= segment_bytes);
        if full && let Some(log) = open.remove(&room) {
            log.close(true)?;
            generated.indexes += 1;
        }
        let log = match open.entry(room) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let path = match layout {
                    Layout::Segmented => {
                        let room_dir = dir.join(rooms[room].as_str());
                        fs::create_dir_all(&room_dir)?;
                        room_dir.join(format!("{id:020}.log"))
                    }
                    Layout::Flat => dir.join(format!("{}.log", rooms[room].as_str())),
                };
                generated.logs += 1;
                entry.insert(Open {
                    out: BufWriter::with_capacity(64 * 1024, File::create(&path)?),
                    len: 0,
                    path,
                    index: (layout == Layout::Segmented).then(IndexBuilder::new),
                })
            }
        };
        if let Some(index) = &mut log.index {
            index.add(log.len, line.len() as u64, &record);
        }
        log.out.write_all(&line)?;
        log.len += line.len() as u64;
        generated.bytes += line.len() as u64;
    }
    for (_, log) in open {
        log.close(false)?;
    }
    // The core reserves ids in blocks of 1,024 (docs/HISTORY.md).
    let reserved = (records / 1024 + 1) * 1024;
    let line = encode(&Record::reservation(MessageId::new(reserved), now));
    fs::write(dir.join("_ids.log"), &line)?;
    generated.bytes += line.len() as u64;
    Ok(generated)
}

/// One start of the server.
#[derive(Debug, Clone, Copy)]
pub struct StartUp {
    /// Spawn to the start-up line (`chatd listening on ...`).
    pub listening: Duration,
    /// Spawn to the welcome line of a first connection.
    pub welcome: Duration,
    /// VmRSS right after the welcome line, bytes.
    pub rss: u64,
    /// VmHWM (peak RSS) at that moment, bytes.
    pub peak_rss: u64,
    /// Server CPU time (user + system) up to then.
    pub cpu: Duration,
}

/// How one start ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// It listened and welcomed a client.
    Started(StartUp),
    /// It did not welcome a client within the time allowed.
    TimedOut,
}

/// Kills the child on every way out.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `chatd serve` on `data` and measures the start (see [`StartUp`]);
/// the server is killed before this returns.
pub fn start_once(launch: &Launch, data: &Path, timeout: Duration) -> anyhow::Result<Outcome> {
    let binary = launch.chatd_binary()?;
    let listeners = unused_listeners_off(&binary, false);
    let mut command = match &launch.server_cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpus]).arg(&binary);
            command
        }
        None => Command::new(&binary),
    };
    command
        .arg("serve")
        .args(["--bind", "127.0.0.1:0"])
        .args(&listeners)
        .arg("--config")
        .arg(&launch.config)
        .args(["--backend", &launch.backend])
        .args(["--threads", &launch.threads.to_string()])
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let deadline = started + timeout;
    let mut child = Running(
        command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?,
    );
    let stderr = child.0.stderr.take().context("no stderr")?;
    let (found, address) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("chatd listening on ").nth(1) {
                let listening = parse_listening(rest);
                let address = match listening.iter().find(|l| l.dialect == Dialect::Native) {
                    Some(native) => Some(native.address.to_string()),
                    None => rest
                        .split([' ', ','])
                        .next()
                        .map(|first| first.trim_end_matches(':').to_owned()),
                };
                let _ = found.send((Instant::now(), address));
            } else if ["ERROR", "WARN", "panicked"]
                .iter()
                .any(|w| line.contains(w))
                || line.starts_with("chatd:")
            {
                eprintln!("server: {line}");
            }
        }
    });
    let (listened_at, address) = loop {
        match address.recv_timeout(Duration::from_millis(50)) {
            Ok(found) => break found,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = child.0.try_wait()? {
                    bail!("the server exited at start ({status})");
                }
                if Instant::now() >= deadline {
                    return Ok(Outcome::TimedOut);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the server closed its stderr without a start-up line")
            }
        }
    };
    let address: SocketAddr = address
        .context("the start-up line names no native listener")?
        .parse()
        .context("start-up line address")?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Ok(Outcome::TimedOut);
    }
    match welcome(address, remaining) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(Outcome::TimedOut),
        Err(error) if error.kind() == io::ErrorKind::TimedOut => return Ok(Outcome::TimedOut),
        Err(error) => return Err(error).context("first connection"),
    }
    let welcomed = started.elapsed();
    let pid = child.0.id();
    Ok(Outcome::Started(StartUp {
        listening: listened_at.duration_since(started),
        welcome: welcomed,
        rss: status_kib(pid, "VmRSS:")? * 1024,
        peak_rss: status_kib(pid, "VmHWM:")? * 1024,
        cpu: crate::server::cpu_time_of_pid(pid)?,
    }))
}

/// Connects and reads chatd's welcome line, within `timeout`.
fn welcome(address: SocketAddr, timeout: Duration) -> io::Result<()> {
    let stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        if (&stream).read(&mut byte)? == 0 {
            return Err(io::Error::other("closed before the welcome line"));
        }
        line.push(byte[0]);
    }
    if line.starts_with(b"* welcome") {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "unexpected first line {:?}",
            String::from_utf8_lossy(&line)
        )))
    }
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .context("cannot read /proc (Linux only)")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no {field} in /proc status"))
}

/// Removes a scratch directory on every way out.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

impl HistoryArgs {
    /// Generates each data directory, starts the server on it
    /// `repeats` times and prints one table row per start.
    pub fn run(self) -> anyhow::Result<()> {
        let binary = self.launch.chatd_binary()?;
        let root = self.scratch.clone().unwrap_or_else(std::env::temp_dir);
        let timeout = Duration::from_secs(self.timeout);
        println!(
            "chatd bench history: {} ({:?} layout, {} rooms, ~{}-byte texts, {} threads, config {}); page cache warm\n",
            binary.display(),
            self.layout,
            self.rooms,
            self.text_bytes,
            self.launch.threads,
            self.launch.config.display()
        );
        println!(
            "| records | on disk MiB | logs | run | to start-up line ms | to welcome ms | RSS MiB | peak RSS MiB | server CPU s |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for &records in &self.records {
            let scratch = Scratch(root.join(format!(
                "chatd-bench-history-{}-{records}",
                std::process::id()
            )));
            let _ = fs::remove_dir_all(&scratch.0);
            let made = Instant::now();
            let generated = generate(
                &scratch.0,
                records,
                &room_names("room", self.rooms, 4)?,
                self.layout,
                self.segment_bytes,
                self.text_bytes,
            )
            .with_context(|| format!("cannot write {}", scratch.0.display()))?;
            eprintln!(
                "wrote {records} records in {} logs and {} indexes ({:.0} MiB) in {:.1} s",
                generated.logs,
                generated.indexes,
                mib(generated.bytes),
                made.elapsed().as_secs_f64()
            );
            for run in 1..=self.repeats.max(1) {
                let prefix = format!(
                    "| {records} | {:.0} | {} | {run}",
                    mib(generated.bytes),
                    generated.logs
                );
                match start_once(&self.launch, &scratch.0, timeout)? {
                    Outcome::Started(s) => println!(
                        "{prefix} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
                        s.listening.as_secs_f64() * 1e3,
                        s.welcome.as_secs_f64() * 1e3,
                        mib(s.rss),
                        mib(s.peak_rss),
                        s.cpu.as_secs_f64(),
                    ),
                    Outcome::TimedOut => println!(
                        "{prefix} | timeout (> {} s) | timeout | - | - | - |",
                        self.timeout
                    ),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_core::history::recover;
    use chatd_engine::persist::index::SegmentIndex;

    fn scratch(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "chatd-bench-history-test-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        Scratch(dir)
    }

    #[test]
    fn counts_take_suffixes() {
        assert_eq!(parse_count("0"), Ok(0));
        assert_eq!(parse_count("1_000"), Ok(1_000));
        assert_eq!(parse_count("500k"), Ok(500_000));
        assert_eq!(parse_count("10M"), Ok(10_000_000));
        assert!(parse_count("ten").is_err());
        assert!(parse_count("M").is_err());
    }

    /// Every record lands once, in its room's segments, in id order; a
    /// segment is named after its first record's id (20 digits) and is
    /// only left for the next once it holds `segment_bytes`.
    #[test]
    fn segmented_layout_holds_every_record_once() {
        let dir = scratch("segmented");
        let segment_bytes = 16 * 1024;
        let made = generate(
            &dir.0,
            5_000,
            &room_names("room", 7, 4).unwrap(),
            Layout::Segmented,
            segment_bytes,
            120,
        )
        .unwrap();
        assert_eq!(made.records, 5_000);
        let mut ids = Vec::new();
        let mut logs = 0;
        let mut indexes = 0;
        for room in fs::read_dir(&dir.0).unwrap() {
            let room = room.unwrap();
            if !room.file_type().unwrap().is_dir() {
                continue;
            }
            let mut names: Vec<String> = fs::read_dir(room.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|name| name.ends_with(".log"))
                .collect();
            names.sort();
            assert!(names.len() > 1, "{names:?}");
            for (i, name) in names.iter().enumerate() {
                logs += 1;
                let first: u64 = name
                    .strip_suffix(".log")
                    .filter(|digits| digits.len() == 20)
                    .and_then(|digits| digits.parse().ok())
                    .unwrap_or_else(|| panic!("bad segment name {name}"));
                let bytes = fs::read(room.path().join(name)).unwrap();
                let recovery = recover(&bytes);
                assert!(recovery.skipped.is_empty() && recovery.torn_tail.is_none());
                assert_eq!(recovery.records[0].id.get(), first);
                let last = recovery.records.last().unwrap();
                let room_name = room.file_name().into_string().unwrap();
                assert!(
                    recovery
                        .records
                        .iter()
                        .all(|r| r.room.as_str() == room_name)
                );
                // Only the newest segment may be short; the sealed ones
                // have an index that covers every record, the newest none.
                let idx = room.path().join(name.replace(".log", ".idx"));
                if i + 1 < names.len() {
                    assert!(bytes.len() as u64 >= segment_bytes);
                    assert!(bytes.len() as u64 - segment_bytes < encode(last).len() as u64);
                    let index = SegmentIndex::parse(&fs::read(&idx).unwrap()).unwrap();
                    let indexed: u64 = index.blocks.iter().map(|b| u64::from(b.records)).sum();
                    assert_eq!(indexed, recovery.records.len() as u64);
                    assert_eq!(index.blocks[0].first_id.get(), first);
                    assert_eq!(index.blocks.last().unwrap().last_id, last.id);
                    indexes += 1;
                } else {
                    assert!(!idx.exists(), "{}", idx.display());
                }
                ids.extend(recovery.records.iter().map(|r| r.id.get()));
            }
        }
        assert_eq!(logs, made.logs);
        assert_eq!(indexes, made.indexes);
        ids.sort_unstable();
        assert_eq!(ids, (1..=5_000).collect::<Vec<u64>>());
        let reservation = recover(&fs::read(dir.0.join("_ids.log")).unwrap());
        assert_eq!(reservation.records.len(), 1);
        assert_eq!(reservation.records[0].kind, RecordKind::Reserve);
        assert!(reservation.records[0].id.get() > 5_000);
    }

    #[test]
    fn flat_layout_has_one_log_per_room() {
        let dir = scratch("flat");
        let made = generate(
            &dir.0,
            2_000,
            &room_names("room", 5, 4).unwrap(),
            Layout::Flat,
            1024,
            120,
        )
        .unwrap();
        assert_eq!(made.logs, 5);
        let mut total = 0;
        for i in 0..5 {
            let bytes = fs::read(dir.0.join(format!("room{i:04}.log"))).unwrap();
            total += recover(&bytes).records.len();
        }
        assert_eq!(total, 2_000);
    }
}
