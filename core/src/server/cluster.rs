//! This server as one node of a cluster (docs/CLUSTER.md): what it asks
//! the bus, and what it does with what the bus tells it.
//!
//! The rule that keeps one order: a node never shows a room line when it
//! is said, only when the bus delivers it, so every node (the speaker's
//! too) shows each room's lines in the order the shared store gave them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;

use crate::cluster::{
    BusEvent, BusFailure, BusLine, BusOrder, BusRequest, BusWhisper, ClusterConfig, NodeName,
    NodeUser, OrderAction, Presence, RoomSettings, SharedBan, Speaker,
};
use crate::error::ErrorCode;
use crate::history::{Record, RecordKind};
use crate::ids::{ConnId, MessageId, Nick, RoomName};
use crate::io::{Output, Priority};
use crate::reply::{Person, Reply, Scope, WhoEntry};

use super::Server;
use super::outbox::Outbox;
use super::remote::{Mirror, RemoteUser};
use super::room::Ban;
use super::session::Session;

/// What a node of a cluster keeps beside the single server's state.
#[derive(Debug)]
pub(super) struct ClusterState {
    /// This node.
    pub(super) node: NodeName,
    /// Whether the bus reaches the shared store now.
    pub(super) up: bool,
    /// Every other node's users.
    pub(super) mirror: Mirror,
    /// Nickname claims in flight, by connection.
    claims: AHashMap<ConnId, Claim>,
    /// Connections whose nickname is being claimed again after the bus
    /// came back: the snapshot waits for them, so it shows who is here
    /// after any of them became a guest.
    reclaiming: AHashMap<ConnId, Nick>,
    /// A snapshot is owed once `reclaiming` empties.
    snapshot_due: bool,
    /// Nicknames given up while the bus was down: given back when it is up.
    unreleased: BTreeSet<Nick>,
    /// Connections here invited into private rooms of other nodes, by
    /// room: they may join them (at most the invitation limit a room).
    pub(super) invited: BTreeMap<RoomName, BTreeSet<ConnId>>,
    /// The next departure of a user here was announced already (as a kick).
    departure_announced: bool,
    /// Every room's shared settings that are not the defaults
    /// (room_settings.rs).
    pub(super) settings: BTreeMap<RoomName, RoomSettings>,
    /// Rooms created here while the bus was down: the cluster learns of
    /// them (their owner, and a reset of what it kept of an earlier room
    /// of their name) when it is back.
    pub(super) creations_due: BTreeSet<RoomName>,
    /// Rooms whose owner here changed while the bus was down (or whose
    /// change could not be made): told when it is back.
    pub(super) owners_due: BTreeSet<RoomName>,
}

/// See [`Server::for_bus`].
pub(super) enum ForBus<'a> {
    /// Not a node of a cluster.
    SingleServer,
    /// The bus is down (the caller was told), or the connection is gone.
    Refused,
    /// This node, and the session asking.
    Ready(&'a NodeName, &'a Session),
}

/// A user's nickname claim in flight.
#[derive(Debug, Clone, Copy)]
struct Claim {
    nick: Nick,
}

impl ClusterState {
    /// The state of a new node, and what it asks the bus first: every
    /// native client arrives in #general, so the node follows it from the
    /// start (a follow made at a client's arrival would race with the
    /// first lines said after its welcome).
    pub(super) fn start(config: &ClusterConfig, out: &mut Outbox) -> Self {
        out.push(Output::Bus(Box::new(BusRequest::Follow(
            RoomName::general(),
        ))));
        Self::new(config)
    }

    fn new(config: &ClusterConfig) -> Self {
        Self {
            node: config.node.clone(),
            up: false,
            mirror: Mirror::default(),
            claims: AHashMap::new(),
            reclaiming: AHashMap::new(),
            snapshot_due: false,
            unreleased: BTreeSet::new(),
            invited: BTreeMap::new(),
            departure_announced: false,
            settings: BTreeMap::new(),
            creations_due: BTreeSet::new(),
            owners_due: BTreeSet::new(),
        }
    }
}

pub(super) const UNAVAILABLE: &str =
    "the cluster cannot be reached just now; nothing was done, try again";

impl Server {
    /// What the cluster bus says: it is up or down, a room line in its
    /// order, an answer to this node's post, whisper or claim, another
    /// node's presence, or a node gone. Ignored when the server is not a
    /// node of a cluster.
    pub fn handle_bus(&mut self, now: Instant, event: BusEvent) {
        if self.cluster.is_none() {
            return;
        }
        self.out.scene.unix_ms = self.wall.unix_ms(now);
        match event {
            BusEvent::Up => self.bus_up(now),
            BusEvent::Down => self.bus_down(),
            BusEvent::Line { id, line } => self.show_line(id, &line),
            BusEvent::Posted { line, result } => self.posted(&line, result),
            BusEvent::Whisper { id, whisper } => self.whisper_arrived(id, &whisper),
            BusEvent::Whispered { whisper, result } => self.whispered(&whisper, result),
            BusEvent::Claimed { conn, nick, result } => self.claimed(now, conn, nick, result),
            BusEvent::Presence { node, presence } => self.presence(now, &node, presence),
            BusEvent::Order(order) => self.obey(now, &order),
            BusEvent::Ordered { order, result } => self.ordered(&order, result),
            BusEvent::NodeGone(node) => self.node_gone(&node),
            BusEvent::Settled { change, result } => self.settled(&change, result),
            BusEvent::RoomSettings { settings, change } => {
                self.room_settings_arrived(now, settings, &change);
            }
            BusEvent::AllSettings(all) => self.all_settings_arrived(now, all),
        }
    }

    /// The guest nickname of a new connection: on a node of a cluster it
    /// carries the node's name, so guests of two nodes never collide.
    pub(super) fn guest_nick(&self, conn: ConnId) -> Nick {
        match &self.cluster {
            Some(cluster) => Nick::guest_on(conn, cluster.node.as_str()),
            None => Nick::guest(conn),
        }
    }

    pub(super) fn bus(&mut self, request: BusRequest) {
        self.out.push(Output::Bus(Box::new(request)));
    }

