//! The whole core driven by a structured multi-client script.
//!
//! The fuzzer's bytes become (through `arbitrary`) a config preset and a
//! list of steps: connections from a few addresses (IPv4, IPv6 and
//! IPv4-mapped IPv6), command lines (a command and arguments of the kind
//! it takes, or of any other kind) and free-form sends built from a
//! vocabulary of real commands, both with extreme arguments (u64::MAX, negative numbers, huge durations in every
//! unit, over-long names, invisible and bidirectional-control characters)
//! and raw bytes, hang-ups, time jumps (up to years; the total is kept
//! within a century so the driver's own clock never overflows), answers
//! from the disk in any order (stored or failed), verdicts of the password
//! verifier in any order (checked for real, or busy), slow consumers, wall
//! clock corrections and shutdown.
//!
//! Every step is played on two servers: one gets each send whole, the
//! other cut at fuzzer-chosen points. After every step:
//!
//! 1. `Server::check_invariants` holds on both;
//! 2. both have sent byte-identical output to every connection and closed
//!    the same connections (framing is independent of the chunking);
//! 3. outputs are well formed: whole UTF-8 lines, never to a connection
//!    after it closed, no connection closed twice, broadcast recipients in
//!    increasing order, persisted message ids increasing, and an id
//!    reservation never below an id already used;
//! 4. the server agrees with a reference model built only from what
//!    clients were told (the welcome, `* you are now`, `* you joined`,
//!    `* you created`, `* NAME now owns`, and closes): the same open
//!    connections with the same nicknames and rooms, the same rooms
//!    (#general plus every room someone is in), and each room's owner and
//!    privacy as announced;
//! 5. one `handle_timeout(now)` handles everything due: afterwards the
//!    next deadline is in the future.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use chatd_core::history::RecordKind;
use chatd_core::{
    Config, ConnId, MessageId, Nick, OperatorConfig, Output, PasswordCheck, PasswordVerdict,
    RoomName, Server,
};
use libfuzzer_sys::fuzz_target;

/// One instant for the whole run; only differences matter to the core.
static START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// `#oper admin opensesame` (Argon2id with the cheapest parameters, so
/// the fuzzer spends its time in the core, not in hashing).
const OPERATOR_HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$Y2hhdGQtdHJhbnNjcmlwdHM$607V5zJpUmsmI3NpQeCJXClNnsXw/01C4mbkTOOEljk";

/// Where clients connect from: two IPv4 hosts, the second also as an
/// IPv4-mapped IPv6 address (bans and per-IP limits must see one host),
/// and two IPv6 hosts.
const HOSTS: &[&str] = &[
    "127.0.0.1:40000",
    "127.0.0.2:40001",
    "[::ffff:127.0.0.2]:40002",
    "[::1]:40003",
    "[2001:db8::1]:40004",
];

/// Connection slots a script addresses.
const SLOTS: usize = 6;

/// Pieces that reach deep into the command set, with extreme arguments.
const VOCABULARY: &[&str] = &[
    // Commands.
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
    "#ack on",
    "#ack off",
    "#urgent ",
    "#who",
    "#rooms",
    "#quit",
    "#oper admin opensesame",
    "#oper admin wrong",
    "#help ",
    "#ping ",
    "#pong",
    "#JOIN ",
    "##",
    // Names, including the longest and one over, and one that reads like
    // the protocol's own "you".
    "alice",
    "bob",
    "you",
    "guest1",
    "guest2",
    "guest3",
    "guest4",
    "den",
    "#den",
    "x",
    "ABCDEFGHIJKLMNOPQRSTUVWX",
    "ABCDEFGHIJKLMNOPQRSTUVWXY",
    "abcdefghijklmnopqrstuvwxyz012345",
    "abcdefghijklmnopqrstuvwxyz0123456",
    "private",
    "admin",
    // Numbers and durations: every unit, zero, negative, fractional,
    // the maximum and one past it, overflowing integers.
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999d",
    "9223372036854775807",
    "-9223372036854775808",
    "-1",
    "-1s",
    "+5",
    "0",
    "0s",
    "1",
    "1ms",
    "500ms",
    "1.5s",
    ".5s",
    "10s",
    "59.999s",
    "1m",
    "1h",
    "1h30m",
    "1d",
    "1w",
    "2w",
    "3650d",
    "3650d1ms",
    "3651d",
    "522w",
    "1.999999w",
    "1e9",
    "NaN",
    "2x",
    // Addresses, canonical and mapped.
    "127.0.0.1",
    "127.0.0.2",
    "::ffff:127.0.0.2",
    "::ffff:7f00:2",
    "::1",
    "2001:db8::1",
    "0.0.0.0",
    "255.255.255.255",
    // Invisible and bidirectional-control characters.
    "\u{200b}",
    "\u{200d}",
    "\u{2060}",
    "\u{feff}",
    "\u{00ad}",
    "\u{202e}",
    "\u{202a}",
    "\u{2066}",
    "\u{2069}",
    "\u{061c}",
    "\u{180e}",
    // Blanks, endings, text.
    " ",
    " ",
    "\t",
    "\n",
    "\n",
    "\n",
    "\r\n",
    "\r",
    "hello",
    "\u{e9}",
    "\u{2713}",
];

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Preset {
    /// No rate limit, roomier limits, whispers persisted: the commands
    /// themselves get exercised.
    Open,
    /// The test suite's tight limits: rate limiting, flood disconnects,
    /// full rooms and servers.
    Tight,
}

