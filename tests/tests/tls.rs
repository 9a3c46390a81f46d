//! TLS listeners on each backend: the handshake timeout cuts a slowloris
//! (and the core forgets its connection), and garbage closes only the
//! connection that sent it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd_core::Config;
use chatd_core::Dialect;
use chatd_engine::clock::ManualClock;
use chatd_engine::persist::FsyncPolicy;
use chatd_engine::settings::{NO_LISTENER, ServerSettings, Settings, TlsSettings};
use chatd_engine::{Backend, Running, launch};
use chatd_tests::client::LineClient;
use chatd_tests::tls::TestTls;

/// Short, so the tests are quick; long enough for a loaded machine's
/// handshakes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(700);

use chatd_tests::{host, on_both_backends};

on_both_backends!(
    a_slowloris_handshake_is_cut_and_the_core_forgets_it,
    garbage_closes_only_the_connection_that_sent_it,
);

fn start(backend: &dyn Backend, dir: &std::path::Path, tls: &TestTls) -> (Running, SocketAddr) {
    // A connection the core still counted would make the next one from
    // the same address be refused.
    let chat = Config {
        max_connections_per_ip: 1,
        ..Config::default()
    };
    let settings = Settings {
        server: ServerSettings {
            bind: "127.0.0.1:0".into(),
            irc_bind: NO_LISTENER.into(),
            http_bind: NO_LISTENER.into(),
            tls_bind: "127.0.0.1:0".into(),
            threads: 2,
            data_dir: dir.to_path_buf(),
            fsync: FsyncPolicy::Never,
            persist: false,
            backend: backend.name().into(),
            ..ServerSettings::default()
        },
        chat,
        history: Default::default(),
        tls: TlsSettings {
            cert: Some(tls.cert.clone()),
            key: Some(tls.key.clone()),
            self_signed: false,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        },
        http: Default::default(),
        cluster: None,
    };
    let running = launch(
        &settings,
        backend,
        Arc::new(ManualClock::new(1_795_000_000_000)),
    )
    .expect("server starts");
    let address = running
        .listener_of(Dialect::Native, true)
        .expect("TLS listener");
    (running, address)
}

fn welcome(address: SocketAddr, from: u8, tls: &TestTls) -> LineClient {
    let mut client =
        LineClient::connect_tls(address, host(from), tls.client.clone()).expect("connects");
    client
        .wait_for(|line| line.starts_with("* welcome"))
        .expect("welcome over TLS");
    client
}

/// A real ClientHello, to send a byte at a time.
fn client_hello(tls: &TestTls) -> Vec<u8> {
    let mut client =
        rustls::ClientConnection::new(tls.client.clone(), chatd_tests::tls::server_name())
            .expect("client");
    let mut hello = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut hello).expect("into a Vec");
    }
    hello
}

/// Whether the server has closed `stream` (end of stream or reset),
/// waiting at most `wait`.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let mut buffer = [0u8; 1024];
    match stream.read(&mut buffer) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn a_slowloris_handshake_is_cut_and_the_core_forgets_it(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = TestTls::create(dir.path()).expect("certificate");
    let (running, address) = start(backend, dir.path(), &tls);
    let hello = client_hello(&tls);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(host(1), 0).into()).unwrap();
    socket.connect(&address.into()).expect("connects");
    let mut slow: TcpStream = socket.into();
    let started = Instant::now();
    // One byte of a real ClientHello every 100 ms: never done in time.
    let mut cut = false;
    for byte in hello.iter().take(40) {
        if slow.write_all(&[*byte]).is_err() || closed_within(&mut slow, Duration::from_millis(100))
        {
            cut = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(cut, "a slowloris still connected after {took:?}");
    assert!(
        took >= HANDSHAKE_TIMEOUT && took < HANDSHAKE_TIMEOUT + Duration::from_secs(2),
        "cut after {took:?}, the timeout is {HANDSHAKE_TIMEOUT:?}"
    );
    // The core saw it closed: the same address (limit 1) gets in again.
    let mut next = welcome(address, 1, &tls);
    next.say("#nick zed").expect("sends");
    next.wait_for(|line| line == "* you are now zed")
        .expect("works");
    running.shutdown("test over");
    running.wait();
}

fn garbage_closes_only_the_connection_that_sent_it(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = TestTls::create(dir.path()).expect("certificate");
    let (running, address) = start(backend, dir.path(), &tls);
    let mut alice = welcome(address, 1, &tls);
    let mut garbage = TcpStream::connect(address).expect("connects");
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: chat\r\n\r\n")
        .expect("sends");
    let started = Instant::now();
    assert!(
        closed_within(&mut garbage, Duration::from_secs(5)),
        "garbage not closed"
    );
    assert!(
        started.elapsed() < HANDSHAKE_TIMEOUT,
        "closed by the timeout, not the error"
    );
    // A truncated ClientHello followed by the end of the stream: closed too.
    let mut truncated = TcpStream::connect(address).expect("connects");
    let hello = client_hello(&tls);
    truncated
        .write_all(&hello[..hello.len() / 3])
        .expect("sends");
    truncated
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    assert!(
        closed_within(&mut truncated, Duration::from_secs(5)),
        "truncated hello not closed"
    );
    alice.say("#nick alice").expect("sends");
    alice
        .wait_for(|line| line == "* you are now alice")
        .expect("alice unaffected");
    running.shutdown("test over");
    running.wait();
}