    /// Gives a nickname back to the cluster, or remembers to once the bus
    /// is up (a release lost while down would leave it held by this node).
    fn release(&mut self, nick: Nick) {
        let in_use = self.conn_named(&nick).is_some();
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let folded = nick.folded();
        let wanted = cluster
            .claims
            .values()
            .any(|claim| claim.nick.folded() == folded);
        if in_use || wanted {
            // Another user here holds it, or asked for it: the key names
            // this node either way, and must stay.
            return;
        }
        if cluster.up {
            self.bus(BusRequest::Release(nick));
        } else {
            cluster.unreleased.insert(nick.folded());
        }
    }

    /// Registers a guest name with the cluster, so whispers find it. No
    /// claim is kept in flight: node names make guest names unique, and a
    /// user may ask for a nickname at once.
    pub(super) fn claim_guest(&mut self, conn: ConnId, nick: Nick) {
        if self.cluster.is_some() {
            self.bus(BusRequest::Claim { conn, nick });
        }
    }

    /// `Some(true)` on a node of a cluster whose bus is up, `Some(false)`
    /// on one whose bus is down (the caller was told), `None` on a single
    /// server.
    pub(super) fn cluster_ready(&mut self, conn: ConnId, about: Option<&str>) -> Option<bool> {
        let up = self.cluster.as_ref()?.up;
        if !up {
            self.out
                .error_about(conn, ErrorCode::Unavailable, about, UNAVAILABLE);
        }
        Some(up)
    }