#[derive(Debug, Arbitrary)]
struct Script {
    preset: Preset,
    steps: Vec<Step>,
}

#[derive(Debug, Arbitrary)]
enum Step {
    Connect {
        slot: u8,
        host: u8,
    },
    Lines {
        slot: u8,
        lines: Vec<Line>,
        cuts: [u8; 4],
    },
    Send {
        slot: u8,
        pieces: Vec<Piece>,
        cuts: [u8; 4],
    },
    Close {
        slot: u8,
    },
    Advance(Jump),
    /// The disk answers one outstanding record (picked by index).
    Persisted {
        pick: u8,
        stored: bool,
    },
    /// The password verifier answers one outstanding check (picked by
    /// index): verified for real, or too busy to try.
    Verdict {
        pick: u8,
        busy: bool,
    },
    SlowConsumer {
        slot: u8,
    },
    WallClock {
        unix_ms: u64,
    },
    Shutdown,
}

/// One command line: a command from [`COMMANDS`] and its arguments,
/// separated by spaces and ended by LF. Most of the state machine is only
/// reached by well-formed lines, which bytes rarely spell by chance.
#[derive(Debug, Arbitrary)]
struct Line {
    command: u8,
    args: Vec<Arg>,
}

#[derive(Debug, Arbitrary)]
enum Arg {
    Name(u8),
    Room(u8),
    Address(u8),
    Duration(u8),
    Number(u8),
    Text(u8),
    Int(u64),
    Signed(i64),
    Span { value: u64, unit: u8 },
    Raw(Vec<u8>),
}

const COMMANDS: &[&str] = &[
    "#join", "#create", "#leave", "#nick", "#kick", "#ban", "#unban", "#mute", "#unmute",
    "#invite", "#msg", "#w", "#me", "#topic", "#history", "#ack", "#urgent", "#who", "#rooms",
    "#quit", "#oper", "#help", "#ping", "#pong", "#JOIN", "##", "",
];

/// Nicknames: taken ones, free ones, one that reads like the protocol's own
/// "you", the longest and one over, and an operator account.
const NAMES: &[&str] = &[
    "guest1",
    "guest2",
    "guest3",
    "guest4",
    "guest5",
    "alice",
    "bob",
    "you",
    "admin",
    "ABCDEFGHIJKLMNOPQRSTUVWX",
    "ABCDEFGHIJKLMNOPQRSTUVWXY",
    "guest18446744073709551615",
];

const ROOMS: &[&str] = &[
    "x",
    "den",
    "#den",
    "general",
    "#general",
    "private",
    "abcdefghijklmnopqrstuvwxyz012345",
    "abcdefghijklmnopqrstuvwxyz0123456",
];

/// Addresses of connected clients (canonical and IPv4-mapped) and others.
const ADDRESSES: &[&str] = &[
    "127.0.0.1",
    "127.0.0.2",
    "::ffff:127.0.0.2",
    "::ffff:7f00:2",
    "::1",
    "2001:db8::1",
    "1.2.3.4",
    "0.0.0.0",
    "255.255.255.255",
];

/// Every unit, zero, negatives, fractions, the maximum and one past it,
/// and integers at and past the limits of u64 and i64.
const DURATIONS: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "18446744073709551615ms",
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
    "59.999s",
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
    "1e9",
    "NaN",
];

const NUMBERS: &[&str] = &[
    "1",
    "3",
    "0",
    "-0",
    "-1",
    "+2",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "1e3",
];

