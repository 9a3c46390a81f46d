//! The HTTP listener on each backend: WebSocket clients (native at `/ws`,
//! IRC at `/irc`) talk with TCP clients in one room; a WebSocket that
//! stops reading is cut like any slow consumer; HTTP connections count
//! against the per-address limit until they end (a slowloris is cut at
//! the request timeout); and the hub's queries answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd_core::{Config, Dialect};
use chatd_engine::clock::ManualClock;
use chatd_engine::persist::FsyncPolicy;
use chatd_engine::settings::{HttpSettings, NO_LISTENER, ServerSettings, Settings, TlsSettings};
use chatd_engine::{Backend, Running, launch};
use chatd_tests::client::LineClient;
use chatd_tests::driver::Received;
use chatd_tests::tls::TestTls;
use chatd_tests::{host, on_both_backends};

/// Short, so the slowloris test is quick.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(700);

on_both_backends!(
    web_and_tcp_clients_talk_in_one_room,
    a_websocket_that_stops_reading_is_cut_as_a_slow_consumer,
    http_connections_count_against_the_address_limit_until_they_end,
    health_ready_and_metrics_answer,
    wss_on_the_https_listener_is_the_same_protocol,
);

/// A server with its native and HTTP listeners; returns both addresses.
fn start(
    backend: &dyn Backend,
    dir: &std::path::Path,
    chat: Config,
) -> (Running, SocketAddr, SocketAddr) {
    start_with(backend, dir, chat, None)
}

/// [`start`], with an HTTPS listener too when `tls` is given.
fn start_with(
    backend: &dyn Backend,
    dir: &std::path::Path,
    chat: Config,
    tls: Option<&TestTls>,
) -> (Running, SocketAddr, SocketAddr) {
    let settings = Settings {
        server: ServerSettings {
            bind: "127.0.0.1:0".into(),
            irc_bind: NO_LISTENER.into(),
            http_bind: "127.0.0.1:0".into(),
            https_bind: if tls.is_some() {
                "127.0.0.1:0"
            } else {
                NO_LISTENER
            }
            .into(),
            threads: 2,
            data_dir: dir.to_path_buf(),
            fsync: FsyncPolicy::Never,
            persist: false,
            backend: backend.name().into(),
            ..ServerSettings::default()
        },
        chat,
        history: Default::default(),
        tls: match tls {
            Some(tls) => TlsSettings {
                cert: Some(tls.cert.clone()),
                key: Some(tls.key.clone()),
                ..TlsSettings::default()
            },
            None => TlsSettings::default(),
        },
        http: HttpSettings {
            request_timeout: REQUEST_TIMEOUT,
            ..HttpSettings::default()
        },
        cluster: None,
    };
    let running = launch(
        &settings,
        backend,
        Arc::new(ManualClock::new(1_795_000_000_000)),
    )
    .expect("server starts");
    let native = running
        .address_of(Dialect::Native)
        .expect("native listener");
    let http = running.http_addr(false).expect("HTTP listener");
    (running, native, http)
}

