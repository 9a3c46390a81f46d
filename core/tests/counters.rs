//! The server's counters and gauges for metrics, driven through the public
//! API as a backend drives it.

use std::net::SocketAddr;
use std::time::Instant;

use chatd_core::counters::{Listener, Protocol};
use chatd_core::{Arrival, Config, ConnId, Dialect, ErrorCode, Output, Server};

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn peer(host: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, host], port))
}

fn drain(server: &mut Server) -> Vec<Output> {
    std::iter::from_fn(|| server.poll_output()).collect()
}

fn arrival(dialect: Dialect, encrypted: bool) -> Arrival {
    Arrival {
        dialect,
        encrypted,
        web: false,
    }
}

fn accept(server: &mut Server, now: Instant, host: u8, port: u16) -> ConnId {
    server.accept(now, peer(host, port)).expect("admitted")
}

#[test]
fn accepts_are_counted_by_listener_and_refusals_by_code() {
    let now = epoch();
    let config = Config {
        max_connections_per_ip: 2,
        ..Config::default()
    };
    let mut server = Server::new(config, now, 0).expect("server");
    accept(&mut server, now, 1, 1);
    server
        .accept_via(now, peer(1, 2), arrival(Dialect::Irc, true))
        .expect("admitted");
    let refused = server
        .accept_via(now, peer(1, 3), arrival(Dialect::Irc, false))
        .expect_err("over the per-address limit");
    assert_eq!(refused.code, ErrorCode::TooManyConnections);
    server.accept_web(now, peer(2, 1), false).expect("admitted");
    let web = server.accept_web(now, peer(2, 2), true).expect("admitted");
    // An upgrade is the same connection: not accepted a second time.
    server.handle_upgraded(now, web, Dialect::Native);
    server
        .accept_web(now, peer(2, 3), true)
        .expect_err("over the limit");

    let counters = server.counters();
    let accepted: Vec<(&str, u64)> = Listener::ALL
        .into_iter()
        .map(|listener| (listener.label(), counters.accepted_on(listener)))
        .collect();
    assert_eq!(
        accepted,
        [
            ("native", 1),
            ("native-tls", 0),
            ("irc", 0),
            ("irc-tls", 1),
            ("http", 1),
            ("https", 1),
        ]
    );
    assert_eq!(
        counters.refusals(),
        [
            (ErrorCode::Banned, 0),
            (ErrorCode::ServerFull, 0),
            (ErrorCode::TooManyConnections, 2),
        ]
    );
}

#[test]
fn gauges_count_open_connections_by_listener_and_protocol() {
    let now = epoch();
    let mut server = Server::new(Config::default(), now, 0).expect("server");
    let native = accept(&mut server, now, 1, 1);
    accept(&mut server, now, 1, 2);
    server
        .accept_via(now, peer(1, 3), arrival(Dialect::Irc, true))
        .expect("admitted");
    server.accept_web(now, peer(1, 4), false).expect("admitted");
    let web = server.accept_web(now, peer(1, 5), true).expect("admitted");
    server.handle_upgraded(now, web, Dialect::Irc);
    let web = server.accept_web(now, peer(1, 6), false).expect("admitted");
    server.handle_upgraded(now, web, Dialect::Native);
    server.handle(now, native, b"#create #side\n");
    server.handle_closed(now, native);
    drain(&mut server);

    let gauges = server.gauges();
    let open: Vec<(&str, &str, u64)> = gauges
        .connections()
        .map(|(listener, protocol, count)| (listener.label(), protocol.label(), count))
        .collect();
    assert_eq!(
        open,
        [
            ("native", "native", 1),
            ("native-tls", "native", 0),
            ("irc", "irc", 0),
            ("irc-tls", "irc", 1),
            ("http", "native", 1),
            ("http", "irc", 0),
            ("http", "http", 1),
            ("https", "native", 0),
            ("https", "irc", 1),
            ("https", "http", 0),
        ]
    );
    assert_eq!(gauges.connections_of(Listener::Https, Protocol::Irc), 1);
    // #side went with its only member; #general stays.
    assert_eq!(gauges.rooms, 1);
    assert_eq!(gauges.history_bytes, 0);
}

#[test]
fn lines_bytes_and_deliveries_are_counted_per_recipient() {
    let now = epoch();
    let mut server = Server::new(Config::default(), now, 0).expect("server");
    let alice = accept(&mut server, now, 1, 1);
    accept(&mut server, now, 1, 2);
    accept(&mut server, now, 1, 3);
    drain(&mut server);
    let before = server.counters().clone();

    // One whole line and the start of the next.
    server.handle(now, alice, b"hello\nagai");
    let said = drain(&mut server);
    assert_eq!(server.counters().lines_in - before.lines_in, 1);
    server.handle(now, alice, b"n\n");
    let again = drain(&mut server);
    assert_eq!(server.counters().lines_in - before.lines_in, 2);
    assert_eq!(server.counters().bytes_in - before.bytes_in, 12);

    // Each chat line is one broadcast to the two others (not the sender).
    let broadcast_bytes = |outputs: &[Output]| -> Vec<usize> {
        outputs
            .iter()
            .filter_map(|output| match output {
                Output::Broadcast { bytes, .. } => Some(bytes.len()),
                Output::Send { .. } => panic!("no direct reply expected: {output:?}"),
                _ => None,
            })
            .collect()
    };
    let sizes = [broadcast_bytes(&said), broadcast_bytes(&again)].concat();
    assert_eq!(sizes.len(), 2, "{said:?} {again:?}");
    let counters = server.counters();
    assert_eq!(counters.deliveries_out - before.deliveries_out, 4);
    assert_eq!(
        counters.bytes_out - before.bytes_out,
        2 * (sizes[0] + sizes[1]) as u64
    );
    // The history now holds both lines.
    assert!(server.gauges().history_bytes > 0);
}

#[test]
fn rate_limit_hits_and_flood_disconnects_are_counted() {
    let now = epoch();
    let mut config = Config::default();
    config.rate_limit.messages = 2;
    config.rate_limit.flood_disconnect_after = 3;
    let mut server = Server::new(config, now, 0).expect("server");
    let native = accept(&mut server, now, 1, 1);
    // Two pass, two are dropped, the fifth is the third strike.
    server.handle(now, native, b"a\nb\nc\nd\ne\n");
    let outputs = drain(&mut server);
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == native)),
        "{outputs:?}"
    );
    assert_eq!(server.counters().rate_limited, 3);
    assert_eq!(server.counters().flood_disconnects, 1);

    // IRC lines past the limit wait (fakelag): each one held counts.
    let irc = server
        .accept_via(now, peer(2, 1), arrival(Dialect::Irc, false))
        .expect("admitted");
    server.handle(now, irc, b"PING a\r\nPING b\r\nPING c\r\nPING d\r\n");
    drain(&mut server);
    assert_eq!(server.counters().rate_limited, 5);
    assert_eq!(server.counters().flood_disconnects, 1);
}

#[test]
fn slow_consumer_cut_offs_are_counted_once_per_connection() {
    let now = epoch();
    let mut server = Server::new(Config::default(), now, 0).expect("server");
    let native = accept(&mut server, now, 1, 1);
    let pending = server.accept_web(now, peer(1, 2), false).expect("admitted");
    server.handle_slow_consumer(now, native);
    server.handle_slow_consumer(now, pending);
    // Already gone: the report of a connection the core closed is not a
    // second cut-off.
    server.handle_slow_consumer(now, native);
    drain(&mut server);
    assert_eq!(server.counters().slow_consumers, 2);
    assert_eq!(server.connection_count(), 0);
}