/// Chat text, topics and reasons, including invisible and
/// bidirectional-control characters alone and unclosed.
const TEXTS: &[&str] = &[
    "hello",
    "on",
    "off",
    "opensesame",
    "wrong",
    "private",
    "\u{200b}",
    "\u{200b}\u{200d}\u{2060}\u{feff}",
    "\u{202e}reversed",
    "\u{2066}isolated",
    "\u{202a}\u{202b}\u{202c}",
    "\u{2069}",
    "\u{00ad}",
    "\u{061c}",
    "\u{180e}",
    "\u{e9}\u{2713}",
];

#[derive(Debug, Arbitrary)]
enum Piece {
    Word(u8),
    Repeat { word: u8, times: u8 },
    Number(u64),
    Signed(i64),
    Duration { value: u64, unit: u8 },
    Raw(Vec<u8>),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Jump {
    Millis(u16),
    Seconds(u16),
    Hours(u16),
    Years(u8),
    /// Exactly to the next deadline.
    ToDeadline,
}

const UNITS: &[&str] = &["", "ms", "s", "m", "h", "d", "w", "x", ".5s", ".999999w"];

/// The driver's clock never goes further than this from the start.
const MAX_ELAPSED: Duration = Duration::from_secs(100 * 365 * 86_400);

fuzz_target!(|script: Script| {
    let mut whole = Driver::new(script.preset);
    let mut split = Driver::new(script.preset);
    for step in script.steps.iter().take(64) {
        whole.step(step, false);
        split.step(step, true);
        whole.check_model();
        assert_eq!(
            whole.received, split.received,
            "the chunking changed the output"
        );
        assert_eq!(
            whole.closed, split.closed,
            "the chunking changed who was closed"
        );
        assert_eq!(whole.unanswered, split.unanswered);
    }
});

fn config(preset: Preset) -> Config {
    let mut config = Config {
        max_line_bytes: 64,
        max_connections: 5,
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
    config.idle.ping_after = Duration::from_secs(30);
    config.idle.timeout = Duration::from_secs(10);
    match preset {
        Preset::Open => {
            config.max_line_bytes = 256;
            config.max_outbound_bytes = 1 << 16;
            config.max_connections = 6;
            config.max_rooms = 6;
            config.persist_private_messages = true;
            config.rate_limit.enabled = false;
        }
        Preset::Tight => {
            config.rate_limit.messages = 6;
            config.rate_limit.ip_messages = 9;
            config.rate_limit.flood_disconnect_after = 8;
        }
    }
    config
}

/// A client as the reference model knows it, from its own lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Client {
    nick: String,
    room: String,
}

/// Plays steps on one server and keeps everything the checks need.
struct Driver {
    server: Server,
    now: Instant,
    slots: [Option<ConnId>; SLOTS],
    accepted: BTreeSet<ConnId>,
    closed: BTreeSet<ConnId>,
    received: BTreeMap<ConnId, Vec<u8>>,
    unanswered: Vec<MessageId>,
    /// The last message record's id (reservations are checked apart).
    last_persisted: Option<MessageId>,
    unverified: Vec<PasswordCheck>,
    /// The reference model: open clients, and each room's announced owner
    /// and privacy (entries for rooms that are gone are never compared).
    clients: BTreeMap<ConnId, Client>,
    owners: BTreeMap<String, ConnId>,
    private: BTreeMap<String, bool>,
}

impl Driver {
    fn new(preset: Preset) -> Self {
        let now = *START;
        Self {
            server: Server::new(config(preset), now, 1_795_000_000_000).expect("a valid config"),
            now,
            slots: [None; SLOTS],
            accepted: BTreeSet::new(),
            closed: BTreeSet::new(),
            received: BTreeMap::new(),
            unanswered: Vec::new(),
            last_persisted: None,
            unverified: Vec::new(),
            clients: BTreeMap::new(),
            owners: BTreeMap::new(),
            private: BTreeMap::new(),
        }
    }