fn web_and_tcp_clients_talk_in_one_room(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (running, native, http) = start(backend, dir.path(), Config::default());
    let mut alice = LineClient::connect(native, host(1)).expect("connects");
    alice.wait_for(|l| l.starts_with("* welcome")).unwrap();
    alice.say("#nick alice").unwrap();
    alice.wait_for(|l| l == "* you are now alice").unwrap();
    let mut bob = LineClient::connect_websocket(http, host(2), "/ws", None).expect("upgrades");
    bob.wait_for(|l| l.starts_with("* welcome")).unwrap();
    bob.say("#nick bob").unwrap();
    bob.wait_for(|l| l == "* you are now bob").unwrap();
    let mut carol = LineClient::connect_websocket(http, host(3), "/irc", Some("text.ircv3.net"))
        .expect("upgrades");
    carol.say("NICK carol").unwrap();
    carol.say("USER carol 0 * :Carol").unwrap();
    carol.wait_for(|l| l.contains(" 001 carol ")).unwrap();
    carol.say("JOIN #general").unwrap();
    carol
        .wait_for(|l| l.contains(" 366 carol #general "))
        .unwrap();
    alice.say("hello from tcp").unwrap();
    bob.wait_for(|l| l == "[#general] alice: hello from tcp")
        .unwrap();
    carol
        .wait_for(|l| l.ends_with("PRIVMSG #general :hello from tcp") && l.starts_with(":alice!"))
        .unwrap();
    bob.say("hello from the browser").unwrap();
    alice
        .wait_for(|l| l == "[#general] bob: hello from the browser")
        .unwrap();
    carol.say("PRIVMSG #general :hello from irc").unwrap();
    alice
        .wait_for(|l| l == "[#general] carol: hello from irc")
        .unwrap();
    bob.wait_for(|l| l == "[#general] carol: hello from irc")
        .unwrap();
    // Whispers and room changes cross the transports too.
    alice.say("#msg bob psst").unwrap();
    bob.wait_for(|l| l == "[whisper] alice: psst").unwrap();
    bob.say("#join rust").unwrap();
    bob.wait_for(|l| l == "* you created #rust; you own it")
        .unwrap();
    alice.wait_for(|l| l == "* bob left #general").unwrap();
    running.shutdown("test over");
    // A WebSocket client hears the shutdown, then a close frame.
    bob.wait_for(|l| l.starts_with("* server shutting down"))
        .unwrap();
    assert!(matches!(bob.next_line().unwrap(), Received::Closed));
    running.wait();
}

fn a_websocket_that_stops_reading_is_cut_as_a_slow_consumer(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chat = Config {
        max_outbound_bytes: 64 * 1024,
        ..Config::default()
    };
    // The flood is the point here, not its sender's manners.
    chat.rate_limit.enabled = false;
    let (running, native, http) = start(backend, dir.path(), chat);
    let mut alice = LineClient::connect(native, host(1)).expect("connects");
    alice.wait_for(|l| l.starts_with("* welcome")).unwrap();
    // Upgrades, then never reads again, with a small receive buffer.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(&SocketAddr::new(host(2), 0).into()).unwrap();
    socket.connect(&http.into()).expect("connects");
    let mut silent: TcpStream = socket.into();
    silent
        .write_all(
            format!(
                "GET /ws HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    alice.wait_for(|l| l.contains(" joined #general")).unwrap();
    let chat = "y".repeat(900);
    let deadline = Instant::now() + Duration::from_secs(20);
    let quit = 'flood: loop {
        assert!(
            Instant::now() < deadline,
            "the silent WebSocket was never cut"
        );
        // A burst the silent client is sent, then a ping, so alice reads
        // as she goes (she never gets her own lines back).
        for _ in 0..20 {
            alice.say(&chat).unwrap();
        }
        alice.say("#ping burst").unwrap();
        loop {
            match alice.next_line().unwrap() {
                Received::Line(l) if l.contains("quit: too slow to receive") => break 'flood l,
                Received::Line(l) if l == "+ pong burst" => break,
                Received::Line(_) => {}
                other => panic!("alice: {other:?}"),
            }
        }
    };
    assert!(quit.starts_with("* guest"), "{quit}");
    running.shutdown("test over");
    running.wait();
}

fn http_connections_count_against_the_address_limit_until_they_end(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let chat = Config {
        max_connections_per_ip: 2,
        ..Config::default()
    };
    let (running, native, http) = start(backend, dir.path(), chat);
    let connect_from = |address: SocketAddr| {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(host(4), 0).into()).unwrap();
        socket.connect(&address.into()).expect("connects");
        TcpStream::from(socket)
    };
    // Two HTTP connections that never send their request.
    let mut idle: Vec<TcpStream> = (0..2).map(|_| connect_from(http)).collect();
    // Admitted by the core only once the hub has seen them: nothing tells
    // a client that, so give it a moment (a late admission fails below).
    std::thread::sleep(Duration::from_millis(300));
    let mut third = LineClient::connect(native, host(4)).expect("connects");
    third
        .wait_for(|l| l.starts_with("! too-many-connections"))
        .expect("the address is at its limit");
    // The request timeout cuts both, and the core forgets them.
    for stream in &mut idle {
        stream.set_read_timeout(Some(REQUEST_TIMEOUT * 4)).unwrap();
        let mut buffer = [0u8; 64];
        assert!(
            matches!(stream.read(&mut buffer), Ok(0) | Err(_)),
            "a slowloris outlived the request timeout"
        );
    }
    let mut fourth = LineClient::connect(native, host(4)).expect("connects");
    fourth
        .wait_for(|l| l.starts_with("* welcome"))
        .expect("room again at the address");
    running.shutdown("test over");
    running.wait();
}

