//! The real `chatd` binary as a process: start-up failures, operator
//! entries, SIGTERM and SIGKILL. Signals are Unix-only, so the signal tests
//! are compiled only there.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chatd_core::history;
use chatd_tests::client::LineClient;
use chatd_tests::driver::Received;

const CHATD: &str = env!("CARGO_BIN_EXE_chatd");
const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A running `chatd serve`, its address read from the start-up log line.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(CHATD)
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--threads",
                "2",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chatd starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (found, address) = mpsc::channel();
        thread::spawn(move || {
            // Keep draining stderr so the server never blocks on its log.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("chatd listening on ").nth(1) {
                    let addr = rest.split(": ").next().unwrap_or_default().to_owned();
                    let _ = found.send(addr);
                }
            }
        });
        let addr = address
            .recv_timeout(Duration::from_secs(10))
            .expect("start-up line")
            .parse()
            .expect("an address in the start-up line");
        Self { child, addr }
    }

    #[cfg(unix)]
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    #[cfg(unix)]
    fn wait(mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "chatd did not exit within {limit:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(addr: SocketAddr) -> LineClient {
    let mut client = LineClient::connect(addr, LOCAL).expect("connects");
    client
        .wait_for(|line| line.starts_with("* welcome"))
        .expect("welcome");
    client
}

/// Runs chatd to completion; a run that does not end within 10 s (say, a
/// server that started when it should have failed) is killed and fails.
fn run_chatd(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(CHATD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chatd runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("chatd {args:?} did not exit within 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn start_up_failures_are_one_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "max_line_bytes = \"lots\"\n").expect("write");
    let bad_config = bad_config.to_string_lossy().into_owned();
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = blocker.local_addr().expect("addr").to_string();
    let data = dir.path().join("data").to_string_lossy().into_owned();
    for (args, expected) in [
        (vec!["serve", "--threads", "many"], "invalid value 'many'"),
        (
            vec!["serve", "--config", "/no/such/file.toml"],
            "cannot read config file",
        ),
        (
            vec!["serve", "--config", bad_config.as_str()],
            "invalid config file",
        ),
        (
            vec![
                "serve",
                "--bind",
                taken.as_str(),
                "--data-dir",
                data.as_str(),
            ],
            "cannot listen on",
        ),
        (
            vec!["serve", "--backend", "kqueue"],
            "invalid value 'kqueue'",
        ),
    ] {
        let (status, stderr) = run_chatd(&args);
        assert!(!status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("chatd: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
    }
}

#[test]
fn hash_password_prints_an_operator_entry_the_server_accepts() {
    let mut child = Command::new(CHATD)
        .args(["hash-password", "--name", "root"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("chatd runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret\n")
        .expect("write");
    let output = child.wait_with_output().expect("output");
    assert!(output.status.success());
    let entry = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        entry.starts_with("[[operators]]\nname = \"root\"\npassword_hash = \"$argon2id$"),
        "{entry}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("chatd.toml");
    std::fs::write(&config, &entry).expect("write config");
    let config = config.to_string_lossy().into_owned();
    let server = Server::start(&dir.path().join("data"), &["--config", &config]);
    let mut alice = client(server.addr);
    alice.say("#oper root wrong").expect("send");
    alice
        .wait_for(|l| l.starts_with("! bad-credentials"))
        .expect("refused");
    alice.say("#oper root s3cret").expect("send");
    alice
        .wait_for(|l| l == "* you are now a server operator")
        .expect("accepted");
}

#[cfg(unix)]
#[test]
fn sigterm_tells_clients_flushes_history_and_exits_zero() {
    for backend in ["poll", "iocp"] {
        stop_with_sigterm(backend);
    }
}

#[cfg(unix)]
fn stop_with_sigterm(backend: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    // fsync once an hour: only the shutdown path can have synced these.
    let server = Server::start(dir.path(), &["--fsync", "1h", "--backend", backend]);
    let mut alice = client(server.addr);
    for i in 0..15 {
        alice.say(&format!("message {i}")).expect("send");
    }
    alice.say("#ping sent").expect("send");
    alice.wait_for(|l| l == "+ pong sent").expect("all handled");
    server.signal("TERM");
    assert_eq!(
        alice.next_line().expect("read"),
        Received::Line("* server shutting down: stopped by the operator".into())
    );
    assert_eq!(alice.next_line().expect("read"), Received::Closed);
    let status = server.wait(Duration::from_secs(10));
    assert!(status.success(), "{backend}: exit status {status:?}");
    let bytes = std::fs::read(dir.path().join("general.log")).expect("log exists");
    let texts: Vec<String> = history::recover(&bytes)
        .records
        .into_iter()
        .map(|r| r.text)
        .collect();
    let expected: Vec<String> = (0..15).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected);
}

#[cfg(unix)]
#[test]
fn sigkill_during_an_acknowledged_stream_loses_no_acknowledged_message() {
    // "always" keeps records waiting behind each fsync, the widest window
    // for an early ACK to show; 10ms is the default.
    for backend in ["poll", "iocp"] {
        for policy in ["always", "10ms"] {
            kill_mid_stream_and_recover(backend, policy);
        }
    }
}

#[cfg(unix)]
fn kill_mid_stream_and_recover(backend: &str, policy: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("chatd.toml");
    std::fs::write(&config, "[rate_limit]\nenabled = false\n").expect("write config");
    let config = config.to_string_lossy().into_owned();
    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        &["--config", &config, "--fsync", policy, "--backend", backend],
    );
    let mut writer = client(server.addr);
    writer.say("#ack on").expect("send");
    writer
        .wait_for(|l| l == "* acknowledgements on")
        .expect("ack mode");

    // One thread streams messages; this one collects ACKs and kills the
    // server after 300 of them, mid-stream.
    let mut sender = writer.try_clone_sender().expect("clone");
    let streaming = thread::spawn(move || {
        for i in 0..100_000 {
            if sender.say(&format!("durable {i}")).is_err() {
                return i;
            }
        }
        100_000
    });
    let mut acked = Vec::new();
    loop {
        match writer.next_line().expect("read") {
            Received::Line(line) => {
                if let Some(id) = line.strip_prefix("+ ack ") {
                    acked.push(id.parse::<u64>().expect("numeric id"));
                    if acked.len() == 300 {
                        server.signal("KILL");
                    }
                }
            }
            Received::Closed => break,
            Received::Nothing => panic!("the stream stalled after {} acks", acked.len()),
        }
    }
    let sent = streaming.join().expect("streamer");
    assert!(
        acked.len() >= 300 && sent > acked.len(),
        "sent {sent}, acked {}",
        acked.len()
    );
    drop(server);

    // Every acknowledged message is in the log after the crash ...
    let bytes = std::fs::read(data.join("general.log")).expect("log exists");
    let stored: std::collections::BTreeSet<u64> = history::recover(&bytes)
        .records
        .iter()
        .map(|r| r.id.get())
        .collect();
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{backend}, fsync {policy}: acknowledged but lost: {lost:?}"
    );
    // ... and a restarted server recovers it and carries on.
    let server = Server::start(&data, &["--config", &config, "--backend", backend]);
    let mut reader = client(server.addr);
    reader.say("#history 1").expect("send");
    reader
        .wait_for(|l| l.starts_with("+ history #general 1"))
        .expect("history is back");
}
