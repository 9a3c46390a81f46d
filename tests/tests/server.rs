//! The whole server over TCP, on each backend: slow consumers, recovery
//! from damaged logs, history the disk refuses, and when ACKs may go out.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use chatd_core::history::{self, Record, RecordKind};
use chatd_core::{Config, MessageId, Nick, RoomName};
use chatd_engine::clock::{Clock, ManualClock};
use chatd_engine::hub::{InboxStats, MIN_INBOX_BYTES};
use chatd_engine::persist::{FsyncPolicy, read_history, room_dir};
use chatd_engine::settings::{NO_LISTENER, ServerSettings, Settings};
use chatd_engine::{Backend, Running, launch};
use chatd_tests::client::LineClient;
use chatd_tests::driver::Received;

use chatd_tests::{host, on_both_backends};

on_both_backends!(
    slow_consumer_is_cut_off_while_the_others_keep_receiving,
    history_survives_a_torn_tail_and_a_corrupted_middle_record,
    history_the_disk_refuses_is_not_acknowledged_and_chat_goes_on,
    ack_waits_until_the_record_is_synced_under_the_policy,
    a_large_room_gets_every_line_in_order_from_each_sender,
    slow_consumer_is_reset_without_reading_a_byte,
    shutdown_with_nothing_queued_does_not_wait_for_the_flush_limit,
    a_flood_past_the_inbox_bound_pauses_reading_and_loses_nothing,
    history_timestamps_follow_a_corrected_system_clock,
    history_beyond_memory_without_persist_is_what_memory_holds,
    a_burst_the_socket_cannot_take_arrives_whole_once_the_client_reads,
    a_client_that_half_closes_gets_the_answers_to_its_last_lines,
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
            // No IRC here: the default port would collide between tests.
            irc_bind: NO_LISTENER.into(),
            http_bind: NO_LISTENER.into(),
            threads: 2,
            data_dir: dir.to_path_buf(),
            fsync,
            persist: true,
            backend: backend.name().into(),
            ..ServerSettings::default()
        },
        chat,
        history: Default::default(),
        tls: Default::default(),
        http: Default::default(),
        cluster: None,
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