    fn step(&mut self, step: &Step, chunked: bool) {
        match step {
            Step::Connect { slot, host } => {
                let peer: SocketAddr = HOSTS[usize::from(*host) % HOSTS.len()]
                    .parse()
                    .expect("a valid address");
                let slot = usize::from(*slot) % SLOTS;
                // The slot's old connection hangs up first, as a client
                // reconnecting from the same place would.
                if let Some(old) = self.slots[slot].take() {
                    self.hang_up(old);
                }
                if let Ok(conn) = self.server.accept(self.now, peer) {
                    assert!(self.accepted.insert(conn), "{conn} handed out twice");
                    self.slots[slot] = Some(conn);
                    self.clients.insert(
                        conn,
                        Client {
                            nick: String::new(),
                            room: String::new(),
                        },
                    );
                }
                self.drain();
            }
            Step::Lines { slot, lines, cuts } => {
                self.send(*slot, &render_lines(lines), cuts, chunked);
            }
            Step::Send { slot, pieces, cuts } => {
                self.send(*slot, &render(pieces), cuts, chunked);
            }
            Step::Close { slot } => {
                if let Some(conn) = self.slots[usize::from(*slot) % SLOTS].take() {
                    self.hang_up(conn);
                }
            }
            Step::Advance(jump) => self.advance(*jump),
            Step::Persisted { pick, stored } => {
                if self.unanswered.is_empty() {
                    return;
                }
                let id = self
                    .unanswered
                    .remove(usize::from(*pick) % self.unanswered.len());
                if *stored {
                    self.server.handle_persisted(self.now, id);
                } else {
                    self.server.handle_persist_failed(self.now, id);
                }
                self.drain();
            }
            Step::Verdict { pick, busy } => {
                if self.unverified.is_empty() {
                    return;
                }
                let check = self
                    .unverified
                    .remove(usize::from(*pick) % self.unverified.len());
                let verdict = if *busy {
                    PasswordVerdict::Busy
                } else {
                    verify(&check)
                };
                self.server
                    .handle_password_verdict(self.now, check.request, verdict);
                self.drain();
            }
            Step::SlowConsumer { slot } => {
                if let Some(conn) = self.slots[usize::from(*slot) % SLOTS] {
                    self.server.handle_slow_consumer(self.now, conn);
                    self.drain();
                }
            }
            Step::WallClock { unix_ms } => {
                // Anywhere from 1970 to the year 9999.
                self.server
                    .handle_wall_clock(self.now, unix_ms % 253_402_300_800_000);
            }
            Step::Shutdown => {
                self.server.handle_shutdown(self.now, "fuzzing");
                self.drain();
            }
        }
        if let Err(broken) = self.server.check_invariants() {
            panic!("invariant broken after {step:?}: {broken}");
        }
    }

    /// Bytes from the client in `slot`: whole, or cut where `cuts` say.
    fn send(&mut self, slot: u8, bytes: &[u8], cuts: &[u8; 4], chunked: bool) {
        let Some(conn) = self.slots[usize::from(slot) % SLOTS] else {
            return;
        };
        let mut points: Vec<usize> = if chunked {
            cuts.iter()
                .map(|&c| usize::from(c) % (bytes.len() + 1))
                .collect()
        } else {
            Vec::new()
        };
        points.sort_unstable();
        points.push(bytes.len());
        let mut start = 0;
        for cut in points {
            self.server.handle(self.now, conn, &bytes[start..cut]);
            self.drain();
            start = cut;
        }
    }

    /// The peer hung up: the core forgets it and must never address it again.
    fn hang_up(&mut self, conn: ConnId) {
        self.server.handle_closed(self.now, conn);
        self.closed.insert(conn);
        self.clients.remove(&conn);
        self.drain();
    }

    fn advance(&mut self, jump: Jump) {
        let length = match jump {
            Jump::Millis(ms) => Duration::from_millis(u64::from(ms)),
            Jump::Seconds(secs) => Duration::from_secs(u64::from(secs)),
            Jump::Hours(hours) => Duration::from_secs(u64::from(hours) * 3_600),
            Jump::Years(years) => Duration::from_secs(u64::from(years) * 365 * 86_400),
            Jump::ToDeadline => match self.server.poll_timeout() {
                Some(deadline) => deadline.saturating_duration_since(self.now),
                None => return,
            },
        };
        let elapsed = self.now.duration_since(*START);
        self.now += length.min(MAX_ELAPSED.saturating_sub(elapsed));
        if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
            self.server.handle_timeout(self.now);
            self.drain();
            if let Some(next) = self.server.poll_timeout() {
                assert!(
                    next > self.now,
                    "a deadline was left due after handle_timeout"
                );
            }
        }
    }

