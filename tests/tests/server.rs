//! The whole server over TCP, on each backend: slow consumers, recovery
//! from damaged logs, history the disk refuses, and when ACKs may go out.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use chatd_core::history::{self, Record, RecordKind};
use chatd_core::{Config, MessageId, Nick, RoomName};
use chatd_engine::clock::ManualClock;
use chatd_engine::persist::{FsyncPolicy, log_path};
use chatd_engine::settings::{ServerSettings, Settings};
use chatd_engine::{Backend, Running, launch};
use chatd_tests::client::LineClient;
use chatd_tests::driver::Received;

fn host(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Each scenario runs once per backend.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod poll {
            $(#[test]
            fn $scenario() {
                super::$scenario(&chatd_backend_poll::PollBackend);
            })*
        }
        mod iocp {
            $(#[test]
            fn $scenario() {
                super::$scenario(&chatd_backend_iocp::IocpBackend::default());
            })*
        }
    };
}

on_both_backends!(
    slow_consumer_is_cut_off_while_the_others_keep_receiving,
    history_survives_a_torn_tail_and_a_corrupted_middle_record,
    history_the_disk_refuses_is_not_acknowledged_and_chat_goes_on,
    ack_waits_until_the_record_is_synced_under_the_policy,
    a_large_room_gets_every_line_in_order_from_each_sender,
);

fn start(backend: &dyn Backend, dir: &std::path::Path, chat: Config) -> Running {
    start_with(backend, dir, chat, FsyncPolicy::Always)
}

fn start_with(
    backend: &dyn Backend,
    dir: &std::path::Path,
    chat: Config,
    fsync: FsyncPolicy,
) -> Running {
    let settings = Settings {
        server: ServerSettings {
            bind: "127.0.0.1:0".into(),
            threads: 2,
            data_dir: dir.to_path_buf(),
            fsync,
            persist: true,
            backend: backend.name().into(),
            ..ServerSettings::default()
        },
        chat,
    };
    launch(
        &settings,
        backend,
        Arc::new(ManualClock::new(1_795_000_000_000)),
    )
    .expect("server starts")
}

fn stop(running: Running) {
    running.shutdown("test over");
    running.wait();
}

fn welcome(addr: SocketAddr, from: u8) -> LineClient {
    let mut client = LineClient::connect(addr, host(from)).expect("connects");
    client
        .wait_for(|line| line.starts_with("* welcome"))
        .expect("welcome");
    client
}

fn slow_consumer_is_cut_off_while_the_others_keep_receiving(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chat = Config::default();
    chat.rate_limit.enabled = false;
    let running = start(backend, dir.path(), chat);
    let addr = running.local_addr();

    // Connects first (guest1), takes its welcome, then never reads again.
    let mut slow = LineClient::connect_with(addr, host(1), Some(4096)).expect("connects");
    slow.wait_for(|line| line.starts_with("* welcome"))
        .expect("welcome");
    let mut talker = welcome(addr, 2);
    let mut listener = welcome(addr, 3);
    talker.say("#nick talker").expect("send");
    talker
        .wait_for(|line| line == "* you are now talker")
        .expect("renamed");

    // 9 MB in all: far more than the slow client's socket buffers plus its
    // 1 MiB queue. The talker stays at most WINDOW messages ahead of the
    // listener: the listener keeps up, the slow client does not read at all.
    const MESSAGES: usize = 3_000;
    const WINDOW: usize = 200;
    let payload = "x".repeat(3_000);
    let progress = Arc::new(AtomicUsize::new(0));
    let listener_progress = progress.clone();
    let reader = thread::spawn(move || {
        let mut received = 0;
        let mut saw_quit = false;
        while received < MESSAGES || !saw_quit {
            match listener.next_line().expect("listener reads") {
                Received::Line(line) if line.starts_with("[#general] talker: ") => {
                    assert!(
                        line.ends_with(&format!(" {received}")),
                        "out of order: {received}"
                    );
                    received += 1;
                    listener_progress.store(received, Ordering::Release);
                }
                Received::Line(line) if line == "* guest1 quit: too slow to receive" => {
                    saw_quit = true
                }
                Received::Line(_) => {}
                other => panic!("listener stalled after {received} messages: {other:?}"),
            }
        }
        received
    });
    for i in 0..MESSAGES {
        while i >= progress.load(Ordering::Acquire) + WINDOW && !reader.is_finished() {
            thread::yield_now();
        }
        talker.say(&format!("{payload} {i}")).expect("talker sends");
    }
    // Every message reached the reading member, and the quit was announced;
    // each line arrived within the client's 5 s per-line limit.
    assert_eq!(reader.join().expect("reader finished"), MESSAGES);
    // The slow client's connection was dropped: after what its buffers held,
    // it reaches the end of the stream.
    loop {
        match slow.next_line().expect("slow reads") {
            Received::Line(_) => {}
            Received::Closed => break,
            Received::Nothing => panic!("the slow consumer was never disconnected"),
        }
    }
    stop(running);
}

