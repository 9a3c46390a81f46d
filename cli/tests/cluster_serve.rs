//! `chatd serve --cluster`: what start-up refuses, as a process against a
//! real redis-server (tests/src/redis.rs; skipped loudly where it is not
//! installed, unless `CHATD_REQUIRE_REDIS=1`).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chatd_tests::child::KillOnDrop;
use chatd_tests::redis::RedisServer;

const CHATD: &str = env!("CARGO_BIN_EXE_chatd");

/// `chatd serve` on free ports, in memory, as node `name` of `url`.
fn serve(url: &str, name: &str) -> Command {
    let mut command = Command::new(CHATD);
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--irc-bind", "none"])
        .args(["--http-bind", "none", "--no-persist", "--threads", "1"])
        .args(["--cluster", url, "--node-name", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Runs to completion; one that does not end within 10 s is killed and
/// fails.
fn run(mut command: Command) -> Output {
    let mut child = command.spawn().expect("chatd runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chatd did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_node_name_held_by_a_live_node_stops_start_up_with_a_clear_line() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut first = KillOnDrop(serve(&redis.url(), "n1").spawn().expect("chatd runs"));
    let mut conn = redis.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis::cmd("EXISTS")
        .arg("chatd:node:n1")
        .query::<bool>(&mut conn)
        .expect("EXISTS")
    {
        assert!(
            first.0.try_wait().expect("wait").is_none(),
            "the first n1 exited"
        );
        assert!(Instant::now() < deadline, "the first n1 took no lease");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = run(serve(&redis.url(), "n1"));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("chatd: node name n1 is already in use by a live node"),
        "{stderr}"
    );
    assert!(
        first.0.try_wait().expect("wait").is_none(),
        "the first n1 still runs"
    );
}

#[test]
fn cluster_flags_are_checked_before_anything_starts() {
    let mut alone = Command::new(CHATD);
    alone
        .args([
            "serve",
            "--cluster",
            "redis://127.0.0.1:1/0",
            "--no-persist",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let output = run(alone);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("--cluster needs --node-name: this node's name in the cluster"),
    );
    let bad = run(serve("redis://127.0.0.1:1/0", "N-1"));
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("a node name is 1 to 8 characters"));
}
