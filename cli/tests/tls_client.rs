//! `chatd connect --tls` against a TLS server made in the test: a rustls
//! proxy in front of a real plain `chatd serve`, with certificates from a
//! test CA (rcgen). Each certificate problem must be one clear line;
//! `--ca` must let lines through; `--insecure` must warn at every
//! connection, reconnects included.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use chatd_engine::listener::parse_listening;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

const CHATD: &str = env!("CARGO_BIN_EXE_chatd");

/// A test CA and the leaves it signs.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "chatd test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names`, valid now unless `expired`.
    fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let mut params = CertificateParams::new(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        if expired {
            params.not_before = date_time_ymd(2024, 1, 1);
            params.not_after = date_time_ymd(2025, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

/// A certificate chain and its key, for the server side.
struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A real `chatd serve` on plain TCP.
struct Chatd {
    child: Child,
    addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl Chatd {
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(CHATD)
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--irc-bind",
                "127.0.0.1:0",
                "--http-bind",
                "none",
            ])
            .args(["--threads", "1", "--data-dir"])
            .arg(data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stderr.take().unwrap());
        let addr = loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .expect("chatd serve names its listeners");
            if let Some(rest) = line.split("chatd listening on ").nth(1) {
                break parse_listening(rest)[0].address;
            }
        };
        Self {
            child,
            addr,
            _data: data,
        }
    }
}

impl Drop for Chatd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line `from` prints, as it prints it.
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

/// A TLS server that passes each connection's bytes to `upstream`. With
/// `cut_first`, the first connection is closed (without close_notify, as
/// a crashed server would) after that long.
fn tls_proxy(leaf: Leaf, upstream: SocketAddr, cut_first: Option<Duration>) -> SocketAddr {
    tls_proxy_telling(leaf, upstream, cut_first, mpsc::channel().0)
}

/// [`tls_proxy`], sending on `cut` once it has closed the first
/// connection.
fn tls_proxy_telling(
    leaf: Leaf,
    upstream: SocketAddr,
    cut_first: Option<Duration>,
    cut: mpsc::Sender<()>,
) -> SocketAddr {
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for (n, tcp) in listener.incoming().enumerate() {
            let Ok(tcp) = tcp else { return };
            let config = config.clone();
            let (after, told) = if n == 0 {
                (cut_first, Some(cut.clone()))
            } else {
                (None, None)
            };
            thread::spawn(move || {
                pass_through(config, tcp, upstream, after);
                if let Some(told) = told {
                    let _ = told.send(());
                }
            });
        }
    });
    addr
}

fn pass_through(
    config: Arc<ServerConfig>,
    mut tcp: TcpStream,
    upstream: SocketAddr,
    cut: Option<Duration>,
) {
    let mut conn = ServerConnection::new(config).unwrap();
    while conn.is_handshaking() {
        // A client that refuses the certificate ends the handshake here.
        if conn.complete_io(&mut tcp).is_err() {
            return;
        }
    }
    let mut tls = StreamOwned::new(conn, tcp);
    let mut up = TcpStream::connect(upstream).unwrap();
    let poll = Some(Duration::from_millis(5));
    tls.sock.set_read_timeout(poll).unwrap();
    up.set_read_timeout(poll).unwrap();
    let until = cut.map(|cut| Instant::now() + cut);
    let mut buf = [0u8; 8192];
    let idle = |error: &std::io::Error| {
        matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    };
    while until.is_none_or(|until| Instant::now() < until) {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if up.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(error) if idle(&error) => {}
            Err(_) => return,
        }
        match up.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                    return;
                }
            }
            Err(error) if idle(&error) => {}
            Err(_) => return,
        }
    }
}

/// `chatd connect` with `args`, stdin `input` then closed; its output.
fn connect(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(CHATD)
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    wait_with_limit(child, Duration::from_secs(60))
}

fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chatd connect did not finish");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn write_pem(dir: &Path, pem: &str) -> String {
    let path = dir.join("ca.pem");
    std::fs::write(&path, pem).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The one line of a refused connection.
fn refusal(output: &Output) -> String {
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    lines[0].to_owned()
}

#[test]
fn lines_pass_over_tls_with_a_private_ca() {
    let chatd = Chatd::start();
    let ca = Ca::new();
    let proxy = tls_proxy(ca.leaf(&["localhost"], false), chatd.addr, None);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write_pem(dir.path(), &ca.pem());
    // A plain client in the same room sees what comes over TLS.
    let (observer, _socket) = observe(chatd.addr);
    let target = format!("localhost:{}", proxy.port());
    let output = connect(
        &["--tls", "--ca", &ca_file, &target],
        "#nick tlsuser\nhello over tls\n#ping tls-works\n",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("* you are now tlsuser"), "{stdout}");
    assert!(stdout.contains("+ pong tls-works"), "{stdout}");
    wait_for_line(&observer, "[#general] tlsuser: hello over tls");
}

