//! `#oper` as a driver sees it: the core asks for a password check, the
//! driver answers later (or never, for a gone connection). Transcripts
//! cover the answers people see (oper*.chat); these cover the contract
//! with the driver that transcripts cannot reach.

use std::net::SocketAddr;
use std::time::Instant;

use argon2::PasswordHash;
use chatd_core::{Config, ConnId, OperatorConfig, Output, PasswordCheck, PasswordVerdict, Server};

/// `opensesame` at m=1024,t=1,p=1.
const HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$Y2hhdGQtdHJhbnNjcmlwdHM$607V5zJpUmsmI3NpQeCJXClNnsXw/01C4mbkTOOEljk";

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn peer(host: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, host], 5000))
}

fn server_with_admin() -> (Server, Instant) {
    let now = epoch();
    let config = Config {
        operators: vec![OperatorConfig {
            name: "admin".into(),
            password_hash: HASH.into(),
        }],
        ..Config::default()
    };
    let server = Server::new(config, now, 1_795_000_000_000).expect("valid config");
    (server, now)
}

fn connect(server: &mut Server, now: Instant, host: u8) -> ConnId {
    let conn = server.accept(now, peer(host)).expect("admitted");
    drain(server);
    conn
}

fn drain(server: &mut Server) -> Vec<Output> {
    std::iter::from_fn(|| server.poll_output()).collect()
}

/// Sends one line; returns the check it asked for, if any, and the lines
/// sent to `conn`.
fn send(
    server: &mut Server,
    now: Instant,
    conn: ConnId,
    line: &str,
) -> (Option<PasswordCheck>, Vec<String>) {
    server.handle(now, conn, format!("{line}\n").as_bytes());
    split(conn, drain(server))
}

fn split(conn: ConnId, outputs: Vec<Output>) -> (Option<PasswordCheck>, Vec<String>) {
    let mut check = None;
    let mut lines = Vec::new();
    for output in outputs {
        match output {
            Output::VerifyPassword(asked) => check = Some(*asked),
            Output::Send { to, bytes, .. } if to == conn => {
                lines.push(String::from_utf8(bytes.to_vec()).expect("UTF-8"));
            }
            _ => {}
        }
    }
    (check, lines)
}

#[test]
fn an_unknown_name_is_checked_against_a_hash_as_costly_as_a_real_one() {
    let (mut server, now) = server_with_admin();
    let alice = connect(&mut server, now, 1);
    let bob = connect(&mut server, now, 2);
    let (known, _) = send(&mut server, now, alice, "#oper admin guess");
    let (unknown, _) = send(&mut server, now, bob, "#oper nobody guess");
    let (known, unknown) = (known.expect("a check"), unknown.expect("a check"));
    assert_eq!(known.hash, HASH);
    let (real, dummy) = (
        PasswordHash::new(&known.hash).expect("PHC"),
        PasswordHash::new(&unknown.hash).expect("PHC"),
    );
    assert_ne!(real.hash, dummy.hash);
    assert_eq!(real.algorithm, dummy.algorithm);
    assert_eq!(real.version, dummy.version);
    assert_eq!(real.params, dummy.params);
    assert_eq!(real.hash.map(|h| h.len()), dummy.hash.map(|h| h.len()));
    assert_eq!(
        (unknown.name.as_str(), unknown.peer),
        ("nobody", peer(2).ip())
    );
}

#[test]
fn a_match_against_the_dummy_hash_never_makes_an_operator() {
    let (mut server, now) = server_with_admin();
    let alice = connect(&mut server, now, 1);
    let (check, _) = send(&mut server, now, alice, "#oper nobody guess");
    server.handle_password_verdict(now, check.expect("a check").request, PasswordVerdict::Match);
    let (_, lines) = split(alice, drain(&mut server));
    assert_eq!(
        lines,
        ["! bad-credentials: wrong operator name or password\n"]
    );
}

