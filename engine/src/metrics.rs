//! `/metrics`: the server's counters as Prometheus text.
//!
//! The core counts in plain fields ([`chatd_core::Counters`]) and computes
//! its gauges on request; the engine adds what only it sees (the inbox,
//! the history writer's queue and fsync times, the length of the core's
//! turns). A scrape copies all of it into a [`MetricsSnapshot`] on the
//! core's thread and renders that with `prometheus-client`, building the
//! registry afresh: a scrape comes once a second at most, and the hot path
//! then never touches a metrics type.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chatd_core::counters::Listener;
use chatd_core::{Counters, Gauges};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::hub::{Hub, InboxStats};

/// The `Content-Type` of [`render`]'s text (the Prometheus text format,
/// version 0.0.4).
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the latency buckets, in nanoseconds: 10µs to 2.5s in
/// 1-2.5-5 steps, which spans both a turn of the core (microseconds) and
/// an fsync (a fraction of a millisecond on an SSD, up to seconds on a
/// stalled disk). A last, unbounded bucket follows.
const BUCKET_BOUNDS_NS: [u64; 17] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
];

/// Buckets with the unbounded one.
const BUCKETS: usize = BUCKET_BOUNDS_NS.len() + 1;

/// The bucket a duration falls in.
fn bucket_of(duration: Duration) -> usize {
    let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    BUCKET_BOUNDS_NS.partition_point(|&bound| bound < ns)
}

/// A latency histogram kept by one thread: plain counts (per bucket, not
/// cumulative) and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Latencies {
    counts: [u64; BUCKETS],
    sum_ns: u64,
}

impl Latencies {
    /// Counts one duration.
    pub(crate) fn observe(&mut self, duration: Duration) {
        self.counts[bucket_of(duration)] += 1;
        self.sum_ns = self
            .sum_ns
            .saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    }