/// Enough members that one flush over a room crosses the poll backend's
/// look at new commands (every 128 writes) on each of the two I/O
/// threads, with two talkers pipelining so that lines arrive mid-flush:
/// every member still gets every line once, each talker's in order.
fn a_large_room_gets_every_line_in_order_from_each_sender(backend: &dyn Backend) {
    const MEMBERS: usize = 400;
    const MESSAGES: usize = 300;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chat = Config::default();
    chat.rate_limit.enabled = false;
    let running = start_with(backend, dir.path(), chat, FsyncPolicy::Never);
    let addr = running.local_addr();
    // 50 per source address, under the per-address limit.
    let mut members: Vec<LineClient> = (0..MEMBERS)
        .map(|i| welcome(addr, 10 + (i / 50) as u8))
        .collect();
    let mut talkers = [welcome(addr, 2), welcome(addr, 3)];
    let script = |tag: &str| -> Vec<u8> {
        (0..MESSAGES)
            .flat_map(|i| format!("{tag} {i}\n").into_bytes())
            .collect()
    };
    let (a, b) = (script("a"), script("b"));
    thread::scope(|scope| {
        let [first, second] = &mut talkers;
        scope.spawn(|| first.send(&a).expect("talker a sends"));
        scope.spawn(|| second.send(&b).expect("talker b sends"));
    });
    for (index, member) in members.iter_mut().enumerate() {
        let mut next = [0usize; 2];
        while next != [MESSAGES; 2] {
            let line = match member.next_line().expect("member reads") {
                Received::Line(line) => line,
                other => panic!("member {index} stalled at {next:?}: {other:?}"),
            };
            let Some((_, text)) = line.split_once(": ") else {
                continue;
            };
            let (talker, number) = match text.split_once(' ') {
                Some(("a", number)) => (0, number),
                Some(("b", number)) => (1, number),
                _ => continue,
            };
            assert_eq!(
                number.parse::<usize>().ok(),
                Some(next[talker]),
                "member {index}: {line:?} out of order"
            );
            next[talker] += 1;
        }
    }
    stop(running);
}

fn record(id: u64, text: &str) -> Record {
    Record {
        id: MessageId::new(id),
        room: RoomName::general(),
        ts: 1_795_000_000_000 + id * 1_000,
        from: Nick::parse("old").expect("valid"),
        kind: RecordKind::Msg,
        text: text.into(),
        to: None,
        private: false,
    }
}

fn history_survives_a_torn_tail_and_a_corrupted_middle_record(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = log_path(dir.path(), &RoomName::general());
    let mut bytes = Vec::new();
    bytes.extend(history::encode(&record(1, "first")));
    let corrupt_at = bytes.len() + 40;
    bytes.extend(history::encode(&record(2, "second")));
    bytes.extend(history::encode(&record(3, "third")));
    bytes[corrupt_at] ^= 0x01;
    let valid_len = bytes.len();
    let torn = history::encode(&record(4, "fourth"));
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&path, &bytes).expect("write log");

    let running = start(backend, dir.path(), Config::default());
    assert_eq!(running.info().recovered_records, 2);
    // The torn tail was cut off the file; the damaged middle line is kept
    // on disk for inspection but skipped.
    assert_eq!(
        std::fs::metadata(&path).expect("log").len(),
        valid_len as u64
    );
    let mut alice = welcome(running.local_addr(), 1);
    alice.say("#history").expect("send");
    assert_eq!(
        alice.next_line().expect("read"),
        Received::Line("+ history #general 2".into())
    );
    assert_eq!(
        alice.next_line().expect("read"),
        Received::Line("[#general 2026-11-18 11:06:41] old: first".into())
    );
    assert_eq!(
        alice.next_line().expect("read"),
        Received::Line("[#general 2026-11-18 11:06:43] old: third".into())
    );
    alice.say("#ack on").expect("send");
    alice.say("new after recovery").expect("send");
    alice
        .wait_for(|line| line == "+ ack 4")
        .expect("ids continue after the largest recovered");
    stop(running);

    let recovered = history::recover(&std::fs::read(&path).expect("log"));
    let ids: Vec<u64> = recovered.records.iter().map(|r| r.id.get()).collect();
    assert_eq!(
        ids,
        [1, 3, 4],
        "the new record follows the kept ones on a clean line"
    );
    assert!(recovered.torn_tail.is_none());
}

fn history_the_disk_refuses_is_not_acknowledged_and_chat_goes_on(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    // A directory where the log file should be: every append fails.
    std::fs::create_dir(log_path(dir.path(), &RoomName::general())).expect("blocker");
    let running = start(backend, dir.path(), Config::default());
    let addr = running.local_addr();
    let mut alice = welcome(addr, 1);
    let mut bob = welcome(addr, 2);
    alice
        .wait_for(|line| line == "* guest2 joined #general")
        .expect("join notice");
    alice.say("#ack on").expect("send");
    alice.say("can anyone hear me?").expect("send");
    bob.wait_for(|line| line == "[#general] guest1: can anyone hear me?")
        .expect("delivered anyway");
    let reply = alice
        .wait_for(|line| line.starts_with('!') || line.starts_with("+ ack"))
        .expect("an answer");
    assert_eq!(
        reply,
        "! not-stored: message 1 was delivered but could not be stored"
    );
    // The server keeps serving.
    bob.say("#ping still-up").expect("send");
    bob.wait_for(|line| line == "+ pong still-up")
        .expect("alive");
    stop(running);
}

fn ack_waits_until_the_record_is_synced_under_the_policy(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    // Synced once an hour: within this test, only at shutdown.
    let hourly = FsyncPolicy::Every(std::time::Duration::from_secs(3_600));
    let running = start_with(backend, dir.path(), Config::default(), hourly);
    let mut alice = welcome(running.local_addr(), 1);
    let mut bob = welcome(running.local_addr(), 2);
    alice.say("#ack on").expect("send");
    alice
        .wait_for(|l| l == "* acknowledgements on")
        .expect("ack mode");
    alice.say("not durable yet").expect("send");
    // Bob has it: everything the message produced has been handed out.
    bob.wait_for(|l| l == "[#general] guest1: not durable yet")
        .expect("delivered");
    alice.say("#ping after").expect("send");
    // The record is written but not synced: no ACK may come before the pong.
    assert_eq!(
        alice.next_line().expect("read"),
        Received::Line("+ pong after".into())
    );
    stop(running);
}
