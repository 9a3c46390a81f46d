//! `chatd bench web`'s generator over WebSocket: a small fan-out through a
//! real `chatd serve --http-bind ...`, every client upgraded at `/ws`,
//! every delivery counted once, none lost, as over plain TCP.

use std::path::Path;
use std::time::Duration;

use chatd_benches::fanout::{self, FanoutPlan, Peer};
use chatd_benches::server::ServerProcess;

const CHATD: &str = env!("CARGO_BIN_EXE_chatd");
/// The benchmarks' server profile (no rate limits to trip).
const BENCH_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/bench.toml");

#[test]
fn a_fan_out_over_websockets_delivers_every_line_once() {
    let data = tempfile::tempdir().expect("temp dir");
    let args: Vec<String> = [
        "--config",
        BENCH_CONFIG,
        "--http-bind",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--data-dir",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .chain([data.path().display().to_string()])
    .collect();
    let server = ServerProcess::start(Path::new(CHATD), &args).expect("chatd starts");
    let http = server.http_addr().expect("an HTTP listener");
    assert_ne!(http, server.addr);
    let plan = FanoutPlan {
        clients: 8,
        rooms: 2,
        senders: 2,
        rate: Some(200),
        in_flight: 8,
        payload: 64,
        duration: Duration::from_millis(500),
        reader_threads: 2,
        tls: None,
        web: true,
    };
    let measured =
        fanout::measure_at(&server, http, &Peer::Chatd, &plan, false).expect("the run completes");
    let report = measured.report;
    assert!(report.sent > 0, "nothing was sent");
    assert_eq!(
        report.delivered, report.expected,
        "lost or doubled deliveries"
    );
}