/// A client that sends its last lines and then half-closes, as
/// `printf '#nick x\n' | nc -N` does, gets every answer before the server
/// closes: the end of its input is a quit, not a reset.
fn a_client_that_half_closes_gets_the_answers_to_its_last_lines(backend: &dyn Backend) {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chat = Config::default();
    chat.rate_limit.enabled = false;
    let running = start(backend, dir.path(), chat);
    let addr = running.local_addr();
    for round in 0..50 {
        let mut socket = std::net::TcpStream::connect(addr).expect("connects");
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let nick = format!("half{round}");
        socket
            .write_all(format!("#nick {nick}\n#ping last{round}\n").as_bytes())
            .expect("sends");
        socket
            .shutdown(std::net::Shutdown::Write)
            .expect("half-closes");
        let mut answers = String::new();
        socket
            .read_to_string(&mut answers)
            .expect("reads to the server's end of stream");
        assert!(
            answers.contains(&format!("* you are now {nick}"))
                && answers.contains(&format!("last{round}")),
            "round {round}: {answers:?}"
        );
    }
    stop(running);
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

/// Output the kernel cannot take at once waits in the connection's queue
/// and leaves as the socket drains, with nothing more queued behind it:
/// backend-iocp writes from its dispatcher without blocking and must hand
/// what is left to a writer (backend-poll waits for writability).
fn a_burst_the_socket_cannot_take_arrives_whole_once_the_client_reads(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chat = Config::default();
    chat.rate_limit.enabled = false;
    // Room for the whole burst in the queue: the client is slow, not too
    // slow.
    chat.max_outbound_bytes = 64 << 20;
    let running = start(backend, dir.path(), chat);
    let addr = running.local_addr();

    let mut reader = LineClient::connect_with(addr, host(1), Some(4096)).expect("connects");
    reader
        .wait_for(|line| line.starts_with("* welcome"))
        .expect("welcome");
    let mut talker = welcome(addr, 2);
    talker.say("#nick talker").expect("send");
    talker
        .wait_for(|line| line == "* you are now talker")
        .expect("renamed");
    // 9 MB while the reader reads nothing: more than the kernel holds
    // (its send buffer grows to a few MB at most, the reader's receive
    // buffer is 4 KiB), so most of it waits in the server's queue.
    const MESSAGES: usize = 3_000;
    let payload = "y".repeat(3_000);
    for i in 0..MESSAGES {
        talker.say(&format!("{payload} {i}")).expect("talker sends");
    }
    // The talker's own #ping answer shows the server handled every line.
    talker.say("#ping done").expect("send");
    talker.wait_for(|line| line.contains("done")).expect("pong");
    // Nothing more is queued for the reader from here on: the rest must
    // leave as its socket drains.
    let mut received = 0;
    while received < MESSAGES {
        match reader.next_line().expect("reader reads") {
            Received::Line(line) if line.starts_with("[#general] talker: ") => {
                assert!(
                    line.ends_with(&format!(" {received}")),
                    "out of order at {received}: {}",
                    &line[line.len().saturating_sub(20)..]
                );
                received += 1;
            }
            Received::Line(_) => {}
            other => panic!("the reader stalled after {received} of {MESSAGES}: {other:?}"),
        }
    }
    stop(running);
}

/// The one close rule (engine/src/closing.rs): a slow consumer's socket
/// really closes, with a reset, even though the client never reads again.
/// A socket kept open (or closed gracefully behind megabytes the client
/// will never read) shows no error or hang-up to the client.
fn slow_consumer_is_reset_without_reading_a_byte(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chat = Config::default();
    chat.rate_limit.enabled = false;
    let running = start_with(backend, dir.path(), chat, FsyncPolicy::Never);
    let addr = running.local_addr();
    let mut slow = LineClient::connect_with(addr, host(1), Some(4096)).expect("connects");
    slow.wait_for(|line| line.starts_with("* welcome"))
        .expect("welcome");
    let mut talker = welcome(addr, 2);
    let mut sender = talker.try_clone_sender().expect("clone");
    let cut_off = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_sending = cut_off.clone();
    let flood = thread::spawn(move || {
        let payload = "x".repeat(3_000);
        // At most 60 MB; it stops once the slow client is announced gone.
        for i in 0..20_000 {
            if stop_sending.load(Ordering::Acquire) {
                return;
            }
            sender.say(&format!("{payload} {i}")).expect("talker sends");
        }
    });
    // Quiet while the flood goes on: wait past the per-line limit, up to a
    // failure guard.
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match talker.next_line().expect("talker reads") {
            Received::Line(line) if line == "* guest1 quit: too slow to receive" => break,
            Received::Nothing if std::time::Instant::now() < guard => {}
            other => panic!("the slow client was never announced gone: {other:?}"),
        }
    }
    cut_off.store(true, Ordering::Release);
    flood.join().expect("flood");
    #[cfg(unix)]
    assert!(
        slow.wait_closed_unread(std::time::Duration::from_secs(5)),
        "{}: the slow consumer's socket is still open",
        backend.name()
    );
    stop(running);
}

/// Nothing queued, clients that keep their end open: a shutdown returns
/// at once rather than after the flush limit or a linger.
fn shutdown_with_nothing_queued_does_not_wait_for_the_flush_limit(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = start(backend, dir.path(), Config::default());
    let addr = running.local_addr();
    let mut clients = [welcome(addr, 1), welcome(addr, 2)];
    for client in &mut clients {
        client.say("#ping idle").expect("send");
        client
            .wait_for(|line| line == "+ pong idle")
            .expect("nothing left to send");
    }
    let started = std::time::Instant::now();
    stop(running);
    let took = started.elapsed();
    // A failure guard, not a measurement: a prompt shutdown takes
    // milliseconds; one that waits for the limit takes all of it.
    assert!(
        took < chatd_engine::SHUTDOWN_FLUSH_LIMIT,
        "{}: shutdown took {took:?}",
        backend.name()
    );
    for client in &mut clients {
        client
            .wait_for(|line| line.starts_with("* server shutting down"))
            .expect("told");
        assert_eq!(client.next_line().expect("read"), Received::Closed);
    }
}

/// A manual clock whose readings wait while its gate is closed. The hub
/// reads the clock for every event, so closing the gate stalls the core
/// exactly where a slow core would fall behind, and nothing else.
struct GatedClock {
    clock: ManualClock,
    open: Mutex<bool>,
    opened: Condvar,
}

impl GatedClock {
    fn new() -> Self {
        Self {
            clock: ManualClock::new(1_795_000_000_000),
            open: Mutex::new(true),
            opened: Condvar::new(),
        }
    }

    fn set_open(&self, open: bool) {
        *self.open.lock().expect("gate") = open;
        self.opened.notify_all();
    }
}

impl Clock for GatedClock {
    fn now(&self) -> std::time::Instant {
        let open = self.open.lock().expect("gate");
        drop(self.opened.wait_while(open, |open| !*open).expect("gate"));
        self.clock.now()
    }

