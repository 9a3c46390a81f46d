//! Properties of the core, checked with quickcheck:
//!
//! 1. arbitrary byte streams from several clients, interleaved with
//!    connects, hang-ups, time and persistence results, never panic, keep
//!    [`Server::check_invariants`], emit only complete UTF-8 lines, and
//!    never address a connection after closing it;
//! 2. the same script fed in any chunking gives byte-identical output to
//!    every connection (the disk answering once each step's input is
//!    handled, so `+ ack` lines do not move with the chunking);
//! 3. the sliding-window limiter never admits more than its budget in any
//!    window, and refuses only when the budget is really spent.
//!
//! Scripts reach for extremes, since that is where a core once panicked
//! (`#ban 1.2.3.4 18446744073709551615`): command lines from a small
//! grammar with u64::MAX and past it, negative numbers, durations in every
//! unit up to and beyond the maximum, over-long names, invisible and
//! bidirectional-control characters; clients on IPv4, IPv6 and
//! IPv4-mapped IPv6 addresses; time jumps of up to ten years.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use chatd_core::rate_limit::{Budget, SlidingWindow};
use chatd_core::{
    Config, ConnId, MessageId, OperatorConfig, Output, PasswordCheck, PasswordVerdict, Server,
};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

const OPERATOR_HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$Y2hhdGQtdHJhbnNjcmlwdHM$607V5zJpUmsmI3NpQeCJXClNnsXw/01C4mbkTOOEljk";

/// Pieces that make random input reach deep into the command set.
const VOCABULARY: &[&str] = &[
    "#join ",
    "#create ",
    "#leave",
    "#nick ",
    "#kick ",
    "#ban ",
    "#unban ",
    "#mute ",
    "#unmute ",
    "#invite ",
    "#msg ",
    "#w ",
    "#me ",
    "#topic ",
    "#history ",
    "#history before 3",
    "#history #general since 1 2",
    "#history around 2 3",
    "#history @guest1",
    "#search hello",
    "#search hello in #general",
    "#ids on",
    "#ids off",
    "#ack on",
    "#ack off",
    "#urgent ",
    "#who",
    "#rooms",
    "#quit",
    "#oper admin opensesame",
    "#oper admin wrong",
    "#oper nobody wrong",
    "#register longenough",
    "#login alice longenough",
    "#login bob wrongwrong",
    "#logout",
    "#password longenough newpassword",
    "#unregister longenough",
    "#whois ",
    "#oper-grant ",
    "#oper-revoke ",
    "#help ",
    "#ping ",
    "#pong",
    "alice",
    "bob",
    "guest1",
    "guest2",
    "guest3",
    "den",
    "#den",
    "private",
    "10s",
    "1m",
    "0s",
    "127.0.0.1",
    "127.0.0.2",
    " ",
    " ",
    "\n",
    "\n",
    "\n",
    "\r\n",
    "##",
    "hello",
    "\u{e9}",
    "\u{2713}",
];

/// Commands with the kinds of argument each takes, for lines that are
/// well formed enough to reach the handlers with extreme arguments. The
/// commands that take durations, and those that make the sender a room's
/// owner (who may use them), are listed more than once to come up more.
const GRAMMAR: &[(&str, &[Arg])] = &[
    ("#ban", &[Arg::Target, Arg::Duration, Arg::Text]),
    ("#ban", &[Arg::Target, Arg::Duration, Arg::Text]),
    ("#ban", &[Arg::Target, Arg::Duration]),
    ("#mute", &[Arg::Name, Arg::Duration]),
    ("#mute", &[Arg::Name, Arg::Duration]),
    ("#create", &[Arg::Room]),
    ("#join", &[Arg::Room]),
    ("#unban", &[Arg::Target]),
    ("#unmute", &[Arg::Name]),
    ("#kick", &[Arg::Name, Arg::Text]),
    ("#history", &[Arg::Number]),
    ("#create", &[Arg::Room, Arg::Text]),
    ("#join", &[Arg::Room]),
    ("#invite", &[Arg::Name]),
    ("#nick", &[Arg::Name]),
    ("#msg", &[Arg::Name, Arg::Text]),
    ("#topic", &[Arg::Text]),
    ("#me", &[Arg::Text]),
    ("#urgent", &[Arg::Text]),
    ("#ping", &[Arg::Text]),
    ("#help", &[Arg::Text]),
    ("#oper admin", &[Arg::Text]),
    ("", &[Arg::Text, Arg::Text]),
];