    /// What a request of `conn` about `room` may do: nothing goes to a bus
    /// on a single server; on a node whose bus is down the caller was told
    /// (about the room); else here are the node and the session to build
    /// the request from.
    pub(super) fn for_bus(&mut self, conn: ConnId, room: &RoomName) -> ForBus<'_> {
        let chan = format!("#{room}");
        match self.cluster_ready(conn, Some(&chan)) {
            None => return ForBus::SingleServer,
            Some(false) => return ForBus::Refused,
            Some(true) => {}
        }
        match (&self.cluster, self.sessions.get(&conn)) {
            (Some(cluster), Some(session)) => ForBus::Ready(&cluster.node, session),
            _ => ForBus::Refused,
        }
    }

    /// The node's view of its cluster, for [`Server::gauges`].
    pub(super) fn cluster_gauges(&self) -> Option<crate::counters::ClusterGauges> {
        let cluster = self.cluster.as_ref()?;
        Some(crate::counters::ClusterGauges {
            up: cluster.up,
            remote_users: cluster.mirror.len() as u64,
            claims_in_flight: cluster.claims.len() as u64,
        })
    }

    // ----- Room lines -----

    /// A room line on a node of a cluster: to the bus, shown when it comes
    /// back in its room's order. `false` on a single server (the caller
    /// shows it itself).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn post_to_cluster(
        &mut self,
        conn: ConnId,
        room: &RoomName,
        kind: RecordKind,
        text: &str,
        notice: bool,
        ts: u64,
        private: bool,
    ) -> bool {
        let (node, session) = match self.for_bus(conn, room) {
            ForBus::SingleServer => return false,
            ForBus::Refused => return true,
            ForBus::Ready(node, session) => (node, session),
        };
        let line = BusLine {
            record: Record {
                id: MessageId::new(0),
                room: room.clone(),
                ts,
                from: session.nick,
                kind,
                text: text.to_owned(),
                to: None,
                private,
            },
            user: session.user().to_owned(),
            host: session.peer,
            notice,
            node: node.clone(),
            conn,
        };
        self.bus(BusRequest::Post(Arc::new(line)));
        true
    }

    /// A room line in its order: to this node's members of the room (the
    /// speaker skipped unless it wants its echo), and into the room's
    /// recent history.
    fn show_line(&mut self, id: MessageId, line: &BusLine) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let speaker = (line.node == cluster.node).then_some(line.conn);
        let record = &line.record;
        let from = Person {
            nick: &record.from,
            user: &line.user,
            host: line.host,
            account: None,
        };
        let (reply, priority) = super::chat::line_reply(
            record.kind,
            id,
            &record.room,
            from,
            &record.text,
            line.notice,
        );
        let Some(room) = self.rooms.get_mut(&record.room) else {
            // It left this node's rooms while on its way: no member here to
            // show it to, and memory must not start a history with a hole
            // (the room's history comes from its stream when it is back).
            return;
        };
        if room.private && room.first_id == u64::MAX {
            // A private room made here reads its history from its first
            // line here: a room of that name before it is not its past.
            room.first_id = id.get();
        }
        self.out
            .broadcast(&room.audiences(), speaker, &reply, priority);
        if let Some(conn) = speaker
            && self
                .sessions
                .get(&conn)
                .is_some_and(|s| s.echoes() && s.is_in(&record.room))
        {
            self.out.send_with(conn, &reply, priority);
        }
        let mut stored = record.clone();
        stored.id = id;
        self.histories
            .push(Arc::new(stored), self.config.history_size);
        self.enforce_history_bounds();
    }

    /// The store's answer to this node's post: the speaker's `#ack`, or
    /// the error that says the line was not taken.
    fn posted(&mut self, line: &BusLine, result: Result<MessageId, BusFailure>) {
        let Some(session) = self.sessions.get(&line.conn) else {
            return;
        };
        match result {
            Ok(id) if session.ack => self.out.send(line.conn, &Reply::Ack(id)),
            Ok(_) => {}
            Err(_) => {
                let chan = format!("#{}", line.record.room);
                self.out
                    .error_about(line.conn, ErrorCode::Unavailable, Some(&chan), UNAVAILABLE);
            }
        }
    }

    // ----- Whispers -----

    /// A whisper on a node of a cluster: to the node holding the
    /// recipient's nickname, through the bus. `false` on a single server.
    pub(super) fn whisper_to_cluster(
        &mut self,
        conn: ConnId,
        target: &Nick,
        text: &str,
        notice: bool,
    ) -> bool {
        match self.cluster_ready(conn, Some(target.as_str())) {
            None => return false,
            Some(false) => return true,
            Some(true) => {}
        }
        let (Some(cluster), Some(session)) = (&self.cluster, self.sessions.get(&conn)) else {
            return true;
        };
        let whisper = BusWhisper {
            from: speaker(session),
            to: *target,
            text: text.to_owned(),
            notice,
            node: cluster.node.clone(),
            conn,
        };
        self.bus(BusRequest::Whisper(Box::new(whisper)));
        true
    }

    fn whisper_arrived(&mut self, id: MessageId, whisper: &BusWhisper) {
        let Some(recipient) = self.conn_named(&whisper.to) else {
            // They left between the lookup and the delivery.
            return;
        };
        let reply = Reply::Whisper {
            id,
            from: whisper.from.person(),
            text: &whisper.text,
            notice: whisper.notice,
        };
        self.out.send(recipient, &reply);
    }

    fn whispered(&mut self, whisper: &BusWhisper, result: Result<MessageId, BusFailure>) {
        let conn = whisper.conn;
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        match result {
            Ok(id) => {
                let (to, text) = (&whisper.to, whisper.text.as_str());
                super::chat::echo_whisper(&mut self.out, conn, me, id, to, text, whisper.notice);
                if me.ack {
                    self.out.send(conn, &Reply::Ack(id));
                }
            }
            Err(BusFailure::NoSuchNick) => self.no_such_nick(conn, &whisper.to),
            // Outdated is only a settle's answer.
            Err(BusFailure::Unavailable | BusFailure::Outdated) => {
                self.out.error_about(
                    conn,
                    ErrorCode::Unavailable,
                    Some(whisper.to.as_str()),
                    UNAVAILABLE,
                );
            }
        }
    }

    // ----- Nicknames -----

    /// A nickname change on a node of a cluster: passed the local rules,
    /// it still needs the cluster's claim unless it only changes case or
    /// goes back to a guest name. `true` when the change waits for the
    /// claim (or was refused here); `false` when the caller may apply it.
    pub(super) fn claim_nick(&mut self, conn: ConnId, new: Nick) -> bool {
        let Some(current) = self.sessions.get(&conn).map(|s| s.nick) else {
            return true;
        };
        if self.cluster.is_none() || new.folded() == current.folded() || new.is_guest_name() {
            return false;
        }
        if self
            .cluster
            .as_ref()
            .is_some_and(|c| c.mirror.user(&new).is_some())
        {
            self.nick_taken(conn, &new);
            return true;
        }
        if self.cluster_ready(conn, Some(new.as_str())) != Some(true) {
            return true;
        }
        if let Some(cluster) = self.cluster.as_mut() {
            if let Some(busy) = cluster.claims.get(&conn) {
                // One change at a time, each answered: a client that
                // asks again before hearing back is told to wait.
                let text = format!(
                    "your change to {} is still being checked with the cluster; try again in a moment",
                    busy.nick
                );
                self.out
                    .error_about(conn, ErrorCode::TryLater, Some(new.as_str()), &text);
                return true;
            }
            let claim = Claim { nick: new };
            cluster.claims.insert(conn, claim);
        }
        self.bus(BusRequest::Claim { conn, nick: new });
        true
    }

    fn claimed(
        &mut self,
        now: Instant,
        conn: ConnId,
        nick: Nick,
        result: Result<bool, BusFailure>,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let folded = nick.folded();
        if cluster.reclaiming.get(&conn) == Some(&folded) {
            cluster.reclaiming.remove(&conn);
            self.reclaim_answered(conn, nick, result);
            if let Some(cluster) = self.cluster.as_mut()
                && cluster.snapshot_due
                && cluster.reclaiming.is_empty()
            {
                cluster.snapshot_due = false;
                self.announce_snapshot(now, true);
            }
            return;
        }
        self.claim_answered(now, conn, nick, result);
    }

    /// The answer to claiming a nickname again after the bus came back.
    fn reclaim_answered(&mut self, conn: ConnId, nick: Nick, result: Result<bool, BusFailure>) {
        let holds = self
            .sessions
            .get(&conn)
            .is_some_and(|s| s.nick.folded() == nick.folded());
        if result != Ok(false) || !holds {
            // Still ours (or not known: claimed again at the next `Up`).
            return;
        }
        let text = format!(
            "{nick} was taken on another node while this one was cut off; you are a guest now"
        );
        self.out
            .error_about(conn, ErrorCode::NickTaken, Some(nick.as_str()), &text);
        let guest = self.guest_nick(conn);
        self.apply_nick(conn, guest);
    }

    /// The answer to a user's `#nick` (or IRC `NICK`).
    fn claim_answered(
        &mut self,
        now: Instant,
        conn: ConnId,
        nick: Nick,
        result: Result<bool, BusFailure>,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let wanted = cluster
            .claims
            .get(&conn)
            .is_some_and(|claim| claim.nick.folded() == nick.folded());
        if wanted {
            cluster.claims.remove(&conn);
        }
        let current = self.sessions.get(&conn).map(|s| s.nick);
        if !wanted || current.is_none() {
            // Not this connection's claim any more (it left, or the bus
            // went down meanwhile and it was answered then): give back
            // what was granted unless it is in use here.
            if result == Ok(true) && current.is_none_or(|c| c.folded() != nick.folded()) {
                self.release(nick);
            }
            return;
        }
        match result {
            Ok(true) => {
                if self.conn_named(&nick).is_some_and(|holder| holder != conn) {
                    // Taken here while the claim was in flight (the key
                    // names this node for the holder: it stays).
                    return self.nick_taken(conn, &nick);
                }
                self.apply_nick(conn, nick);
                // What `change_nick_protected` and IRC's NICK do after a
                // change made at once.
                self.protect(now, conn);
                self.irc_nick_granted(conn);
            }
            Ok(false) => self.nick_taken(conn, &nick),
            Err(_) => {
                self.out.error_about(
                    conn,
                    ErrorCode::Unavailable,
                    Some(nick.as_str()),
                    UNAVAILABLE,
                );
            }
        }
    }

    pub(super) fn nick_taken(&mut self, conn: ConnId, nick: &Nick) {
        let text = format!("{nick} is taken; pick another nickname");
        self.out
            .error_about(conn, ErrorCode::NickTaken, Some(nick.as_str()), &text);
    }

    /// After a session's nickname changed: the other nodes hear of it and
    /// the old one is given back.
    pub(super) fn cluster_renamed(&mut self, old: Nick, new: Nick) {
        if self.cluster.is_none() {
            return;
        }
        self.owner_renamed(&old, &new);
        self.bus(BusRequest::Announce(Presence::Renamed { old, new }));
        if old.folded() != new.folded() {
            self.release(old);
        }
        if new.is_guest_name()
            && let Some(conn) = self.conn_named(&new)
        {
            self.claim_guest(conn, new);
        }
    }

    // ----- Presence of this node's users -----

    /// After `conn` entered `room`: the room is followed from its first
    /// member here, and the other nodes hear of the join.
    pub(super) fn cluster_entered(&mut self, conn: ConnId, room: &RoomName) {
        if self.cluster.is_none() {
            return;
        }
        let first =
            *room != RoomName::general() && self.rooms.get(room).is_some_and(|r| r.len() == 1);
        if first {
            self.bus(BusRequest::Follow(room.clone()));
        }
        let private = self.rooms.get(room).is_some_and(|r| r.private);
        if let Some(session) = self.sessions.get(&conn) {
            let who = speaker(session);
            self.bus(BusRequest::Announce(Presence::Joined {
                who,
                room: room.clone(),
                private,
            }));
        }
    }

    /// After `nick` left `room` (still a user of this node): the other
    /// nodes hear of it, and a room with no members here is unfollowed.
    pub(super) fn cluster_left(&mut self, nick: Nick, room: &RoomName, reason: Option<&str>) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if std::mem::take(&mut cluster.departure_announced) {
            return self.unfollow_if_empty(room);
        }
        self.bus(BusRequest::Announce(Presence::Left {
            nick,
            room: room.clone(),
            reason: reason.map(str::to_owned),
        }));
        self.unfollow_if_empty(room);
    }

    /// After a session ended: the other nodes hear of the quit, its rooms
    /// with no members left here are unfollowed, its nickname is free.
    pub(super) fn cluster_quit(&mut self, conn: ConnId, session: &Session, message: Option<&str>) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster.claims.remove(&conn);
        cluster.invited.retain(|_, invited| {
            invited.remove(&conn);
            !invited.is_empty()
        });
        if !std::mem::take(&mut cluster.departure_announced) {
            self.bus(BusRequest::Announce(Presence::Quit {
                nick: session.nick,
                message: message.map(str::to_owned),
            }));
        }
        for room in &session.rooms {
            self.unfollow_if_empty(room);
        }
        self.release(session.nick);
    }

    fn unfollow_if_empty(&mut self, room: &RoomName) {
        // #general is followed for the node's whole life (see `new`).
        if *room != RoomName::general() && self.rooms.get(room).is_none_or(|r| r.is_empty()) {
            self.bus(BusRequest::Unfollow(room.clone()));
            // Lines said while it is not followed never reach memory, so
            // what memory holds would have a hole: from now on the room's
            // history comes from the store.
            self.histories.remove(room);
        }
    }

    /// The bus lost the store: nickname changes in flight are answered now
    /// (their own answers, when they come, find no claim and give back
    /// what was granted), and re-claims start afresh at the next `Up`.
    fn bus_down(&mut self) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster.up = false;
        cluster.reclaiming.clear();
        cluster.snapshot_due = false;
        let waiting: Vec<(ConnId, Nick)> = cluster
            .claims
            .drain()
            .map(|(conn, claim)| (conn, claim.nick))
            .collect();
        for (conn, nick) in waiting {
            self.out.error_about(
                conn,
                ErrorCode::Unavailable,
                Some(nick.as_str()),
                UNAVAILABLE,
            );
        }
    }

    /// The bus reached the store: claim every nickname in use here again
    /// (the store may have lost them, or given them away if this node was
    /// gone longer than its lease) and tell the other nodes who is here.
    fn bus_up(&mut self, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster.up = true;
        let unreleased = std::mem::take(&mut cluster.unreleased);
        for nick in unreleased {
            if self.conn_named(&nick).is_none() {
                self.bus(BusRequest::Release(nick));
            }
        }
        let named: Vec<(ConnId, Nick)> = self
            .sessions
            .iter()
            .map(|(&conn, s)| (conn, s.nick))
            .collect();
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster.reclaiming.clear();
        for &(conn, nick) in &named {
            cluster.reclaiming.insert(conn, nick.folded());
        }
        cluster.snapshot_due = !named.is_empty();
        for (conn, nick) in named {
            self.bus(BusRequest::Claim { conn, nick });
        }
        if self.cluster.as_ref().is_some_and(|c| !c.snapshot_due) {
            self.announce_snapshot(now, true);
        }
        self.send_due_creations();
        self.send_due_owners();
    }

    fn announce_snapshot(&mut self, now: Instant, reply: bool) {
        let mut users: Vec<NodeUser> = self
            .sessions
            .values()
            .map(|session| {
                let mut rooms = session.rooms.to_vec();
                rooms.sort();
                let private = rooms
                    .iter()
                    .filter(|room| self.rooms.get(*room).is_some_and(|r| r.private))
                    .cloned()
                    .collect();
                NodeUser {
                    who: speaker(session),
                    rooms,
                    private,
                }
            })
            .collect();
        users.sort_by_key(|user| user.who.nick.folded());
        let bans = self
            .server_bans
            .iter()
            .filter_map(|(&address, ban)| shared_ban(now, address, ban))
            .collect();
        self.bus(BusRequest::Announce(Presence::Snapshot {
            users,
            reply,
            bans,
        }));
    }

    // ----- Other nodes' users -----

    fn presence(&mut self, now: Instant, node: &NodeName, presence: Presence) {
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return;
        };
        let mirror = &mut cluster.mirror;
        let about = match &presence {
            Presence::Left { nick, .. }
            | Presence::Kicked { nick, .. }
            | Presence::Muted { nick, .. }
            | Presence::Quit { nick, .. } => Some(nick),
            Presence::Renamed { old, .. } => Some(old),
            _ => None,
        };
        if about.is_some_and(|nick| !mirror.holds(node, nick)) {
            // Stale news: the name is another node's user now.
            return;
        }
        match presence {
            Presence::Snapshot { users, reply, bans } => {
                self.take_snapshot(node, users);
                for ban in bans {
                    if !self.server_bans.contains_key(&ban.address) {
                        self.take_shared_ban(now, ban);
                    }
                }
                if reply {
                    self.announce_snapshot(now, false);
                }
            }
            Presence::Banned(ban) => self.take_shared_ban(now, ban),
            Presence::Unbanned { address } => {
                if let Some(lifted) = self.server_bans.remove(&address) {
                    self.cancel_server_ban_timer(address, &lifted);
                }
            }
            Presence::Joined { who, room, private } => {
                mirror.join(node, who.clone(), room.clone(), private);
                self.tell_of_remote_join(&who, &room);
            }
            Presence::Left { nick, room, reason } => {
                let Some(user) = mirror.leave(&nick, &room) else {
                    return;
                };
                let reply = Reply::Left {
                    room: &room,
                    who: user.person(),
                    reason: reason.as_deref(),
                };
                self.tell_room(&room, &reply);
                self.owner_departed(&nick, [&room]);
            }
            Presence::Kicked {
                nick,
                room,
                by,
                reason,
            } => {
                let general = room == RoomName::general();
                let user = if general {
                    mirror.remove(&nick)
                } else {
                    mirror.leave(&nick, &room)
                };
                let Some(user) = user else {
                    return;
                };
                let reply = Reply::Kicked {
                    scope: if general {
                        Scope::Server
                    } else {
                        Scope::Room(&room)
                    },
                    who: user.person(),
                    by: by.person(),
                    reason: reason.as_deref(),
                };
                if general {
                    // Off the server: everyone who shared a room hears it.
                    let peers = self.local_members_of(&user.rooms);
                    self.out.broadcast_to(peers, None, &reply, Priority::Urgent);
                    self.owner_departed(&nick, &user.rooms);
                } else {
                    self.tell_room(&room, &reply);
                    self.owner_departed(&nick, [&room]);
                }
            }
            Presence::Muted {
                nick,
                room,
                by,
                for_ms,
            } => {
                let reply = Reply::Muted {
                    room: &room,
                    nick: &nick,
                    by: &by,
                    duration: std::time::Duration::from_millis(for_ms),
                };
                self.tell_room(&room, &reply);
            }
            Presence::Renamed { old, new } => {
                let Some(before) = mirror.rename(&old, new) else {
                    return;
                };
                let peers = self.local_members_of(&before.rooms);
                let reply = Reply::NickChanged {
                    old: before.person(),
                    new: &new,
                };
                self.out.broadcast_to(peers, None, &reply, Priority::Normal);
            }
            Presence::Quit { nick, message } => {
                if let Some(user) = mirror.remove(&nick) {
                    self.tell_of_remote_quit(&user, message.as_deref());
                    self.owner_departed(&nick, &user.rooms);
                }
            }
        }
    }

    /// Another node's snapshot replaces what was known of it; the
    /// difference is told as it would have been live (it is what this node
    /// missed while one of them was cut off): joins, parts and quits.
    fn take_snapshot(&mut self, node: &NodeName, users: Vec<NodeUser>) {
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return;
        };
        let before: BTreeMap<Nick, RemoteUser> = cluster
            .mirror
            .users()
            .filter(|user| user.node == *node)
            .map(|user| (user.who.nick.folded(), user.clone()))
            .collect();
        cluster.mirror.replace_node(node, users);
        let after: BTreeMap<Nick, RemoteUser> = cluster
            .mirror
            .users()
            .filter(|user| user.node == *node)
            .map(|user| (user.who.nick.folded(), user.clone()))
            .collect();
        for (key, old) in &before {
            match after.get(key) {
                None => {
                    self.tell_of_remote_quit(old, None);
                    self.owner_departed(&old.who.nick, &old.rooms);
                }
                Some(new) => {
                    for room in old.rooms.difference(&new.rooms) {
                        let reply = Reply::Left {
                            room,
                            who: old.person(),
                            reason: None,
                        };
                        self.tell_room(room, &reply);
                    }
                    self.owner_departed(&old.who.nick, old.rooms.difference(&new.rooms));
                }
            }
        }
        for (key, new) in &after {
            let known = before.get(key).map(|old| &old.rooms);
            for room in &new.rooms {
                if known.is_none_or(|rooms| !rooms.contains(room)) {
                    self.tell_of_remote_join(&new.who, room);
                }
            }
        }
    }

    /// "* nick joined #room" to this node's members of the room.
    fn tell_of_remote_join(&mut self, who: &Speaker, room: &RoomName) {
        let reply = Reply::Joined {
            room,
            who: who.person(),
        };
        self.tell_room(room, &reply);
    }

    /// A presence notice to this node's members of a room, if it has any
    /// and is small enough for presence notices.
    fn tell_room(&mut self, room: &RoomName, reply: &Reply<'_>) {
        let limit = self.config.presence_announce_limit;
        let remote = self.remote_count(room);
        if let Some(local) = self.rooms.get_mut(room)
            && !local.is_empty()
            && local.len() + remote <= limit
        {
            self.out
                .broadcast(&local.audiences(), None, reply, Priority::Normal);
        }
    }

    fn node_gone(&mut self, node: &NodeName) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let gone = cluster.mirror.remove_node(node);
        let message = format!("node {node} is gone");
        for user in &gone {
            self.tell_of_remote_quit(user, Some(&message));
            self.owner_departed(&user.who.nick, &user.rooms);
        }
    }

    fn tell_of_remote_quit(&mut self, user: &super::remote::RemoteUser, message: Option<&str>) {
        let peers = self.local_members_of(&user.rooms);
        let reply = Reply::Quit {
            who: user.person(),
            message,
        };
        self.out.broadcast_to(peers, None, &reply, Priority::Normal);
    }

    /// This node's members of these rooms, each once, in rooms small
    /// enough for presence notices.
    fn local_members_of(&self, rooms: &BTreeSet<RoomName>) -> BTreeSet<ConnId> {
        let limit = self.config.presence_announce_limit;
        let mut peers = BTreeSet::new();
        for name in rooms {
            if let Some(room) = self.rooms.get(name)
                && room.len() + self.remote_count(name) <= limit
            {
                peers.extend(room.members());
            }
        }
        peers
    }

    // ----- Operators across the cluster -----

    /// A kick, mute or invitation of a user of another node, by an
    /// operator or by the room's owner (or a channel operator) here: sent
    /// to that node (`true`), or refused here with the reason (`true`), or
    /// not a user of another node (`false`: the caller goes on as for a
    /// local user). The caller checked the right.
    pub(super) fn order_remote(
        &mut self,
        conn: ConnId,
        room: &RoomName,
        target: &Nick,
        action: OrderAction,
        authority: super::moderation::Authority,
    ) -> bool {
        let Some(cluster) = self.cluster.as_deref() else {
            return false;
        };
        if self.conn_named(target).is_some() {
            return false;
        }
        let Some(user) = cluster.mirror.user(target) else {
            return false;
        };
        // Kicked or muted out of a room they are in; invited into one
        // they are not in.
        let in_room = user.rooms.contains(room);
        let refusal = match &action {
            OrderAction::Invite { .. } if in_room => Some((
                ErrorCode::AlreadyInRoom,
                format!("{target} is already in #{room}"),
            )),
            OrderAction::Kick { .. } | OrderAction::Mute { .. }
                if *room != RoomName::general() && !in_room =>
            {
                Some((ErrorCode::NotInRoom, format!("{target} is not in #{room}")))
            }
            _ => None,
        };
        if let Some((code, text)) = refusal {
            let subject = format!("{target} #{room}");
            self.out.error_about(conn, code, Some(&subject), &text);
            return true;
        }
        if self.cluster_ready(conn, Some(target.as_str())) != Some(true) {
            return true;
        }
        let (Some(cluster), Some(session)) = (&self.cluster, self.sessions.get(&conn)) else {
            return true;
        };
        let order = BusOrder {
            by: speaker(session),
            target: *target,
            action,
            node: cluster.node.clone(),
            conn,
            by_owner: authority != super::moderation::Authority::Operator,
        };
        self.bus(BusRequest::Order(Box::new(order)));
        true
    }

    /// An operator, or a room's owner, of another node ordered something
    /// about a user here. Its node checked the right; this one checks the
    /// target is still here and in the room, and that an owner's order
    /// does not touch a server operator (whom owners cannot moderate; the
    /// order is dropped, as the owner's node cannot see who operates here).
    fn obey(&mut self, now: Instant, order: &BusOrder) {
        let Some(victim) = self.conn_named(&order.target) else {
            return;
        };
        match &order.action {
            OrderAction::Invite { room } => self.invited_from_cluster(victim, room, order),
            OrderAction::Kick { room, reason } => {
                if self.may_moderate(victim, room, order) {
                    self.kick_member(&order.by, None, victim, room, reason.as_deref());
                }
            }
            OrderAction::Mute { room, for_ms } => {
                if self.may_moderate(victim, room, order) {
                    let duration = std::time::Duration::from_millis(*for_ms);
                    // Past the room's limit of mutes the order is dropped:
                    // the operator's node cannot see this node's mutes.
                    let _ = self.mute_member(now, order.by.nick, victim, room, duration);
                }
            }
        }
    }

    /// Whether a kick or mute ordered from another node still applies to
    /// `victim`: a member of the room (or anyone, in #general), and not a
    /// server operator when the order is an owner's.
    fn may_moderate(&self, victim: ConnId, room: &RoomName, order: &BusOrder) -> bool {
        let operator = self.sessions.get(&victim).is_some_and(|s| s.is_operator());
        let member = self.rooms.get(room).is_some_and(|r| r.has_member(victim));
        !(order.by_owner && operator) && (member || *room == RoomName::general())
    }

    /// A user here was invited into a private room of another node: this
    /// connection may join it (the room is private on every node), and is
    /// told as a local invitee is. Past the room's limit of invitations
    /// here the invitation is dropped.
    fn invited_from_cluster(&mut self, victim: ConnId, room: &RoomName, order: &BusOrder) {
        let limit = self.config.limits.invites_per_room;
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return;
        };
        let invited = cluster.invited.entry(room.clone()).or_default();
        if invited.len() >= limit && !invited.contains(&victim) {
            return;
        }
        invited.insert(victim);
        if let Some(here) = self.rooms.get_mut(room)
            && here.private
        {
            here.invites.insert(victim);
        }
        if let Some(session) = self.sessions.get_mut(&victim) {
            let standing = session.standing_mut();
            if !standing.invited_to.contains(room) {
                standing.invited_to.push(room.clone());
            }
        }
        let reply = Reply::Invited {
            room,
            by: order.by.person(),
        };
        self.out.send(victim, &reply);
    }

    /// Whether a connection here was invited into a private room of
    /// another node.
    pub(super) fn invited_elsewhere(&self, conn: ConnId, room: &RoomName) -> bool {
        self.cluster.as_ref().is_some_and(|cluster| {
            cluster
                .invited
                .get(room)
                .is_some_and(|invited| invited.contains(&conn))
        })
    }

    fn ordered(&mut self, order: &BusOrder, result: Result<(), BusFailure>) {
        if !self.sessions.contains_key(&order.conn) {
            return;
        }
        match result {
            Ok(()) => {
                if let OrderAction::Invite { room } = &order.action {
                    let reply = Reply::InviteSent {
                        room,
                        nick: &order.target,
                    };
                    self.out.send(order.conn, &reply);
                }
            }
            Err(BusFailure::NoSuchNick) => self.no_such_nick(order.conn, &order.target),
            Err(BusFailure::Unavailable | BusFailure::Outdated) => self.out.error_about(
                order.conn,
                ErrorCode::Unavailable,
                Some(order.target.as_str()),
                UNAVAILABLE,
            ),
        }
    }

    /// A kick carried out here (decided here or ordered from another
    /// node): the other nodes' members of the room hear it as a kick, and
    /// the departure that follows is not announced again.
    pub(super) fn cluster_kicked(
        &mut self,
        victim: Nick,
        room: &RoomName,
        by: &Speaker,
        reason: Option<&str>,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster.departure_announced = true;
        self.bus(BusRequest::Announce(Presence::Kicked {
            nick: victim,
            room: room.clone(),
            by: Box::new(by.clone()),
            reason: reason.map(str::to_owned),
        }));
    }

    /// A mute set here: the other nodes' members of the room hear it.
    pub(super) fn cluster_muted(
        &mut self,
        victim: Nick,
        room: &RoomName,
        by: Nick,
        duration: std::time::Duration,
    ) {
        if self.cluster.is_some() {
            self.bus(BusRequest::Announce(Presence::Muted {
                nick: victim,
                room: room.clone(),
                by,
                for_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            }));
        }
    }

    /// Whether a room that has no members here is private on another node
    /// (invitations are per node: nobody here may join or read it).
    /// Privacy changed after the room was created (IRC `+i`/`-i`) is the
    /// room's settings', which are stale for a room on no node.
    pub(super) fn private_elsewhere(&self, room: &RoomName) -> bool {
        if self.rooms.contains_key(room) {
            return false;
        }
        let Some(cluster) = self.cluster.as_ref() else {
            return false;
        };
        match cluster
            .settings
            .get(room)
            .and_then(|settings| settings.private)
        {
            Some(private) => private && cluster.mirror.has_room(room),
            None => cluster.mirror.is_private(room),
        }
    }

    /// Whether a user of another node holds the nickname.
    pub(super) fn online_elsewhere(&self, nick: &Nick) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|cluster| cluster.mirror.user(nick).is_some())
    }

    /// An operator's server ban here: the other nodes ban the address too.
    pub(super) fn cluster_banned(&mut self, now: Instant, address: IpAddr, ban: &Ban) {
        if self.cluster.is_none() {
            return;
        }
        if let Some(shared) = shared_ban(now, address, ban) {
            self.bus(BusRequest::Announce(Presence::Banned(shared)));
        }
    }

    /// An operator lifted a server ban here: the other nodes lift it too.
    pub(super) fn cluster_unbanned(&mut self, address: IpAddr) {
        if self.cluster.is_some() {
            self.bus(BusRequest::Announce(Presence::Unbanned { address }));
        }
    }

    /// A server ban another node passed on, within this server's limit.
    fn take_shared_ban(&mut self, now: Instant, shared: SharedBan) {
        let limit = self.config.limits.server_bans;
        if self.server_bans.len() >= limit && !self.server_bans.contains_key(&shared.address) {
            return;
        }
        let until = match shared.for_ms {
            None => None,
            Some(ms) => match now.checked_add(std::time::Duration::from_millis(ms)) {
                Some(until) => Some(until),
                None => return,
            },
        };
        let ban = Ban {
            until,
            reason: shared.reason.map(Into::into),
        };
        if let Some(replaced) = self.server_bans.remove(&shared.address) {
            self.cancel_server_ban_timer(shared.address, &replaced);
        }
        self.impose_server_ban(now, shared.address, ban, None);
    }

    /// The address a user of another node connected from, as announced.
    pub(super) fn remote_host(&self, nick: &Nick) -> Option<IpAddr> {
        let cluster = self.cluster.as_ref()?;
        cluster.mirror.user(nick).map(|user| user.who.host)
    }

    // ----- Listings that see the whole cluster -----

    /// The `352` parameters (after the asker's nickname) of a room's
    /// members on other nodes: their node announced no away state, modes
    /// or real name, so they show as here (`H`) with their nickname.
    pub(super) fn remote_who_lines(&self, room: &RoomName, server: &str) -> Vec<Vec<String>> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        cluster
            .mirror
            .members(room)
            .map(|user| {
                vec![
                    crate::irc::render::channel(room),
                    user.who.user.clone(),
                    crate::reply::host_text(user.who.host).to_string(),
                    server.to_owned(),
                    user.who.nick.to_string(),
                    "H".to_owned(),
                    format!("0 {}", user.who.nick),
                ]
            })
            .collect()
    }

    /// How many members a room has on other nodes.
    pub(super) fn remote_count(&self, room: &RoomName) -> usize {
        self.cluster
            .as_ref()
            .map_or(0, |cluster| cluster.mirror.count(room))
    }

    /// Rooms that have members only on other nodes, in name order.
    pub(super) fn remote_only_rooms(&self) -> Vec<RoomName> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        cluster
            .mirror
            .rooms()
            .filter(|room| {
                let secret = cluster
                    .settings
                    .get(*room)
                    .is_some_and(|settings| settings.secret);
                !self.rooms.contains_key(*room) && !self.private_elsewhere(room) && !secret
            })
            .cloned()
            .collect()
    }

    /// How many members a room has on other nodes (IRC `+l` counts the
    /// whole cluster's).
    pub(super) fn members_elsewhere(&self, room: &RoomName) -> usize {
        self.cluster
            .as_ref()
            .map_or(0, |cluster| cluster.mirror.members(room).count())
    }

    /// Whether a room exists on another node (so joining it here joins
    /// it, rather than creating a new room owned by the joiner).
    pub(super) fn exists_elsewhere(&self, room: &RoomName) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|cluster| cluster.mirror.has_room(room))
    }
}

