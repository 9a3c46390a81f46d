//! The memory bus: a deterministic model of the Redis a cluster shares,
//! with exactly the semantics of docs/CLUSTER.md's scripts.
//!
//! What Redis holds is here as plain maps: the cluster-wide id counter, a
//! bounded stream per room (entries kept as the JSON the Redis bus stores),
//! the tails, the followers of each room, the nickname holders, the node
//! leases and the set of nodes. Each node has a link: its own FIFO channel,
//! on which envelopes travel as JSON exactly as they are published, and the
//! answers to its requests. Envelopes reaching a node go through the
//! core's [`Sequencer`], as in the engine's bus, so a node whose link was
//! cut and healed catches up from the streams.
//!
//! A cut link (`cut NODE`) is a node that cannot reach Redis: it hears
//! `Down` (at once, or with `cut NODE unnoticed` after its next request
//! failed), every request it makes is answered `Unavailable` (those without
//! an answer are not carried out), and what is published to it meanwhile is
//! lost, as pub/sub loses it (follows and unfollows are remembered for the
//! heal; releases and announcements are dropped, as the engine's bus drops
//! them). Healing it re-registers its followed rooms, fills each from its
//! stream, then says `Up`, in the engine's bus's order. Killing a node
//! lapses its lease at once: every other node hears `NodeGone`, and its
//! nicknames are claimable; so does a node cut for longer than its lease
//! ([`LEASE`]), until it heals.
//!
//! Nothing here is timed: the memory cluster driver moves everything until
//! nothing moves after every step, so what a transcript sees follows from
//! the order of its steps alone.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use chatd_core::cluster::{
    BusEvent, BusFailure, BusLine, BusRequest, Envelope, NodeName, Presence, RoomChange,
    RoomSettings, Sequencer, Verdict, keys,
};
use chatd_core::history::Record;
use chatd_core::history_query::{HistoryAnswer, HistoryQuery, Shortfall};
use chatd_core::{MessageId, Nick, RoomName};
use chatd_engine::cluster::{LEASE, RENEW_EVERY};

/// What Redis holds, and each node's link to it.
#[derive(Debug)]
pub struct MemoryBus {
    /// `MAXLEN` of every room's stream (the config's `history_size`).
    history_size: usize,
    /// `chatd:next-id`.
    next_id: u64,
    /// `chatd:room:{room}`: entry ids (message ids) and their `m` field.
    streams: BTreeMap<RoomName, VecDeque<(MessageId, String)>>,
    /// `chatd:tails`.
    tails: BTreeMap<RoomName, MessageId>,
    /// `chatd:followers:{room}`.
    followers: BTreeMap<RoomName, BTreeSet<NodeName>>,
    /// `chatd:nick:{folded}`, by key.
    nicks: BTreeMap<String, NodeName>,
    /// `chatd:node:{name}`: the nodes whose lease has not lapsed.
    leases: BTreeSet<NodeName>,
    /// `chatd:nodes`.
    nodes: BTreeSet<NodeName>,
    /// `chatd:settings`: rooms whose settings are not the defaults.
    settings: BTreeMap<RoomName, RoomSettings>,
    /// Each node's side: its connection, channel and sequencer.
    links: BTreeMap<NodeName, Link>,
    /// Whether a node hears the reply to its request before what the
    /// script published to it (see [`MemoryBus::replies_first`]).
    replies_first: bool,
    /// How much the requesting node had to hear when its request began.
    request_start: usize,
}

/// One node's bus: what a node's bus thread would hold.
#[derive(Debug, Default)]
struct Link {
    /// Connected to Redis (not cut).
    up: bool,
    /// Cut, and the node's bus has not noticed yet: it will at its next
    /// request (which fails) or lease renewal, and then say `Down`.
    unnoticed: bool,
    /// When it was cut: its lease lapses [`LEASE`] later.
    cut_at: Option<Instant>,
    /// What reached the node and the core has not heard yet, in order.
    incoming: VecDeque<Incoming>,
    /// Which line each followed room is at.
    sequencer: Sequencer,
    /// Rooms followed or unfollowed while cut: registered on heal.
    follow_later: BTreeMap<RoomName, bool>,
    /// Nodes seen gone while this one was cut: told on heal.
    gone_meanwhile: BTreeSet<NodeName>,
}

/// Something on its way to a node's core.
#[derive(Debug)]
enum Incoming {
    /// A message on the node's channel, as published (JSON).
    Published(String),
    /// The bus's own news or an answer to a request.
    Event(BusEvent),
}

/// A failure of the memory bus itself: a step the model cannot take (a
/// node that does not exist), or JSON the other side cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("memory bus: {0}")]
pub struct BusError(pub String);

impl MemoryBus {
    /// An empty Redis whose streams keep `history_size` lines each.
    pub fn new(history_size: usize) -> Self {
        Self {
            history_size: history_size.max(1),
            next_id: 0,
            streams: BTreeMap::new(),
            tails: BTreeMap::new(),
            followers: BTreeMap::new(),
            nicks: BTreeMap::new(),
            leases: BTreeSet::new(),
            nodes: BTreeSet::new(),
            settings: BTreeMap::new(),
            links: BTreeMap::new(),
            replies_first: false,
            request_start: 0,
        }
    }