/// What an argument is meant to be; [`Arg::words`] gives the candidates.
#[derive(Debug, Clone, Copy)]
enum Arg {
    Target,
    Name,
    Room,
    Duration,
    Number,
    Text,
}

impl Arg {
    fn words(self) -> &'static [&'static str] {
        match self {
            Arg::Target => &[
                "guest1",
                "guest2",
                "guest3",
                "127.0.0.1",
                "127.0.0.2",
                "::ffff:127.0.0.2",
                "::ffff:7f00:2",
                "::1",
                "1.2.3.4",
                "0.0.0.0",
            ],
            Arg::Name => &[
                "guest1",
                "guest2",
                "guest3",
                "alice",
                "bob",
                "you",
                "ABCDEFGHIJKLMNOPQRSTUVWX",
                "ABCDEFGHIJKLMNOPQRSTUVWXY",
                "guest18446744073709551615",
            ],
            Arg::Room => &[
                "x",
                "den",
                "#den",
                "general",
                "abcdefghijklmnopqrstuvwxyz012345",
                "abcdefghijklmnopqrstuvwxyz0123456",
            ],
            // Every unit, zero, negatives, fractions, the maximum and one
            // past it, and integers at and past u64::MAX.
            Arg::Duration => &[
                "18446744073709551615",
                "18446744073709551615ms",
                "18446744073709551615s",
                "18446744073709551616",
                "9223372036854775807",
                "4611686018427387904",
                "99999999999999999999999d",
                "-1",
                "-1s",
                "-9223372036854775808",
                "+5s",
                "0",
                "0s",
                "1ms",
                "500ms",
                "1.5s",
                ".5s",
                "1m",
                "1h",
                "1h30m",
                "1d",
                "1w",
                "2w",
                "1.999999w",
                "3650d",
                "3650d1ms",
                "3651d",
                "522w",
                "2x",
            ],
            Arg::Number => &[
                "1",
                "3",
                "0",
                "-1",
                "-0",
                "+2",
                "18446744073709551615",
                "18446744073709551616",
                "99999999999999999999999999",
                "1e3",
            ],
            Arg::Text => &[
                "hello",
                "private",
                "\u{200b}",
                "\u{200b}\u{200d}\u{2060}\u{feff}",
                "\u{202e}reversed",
                "\u{2066}isolated",
                "\u{202a}\u{202b}\u{202c}",
                "\u{2069}",
                "\u{00ad}",
                "\u{e9}\u{2713}",
                "18446744073709551615",
                "-1",
            ],
        }
    }
}

/// Where clients connect from: IPv4 hosts, the second also as an
/// IPv4-mapped IPv6 address, and an IPv6 host.
const HOSTS: &[&str] = &[
    "127.0.0.1",
    "127.0.0.2",
    "127.0.0.3",
    "::ffff:127.0.0.2",
    "::1",
];

/// Some instant to count from; only differences matter.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

/// The test suite's tight limits; `rate_limited` off lets a script's lines
/// all reach the handlers (the limiter would drop most of them), on
/// exercises the limiter and flood disconnects.
fn small_config(rate_limited: bool) -> Config {
    let mut config = Config {
        max_line_bytes: 64,
        max_connections: 4,
        max_connections_per_ip: 3,
        max_rooms: 4,
        presence_announce_limit: 3,
        history_size: 5,
        history_default: 3,
        max_outbound_bytes: 4096,
        operators: vec![OperatorConfig {
            name: "admin".into(),
            password_hash: OPERATOR_HASH.into(),
        }],
        ..Config::default()
    };
    config.rate_limit.messages = 6;
    config.rate_limit.ip_messages = 9;
    config.rate_limit.flood_disconnect_after = 8;
    config.rate_limit.enabled = rate_limited;
    config.idle.ping_after = Duration::from_secs(30);
    config.idle.timeout = Duration::from_secs(10);
    // Waits that scripts' advances get past, and tables small enough to
    // fill, so both the refusals and the forgetting run.
    config.operator_login.failure_delay = Duration::from_secs(1);
    config.operator_login.max_failure_delay = Duration::from_secs(4);
    config.operator_login.forget_after = Duration::from_secs(8);
    config.operator_login.max_tracked = 2;
    config
}