    fn drain(&mut self) {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Send { to, bytes, .. } => {
                    self.deliver(to, &bytes);
                    for line in lines(&bytes) {
                        self.heard_own(to, line);
                    }
                }
                Output::Broadcast {
                    to, except, bytes, ..
                } => {
                    assert!(
                        to.windows(2).all(|pair| pair[0] < pair[1]),
                        "broadcast recipients out of order: {to:?}"
                    );
                    for &conn in to.iter().filter(|&&c| Some(c) != except) {
                        self.deliver(conn, &bytes);
                    }
                    for line in lines(&bytes) {
                        self.heard_in_room(line);
                    }
                }
                Output::Close { conn, .. } => {
                    assert!(self.accepted.contains(&conn), "close of unknown {conn}");
                    assert!(self.closed.insert(conn), "{conn} closed twice");
                    self.clients.remove(&conn);
                    for slot in &mut self.slots {
                        if *slot == Some(conn) {
                            *slot = None;
                        }
                    }
                }
                Output::Persist(record) if record.kind == RecordKind::Reserve => {
                    // A reservation covers every id handed out so far.
                    assert!(
                        self.last_persisted.is_none_or(|last| record.id >= last),
                        "reservation {} below message id {:?}",
                        record.id,
                        self.last_persisted
                    );
                    self.unanswered.push(record.id);
                }
                Output::Persist(record) => {
                    assert!(
                        self.last_persisted.is_none_or(|last| record.id > last),
                        "message id {} after {:?}",
                        record.id,
                        self.last_persisted
                    );
                    self.last_persisted = Some(record.id);
                    self.unanswered.push(record.id);
                }
                Output::VerifyPassword(check) => self.unverified.push(*check),
                // Account work is answered at once: a hash no password
                // matches, and every change stored.
                Output::HashPassword(request) => self.server.handle_password_hashed(
                    self.now,
                    request.request,
                    Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".to_owned()),
                ),
                Output::StoreAccount(write) => {
                    self.server
                        .handle_account_stored(self.now, write.request, true);
                }
                Output::Bus(request) => {
                    panic!("bus request from a server outside a cluster: {request:?}")
                }
                // Nothing is stored here: every history query finds nothing.
                Output::QueryHistory(query) => self.server.handle_history_answer(
                    self.now,
                    chatd_core::history_query::HistoryAnswer {
                        request: query.request,
                        records: Vec::new(),
                        shortfall: None,
                    },
                ),
            }
        }
    }

    fn deliver(&mut self, conn: ConnId, bytes: &[u8]) {
        assert!(self.accepted.contains(&conn), "output to unknown {conn}");
        assert!(
            !self.closed.contains(&conn),
            "output to {conn} after it closed"
        );
        let text = std::str::from_utf8(bytes).expect("output is UTF-8");
        assert!(
            text.ends_with('\n'),
            "output to {conn} is not whole lines: {text:?}"
        );
        assert!(
            !text.contains("\n\n") && !text.starts_with('\n'),
            "an empty line: {text:?}"
        );
        self.received
            .entry(conn)
            .or_default()
            .extend_from_slice(bytes);
    }

    /// A line sent to `conn` alone: what it says about `conn` itself.
    /// (Only lines sent to one connection are read as "you": a broadcast
    /// "* you joined" is about someone nicknamed `you`.)
    fn heard_own(&mut self, conn: ConnId, line: &str) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        if let Some(rest) = line.strip_prefix("* welcome, you are ") {
            let (nick, rest) = rest.split_once(" in #").expect("a welcome names a room");
            let (room, _) = rest.split_once(';').expect("a welcome ends in help");
            client.nick = nick.to_owned();
            client.room = room.to_owned();
        } else if let Some(nick) = line.strip_prefix("* you are now ").filter(|n| is_nick(n)) {
            client.nick = nick.to_owned();
        } else if let Some(room) = line.strip_prefix("* you joined #") {
            client.room = room.to_owned();
        } else if let Some(rest) = line.strip_prefix("* you created ") {
            let (private, rest) = match rest.strip_prefix("private room ") {
                Some(rest) => (true, rest),
                None => (false, rest),
            };
            let room = rest
                .strip_prefix('#')
                .and_then(|rest| rest.split_once(';'))
                .map(|(room, _)| room)
                .expect("a creation names its room");
            client.room = room.to_owned();
            self.owners.insert(room.to_owned(), conn);
            self.private.insert(room.to_owned(), private);
        }
    }

    /// A line broadcast to a room: "* NAME now owns #ROOM".
    fn heard_in_room(&mut self, line: &str) {
        let Some((nick, rest)) = line.strip_prefix("* ").and_then(|l| l.split_once(' ')) else {
            return;
        };
        let Some(room) = rest.strip_prefix("now owns #") else {
            return;
        };
        if !is_nick(nick) || RoomName::parse(room).is_err() {
            return;
        }
        let heir = self
            .clients
            .iter()
            .find(|(_, client)| client.nick.eq_ignore_ascii_case(nick))
            .map(|(&conn, _)| conn)
            .unwrap_or_else(|| panic!("{nick} now owns #{room}, but nobody has that name"));
        self.owners.insert(room.to_owned(), heir);
    }

    /// The server against the model built from what clients were told.
    fn check_model(&self) {
        let sessions: BTreeMap<ConnId, Client> = self
            .server
            .sessions_view()
            .into_iter()
            .map(|(conn, nick, room)| {
                let client = Client {
                    nick: nick.to_string(),
                    room: room.to_string(),
                };
                (conn, client)
            })
            .collect();
        assert_eq!(
            sessions, self.clients,
            "the server's sessions differ from what clients were told"
        );

        let mut expected: BTreeSet<String> =
            self.clients.values().map(|c| c.room.clone()).collect();
        expected.insert(RoomName::general().to_string());
        let rooms = self.server.rooms_view();
        let names: BTreeSet<String> = rooms.iter().map(|r| r.name.to_string()).collect();
        assert_eq!(
            names, expected,
            "rooms differ from where clients were told they are"
        );
        for room in rooms {
            let name = room.name.to_string();
            if room.name == RoomName::general() {
                assert_eq!(room.owner, None, "#general has an owner");
                assert!(!room.private, "#general is private");
                continue;
            }
            assert_eq!(
                room.owner,
                self.owners.get(&name).copied(),
                "owner of #{name}"
            );
            assert_eq!(
                Some(&room.private),
                self.private.get(&name),
                "privacy of #{name}"
            );
        }
    }
}