#[test]
fn a_connection_gone_before_its_verdict_is_told_nothing_but_the_failure_counts() {
    let (mut server, now) = server_with_admin();
    let alice = connect(&mut server, now, 1);
    let (check, lines) = send(&mut server, now, alice, "#oper admin guess");
    assert!(lines.is_empty(), "no answer before the verdict: {lines:?}");
    server.handle_closed(now, alice);
    drain(&mut server);
    server.handle_password_verdict(
        now,
        check.expect("a check").request,
        PasswordVerdict::Mismatch,
    );
    assert_eq!(drain(&mut server), []);
    let again = connect(&mut server, now, 1);
    let (check, lines) = send(&mut server, now, again, "#oper admin opensesame");
    assert!(check.is_none());
    assert_eq!(
        lines,
        ["! try-later: too many failed operator logins; try again in 1s\n"]
    );
}

#[test]
fn one_attempt_at_a_time_per_address() {
    let (mut server, now) = server_with_admin();
    let alice = connect(&mut server, now, 1);
    let also_alice = connect(&mut server, now, 1);
    let (first, _) = send(&mut server, now, alice, "#oper admin guess");
    let (second, lines) = send(&mut server, now, also_alice, "#oper other guess");
    assert!(first.is_some() && second.is_none());
    assert_eq!(
        lines,
        [
            "! try-later: another operator login from your address or for that name is being checked; try again in a moment\n"
        ]
    );
}

#[test]
fn a_busy_verifier_refuses_without_counting_a_failure() {
    let (mut server, now) = server_with_admin();
    let alice = connect(&mut server, now, 1);
    let (check, _) = send(&mut server, now, alice, "#oper admin opensesame");
    server.handle_password_verdict(now, check.expect("a check").request, PasswordVerdict::Busy);
    let (_, lines) = split(alice, drain(&mut server));
    assert_eq!(
        lines,
        ["! try-later: operator logins are busy; try again in a moment\n"]
    );
    let (retry, lines) = send(&mut server, now, alice, "#oper admin opensesame");
    assert!(retry.is_some(), "refused again: {lines:?}");
}

#[test]
fn the_password_never_shows_in_an_outputs_debug_form() {
    let (mut server, now) = server_with_admin();
    let alice = connect(&mut server, now, 1);
    server.handle(now, alice, b"#oper admin correct-horse-battery\n");
    let outputs = drain(&mut server);
    let shown = format!("{outputs:?}");
    assert!(shown.contains("VerifyPassword"));
    assert!(!shown.contains("correct-horse-battery"), "{shown}");
}

#[test]
fn an_ipv6_network_waits_as_one_address() {
    let (mut server, now) = server_with_admin();
    let first: SocketAddr = "[2001:db8:1:2::10]:5000".parse().expect("address");
    let neighbour: SocketAddr = "[2001:db8:1:2::99]:5000".parse().expect("address");
    let elsewhere: SocketAddr = "[2001:db8:1:3::10]:5000".parse().expect("address");
    // Over TLS: passwords from beyond loopback need an encrypted
    // connection (accounts.allow_plaintext_auth is off).
    let tls = chatd_core::Arrival {
        dialect: chatd_core::Dialect::Native,
        encrypted: true,
        web: false,
    };
    let alice = server.accept_via(now, first, tls).expect("admitted");
    let bob = server.accept_via(now, neighbour, tls).expect("admitted");
    let carol = server.accept_via(now, elsewhere, tls).expect("admitted");
    drain(&mut server);
    let (check, _) = send(&mut server, now, alice, "#oper someone guess");
    server.handle_password_verdict(
        now,
        check.expect("a check").request,
        PasswordVerdict::Mismatch,
    );
    drain(&mut server);
    let (check, lines) = send(&mut server, now, bob, "#oper other guess");
    assert!(check.is_none());
    assert_eq!(
        lines,
        ["! try-later: too many failed operator logins; try again in 1s\n"]
    );
    let (check, _) = send(&mut server, now, carol, "#oper other guess");
    assert!(check.is_some(), "another /64 does not wait");
}
