//! Bounds on what clients can make the server hold (issue 12): each bound
//! is hit and answered with its error, and `check_invariants` (which checks
//! histories, bans, mutes, invitations, timers and room counts against
//! their limits) holds throughout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatd_core::{Config, ConnId, LimitsConfig, Output, Server};

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn peer(address: &str) -> SocketAddr {
    SocketAddr::new(address.parse().expect("valid address"), 5000)
}

/// Every line `conn` was sent since the last call. History queries find
/// nothing stored (these tests store nothing).
fn lines_to(server: &mut Server, conn: ConnId) -> Vec<String> {
    let mut outputs = Vec::new();
    while let Some(output) = server.poll_output() {
        match output {
            Output::QueryHistory(query) => server.handle_history_answer(
                epoch(),
                chatd_core::history_query::HistoryAnswer {
                    request: query.request,
                    records: Vec::new(),
                    shortfall: None,
                },
            ),
            other => outputs.push(other),
        }
    }
    outputs
        .into_iter()
        .filter_map(|output| match output {
            Output::Send { to, bytes, .. } if to == conn => Some(bytes),
            Output::Broadcast {
                to, except, bytes, ..
            } if to.contains(&conn) && except != Some(conn) => Some(bytes),
            _ => None,
        })
        .flat_map(|bytes| {
            String::from_utf8(bytes.to_vec())
                .expect("UTF-8")
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn send(server: &mut Server, now: Instant, conn: ConnId, line: &str) -> Vec<String> {
    server.handle(now, conn, format!("{line}\n").as_bytes());
    server.check_invariants().expect("invariants hold");
    lines_to(server, conn)
}

fn server_with(limits: LimitsConfig) -> (Server, Instant) {
    let now = epoch();
    let mut config = Config {
        limits,
        ..Config::default()
    };
    config.rate_limit.enabled = false;
    (
        Server::new(config, now, 1_795_000_000_000).expect("valid config"),
        now,
    )
}

#[test]
fn long_ban_and_mute_pairs_leave_no_timer_behind() {
    let (mut server, now) = server_with(LimitsConfig::default());
    let owner = server.accept(now, peer("127.0.0.1")).unwrap();
    let bob = server.accept(now, peer("127.0.0.2")).unwrap();
    send(&mut server, now, owner, "#create den");
    send(&mut server, now, bob, "#join den");
    lines_to(&mut server, owner);
    for _ in 0..1_000 {
        let set = send(&mut server, now, owner, "#ban 10.9.8.7 3650d");
        assert_eq!(set, ["* banned 10.9.8.7 from #den for 3650d"]);
        send(&mut server, now, owner, "#unban 10.9.8.7");
        send(&mut server, now, owner, "#mute guest2 3650d");
        send(&mut server, now, owner, "#unmute guest2");
    }
    // Two idle timers are all that may be pending (checked by
    // check_invariants at every step); the next deadline is theirs.
    assert_eq!(
        server.poll_timeout(),
        Some(now + Config::default().idle.ping_after)
    );
    // A ban replaced by another, and a muted member who leaves for good,
    // leave nothing either.
    send(&mut server, now, owner, "#ban 10.9.8.7 3650d");
    send(&mut server, now, owner, "#ban 10.9.8.7 1000d");
    send(&mut server, now, owner, "#mute guest2 3650d");
    server.handle_closed(now, bob);
    server.check_invariants().expect("invariants hold");
}

#[test]
fn a_room_that_empties_takes_its_ban_and_mute_timers_with_it() {
    let (mut server, now) = server_with(LimitsConfig::default());
    let owner = server.accept(now, peer("127.0.0.1")).unwrap();
    let bob = server.accept(now, peer("127.0.0.2")).unwrap();
    send(&mut server, now, owner, "#create den");
    send(&mut server, now, bob, "#join den");
    send(&mut server, now, owner, "#ban 10.9.8.7 3650d");
    send(&mut server, now, owner, "#mute guest2 3650d");
    send(&mut server, now, bob, "#leave");
    send(&mut server, now, owner, "#leave");
    server.check_invariants().expect("invariants hold");
    let idle = now + Config::default().idle.ping_after;
    assert_eq!(server.poll_timeout(), Some(idle));
}

#[test]
fn bans_mutes_and_invitations_per_room_are_bounded() {
    let limits = LimitsConfig {
        bans_per_room: 3,
        mutes_per_room: 1,
        invites_per_room: 2,
        ..LimitsConfig::default()
    };
    let (mut server, now) = server_with(limits);
    let owner = server.accept(now, peer("127.0.0.1")).unwrap();
    let guests: Vec<ConnId> = (2..=5)
        .map(|host| {
            server
                .accept(now, peer(&format!("127.0.0.{host}")))
                .unwrap()
        })
        .collect();
    send(&mut server, now, owner, "#create den");
    for n in 1..=3 {
        send(&mut server, now, owner, &format!("#ban 10.0.0.{n} 1h"));
    }
    assert_eq!(
        send(&mut server, now, owner, "#ban 10.0.0.4 1h"),
        ["! limit-reached: #den holds 3 bans, the most a room may; lift one first"]
    );
    // Renewing an existing ban is not a new one.
    assert_eq!(
        send(&mut server, now, owner, "#ban 10.0.0.3 2h"),
        ["* banned 10.0.0.3 from #den for 2h"]
    );
    send(&mut server, now, guests[0], "#join den");
    send(&mut server, now, guests[1], "#join den");
    lines_to(&mut server, owner);
    send(&mut server, now, owner, "#mute guest2 1h");
    assert_eq!(
        send(&mut server, now, owner, "#mute guest3 1h"),
        ["! limit-reached: #den holds 1 mutes, the most a room may; lift one first"]
    );
    send(&mut server, now, owner, "#create vault private");
    send(&mut server, now, owner, "#invite guest2");
    send(&mut server, now, owner, "#invite guest3");
    assert_eq!(
        send(&mut server, now, owner, "#invite guest4"),
        ["! limit-reached: #vault holds 2 invitations, the most a room may"]
    );
}

#[test]
fn rooms_created_are_bounded_per_connection_and_per_address() {
    let limits = LimitsConfig {
        rooms_per_connection: 2,
        rooms_per_ip: 3,
        ..LimitsConfig::default()
    };
    let (mut server, now) = server_with(limits);
    let alice = server.accept(now, peer("2001:db8:0:1::1")).unwrap();
    // Same /64, different address: the same address group.
    let alias = server.accept(now, peer("2001:db8:0:1::2")).unwrap();
    // A room lives while someone is in it, and a native client is in one
    // room at a time: a keeper per room stays behind in each.
    let keepers: Vec<ConnId> = (1..=4)
        .map(|host| {
            server
                .accept(now, peer(&format!("127.0.0.{host}")))
                .unwrap()
        })
        .collect();
    for (room, keeper) in ["a", "b"].into_iter().zip(&keepers) {
        send(&mut server, now, alice, &format!("#create {room}"));
        send(&mut server, now, *keeper, &format!("#join {room}"));
    }
    assert_eq!(
        send(&mut server, now, alice, "#create c"),
        [
            "! too-many-rooms: you have created 2 rooms that still exist, the most one connection may"
        ]
    );
    send(&mut server, now, alias, "#create c");
    send(&mut server, now, keepers[2], "#join c");
    assert_eq!(
        send(&mut server, now, alias, "#create d"),
        [
            "! too-many-rooms: connections from 2001:db8:0:1::/64 have created 3 rooms that still exist, the most one address may"
        ]
    );
    // Once a room is gone, it no longer counts.
    send(&mut server, now, keepers[0], "#leave");
    let created = send(&mut server, now, alias, "#create d");
    assert_eq!(created[0], "* you created #d; you own it");
}

#[test]
fn ipv6_connections_count_per_network() {
    let now = epoch();
    let config = Config {
        max_connections_per_ip: 2,
        ..Config::default()
    };
    let mut server = Server::new(config, now, 1_795_000_000_000).unwrap();
    server.accept(now, peer("2001:db8::1")).unwrap();
    server.accept(now, peer("2001:db8::ffff")).unwrap();
    let refused = server.accept(now, peer("2001:db8::abcd")).unwrap_err();
    assert_eq!(
        String::from_utf8(refused.line.to_vec()).unwrap(),
        "! too-many-connections: too many connections from 2001:db8::/64 (limit 2)\n"
    );
    server
        .accept(now, peer("2001:db8:0:1::1"))
        .expect("another /64 is another address");
    // An IPv4-mapped client counts as its IPv4 address.
    let config = Config {
        max_connections_per_ip: 1,
        ..Config::default()
    };
    let mut server = Server::new(config, now, 1_795_000_000_000).unwrap();
    server.accept(now, peer("127.0.0.2")).unwrap();
    assert!(server.accept(now, peer("::ffff:127.0.0.2")).is_err());
}

#[test]
fn history_of_emptied_rooms_counts_against_the_byte_budget() {
    let now = epoch();
    let mut config = Config {
        history_bytes: 8 << 20,
        ..Config::default()
    };
    config.rate_limit.enabled = false;
    let mut server = Server::new(config, now, 1_795_000_000_000).unwrap();
    let alice = server.accept(now, peer("127.0.0.1")).unwrap();
    let line = "x".repeat(4000);
    // 150 rooms x 100 lines of 4 KB left behind: 60 MB without the budget.
    for room in 0..150 {
        send(&mut server, now, alice, &format!("#join r{room}"));
        for _ in 0..100 {
            server.handle(now, alice, format!("{line}\n").as_bytes());
            lines_to(&mut server, alice);
        }
        server
            .check_invariants()
            .expect("history within its budget");
    }
    // The room alice is in kept its lines; the stalest left-behind rooms went.
    let recent = send(&mut server, now, alice, "#history 100");
    assert_eq!(recent.len(), 101);
    send(&mut server, now, alice, "#join r0");
    assert_eq!(
        send(&mut server, now, alice, "#history 100")
            .iter()
            .filter(|l| l.starts_with("+ history"))
            .collect::<Vec<_>>(),
        ["+ history #r0 0"]
    );
}

#[test]
fn durations_in_config_are_bounded_too() {
    let mut config = Config::default();
    config.idle.ping_after = Duration::from_secs(u64::MAX);
    assert!(Server::new(config, epoch(), 0).is_err());
}