/// What a verifier thread would answer: the password against the hash.
fn verify(check: &PasswordCheck) -> PasswordVerdict {
    let matches = PasswordHash::new(&check.hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(check.password.expose().as_bytes(), &hash)
            .is_ok()
    });
    if matches {
        PasswordVerdict::Match
    } else {
        PasswordVerdict::Mismatch
    }
}

fn is_nick(text: &str) -> bool {
    Nick::parse(text).is_ok()
}

/// The lines of an output, without their LF.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(bytes).expect("output is UTF-8").lines()
}

/// The bytes of command lines.
fn render_lines(lines: &[Line]) -> Vec<u8> {
    let pick = |list: &[&'static str], index: u8| list[usize::from(index) % list.len()];
    let mut bytes = Vec::new();
    for line in lines.iter().take(16) {
        bytes.extend_from_slice(pick(COMMANDS, line.command).as_bytes());
        for arg in line.args.iter().take(4) {
            bytes.push(b' ');
            let text = match arg {
                Arg::Name(i) => pick(NAMES, *i).to_owned(),
                Arg::Room(i) => pick(ROOMS, *i).to_owned(),
                Arg::Address(i) => pick(ADDRESSES, *i).to_owned(),
                Arg::Duration(i) => pick(DURATIONS, *i).to_owned(),
                Arg::Number(i) => pick(NUMBERS, *i).to_owned(),
                Arg::Text(i) => pick(TEXTS, *i).to_owned(),
                Arg::Int(value) => value.to_string(),
                Arg::Signed(value) => value.to_string(),
                Arg::Span { value, unit } => format!("{value}{}", pick(UNITS, *unit)),
                Arg::Raw(raw) => String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned(),
            };
            bytes.extend_from_slice(text.as_bytes());
        }
        bytes.push(b'\n');
    }
    bytes
}

/// The bytes of a send.
fn render(pieces: &[Piece]) -> Vec<u8> {
    let word = |index: u8| VOCABULARY[usize::from(index) % VOCABULARY.len()].as_bytes();
    let mut bytes = Vec::new();
    for piece in pieces.iter().take(32) {
        match piece {
            Piece::Word(index) => bytes.extend_from_slice(word(*index)),
            Piece::Repeat { word: index, times } => {
                for _ in 0..*times {
                    bytes.extend_from_slice(word(*index));
                }
            }
            Piece::Number(value) => bytes.extend_from_slice(value.to_string().as_bytes()),
            Piece::Signed(value) => bytes.extend_from_slice(value.to_string().as_bytes()),
            Piece::Duration { value, unit } => {
                bytes.extend_from_slice(value.to_string().as_bytes());
                bytes.extend_from_slice(UNITS[usize::from(*unit) % UNITS.len()].as_bytes());
            }
            Piece::Raw(raw) => bytes.extend(raw.iter().take(128)),
        }
    }
    bytes
}
