//! `chatd bench tls`'s generator over TLS: a small fan-out through a real
//! `chatd serve --tls-bind ... --tls-self-signed`, every delivery counted
//! once, none lost, as over plain TCP.

use std::path::Path;
use std::time::Duration;

use chatd_benches::bench_stream::trusting_client_config;
use chatd_benches::fanout::{self, FanoutPlan, Peer};
use chatd_benches::server::ServerProcess;

const CHATD: &str = env!("CARGO_BIN_EXE_chatd");
/// The benchmarks' server profile (no rate limits to trip).
const BENCH_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/bench.toml");

#[test]
fn a_fan_out_over_tls_delivers_every_line_once() {
    let data = tempfile::tempdir().expect("temp dir");
    let args: Vec<String> = [
        "--config",
        BENCH_CONFIG,
        "--tls-bind",
        "127.0.0.1:0",
        "--tls-self-signed",
        "--threads",
        "1",
        "--data-dir",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .chain([data.path().display().to_string()])
    .collect();
    let server = ServerProcess::start(Path::new(CHATD), &args).expect("chatd starts");
    let tls = server.tls_addr().expect("a native TLS listener");
    assert_ne!(tls, server.addr);
    let plan = FanoutPlan {
        clients: 8,
        rooms: 2,
        senders: 2,
        rate: Some(200),
        in_flight: 8,
        payload: 64,
        duration: Duration::from_millis(500),
        reader_threads: 2,
        tls: Some(trusting_client_config()),
        web: false,
    };
    let measured =
        fanout::measure_at(&server, tls, &Peer::Chatd, &plan, false).expect("the run completes");
    let report = measured.report;
    assert!(report.sent > 0, "nothing was sent");
    assert_eq!(
        report.delivered, report.expected,
        "lost or doubled deliveries"
    );
}