    /// How many durations were counted.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// A latency histogram written by one thread and read by another (the
/// history writer's fsyncs, read by a scrape on the core's thread).
/// Relaxed atomics: a scrape may see one fsync in a bucket before its
/// sum, which a rate over many scrapes does not notice.
#[derive(Debug, Default)]
pub(crate) struct SharedLatencies {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl SharedLatencies {
    /// Counts one duration.
    pub(crate) fn observe(&self, duration: Duration) {
        self.counts[bucket_of(duration)].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> Latencies {
        Latencies {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// Everything `/metrics` shows, copied at one instant.
#[derive(Debug, Clone)]
pub(crate) struct MetricsSnapshot {
    /// The core's counters.
    pub(crate) counters: Counters,
    /// The core's gauges.
    pub(crate) gauges: Gauges,
    /// The hub's inbox.
    pub(crate) inbox: InboxStats,
    /// Records handed to the history writer and not yet reported on
    /// (zero when history is not persisted).
    pub(crate) writer_queue: u64,
    /// The history writer's fsyncs (empty when history is not persisted).
    pub(crate) fsync: Latencies,
    /// The core's turns: events handled and their outputs routed.
    pub(crate) turns: Latencies,
}

impl Hub {
    /// What `/metrics` shows now.
    pub(crate) fn metrics_snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            counters: self.server.counters().clone(),
            gauges: self.server.gauges(),
            inbox: self.inbox.stats(),
            writer_queue: self.appended.saturating_sub(self.settled),
            fsync: self
                .writer
                .as_ref()
                .map(|writer| writer.fsync_latencies().snapshot())
                .unwrap_or_default(),
            turns: self.turns.clone(),
        }
    }
}

/// The Prometheus exposition of everything the hub can see.
pub(crate) fn render(hub: &Hub) -> String {
    encode(&hub.metrics_snapshot())
}

/// A snapshot in the Prometheus text format ([`CONTENT_TYPE`]), series in
/// a fixed order.
pub(crate) fn encode(snapshot: &MetricsSnapshot) -> String {
    let registry = registry(snapshot);
    let mut text = String::new();
    // Writing to a String cannot fail, and every metric here encodes
    // without error; an empty answer would still be valid text.
    if let Err(error) = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
        tracing::error!(%error, "cannot encode the metrics");
    }
    text
}

fn counter(value: u64) -> ConstCounter<u64> {
    ConstCounter::new(value)
}

fn gauge(value: u64) -> ConstGauge<u64> {
    ConstGauge::new(value)
}

fn registry(s: &MetricsSnapshot) -> Registry {
    let c = &s.counters;
    let mut r = Registry::with_prefix("chatd");
    r.register(
        "connections",
        "Open connections, by listener and by what they speak (http: not upgraded yet)",
        Labelled::gauge(
            s.gauges
                .connections()
                .map(|(listener, protocol, n)| {
                    (
                        vec![
                            ("listener", listener.label()),
                            ("dialect", protocol.label()),
                        ],
                        n,
                    )
                })
                .collect(),
        ),
    );
    r.register(
        "connections_accepted",
        "Connections admitted, by listener",
        Labelled::counter(
            Listener::ALL
                .into_iter()
                .map(|listener| {
                    (
                        vec![("listener", listener.label())],
                        c.accepted_on(listener),
                    )
                })
                .collect(),
        ),
    );
    r.register(
        "connections_refused",
        "Connections refused at admission, by reason",
        Labelled::counter(
            c.refusals()
                .into_iter()
                .map(|(code, n)| (vec![("reason", code.as_str())], n))
                .collect(),
        ),
    );
    r.register(
        "lines_received",
        "Lines framed from clients' bytes",
        counter(c.lines_in),
    );
    r.register(
        "deliveries",
        "Lines and blocks sent, one per recipient",
        counter(c.deliveries_out),
    );
    r.register_with_unit(
        "received",
        "Bytes read from clients and handed to the core",
        Unit::Bytes,
        counter(c.bytes_in),
    );
    r.register_with_unit(
        "sent",
        "Bytes the core sent to clients, counted per recipient",
        Unit::Bytes,
        counter(c.bytes_out),
    );
    r.register(
        "rate_limited_lines",
        "Lines dropped (native) or delayed (IRC) by the rate limit",
        counter(c.rate_limited),
    );
    r.register(
        "flood_disconnects",
        "Connections closed for flooding past the rate limit",
        counter(c.flood_disconnects),
    );
    r.register(
        "slow_consumer_disconnects",
        "Connections closed because they could not receive fast enough",
        counter(c.slow_consumers),
    );
    r.register("rooms", "Rooms that exist", gauge(s.gauges.rooms));
    r.register_with_unit(
        "history",
        "Recent history held in memory",
        Unit::Bytes,
        gauge(s.gauges.history_bytes),
    );
    if let Some(cluster) = s.gauges.cluster {
        // Only on a node of a cluster: a single server has no such series.
        r.register(
            "cluster_up",
            "1 while this node's bus reaches the cluster's Redis, 0 while it cannot",
            gauge(u64::from(cluster.up)),
        );
        r.register(
            "cluster_remote_users",
            "Users of other nodes of the cluster that this node knows of",
            gauge(cluster.remote_users),
        );
        r.register(
            "cluster_claims_in_flight",
            "Nickname claims waiting for Redis's answer",
            gauge(cluster.claims_in_flight),
        );
    }
    r.register(
        "history_writer_queue_records",
        "Records handed to the history writer and not yet reported stored or failed",
        gauge(s.writer_queue),
    );
    r.register_with_unit(
        "history_fsync_duration",
        "Time of each fsync of a history log or directory",
        Unit::Seconds,
        Histogram(s.fsync.clone()),
    );
    r.register_with_unit(
        "turn_duration",
        "Time of each turn of the core's thread that handled events (handling and routing)",
        Unit::Seconds,
        Histogram(s.turns.clone()),
    );
    r.register_with_unit(
        "inbox_queued",
        "Received bytes waiting for the core",
        Unit::Bytes,
        gauge(s.inbox.queued_bytes as u64),
    );
    r.register_with_unit(
        "inbox_peak",
        "The most received bytes that ever waited for the core",
        Unit::Bytes,
        gauge(s.inbox.peak_bytes as u64),
    );
    r.register_with_unit(
        "inbox_limit",
        "Received bytes waiting past which I/O threads stop reading (max_inbox_bytes)",
        Unit::Bytes,
        gauge(s.inbox.max_bytes as u64),
    );
    r.register(
        "inbox_pauses",
        "Times an I/O thread stopped reading because the inbox was full",
        counter(s.inbox.pauses),
    );
    r
}

/// Labelled series of one metric, in the order given (prometheus-client's
/// `Family` lists its series in hash order, and ours must be the same on
/// every scrape).
#[derive(Debug)]
struct Labelled {
    kind: MetricType,
    series: Vec<(Vec<(&'static str, &'static str)>, u64)>,
}

impl Labelled {
    fn counter(series: Vec<(Vec<(&'static str, &'static str)>, u64)>) -> Self {
        Self {
            kind: MetricType::Counter,
            series,
        }
    }

