//! `chatd bench history-latency`: how long `#history ... before ID 50` and
//! `#search WORD` take, idle and under an S2-lite-like load.
//!
//! It writes a data directory of R records over the load's rooms
//! (`bench0`, `bench1`, ...; see [`crate::history::generate`]), starts
//! chatd on it, and connects a probe client that turns message ids on,
//! goes to a room of its own (`#probe`) and then asks, one at a time, `#history #benchK before ID 50` (random
//! room and id among the written records) and `#search WORD` (a word in
//! one record of 100,000 by default, so the search looks through
//! everything). First with the server idle, then while the fan-out load
//! runs (the probe starts once every load client has joined). Each answer
//! is read whole (header and its N entries); the time is from the
//! request's write to its last entry. Loopback only, bounded by
//! `--queries` and the load's duration; the data directory is removed at
//! the end.
//!
//! Needs a chatd with issue 14's protocol (`#ids`, `#history before`,
//! `#search`); older builds are told apart by their answer to `#ids on`.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chatd_core::Dialect;
use clap::Parser;

use crate::commands::describe;
use crate::fanout::{self, FanoutPlan};
use crate::history::{Layout, RARE_WORD, generate, parse_count, room_names};
use crate::server::{Launch, ServerProcess, chatd_peer};

/// `#history before` and `#search` latency, idle and under load.
#[derive(Debug, Parser)]
pub struct HistoryLatencyArgs {
    /// Records written before the server starts, over the load's rooms.
    #[arg(long, default_value = "1M", value_parser = parse_count)]
    pub records: u64,
    /// Queries of each kind per phase, at most.
    #[arg(long, default_value_t = 500)]
    pub queries: usize,
    /// Pause between two probe queries, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub interval_ms: u64,
    /// The word searched for.
    #[arg(long, default_value = RARE_WORD)]
    pub word: String,
    /// Load: connected clients (S2-lite: 10,000).
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Load: rooms (S2-lite: 10).
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Load: senders (S2-lite: 100).
    #[arg(long, default_value_t = 100)]
    pub senders: usize,
    /// Load: messages per second in total (S2-lite: 200).
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Load: sending time in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Where to make the data directory [default: the system's temp dir].
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// How to start chatd.
    #[command(flatten)]
    pub launch: Launch,
}

/// Latencies of one kind of query in one phase.
#[derive(Debug, Default)]
pub struct Latencies {
    /// Each answered query's time.
    pub times: Vec<Duration>,
    /// Entries received in all.
    pub entries: usize,
    /// Search answers marked `partial` (the server's time bound).
    pub partial: usize,
    /// `!` answers (e.g. `! try-later`).
    pub errors: usize,
}

impl Latencies {
    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.times.clone();
        sorted.sort();
        match sorted.len() {
            0 => Duration::ZERO,
            n => sorted[((n as f64 * q).ceil() as usize).clamp(1, n) - 1],
        }
    }

    fn row(&self, phase: &str, query: &str) -> String {
        let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
        format!(
            "| {phase} | {query} | {} | {} | {} | {} | {:.1} | {} | {} |",
            self.times.len(),
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.times.iter().max().copied().unwrap_or_default()),
            self.entries as f64 / self.times.len().max(1) as f64,
            self.partial,
            self.errors,
        )
    }
}

/// What one answer was.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// `+ history ... N` or `+ search N [partial]` and its N entries.
    Entries {
        /// N.
        count: usize,
        /// `partial` after the count.
        partial: bool,
    },
    /// A `!` line.
    Error(String),
}

/// The count and `partial` mark of an answer's header, if `line` is the
/// header of a `kind` (`history` or `search`) answer.
pub fn parse_header(line: &str, kind: &str) -> Option<(usize, bool)> {
    let rest = line.strip_prefix("+ ")?.strip_prefix(kind)?;
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    let partial = words.last() == Some(&"partial");
    if partial {
        words.pop();
    }
    Some((words.last()?.parse().ok()?, partial))
}

