//! `chatd bench compare`: both backends and the peers on the same
//! scenarios, alternating over rounds in one run; one table of medians
//! with the ratio between the backends, every run in a CSV file, and an
//! SVG chart, all in a results folder.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chatd_core::Dialect;
use clap::{Args, ValueEnum};

use crate::chart;
use crate::connect;
use crate::fanout::{self, FanoutPlan, Peer};
use crate::peers::{self, PeerSpec};
use crate::server::{Launch, ServerProcess, chatd_peer, parse_dialect};

/// The scenarios (BENCHMARKS.md describes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// 1 room x 100 clients, 10 senders flat out, 64 in flight, 64 bytes.
    S1,
    /// S1 with history in memory only (chatd's --no-persist).
    S1NoPersist,
    /// 10 rooms x 1,000 clients, 100 senders, 2,000 msgs/s in total.
    S2,
    /// S2 at 200 msgs/s in total.
    S2Lite,
    /// Idle connections (19,000 by default).
    S3,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::S1 => "S1",
            Self::S1NoPersist => "S1 no-persist",
            Self::S2 => "S2",
            Self::S2Lite => "S2-lite",
            Self::S3 => "S3",
        }
    }

    /// Only chatd runs these: they measure chatd's own options or memory.
    fn chatd_only(self) -> bool {
        matches!(self, Self::S1NoPersist | Self::S3)
    }

    fn plan(self, seconds: u64) -> FanoutPlan {
        let duration = Duration::from_secs(seconds);
        let fan_out = |rate| FanoutPlan::paced(10_000, 10, 100, rate, duration);
        match self {
            Self::S1 | Self::S1NoPersist | Self::S3 => FanoutPlan::s1(duration, None, false),
            Self::S2 => fan_out(2_000),
            Self::S2Lite => fan_out(200),
        }
    }

    /// The figures worth a row in the table, in order.
    fn metrics(self) -> &'static [&'static str] {
        match self {
            Self::S1 | Self::S1NoPersist => &[
                DELIVERIES,
                LOST,
                P50,
                P99,
                SERVER_NS,
                GENERATOR_CPU,
                PEAK_RSS,
            ],
            Self::S2 | Self::S2Lite => &[
                DELIVERIES,
                LOST,
                P50,
                P90,
                P99,
                P999,
                MAX,
                SERVER_CPU,
                GENERATOR_CPU,
                PEAK_RSS,
            ],
            Self::S3 => &[CONNECT_SECONDS, FAILURES, BYTES_PER_CONN],
        }
    }
}

const DELIVERIES: &str = "deliveries/s";
const LOST: &str = "lost";
const P50: &str = "p50 us";
const P90: &str = "p90 us";
const P99: &str = "p99 us";
const P999: &str = "p99.9 us";
const MAX: &str = "max us";
const SERVER_CPU: &str = "server CPU s";
const SERVER_NS: &str = "server CPU ns/delivery";
const GENERATOR_CPU: &str = "generator CPU s";
const PEAK_RSS: &str = "server peak RSS MiB";
const CONNECT_SECONDS: &str = "connect all s";
const FAILURES: &str = "failures";
const BYTES_PER_CONN: &str = "RSS bytes/conn";

/// Options of `chatd bench compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Rounds; each runs every target on every scenario, the order of
    /// targets reversed every other round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Sending time per fan-out run, in seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Scenarios to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Scenario::S1, Scenario::S1NoPersist, Scenario::S2, Scenario::S2Lite, Scenario::S3])]
    pub scenarios: Vec<Scenario>,
    /// Idle connections for S3.
    #[arg(long, default_value_t = 19_000)]
    pub idle_connections: usize,
    /// Peers file ("none": backends only).
    #[arg(long, default_value = "benches/peers.toml")]
    pub peers: String,
    /// Where the results folder is made.
    #[arg(long, default_value = "bench-results")]
    pub results: PathBuf,
    /// What chatd's clients speak: native, or irc (chatd's IRC listener
    /// on a free port, spoken to with the IRC peers' NICK/USER, JOIN and
    /// PRIVMSG; S3's connections register and join a room of 100). The
    /// chatd columns are then `poll-irc` and `iocp-irc`.
    #[arg(long, default_value = "native", value_parser = parse_dialect)]
    pub dialect: Dialect,
    /// How to start chatd.
    #[command(flatten)]
    pub launch: Launch,
}

