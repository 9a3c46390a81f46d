//! The cluster bus (engine/src/cluster) against a real redis-server: two
//! buses are two nodes. Each test starts its own Redis on a free loopback
//! port (tests/src/redis.rs) and ends in well under 20 s; where
//! redis-server is missing the tests say so loudly and pass, unless
//! `CHATD_REQUIRE_REDIS=1` (as in CI).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use chatd_core::cluster::{
    BusEvent, BusFailure, BusLine, BusRequest, BusWhisper, ModeFlag, NodeName, Presence,
    RoomChange, RoomMode, RoomSettings, Setting, SharedRoomBan, Speaker, keys,
};
use chatd_core::history_query::{HistoryAnswer, HistoryQuery, Position, QueryId, Scope, Shortfall};
use chatd_core::{ConnId, MessageId, Nick, Record, RecordKind, RoomName};
use chatd_engine::cluster::{BusError, BusSettings, ClusterBus, Delivery};
use chatd_tests::redis::RedisServer;

/// Longest wait for something that should happen promptly.
const PROMPT: Duration = Duration::from_secs(5);
/// Longest wait for a lease to run out (10 s) and be noticed (1 s).
const LEASE_WAIT: Duration = Duration::from_secs(13);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(600);

/// One node: its bus and what it delivered.
struct Node {
    name: NodeName,
    bus: Option<ClusterBus>,
    deliveries: Receiver<Delivery>,
    /// Lines delivered, in order: (id, text).
    lines: Vec<(u64, String)>,
    /// Other events not yet looked at.
    events: VecDeque<BusEvent>,
    answers: VecDeque<HistoryAnswer>,
}

fn start(redis: &RedisServer, name: &str) -> Result<Node, BusError> {
    start_at(&redis.url(), name, 100)
}

fn start_at(url: &str, name: &str, history_size: usize) -> Result<Node, BusError> {
    let (sender, deliveries) = std::sync::mpsc::channel();
    let node = NodeName::parse(name).unwrap();
    let bus = ClusterBus::start(
        BusSettings {
            url: url.to_owned(),
            node: node.clone(),
            history_size,
        },
        move |delivery| {
            let _ = sender.send(delivery);
        },
    )?;
    Ok(Node {
        name: node,
        bus: Some(bus),
        deliveries,
        lines: Vec::new(),
        events: VecDeque::new(),
        answers: VecDeque::new(),
    })
}

impl Node {
    fn bus(&self) -> &ClusterBus {
        self.bus.as_ref().expect("a running bus")
    }

    fn submit(&self, request: BusRequest) {
        self.bus().submit(request);
    }

    fn follow(&self, room: &str) {
        self.submit(BusRequest::Follow(room_name(room)));
    }

    fn post(&self, room: &str, text: &str) {
        self.submit(BusRequest::Post(Arc::new(line(&self.name, room, text))));
    }

    /// Takes one delivery (sorting it) if one comes before `until`.
    fn pump(&mut self, until: Instant) -> bool {
        let wait = until.saturating_duration_since(Instant::now());
        match self.deliveries.recv_timeout(wait) {
            Ok(Delivery::Event(BusEvent::Line { id, line })) => {
                assert_eq!(line.record.id, id, "the line carries its real id");
                self.lines.push((id.get(), line.record.text.clone()));
                true
            }
            Ok(Delivery::Event(event)) => {
                self.events.push_back(event);
                true
            }
            Ok(Delivery::History(answer)) => {
                self.answers.push_back(answer);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{}: the bus stopped delivering", self.name)
            }
        }
    }

    /// Waits for the first event matching `wanted` (others stay queued).
    fn expect(
        &mut self,
        what: &str,
        within: Duration,
        wanted: impl Fn(&BusEvent) -> bool,
    ) -> BusEvent {
        let until = Instant::now() + within;
        loop {
            if let Some(at) = self.events.iter().position(&wanted) {
                return self.events.remove(at).expect("an event found just above");
            }
            assert!(
                self.pump(until),
                "{}: no {what} within {within:?}; got {:?}",
                self.name,
                self.events
            );
        }
    }

    /// Waits until `count` lines were delivered, then for stragglers a
    /// moment, and returns them all.
    fn lines(&mut self, count: usize) -> Vec<(u64, String)> {
        let until = Instant::now() + PROMPT;
        while self.lines.len() < count {
            assert!(
                self.pump(until),
                "{}: {} lines of {count} within {PROMPT:?}: {:?}",
                self.name,
                self.lines.len(),
                self.lines
            );
        }
        let quiet = Instant::now() + QUIET;
        while self.pump(quiet) {}
        self.lines.clone()
    }

    fn answer(&mut self) -> HistoryAnswer {
        let until = Instant::now() + PROMPT;
        while self.answers.is_empty() {
            assert!(self.pump(until), "{}: no history answer", self.name);
        }
        self.answers.pop_front().expect("an answer")
    }