/// A client that asks one query at a time.
struct Probe {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: String,
}

impl Probe {
    fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).context("probe cannot connect")?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut probe = Self {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
            line: String::new(),
        };
        let welcome = probe.next_line()?;
        if !welcome.starts_with("* welcome") {
            bail!("unexpected first line {welcome:?}");
        }
        probe.writer.write_all(b"#ids on\n")?;
        loop {
            let line = probe.next_line()?;
            if line == "* ids on" {
                break;
            }
            if line.starts_with('!') {
                bail!(
                    "this chatd does not know `#ids on` ({line}): it predates issue 14's history queries, nothing to measure"
                );
            }
        }
        // A room of its own: #general hears every load client arrive and
        // leave, thousands of lines the probe would have to read through.
        probe.writer.write_all(b"#join probe\n")?;
        loop {
            let line = probe.next_line()?;
            if line.starts_with('!') {
                bail!("the probe cannot join #probe: {line}");
            }
            if line.starts_with('*') && line.contains("#probe") {
                return Ok(probe);
            }
        }
    }

    fn next_line(&mut self) -> io::Result<String> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(io::Error::other("the server closed the probe's connection"));
        }
        Ok(self.line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// Sends `request` and reads its whole answer; lines that belong to
    /// neither (notices of #general) are skipped.
    fn ask(&mut self, request: &str, kind: &str) -> anyhow::Result<(Answer, Duration)> {
        let started = Instant::now();
        self.writer.write_all(format!("{request}\n").as_bytes())?;
        let (count, partial) = loop {
            let line = self.next_line()?;
            if let Some(header) = parse_header(&line, kind) {
                break header;
            }
            if line.starts_with('!') {
                return Ok((Answer::Error(line), started.elapsed()));
            }
        };
        let mut seen = 0;
        while seen < count {
            if self.next_line()?.starts_with('[') {
                seen += 1;
            }
        }
        Ok((Answer::Entries { count, partial }, started.elapsed()))
    }
}

/// Both kinds of query, one phase.
#[derive(Debug, Default)]
struct Phase {
    history: Latencies,
    search: Latencies,
}

/// Asks `before` and `search` queries in turn until `queries` of each, or
/// `stop`.
fn probe_loop(
    probe: &mut Probe,
    args: &ProbePlan,
    stop: &AtomicBool,
    seed: u64,
) -> anyhow::Result<Phase> {
    let mut phase = Phase::default();
    let mut state = seed | 1;
    let mut random = |n: u64| {
        // xorshift64: only to spread the queries.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n.max(1)
    };
    for _ in 0..args.queries {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let room = random(args.rooms as u64);
        let id = 1 + random(args.records.max(1));
        let request = format!("#history #bench{room} before {id} 50");
        let (answer, took) = probe.ask(&request, "history")?;
        record(&mut phase.history, answer, took);
        std::thread::sleep(args.interval);
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let (answer, took) = probe.ask(&format!("#search {}", args.word), "search")?;
        record(&mut phase.search, answer, took);
        std::thread::sleep(args.interval);
    }
    Ok(phase)
}

fn record(latencies: &mut Latencies, answer: Answer, took: Duration) {
    match answer {
        Answer::Entries { count, partial } => {
            latencies.times.push(took);
            latencies.entries += count;
            latencies.partial += usize::from(partial);
        }
        Answer::Error(line) => {
            if latencies.errors == 0 {
                eprintln!("probe: {line}");
            }
            latencies.errors += 1;
        }
    }
}

/// What the probe loop needs.
#[derive(Debug, Clone)]
struct ProbePlan {
    queries: usize,
    rooms: usize,
    records: u64,
    word: String,
    interval: Duration,
}

