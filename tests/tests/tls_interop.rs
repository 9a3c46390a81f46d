//! Interoperability with another TLS stack: `openssl s_client` against the
//! real `chatd serve --tls-bind ... --tls-self-signed`. TLS 1.2 and 1.3
//! must each carry a registration and its answer; TLS 1.1 must be refused
//! by the server (rustls has nothing older than 1.2).
//!
//! Needs `openssl` on the PATH (.ci/run installs it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use chatd_tests::process::native_chatd_binary;

/// A `chatd serve` with a native TLS listener on a self-signed
/// certificate.
struct Server {
    child: Child,
    tls: SocketAddr,
    _data: tempfile::TempDir,
    /// The server's log, read until the end: dropping the reader would
    /// close the server's stderr, and a server whose log pipe is closed
    /// dies at its next log line (seen as openssl's "unexpected eof").
    _log: Receiver<String>,
}

impl Server {
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(native_chatd_binary().expect("the chatd binary builds"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--irc-bind",
                "127.0.0.1:0",
            ])
            .args(["--tls-bind", "127.0.0.1:0", "--tls-self-signed"])
            .args(["--http-bind", "none"])
            .args(["--threads", "1", "--data-dir"])
            .arg(data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chatd starts");
        let lines = lines_of(child.stderr.take().unwrap());
        let mut seen = Vec::new();
        let tls = loop {
            let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) else {
                panic!("chatd serve did not name its listeners: {seen:#?}");
            };
            if let Some(rest) = line.split("chatd listening on ").nth(1) {
                break tls_listener(rest)
                    .unwrap_or_else(|| panic!("no native/tls listener in {line:?}"));
            }
            seen.push(line);
        };
        Self {
            child,
            tls,
            _data: data,
            _log: lines,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `ADDR (native/tls)` listener of a start-up line's list.
fn tls_listener(list: &str) -> Option<SocketAddr> {
    chatd_engine::listener::parse_listening(list)
        .into_iter()
        .find(|l| l.dialect == chatd_core::Dialect::Native && l.tls)
        .map(|l| l.address)
}

fn lines_of(from: impl Read + Send + 'static) -> Receiver<String> {
    let (send, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// `openssl s_client` to `addr` with `version` (`-tls1_2`, ...), sending
/// `input` and keeping stdin open.
fn s_client(addr: SocketAddr, version: &str, input: &str) -> Child {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", version, "-connect"])
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs (apt-get install openssl)");
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child
}

fn registers_over(version: &str, nick: &str) {
    let server = Server::start();
    let mut client = s_client(server.tls, version, &format!("#nick {nick}\n"));
    let lines = lines_of(client.stdout.take().unwrap());
    let wanted = format!("* you are now {nick}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.contains(&wanted) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = client.kill();
                let output = client.wait_with_output().unwrap();
                panic!(
                    "{version}: no {wanted:?}; saw {seen:#?}; openssl said {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
    assert!(seen[0].starts_with("* welcome"), "{seen:#?}");
    let _ = client.kill();
    let _ = client.wait();
}

#[test]
fn openssl_registers_over_tls_1_2() {
    registers_over("-tls1_2", "osslTwelve");
}

#[test]
fn openssl_registers_over_tls_1_3() {
    registers_over("-tls1_3", "osslThirteen");
}

#[test]
fn openssl_over_tls_1_1_is_refused_by_the_server() {
    let server = Server::start();
    let client = s_client(server.tls, "-tls1_1", "#nick old\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = client;
    while client.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "openssl -tls1_1 was not refused");
        thread::sleep(Duration::from_millis(20));
    }
    let output = client.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    // The server's alert, not a refusal by openssl itself.
    assert!(stderr.contains("alert handshake failure"), "{stderr}");
}

#[test]
fn the_tls_listener_is_read_from_the_start_up_line() {
    assert_eq!(
        tls_listener(
            "127.0.0.1:9090 (native), 127.0.0.1:9443 (native/tls), 127.0.0.1:6697 (irc/tls)"
        ),
        Some("127.0.0.1:9443".parse().unwrap())
    );
    assert_eq!(tls_listener("127.0.0.1:9090 (native)"), None);
}