#[derive(Debug, Clone)]
enum Step {
    Connect { slot: u8, host: u8 },
    Send { slot: u8, bytes: Vec<u8> },
    Close { slot: u8 },
    Advance { secs: u64 },
    SlowConsumer { slot: u8 },
}

impl Arbitrary for Step {
    fn arbitrary(g: &mut Gen) -> Self {
        let slot = u8::arbitrary(g) % 4;
        match u8::arbitrary(g) % 16 {
            0..=1 => Step::Connect {
                slot,
                host: u8::arbitrary(g) % HOSTS.len() as u8,
            },
            2 => Step::Close { slot },
            // Mostly seconds; one jump in eight is up to ten years long.
            3 => Step::Advance {
                secs: if u8::arbitrary(g).is_multiple_of(8) {
                    u64::arbitrary(g) % (3_650 * 86_400)
                } else {
                    u64::arbitrary(g) % 40
                },
            },
            4 if u8::arbitrary(g).is_multiple_of(4) => Step::SlowConsumer { slot },
            _ => Step::Send {
                slot,
                bytes: arbitrary_bytes(g),
            },
        }
    }
}

fn arbitrary_bytes(g: &mut Gen) -> Vec<u8> {
    let pieces = usize::arbitrary(g) % 12;
    let mut bytes = Vec::new();
    for _ in 0..pieces {
        match u8::arbitrary(g) % 5 {
            0 => bytes.extend(Vec::<u8>::arbitrary(g).into_iter().take(80)),
            1..=3 => bytes.extend_from_slice(grammar_line(g).as_bytes()),
            _ => {
                let piece = g.choose(VOCABULARY).copied().unwrap_or("\n");
                bytes.extend_from_slice(piece.as_bytes());
            }
        }
    }
    bytes
}

/// One command line from [`GRAMMAR`]: each argument present three times
/// in four (so missing arguments are tried too), drawn from its kind's
/// words, or one time in eight from another kind's.
fn grammar_line(g: &mut Gen) -> String {
    let (command, args) = *g.choose(GRAMMAR).unwrap_or(&GRAMMAR[0]);
    let mut line = command.to_owned();
    for &arg in args {
        if u8::arbitrary(g) % 4 == 0 {
            break;
        }
        let kind = if u8::arbitrary(g) % 8 == 0 {
            *g.choose(&[Arg::Target, Arg::Duration, Arg::Number, Arg::Text])
                .unwrap_or(&arg)
        } else {
            arg
        };
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(g.choose(kind.words()).copied().unwrap_or(""));
    }
    line.push('\n');
    line
}

#[derive(Debug, Clone)]
struct Script {
    steps: Vec<Step>,
    rate_limited: bool,
}