impl HistoryLatencyArgs {
    /// Runs both phases and prints a table.
    pub fn run(self) -> anyhow::Result<()> {
        let root = self.scratch.clone().unwrap_or_else(std::env::temp_dir);
        let data = root.join(format!(
            "chatd-bench-history-latency-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&data);
        let cleanup = Cleanup(data.clone());
        let made = Instant::now();
        let generated = generate(
            &data,
            self.records,
            &room_names("bench", self.rooms, 1)?,
            Layout::Segmented,
            4 * 1024 * 1024,
            120,
        )
        .with_context(|| format!("cannot write {}", data.display()))?;
        eprintln!(
            "wrote {} records over {} rooms ({:.0} MiB) in {:.1} s",
            generated.records,
            self.rooms,
            generated.bytes as f64 / 1_048_576.0,
            made.elapsed().as_secs_f64()
        );
        let server = ServerProcess::launch_in(
            &self.launch,
            &self.launch.backend,
            &[],
            Dialect::Native,
            &data,
        )?;
        let plan = ProbePlan {
            queries: self.queries,
            rooms: self.rooms,
            records: self.records,
            word: self.word.clone(),
            interval: Duration::from_millis(self.interval_ms),
        };
        let mut probe = Probe::connect(server.addr)?;
        let idle = probe_loop(&mut probe, &plan, &AtomicBool::new(false), 14)?;

        let started = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let loaded = {
            let (started, stop, plan) = (started.clone(), stop.clone(), plan.clone());
            std::thread::spawn(move || -> anyhow::Result<Phase> {
                while !started.load(Ordering::SeqCst) {
                    if stop.load(Ordering::SeqCst) {
                        return Ok(Phase::default());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                probe_loop(&mut probe, &plan, &stop, 41)
            })
        };
        let duration = Duration::from_secs(self.seconds);
        let load = FanoutPlan::paced(self.clients, self.rooms, self.senders, self.rate, duration);
        let measured =
            fanout::measure_with(&server, &chatd_peer(Dialect::Native), &load, true, || {
                started.store(true, Ordering::SeqCst)
            });
        stop.store(true, Ordering::SeqCst);
        let loaded = loaded
            .join()
            .map_err(|_| anyhow::anyhow!("the probe thread panicked"))??;
        let measured = measured?;
        drop(server);
        drop(cleanup);

        println!(
            "\nchatd bench history-latency: {} records in {} rooms; load {} clients / {} rooms / {} senders at {} msgs/s for {} s: {}\n",
            self.records,
            self.rooms,
            load.clients,
            load.rooms,
            load.senders,
            self.rate,
            self.seconds,
            describe(&measured)
        );
        println!(
            "| phase | query | answered | p50 ms | p99 ms | max ms | entries per answer | partial | errors |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let before = "`#history #ROOM before ID 50`";
        let search = format!("`#search {}`", self.word);
        println!("{}", idle.history.row("idle", before));
        println!("{}", idle.search.row("idle", &search));
        println!("{}", loaded.history.row("under load", before));
        println!("{}", loaded.search.row("under load", &search));
        Ok(())
    }
}

/// Removes the data directory on every way out.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_give_count_and_partial() {
        assert_eq!(
            parse_header("+ history #bench3 50", "history"),
            Some((50, false))
        );
        assert_eq!(
            parse_header("+ history @bob 2", "history"),
            Some((2, false))
        );
        assert_eq!(parse_header("+ search 7", "search"), Some((7, false)));
        assert_eq!(
            parse_header("+ search 3 partial", "search"),
            Some((3, true))
        );
        assert_eq!(parse_header("+ search 3", "history"), None);
        assert_eq!(parse_header("* ids on", "history"), None);
        assert_eq!(parse_header("+ history #general", "history"), None);
    }

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let latencies = Latencies {
            times: (1..=100).rev().map(Duration::from_millis).collect(),
            ..Latencies::default()
        };
        assert_eq!(latencies.quantile(0.5), Duration::from_millis(50));
        assert_eq!(latencies.quantile(0.99), Duration::from_millis(99));
        assert_eq!(Latencies::default().quantile(0.5), Duration::ZERO);
    }
}
