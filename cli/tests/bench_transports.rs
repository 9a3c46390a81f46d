//! The benchmarks' generator over each transport chatd offers besides
//! plain TCP: a small fan-out through a real `chatd serve` over TLS
//! (`--tls-bind ... --tls-self-signed`) and over WebSockets
//! (`--http-bind`, every client upgraded at `/ws`), every delivery
//! counted once, none lost, as over plain TCP.

use std::net::SocketAddr;
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
    fan_out_through(
        &["--tls-bind", "127.0.0.1:0", "--tls-self-signed"],
        |server| server.tls_addr().expect("a native TLS listener"),
        |plan| plan.tls = Some(trusting_client_config()),
    );
}

#[test]
fn a_fan_out_over_websockets_delivers_every_line_once() {
    fan_out_through(
        &["--http-bind", "127.0.0.1:0"],
        |server| server.http_addr().expect("an HTTP listener"),
        |plan| plan.web = true,
    );
}

/// Starts chatd with `listener` flags, points a small fan-out (changed by
/// `transport`) at the address `address` picks, and checks every line
/// arrived once.
fn fan_out_through(
    listener: &[&str],
    address: impl Fn(&ServerProcess) -> SocketAddr,
    transport: impl Fn(&mut FanoutPlan),
) {
    let data = tempfile::tempdir().expect("temp dir");
    let args: Vec<String> = ["--config", BENCH_CONFIG, "--threads", "1", "--data-dir"]
        .iter()
        .map(|arg| (*arg).to_owned())
        .chain([data.path().display().to_string()])
        .chain(listener.iter().map(|arg| (*arg).to_owned()))
        .collect();
    let server = ServerProcess::start(Path::new(CHATD), &args).expect("chatd starts");
    let addr = address(&server);
    assert_ne!(addr, server.addr);
    let mut plan = FanoutPlan {
        clients: 8,
        rooms: 2,
        senders: 2,
        rate: Some(200),
        in_flight: 8,
        payload: 64,
        duration: Duration::from_millis(500),
        reader_threads: 2,
        tls: None,
        web: false,
    };
    transport(&mut plan);
    let measured =
        fanout::measure_at(&server, addr, &Peer::Chatd, &plan, false).expect("the run completes");
    let report = measured.report;
    assert!(report.sent > 0, "nothing was sent");
    assert_eq!(
        report.delivered, report.expected,
        "lost or doubled deliveries"
    );
}
