//! The driver-facing contract of `Server`, for the parts transcripts cannot
//! reach: persistence failures, slow consumers, shutdown, priorities, the
//! shape of broadcasts, and restoring history.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd_core::history::{Record, RecordKind};
use chatd_core::{
    CloseReason, Config, ConnId, ErrorCode, MessageId, Nick, Output, Priority, RoomName, Server,
};

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn peer(host: u8) -> SocketAddr {
    format!("127.0.0.{host}:5000")
        .parse()
        .expect("valid address")
}

fn drain(server: &mut Server) -> Vec<Output> {
    std::iter::from_fn(|| server.poll_output()).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("server output is UTF-8")
}

/// Lines sent to `conn` (directly or by broadcast) among `outputs`.
fn lines_to(conn: ConnId, outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send { to, bytes, .. } if *to == conn => Some(text(bytes)),
            Output::Broadcast {
                to, except, bytes, ..
            } if to.contains(&conn) && *except != Some(conn) => Some(text(bytes)),
            _ => None,
        })
        .collect()
}

fn two_users() -> (Server, Instant, ConnId, ConnId) {
    let now = epoch();
    let mut server =
        Server::new(Config::default(), now, 1_795_000_000_000).expect("defaults are valid");
    let alice = server.accept(now, peer(1)).expect("room for alice");
    let bob = server.accept(now, peer(2)).expect("room for bob");
    drain(&mut server);
    (server, now, alice, bob)
}

#[test]
fn failed_persistence_sends_not_stored_and_no_ack() {
    let (mut server, now, alice, _bob) = two_users();
    server.handle(now, alice, b"#ack on\nhello\n");
    let outputs = drain(&mut server);
    let record = outputs
        .iter()
        .find_map(|output| match output {
            Output::Persist(record) if record.kind != RecordKind::Reserve => Some(record.clone()),
            _ => None,
        })
        .expect("a chat line is persisted");
    server.handle_persist_failed(now, record.id);
    let lines = lines_to(alice, &drain(&mut server));
    assert_eq!(
        lines,
        [format!(
            "! {}: message {} was delivered but could not be stored\n",
            ErrorCode::NotStored,
            record.id
        )]
    );
    server.handle_persisted(now, record.id);
    assert!(drain(&mut server).is_empty(), "no ACK after a failure");
}

#[test]
fn slow_consumer_is_closed_and_announced() {
    let (mut server, now, alice, bob) = two_users();
    server.handle_slow_consumer(now, alice);
    let outputs = drain(&mut server);
    assert_eq!(
        lines_to(bob, &outputs),
        ["* guest1 quit: too slow to receive\n"]
    );
    assert!(outputs.contains(&Output::Close {
        conn: alice,
        reason: CloseReason::SlowConsumer
    }));
    server.handle(now, alice, b"still here?\n");
    assert!(
        drain(&mut server).is_empty(),
        "input after close is ignored"
    );
    assert_eq!(server.connection_count(), 1);
}

#[test]
fn shutdown_tells_everyone_urgently_then_refuses_new_connections() {
    let (mut server, now, alice, bob) = two_users();
    server.handle_shutdown(now, "maintenance");
    let outputs = drain(&mut server);
    for conn in [alice, bob] {
        assert!(outputs.contains(&Output::Send {
            to: conn,
            bytes: "* server shutting down: maintenance\n".into(),
            priority: Priority::Urgent,
        }));
        assert!(outputs.contains(&Output::Close {
            conn,
            reason: CloseReason::Shutdown
        }));
    }
    let refused = server
        .accept(now, peer(3))
        .expect_err("no admission while stopping");
    assert_eq!(refused.code, ErrorCode::ServerFull);
    assert_eq!(
        text(&refused.line),
        "! server-full: the server is shutting down\n"
    );
}

/// Found by fuzz/core_script (a connect, then a shutdown): the idle, mute
/// and room-ban timers of the sessions and rooms a shutdown drops must go
/// with them, or `check_invariants` counts timers for nothing.
#[test]
fn shutdown_drops_the_timers_of_what_it_drops() {
    let (mut server, now, alice, bob) = two_users();
    server.handle(now, alice, b"#create den\n#ban 10.0.0.9 1h\n");
    server.handle(now, bob, b"#join den\n");
    server.handle(now, alice, b"#mute guest2 10m\n");
    drain(&mut server);
    assert!(server.poll_timeout().is_some());
    server.handle_shutdown(now, "maintenance");
    drain(&mut server);
    assert_eq!(server.check_invariants(), Ok(()));
    assert_eq!(server.poll_timeout(), None);
}

#[test]
fn chat_is_one_broadcast_to_the_shared_member_list_without_the_sender() {
    let (mut server, now, alice, bob) = two_users();
    let carol = server.accept(now, peer(3)).expect("room for carol");
    drain(&mut server);
    server.handle(now, bob, b"hi all\n");
    server.handle(now, carol, b"hello\n");
    let outputs = drain(&mut server);
    let broadcasts: Vec<(&Arc<[ConnId]>, Option<ConnId>)> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Broadcast { to, except, .. } => Some((to, *except)),
            _ => None,
        })
        .collect();
    assert_eq!(broadcasts.len(), 2);
    assert_eq!(broadcasts[0].0.as_ref(), &[alice, bob, carol][..]);
    assert_eq!(broadcasts[0].1, Some(bob));
    assert!(
        Arc::ptr_eq(broadcasts[0].0, broadcasts[1].0),
        "the member list is built once and shared while membership is unchanged"
    );
}