    fn gauge(series: Vec<(Vec<(&'static str, &'static str)>, u64)>) -> Self {
        Self {
            kind: MetricType::Gauge,
            series,
        }
    }
}

impl EncodeMetric for Labelled {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (labels, value) in &self.series {
            let mut series = encoder.encode_family(labels)?;
            if self.kind == MetricType::Counter {
                series.encode_counter::<NoLabelSet, u64, u64>(value, None)?;
            } else {
                series.encode_gauge(value)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

/// A latency histogram as prometheus-client encodes one, in seconds.
#[derive(Debug)]
struct Histogram(Latencies);

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let bounds = BUCKET_BOUNDS_NS
            .iter()
            .map(|&ns| Duration::from_nanos(ns).as_secs_f64())
            .chain([f64::INFINITY]);
        // Per-bucket counts: the encoder makes them cumulative.
        let buckets: Vec<(f64, u64)> = bounds.zip(self.0.counts).collect();
        let sum = Duration::from_nanos(self.0.sum_ns).as_secs_f64();
        encoder.encode_histogram::<NoLabelSet>(sum, self.0.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::time::Instant;

    use chatd_core::{Arrival, Config, Dialect, Server};

    use super::*;

    fn micros(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn latencies_fall_in_the_first_bucket_whose_bound_they_do_not_pass() {
        let mut latencies = Latencies::default();
        for duration in [micros(5), micros(10), micros(11), Duration::from_secs(3)] {
            latencies.observe(duration);
        }
        let mut expected = [0; BUCKETS];
        expected[0] = 2; // le 10µs: a bound is inclusive.
        expected[1] = 1; // le 25µs
        expected[BUCKETS - 1] = 1; // past every bound
        assert_eq!(latencies.counts, expected);
        assert_eq!(latencies.count(), 4);
        assert_eq!(latencies.sum_ns, 3_000_026_000);

        let shared = SharedLatencies::default();
        for duration in [micros(5), micros(10), micros(11), Duration::from_secs(3)] {
            shared.observe(duration);
        }
        assert_eq!(shared.snapshot(), latencies);
    }

    /// One exposition line: a comment, or a sample with its family.
    #[derive(Debug)]
    enum Line<'a> {
        Help(&'a str),
        Type(&'a str, &'a str),
        Sample {
            name: &'a str,
            series: String,
            value: f64,
        },
    }

    fn metric_name(name: &str) -> Result<&str, String> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
        if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            Ok(name)
        } else {
            Err(format!("bad metric name {name:?}"))
        }
    }

    /// Parses one line of the Prometheus text format (version 0.0.4).
    fn parse_line(line: &str) -> Result<Line<'_>, String> {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or("HELP without text")?;
            if help.is_empty() {
                return Err("empty HELP".into());
            }
            return Ok(Line::Help(metric_name(name)?));
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or("TYPE without a type")?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(format!("unknown type {kind:?}"));
            }
            return Ok(Line::Type(metric_name(name)?, kind));
        }
        let (series, value) = line.rsplit_once(' ').ok_or("sample without a value")?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            other => other.parse().map_err(|_| format!("bad value {other:?}"))?,
        };
        let name = match series.split_once('{') {
            None => series,
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').ok_or("unclosed labels")?;
                for label in labels.split(',') {
                    let (key, quoted) = label.split_once('=').ok_or("label without =")?;
                    metric_name(key)?;
                    if quoted.len() < 2 || !quoted.starts_with('"') || !quoted.ends_with('"') {
                        return Err(format!("unquoted label value in {label:?}"));
                    }
                }
                name
            }
        };
        Ok(Line::Sample {
            name: metric_name(name)?,
            series: series.to_owned(),
            value,
        })
    }

