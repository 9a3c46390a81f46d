//! Operator password checks through the whole server, on each backend:
//! more logins at once than the password workers' queue holds are refused
//! as busy, not queued without limit, and a bystander is still answered.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use chatd_core::Config;
use chatd_engine::clock::ManualClock;
use chatd_engine::persist::FsyncPolicy;
use chatd_engine::settings::{NO_LISTENER, ServerSettings, Settings};
use chatd_engine::{Backend, launch};
use chatd_tests::client::LineClient;
use chatd_tests::driver::Received;

/// Far more than the queue (32) and the workers (at most 2) hold at once.
const ATTEMPTS: u8 = 120;

#[test]
fn poll_refuses_logins_beyond_the_queue_as_busy() {
    logins_beyond_the_queue_are_refused_as_busy(&chatd_backend_poll::PollBackend);
}

#[test]
fn iocp_refuses_logins_beyond_the_queue_as_busy() {
    logins_beyond_the_queue_are_refused_as_busy(&chatd_backend_iocp::IocpBackend::default());
}

fn logins_beyond_the_queue_are_refused_as_busy(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        server: ServerSettings {
            bind: "127.0.0.1:0".into(),
            // No IRC here: the default port would collide between tests.
            irc_bind: NO_LISTENER.into(),
            http_bind: NO_LISTENER.into(),
            threads: 2,
            data_dir: dir.path().to_path_buf(),
            fsync: FsyncPolicy::Never,
            persist: false,
            backend: backend.name().into(),
            ..ServerSettings::default()
        },
        chat: Config {
            // No join notices: each client reads only its own answers.
            presence_announce_limit: 1,
            ..Config::default()
        },
        history: Default::default(),
        tls: Default::default(),
        http: Default::default(),
        cluster: None,
    };
    let clock = Arc::new(ManualClock::new(1_795_000_000_000));
    let running = launch(&settings, backend, clock).expect("server starts");
    let addr = running.local_addr();
    // No operators: every name is unknown and checked against the dummy
    // hash, with Argon2's default cost (tens of milliseconds each).
    let mut guessers: Vec<LineClient> = (0..ATTEMPTS).map(|i| welcome(addr, 2 + i)).collect();
    for (i, guesser) in guessers.iter_mut().enumerate() {
        // A name and an address each: only the queue can refuse them.
        guesser.say(&format!("#oper name{i} guess")).expect("send");
    }
    let mut bystander = welcome(addr, 1);
    bystander.say("#ping still-served").expect("send");
    assert_eq!(
        bystander.wait_for(|line| line.starts_with('+')),
        Ok("+ pong still-served".to_owned())
    );
    let (mut checked, mut busy) = (0, 0);
    for guesser in &mut guessers {
        match answer(guesser).as_str() {
            "! bad-credentials: wrong operator name or password" => checked += 1,
            "! try-later: operator logins are busy; try again in a moment" => busy += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(checked > 0, "no password was checked");
    assert!(busy > 0, "all {ATTEMPTS} were queued ({checked} checked)");
    running.shutdown("test over");
    running.wait();
}

fn welcome(addr: SocketAddr, from: u8) -> LineClient {
    let mut client = LineClient::connect(addr, IpAddr::from([127, 0, 0, from])).expect("connects");
    client
        .wait_for(|line| line.starts_with("* welcome"))
        .expect("welcome");
    client
}

/// The next line, allowing a slow machine a minute for the queue ahead of
/// it (each read gives up after a few seconds of quiet).
fn answer(client: &mut LineClient) -> String {
    for _ in 0..12 {
        match client.next_line().expect("read") {
            Received::Line(line) => return line,
            Received::Nothing => {}
            Received::Closed => panic!("closed before answering"),
        }
    }
    panic!("no answer within a minute");
}
