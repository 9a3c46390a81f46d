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

/// The scenarios (BENCHMARKS.md describes each): what `--scenarios` picks.
/// Each is made of one or more [`Run`]s.
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
    /// 10 rooms x 100 clients, 100 senders, 200 msgs/s in total (about
    /// 20,000 deliveries/s): light enough to measure the server's own
    /// latency rather than the queueing of a saturated machine.
    S2Light,
    /// The S2-light shape at 20, 200 and 2,000 msgs/s (2k, 20k and 200k
    /// deliveries/s); its middle point is S2-light itself.
    Sweep,
    /// Idle connections (19,000 by default).
    S3,
}

impl Scenario {
    /// The runs it is made of, in order.
    fn runs(self) -> Vec<Run> {
        match self {
            Self::S1 => vec![Run::S1],
            Self::S1NoPersist => vec![Run::S1NoPersist],
            Self::S2 => vec![Run::S2],
            Self::S2Lite => vec![Run::S2Lite],
            Self::S2Light => vec![Run::S2Light],
            Self::Sweep => SWEEP.to_vec(),
            Self::S3 => vec![Run::S3],
        }
    }
}

/// The runs of these scenarios in order, each once: S2-light is also the
/// sweep's middle point, and is measured once when both are asked for.
fn runs_of(scenarios: &[Scenario]) -> Vec<Run> {
    let mut runs = Vec::new();
    for run in scenarios.iter().flat_map(|s| s.runs()) {
        if !runs.contains(&run) {
            runs.push(run);
        }
    }
    runs
}

/// One measured workload, with a section of its own in the summary and
/// its own rows in runs.csv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Run {
    S1,
    S1NoPersist,
    S2,
    S2Lite,
    S2Light,
    /// The S2-light shape at a tenth of its rate.
    Sweep2k,
    /// The S2-light shape at ten times its rate.
    Sweep200k,
    S3,
}

/// The rate sweep, slowest first.
const SWEEP: [Run; 3] = [Run::Sweep2k, Run::S2Light, Run::Sweep200k];

/// The names of the sweep's runs, slowest first, for the chart.
pub(crate) fn sweep_names() -> [&'static str; 3] {
    SWEEP.map(Run::name)
}

