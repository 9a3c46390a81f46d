//! The command thread: the session with Redis, the hot path that turns
//! queued requests into one pipeline, the lease, and the watch over the
//! other nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd_core::MessageId;
use chatd_core::cluster::{
    BusEvent, BusFailure, BusLine, BusRequest, Envelope, NodeName, RoomSettings, keys,
};
use chatd_core::ids::RoomName;
use redis::Value;

use super::link::{Backoff, Link, TIMEOUT};
use super::rooms::Start;
use super::{LEASE, RENEW_EVERY, Shared, Stop, WATCH_EVERY};

/// Why a session could not start or went on no longer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// Redis failed (connection, timeout, a script error).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Another live node holds our name.
    #[error("this node's name is held by another live node")]
    NameInUse,
    /// Our lease expired before we renewed it.
    #[error("the lease expired")]
    LeaseLost,
    /// The subscriber could not subscribe, or its connection failed.
    #[error("the pub/sub connection failed")]
    Subscriber,
    /// A request's JSON could not be made (a bug).
    #[error("cannot encode a request: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The command thread's own state.
pub(crate) struct Commands {
    shared: Arc<Shared>,
    link: Link,
    backoff: Backoff,
    next_renew: Instant,
    next_watch: Instant,
    /// Other nodes seen in the node set, watched until their lease goes.
    known: BTreeSet<NodeName>,
    /// Nodes reported gone (once each, until their lease is back).
    gone: BTreeSet<NodeName>,
    /// `Down` was delivered since the last `Up`.
    said_down: bool,
    /// This process has not held its lease yet: on the first connection,
    /// nickname keys a killed process of the same name left are dropped.
    fresh: bool,
}

/// What a queued request becomes once its reply is in.
enum Sent {
    /// One room's lines, in order: the reply is the first one's id.
    Posts(Vec<Arc<BusLine>>),
    Whisper(Box<chatd_core::cluster::BusWhisper>),
    Order(Box<chatd_core::cluster::BusOrder>),
    Claim {
        conn: chatd_core::ConnId,
        nick: chatd_core::Nick,
    },
    Follow {
        room: chatd_core::ids::RoomName,
        generation: u64,
    },
    /// A nickname given back: no answer; a failure keeps it for the next
    /// connection.
    Release(chatd_core::Nick),
    Settle(Box<chatd_core::cluster::RoomChange>),
    /// Unfollow, announce: no answer; a failure is logged.
    Quiet(&'static str),
}

impl Commands {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let link = Link::new(shared.client.clone());
        let now = Instant::now();
        Self {
            shared,
            link,
            backoff: Backoff::new(),
            next_renew: now,
            next_watch: now,
            known: BTreeSet::new(),
            gone: BTreeSet::new(),
            said_down: false,
            fresh: true,
        }
    }

    /// The thread's loop: serve requests while up, reconnect while down,
    /// until stopped.
    pub(crate) fn run(mut self) {
        loop {
            let up = self.shared.state().up;
            if !up {
                let delay = self.backoff.next_delay();
                if self.wait_stop(delay) {
                    return;
                }
                match self.connect() {
                    Ok(()) => self.backoff.reset(),
                    Err(SessionError::NameInUse) => {
                        tracing::error!(
                            node = %self.shared.node,
                            "node name {} is already in use by a live node; the cluster stays down",
                            self.shared.node
                        );
                        self.fail(&SessionError::NameInUse);
                    }
                    Err(error) => {
                        tracing::debug!(%error, "cluster: reconnect failed");
                        self.fail(&error);
                    }
                }
                continue;
            }
            let (batch, stop) = self.wait_work();
            if stop == Stop::Crash {
                // As a killed process: nothing more is sent.
                return;
            }
            let result = self
                .send(batch)
                .and_then(|()| self.timers(stop != Stop::No));
            if let Err(error) = result {
                tracing::warn!(%error, "cluster: lost Redis; down until it is back");
                self.fail(&error);
                continue;
            }
            match stop {
                Stop::No => {}
                Stop::Graceful => {
                    self.leave();
                    return;
                }
                Stop::Crash => return,
            }
        }
    }