/// A server ban as other nodes take it: the time left, or none once it
/// has run out.
fn shared_ban(now: Instant, address: IpAddr, ban: &Ban) -> Option<SharedBan> {
    let for_ms = match ban.until {
        None => None,
        Some(until) if until <= now => return None,
        Some(until) => Some(u64::try_from((until - now).as_millis()).unwrap_or(u64::MAX)),
    };
    Some(SharedBan {
        address,
        for_ms,
        reason: ban.reason.as_deref().map(str::to_owned),
    })
}

/// A session as other nodes see it.
pub(super) fn speaker(session: &Session) -> Speaker {
    Speaker {
        nick: session.nick,
        user: session.user().to_owned(),
        host: session.peer,
    }
}

/// Adds a room's members on other nodes to a listing, keeping it in
/// nickname order. A free function over the cluster state alone, so the
/// listing can borrow it while the outbox is written.
pub(super) fn add_remote_members<'a>(
    cluster: Option<&'a ClusterState>,
    room: &RoomName,
    entries: &mut Vec<WhoEntry<'a>>,
) {
    let Some(cluster) = cluster else {
        return;
    };
    let before = entries.len();
    let owner = cluster
        .settings
        .get(room)
        .and_then(|settings| settings.owner.as_ref())
        .map(Nick::folded);
    entries.extend(cluster.mirror.members(room).map(|user| WhoEntry {
        person: user.person(),
        owner: owner == Some(user.who.nick.folded()),
        operator: false,
        voice: false,
        away: false,
        server_operator: false,
    }));
    if entries.len() != before {
        entries.sort_by_cached_key(|entry| entry.person.nick.folded());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::cluster::{BusEvent, BusRequest, ClusterConfig, NodeName};
    use crate::config::Config;
    use crate::io::Output;
    use crate::server::Server;
    use crate::test_support::epoch;

    fn node(name: &str) -> Server {
        let config = Config {
            cluster: Some(ClusterConfig {
                node: NodeName::parse(name).unwrap(),
            }),
            ..Config::default()
        };
        Server::new(config, epoch(), 1_795_000_000_000).unwrap()
    }

    fn drain(server: &mut Server) -> (Vec<String>, Vec<BusRequest>) {
        let (mut lines, mut bus) = (Vec::new(), Vec::new());
        while let Some(output) = server.poll_output() {
            match output {
                Output::Send { bytes, .. } | Output::Broadcast { bytes, .. } => {
                    lines.push(String::from_utf8(bytes.to_vec()).unwrap());
                }
                Output::Bus(request) => bus.push(*request),
                _ => {}
            }
        }
        (lines, bus)
    }

    #[test]
    fn a_line_is_shown_only_when_the_bus_brings_it_back() {
        let now = epoch();
        let mut server = node("n1");
        let alice = server
            .accept(now, "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        let bob = server
            .accept(now, "127.0.0.2:4000".parse().unwrap())
            .unwrap();
        let (lines, bus) = drain(&mut server);
        assert_eq!(
            lines[0],
            "* welcome, you are guest1-n1 in #general; type #help for commands\n"
        );
        assert!(matches!(&bus[0], BusRequest::Follow(room) if room.as_str() == "general"));

        server.handle(now, alice, b"hello\n");
        let (lines, _) = drain(&mut server);
        assert_eq!(
            lines,
            [
                "! unavailable: the cluster cannot be reached just now; nothing was done, try again\n"
            ]
        );

        server.handle_bus(now, BusEvent::Up);
        drain(&mut server);
        server.handle(now, alice, b"hello\n");
        let (lines, bus) = drain(&mut server);
        assert!(
            lines.is_empty(),
            "shown before the bus ordered it: {lines:?}"
        );
        let [BusRequest::Post(line)] = bus.as_slice() else {
            panic!("expected one post, got {bus:?}");
        };
        server.handle_bus(
            now,
            BusEvent::Line {
                id: crate::ids::MessageId::new(7),
                line: Arc::clone(line),
            },
        );
        let (lines, _) = drain(&mut server);
        assert_eq!(lines, ["[#general] guest1-n1: hello\n"]);
        let _ = bob;
    }

    #[test]
    fn a_nickname_taken_here_while_its_claim_was_in_flight_is_not_given_back() {
        let now = epoch();
        let mut server = node("n1");
        let alice = server
            .accept(now, "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        let bob = server
            .accept(now, "127.0.0.2:4000".parse().unwrap())
            .unwrap();
        server.handle_bus(now, BusEvent::Up);
        drain(&mut server);
        server.handle(now, alice, b"#nick zed\n");
        server.handle(now, bob, b"#nick zed\n");
        drain(&mut server);
        let zed = crate::ids::Nick::parse("zed").unwrap();
        for conn in [alice, bob] {
            server.handle_bus(
                now,
                BusEvent::Claimed {
                    conn,
                    nick: zed,
                    result: Ok(true),
                },
            );
        }
        let (lines, bus) = drain(&mut server);
        assert!(
            lines
                .iter()
                .any(|l| l == "! nick-taken: zed is taken; pick another nickname\n"),
            "{lines:?}"
        );
        assert!(
            !bus.iter()
                .any(|r| matches!(r, BusRequest::Release(n) if *n == zed)),
            "alice's nickname was given back: {bus:?}"
        );
    }

    #[test]
    fn a_private_room_made_here_does_not_read_an_earlier_room_of_its_name() {
        use crate::history::{Record, RecordKind};
        use crate::history_query::HistoryAnswer;
        let now = epoch();
        let mut server = node("n1");
        let alice = server
            .accept(now, "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        server.handle_bus(now, BusEvent::Up);
        server.handle(now, alice, b"#create secret private\n#history\n");
        let mut query = None;
        while let Some(output) = server.poll_output() {
            if let Output::QueryHistory(q) = output {
                query = Some(q);
            }
        }
        let query = query.expect("the stream is asked");
        let old = Record {
            id: crate::ids::MessageId::new(5),
            room: crate::ids::RoomName::parse("secret").unwrap(),
            ts: 1_795_000_000_000,
            from: crate::ids::Nick::parse("eve").unwrap(),
            kind: RecordKind::Msg,
            text: "an earlier secret".into(),
            to: None,
            private: true,
        };
        let mut collector = query.collector();
        if query.admits(&old) {
            collector.offer(Arc::new(old));
        }
        let answer = HistoryAnswer {
            request: query.request,
            records: collector.finish(),
            shortfall: None,
        };
        server.handle_history_answer(now, answer);
        let (lines, _) = drain(&mut server);
        assert_eq!(lines, ["+ history #secret 0\n"]);
    }

    #[test]
    fn history_since_an_id_answers_from_the_lines_the_bus_brought() {
        let now = epoch();
        let mut server = node("n1");
        let alice = server
            .accept(now, "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        server.handle_bus(now, BusEvent::Up);
        drain(&mut server);
        for n in 1..=6u64 {
            server.handle(now, alice, format!("line {n}\n").as_bytes());
            let (_, bus) = drain(&mut server);
            let [BusRequest::Post(line)] = bus.as_slice() else {
                panic!("expected one post, got {bus:?}");
            };
            let id = crate::ids::MessageId::new(n);
            server.handle_bus(
                now,
                BusEvent::Line {
                    id,
                    line: Arc::clone(line),
                },
            );
        }
        drain(&mut server);
        server.handle(now, alice, b"#history since 1\n");
        let (lines, bus) = drain(&mut server);
        assert!(bus.is_empty(), "{bus:?}");
        assert_eq!(
            lines,
            [(2..=6).fold("+ history #general 5\n".to_owned(), |all, n| {
                all + &format!("[#general 2026-11-18 11:06:40] guest1-n1: line {n}\n")
            })]
        );
    }
}