/// One HTTP request; the whole answer.
fn get(http: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(http).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {http}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("the whole answer, then close");
    answer
}

fn health_ready_and_metrics_answer(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (running, native, http) = start(backend, dir.path(), Config::default());
    let health = get(http, "/healthz");
    assert!(
        health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("\r\nok\n"),
        "{health}"
    );
    let ready = get(http, "/readyz");
    assert!(ready.ends_with("\r\nready\n"), "{ready}");
    let mut client = LineClient::connect(native, host(6)).expect("connects");
    client.wait_for(|l| l.starts_with("* welcome")).unwrap();
    let metrics = get(http, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
    assert!(
        metrics.contains("Content-Type: text/plain; version=0.0.4"),
        "{metrics}"
    );
    // The scrape itself is an HTTP connection not yet upgraded, the
    // client a native one, and the core's turns were timed.
    for series in [
        "chatd_connections{listener=\"native\",dialect=\"native\"} 1",
        "chatd_connections{listener=\"http\",dialect=\"http\"} 1",
        "chatd_connections_accepted_total{listener=\"native\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    let turns = metrics
        .lines()
        .find_map(|l| l.strip_prefix("chatd_turn_duration_seconds_count "))
        .and_then(|n| n.parse::<u64>().ok())
        .expect("the turn histogram");
    assert!(turns > 0, "{metrics}");
    let page = get(http, "/");
    assert!(page.contains("Content-Type: text/html"), "{page}");
    // None of them is left counted: a native client still gets in.
    let mut client = LineClient::connect(native, host(5)).expect("connects");
    client.wait_for(|l| l.starts_with("* welcome")).unwrap();
    running.shutdown("test over");
    running.wait();
}

fn wss_on_the_https_listener_is_the_same_protocol(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = TestTls::create(dir.path()).expect("certificate");
    let (running, native, _) = start_with(backend, dir.path(), Config::default(), Some(&tls));
    let https = running.http_addr(true).expect("HTTPS listener");
    let mut alice = LineClient::connect(native, host(1)).expect("connects");
    alice.wait_for(|l| l.starts_with("* welcome")).unwrap();
    let socket = TcpStream::connect(https).expect("connects");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let session =
        rustls::ClientConnection::new(tls.client.clone(), chatd_tests::tls::server_name())
            .expect("client session");
    let stream = rustls::StreamOwned::new(session, socket);
    // A browser page of the server itself: its own origin, over https.
    let request = tungstenite::http::Request::builder()
        .uri(format!("wss://localhost:{}/ws", https.port()))
        .header("Host", format!("localhost:{}", https.port()))
        .header("Origin", format!("https://localhost:{}", https.port()))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .expect("request");
    let (mut bob, _) = tungstenite::client(request, stream).expect("upgrades over TLS");
    let mut next_text = || loop {
        match bob.read().expect("a message") {
            tungstenite::Message::Text(text) => return text.to_string(),
            _ => continue,
        }
    };
    assert!(next_text().starts_with("* welcome"));
    bob.send(tungstenite::Message::text("hello over wss"))
        .unwrap();
    alice
        .wait_for(|l| l.ends_with(": hello over wss"))
        .expect("the line crossed TLS and the WebSocket");
    running.shutdown("test over");
    running.wait();
}