    fn unix_ms(&self) -> u64 {
        self.clock.unix_ms()
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Option<std::time::Duration> {
        self.clock.sleep_until(deadline)
    }

    fn on_advance(&self, wake: Box<dyn Fn() + Send + Sync>) {
        self.clock.on_advance(wake);
    }
}

/// Backpressure (engine/src/hub.rs): while the core is stalled, a flood
/// 30 times the inbox's bound makes the I/O threads stop reading rather
/// than queue it all; the inbox never holds more than the bound plus one
/// read per I/O thread; once the core goes on, every line arrives, in
/// order. Then a flood that produces no output at all (blank lines, which
/// the core ignores): only the hub's own wake-up can restart reading.
fn a_flood_past_the_inbox_bound_pauses_reading_and_loses_nothing(backend: &dyn Backend) {
    const BOUND: usize = MIN_INBOX_BYTES;
    const ONE_READ: usize = 64 * 1024;
    const MESSAGES: usize = 2_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chat = Config::default();
    chat.rate_limit.enabled = false;
    // The listener starts reading only once the core goes on.
    chat.max_outbound_bytes = 64 << 20;
    let settings = Settings {
        server: ServerSettings {
            bind: "127.0.0.1:0".into(),
            // No IRC here: the default port would collide between tests.
            irc_bind: NO_LISTENER.into(),
            http_bind: NO_LISTENER.into(),
            threads: 2,
            data_dir: dir.path().to_path_buf(),
            persist: false,
            backend: backend.name().into(),
            max_inbox_bytes: BOUND,
            ..ServerSettings::default()
        },
        chat,
        history: Default::default(),
        tls: Default::default(),
        http: Default::default(),
        cluster: None,
    };
    let gate = Arc::new(GatedClock::new());
    let running = launch(&settings, backend, gate.clone()).expect("server starts");
    let addr = running.local_addr();
    let mut talker = welcome(addr, 2);
    let mut listener = welcome(addr, 3);
    talker.say("#nick talker").expect("send");
    talker
        .wait_for(|line| line == "* you are now talker")
        .expect("renamed");

    let payload = "x".repeat(1_000);
    let chat_lines: Vec<u8> = (0..MESSAGES)
        .flat_map(|i| format!("{payload} {i}\n").into_bytes())
        .collect();
    let (stalled, sending) = flood_while_stalled(&running, &gate, &talker, chat_lines);
    for i in 0..MESSAGES {
        let line = listener
            .wait_for(|line| line.starts_with("[#general] talker: "))
            .unwrap_or_else(|e| panic!("{}: message {i}: {e}", backend.name()));
        assert!(
            line.ends_with(&format!(" {i}")),
            "{}: out of order at {i}",
            backend.name()
        );
    }
    sending.join().expect("sender");

    let blank = " ".repeat(1_000);
    let mut silent: Vec<u8> = (0..MESSAGES)
        .flat_map(|_| format!("{blank}\n").into_bytes())
        .collect();
    silent.extend_from_slice(b"#ping done\n");
    let (_, sending) = flood_while_stalled(&running, &gate, &talker, silent);
    talker
        .wait_for(|line| line == "+ pong done")
        .unwrap_or_else(|e| panic!("{}: reading never resumed: {e}", backend.name()));
    sending.join().expect("sender");

    let stats = running.inbox_stats();
    eprintln!(
        "{}: stalled {stalled:?}, at the end {stats:?}",
        backend.name()
    );
    assert!(
        stats.peak_bytes <= BOUND + settings.server.threads * ONE_READ,
        "{}: the inbox grew past its bound: {stats:?}",
        backend.name()
    );
    stop(running);
}

/// Stalls the core, sends `flood` from `talker` until an I/O thread stops
/// reading, lets the core go on and returns the inbox's state while it
/// was stalled, and the sending thread, which finishes once the server
/// has read it all (join it only after seeing the flood's effect, so a
/// server that never reads again fails on a line timeout, not a hang).
fn flood_while_stalled(
    running: &Running,
    gate: &GatedClock,
    talker: &LineClient,
    flood: Vec<u8>,
) -> (InboxStats, thread::JoinHandle<()>) {
    let pauses = running.inbox_stats().pauses;
    gate.set_open(false);
    let mut sender = talker.try_clone_sender().expect("clone");
    let sending = thread::spawn(move || sender.send(&flood).expect("talker sends"));
    // A failure guard only: reading pauses as soon as the bound is passed.
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while running.inbox_stats().pauses == pauses {
        let stats = running.inbox_stats();
        assert!(
            std::time::Instant::now() < guard,
            "reading never paused: {stats:?}"
        );
        thread::yield_now();
    }
    let stalled = running.inbox_stats();
    gate.set_open(true);
    (stalled, sending)
}

/// A manual clock whose wall time can be corrected (as NTP or an operator
/// corrects the system clock) and which, like the system clock, asks to
/// be re-anchored every minute.
struct CorrectedClock {
    clock: ManualClock,
    correction_ms: std::sync::atomic::AtomicU64,
}

impl Clock for CorrectedClock {
    fn now(&self) -> std::time::Instant {
        self.clock.now()
    }