    fn up(&mut self) {
        self.expect("Up", PROMPT, |event| *event == BusEvent::Up);
    }

    fn posted(&mut self) -> Result<MessageId, BusFailure> {
        match self.expect("Posted", PROMPT, |event| {
            matches!(event, BusEvent::Posted { .. })
        }) {
            BusEvent::Posted { result, .. } => result,
            _ => unreachable!(),
        }
    }

    fn claimed(&mut self, nick: &str) -> Result<bool, BusFailure> {
        let conn = conn_id(7);
        self.submit(BusRequest::Claim {
            conn,
            nick: Nick::parse(nick).unwrap(),
        });
        match self.expect("Claimed", PROMPT, |event| {
            matches!(event, BusEvent::Claimed { .. })
        }) {
            BusEvent::Claimed {
                result,
                conn: c,
                nick: n,
            } => {
                assert_eq!((c, n.as_str()), (conn, nick));
                result
            }
            _ => unreachable!(),
        }
    }

    /// Stops without cleaning up, as a killed process would.
    fn crash(&mut self) {
        self.bus.take().expect("a running bus").crash();
    }
}

fn room_name(room: &str) -> RoomName {
    RoomName::parse(room).unwrap()
}

fn conn_id(raw: u64) -> ConnId {
    serde_json::from_str(&raw.to_string()).unwrap()
}

fn speaker(nick: &str) -> Speaker {
    Speaker {
        nick: Nick::parse(nick).unwrap(),
        user: nick.into(),
        host: "127.0.0.1".parse().unwrap(),
    }
}

fn line(node: &NodeName, room: &str, text: &str) -> BusLine {
    BusLine {
        record: Record {
            id: MessageId::new(0),
            room: room_name(room),
            ts: 1_795_000_000_000,
            from: Nick::parse("alice").unwrap(),
            kind: RecordKind::Msg,
            text: text.into(),
            to: None,
            private: false,
        },
        user: "alice".into(),
        host: "127.0.0.1".parse().unwrap(),
        notice: false,
        node: node.clone(),
        conn: conn_id(3),
    }
}

/// What the post script does, without the publish: a line that is in the
/// stream but that no node was told about (as if published while they
/// were away).
fn post_unpublished(redis: &RedisServer, room: &str, text: &str) -> u64 {
    let mut conn = redis.client();
    let id: u64 = redis::cmd("INCR")
        .arg(keys::NEXT_ID)
        .query(&mut conn)
        .unwrap();
    let json = serde_json::to_string(&line(&NodeName::parse("raw").unwrap(), room, text)).unwrap();
    let _: () = redis::cmd("XADD")
        .arg(keys::room(&room_name(room)))
        .arg(format!("{id}-0"))
        .arg("m")
        .arg(json)
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(keys::TAILS)
        .arg(room)
        .arg(id)
        .query(&mut conn)
        .unwrap();
    id
}

fn texts(lines: &[(u64, String)]) -> Vec<&str> {
    lines.iter().map(|(_, text)| text.as_str()).collect()
}

fn assert_increasing(lines: &[(u64, String)]) {
    assert!(
        lines.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "ids not increasing: {lines:?}"
    );
}