impl Arbitrary for Script {
    fn arbitrary(g: &mut Gen) -> Self {
        // Start with a few connections so most steps have someone to act.
        let mut steps: Vec<Step> = (0..3u8)
            .map(|slot| Step::Connect {
                slot,
                host: slot % 2,
            })
            .collect();
        steps.extend(Vec::<Step>::arbitrary(g));
        Script {
            steps,
            rate_limited: bool::arbitrary(g),
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let rate_limited = self.rate_limited;
        Box::new(self.steps.shrink().map(move |steps| Script {
            steps,
            rate_limited,
        }))
    }
}

/// Plays a script; `split` decides how each send is cut into chunks.
/// Returns each connection's received bytes, or the first broken rule.
struct Player {
    server: Server,
    now: Instant,
    slots: [Option<ConnId>; 4],
    received: BTreeMap<ConnId, Vec<u8>>,
    closed: BTreeSet<ConnId>,
    persisted: u64,
    /// Records handed to "the disk" during this step, answered at its end.
    unanswered: Vec<MessageId>,
    /// Operator passwords handed to "the verifier" during this step,
    /// answered at its end for the same reason as the disk.
    unverified: Vec<PasswordCheck>,
    /// Account jobs the driver has not answered yet (hashes, stores).
    unhashed: Vec<chatd_core::LoginRequest>,
    unstored: Vec<chatd_core::LoginRequest>,
    /// History queries not answered yet.
    unqueried: Vec<chatd_core::history_query::QueryId>,
}

impl Player {
    fn new(script: &Script) -> Self {
        let now = epoch();
        let config = small_config(script.rate_limited);
        Self {
            server: Server::new(config, now, 1_795_000_000_000).expect("valid test config"),
            now,
            slots: [None; 4],
            received: BTreeMap::new(),
            closed: BTreeSet::new(),
            persisted: 0,
            unanswered: Vec::new(),
            unverified: Vec::new(),
            unhashed: Vec::new(),
            unstored: Vec::new(),
            unqueried: Vec::new(),
        }
    }

    fn play(
        &mut self,
        script: &Script,
        mut split: impl FnMut(&[u8]) -> Vec<usize>,
    ) -> Result<(), String> {
        for step in &script.steps {
            match step {
                Step::Connect { slot, host } => {
                    let ip: IpAddr = HOSTS[usize::from(*host)].parse().expect("valid address");
                    let peer = SocketAddr::new(ip, 40_000 + u16::from(*slot));
                    if let Ok(conn) = self.server.accept(self.now, peer) {
                        // Outputs queued before a hang-up are legitimately addressed
                        // to the old connection: deliver them first.
                        self.drain()?;
                        if let Some(old) = self.slots[*slot as usize].replace(conn) {
                            self.server.handle_closed(self.now, old);
                            self.closed.insert(old);
                        }
                    }
                }
                Step::Send { slot, bytes } => {
                    let Some(conn) = self.slots[*slot as usize] else {
                        continue;
                    };
                    let mut start = 0;
                    for cut in split(bytes).into_iter().chain([bytes.len()]) {
                        let cut = cut.clamp(start, bytes.len());
                        self.server.handle(self.now, conn, &bytes[start..cut]);
                        self.drain()?;
                        start = cut;
                    }
                }
                Step::Close { slot } => {
                    if let Some(conn) = self.slots[*slot as usize].take() {
                        self.server.handle_closed(self.now, conn);
                        self.closed.insert(conn);
                    }
                }
                Step::Advance { secs } => {
                    self.now += Duration::from_secs(*secs);
                    while self.server.poll_timeout().is_some_and(|t| t <= self.now) {
                        self.server.handle_timeout(self.now);
                        self.drain()?;
                    }
                }
                Step::SlowConsumer { slot } => {
                    if let Some(conn) = self.slots[*slot as usize] {
                        self.server.handle_slow_consumer(self.now, conn);
                    }
                }
            }
            self.drain()?;
            self.answer_persistence()?;
            self.server.check_invariants()?;
        }
        Ok(())
    }