/// A server measured in the comparison.
#[derive(Debug, Clone)]
enum Target {
    /// chatd on a backend, its clients speaking a dialect.
    Chatd(&'static str, Dialect),
    Peer(Box<(PeerSpec, Peer)>),
}

impl Target {
    fn name(&self) -> String {
        match self {
            Self::Chatd(backend, dialect) => chatd_column(backend, *dialect),
            Self::Peer(peer) => peer.0.name.clone(),
        }
    }
}

/// chatd's column: the backend, with `-irc` when spoken to over IRC.
fn chatd_column(backend: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Native => backend.to_owned(),
        _ => format!("{backend}-{dialect}"),
    }
}

/// One run's figures.
type Figures = BTreeMap<&'static str, f64>;

/// Every run: (scenario, target) -> figures per round.
#[derive(Debug, Default)]
struct Results {
    runs: BTreeMap<(Scenario, String), Vec<Figures>>,
    csv: String,
    failures: Vec<String>,
}

/// Runs the comparison.
pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    let chatd = args.launch.chatd_binary()?;
    let mut targets = vec![
        Target::Chatd("poll", args.dialect),
        Target::Chatd("iocp", args.dialect),
    ];
    let mut skipped = Vec::new();
    if args.peers != "none" {
        for spec in peers::load(std::path::Path::new(&args.peers))? {
            match spec.missing(&chatd) {
                Some(reason) => {
                    eprintln!("!!! peer {} NOT RUN: {reason}", spec.name);
                    skipped.push(format!("{}: not run, {reason}", spec.name));
                }
                None => {
                    let protocol = spec.protocol()?;
                    targets.push(Target::Peer(Box::new((spec, protocol))));
                }
            }
        }
    }
    let folder = args.results.join(format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    ));
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot make {}", folder.display()))?;
    let mut results = Results {
        csv: "round,scenario,target,metric,value\n".into(),
        ..Results::default()
    };
    for round in 0..args.rounds {
        let mut order = targets.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for &scenario in &args.scenarios {
            for target in &order {
                if scenario.chatd_only() && matches!(target, Target::Peer(..)) {
                    continue;
                }
                eprintln!(
                    "round {}/{}: {} on {}",
                    round + 1,
                    args.rounds,
                    scenario.name(),
                    target.name()
                );
                match run_one(args, &chatd, scenario, target) {
                    Ok(figures) => {
                        for (metric, value) in &figures {
                            let _ = writeln!(
                                results.csv,
                                "{},{},{},{metric},{value}",
                                round + 1,
                                scenario.name(),
                                target.name()
                            );
                        }
                        results
                            .runs
                            .entry((scenario, target.name()))
                            .or_default()
                            .push(figures);
                    }
                    Err(error) => {
                        let line = format!(
                            "round {}: {} on {} FAILED: {error:#}",
                            round + 1,
                            scenario.name(),
                            target.name()
                        );
                        eprintln!("!!! {line}");
                        results.failures.push(line);
                    }
                }
            }
        }
    }
    let names: Vec<String> = targets.iter().map(Target::name).collect();
    let medians = medians(&results);
    let table = summary(args, &names, &medians, &results.failures, &skipped);
    println!("{table}");
    std::fs::write(folder.join("summary.md"), &table)?;
    std::fs::write(folder.join("runs.csv"), &results.csv)?;
    std::fs::write(folder.join("chart.svg"), chart::render(&names, &medians))?;
    println!(
        "results: {} (summary.md, runs.csv, chart.svg)",
        folder.display()
    );
    Ok(())
}

/// Starts the target, runs one scenario, stops the target.
fn run_one(
    args: &CompareArgs,
    chatd: &std::path::Path,
    scenario: Scenario,
    target: &Target,
) -> anyhow::Result<Figures> {
    let server = match target {
        Target::Chatd(backend, dialect) => {
            let extra: &[&str] = if scenario == Scenario::S1NoPersist {
                &["--no-persist"]
            } else {
                &[]
            };
            ServerProcess::launch_dialect(&args.launch, backend, extra, *dialect)?
        }
        Target::Peer(peer) => peer.0.start(chatd)?,
    };
    let mut figures = Figures::new();
    if scenario == Scenario::S3 {
        let report = connect::run(&server, args.idle_connections, args.dialect, false)?;
        figures.insert(CONNECT_SECONDS, report.elapsed.as_secs_f64());
        figures.insert(FAILURES, report.failures as f64);
        figures.insert(BYTES_PER_CONN, report.rss_per_connection());
        return Ok(figures);
    }
    let peer = match target {
        Target::Chatd(_, dialect) => chatd_peer(*dialect),
        Target::Peer(peer) => peer.1.clone(),
    };
    let measured = fanout::measure(&server, &peer, &scenario.plan(args.seconds), false)?;
    let report = &measured.report;
    let latency = &report.latency;
    figures.insert(DELIVERIES, report.deliveries_per_second());
    figures.insert(LOST, report.lost() as f64);
    figures.insert(P50, latency.quantile(0.5) as f64);
    figures.insert(P90, latency.quantile(0.9) as f64);
    figures.insert(P99, latency.quantile(0.99) as f64);
    figures.insert(P999, latency.quantile(0.999) as f64);
    figures.insert(MAX, latency.max() as f64);
    figures.insert(SERVER_CPU, measured.server_cpu.as_secs_f64());
    figures.insert(
        SERVER_NS,
        measured.server_cpu.as_nanos() as f64 / report.delivered.max(1) as f64,
    );
    figures.insert(GENERATOR_CPU, measured.generator_cpu.as_secs_f64());
    figures.insert(PEAK_RSS, measured.server_peak_rss as f64 / 1_048_576.0);
    Ok(figures)
}

