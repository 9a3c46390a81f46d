//! `chatd serve` with TLS listeners, as a process: the start-up line names
//! them, a TLS listener without a certificate is a clear start-up error,
//! `--tls-self-signed` logs its fingerprint, and (Unix) SIGHUP reloads the
//! certificate without dropping connections.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use chatd_core::Dialect;
use chatd_engine::listener::parse_listening;
use chatd_tests::client::LineClient;
use chatd_tests::tls::TestTls;

const CHATD: &str = env!("CARGO_BIN_EXE_chatd");
const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

struct Server {
    child: Child,
    /// The native TLS listener.
    tls: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(CHATD)
            .args(common::SERVE_NATIVE_ONLY)
            .args(["--tls-bind", "127.0.0.1:0", "--irc-tls-bind", "127.0.0.1:0"])
            .args(["--no-persist", "--threads", "2", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chatd starts");
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        let (found, startup) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("chatd listening on ").nth(1) {
                    let _ = found.send(parse_listening(rest));
                }
                kept.lock().unwrap().push(line);
            }
        });
        let listening = startup
            .recv_timeout(Duration::from_secs(10))
            .expect("start-up line");
        let tls = listening
            .iter()
            .find(|l| l.dialect == Dialect::Native && l.tls)
            .expect("(native/tls) in the start-up line")
            .address;
        assert!(
            listening.iter().any(|l| l.dialect == Dialect::Irc && l.tls),
            "(irc/tls) in the start-up line"
        );
        Self { child, tls, log }
    }

    fn wait_for_log(&self, wanted: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(wanted)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no log line with {wanted:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn welcome(address: SocketAddr, tls: &TestTls) -> LineClient {
    let mut client = LineClient::connect_tls(address, LOCAL, tls.client.clone()).expect("connects");
    client
        .wait_for(|line| line.starts_with("* welcome"))
        .expect("welcome over TLS");
    client
}

#[test]
fn a_tls_listener_without_a_certificate_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(CHATD)
        .args(common::SERVE_NATIVE_ONLY)
        .args(["--tls-bind", "127.0.0.1:0", "--no-persist", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs a certificate"), "{stderr}");
}

#[test]
fn self_signed_logs_its_fingerprint_and_serves_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--tls-self-signed"]);
    let line = server.wait_for_log("SHA-256 fingerprint");
    let fingerprint = line.rsplit(' ').next().unwrap_or_default();
    assert_eq!(fingerprint.split(':').count(), 32, "{line}");
    // Anyone can connect; the harness trusts only its own certificates,
    // so check the handshake starts: a rustls client that trusts another
    // certificate is refused with a certificate error, not a hang.
    let other = TestTls::create(dir.path()).unwrap();
    let mut client = LineClient::connect_tls(server.tls, LOCAL, other.client.clone()).unwrap();
    let error = client.next_line().expect_err("untrusted certificate");
    assert!(error.to_string().contains("certificate"), "{error}");
}

#[cfg(unix)]
#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (first_dir, second_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&first_dir).unwrap();
    std::fs::create_dir_all(&second_dir).unwrap();
    let first = TestTls::create(&first_dir).unwrap();
    let second = TestTls::create(&second_dir).unwrap();
    let (cert, key) = (first.cert.to_str().unwrap(), first.key.to_str().unwrap());
    let server = Server::start(dir.path(), &["--tls-cert", cert, "--tls-key", key]);
    let mut old = welcome(server.tls, &first);
    // The files now hold the second certificate; SIGHUP re-reads them.
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    let hup = || {
        let status = Command::new("kill")
            .args(["-HUP", &server.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    };
    hup();
    server.wait_for_log("TLS certificate reloaded");
    let mut new = welcome(server.tls, &second);
    // The connection made before the reload goes on.
    old.say("#nick old").unwrap();
    old.wait_for(|line| line == "* you are now old")
        .expect("old connection kept");
    new.say("#nick new").unwrap();
    new.wait_for(|line| line == "* you are now new")
        .expect("new connection works");
    // A broken key: logged, and the second certificate stays in use.
    std::fs::write(&first.key, "-----BEGIN PRIVATE KEY-----\nbroken\n").unwrap();
    hup();
    server.wait_for_log("NOT reloaded");
    welcome(server.tls, &second);
}