impl Run {
    fn name(self) -> &'static str {
        match self {
            Self::S1 => "S1",
            Self::S1NoPersist => "S1 no-persist",
            Self::S2 => "S2",
            Self::S2Lite => "S2-lite",
            Self::S2Light => "S2-light",
            Self::Sweep2k => "sweep 2k",
            Self::Sweep200k => "sweep 200k",
            Self::S3 => "S3",
        }
    }

    /// Only chatd runs these: they measure chatd's own options or memory.
    fn chatd_only(self) -> bool {
        matches!(self, Self::S1NoPersist | Self::S3)
    }

    fn plan(self, seconds: u64) -> FanoutPlan {
        let duration = Duration::from_secs(seconds);
        // S2's rooms of 1,000, where each member's share of the rate
        // saturates this machine; and rooms of 100, where it does not.
        let s2 = |rate| FanoutPlan::paced(10_000, 10, 100, rate, duration);
        let s2_light = |rate| FanoutPlan::paced(1_000, 10, 100, rate, duration);
        match self {
            Self::S1 | Self::S1NoPersist | Self::S3 => FanoutPlan::s1(duration, None, false),
            Self::S2 => s2(2_000),
            Self::S2Lite => s2(200),
            Self::S2Light => s2_light(200),
            Self::Sweep2k => s2_light(20),
            Self::Sweep200k => s2_light(2_000),
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
            Self::S2 | Self::S2Lite | Self::S2Light | Self::Sweep2k | Self::Sweep200k => &[
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
    /// Scenarios to run. All of them by default: S2-light's target is
    /// set against the peers in the same run, and the sweep around it is
    /// only comparable when measured on the same machine state.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Scenario::S1, Scenario::S1NoPersist, Scenario::S2, Scenario::S2Lite, Scenario::S2Light, Scenario::Sweep, Scenario::S3])]
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

/// Every run: (run, target) -> figures per round.
#[derive(Debug, Default)]
struct Results {
    runs: BTreeMap<(Run, String), Vec<Figures>>,
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
    let runs = runs_of(&args.scenarios);
    for round in 0..args.rounds {
        let mut order = targets.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for &run in &runs {
            for target in &order {
                if run.chatd_only() && matches!(target, Target::Peer(..)) {
                    continue;
                }
                eprintln!(
                    "round {}/{}: {} on {}",
                    round + 1,
                    args.rounds,
                    run.name(),
                    target.name()
                );
                match run_one(args, &chatd, run, target) {
                    Ok(figures) => {
                        for (metric, value) in &figures {
                            let _ = writeln!(
                                results.csv,
                                "{},{},{},{metric},{value}",
                                round + 1,
                                run.name(),
                                target.name()
                            );
                        }
                        results
                            .runs
                            .entry((run, target.name()))
                            .or_default()
                            .push(figures);
                    }
                    Err(error) => {
                        let line = format!(
                            "round {}: {} on {} FAILED: {error:#}",
                            round + 1,
                            run.name(),
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
    let table = summary(args, &runs, &names, &medians, &results.failures, &skipped);
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

/// Starts the target, measures one run, stops the target.
fn run_one(
    args: &CompareArgs,
    chatd: &std::path::Path,
    run: Run,
    target: &Target,
) -> anyhow::Result<Figures> {
    let server = match target {
        Target::Chatd(backend, dialect) => {
            let extra: &[&str] = if run == Run::S1NoPersist {
                &["--no-persist"]
            } else {
                &[]
            };
            ServerProcess::launch_dialect(&args.launch, backend, extra, *dialect)?
        }
        Target::Peer(peer) => peer.0.start(chatd)?,
    };
    let mut figures = Figures::new();
    if run == Run::S3 {
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
    let measured = fanout::measure(&server, &peer, &run.plan(args.seconds), false)?;
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

/// The median of each figure over the rounds: (run name, target) -> figures.
pub(crate) type Medians = BTreeMap<(String, String), Figures>;

fn medians(results: &Results) -> Medians {
    results
        .runs
        .iter()
        .map(|((run, target), rounds)| {
            let mut figures = Figures::new();
            for metric in run.metrics() {
                let mut values: Vec<f64> = rounds
                    .iter()
                    .filter_map(|f| f.get(metric))
                    .copied()
                    .collect();
                if let Some(median) = median(&mut values) {
                    figures.insert(metric, median);
                }
            }
            ((run.name().to_owned(), target.clone()), figures)
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

/// The Markdown table: one section per run, a row per figure, a column
/// per target, and iocp / poll.
fn summary(
    args: &CompareArgs,
    runs: &[Run],
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
    for &run in runs {
        let columns: Vec<&String> = targets
            .iter()
            .filter(|t| !run.chatd_only() || **t == poll || **t == iocp)
            .collect();
        let _ = writeln!(out, "## {}\n", run.name());
        let _ = write!(out, "| |");
        for target in &columns {
            let _ = write!(out, " {target} |");
        }
        let _ = writeln!(out, " iocp / poll |");
        let _ = writeln!(out, "|---|{}---|", "---|".repeat(columns.len()));
        for metric in run.metrics() {
            let value = |target: &str| {
                medians
                    .get(&(run.name().to_owned(), target.to_owned()))
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
    fn s2_light_is_ten_rooms_of_a_hundred_at_200_messages_a_second() {
        let plan = Run::S2Light.plan(5);
        assert_eq!(
            (plan.clients, plan.rooms, plan.senders, plan.rate),
            (1_000, 10, 100, Some(200))
        );
        assert_eq!(plan.duration, Duration::from_secs(5));
        // S2-lite keeps its rooms of 1,000.
        let lite = Run::S2Lite.plan(5);
        assert_eq!(
            (lite.clients, lite.rooms, lite.senders, lite.rate),
            (10_000, 10, 100, Some(200))
        );
    }

    #[test]
    fn the_sweep_is_the_s2_light_shape_at_the_delivery_rates_it_is_named_after() {
        let shape = |plan: &FanoutPlan| (plan.clients, plan.rooms, plan.senders);
        let light = Run::S2Light.plan(5);
        let mut points = Vec::new();
        for run in SWEEP {
            let plan = run.plan(5);
            assert_eq!(shape(&plan), shape(&light), "{}", run.name());
            let rate = plan.rate.expect("the sweep is paced");
            // Each message reaches the other 99 members of its room.
            let deliveries = rate * (plan.clients / plan.rooms - 1) as u64;
            points.push((run.name(), rate, deliveries));
        }
        assert_eq!(
            points,
            [
                ("sweep 2k", 20, 1_980),
                ("S2-light", 200, 19_800),
                ("sweep 200k", 2_000, 198_000)
            ]
        );
        assert_eq!(sweep_names(), ["sweep 2k", "S2-light", "sweep 200k"]);
    }

    #[test]
    fn s2_light_is_measured_once_when_the_sweep_is_also_asked_for() {
        assert_eq!(
            runs_of(&[Scenario::S2Light, Scenario::Sweep]),
            [Run::S2Light, Run::Sweep2k, Run::Sweep200k]
        );
        assert_eq!(runs_of(&[Scenario::Sweep]), SWEEP);
        assert_eq!(
            runs_of(&[Scenario::S2Lite, Scenario::S3]),
            [Run::S2Lite, Run::S3]
        );
    }

    #[test]
    fn the_summary_has_a_section_per_point_of_the_sweep() {
        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            compare: CompareArgs,
        }
        let args =
            <Command as clap::Parser>::parse_from(["compare", "--scenarios", "sweep"]).compare;
        let mut medians = Medians::new();
        for (run, p99) in [
            ("sweep 2k", 900.0),
            ("S2-light", 1_500.0),
            ("sweep 200k", 40_000.0),
        ] {
            medians.insert(
                (run.into(), "poll".into()),
                [(P99, p99)].into_iter().collect(),
            );
        }
        let table = summary(
            &args,
            &runs_of(&args.scenarios),
            &["poll".into(), "iocp".into()],
            &medians,
            &[],
            &[],
        );
        let sections: Vec<&str> = table.lines().filter(|l| l.starts_with("## ")).collect();
        assert_eq!(sections, ["## sweep 2k", "## S2-light", "## sweep 200k"]);
        assert!(table.contains("| p99 us | 40000 | n/a | n/a |"), "{table}");
    }

    #[test]
    fn values_are_printed_at_a_readable_precision() {
        assert_eq!(format_value(5_300_000.0), "5.30 M");
        assert_eq!(format_value(311.4), "311");
        assert_eq!(format_value(0.5), "0.50");
        assert_eq!(format_value(7.0), "7");
    }
}