    /// The same bus, but a node hears the reply to its own request before
    /// what the script published to it (its own room line, a whisper to
    /// itself). The engine's bus reads replies and publications on two
    /// connections, so either order happens; by default the memory bus
    /// keeps the script's (publications, then the reply).
    pub fn replies_first(mut self) -> Self {
        self.replies_first = true;
        self
    }

    /// A node starts (or starts again, with nothing of its old link): its
    /// bus connects, takes its lease, joins `chatd:nodes`, forgets the
    /// nicknames an earlier process of the node held (the **forget**
    /// script: its users are gone), and says `Up`.
    pub fn join(&mut self, node: &NodeName) {
        self.leases.insert(node.clone());
        self.nodes.insert(node.clone());
        self.nicks.retain(|_, holder| holder != node);
        let mut link = Link {
            up: true,
            ..Link::default()
        };
        link.incoming
            .push_back(Incoming::Event(self.all_settings()));
        link.incoming.push_back(Incoming::Event(BusEvent::Up));
        self.links.insert(node.clone(), link);
    }

    /// The node loses Redis at `now`. Its bus says `Down` at once if
    /// `noticed`; otherwise when its next request fails or, at the latest,
    /// when its next lease renewal does ([`RENEW_EVERY`]). It cannot renew
    /// its lease: unless it heals within [`LEASE`], the lease lapses.
    pub fn cut(&mut self, node: &NodeName, noticed: bool, now: Instant) -> Result<(), BusError> {
        let link = self.link(node)?;
        if !link.up {
            return Err(BusError(format!("{node} is already cut")));
        }
        link.up = false;
        link.cut_at = Some(now);
        // What was published and not yet read is lost with the connection.
        link.incoming
            .retain(|incoming| !matches!(incoming, Incoming::Published(_)));
        if noticed {
            link.incoming.push_back(Incoming::Event(BusEvent::Down));
        } else {
            link.unnoticed = true;
        }
        Ok(())
    }

    /// The node reaches Redis again, as the engine's bus reconnects: it
    /// renews its lease, registers what it follows (and what it stopped
    /// following) while away, fills every room it followed before from its
    /// stream, says `Up`, then tells of the nodes that went while it was
    /// away (its first watch).
    pub fn heal(&mut self, node: &NodeName) -> Result<(), BusError> {
        let link = self.link(node)?;
        if link.up {
            return Err(BusError(format!("{node} is not cut")));
        }
        link.up = true;
        link.unnoticed = false;
        link.cut_at = None;
        let later = std::mem::take(&mut link.follow_later);
        let followed: Vec<RoomName> = link
            .sequencer
            .positions()
            .into_iter()
            .map(|(room, _)| room)
            .collect();
        self.leases.insert(node.clone());
        self.nodes.insert(node.clone());
        for room in followed {
            self.followers.entry(room).or_default().insert(node.clone());
        }
        for (room, follow) in later {
            if follow {
                self.follow(node, room);
            } else if let Some(set) = self.followers.get_mut(&room) {
                set.remove(node);
            }
        }
        let mut events = Vec::new();
        let positions = self.link(node)?.sequencer.positions();
        for (room, last) in positions {
            let missed = self.read_after(&room, last, None)?;
            let link = self.link(node)?;
            let mut prev = last.get();
            for (id, line) in missed {
                if link.sequencer.offer(&room, id, prev) == Verdict::Show {
                    events.push(BusEvent::Line {
                        id,
                        line: Arc::new(line),
                    });
                }
                prev = id.get();
            }
        }
        events.push(self.all_settings());
        events.push(BusEvent::Up);
        let link = self.link(node)?;
        let gone = std::mem::take(&mut link.gone_meanwhile);
        events.extend(gone.into_iter().map(BusEvent::NodeGone));
        link.incoming
            .extend(events.into_iter().map(Incoming::Event));
        Ok(())
    }

    /// The node dies: its lease lapses at once, a surviving node's bus
    /// removes it from `chatd:nodes` and the followers sets, and every
    /// other node hears that it is gone (a cut one when it heals). The
    /// nicknames it held keep naming it: claimable while it is dead.
    pub fn kill(&mut self, node: &NodeName) -> Result<(), BusError> {
        self.link(node)?;
        self.links.remove(node);
        self.lapse(node);
        Ok(())
    }

    /// Time moved to `now`: a cut node that has not noticed notices when
    /// its lease renewal fails, and a node cut for [`LEASE`] loses its
    /// lease (the others see it gone; it is back when it heals).
    pub fn advance(&mut self, now: Instant) {
        let mut lapsed = Vec::new();
        for (node, link) in &mut self.links {
            let Some(cut_at) = link.cut_at else { continue };
            if link.unnoticed && now >= cut_at + RENEW_EVERY {
                link.unnoticed = false;
                link.incoming.push_back(Incoming::Event(BusEvent::Down));
            }
            if now >= cut_at + LEASE && self.leases.contains(node) {
                lapsed.push(node.clone());
            }
        }
        for node in lapsed {
            self.lapse(&node);
        }
    }