/// The median of each figure over the rounds: (scenario, target) -> figures.
pub(crate) type Medians = BTreeMap<(String, String), Figures>;

fn medians(results: &Results) -> Medians {
    results
        .runs
        .iter()
        .map(|((scenario, target), rounds)| {
            let mut figures = Figures::new();
            for metric in scenario.metrics() {
                let mut values: Vec<f64> = rounds
                    .iter()
                    .filter_map(|f| f.get(metric))
                    .copied()
                    .collect();
                if let Some(median) = median(&mut values) {
                    figures.insert(metric, median);
                }
            }
            ((scenario.name().to_owned(), target.clone()), figures)
        })
        .collect()
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

/// The Markdown table: one section per scenario, a row per figure, a
/// column per target, and iocp / poll.
fn summary(
    args: &CompareArgs,
    targets: &[String],
    medians: &Medians,
    failures: &[String],
    skipped: &[String],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# chatd bench compare\n\n{}; {} rounds, {} s per fan-out run, server config {}, {} I/O threads, chatd spoken to in {}; medians over rounds.\n",
        machine(),
        args.rounds,
        args.seconds,
        args.launch.config.display(),
        args.launch.threads,
        args.dialect,
    );
    let poll = chatd_column("poll", args.dialect);
    let iocp = chatd_column("iocp", args.dialect);
    for &scenario in &args.scenarios {
        let columns: Vec<&String> = targets
            .iter()
            .filter(|t| !scenario.chatd_only() || **t == poll || **t == iocp)
            .collect();
        let _ = writeln!(out, "## {}\n", scenario.name());
        let _ = write!(out, "| |");
        for target in &columns {
            let _ = write!(out, " {target} |");
        }
        let _ = writeln!(out, " iocp / poll |");
        let _ = writeln!(out, "|---|{}---|", "---|".repeat(columns.len()));
        for metric in scenario.metrics() {
            let value = |target: &str| {
                medians
                    .get(&(scenario.name().to_owned(), target.to_owned()))
                    .and_then(|f| f.get(metric))
                    .copied()
            };
            let _ = write!(out, "| {metric} |");
            for target in &columns {
                let _ = write!(
                    out,
                    " {} |",
                    value(target).map_or("n/a".into(), format_value)
                );
            }
            let ratio = match (value(&iocp), value(&poll)) {
                (Some(iocp), Some(poll)) if poll != 0.0 => format!("{:.2}", iocp / poll),
                _ => "n/a".into(),
            };
            let _ = writeln!(out, " {ratio} |");
        }
        let _ = writeln!(out);
    }
    for line in skipped.iter().chain(failures) {
        let _ = writeln!(out, "- {line}");
    }
    out
}

fn format_value(value: f64) -> String {
    if value >= 1_000_000.0 {
        format!("{:.2} M", value / 1_000_000.0)
    } else if value.fract() == 0.0 || value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// The machine in one line (CPU model, cores, kernel), from /proc.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn chatd_over_irc_has_columns_of_its_own() {
        assert_eq!(chatd_column("poll", Dialect::Native), "poll");
        assert_eq!(chatd_column("iocp", Dialect::Irc), "iocp-irc");
    }

    #[test]
    fn values_are_printed_at_a_readable_precision() {
        assert_eq!(format_value(5_300_000.0), "5.30 M");
        assert_eq!(format_value(311.4), "311");
        assert_eq!(format_value(0.5), "0.50");
        assert_eq!(format_value(7.0), "7");
    }
}