    /// Sleeps `delay` unless stopped meanwhile; true when stopped.
    fn wait_stop(&self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        let mut state = self.shared.state();
        loop {
            if state.stop != Stop::No {
                // Down: nothing to give back gracefully.
                state.session_live = false;
                self.shared.wake.notify_all();
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .wake
                .wait_timeout(state, deadline - now)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(state, _)| state);
        }
    }

    /// Waits for requests, a stop, a broken subscriber or the next timer;
    /// takes every queued request.
    fn wait_work(&self) -> (Vec<BusRequest>, Stop) {
        let mut state = self.shared.state();
        loop {
            let due = self.next_renew.min(self.next_watch);
            let now = Instant::now();
            if !state.queue.is_empty()
                || state.stop != Stop::No
                || (state.session != 0 && state.broken == state.session)
                || now >= due
            {
                let batch = state.queue.drain(..).collect();
                return (batch, state.stop);
            }
            state = self
                .shared
                .wake
                .wait_timeout(state, due - now)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(state, _)| state);
        }
    }

    /// Starts a session: connect, load the scripts, take the lease, join
    /// the node set, have the subscriber subscribe, re-follow every room
    /// and catch it up, then `Up`.
    pub(crate) fn connect(&mut self) -> Result<(), SessionError> {
        self.link.reset();
        let shared = self.shared.clone();
        // What the core asked while down joins the rooms re-followed below.
        let deferred = std::mem::take(&mut shared.state().deferred);
        let mut left = Vec::new();
        for request in deferred {
            if let BusRequest::Unfollow(room) = &request {
                left.push(room.clone());
            }
            shared.answer_unavailable(request);
        }
        let conn = self.link.get()?;
        // Rooms given up while down leave their followers sets too, or
        // their lines would keep coming here for nothing.
        for room in left {
            if !shared.rooms().wants(&room) {
                redis::cmd("SREM")
                    .arg(keys::followers(&room))
                    .arg(shared.node.as_str())
                    .exec(conn)?;
            }
        }
        shared.scripts.load(conn)?;
        let lease = keys::lease(&shared.node);
        let taken: Option<String> = redis::cmd("SET")
            .arg(&lease)
            .arg(&shared.token)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64)
            .query(conn)?;
        if taken.is_none() {
            let holder: Option<String> = redis::cmd("GET").arg(&lease).query(conn)?;
            if holder.as_deref() != Some(shared.token.as_str()) {
                return Err(SessionError::NameInUse);
            }
        }
        redis::cmd("SADD")
            .arg(keys::NODES)
            .arg(shared.node.as_str())
            .exec(conn)?;
        if self.fresh {
            let forgotten: u64 = shared.scripts.forget(&shared.node).query(conn)?;
            if forgotten > 0 {
                tracing::info!(
                    forgotten,
                    "cluster: nicknames left by an earlier process of this node are free"
                );
            }
            self.fresh = false;
        }
        let unreleased = std::mem::take(&mut shared.state().unreleased);
        for (sent, nick) in unreleased.iter().enumerate() {
            if let Err(error) = shared.scripts.release(nick, &shared.node).exec(conn) {
                shared
                    .state()
                    .unreleased
                    .extend(unreleased.into_iter().skip(sent));
                return Err(error.into());
            }
        }
        self.subscribe()?;
        self.refollow()?;
        // After subscribing: a change made from here on is both in what is
        // read now and published to this node, and applying a room's
        // settings twice changes nothing.
        let all = read_all_settings(self.link.get()?)?;
        self.next_renew = Instant::now() + RENEW_EVERY;
        self.next_watch = Instant::now();
        {
            let mut state = self.shared.state();
            state.up = true;
            // Asked while this session was starting: sent as requests.
            let deferred = std::mem::take(&mut state.deferred);
            for request in deferred.into_iter().rev() {
                state.queue.push_front(request);
            }
        }
        self.said_down = false;
        tracing::info!(node = %shared.node, "cluster: connected to Redis");
        shared.deliver(BusEvent::AllSettings(all));
        shared.deliver(BusEvent::Up);
        Ok(())
    }

    /// Starts a subscriber session and waits until it has subscribed.
    fn subscribe(&self) -> Result<(), SessionError> {
        let mut state = self.shared.state();
        state.session += 1;
        state.session_live = true;
        let session = state.session;
        self.shared.wake.notify_all();
        let deadline = Instant::now() + TIMEOUT * 2;
        while state.subscribed != session {
            let now = Instant::now();
            if state.broken == session || now >= deadline || state.stop != Stop::No {
                return Err(SessionError::Subscriber);
            }
            state = self
                .shared
                .wake
                .wait_timeout(state, deadline - now)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(state, _)| state);
        }
        Ok(())
    }

    /// Follows every wanted room again (one pipeline) and catches each up.
    fn refollow(&mut self) -> Result<(), SessionError> {
        let rooms = self.shared.rooms().begin_refollow();
        if rooms.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (room, _, _) in &rooms {
            pipe.add_command(self.shared.scripts.follow(room, &self.shared.node));
        }
        let tails: Vec<u64> = pipe.query(self.link.get()?)?;
        let shared = self.shared.clone();
        let mut guard = shared.rooms();
        for ((room, generation, known), tail) in rooms.into_iter().zip(tails) {
            let start = if known {
                Start::CatchUp(MessageId::new(tail))
            } else {
                Start::Tail(MessageId::new(tail))
            };
            guard.finish_follow(self.link.get()?, &room, generation, start, &shared.sink)?;
        }
        Ok(())
    }

    /// The session failed: `Down` (if it was up), every queued request
    /// answered, held lines dropped (the catch-up reads them again).
    pub(crate) fn fail(&mut self, error: &SessionError) {
        self.link.reset();
        let (was_up, queued) = {
            let mut state = self.shared.state();
            let was_up = state.up;
            state.up = false;
            state.session_live = false;
            let queued: Vec<BusRequest> = state.queue.drain(..).collect();
            (was_up, queued)
        };
        self.shared.wake.notify_all();
        self.shared.rooms().abandon_pending();
        // Once per outage; the first failed attempt at start-up counts
        // as one, so the core learns that it starts down.
        if was_up || !self.said_down {
            self.said_down = true;
            tracing::debug!(%error, "cluster: down");
            self.shared.deliver(BusEvent::Down);
        }
        for request in queued {
            self.shared.answer_unavailable(request);
        }
    }

    /// One pipeline for the whole batch; each request answered from its
    /// own reply. A connection error fails them all (and the session).
    fn send(&mut self, batch: Vec<BusRequest>) -> Result<(), SessionError> {
        if batch.is_empty() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut sent = Vec::with_capacity(batch.len());
        let mut encode_failed = Vec::new();
        for outgoing in group_posts(batch) {
            match self.encode(outgoing, &mut pipe) {
                Ok(one) => sent.push(one),
                Err((requests, error)) => {
                    tracing::error!(%error, "cluster: a request does not encode");
                    encode_failed.extend(requests);
                }
            }
        }
        for request in encode_failed {
            shared.answer_unavailable(request);
        }
        if sent.is_empty() {
            return Ok(());
        }
        let replies: Vec<redis::RedisResult<Value>> = match self.link.with(|conn| pipe.query(conn))
        {
            Ok(replies) => replies,
            Err(error) => {
                for one in sent {
                    answer_failed(&shared, one);
                }
                return Err(error.into());
            }
        };
        let mut failure = None;
        for (one, reply) in sent.into_iter().zip(replies) {
            // Scripts answer an id or 1, 0 for "no such nickname", and -1
            // for "its node is not listening".
            let reply_code =
                reply.and_then(|value| redis::from_redis_value::<i64>(value).map_err(Into::into));
            let id: redis::RedisResult<u64> = match &reply_code {
                Ok(code) => Ok(u64::try_from(*code).unwrap_or(0)),
                Err(error) => Err(error.clone()),
            };
            if let Err(error) = &id {
                tracing::warn!(%error, "cluster: a script failed");
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
                    // Redis forgot the scripts (SCRIPT FLUSH): a new
                    // session loads them again.
                    failure = Some(SessionError::Redis(error.clone()));
                }
            }
            match one {
                Sent::Posts(lines) => {
                    let first = id_of(&id);
                    for (line, k) in lines.into_iter().zip(0u64..) {
                        let result = first.map(|first| MessageId::new(first.get() + k));
                        shared.deliver(BusEvent::Posted { line, result });
                    }
                }
                Sent::Whisper(whisper) => {
                    let result = match &reply_code {
                        Ok(0) => Err(BusFailure::NoSuchNick),
                        _ => id_of(&id),
                    };
                    shared.deliver(BusEvent::Whispered { whisper, result });
                }
                Sent::Order(order) => {
                    let result = match &reply_code {
                        Ok(0) => Err(BusFailure::NoSuchNick),
                        Ok(1) => Ok(()),
                        _ => Err(BusFailure::Unavailable),
                    };
                    shared.deliver(BusEvent::Ordered { order, result });
                }
                Sent::Claim { conn, nick } => shared.deliver(BusEvent::Claimed {
                    conn,
                    nick,
                    result: id
                        .as_ref()
                        .map(|&granted| granted == 1)
                        .map_err(|_| BusFailure::Unavailable),
                }),
                Sent::Follow { room, generation } => {
                    let finished = id.and_then(|tail| {
                        let start = Start::Tail(MessageId::new(tail));
                        let conn = self.link.get()?;
                        shared
                            .rooms()
                            .finish_follow(conn, &room, generation, start, &shared.sink)
                    });
                    // Its lines would be held forever: start again, once
                    // the rest of the batch has its answers.
                    if let Err(error) = finished {
                        failure = Some(SessionError::Redis(error));
                    }
                }
                Sent::Release(nick) => {
                    if id.is_err() {
                        shared.state().unreleased.insert(nick);
                    }
                }
                Sent::Settle(change) => {
                    let result = match &reply_code {
                        Ok(1) => Ok(()),
                        Ok(0) => Err(BusFailure::Outdated),
                        _ => Err(BusFailure::Unavailable),
                    };
                    shared.deliver(BusEvent::Settled { change, result });
                }
                Sent::Quiet(what) => {
                    if let Err(error) = id {
                        tracing::warn!(%error, "cluster: {what} failed");
                    }
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Adds one command to the pipeline: a request's, or one for a room's
    /// posts.
    fn encode(
        &self,
        outgoing: Outgoing,
        pipe: &mut redis::Pipeline,
    ) -> Result<Sent, (Vec<BusRequest>, serde_json::Error)> {
        let shared = &self.shared;
        let scripts = &shared.scripts;
        let node = &shared.node;
        let request = match outgoing {
            Outgoing::Posts(lines) => {
                let jsons: Result<Vec<String>, _> = lines
                    .iter()
                    .map(|line| serde_json::to_string(&**line))
                    .collect();
                let jsons = match jsons {
                    Ok(jsons) => jsons,
                    Err(error) => {
                        return Err((lines.into_iter().map(BusRequest::Post).collect(), error));
                    }
                };
                let room = &lines[0].record.room;
                pipe.add_command(scripts.post(room, &jsons, shared.history_size));
                return Ok(Sent::Posts(lines));
            }
            Outgoing::One(request) => request,
        };
        Ok(match request {
            BusRequest::Post(line) => {
                // Posts come grouped (group_posts); one alone is a group
                // of one.
                return self.encode(Outgoing::Posts(vec![line]), pipe);
            }
            BusRequest::Whisper(whisper) => {
                let json = match serde_json::to_string(&*whisper) {
                    Ok(json) => json,
                    Err(error) => return Err((vec![BusRequest::Whisper(whisper)], error)),
                };
                pipe.add_command(scripts.whisper(&whisper.to, &json));
                Sent::Whisper(whisper)
            }
            BusRequest::Order(order) => {
                let json = match serde_json::to_string(&*order) {
                    Ok(json) => json,
                    Err(error) => return Err((vec![BusRequest::Order(order)], error)),
                };
                pipe.add_command(scripts.order(&order.target, &json));
                Sent::Order(order)
            }
            BusRequest::Claim { conn, nick } => {
                pipe.add_command(scripts.claim(&nick, node));
                Sent::Claim { conn, nick }
            }
            BusRequest::Release(nick) => {
                pipe.add_command(scripts.release(&nick, node));
                Sent::Release(nick)
            }
            BusRequest::Follow(room) => {
                let generation = shared.rooms().begin_follow(&room);
                pipe.add_command(scripts.follow(&room, node));
                Sent::Follow { room, generation }
            }
            BusRequest::Unfollow(room) => {
                shared.rooms().unfollow(&room);
                pipe.cmd("SREM")
                    .arg(keys::followers(&room))
                    .arg(node.as_str());
                Sent::Quiet("an unfollow")
            }
            BusRequest::Settle(change) => {
                let json = match serde_json::to_string(&*change) {
                    Ok(json) => json,
                    Err(error) => return Err((vec![BusRequest::Settle(change)], error)),
                };
                let writes = change.setting.writes();
                let writes: Vec<(&str, &str, String)> = writes
                    .iter()
                    .map(|write| {
                        let entry = write.key.as_deref().unwrap_or("");
                        (write.field, entry, write.value.to_string())
                    })
                    .collect();
                let condition = change
                    .setting
                    .condition()
                    .map(|(field, value)| (field, value.to_string()));
                pipe.add_command(scripts.settle(
                    &change.room,
                    &json,
                    change.setting.resets(),
                    change.at_ms,
                    condition,
                    &writes,
                ));
                Sent::Settle(change)
            }
            BusRequest::Announce(presence) => {
                let envelope = Envelope::Presence {
                    node: node.clone(),
                    presence,
                };
                let json = match serde_json::to_string(&envelope) {
                    Ok(json) => json,
                    Err(error) => {
                        let Envelope::Presence { presence, .. } = envelope else {
                            unreachable!("built just above")
                        };
                        return Err((vec![BusRequest::Announce(presence)], error));
                    }
                };
                pipe.add_command(scripts.announce(node, &json));
                Sent::Quiet("an announcement")
            }
        })
    }

    /// Renews the lease and watches the other nodes when due (and always
    /// before a graceful stop: nothing).
    fn timers(&mut self, stopping: bool) -> Result<(), SessionError> {
        if stopping {
            return Ok(());
        }
        let broken = {
            let state = self.shared.state();
            state.broken == state.session
        };
        if broken {
            return Err(SessionError::Subscriber);
        }
        let now = Instant::now();
        if now >= self.next_renew {
            self.next_renew = now + RENEW_EVERY;
            let shared = self.shared.clone();
            let renewed: u64 = self.link.with(|conn| {
                shared
                    .scripts
                    .renew(&shared.node, &shared.token, LEASE.as_millis() as u64)
                    .query(conn)
            })?;
            if renewed == 0 {
                // Other nodes may have seen us gone: a new session takes
                // the lease again and the core re-announces on `Up`.
                return Err(SessionError::LeaseLost);
            }
        }
        if now >= self.next_watch {
            self.next_watch = now + WATCH_EVERY;
            self.watch()?;
        }
        Ok(())
    }

    /// Every other node seen in the node set is watched: when its lease is
    /// gone, the core hears `NodeGone` once, and the node leaves the node
    /// set and the followers sets (whoever removes it first does that).
    /// Remembering the nodes seen, rather than only reading the set, lets
    /// every node notice a loss even when another removed it first.
    fn watch(&mut self) -> Result<(), SessionError> {
        let shared = self.shared.clone();
        let members: Vec<String> = self
            .link
            .with(|conn| redis::cmd("SMEMBERS").arg(keys::NODES).query(conn))?;
        for member in members {
            match NodeName::parse(&member) {
                Ok(name) if name != shared.node => {
                    self.known.insert(name);
                }
                Ok(_) => {}
                Err(_) => tracing::warn!(%member, "cluster: a node set member is no node name"),
            }
        }
        if self.known.is_empty() {
            return Ok(());
        }
        let known: Vec<NodeName> = self.known.iter().cloned().collect();
        let mut pipe = redis::pipe();
        for name in &known {
            pipe.cmd("EXISTS").arg(keys::lease(name));
        }
        let alive: Vec<bool> = self.link.with(|conn| pipe.query(conn))?;
        for (name, alive) in known.into_iter().zip(alive) {
            if alive {
                self.gone.remove(&name);
                continue;
            }
            if self.gone.insert(name.clone()) {
                let removed: u64 = self
                    .link
                    .with(|conn| shared.scripts.gone(&name).query(conn))?;
                tracing::info!(node = %name, removed = removed == 1, "cluster: a node's lease is gone");
                shared.deliver(BusEvent::NodeGone(name.clone()));
            }
            // Watched again only if it rejoins the node set.
            self.known.remove(&name);
        }
        Ok(())
    }

    /// A graceful stop: give the lease back and leave the sets.
    fn leave(&mut self) {
        let shared = self.shared.clone();
        let left = self
            .link
            .with(|conn| shared.scripts.leave(&shared.node, &shared.token).exec(conn));
        if let Err(error) = left {
            tracing::warn!(%error, "cluster: could not leave cleanly; the lease will expire");
        }
        let mut state = shared.state();
        state.up = false;
        state.session_live = false;
        shared.wake.notify_all();
    }
}

/// The most lines of one room one post call carries: a few kilobytes a
/// message, and a short script run.
const POSTS_A_CALL: usize = 64;

/// One command of a pipeline: a request, or one room's posts.
enum Outgoing {
    One(BusRequest),
    Posts(Vec<Arc<BusLine>>),
}

/// The batch with each run of consecutive posts to one room in one call
/// (at most [`POSTS_A_CALL`]): every request keeps its place, so lines
/// reach Redis, and get their ids, in the order the core asked, across
/// rooms too (one speaker's lines to two channels stay in their order).
fn group_posts(batch: Vec<BusRequest>) -> Vec<Outgoing> {
    let mut grouped: Vec<Outgoing> = Vec::with_capacity(batch.len());
    for request in batch {
        let BusRequest::Post(line) = request else {
            grouped.push(Outgoing::One(request));
            continue;
        };
        match grouped.last_mut() {
            Some(Outgoing::Posts(posts))
                if posts[0].record.room == line.record.room && posts.len() < POSTS_A_CALL =>
            {
                posts.push(line);
            }
            _ => grouped.push(Outgoing::Posts(vec![line])),
        }
    }
    grouped
}

/// A request whose pipeline failed: answered `Unavailable` (a follow stays
/// wanted: the next session re-follows it).
fn answer_failed(shared: &Shared, sent: Sent) {
    let request = match sent {
        Sent::Posts(lines) => {
            for line in lines {
                shared.answer_unavailable(BusRequest::Post(line));
            }
            return;
        }
        Sent::Whisper(whisper) => BusRequest::Whisper(whisper),
        Sent::Order(order) => BusRequest::Order(order),
        Sent::Claim { conn, nick } => BusRequest::Claim { conn, nick },
        Sent::Release(nick) => BusRequest::Release(nick),
        Sent::Settle(change) => BusRequest::Settle(change),
        Sent::Follow { .. } | Sent::Quiet(_) => return,
    };
    shared.answer_unavailable(request);
}

/// `HGETALL chatd:settings`: every room's settings, in room order. An
/// entry that does not read (a room name or settings this version does
/// not know) is left out and logged.
fn read_all_settings(
    conn: &mut redis::Connection,
) -> redis::RedisResult<Vec<(RoomName, RoomSettings)>> {
    let all: BTreeMap<String, String> = redis::cmd("HGETALL").arg(keys::SETTINGS).query(conn)?;
    Ok(all
        .into_iter()
        .filter_map(|(room, json)| {
            let parsed = RoomName::parse(&room)
                .ok()
                .zip(serde_json::from_str::<RoomSettings>(&json).ok());
            if parsed.is_none() {
                tracing::warn!(%room, %json, "cluster: a room's settings do not read; left out");
            }
            parsed
        })
        .collect())
}

/// A script's id reply as the core's result (0 or an error: unavailable).
fn id_of(reply: &redis::RedisResult<u64>) -> Result<MessageId, BusFailure> {
    match reply {
        Ok(id) if *id > 0 => Ok(MessageId::new(*id)),
        _ => Err(BusFailure::Unavailable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_core::cluster::{BusLine, NodeName};
    use chatd_core::{ConnId, Nick, Record, RecordKind};

    fn post(room: &str, text: &str) -> BusRequest {
        let room = RoomName::parse(room).unwrap();
        let from = Nick::parse("alice").unwrap();
        let record = Record {
            id: MessageId::new(0),
            room,
            ts: 0,
            from,
            kind: RecordKind::Msg,
            text: text.to_owned(),
            to: None,
            private: false,
        };
        BusRequest::Post(Arc::new(BusLine {
            record,
            user: "alice".into(),
            host: "127.0.0.1".parse().unwrap(),
            notice: false,
            node: NodeName::parse("n1").unwrap(),
            conn: ConnId::from_raw(1),
        }))
    }

    /// Each group as (room, texts), other requests as their kind.
    fn shape(grouped: &[Outgoing]) -> Vec<String> {
        grouped
            .iter()
            .map(|outgoing| match outgoing {
                Outgoing::Posts(lines) => format!(
                    "{}:{}",
                    lines[0].record.room,
                    lines
                        .iter()
                        .map(|line| line.record.text.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Outgoing::One(_) => "other".to_owned(),
            })
            .collect()
    }

    #[test]
    fn consecutive_posts_to_one_room_group_in_order_and_bounded() {
        let batch = vec![
            post("a", "1"),
            post("b", "2"),
            post("a", "3"),
            BusRequest::Follow(RoomName::parse("a").unwrap()),
            post("a", "4"),
        ];
        assert_eq!(
            shape(&group_posts(batch)),
            ["a:1", "b:2", "a:3", "other", "a:4"]
        );
        let runs = vec![
            post("a", "1"),
            post("a", "2"),
            post("b", "3"),
            post("b", "4"),
        ];
        assert_eq!(shape(&group_posts(runs)), ["a:1,2", "b:3,4"]);
        let many: Vec<BusRequest> = (0..POSTS_A_CALL + 1)
            .map(|k| post("a", &k.to_string()))
            .collect();
        let grouped = group_posts(many);
        assert_eq!(grouped.len(), 2);
        assert!(
            matches!(&grouped[1], Outgoing::Posts(lines) if lines.len() == 1
            && lines[0].record.text == POSTS_A_CALL.to_string())
        );
    }
}