/// A plain TCP client of `chatd`, registered (its welcome read); its
/// lines, and its socket to write to.
fn observe(chatd: SocketAddr) -> (Receiver<String>, TcpStream) {
    let socket = TcpStream::connect(chatd).unwrap();
    let lines = lines_of(socket.try_clone().unwrap());
    wait_for_line(&lines, "* welcome");
    (lines, socket)
}

fn wait_for_line(lines: &Receiver<String>, wanted: &str) {
    let mut seen = Vec::new();
    while !seen.iter().any(|line: &String| line.starts_with(wanted)) {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line {wanted:?}; saw {seen:#?}"),
        }
    }
}

#[test]
fn an_expired_certificate_is_refused_with_its_date() {
    let ca = Ca::new();
    let proxy = tls_proxy(
        ca.leaf(&["localhost"], true),
        "127.0.0.1:9".parse().unwrap(),
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write_pem(dir.path(), &ca.pem());
    let output = connect(
        &[
            "--tls",
            "--ca",
            &ca_file,
            &format!("localhost:{}", proxy.port()),
        ],
        "",
    );
    assert_eq!(
        refusal(&output),
        "chatd: certificate for localhost expired on 2025-01-01"
    );
}

#[test]
fn a_certificate_for_another_name_is_refused_naming_both() {
    let ca = Ca::new();
    let proxy = tls_proxy(
        ca.leaf(&["other.example"], false),
        "127.0.0.1:9".parse().unwrap(),
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write_pem(dir.path(), &ca.pem());
    let output = connect(
        &[
            "--tls",
            "--ca",
            &ca_file,
            &format!("localhost:{}", proxy.port()),
        ],
        "",
    );
    assert_eq!(
        refusal(&output),
        "chatd: certificate is for other.example, not localhost"
    );
}

#[test]
fn an_unknown_authority_is_refused_with_a_hint_at_ca() {
    let ca = Ca::new();
    let proxy = tls_proxy(
        ca.leaf(&["localhost"], false),
        "127.0.0.1:9".parse().unwrap(),
        None,
    );
    let output = connect(&["--tls", &format!("localhost:{}", proxy.port())], "");
    assert_eq!(
        refusal(&output),
        "chatd: certificate is signed by an unknown authority; pass --ca FILE if it is a private one"
    );
}

#[test]
fn insecure_warns_at_every_connection_and_reconnects_and_catches_up_over_tls() {
    let chatd = Chatd::start();
    let (cut, was_cut) = mpsc::channel();
    // Signed by a CA the client was not told of.
    let proxy = tls_proxy_telling(
        Ca::new().leaf(&["localhost"], false),
        chatd.addr,
        Some(Duration::from_millis(1500)),
        cut,
    );
    let (observer, mut observer_socket) = observe(chatd.addr);
    let mut child = Command::new(CHATD)
        .args(["connect", "--tls", "--insecure", "--nick", "tlsuser"])
        .arg(format!("localhost:{}", proxy.port()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stderr = lines_of(child.stderr.take().unwrap());
    // Said while the client is away (it retries after half a second): it
    // must come back through the catch-up over the next TLS connection.
    was_cut
        .recv_timeout(Duration::from_secs(30))
        .expect("the proxy cuts the first connection");
    writeln!(observer_socket, "said while tlsuser was away").unwrap();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|line: &String| line.contains("reconnected to"))
    {
        seen.push(
            stderr
                .recv_timeout(Duration::from_secs(30))
                .expect("the client reconnects after the cut"),
        );
    }
    writeln!(stdin, "back over tls").unwrap();
    drop(stdin);
    let output = wait_with_limit(child, Duration::from_secs(60));
    seen.extend(stderr.iter());
    let warning = "chatd connect: warning: --insecure: the certificate of localhost is not checked; anyone on the way can read and change this connection";
    let warnings = seen.iter().filter(|line| *line == warning).count();
    assert_eq!(warnings, 2, "a warning per connection: {seen:#?}");
    assert!(output.status.success(), "{output:?} {seen:#?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(": said while tlsuser was away"),
        "caught up: {stdout}"
    );
    // Sent over the second TLS connection, with the nick taken back.
    wait_for_line(&observer, "[#general] tlsuser: back over tls");
}