    /// The disk answers once the step's input is handled, however it was
    /// chunked: answering after each chunk would move `+ ack` lines among
    /// the replies to the rest of the input, which is the disk's timing,
    /// not the core's. Alternates success and failure so both paths run.
    /// Password checks (verified for real) and account jobs are answered
    /// at the same point, as workers on other threads would.
    fn answer_persistence(&mut self) -> Result<(), String> {
        while !self.unanswered.is_empty()
            || !self.unverified.is_empty()
            || !self.unhashed.is_empty()
            || !self.unstored.is_empty()
            || !self.unqueried.is_empty()
        {
            // Nothing stored to read; every third query finds the reader
            // busy, so both paths run.
            for request in std::mem::take(&mut self.unqueried) {
                self.persisted += 1;
                let shortfall = self
                    .persisted
                    .is_multiple_of(3)
                    .then_some(chatd_core::history_query::Shortfall::Busy);
                let answer = chatd_core::history_query::HistoryAnswer {
                    request,
                    records: Vec::new(),
                    shortfall,
                };
                self.server.handle_history_answer(self.now, answer);
            }
            for check in std::mem::take(&mut self.unverified) {
                let verdict = PasswordHash::new(&check.hash)
                    .ok()
                    .filter(|hash| {
                        Argon2::default()
                            .verify_password(check.password.expose().as_bytes(), hash)
                            .is_ok()
                    })
                    .map_or(PasswordVerdict::Mismatch, |_| PasswordVerdict::Match);
                self.server
                    .handle_password_verdict(self.now, check.request, verdict);
            }
            // Hashes no password matches, and every change stored.
            for request in std::mem::take(&mut self.unhashed) {
                let hash = Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".to_owned());
                self.server.handle_password_hashed(self.now, request, hash);
            }
            for request in std::mem::take(&mut self.unstored) {
                self.server.handle_account_stored(self.now, request, true);
            }
            for id in std::mem::take(&mut self.unanswered) {
                self.persisted += 1;
                if self.persisted.is_multiple_of(5) {
                    self.server.handle_persist_failed(self.now, id);
                } else {
                    self.server.handle_persisted(self.now, id);
                }
            }
            self.drain()?;
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), String> {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Send { to, bytes, .. } => self.deliver(to, &bytes)?,
                Output::Broadcast {
                    to, except, bytes, ..
                } => {
                    for &conn in to.iter().filter(|&&c| Some(c) != except) {
                        self.deliver(conn, &bytes)?;
                    }
                }
                Output::Close { conn, .. } => {
                    if !self.closed.insert(conn) {
                        return Err(format!("{conn} closed twice"));
                    }
                    for slot in &mut self.slots {
                        if *slot == Some(conn) {
                            *slot = None;
                        }
                    }
                }
                Output::Persist(record) => self.unanswered.push(record.id),
                Output::VerifyPassword(check) => self.unverified.push(*check),
                Output::QueryHistory(query) => self.unqueried.push(query.request),
                Output::HashPassword(request) => self.unhashed.push(request.request),
                Output::StoreAccount(write) => self.unstored.push(write.request),
                Output::Bus(request) => {
                    return Err(format!(
                        "bus request from a server outside a cluster: {request:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    fn deliver(&mut self, conn: ConnId, bytes: &[u8]) -> Result<(), String> {
        if self.closed.contains(&conn) {
            return Err(format!("output to {conn} after it closed"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| format!("non-UTF-8 output to {conn}"))?;
        if !text.ends_with('\n') {
            return Err(format!("output to {conn} is not whole lines: {text:?}"));
        }
        self.received
            .entry(conn)
            .or_default()
            .extend_from_slice(bytes);
        Ok(())
    }
}

fn quickcheck(tests: u64) -> QuickCheck {
    QuickCheck::new().tests(tests).max_tests(tests * 10)
}

#[test]
fn arbitrary_input_never_panics_and_keeps_invariants() {
    fn property(script: Script) -> TestResult {
        let mut player = Player::new(&script);
        match player.play(&script, |_| Vec::new()) {
            Ok(()) => TestResult::passed(),
            Err(broken) => TestResult::error(broken),
        }
    }
    quickcheck(300).quickcheck(property as fn(Script) -> TestResult);
}

/// Plays `script` whole and cut where `cuts` says (up to four cut points
/// per send, taken in turn from the list); the output must be the same.
fn chunking_keeps_output(script: &Script, cuts: &[u8]) -> TestResult {
    let mut whole = Player::new(script);
    if let Err(broken) = whole.play(script, |_| Vec::new()) {
        return TestResult::error(broken);
    }
    let mut cuts = cuts.iter().copied().cycle();
    let mut split = Player::new(script);
    let result = split.play(script, |bytes| {
        let mut points: Vec<usize> = (0..4)
            .filter_map(|_| cuts.next())
            .map(|c| usize::from(c) % (bytes.len() + 1))
            .collect();
        points.sort_unstable();
        points
    });
    if let Err(broken) = result {
        return TestResult::error(broken);
    }
    if whole.received != split.received {
        return TestResult::error(format!(
            "chunked input changed the output: {:?} whole, {:?} chunked",
            whole
                .received
                .values()
                .map(|b| String::from_utf8_lossy(b))
                .collect::<Vec<_>>(),
            split
                .received
                .values()
                .map(|b| String::from_utf8_lossy(b))
                .collect::<Vec<_>>(),
        ));
    }
    TestResult::from_bool(whole.closed == split.closed)
}

#[test]
fn any_chunking_gives_byte_identical_output() {
    fn property(script: Script, cuts: Vec<u8>) -> TestResult {
        chunking_keeps_output(&script, &cuts)
    }
    quickcheck(200).quickcheck(property as fn(Script, Vec<u8>) -> TestResult);
}

/// Found by the property above: a chat line completed by the first byte of
/// a send, then an invalid line. Its `+ ack` must not move among the
/// replies to the rest of that send when the send arrives in pieces.
#[test]
fn an_ack_stays_after_the_replies_to_the_rest_of_its_read() {
    let script = Script {
        steps: vec![
            Step::Connect { slot: 0, host: 1 },
            Step::Send {
                slot: 0,
                bytes: b"#ack on\nhello".to_vec(),
            },
            Step::Send {
                slot: 0,
                bytes: b"\n\xff\n".to_vec(),
            },
        ],
        rate_limited: true,
    };
    // Cut each send after its first byte.
    let verdict = chunking_keeps_output(&script, &[1, 1, 1, 1]);
    assert!(!verdict.is_failure() && !verdict.is_error(), "{verdict:?}");
}

#[test]
fn byte_at_a_time_gives_the_same_output_as_whole_sends() {
    fn property(script: Script) -> TestResult {
        let mut whole = Player::new(&script);
        let mut trickle = Player::new(&script);
        let (a, b) = (
            whole.play(&script, |_| Vec::new()),
            trickle.play(&script, |bytes| (1..bytes.len()).collect()),
        );
        if let Err(broken) = a.and(b) {
            return TestResult::error(broken);
        }
        TestResult::from_bool(whole.received == trickle.received)
    }
    quickcheck(100).quickcheck(property as fn(Script) -> TestResult);
}

#[test]
fn rate_limiter_never_exceeds_its_budget_in_any_window() {
    fn property(gaps_ms: Vec<u16>, messages: u8, window_ms: u16) -> TestResult {
        let budget = Budget {
            messages: u32::from(messages % 10) + 1,
            window: Duration::from_millis(u64::from(window_ms % 5_000) + 1),
        };
        let start = epoch();
        let mut now = start;
        let mut limiter = SlidingWindow::default();
        let mut admitted: Vec<Instant> = Vec::new();
        for gap in gaps_ms {
            now += Duration::from_millis(u64::from(gap % 2_000));
            let recent = admitted
                .iter()
                .filter(|&&t| t + budget.window > now)
                .count();
            match limiter.try_admit(now, budget) {
                Ok(()) => admitted.push(now),
                // A refusal is only allowed when the budget is really spent.
                Err(retry) if recent < budget.messages as usize || retry.is_zero() => {
                    return TestResult::error(format!("refused with {recent} recent events"));
                }
                Err(_) => {}
            }
        }
        for (i, &t) in admitted.iter().enumerate() {
            let in_window = admitted[i..]
                .iter()
                .take_while(|&&u| u < t + budget.window)
                .count();
            if in_window > budget.messages as usize {
                return TestResult::error(format!("{in_window} admitted within one window"));
            }
        }
        TestResult::passed()
    }
    quickcheck(500).quickcheck(property as fn(Vec<u16>, u8, u16) -> TestResult);
}
