//! Core microbenchmarks, no sockets: what the state machine itself costs.
//!
//! - parse one native line into a command;
//! - handle one chat line from a member of a room of 10, 100 and 1,000
//!   members, draining the outputs (one shared broadcast and one persist
//!   record) as a backend would.
//!
//! Each figure is the median of 7 timed runs after a warm-up.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatd_core::{Config, Output, Server, native};

const RUNS: usize = 7;

/// Runs every microbenchmark and prints one line per figure.
pub fn run() {
    let parse = median_ns_per_op(200_000, |n| {
        for _ in 0..n {
            black_box(
                native::parse(black_box("#msg bob see you at the usual place at three")).ok(),
            );
        }
    });
    println!("parse a command line:            {parse:>8.1} ns");
    let chat = median_ns_per_op(200_000, |n| {
        for _ in 0..n {
            black_box(native::parse(black_box("hello everyone, how is it going today?")).ok());
        }
    });
    println!("parse a chat line:               {chat:>8.1} ns");
    for members in [10, 100, 1_000] {
        let (mut server, sender, start) = room_of(members);
        let mut now = start;
        let per_message = median_ns_per_op(100_000, |n| {
            let mut broadcasts = 0usize;
            for _ in 0..n {
                now += Duration::from_nanos(1);
                server.handle(now, sender, b"hello everyone, how is it going today?\n");
                while let Some(output) = server.poll_output() {
                    if let Output::Broadcast { to, .. } = &output {
                        broadcasts += to.len();
                    }
                    black_box(output);
                }
            }
            black_box(broadcasts);
        });
        println!(
            "one chat message, room of {members:>5}: {per_message:>8.1} ns  ({:.2} ns per recipient)",
            per_message / (members - 1) as f64
        );
    }
}

/// A server with `members` connections in one room; returns it, the sender
/// and the instant the clock stands at.
fn room_of(members: usize) -> (Server, chatd_core::ConnId, Instant) {
    let mut config = Config::default();
    config.rate_limit.enabled = false;
    config.idle.enabled = false;
    config.max_connections_per_ip = 0;
    config.presence_announce_limit = 0;
    config.history_size = 100;
    // Reading the clock once, outside the core, to start virtual time.
    let start = Instant::now();
    let mut server = Server::new(config, start, 1_795_000_000_000).expect("valid config");
    let mut sender = None;
    for i in 0..members {
        let peer: SocketAddr = format!("127.0.0.{}:{}", 1 + i / 60_000, 1 + i % 60_000)
            .parse()
            .expect("valid address");
        let conn = server.accept(start, peer).expect("admitted");
        server.handle(start, conn, b"#join bench\n");
        sender.get_or_insert(conn);
    }
    while server.poll_output().is_some() {}
    (server, sender.expect("at least one member"), start)
}

/// Runs `work(n)` after a warm-up, `RUNS` times, and returns the median
/// nanoseconds per operation.
fn median_ns_per_op(n: usize, mut work: impl FnMut(usize)) -> f64 {
    work(n / 10);
    let mut samples: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            work(n);
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[RUNS / 2]
}