#[test]
fn urgent_messages_carry_urgent_priority() {
    let (mut server, now, alice, bob) = two_users();
    server.handle(now, alice, b"#join ops\n#urgent now\n");
    let urgent = drain(&mut server).into_iter().any(|output| {
        matches!(
            output,
            Output::Broadcast {
                priority: Priority::Urgent,
                ..
            }
        )
    });
    // Alice is alone in #ops: nobody to send to, so nothing is emitted.
    assert!(!urgent);
    server.handle(now, bob, b"#join ops\n");
    drain(&mut server);
    server.handle(now, alice, b"#urgent now\n");
    let outputs = drain(&mut server);
    assert!(outputs.iter().any(|output| matches!(
        output,
        Output::Broadcast { priority: Priority::Urgent, except: Some(from), .. } if *from == alice
    )));
}

#[test]
fn restore_continues_ids_and_skips_private_records() {
    let now = epoch();
    let mut server = Server::new(Config::default(), now, 0).expect("defaults are valid");
    let record = |id: u64, private: bool| Record {
        id: MessageId::new(id),
        room: RoomName::general(),
        ts: 0,
        from: Nick::parse("old").expect("valid nick"),
        kind: RecordKind::Msg,
        text: format!("message {id}"),
        to: None,
        private,
    };
    server.restore([record(7, false), record(41, true)]);
    let alice = server.accept(now, peer(1)).expect("room");
    server.handle(now, alice, b"#history\n#ack on\nnew\n");
    let outputs = drain(&mut server);
    let persisted: Vec<MessageId> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Persist(record) if record.kind != RecordKind::Reserve => Some(record.id),
            _ => None,
        })
        .collect();
    assert_eq!(persisted, [MessageId::new(42)]);
    let lines = lines_to(alice, &outputs);
    assert_eq!(
        lines[1],
        "+ history #general 1\n[#general 1970-01-01 00:00:00] old: message 7\n"
    );
}

#[test]
fn wall_clock_reanchoring_moves_history_timestamps() {
    let now = epoch();
    let mut server = Server::new(Config::default(), now, 0).expect("defaults are valid");
    let alice = server.accept(now, peer(1)).expect("room");
    let later = now + Duration::from_secs(10);
    server.handle_wall_clock(later, 86_400_000);
    server.handle(later, alice, b"tick\n#history 1\n");
    let outputs = drain(&mut server);
    assert!(
        lines_to(alice, &outputs)
            .iter()
            .any(|line| line.contains("[#general 1970-01-02 00:00:00] guest1: tick"))
    );
}

#[test]
fn no_timeout_is_requested_when_idle_checks_are_off() {
    let now = epoch();
    let mut config = Config::default();
    config.idle.enabled = false;
    let mut server = Server::new(config, now, 0).expect("valid config");
    server.accept(now, peer(1)).expect("room");
    assert_eq!(server.poll_timeout(), None);
}

#[test]
fn invalid_config_is_refused_at_construction() {
    let config = Config {
        history_size: 0,
        ..Config::default()
    };
    assert!(Server::new(config, epoch(), 0).is_err());
}

#[test]
fn ids_of_unwritten_whispers_are_never_handed_out_again_after_a_crash() {
    let (mut server, now, alice, _bob) = two_users();
    // persist_private_messages is off: whispers are never written.
    server.handle(now, alice, b"#ack on\n#msg guest2 one\n#msg guest2 two\n");
    let outputs = drain(&mut server);
    let written: Vec<Arc<Record>> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Persist(record) => Some(record.clone()),
            _ => None,
        })
        .collect();
    assert!(
        written.iter().all(|r| r.kind == RecordKind::Reserve),
        "only an id reservation is written: {written:?}"
    );
    assert!(
        !lines_to(alice, &outputs)
            .iter()
            .any(|l| l.starts_with("+ ack")),
        "no ACK before the reservation is durable"
    );
    for record in &written {
        server.handle_persisted(now, record.id);
    }
    let acks = lines_to(alice, &drain(&mut server));
    assert_eq!(acks, ["+ ack 1\n", "+ ack 2\n"]);
    // The process dies here (no shutdown): restart from what was written.
    let mut restarted = Server::new(Config::default(), now, 0).expect("defaults are valid");
    restarted.restore(written.iter().map(|r| (**r).clone()));
    let carol = restarted.accept(now, peer(3)).expect("room");
    restarted.handle(now, carol, b"#ack on\nhello\n");
    let ids: Vec<u64> = drain(&mut restarted)
        .iter()
        .filter_map(|output| match output {
            Output::Persist(record) if record.kind != RecordKind::Reserve => Some(record.id.get()),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(
        ids[0] > 2,
        "id {} was acknowledged before the crash",
        ids[0]
    );
}