    /// When [`Self::advance`] next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.links
            .iter()
            .filter_map(|(node, link)| {
                let cut_at = link.cut_at?;
                if link.unnoticed {
                    Some(cut_at + RENEW_EVERY)
                } else {
                    self.leases.contains(node).then_some(cut_at + LEASE)
                }
            })
            .min()
    }

    /// A node's lease is gone: the other nodes' watch sees it, the
    /// **gone** script takes it out of the node set and every followers
    /// set, and every other node hears it is gone (a cut one when it heals).
    fn lapse(&mut self, node: &NodeName) {
        self.leases.remove(node);
        self.nodes.remove(node);
        for followers in self.followers.values_mut() {
            followers.remove(node);
        }
        for (other, link) in &mut self.links {
            if other == node {
                continue;
            }
            if link.up {
                link.incoming
                    .push_back(Incoming::Event(BusEvent::NodeGone(node.clone())));
            } else {
                link.gone_meanwhile.insert(node.clone());
            }
        }
    }

    /// The node stops gracefully: the **leave** script gives its lease
    /// back and takes it out of the node set and the followers sets; the
    /// other nodes notice its lease gone, as when it dies.
    pub fn leave(&mut self, node: &NodeName) -> Result<(), BusError> {
        self.kill(node)
    }

    /// Whether the node is running (joined and not killed).
    pub fn is_running(&self, node: &NodeName) -> bool {
        self.links.contains_key(node)
    }

    /// Carries out one request of the node, as its bus thread would run
    /// the script: answers and publications go to the links at once, in
    /// the order the script makes them.
    pub fn request(&mut self, node: &NodeName, request: BusRequest) -> Result<(), BusError> {
        let link = self.link(node)?;
        let up = link.up;
        self.request_start = link.incoming.len();
        if !up {
            let answer = match request.unavailable() {
                Ok(answer) => Some(answer),
                Err(BusRequest::Follow(room)) => {
                    self.link(node)?.follow_later.insert(room, true);
                    None
                }
                Err(BusRequest::Unfollow(room)) => {
                    let link = self.link(node)?;
                    link.sequencer.unfollow(&room);
                    link.follow_later.insert(room, false);
                    None
                }
                // Not carried out; nothing answers them.
                Err(_) => None,
            };
            if let Some(answer) = answer {
                self.answer(node, answer)?;
            }
            let link = self.link(node)?;
            if std::mem::take(&mut link.unnoticed) {
                // The failed command is how the bus learns it is down.
                link.incoming.push_back(Incoming::Event(BusEvent::Down));
            }
            return Ok(());
        }
        match request {
            BusRequest::Post(line) => self.post(node, line),
            BusRequest::Whisper(whisper) => {
                let result = match self.live_holder(&whisper.to) {
                    Some(holder) => {
                        self.next_id += 1;
                        let id = MessageId::new(self.next_id);
                        let envelope = Envelope::Whisper {
                            id,
                            whisper: (*whisper).clone(),
                        };
                        // Its node not listening (cut off): not delivered,
                        // the id spent all the same.
                        if self.publish(&holder, &envelope)? {
                            Ok(id)
                        } else {
                            Err(BusFailure::Unavailable)
                        }
                    }
                    _ => Err(BusFailure::NoSuchNick),
                };
                self.answer(node, BusEvent::Whispered { whisper, result })
            }
            BusRequest::Order(order) => {
                // The **order** script: like a whisper, without an id.
                let result = match self.live_holder(&order.target) {
                    Some(holder) => {
                        let envelope = Envelope::Order {
                            order: (*order).clone(),
                        };
                        if self.publish(&holder, &envelope)? {
                            Ok(())
                        } else {
                            Err(BusFailure::Unavailable)
                        }
                    }
                    None => Err(BusFailure::NoSuchNick),
                };
                self.answer(node, BusEvent::Ordered { order, result })
            }
            BusRequest::Claim { conn, nick } => {
                let key = keys::nick(&nick);
                let granted = match self.nicks.get(&key) {
                    None => true,
                    Some(holder) => holder == node || !self.leases.contains(holder),
                };
                if granted {
                    self.nicks.insert(key, node.clone());
                }
                self.answer(
                    node,
                    BusEvent::Claimed {
                        conn,
                        nick,
                        result: Ok(granted),
                    },
                )
            }
            BusRequest::Release(nick) => {
                let key = keys::nick(&nick);
                if self.nicks.get(&key) == Some(node) {
                    self.nicks.remove(&key);
                }
                Ok(())
            }
            BusRequest::Follow(room) => {
                self.follow(node, room);
                Ok(())
            }
            BusRequest::Unfollow(room) => {
                if let Some(set) = self.followers.get_mut(&room) {
                    set.remove(node);
                }
                self.link(node)?.sequencer.unfollow(&room);
                Ok(())
            }
            BusRequest::Announce(presence) => self.announce(node, presence),
            BusRequest::Settle(change) => self.settle(node, change),
        }
    }

    /// The **settle** script: the change merged into the room's settings,
    /// which are published to every node in `chatd:nodes` (this one too).
    fn settle(&mut self, node: &NodeName, change: Box<RoomChange>) -> Result<(), BusError> {
        let current = self.settings.remove(&change.room).unwrap_or_default();
        if !current.admits(&change.setting) {
            if current != RoomSettings::default() {
                self.settings.insert(change.room.clone(), current);
            }
            return self.answer(
                node,
                BusEvent::Settled {
                    change,
                    result: Err(BusFailure::Outdated),
                },
            );
        }
        let settings = current.merged(&change.setting, change.at_ms);
        if settings != RoomSettings::default() {
            self.settings.insert(change.room.clone(), settings.clone());
        }
        let envelope = Envelope::Settings {
            settings,
            change: (*change).clone(),
        };
        let nodes: Vec<NodeName> = self.nodes.iter().cloned().collect();
        for to in &nodes {
            self.publish(to, &envelope)?;
        }
        self.answer(
            node,
            BusEvent::Settled {
                change,
                result: Ok(()),
            },
        )
    }

    /// `HGETALL chatd:settings`, as a connecting bus reads it.
    fn all_settings(&self) -> BusEvent {
        BusEvent::AllSettings(
            self.settings
                .iter()
                .map(|(room, settings)| (room.clone(), settings.clone()))
                .collect(),
        )
    }

    /// The next thing the node's core hears, if any: an envelope from its
    /// channel once the sequencer let it through (filling a gap from the
    /// stream first), or an answer or news of the bus.
    pub fn next_event(&mut self, node: &NodeName) -> Result<Option<BusEvent>, BusError> {
        loop {
            let Some(link) = self.links.get_mut(node) else {
                return Ok(None);
            };
            let Some(incoming) = link.incoming.pop_front() else {
                return Ok(None);
            };
            let json = match incoming {
                Incoming::Event(event) => return Ok(Some(event)),
                Incoming::Published(json) => json,
            };
            let envelope: Envelope = serde_json::from_str(&json)
                .map_err(|error| BusError(format!("{node} cannot read {json}: {error}")))?;
            let Envelope::Line { id, prev, line } = envelope else {
                return Ok(Some(envelope.into_event()));
            };
            let room = line.record.room.clone();
            let mut shown = Vec::new();
            let verdict = self.link(node)?.sequencer.offer(&room, id, prev);
            match verdict {
                Verdict::Show => shown.push((id, line)),
                Verdict::Duplicate => {}
                Verdict::Gap { after } => {
                    // Read the stream after the last line shown and before
                    // this one: the lines pub/sub lost.
                    let missed = self.read_after(&room, after, Some(id))?;
                    let link = self.link(node)?;
                    let mut before = after.get();
                    for (missed_id, missed_line) in missed {
                        if link.sequencer.offer(&room, missed_id, before) == Verdict::Show {
                            shown.push((missed_id, missed_line));
                        }
                        before = missed_id.get();
                    }
                    if link.sequencer.offer(&room, id, prev) != Verdict::Show {
                        // What came between was trimmed from the stream:
                        // it is lost, and this line is next.
                        link.sequencer
                            .follow_from(room.clone(), MessageId::new(prev));
                        if link.sequencer.offer(&room, id, prev) == Verdict::Show {
                            shown.push((id, line));
                        }
                    } else {
                        shown.push((id, line));
                    }
                }
            }
            let link = self.link(node)?;
            let mut events = shown.into_iter().map(|(id, line)| BusEvent::Line {
                id,
                line: Arc::new(line),
            });
            if let Some(first) = events.next() {
                for (offset, event) in events.enumerate() {
                    link.incoming.insert(offset, Incoming::Event(event));
                }
                return Ok(Some(first));
            }
        }
    }

    /// Answers a history query from the streams, as the engine's reader
    /// of Redis does: every stored line the query admits, offered to its
    /// collector. A node cut from Redis cannot read them.
    pub fn query(&self, node: &NodeName, query: &HistoryQuery) -> Result<HistoryAnswer, BusError> {
        let up = self
            .links
            .get(node)
            .ok_or_else(|| BusError(format!("no node {node}")))?
            .up;
        if !up {
            return Ok(HistoryAnswer {
                request: query.request,
                records: Vec::new(),
                shortfall: Some(Shortfall::Unreadable),
            });
        }
        let mut collector = query.collector();
        for stream in self.streams.values() {
            for (id, json) in stream {
                let line = parse_line(json)?;
                let record = Record {
                    id: *id,
                    ..line.record
                };
                if query.admits(&record) {
                    collector.offer(Arc::new(record));
                }
            }
        }
        Ok(HistoryAnswer {
            request: query.request,
            records: collector.finish(),
            shortfall: None,
        })
    }

    /// The **post** script.
    fn post(&mut self, node: &NodeName, line: Arc<BusLine>) -> Result<(), BusError> {
        let room = line.record.room.clone();
        self.next_id += 1;
        let id = MessageId::new(self.next_id);
        let prev = self.tails.get(&room).map_or(0, |tail| tail.get());
        let json = serde_json::to_string(&*line)
            .map_err(|error| BusError(format!("cannot write a line: {error}")))?;
        let stream = self.streams.entry(room.clone()).or_default();
        stream.push_back((id, json));
        while stream.len() > self.history_size {
            stream.pop_front();
        }
        self.tails.insert(room.clone(), id);
        let followers: Vec<NodeName> = self
            .followers
            .get(&room)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        let envelope = Envelope::Line {
            id,
            prev,
            line: (*line).clone(),
        };
        for follower in &followers {
            self.publish(follower, &envelope)?;
        }
        self.answer(
            node,
            BusEvent::Posted {
                line,
                result: Ok(id),
            },
        )
    }

    /// The **announce** script: every node in `chatd:nodes` but this one.
    fn announce(&mut self, node: &NodeName, presence: Presence) -> Result<(), BusError> {
        let envelope = Envelope::Presence {
            node: node.clone(),
            presence,
        };
        let others: Vec<NodeName> = self.nodes.iter().filter(|n| *n != node).cloned().collect();
        for other in &others {
            self.publish(other, &envelope)?;
        }
        Ok(())
    }

    /// `SADD followers` and `HGET tails` in one step, then the sequencer
    /// starts after the tail: older lines are history, not news.
    fn follow(&mut self, node: &NodeName, room: RoomName) {
        self.followers
            .entry(room.clone())
            .or_default()
            .insert(node.clone());
        let tail = self.tails.get(&room).copied();
        if let Some(link) = self.links.get_mut(node) {
            match tail {
                Some(tail) => link.sequencer.follow_from(room, tail),
                None => link.sequencer.follow(room),
            }
        }
    }

    /// The node holding a nickname, if its lease is live.
    fn live_holder(&self, nick: &Nick) -> Option<NodeName> {
        self.nicks
            .get(&keys::nick(nick))
            .filter(|holder| self.leases.contains(*holder))
            .cloned()
    }

    /// `PUBLISH chatd:to:{node}`: lost unless the node is subscribed (up).
    /// Whether it was heard, as PUBLISH's count of receivers says.
    fn publish(&mut self, to: &NodeName, envelope: &Envelope) -> Result<bool, BusError> {
        let json = serde_json::to_string(envelope)
            .map_err(|error| BusError(format!("cannot write an envelope: {error}")))?;
        match self.links.get_mut(to) {
            Some(link) if link.up => {
                link.incoming.push_back(Incoming::Published(json));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The reply to the node's own command: after what the script
    /// published to it, or before if replies come first.
    fn answer(&mut self, node: &NodeName, event: BusEvent) -> Result<(), BusError> {
        let (replies_first, start) = (self.replies_first, self.request_start);
        let incoming = &mut self.link(node)?.incoming;
        if replies_first {
            incoming.insert(start.min(incoming.len()), Incoming::Event(event));
        } else {
            incoming.push_back(Incoming::Event(event));
        }
        Ok(())
    }

    /// `XRANGE chatd:room:{room} (after (before`: the stored lines after
    /// `after`, and before `before` if given, oldest first.
    fn read_after(
        &self,
        room: &RoomName,
        after: MessageId,
        before: Option<MessageId>,
    ) -> Result<Vec<(MessageId, BusLine)>, BusError> {
        let Some(stream) = self.streams.get(room) else {
            return Ok(Vec::new());
        };
        stream
            .iter()
            .filter(|(id, _)| *id > after && before.is_none_or(|before| *id < before))
            .map(|(id, json)| parse_line(json).map(|line| (*id, line)))
            .collect()
    }

    fn link(&mut self, node: &NodeName) -> Result<&mut Link, BusError> {
        self.links
            .get_mut(node)
            .ok_or_else(|| BusError(format!("no node {node} is running")))
    }
}

fn parse_line(json: &str) -> Result<BusLine, BusError> {
    serde_json::from_str(json).map_err(|error| BusError(format!("cannot read {json}: {error}")))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use chatd_core::ConnId;
    use chatd_core::history::RecordKind;
    use chatd_core::history_query::{Position, QueryId, Scope};

    use super::*;

    fn node(name: &str) -> NodeName {
        NodeName::parse(name).unwrap()
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    /// A connection id, as it travels (the core makes them).
    fn conn(raw: u64) -> ConnId {
        serde_json::from_str(&raw.to_string()).unwrap()
    }

    fn nick(name: &str) -> Nick {
        Nick::parse(name).unwrap()
    }

    fn line(from: &NodeName, room_name: &str, text: &str) -> Arc<BusLine> {
        Arc::new(BusLine {
            record: Record {
                id: MessageId::new(0),
                room: room(room_name),
                ts: 5,
                from: nick("alice"),
                kind: RecordKind::Msg,
                text: text.into(),
                to: None,
                private: false,
            },
            user: "alice".into(),
            host: IpAddr::from([127, 0, 0, 1]),
            notice: false,
            node: from.clone(),
            conn: conn(1),
        })
    }

    /// Everything the node's core would hear now.
    fn heard(bus: &mut MemoryBus, at: &NodeName) -> Vec<BusEvent> {
        std::iter::from_fn(|| bus.next_event(at).unwrap()).collect()
    }

    /// The ids and texts of the lines among `events`.
    fn lines(events: &[BusEvent]) -> Vec<(u64, String)> {
        events
            .iter()
            .filter_map(|event| match event {
                BusEvent::Line { id, line } => Some((id.get(), line.record.text.clone())),
                _ => None,
            })
            .collect()
    }

    fn cluster(names: &[&str]) -> MemoryBus {
        let mut bus = MemoryBus::new(100);
        for name in names {
            bus.join(&node(name));
            assert_eq!(
                heard(&mut bus, &node(name)),
                [BusEvent::AllSettings(Vec::new()), BusEvent::Up]
            );
        }
        bus
    }

    fn post(bus: &mut MemoryBus, from: &str, room_name: &str, text: &str) {
        bus.request(
            &node(from),
            BusRequest::Post(line(&node(from), room_name, text)),
        )
        .unwrap();
    }

    #[test]
    fn posts_reach_every_follower_in_one_order_and_are_answered() {
        let (n1, n2, n3) = (node("n1"), node("n2"), node("n3"));
        let mut bus = cluster(&["n1", "n2", "n3"]);
        for at in [&n1, &n2] {
            bus.request(at, BusRequest::Follow(room("rust"))).unwrap();
        }
        post(&mut bus, "n1", "rust", "one");
        post(&mut bus, "n3", "rust", "two");
        post(&mut bus, "n2", "rust", "three");
        let expected = [
            (1, "one".to_owned()),
            (2, "two".into()),
            (3, "three".into()),
        ];
        assert_eq!(lines(&heard(&mut bus, &n2)), expected);
        let at_n1 = heard(&mut bus, &n1);
        assert_eq!(lines(&at_n1), expected);
        // The poster hears the line (the script publishes), then the answer.
        assert!(matches!(
            &at_n1[1],
            BusEvent::Posted { result: Ok(id), .. } if id.get() == 1
        ));
        // n3 follows nothing: only its answer.
        let at_n3 = heard(&mut bus, &n3);
        assert_eq!(at_n3.len(), 1);
        assert!(matches!(&at_n3[0], BusEvent::Posted { result: Ok(id), .. } if id.get() == 2));
    }

    #[test]
    fn replies_may_come_before_what_the_script_published() {
        let n1 = node("n1");
        let mut bus = MemoryBus::new(100).replies_first();
        bus.join(&n1);
        heard(&mut bus, &n1);
        bus.request(&n1, BusRequest::Follow(room("rust"))).unwrap();
        post(&mut bus, "n1", "rust", "one");
        let events = heard(&mut bus, &n1);
        assert!(matches!(&events[0], BusEvent::Posted { result: Ok(id), .. } if id.get() == 1));
        assert_eq!(lines(&events), [(1, "one".to_owned())]);
    }

    #[test]
    fn a_follower_starts_after_the_tail_and_a_healed_node_catches_up_once() {
        let (n1, n2) = (node("n1"), node("n2"));
        let mut bus = cluster(&["n1", "n2"]);
        bus.request(&n1, BusRequest::Follow(room("rust"))).unwrap();
        post(&mut bus, "n1", "rust", "before n2");
        heard(&mut bus, &n1);
        bus.request(&n2, BusRequest::Follow(room("rust"))).unwrap();
        post(&mut bus, "n1", "rust", "news");
        assert_eq!(lines(&heard(&mut bus, &n2)), [(2, "news".to_owned())]);

        bus.cut(&n2, true, Instant::now()).unwrap();
        assert_eq!(heard(&mut bus, &n2), [BusEvent::Down]);
        post(&mut bus, "n1", "rust", "meanwhile 1");
        post(&mut bus, "n1", "rust", "meanwhile 2");
        bus.request(&n2, BusRequest::Post(line(&n2, "rust", "refused")))
            .unwrap();
        let refused = heard(&mut bus, &n2);
        assert!(matches!(
            refused.as_slice(),
            [BusEvent::Posted {
                result: Err(BusFailure::Unavailable),
                ..
            }]
        ));
        bus.heal(&n2).unwrap();
        post(&mut bus, "n1", "rust", "after");
        let healed = heard(&mut bus, &n2);
        // Caught up first, then every room's settings, then up (the
        // engine's order).
        assert_eq!(healed[2], BusEvent::AllSettings(Vec::new()));
        assert_eq!(healed[3], BusEvent::Up);
        assert_eq!(
            lines(&healed),
            [
                (3, "meanwhile 1".to_owned()),
                (4, "meanwhile 2".into()),
                (5, "after".into())
            ]
        );
    }

    #[test]
    fn a_gap_in_the_channel_is_filled_from_the_stream() {
        let (n1, n2) = (node("n1"), node("n2"));
        let mut bus = cluster(&["n1", "n2"]);
        for at in [&n1, &n2] {
            bus.request(at, BusRequest::Follow(room("rust"))).unwrap();
        }
        post(&mut bus, "n1", "rust", "one");
        post(&mut bus, "n1", "rust", "two");
        post(&mut bus, "n1", "rust", "three");
        // Pub/sub lost "two" on its way to n2.
        let link = bus.links.get_mut(&n2).unwrap();
        let lost = link.incoming.remove(1).unwrap();
        assert!(matches!(&lost, Incoming::Published(json) if json.contains("two")));
        assert_eq!(
            lines(&heard(&mut bus, &n2)),
            [
                (1, "one".to_owned()),
                (2, "two".into()),
                (3, "three".into())
            ]
        );
    }

    #[test]
    fn nicknames_are_held_by_live_nodes_and_whispers_go_to_their_holder() {
        let (n1, n2) = (node("n1"), node("n2"));
        let mut bus = cluster(&["n1", "n2"]);
        let claim = |bus: &mut MemoryBus, at: &NodeName, name: &str| {
            let conn = conn(9);
            bus.request(
                at,
                BusRequest::Claim {
                    conn,
                    nick: nick(name),
                },
            )
            .unwrap();
            match heard(bus, at).as_slice() {
                [BusEvent::Claimed { result, .. }] => *result,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(claim(&mut bus, &n2, "Bob"), Ok(true));
        assert_eq!(claim(&mut bus, &n2, "bob"), Ok(true));
        assert_eq!(claim(&mut bus, &n1, "BOB"), Ok(false));
        let whisper = |to: &str| {
            Box::new(chatd_core::cluster::BusWhisper {
                from: chatd_core::cluster::Speaker {
                    nick: nick("alice"),
                    user: "alice".into(),
                    host: IpAddr::from([127, 0, 0, 1]),
                },
                to: nick(to),
                text: "psst".into(),
                notice: false,
                node: n1.clone(),
                conn: conn(1),
            })
        };
        bus.request(&n1, BusRequest::Whisper(whisper("bob")))
            .unwrap();
        assert!(matches!(
            heard(&mut bus, &n1).as_slice(),
            [BusEvent::Whispered { result: Ok(_), .. }]
        ));
        assert!(matches!(
            heard(&mut bus, &n2).as_slice(),
            [BusEvent::Whisper { whisper, .. }] if whisper.text == "psst"
        ));
        bus.request(&n1, BusRequest::Whisper(whisper("nobody")))
            .unwrap();
        assert!(matches!(
            heard(&mut bus, &n1).as_slice(),
            [BusEvent::Whispered {
                result: Err(BusFailure::NoSuchNick),
                ..
            }]
        ));
        // Released by its holder only.
        bus.request(&n1, BusRequest::Release(nick("bob"))).unwrap();
        assert_eq!(claim(&mut bus, &n1, "bob"), Ok(false));
        // A dead node's nicknames are free, and its whispers go nowhere.
        bus.kill(&n2).unwrap();
        assert_eq!(heard(&mut bus, &n1), [BusEvent::NodeGone(n2.clone())]);
        bus.request(&n1, BusRequest::Whisper(whisper("bob")))
            .unwrap();
        assert!(matches!(
            heard(&mut bus, &n1).as_slice(),
            [BusEvent::Whispered {
                result: Err(BusFailure::NoSuchNick),
                ..
            }]
        ));
        assert_eq!(claim(&mut bus, &n1, "bob"), Ok(true));
    }

    #[test]
    fn a_whisper_to_a_node_not_listening_is_unavailable_and_a_new_process_forgets_old_nicknames() {
        let (n1, n2) = (node("n1"), node("n2"));
        let mut bus = cluster(&["n1", "n2"]);
        bus.request(
            &n2,
            BusRequest::Claim {
                conn: conn(1),
                nick: nick("bob"),
            },
        )
        .unwrap();
        heard(&mut bus, &n2);
        bus.cut(&n2, true, Instant::now()).unwrap();
        let whisper = Box::new(chatd_core::cluster::BusWhisper {
            from: chatd_core::cluster::Speaker {
                nick: nick("alice"),
                user: "alice".into(),
                host: IpAddr::from([127, 0, 0, 1]),
            },
            to: nick("bob"),
            text: "psst".into(),
            notice: false,
            node: n1.clone(),
            conn: conn(1),
        });
        bus.request(&n1, BusRequest::Whisper(whisper)).unwrap();
        assert!(matches!(
            heard(&mut bus, &n1).as_slice(),
            [BusEvent::Whispered {
                result: Err(BusFailure::Unavailable),
                ..
            }]
        ));
        // The id was spent all the same.
        post(&mut bus, "n1", "rust", "next");
        assert!(matches!(
            heard(&mut bus, &n1).as_slice(),
            [BusEvent::Posted { result: Ok(id), .. }] if id.get() == 2
        ));
        // n2 dies and a new process of it starts: bob is free.
        bus.kill(&n2).unwrap();
        bus.join(&n2);
        bus.request(
            &n1,
            BusRequest::Claim {
                conn: conn(2),
                nick: nick("bob"),
            },
        )
        .unwrap();
        assert!(matches!(
            heard(&mut bus, &n1).as_slice(),
            [
                BusEvent::NodeGone(_),
                BusEvent::Claimed {
                    result: Ok(true),
                    ..
                }
            ]
        ));
    }

    #[test]
    fn orders_go_to_the_live_holder_of_their_target() {
        use chatd_core::cluster::{BusOrder, OrderAction, Speaker};
        let (n1, n2) = (node("n1"), node("n2"));
        let mut bus = cluster(&["n1", "n2"]);
        let conn1 = conn(1);
        bus.request(
            &n2,
            BusRequest::Claim {
                conn: conn1,
                nick: nick("bob"),
            },
        )
        .unwrap();
        heard(&mut bus, &n2);
        let order = |target: &str| {
            Box::new(BusOrder {
                by: Speaker {
                    nick: nick("alice"),
                    user: "alice".into(),
                    host: IpAddr::from([127, 0, 0, 1]),
                },
                target: nick(target),
                action: OrderAction::Mute {
                    room: room("general"),
                    for_ms: 30_000,
                },
                node: n1.clone(),
                conn: conn(1),
                by_owner: false,
            })
        };
        bus.request(&n1, BusRequest::Order(order("bob"))).unwrap();
        assert!(matches!(
            heard(&mut bus, &n1).as_slice(),
            [BusEvent::Ordered { result: Ok(()), .. }]
        ));
        assert!(matches!(
            heard(&mut bus, &n2).as_slice(),
            [BusEvent::Order(order)] if order.target == nick("bob")
        ));
        bus.request(&n1, BusRequest::Order(order("nobody")))
            .unwrap();
        assert!(matches!(
            heard(&mut bus, &n1).as_slice(),
            [BusEvent::Ordered {
                result: Err(BusFailure::NoSuchNick),
                ..
            }]
        ));
        bus.cut(&n1, true, Instant::now()).unwrap();
        heard(&mut bus, &n1);
        bus.request(&n1, BusRequest::Order(order("bob"))).unwrap();
        assert!(matches!(
            heard(&mut bus, &n1).as_slice(),
            [BusEvent::Ordered {
                result: Err(BusFailure::Unavailable),
                ..
            }]
        ));
    }

    #[test]
    fn announcements_reach_every_other_node_and_a_cut_node_hears_of_the_dead_on_heal() {
        let (n1, n2, n3) = (node("n1"), node("n2"), node("n3"));
        let mut bus = cluster(&["n1", "n2", "n3"]);
        let quit = Presence::Quit {
            nick: nick("alice"),
            message: None,
        };
        bus.request(&n1, BusRequest::Announce(quit.clone()))
            .unwrap();
        assert!(heard(&mut bus, &n1).is_empty());
        for at in [&n2, &n3] {
            assert_eq!(
                heard(&mut bus, at),
                [BusEvent::Presence {
                    node: n1.clone(),
                    presence: quit.clone()
                }]
            );
        }
        bus.cut(&n3, true, Instant::now()).unwrap();
        assert_eq!(heard(&mut bus, &n3), [BusEvent::Down]);
        bus.request(&n3, BusRequest::Announce(quit)).unwrap();
        bus.kill(&n1).unwrap();
        assert_eq!(heard(&mut bus, &n2), [BusEvent::NodeGone(n1.clone())]);
        assert!(heard(&mut bus, &n3).is_empty());
        bus.heal(&n3).unwrap();
        assert_eq!(
            heard(&mut bus, &n3),
            [
                BusEvent::AllSettings(Vec::new()),
                BusEvent::Up,
                BusEvent::NodeGone(n1)
            ]
        );
    }

    fn topic_change(from: &NodeName, room_name: &str, topic: Option<&str>) -> Box<RoomChange> {
        Box::new(RoomChange {
            room: room(room_name),
            setting: chatd_core::cluster::Setting::Topic {
                topic: topic.map(str::to_owned),
            },
            by: chatd_core::cluster::Speaker {
                nick: nick("alice"),
                user: "alice".into(),
                host: "127.0.0.1".parse().unwrap(),
            },
            node: from.clone(),
            conn: conn(1),
            at_ms: 0,
        })
    }

    /// The **settle** script: the changer hears the room's new settings
    /// like every other node (after them, its answer), a cut node hears
    /// nothing and is refused, and a node that heals or starts later reads
    /// every room's settings; a cleared topic leaves nothing behind.
    #[test]
    fn room_settings_reach_every_node_and_are_read_when_a_bus_connects() {
        let mut bus = cluster(&["n1", "n2", "n3"]);
        let (n1, n2, n3) = (node("n1"), node("n2"), node("n3"));
        bus.cut(&n3, true, Instant::now()).unwrap();
        assert_eq!(heard(&mut bus, &n3), [BusEvent::Down]);
        let change = topic_change(&n1, "rust", Some("all things rust"));
        bus.request(&n1, BusRequest::Settle(change.clone()))
            .unwrap();
        let set = RoomSettings {
            topic: Some("all things rust".into()),
            ..RoomSettings::default()
        };
        let arrived = BusEvent::RoomSettings {
            settings: set.clone(),
            change: change.clone(),
        };
        assert_eq!(
            heard(&mut bus, &n1),
            [
                arrived.clone(),
                BusEvent::Settled {
                    change,
                    result: Ok(())
                }
            ]
        );
        assert_eq!(heard(&mut bus, &n2), [arrived]);
        let refused = topic_change(&n3, "rust", None);
        bus.request(&n3, BusRequest::Settle(refused.clone()))
            .unwrap();
        assert_eq!(
            heard(&mut bus, &n3),
            [BusEvent::Settled {
                change: refused,
                result: Err(BusFailure::Unavailable)
            }]
        );
        bus.heal(&n3).unwrap();
        let all = BusEvent::AllSettings(vec![(room("rust"), set)]);
        assert_eq!(heard(&mut bus, &n3), [all.clone(), BusEvent::Up]);
        let n4 = node("n4");
        bus.join(&n4);
        assert_eq!(heard(&mut bus, &n4), [all, BusEvent::Up]);
        bus.request(&n2, BusRequest::Settle(topic_change(&n2, "rust", None)))
            .unwrap();
        bus.kill(&n4).unwrap();
        bus.join(&n4);
        assert_eq!(
            heard(&mut bus, &n4),
            [BusEvent::AllSettings(Vec::new()), BusEvent::Up]
        );
    }

    #[test]
    fn history_is_the_streams_bounded_and_unreadable_while_cut() {
        let n1 = node("n1");
        let mut bus = MemoryBus::new(2);
        bus.join(&n1);
        for text in ["one", "two", "three"] {
            post(&mut bus, "n1", "rust", text);
        }
        post(&mut bus, "n1", "other", "elsewhere");
        let query = HistoryQuery {
            request: QueryId(7),
            conn: conn(1),
            scope: Scope::Room {
                room: room("rust"),
                private_ok: false,
            },
            position: Position::Latest,
            limit: 10,
            below: None,
        };
        let answer = bus.query(&n1, &query).unwrap();
        let texts: Vec<(u64, &str)> = answer
            .records
            .iter()
            .map(|r| (r.id.get(), r.text.as_str()))
            .collect();
        assert_eq!(texts, [(2, "two"), (3, "three")]);
        assert_eq!(answer.shortfall, None);
        bus.cut(&n1, true, Instant::now()).unwrap();
        let answer = bus.query(&n1, &query).unwrap();
        assert!(answer.records.is_empty());
        assert_eq!(answer.shortfall, Some(Shortfall::Unreadable));
    }
}