    fn unix_ms(&self) -> u64 {
        self.clock.unix_ms() + self.correction_ms.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Option<std::time::Duration> {
        self.clock.sleep_until(deadline)
    }

    fn on_advance(&self, wake: Box<dyn Fn() + Send + Sync>) {
        self.clock.on_advance(wake);
    }

    fn wall_clock_every(&self) -> Option<std::time::Duration> {
        Some(chatd_engine::clock::WALL_CLOCK_EVERY)
    }
}

/// Settings for a server on a free port, without IRC, idle checks or
/// history files (`persist = false`), on `backend`.
fn memory_only_settings(backend: &dyn Backend, data_dir: &std::path::Path) -> Settings {
    let mut settings = Settings {
        server: ServerSettings {
            bind: "127.0.0.1:0".into(),
            // No IRC here: the default port would collide between tests.
            irc_bind: NO_LISTENER.into(),
            http_bind: NO_LISTENER.into(),
            threads: 2,
            data_dir: data_dir.to_path_buf(),
            persist: false,
            backend: backend.name().into(),
            ..ServerSettings::default()
        },
        chat: Config::default(),
        history: Default::default(),
        tls: Default::default(),
        http: Default::default(),
        cluster: None,
    };
    settings.chat.idle.enabled = false;
    settings
}

/// The hub feeds the wall clock to the core once a minute: after the
/// system clock is corrected by a day, a minute later new history is
/// stamped with the corrected date.
fn history_timestamps_follow_a_corrected_system_clock(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = memory_only_settings(backend, dir.path());
    // 2026-11-18 11:06:40 UTC.
    let clock = Arc::new(CorrectedClock {
        clock: ManualClock::new(1_795_000_000_000),
        correction_ms: std::sync::atomic::AtomicU64::new(0),
    });
    let running = launch(&settings, backend, clock.clone()).expect("server starts");
    let mut alice = welcome(running.local_addr(), 1);
    clock.correction_ms.store(86_400_000, Ordering::SeqCst);
    clock.clock.advance(chatd_engine::clock::WALL_CLOCK_EVERY);
    alice.say("after the correction").expect("send");
    alice.say("#history 1").expect("send");
    alice
        .wait_for(|line| line.starts_with("+ history"))
        .expect("history");
    assert_eq!(
        alice.next_line().expect("read"),
        Received::Line("[#general 2026-11-19 11:07:40] guest1: after the correction".into()),
        "{}",
        backend.name()
    );
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
    // A log as older servers wrote it (one flat file per room): start-up
    // moves it to `general/00000000000000000001.log`.
    let path = dir.path().join("general.log");
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
    let segment = room_dir(dir.path(), &RoomName::general()).join("00000000000000000001.log");
    assert!(!path.exists(), "migrated");
    assert_eq!(
        std::fs::metadata(&segment).expect("segment").len(),
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

    let recovered = history::recover(&read_history(dir.path(), "general").expect("log"));
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
    // A file where the room's directory should be: every append fails.
    std::fs::write(room_dir(dir.path(), &RoomName::general()), b"").expect("blocker");
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

/// With nothing stored (`persist = false`) a `#history` beyond what memory
/// keeps is a query the engine answers empty at once: the answer is what
/// memory holds, never a wait.
fn history_beyond_memory_without_persist_is_what_memory_holds(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = memory_only_settings(backend, dir.path());
    settings.chat.history_size = 2;
    let running = launch(
        &settings,
        backend,
        Arc::new(ManualClock::new(1_795_000_000_000)),
    )
    .expect("server starts");
    let mut alice = welcome(running.local_addr(), 1);
    for text in ["one", "two", "three", "four"] {
        alice.say(text).expect("send");
    }
    alice.say("#history 10").expect("send");
    alice
        .wait_for(|line| line.starts_with("+ history"))
        .expect("history");
    for text in ["three", "four"] {
        assert_eq!(
            alice.next_line().expect("read"),
            Received::Line(format!("[#general 2026-11-18 11:06:40] guest1: {text}")),
            "{}",
            backend.name()
        );
    }
    stop(running);
}