    /// Every sample of a valid exposition by series, or why it is not
    /// valid: each sample's family has HELP and TYPE before it.
    fn parse(text: &str) -> Result<BTreeMap<String, f64>, String> {
        let mut helped = Vec::new();
        let mut types = BTreeMap::new();
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            match parse_line(line).map_err(|e| format!("{e}: {line:?}"))? {
                Line::Help(name) => helped.push(name),
                Line::Type(name, kind) => {
                    if !helped.contains(&name) {
                        return Err(format!("TYPE before HELP: {line:?}"));
                    }
                    types.insert(name, kind);
                }
                Line::Sample {
                    name,
                    series,
                    value,
                } => {
                    let family = ["_bucket", "_sum", "_count"]
                        .iter()
                        .filter_map(|suffix| name.strip_suffix(suffix))
                        .find(|base| types.get(base) == Some(&"histogram"))
                        .unwrap_or(name);
                    if !types.contains_key(family) {
                        return Err(format!("sample without TYPE: {line:?}"));
                    }
                    if samples.insert(series, value).is_some() {
                        return Err(format!("series repeated: {line:?}"));
                    }
                }
            }
        }
        Ok(samples)
    }

    #[test]
    fn the_parser_refuses_what_is_not_an_exposition() {
        assert!(parse("chatd_rooms 1\n").is_err(), "no TYPE");
        assert!(parse("# HELP a x\n# TYPE a gauge\na{b=c} 1\n").is_err());
        assert!(parse("# HELP a x\n# TYPE a gauge\na one\n").is_err());
        assert!(parse("# HELP a x\n# TYPE a gauge\na 1\na 2\n").is_err());
        assert!(parse("# TYPE a gauge\n# HELP a x\na 1\n").is_err());
        assert!(parse("# HELP a x\n# TYPE a gauge\na_sum 1\n").is_err());
        assert!(parse("# HELP a_count x\n# TYPE a_count gauge\na_count 1\n").is_ok());
        assert_eq!(
            parse("# HELP a x\n# TYPE a gauge\na{b=\"c\"} 1\n"),
            Ok(BTreeMap::from([("a{b=\"c\"}".to_owned(), 1.0)]))
        );
    }

    fn snapshot() -> MetricsSnapshot {
        let now = Instant::now();
        let config = Config {
            max_connections_per_ip: 3,
            ..Config::default()
        };
        let mut server = Server::new(config, now, 0).expect("server");
        let peer = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let alice = server.accept(now, peer(1)).expect("admitted");
        server.accept(now, peer(2)).expect("admitted");
        let irc = Arrival {
            dialect: Dialect::Irc,
            encrypted: true,
            web: false,
        };
        server.accept_via(now, peer(3), irc).expect("admitted");
        server.accept(now, peer(4)).expect_err("over the limit");
        server.handle(now, alice, b"hello\n");
        while server.poll_output().is_some() {}
        let mut fsync = Latencies::default();
        fsync.observe(Duration::from_millis(2));
        let mut turns = Latencies::default();
        turns.observe(micros(20));
        turns.observe(micros(40));
        MetricsSnapshot {
            counters: server.counters().clone(),
            gauges: server.gauges(),
            inbox: InboxStats {
                queued_bytes: 10,
                peak_bytes: 4096,
                max_bytes: 8 << 20,
                pauses: 2,
            },
            writer_queue: 3,
            fsync,
            turns,
        }
    }

    #[test]
    fn a_snapshot_renders_as_prometheus_text_holding_its_values() {
        let snapshot = snapshot();
        let text = encode(&snapshot);
        let samples = parse(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
        let value = |series: &str| {
            *samples
                .get(series)
                .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        };
        let c = &snapshot.counters;
        let expected = [
            (
                r#"chatd_connections{listener="native",dialect="native"}"#,
                2.0,
            ),
            (
                r#"chatd_connections{listener="irc-tls",dialect="irc"}"#,
                1.0,
            ),
            (r#"chatd_connections{listener="https",dialect="http"}"#, 0.0),
            (
                r#"chatd_connections_accepted_total{listener="native"}"#,
                2.0,
            ),
            (
                r#"chatd_connections_accepted_total{listener="irc-tls"}"#,
                1.0,
            ),
            (
                r#"chatd_connections_refused_total{reason="too-many-connections"}"#,
                1.0,
            ),
            (
                r#"chatd_connections_refused_total{reason="server-full"}"#,
                0.0,
            ),
            ("chatd_lines_received_total", 1.0),
            ("chatd_deliveries_total", c.deliveries_out as f64),
            ("chatd_received_bytes_total", 6.0),
            ("chatd_sent_bytes_total", c.bytes_out as f64),
            ("chatd_rate_limited_lines_total", 0.0),
            ("chatd_flood_disconnects_total", 0.0),
            ("chatd_slow_consumer_disconnects_total", 0.0),
            ("chatd_rooms", 1.0),
            ("chatd_history_bytes", snapshot.gauges.history_bytes as f64),
            ("chatd_history_writer_queue_records", 3.0),
            (
                r#"chatd_history_fsync_duration_seconds_bucket{le="0.001"}"#,
                0.0,
            ),
            (
                r#"chatd_history_fsync_duration_seconds_bucket{le="0.0025"}"#,
                1.0,
            ),
            (
                r#"chatd_history_fsync_duration_seconds_bucket{le="+Inf"}"#,
                1.0,
            ),
            ("chatd_history_fsync_duration_seconds_count", 1.0),
            ("chatd_history_fsync_duration_seconds_sum", 0.002),
            (r#"chatd_turn_duration_seconds_bucket{le="1e-05"}"#, 0.0),
            (r#"chatd_turn_duration_seconds_bucket{le="2.5e-05"}"#, 1.0),
            (r#"chatd_turn_duration_seconds_bucket{le="5e-05"}"#, 2.0),
            ("chatd_turn_duration_seconds_count", 2.0),
            ("chatd_turn_duration_seconds_sum", 0.00006),
            ("chatd_inbox_queued_bytes", 10.0),
            ("chatd_inbox_peak_bytes", 4096.0),
            ("chatd_inbox_limit_bytes", 8_388_608.0),
            ("chatd_inbox_pauses_total", 2.0),
        ];
        for (series, want) in expected {
            let got = value(series);
            assert!(
                (got - want).abs() < 1e-12,
                "{series}: {got} != {want}\n{text}"
            );
        }
        assert!(snapshot.gauges.history_bytes > 0);
        // Every series is in the docs, with its type.
        let documented = include_str!("../../docs/METRICS.md");
        for line in text.lines().filter(|line| line.starts_with("# TYPE ")) {
            let mut words = line.split(' ').skip(2);
            let (name, kind) = (
                words.next().unwrap_or_default(),
                words.next().unwrap_or_default(),
            );
            assert!(
                documented.contains(&format!("| `{name}` | {kind} |")),
                "{name} ({kind}) is not in docs/METRICS.md"
            );
        }
        // Rendered twice, the same text: a fixed order.
        assert_eq!(encode(&snapshot), text);
    }
}