/// Waits until a follow shows in Redis (a follow has no answer).
fn wait_following(redis: &RedisServer, room: &str, node: &str) {
    let mut conn = redis.client();
    let until = Instant::now() + PROMPT;
    loop {
        let member: bool = redis::cmd("SISMEMBER")
            .arg(keys::followers(&room_name(room)))
            .arg(node)
            .query(&mut conn)
            .unwrap();
        if member {
            return;
        }
        assert!(Instant::now() < until, "{node} does not follow {room}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

macro_rules! redis_or_skip {
    () => {
        match RedisServer::start() {
            Some(redis) => redis,
            None => return,
        }
    };
}

#[test]
fn a_post_reaches_every_follower_in_order_with_chained_ids() {
    let redis = redis_or_skip!();
    let mut n1 = start(&redis, "n1").unwrap();
    let mut n2 = start(&redis, "n2").unwrap();
    n1.up();
    n2.up();
    // A third follower read raw: the envelopes as the post script writes them.
    let mut watcher = redis.client();
    let _: () = redis::cmd("SADD")
        .arg(keys::followers(&room_name("rust")))
        .arg("n3")
        .query(&mut watcher)
        .unwrap();
    let mut pubsub = watcher.as_pubsub();
    pubsub
        .subscribe(keys::channel(&NodeName::parse("n3").unwrap()))
        .unwrap();
    pubsub.set_read_timeout(Some(PROMPT)).unwrap();
    n1.follow("rust");
    n2.follow("rust");
    wait_following(&redis, "rust", "n1");
    wait_following(&redis, "rust", "n2");
    // One burst: queued together, sent as one pipeline, its lines in one
    // post call (a batch envelope) once the queue holds several.
    let burst: Vec<String> = (1..=40).map(|k| format!("line {k}")).collect();
    for text in &burst {
        n1.post("rust", text);
    }
    n2.post("rust", "four");
    let total = burst.len() + 1;
    let seen = n1.lines(total);
    assert_eq!(seen, n2.lines(total), "both nodes see one order");
    assert_increasing(&seen);
    // n1's burst keeps its order; n2's line falls anywhere around it.
    let ones: Vec<&str> = texts(&seen).into_iter().filter(|t| *t != "four").collect();
    assert_eq!(ones, burst);
    let posted: Vec<u64> = (0..burst.len())
        .map(|_| n1.posted().unwrap().get())
        .collect();
    assert_eq!(
        posted,
        seen.iter()
            .filter(|(_, t)| t != "four")
            .map(|(id, _)| *id)
            .collect::<Vec<_>>()
    );
    // The envelopes, one line or a batch, chain every id to the one before.
    let mut chained = Vec::new();
    let mut batches = 0;
    while chained.len() < seen.len() {
        let payload: String = pubsub.get_message().unwrap().get_payload().unwrap();
        let envelope: serde_json::Value = serde_json::from_str(&payload).unwrap();
        let prev = envelope["prev"].as_u64().unwrap();
        let lines = match envelope["t"].as_str() {
            Some("line") => {
                chained.push((envelope["id"].as_u64().unwrap(), prev));
                vec![envelope["line"].clone()]
            }
            Some("lines") => {
                batches += 1;
                let first = envelope["first"].as_u64().unwrap();
                let lines = envelope["lines"].as_array().unwrap().clone();
                assert!(lines.len() > 1, "{payload}");
                for k in 0..lines.len() as u64 {
                    let before = if k == 0 { prev } else { first + k - 1 };
                    chained.push((first + k, before));
                }
                lines
            }
            _ => panic!("not a line: {payload}"),
        };
        for line in lines {
            assert_eq!(line["record"]["id"], 0, "the stored line says 0");
        }
    }
    let expected: Vec<(u64, u64)> = seen
        .iter()
        .scan(0, |before, (id, _)| {
            Some((*id, std::mem::replace(before, *id)))
        })
        .collect();
    assert_eq!(chained, expected);
    assert!(
        batches > 0,
        "a burst of {} posts went as single lines",
        burst.len()
    );
}

#[test]
fn unfollowed_rooms_are_quiet_and_a_new_follow_starts_at_the_tail() {
    let redis = redis_or_skip!();
    let mut n1 = start(&redis, "n1").unwrap();
    let mut n2 = start(&redis, "n2").unwrap();
    n1.up();
    n2.up();
    n1.follow("rust");
    wait_following(&redis, "rust", "n1");
    n2.post("rust", "before unfollow");
    assert_eq!(texts(&n1.lines(1)), ["before unfollow"]);
    n1.submit(BusRequest::Unfollow(room_name("rust")));
    n2.post("rust", "while away");
    n2.posted().unwrap();
    std::thread::sleep(QUIET);
    let mut conn = redis.client();
    let member: bool = redis::cmd("SISMEMBER")
        .arg(keys::followers(&room_name("rust")))
        .arg("n1")
        .query(&mut conn)
        .unwrap();
    assert!(!member);
    // Following again: what was said meanwhile is history, not news.
    n1.follow("rust");
    wait_following(&redis, "rust", "n1");
    n2.post("rust", "after follow");
    assert_eq!(texts(&n1.lines(2)), ["before unfollow", "after follow"]);
}

#[test]
fn a_gap_is_filled_from_the_stream_in_order() {
    let redis = redis_or_skip!();
    let mut n1 = start(&redis, "n1").unwrap();
    let mut n2 = start(&redis, "n2").unwrap();
    n1.up();
    n2.up();
    n1.follow("rust");
    wait_following(&redis, "rust", "n1");
    n2.post("rust", "first");
    assert_eq!(n1.lines(1).len(), 1);
    post_unpublished(&redis, "rust", "missed one");
    post_unpublished(&redis, "rust", "missed two");
    n2.post("rust", "next");
    let seen = n1.lines(4);
    assert_eq!(texts(&seen), ["first", "missed one", "missed two", "next"]);
    assert_increasing(&seen);
}

#[test]
fn claims_are_granted_refused_and_taken_over_after_the_holders_lease() {
    let redis = redis_or_skip!();
    let mut n1 = start(&redis, "n1").unwrap();
    let mut n2 = start(&redis, "n2").unwrap();
    n1.up();
    n2.up();
    assert_eq!(n1.claimed("alice"), Ok(true));
    assert_eq!(
        n1.claimed("Alice"),
        Ok(true),
        "already this node's (folded)"
    );
    assert_eq!(n2.claimed("ALICE"), Ok(false), "held by a live node");
    assert_eq!(n2.claimed("bob"), Ok(true));
    n2.submit(BusRequest::Release(Nick::parse("bob").unwrap()));
    // A release has no answer: wait until it shows in Redis.
    let mut conn = redis.client();
    let until = Instant::now() + PROMPT;
    while redis::cmd("EXISTS")
        .arg(keys::nick(&Nick::parse("bob").unwrap()))
        .query::<bool>(&mut conn)
        .unwrap()
    {
        assert!(Instant::now() < until, "bob was not released");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(n1.claimed("bob"), Ok(true), "released");
    n1.crash();
    let until = Instant::now() + LEASE_WAIT;
    loop {
        let exists: bool = redis::cmd("EXISTS")
            .arg(keys::lease(&NodeName::parse("n1").unwrap()))
            .query(&mut conn)
            .unwrap();
        if !exists {
            break;
        }
        assert!(Instant::now() < until, "n1's lease outlived {LEASE_WAIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(n2.claimed("alice"), Ok(true), "its holder's lease expired");
}

#[test]
fn whispers_and_announcements_reach_the_other_node() {
    let redis = redis_or_skip!();
    let mut n1 = start(&redis, "n1").unwrap();
    let mut n2 = start(&redis, "n2").unwrap();
    n1.up();
    n2.up();
    assert_eq!(n2.claimed("bob"), Ok(true));
    let whisper = BusWhisper {
        from: speaker("alice"),
        to: Nick::parse("Bob").unwrap(),
        text: "psst".into(),
        notice: false,
        node: n1.name.clone(),
        conn: conn_id(3),
    };
    n1.submit(BusRequest::Whisper(Box::new(whisper.clone())));
    let sent = match n1.expect("Whispered", PROMPT, |e| {
        matches!(e, BusEvent::Whispered { .. })
    }) {
        BusEvent::Whispered { result, .. } => result.unwrap(),
        _ => unreachable!(),
    };
    match n2.expect("Whisper", PROMPT, |e| matches!(e, BusEvent::Whisper { .. })) {
        BusEvent::Whisper { id, whisper: got } => {
            assert_eq!(id, sent);
            assert_eq!(*got, whisper);
        }
        _ => unreachable!(),
    }
    let nobody = BusWhisper {
        to: Nick::parse("nobody").unwrap(),
        ..whisper
    };
    n1.submit(BusRequest::Whisper(Box::new(nobody)));
    match n1.expect("Whispered", PROMPT, |e| {
        matches!(e, BusEvent::Whispered { .. })
    }) {
        BusEvent::Whispered { result, .. } => assert_eq!(result, Err(BusFailure::NoSuchNick)),
        _ => unreachable!(),
    }
    let presence = Presence::Joined {
        who: speaker("alice"),
        room: room_name("rust"),
        private: false,
    };
    n1.submit(BusRequest::Announce(presence.clone()));
    let heard = n2.expect("Presence", PROMPT, |e| {
        matches!(e, BusEvent::Presence { .. })
    });
    assert_eq!(
        heard,
        BusEvent::Presence {
            node: n1.name.clone(),
            presence
        }
    );
    std::thread::sleep(QUIET);
    while n1.pump(Instant::now()) {}
    assert!(
        !n1.events
            .iter()
            .any(|e| matches!(e, BusEvent::Presence { .. })),
        "an announcement is not sent to its own node"
    );
}

fn topic_change(node: &NodeName, room: &str, topic: Option<&str>) -> Box<RoomChange> {
    let topic = Setting::Topic {
        topic: topic.map(str::to_owned),
    };
    room_change(node, room, topic, 0)
}

fn room_change(node: &NodeName, room: &str, setting: Setting, at_ms: u64) -> Box<RoomChange> {
    Box::new(RoomChange {
        room: room_name(room),
        setting,
        by: speaker("alice"),
        node: node.clone(),
        conn: conn_id(3),
        at_ms,
    })
}

fn room_ban(address: &str, until_ms: Option<u64>) -> Setting {
    Setting::Ban {
        address: address.parse().unwrap(),
        ban: SharedRoomBan {
            until_ms,
            reason: Some("spam \"quoted\"".into()),
        },
        target: None,
        for_ms: None,
    }
}

fn settings_heard(node: &mut Node) -> (RoomSettings, Box<RoomChange>) {
    match node.expect("RoomSettings", PROMPT, |e| {
        matches!(e, BusEvent::RoomSettings { .. })
    }) {
        BusEvent::RoomSettings { settings, change } => (settings, change),
        _ => unreachable!(),
    }
}

/// The settle script in Redis (its Lua and cjson): a change reaches every
/// node, the changer's too, merged into what Redis keeps, which a node
/// reads when its bus connects; a cleared topic leaves nothing, and text
/// that JSON must escape comes back as it went.
#[test]
fn room_settings_reach_every_node_and_are_read_when_a_bus_connects() {
    let redis = redis_or_skip!();
    let mut n1 = start(&redis, "n1").unwrap();
    let mut n2 = start(&redis, "n2").unwrap();
    n1.up();
    n2.up();
    let topic = "all things \"rust\" / \\ é 日本 \u{1}";
    let change = topic_change(&n1.name, "rust", Some(topic));
    n1.submit(BusRequest::Settle(change.clone()));
    match n1.expect("Settled", PROMPT, |e| matches!(e, BusEvent::Settled { .. })) {
        BusEvent::Settled { result, .. } => assert_eq!(result, Ok(())),
        _ => unreachable!(),
    }
    let expected = RoomSettings {
        topic: Some(topic.to_owned()),
        ..RoomSettings::default()
    };
    for node in [&mut n1, &mut n2] {
        assert_eq!(settings_heard(node), (expected.clone(), change.clone()));
    }
    let mut n3 = start(&redis, "n3").unwrap();
    match n3.expect("AllSettings", PROMPT, |e| {
        matches!(e, BusEvent::AllSettings(_))
    }) {
        BusEvent::AllSettings(all) => assert_eq!(all, vec![(room_name("rust"), expected.clone())]),
        _ => unreachable!(),
    }
    n3.up();
    // Modes and bans: the script's merge (Lua, cjson) is the core's
    // (`RoomSettings::merged`), entry by entry, and drops ended bans.
    let now_ms = 1_796_000_000_000;
    let steps = [
        Setting::Modes {
            modes: vec![
                RoomMode::Key {
                    key: Some("sesame".into()),
                },
                RoomMode::Limit {
                    limit: Some(u32::MAX),
                },
                RoomMode::Flag {
                    flag: ModeFlag::NoOutside,
                    on: false,
                },
                RoomMode::Flag {
                    flag: ModeFlag::Private,
                    on: true,
                },
                RoomMode::Mask {
                    mask: "bad!*@*".into(),
                    on: true,
                },
                RoomMode::Mask {
                    mask: "worse!*@*".into(),
                    on: true,
                },
            ],
        },
        room_ban("10.0.0.1", Some(now_ms + 1)),
        room_ban("::1", None),
        room_ban("10.0.0.2", Some(now_ms + 600_000)),
        Setting::Topic { topic: None },
        Setting::Modes {
            modes: vec![RoomMode::Mask {
                mask: "bad!*@*".into(),
                on: false,
            }],
        },
    ];
    let mut model = expected.clone();
    for (at, setting) in steps.into_iter().enumerate() {
        let at_ms = now_ms + at as u64;
        model = model.merged(&setting, at_ms);
        n1.submit(BusRequest::Settle(room_change(
            &n1.name, "rust", setting, at_ms,
        )));
        for node in [&mut n1, &mut n2, &mut n3] {
            assert_eq!(settings_heard(node).0, model, "after step {at}");
        }
    }
    assert_eq!(model.bans.len(), 2, "the ended ban is gone: {model:?}");
    assert_eq!(model.masks.len(), 1);
    let undo = [
        Setting::Unban {
            address: "::1".parse().unwrap(),
        },
        Setting::Unban {
            address: "10.0.0.2".parse().unwrap(),
        },
        Setting::Modes {
            modes: vec![
                RoomMode::Key { key: None },
                RoomMode::Limit { limit: None },
                RoomMode::Flag {
                    flag: ModeFlag::NoOutside,
                    on: true,
                },
                RoomMode::Mask {
                    mask: "worse!*@*".into(),
                    on: false,
                },
            ],
        },
    ];
    for setting in undo {
        model = model.merged(&setting, now_ms);
        n2.submit(BusRequest::Settle(room_change(
            &n2.name, "rust", setting, now_ms,
        )));
        assert_eq!(settings_heard(&mut n1).0, model);
    }
    assert_eq!(model.private, Some(true), "-i is kept apart from never set");
    // Ownership: a creation starts over with its owner; of two hand-offs
    // from the same owner only the first is made, the second is answered
    // Outdated and published to nobody.
    let alice = Nick::parse("alice").unwrap();
    let created = Setting::Created { owner: alice };
    n1.submit(BusRequest::Settle(room_change(
        &n1.name, "rust", created, now_ms,
    )));
    let owned = RoomSettings {
        owner: Some(alice),
        ..RoomSettings::default()
    };
    for node in [&mut n1, &mut n2, &mut n3] {
        while settings_heard(node).0 != owned {}
    }
    let hand_off = |to: &str| Setting::Owner {
        nick: Some(Nick::parse(to).unwrap()),
        was: Some(alice),
    };
    n1.submit(BusRequest::Settle(room_change(
        &n1.name,
        "rust",
        hand_off("bob"),
        now_ms,
    )));
    let answer = |node: &mut Node, asked: &Setting| match node.expect(
        "Settled",
        PROMPT,
        |e| matches!(e, BusEvent::Settled { change, .. } if change.setting == *asked),
    ) {
        BusEvent::Settled { result, .. } => result,
        _ => unreachable!(),
    };
    assert_eq!(answer(&mut n1, &hand_off("bob")), Ok(()));
    n2.submit(BusRequest::Settle(room_change(
        &n2.name,
        "rust",
        hand_off("carol"),
        now_ms,
    )));
    assert_eq!(
        answer(&mut n2, &hand_off("carol")),
        Err(BusFailure::Outdated)
    );
    let bobs = RoomSettings {
        owner: Some(Nick::parse("bob").unwrap()),
        ..RoomSettings::default()
    };
    for node in [&mut n1, &mut n2, &mut n3] {
        assert_eq!(settings_heard(node).0, bobs);
    }
    n2.submit(BusRequest::Settle(room_change(
        &n2.name,
        "rust",
        Setting::Reset,
        now_ms,
    )));
    for node in [&mut n1, &mut n2, &mut n3] {
        while settings_heard(node).0 != RoomSettings::default() {}
    }
    let stored: Option<String> = redis::cmd("HGET")
        .arg(keys::SETTINGS)
        .arg("rust")
        .query(&mut redis.client())
        .unwrap();
    assert_eq!(
        stored, None,
        "nothing is kept of a room back to its defaults"
    );
}

#[test]
fn a_node_that_dies_is_gone_within_its_lease_once() {
    let redis = redis_or_skip!();
    let mut n1 = start(&redis, "n1").unwrap();
    let mut n2 = start(&redis, "n2").unwrap();
    n1.up();
    n2.up();
    n2.follow("rust");
    wait_following(&redis, "rust", "n2");
    // n1 has seen n2 in the node set (it looks every second) before it dies.
    std::thread::sleep(Duration::from_millis(2500));
    let died = Instant::now();
    n2.crash();
    let gone = n1.expect("NodeGone", LEASE_WAIT, |e| {
        matches!(e, BusEvent::NodeGone(_))
    });
    assert_eq!(gone, BusEvent::NodeGone(NodeName::parse("n2").unwrap()));
    assert!(
        died.elapsed() < Duration::from_secs(12),
        "noticed after {:?}",
        died.elapsed()
    );
    let mut conn = redis.client();
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys::NODES)
        .query(&mut conn)
        .unwrap();
    assert_eq!(nodes, ["n1"]);
    let followers: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys::followers(&room_name("rust")))
        .query(&mut conn)
        .unwrap();
    assert!(followers.is_empty(), "{followers:?}");
    std::thread::sleep(Duration::from_millis(1500));
    while n1.pump(Instant::now()) {}
    assert!(
        !n1.events.iter().any(|e| matches!(e, BusEvent::NodeGone(_))),
        "told once"
    );
}

#[test]
fn a_name_held_by_a_live_node_is_refused_at_start_and_freed_by_a_graceful_stop() {
    let redis = redis_or_skip!();
    let mut n1 = start(&redis, "n1").unwrap();
    n1.up();
    match start(&redis, "n1") {
        Err(error @ BusError::NameInUse(_)) => {
            assert_eq!(
                error.to_string(),
                "node name n1 is already in use by a live node"
            );
        }
        other => panic!("a second n1 started: {:?}", other.map(|node| node.name)),
    }
    n1.bus.take().unwrap().shutdown();
    let mut conn = redis.client();
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys::NODES)
        .query(&mut conn)
        .unwrap();
    assert!(nodes.is_empty(), "{nodes:?}");
    let mut again = start(&redis, "n1").expect("the name is free after a graceful stop");
    again.up();
}

#[test]
fn redis_killed_means_down_and_unavailable_then_up_with_every_missed_line_once() {
    let mut redis = redis_or_skip!();
    let mut n1 = start(&redis, "n1").unwrap();
    let mut n2 = start(&redis, "n2").unwrap();
    n1.up();
    n2.up();
    n1.follow("rust");
    n2.follow("rust");
    wait_following(&redis, "rust", "n1");
    wait_following(&redis, "rust", "n2");
    n2.post("rust", "acknowledged");
    let acked = n2.posted().unwrap();
    assert_eq!(texts(&n1.lines(1)), ["acknowledged"]);
    // In the stream (and the AOF) but never published: n1 learns of them
    // only by catching up after the reconnect.
    post_unpublished(&redis, "rust", "missed one");
    post_unpublished(&redis, "rust", "missed two");
    redis.kill_9();
    n1.expect("Down", PROMPT, |e| *e == BusEvent::Down);
    n2.expect("Down", PROMPT, |e| *e == BusEvent::Down);
    n1.post("rust", "refused");
    assert_eq!(n1.posted(), Err(BusFailure::Unavailable));
    assert_eq!(n1.claimed("alice"), Err(BusFailure::Unavailable));
    n1.submit(BusRequest::Whisper(Box::new(BusWhisper {
        from: speaker("alice"),
        to: Nick::parse("bob").unwrap(),
        text: "x".into(),
        notice: false,
        node: n1.name.clone(),
        conn: conn_id(3),
    })));
    match n1.expect("Whispered", PROMPT, |e| {
        matches!(e, BusEvent::Whispered { .. })
    }) {
        BusEvent::Whispered { result, .. } => assert_eq!(result, Err(BusFailure::Unavailable)),
        _ => unreachable!(),
    }
    n1.bus().query_history(Box::new(HistoryQuery {
        request: QueryId(9),
        conn: conn_id(3),
        scope: Scope::Room {
            room: room_name("rust"),
            private_ok: false,
        },
        position: Position::Latest,
        limit: 3,
        below: None,
    }));
    let unreadable = n1.answer();
    assert_eq!(
        (unreadable.request, unreadable.shortfall),
        (QueryId(9), Some(Shortfall::Unreadable))
    );
    redis.restart();
    n1.expect("Up", Duration::from_secs(10), |e| *e == BusEvent::Up);
    n2.expect("Up", Duration::from_secs(10), |e| *e == BusEvent::Up);
    n2.post("rust", "after");
    let seen = n1.lines(4);
    assert_eq!(
        texts(&seen),
        ["acknowledged", "missed one", "missed two", "after"]
    );
    assert_increasing(&seen);
    assert_eq!(
        seen[0].0,
        acked.get(),
        "the acknowledged line survived kill -9"
    );
    // And history, read from the stream, has them all.
    n1.bus().query_history(Box::new(HistoryQuery {
        request: QueryId(1),
        conn: conn_id(3),
        scope: Scope::Room {
            room: room_name("rust"),
            private_ok: false,
        },
        position: Position::Latest,
        limit: 3,
        below: None,
    }));
    let answer = n1.answer();
    assert_eq!(answer.shortfall, None);
    let history: Vec<&str> = answer.records.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(history, ["missed one", "missed two", "after"]);
}

#[test]
fn a_bus_started_without_redis_is_down_then_up_when_redis_comes() {
    let mut redis = redis_or_skip!();
    redis.kill_9();
    let mut n1 = start(&redis, "n1").expect("starts down, not failed");
    n1.expect("Down", PROMPT, |e| *e == BusEvent::Down);
    assert!(!n1.bus().is_up());
    n1.post("rust", "refused");
    assert_eq!(n1.posted(), Err(BusFailure::Unavailable));
    // Followed while down: registered once up.
    n1.follow("rust");
    redis.restart();
    n1.expect("Up", Duration::from_secs(10), |e| *e == BusEvent::Up);
    wait_following(&redis, "rust", "n1");
    n1.post("rust", "hello");
    assert_eq!(texts(&n1.lines(1)), ["hello"]);
}

#[test]
fn history_and_search_are_read_from_the_streams() {
    let redis = redis_or_skip!();
    let mut n1 = start(&redis, "n1").unwrap();
    n1.up();
    for (room, text) in [
        ("rust", "alpha one"),
        ("go", "alpha two"),
        ("rust", "beta"),
        ("rust", "gamma"),
    ] {
        n1.post(room, text);
        n1.posted().unwrap();
    }
    let query = |request, scope, position, below| HistoryQuery {
        request: QueryId(request),
        conn: conn_id(3),
        scope,
        position,
        limit: 10,
        below,
    };
    let room = Scope::Room {
        room: room_name("rust"),
        private_ok: false,
    };
    n1.bus()
        .query_history(Box::new(query(1, room.clone(), Position::Latest, None)));
    let all = n1.answer();
    let texts_of = |answer: &HistoryAnswer| {
        answer
            .records
            .iter()
            .map(|r| r.text.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(texts_of(&all), ["alpha one", "beta", "gamma"]);
    assert!(all.records.iter().all(|r| r.id.get() > 0));
    // Below an id: the core holds the rest.
    let below = all.records[2].id;
    n1.bus()
        .query_history(Box::new(query(2, room, Position::Latest, Some(below))));
    assert_eq!(texts_of(&n1.answer()), ["alpha one", "beta"]);
    let search = Scope::Search {
        terms: chatd_core::history_query::SearchTerms::parse("alpha").unwrap(),
        room: None,
        private_rooms: Vec::new(),
    };
    n1.bus()
        .query_history(Box::new(query(3, search, Position::Latest, None)));
    let found = n1.answer();
    assert_eq!(found.request, QueryId(3));
    assert_eq!(texts_of(&found), ["alpha one", "alpha two"]);
    // Deeper than one page of the stream (n2 keeps 1000 lines a room):
    // read down page by page.
    let mut n2 = start_at(&redis.url(), "n2", 1000).unwrap();
    n2.up();
    for n in 0..600 {
        n2.post("big", &format!("line {n}"));
    }
    let ids: Vec<MessageId> = (0..600).map(|_| n2.posted().unwrap()).collect();
    let big = Scope::Room {
        room: room_name("big"),
        private_ok: false,
    };
    n2.bus().query_history(Box::new(HistoryQuery {
        limit: 3,
        ..query(4, big, Position::Before(ids[10]), None)
    }));
    assert_eq!(texts_of(&n2.answer()), ["line 7", "line 8", "line 9"]);
    // n1 keeps 100 a room: its posts trim the stream (MAXLEN ~ 100).
    for n in 0..600 {
        n1.post("trimmed", &format!("line {n}"));
    }
    for _ in 0..600 {
        n1.posted().unwrap();
    }
    let length: usize = redis::cmd("XLEN")
        .arg(keys::room(&room_name("trimmed")))
        .query(&mut redis.client())
        .unwrap();
    assert!((100..300).contains(&length), "{length} lines kept");
}

/// `GET path` on the HTTP listener: the whole answer.
fn get(http: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(PROMPT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Asks `/readyz` until it answers `status`.
fn wait_ready(http: std::net::SocketAddr, status: &str, within: Duration) {
    let until = Instant::now() + within;
    loop {
        let answer = get(http, "/readyz");
        if answer.starts_with(&format!("HTTP/1.1 {status}")) {
            return;
        }
        assert!(Instant::now() < until, "/readyz is not {status}: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_launched_node_is_ready_only_while_its_bus_reaches_redis() {
    use chatd_engine::clock::ManualClock;
    use chatd_engine::persist::FsyncPolicy;
    use chatd_engine::settings::{ClusterSettings, NO_LISTENER, ServerSettings, Settings};
    let mut redis = redis_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        server: ServerSettings {
            bind: "127.0.0.1:0".into(),
            irc_bind: NO_LISTENER.into(),
            http_bind: "127.0.0.1:0".into(),
            threads: 1,
            data_dir: dir.path().to_path_buf(),
            fsync: FsyncPolicy::Never,
            persist: false,
            ..ServerSettings::default()
        },
        chat: Default::default(),
        history: Default::default(),
        tls: Default::default(),
        http: Default::default(),
        cluster: Some(ClusterSettings::new(&redis.url(), "n1").unwrap()),
    };
    let running = chatd_engine::launch(
        &settings,
        &chatd_backend_poll::PollBackend,
        Arc::new(ManualClock::new(1_795_000_000_000)),
    )
    .unwrap();
    let http = running.http_addr(false).unwrap();
    wait_ready(http, "200", PROMPT);
    redis.kill_9();
    wait_ready(http, "503", PROMPT);
    assert!(get(http, "/readyz").ends_with("\r\ncluster unavailable\n"));
    redis.restart();
    wait_ready(http, "200", Duration::from_secs(10));
    // A graceful stop gives the lease back.
    running.shutdown("test over");
    running.wait();
    let lease: bool = redis::cmd("EXISTS")
        .arg(keys::lease(&NodeName::parse("n1").unwrap()))
        .query(&mut redis.client())
        .unwrap();
    assert!(!lease, "the lease outlived a graceful stop");
}

#[test]
fn a_lost_lease_means_down_and_a_name_taken_meanwhile_keeps_the_node_down() {
    let redis = redis_or_skip!();
    let mut n1 = start(&redis, "n1").unwrap();
    n1.up();
    // Another process holds n1's name now (as if n1's lease had expired
    // and a second n1 had started): n1's next renewal finds it.
    let lease = keys::lease(&NodeName::parse("n1").unwrap());
    let mut conn = redis.client();
    let _: () = redis::cmd("SET")
        .arg(&lease)
        .arg("someone else")
        .query(&mut conn)
        .unwrap();
    n1.expect("Down", PROMPT, |e| *e == BusEvent::Down);
    std::thread::sleep(Duration::from_secs(2));
    while n1.pump(Instant::now()) {}
    assert!(
        !n1.events.contains(&BusEvent::Up),
        "up with its name held elsewhere"
    );
    assert!(!n1.bus().is_up());
    let holder: String = redis::cmd("GET").arg(&lease).query(&mut conn).unwrap();
    assert_eq!(
        holder, "someone else",
        "the other holder's lease is left alone"
    );
    // The other one goes away: n1 takes its name back.
    let _: () = redis::cmd("DEL").arg(&lease).query(&mut conn).unwrap();
    n1.expect("Up", Duration::from_secs(8), |e| *e == BusEvent::Up);
}
