//! What the nodes of a cluster tell each other, and the rules every bus
//! shares (docs/CLUSTER.md).
//!
//! The core asks with [`BusRequest`] (inside [`crate::Output::Bus`]) and
//! hears with [`BusEvent`] (through [`crate::Server::handle_bus`]). It never
//! knows what carries them: the engine's Redis bus and the transcript
//! harness's memory bus both do, with the same [`Envelope`]s and the same
//! [`Sequencer`].

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

use crate::history::Record;
use crate::ids::{ConnId, MessageId, Nick, RoomName};

mod room_settings;

pub use room_settings::{FieldWrite, ModeFlag, RoomMode, RoomSettings, Setting, SharedRoomBan};

/// A node's name: 1 to 8 characters, a lowercase ASCII letter then
/// lowercase letters and digits. Short, because guest names carry it
/// (`guest7-n2`) and a nickname holds at most 24 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(Box<str>);

/// Why a node name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a node name is 1 to 8 characters: a lowercase letter, then lowercase letters and digits")]
pub struct BadNodeName;

impl NodeName {
    /// The longest node name.
    pub const MAX_LEN: usize = 8;

    /// Parses a node name.
    pub fn parse(text: &str) -> Result<Self, BadNodeName> {
        let mut chars = text.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if first_ok && rest_ok && text.len() <= Self::MAX_LEN {
            Ok(Self(text.into()))
        } else {
            Err(BadNodeName)
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeName {
    type Error = BadNodeName;

    fn try_from(text: String) -> Result<Self, BadNodeName> {
        Self::parse(&text)
    }
}

impl From<NodeName> for String {
    fn from(name: NodeName) -> Self {
        name.0.into()
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The core's part of the cluster settings: present when the server is one
/// node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's name, unique among live nodes.
    pub node: NodeName,
}

/// A user as other nodes see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Speaker {
    /// The nickname.
    pub nick: Nick,
    /// The IRC user name (the nickname for native clients).
    pub user: String,
    /// The address the user connected from.
    pub host: IpAddr,
}

impl Speaker {
    /// As replies show a person (other nodes announce no account).
    pub fn person(&self) -> crate::reply::Person<'_> {
        crate::reply::Person {
            nick: &self.nick,
            user: &self.user,
            host: self.host,
            account: None,
        }
    }
}

/// A room line on its way through the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusLine {
    /// The line as history keeps it; its `id` is 0 until the bus assigns
    /// one (the [`Envelope::Line`] carries the real id).
    pub record: Record,
    /// The speaker's IRC user name.
    pub user: String,
    /// The speaker's address.
    pub host: IpAddr,
    /// An IRC NOTICE rather than a PRIVMSG.
    #[serde(default)]
    pub notice: bool,
    /// The node the speaker is on.
    pub node: NodeName,
    /// The speaker's connection on that node.
    pub conn: ConnId,
}

/// A whisper on its way to the node holding its recipient's nickname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusWhisper {
    /// Who whispers.
    pub from: Speaker,
    /// To whom.
    pub to: Nick,
    /// What.
    pub text: String,
    /// An IRC NOTICE rather than a PRIVMSG.
    #[serde(default)]
    pub notice: bool,
    /// The node the sender is on.
    pub node: NodeName,
    /// The sender's connection on that node.
    pub conn: ConnId,
}

/// An operator's action on a user of another node, carried to the node
/// holding the target's nickname, which carries it out. Operators are the
/// same on every node (`[[operators]]`), so the node that checked the
/// operator's right speaks for the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusOrder {
    /// The operator.
    pub by: Speaker,
    /// Whom it is about.
    pub target: Nick,
    /// What to do.
    pub action: OrderAction,
    /// The operator's node.
    pub node: NodeName,
    /// The operator's connection on that node.
    pub conn: ConnId,
    /// Given with a room owner's (or channel operator's) right, not a
    /// server operator's: the target's node refuses it for a server
    /// operator, as the owner's own node would.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_owner: bool,
}

/// What an operator does to a user of another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "a", rename_all = "lowercase")]
pub enum OrderAction {
    /// Out of a room (off the server, from #general).
    Kick {
        /// The room.
        room: RoomName,
        /// Why.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Silenced in a room for a while.
    Mute {
        /// The room.
        room: RoomName,
        /// For how long, in milliseconds.
        for_ms: u64,
    },
    /// Invited into a private room of the sender's node: the target's node
    /// lets this connection (not whoever holds the nickname later) join it.
    Invite {
        /// The room.
        room: RoomName,
    },
}

/// A server ban as nodes pass it on: the time left rather than an instant,
/// since nodes share no clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedBan {
    /// The banned address.
    pub address: IpAddr,
    /// Milliseconds left; forever if absent.
    #[serde(default)]
    pub for_ms: Option<u64>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One user of a node and the rooms they are in, for a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUser {
    /// Who.
    pub who: Speaker,
    /// Their rooms, in name order.
    pub rooms: Vec<RoomName>,
    /// Those of their rooms that are private on their node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private: Vec<RoomName>,
}

/// What a node announces to every other node: its users' presence, and
/// server bans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "p", rename_all = "lowercase")]
pub enum Presence {
    /// Everyone on the node now, replacing what others knew of it, and
    /// the server bans it holds (so a node that starts later learns
    /// them). With `reply`, every node that hears it answers with its own.
    Snapshot {
        /// The users, in nickname order.
        users: Vec<NodeUser>,
        /// Ask the others for theirs.
        reply: bool,
        /// Server bans in force, in address order.
        #[serde(default)]
        bans: Vec<SharedBan>,
    },
    /// An operator banned an address from the server: every node bans it.
    Banned(SharedBan),
    /// An operator lifted a server ban: every node lifts it.
    Unbanned {
        /// The address.
        address: IpAddr,
    },
    /// A user entered a room.
    Joined {
        /// Who.
        who: Speaker,
        /// Which room.
        room: RoomName,
        /// The room is private on that node: the others neither list it
        /// nor let anyone join it (invitations are per node).
        #[serde(default)]
        private: bool,
    },
    /// A user left a room (part, kick or switch).
    Left {
        /// Who.
        nick: Nick,
        /// Which room.
        room: RoomName,
        /// The part message, if any.
        #[serde(default)]
        reason: Option<String>,
    },
    /// A user was kicked out of a room (off the server, from #general).
    Kicked {
        /// Who.
        nick: Nick,
        /// Which room.
        room: RoomName,
        /// By whom (boxed: rare, and it would double every request's
        /// size).
        by: Box<Speaker>,
        /// Why.
        #[serde(default)]
        reason: Option<String>,
    },
    /// A user was muted in a room.
    Muted {
        /// Who.
        nick: Nick,
        /// Which room.
        room: RoomName,
        /// By whom.
        by: Nick,
        /// For how long, in milliseconds.
        for_ms: u64,
    },
    /// A user changed nickname.
    Renamed {
        /// Before.
        old: Nick,
        /// After.
        new: Nick,
    },
    /// A user left the node.
    Quit {
        /// Who.
        nick: Nick,
        /// The quit message, if any.
        #[serde(default)]
        message: Option<String>,
    },
}

/// A change to a room's settings on its way through the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomChange {
    /// The room.
    pub room: RoomName,
    /// What changes.
    pub setting: Setting,
    /// Who changed it (every node tells its members in the room).
    pub by: Speaker,
    /// The node they are on.
    pub node: NodeName,
    /// Their connection on that node.
    pub conn: ConnId,
    /// The changer's wall-clock time (Unix ms): address bans that ended
    /// by then are dropped from the settings as the change is merged.
    #[serde(default)]
    pub at_ms: u64,
}

/// What travels on a node's channel. JSON, tagged by `t`; the Redis
/// scripts build the `line` and `whisper` forms by concatenation, so the
/// field order here is theirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum Envelope {
    /// A room line, with its id and the id of the room's line before it
    /// (0 for the first).
    Line {
        /// Its id.
        id: MessageId,
        /// The previous line's id in the same room.
        prev: u64,
        /// The line.
        line: BusLine,
    },
    /// A whisper for a user on this node.
    Whisper {
        /// Its id.
        id: MessageId,
        /// The whisper.
        whisper: BusWhisper,
    },
    /// Another node's presence news.
    Presence {
        /// The node.
        node: NodeName,
        /// The news.
        presence: Presence,
    },
    /// An operator's order about a user of this node.
    Order {
        /// The order.
        order: BusOrder,
    },
    /// A room's settings after a change, published to every node.
    Settings {
        /// The room's settings now.
        settings: RoomSettings,
        /// The change that made them so.
        change: RoomChange,
    },
}

/// What the core asks the bus to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusRequest {
    /// Append the line to its room's stream and deliver it to every node
    /// following the room, in one atomic step. Answer with
    /// [`BusEvent::Posted`] to this node.
    Post(Arc<BusLine>),
    /// Deliver a whisper to the node holding its recipient's nickname.
    /// Answer with [`BusEvent::Whispered`] to this node.
    Whisper(Box<BusWhisper>),
    /// Deliver an operator's order to the node holding its target's
    /// nickname. Answer with [`BusEvent::Ordered`] to this node.
    Order(Box<BusOrder>),
    /// Claim a nickname for this node. Answer with [`BusEvent::Claimed`].
    Claim {
        /// The connection that wants it.
        conn: ConnId,
        /// The nickname.
        nick: Nick,
    },
    /// Give a nickname back (if this node holds it). No answer.
    Release(Nick),
    /// This node has members in the room now: deliver its lines here.
    Follow(RoomName),
    /// This node has no members in the room any more.
    Unfollow(RoomName),
    /// Tell every other node. No answer.
    Announce(Presence),
    /// Change a room's settings for the whole cluster; every node, this one
    /// too, hears [`BusEvent::RoomSettings`]. Answer with
    /// [`BusEvent::Settled`] to this node.
    Settle(Box<RoomChange>),
}

impl BusRequest {
    /// The answer to this request when the shared store cannot be
    /// reached: `Unavailable` for every request that has an answer; the
    /// others (follows, unfollows, releases, announcements) are given back
    /// for the bus to remember or drop. Every bus answers a lost request
    /// this one way.
    pub fn unavailable(self) -> Result<BusEvent, BusRequest> {
        let failure = BusFailure::Unavailable;
        Ok(match self {
            BusRequest::Post(line) => BusEvent::Posted {
                line,
                result: Err(failure),
            },
            BusRequest::Whisper(whisper) => BusEvent::Whispered {
                whisper,
                result: Err(failure),
            },
            BusRequest::Order(order) => BusEvent::Ordered {
                order,
                result: Err(failure),
            },
            BusRequest::Claim { conn, nick } => BusEvent::Claimed {
                conn,
                nick,
                result: Err(failure),
            },
            BusRequest::Settle(change) => BusEvent::Settled {
                change,
                result: Err(failure),
            },
            other @ (BusRequest::Release(_)
            | BusRequest::Follow(_)
            | BusRequest::Unfollow(_)
            | BusRequest::Announce(_)) => return Err(other),
        })
    }
}

/// Why the bus could not do what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BusFailure {
    /// The shared store cannot be reached (or failed the command).
    #[error("the cluster is unavailable")]
    Unavailable,
    /// A whisper's recipient holds no nickname on any live node.
    #[error("no such nickname in the cluster")]
    NoSuchNick,
    /// A change made from settings that changed meanwhile was not made
    /// ([`Setting::condition`]).
    #[error("the room changed meanwhile")]
    Outdated,
}

/// What the bus tells the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// The bus is connected (first time, or after being down): the core
    /// re-claims its nicknames and announces a snapshot.
    Up,
    /// The bus lost the shared store: refuse what needs it.
    Down,
    /// A room line, in its room's order, each exactly once.
    Line {
        /// Its id.
        id: MessageId,
        /// The line.
        line: Arc<BusLine>,
    },
    /// The answer to a [`BusRequest::Post`].
    Posted {
        /// The line posted.
        line: Arc<BusLine>,
        /// Its id, once stored.
        result: Result<MessageId, BusFailure>,
    },
    /// A whisper for a user on this node.
    Whisper {
        /// Its id.
        id: MessageId,
        /// The whisper.
        whisper: Box<BusWhisper>,
    },
    /// The answer to a [`BusRequest::Whisper`].
    Whispered {
        /// The whisper sent.
        whisper: Box<BusWhisper>,
        /// Its id, once delivered to the holder's node.
        result: Result<MessageId, BusFailure>,
    },
    /// An operator's order about a user of this node.
    Order(Box<BusOrder>),
    /// The answer to a [`BusRequest::Order`].
    Ordered {
        /// The order sent.
        order: Box<BusOrder>,
        /// Delivered to the target's node, or why not.
        result: Result<(), BusFailure>,
    },
    /// The answer to a [`BusRequest::Claim`].
    Claimed {
        /// The connection that asked.
        conn: ConnId,
        /// The nickname.
        nick: Nick,
        /// Granted, refused (held on another live node), or not known.
        result: Result<bool, BusFailure>,
    },
    /// Another node's presence news.
    Presence {
        /// The node.
        node: NodeName,
        /// The news.
        presence: Presence,
    },
    /// A node stopped renewing its lease: its users are gone.
    NodeGone(NodeName),
    /// The answer to a [`BusRequest::Settle`].
    Settled {
        /// The change asked for.
        change: Box<RoomChange>,
        /// Made (every node hears the room's new settings), or why not.
        result: Result<(), BusFailure>,
    },
    /// A room's settings changed, on this node or another.
    RoomSettings {
        /// The room's settings now.
        settings: RoomSettings,
        /// The change.
        change: Box<RoomChange>,
    },
    /// Every room's settings, read when the bus connects (first time, or
    /// after being down): they replace what the node knew.
    AllSettings(Vec<(RoomName, RoomSettings)>),
}

/// Several lines of one room posted in one step: ids `first`, `first +
/// 1`, …, each line's previous id the one before it (`prev` for the
/// first). The post script publishes this, tagged `"t":"lines"`, for a
/// batch of more than one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineBatch {
    /// The first line's id.
    pub first: MessageId,
    /// The id of the room's line before the first.
    pub prev: u64,
    /// The lines, in their order.
    pub lines: Vec<BusLine>,
}

impl LineBatch {
    /// Each line with its id and the id of the line before it.
    pub fn chained(self) -> impl Iterator<Item = (MessageId, u64, BusLine)> {
        let (first, prev) = (self.first.get(), self.prev);
        self.lines.into_iter().zip(0u64..).map(move |(line, k)| {
            let id = first.saturating_add(k);
            let before = if k == 0 { prev } else { id - 1 };
            (MessageId::new(id), before, line)
        })
    }
}

/// One message on a node's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "lives on the subscriber's stack for one message; boxing would cost an allocation a line"
)]
pub enum ChannelMessage {
    /// Several lines of one room.
    Batch(LineBatch),
    /// Anything else, one line among them.
    Envelope(Envelope),
}

impl ChannelMessage {
    /// Reads a message. Room lines, nearly all the traffic, are read
    /// straight into their fields: serde's internally tagged enums buffer
    /// every field first, which cost the subscriber more than the JSON
    /// itself. The scripts (and serde) write the tag first.
    pub fn decode(bytes: &[u8]) -> serde_json::Result<Self> {
        /// A line's fields (`t` is ignored).
        #[derive(Deserialize)]
        struct LineFields {
            id: MessageId,
            prev: u64,
            line: BusLine,
        }
        if bytes.starts_with(br#"{"t":"lines","#) {
            return serde_json::from_slice(bytes).map(ChannelMessage::Batch);
        }
        if bytes.starts_with(br#"{"t":"line","#) {
            let LineFields { id, prev, line } = serde_json::from_slice(bytes)?;
            return Ok(ChannelMessage::Envelope(Envelope::Line { id, prev, line }));
        }
        serde_json::from_slice(bytes).map(ChannelMessage::Envelope)
    }
}

impl Envelope {
    /// The core's event for what arrived on a node's channel (lines still
    /// go through a [`Sequencer`] first).
    pub fn into_event(self) -> BusEvent {
        match self {
            Envelope::Line { id, line, .. } => BusEvent::Line {
                id,
                line: Arc::new(line),
            },
            Envelope::Whisper { id, whisper } => BusEvent::Whisper {
                id,
                whisper: Box::new(whisper),
            },
            Envelope::Presence { node, presence } => BusEvent::Presence { node, presence },
            Envelope::Order { order } => BusEvent::Order(Box::new(order)),
            Envelope::Settings { settings, change } => BusEvent::RoomSettings {
                settings,
                change: Box::new(change),
            },
        }
    }
}

/// What to do with a line that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It is the room's next line: show it.
    Show,
    /// Already shown (or older than what was): drop it.
    Duplicate,
    /// Lines were missed: read the room's stream for the ids after `after`
    /// and before this line, offer each, then offer this one again.
    Gap {
        /// The last id shown in the room.
        after: MessageId,
    },
}

/// Turns lines that arrive (twice, or after a gap) into each room's one
/// order: the id of the last line shown per followed room.
#[derive(Debug, Default)]
pub struct Sequencer {
    last: AHashMap<RoomName, u64>,
}

impl Sequencer {
    /// Starts following a room. Until its first line, anything is shown.
    pub fn follow(&mut self, room: RoomName) {
        self.last.entry(room).or_insert(0);
    }

    /// Starts following a room whose newest line now is `tail`: lines up to
    /// it are history, not news.
    pub fn follow_from(&mut self, room: RoomName, tail: MessageId) {
        let last = self.last.entry(room).or_insert(0);
        *last = (*last).max(tail.get());
    }

    /// Follows a room again from `tail`, even below what was shown: the
    /// shared store lost lines (a restart without its append-only file,
    /// a failover to a replica behind), and ids are handed out again from
    /// there. Without this every new line would look like a duplicate.
    pub fn restart_from(&mut self, room: RoomName, tail: MessageId) {
        self.last.insert(room, tail.get());
    }

    /// Stops following a room.
    pub fn unfollow(&mut self, room: &RoomName) {
        self.last.remove(room);
    }

    /// Whether the room is followed.
    pub fn follows(&self, room: &RoomName) -> bool {
        self.last.contains_key(room)
    }

    /// Decides about a line with id `id` whose room's previous line is
    /// `prev`; a line shown moves the room on. Lines of rooms not followed
    /// are duplicates (a follow raced with an unfollow).
    pub fn offer(&mut self, room: &RoomName, id: MessageId, prev: u64) -> Verdict {
        let Some(last) = self.last.get_mut(room) else {
            return Verdict::Duplicate;
        };
        if id.get() <= *last {
            Verdict::Duplicate
        } else if prev <= *last || *last == 0 {
            // `prev < last` cannot happen with one stream, but if it did,
            // showing is safer than asking forever for what is not there.
            *last = id.get();
            Verdict::Show
        } else {
            Verdict::Gap {
                after: MessageId::new(*last),
            }
        }
    }

    /// Every followed room and the id of its last line shown, in name
    /// order: what to catch up after a reconnect.
    pub fn positions(&self) -> Vec<(RoomName, MessageId)> {
        let mut rooms: Vec<_> = self
            .last
            .iter()
            .map(|(room, last)| (room.clone(), MessageId::new(*last)))
            .collect();
        rooms.sort();
        rooms
    }
}

/// The names of things in Redis (docs/CLUSTER.md, "Data in Redis").
pub mod keys {
    use super::NodeName;
    use crate::ids::{Nick, RoomName};

    /// Message ids, cluster-wide.
    pub const NEXT_ID: &str = "chatd:next-id";
    /// Room → id of its newest line.
    pub const TAILS: &str = "chatd:tails";
    /// Nodes that joined and were not seen dead.
    pub const NODES: &str = "chatd:nodes";
    /// Room → its shared settings (JSON).
    pub const SETTINGS: &str = "chatd:settings";

    /// A room's stream.
    pub fn room(room: &RoomName) -> String {
        format!("chatd:room:{room}")
    }

    /// The nodes following a room.
    pub fn followers(room: &RoomName) -> String {
        format!("chatd:followers:{room}")
    }

    /// Who holds a nickname.
    pub fn nick(nick: &Nick) -> String {
        format!("chatd:nick:{}", nick.folded())
    }

    /// A node's lease.
    pub fn lease(node: &NodeName) -> String {
        format!("chatd:node:{node}")
    }

    /// A node's channel.
    pub fn channel(node: &NodeName) -> String {
        format!("chatd:to:{node}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomName {
        RoomName::parse("rust").unwrap()
    }

    #[test]
    fn node_names_are_short_lowercase_words() {
        assert!(NodeName::parse("n1").is_ok());
        assert!(NodeName::parse("abcdefgh").is_ok());
        for bad in ["", "1n", "N1", "abcdefghi", "n-1", "n 1"] {
            assert_eq!(NodeName::parse(bad), Err(BadNodeName), "{bad:?}");
        }
    }

    #[test]
    fn sequencer_shows_each_line_once_in_order_and_asks_for_gaps() {
        let mut seq = Sequencer::default();
        let id = MessageId::new;
        assert_eq!(seq.offer(&room(), id(3), 1), Verdict::Duplicate);
        seq.follow(room());
        assert_eq!(seq.offer(&room(), id(3), 1), Verdict::Show);
        assert_eq!(seq.offer(&room(), id(3), 1), Verdict::Duplicate);
        assert_eq!(seq.offer(&room(), id(5), 3), Verdict::Show);
        assert_eq!(seq.offer(&room(), id(9), 7), Verdict::Gap { after: id(5) });
        assert_eq!(seq.offer(&room(), id(7), 5), Verdict::Show);
        assert_eq!(seq.offer(&room(), id(9), 7), Verdict::Show);
        assert_eq!(seq.offer(&room(), id(7), 5), Verdict::Duplicate);
        assert_eq!(seq.positions(), [(room(), id(9))]);
    }

    #[test]
    fn a_store_that_went_back_is_followed_from_its_tail() {
        let mut seq = Sequencer::default();
        seq.follow(room());
        assert_eq!(seq.offer(&room(), MessageId::new(50), 49), Verdict::Show);
        // Redis restarted without its file: ids start again near 1.
        assert_eq!(seq.offer(&room(), MessageId::new(3), 2), Verdict::Duplicate);
        seq.restart_from(room(), MessageId::new(2));
        assert_eq!(seq.offer(&room(), MessageId::new(3), 2), Verdict::Show);
    }

    #[test]
    fn following_from_a_tail_treats_older_lines_as_history() {
        let mut seq = Sequencer::default();
        seq.follow_from(room(), MessageId::new(10));
        assert_eq!(
            seq.offer(&room(), MessageId::new(10), 4),
            Verdict::Duplicate
        );
        assert_eq!(seq.offer(&room(), MessageId::new(12), 10), Verdict::Show);
    }

    #[test]
    fn channel_messages_read_lines_batches_and_the_rest() {
        let line = r#"{"record":{"id":0,"room":"rust","ts":5,"from":"alice","kind":"msg","text":"hi"},"user":"alice","host":"127.0.0.1","node":"n1","conn":3}"#;
        let one = format!(r#"{{"t":"line","id":42,"prev":41,"line":{line}}}"#);
        let ChannelMessage::Envelope(Envelope::Line {
            id,
            prev,
            line: read,
        }) = ChannelMessage::decode(one.as_bytes()).unwrap()
        else {
            panic!("not a line");
        };
        assert_eq!((id.get(), prev, read.record.text.as_str()), (42, 41, "hi"));
        let batch = format!(r#"{{"t":"lines","first":7,"prev":3,"lines":[{line},{line},{line}]}}"#);
        let ChannelMessage::Batch(batch) = ChannelMessage::decode(batch.as_bytes()).unwrap() else {
            panic!("not a batch");
        };
        let chain: Vec<(u64, u64)> = batch
            .chained()
            .map(|(id, prev, _)| (id.get(), prev))
            .collect();
        assert_eq!(chain, [(7, 3), (8, 7), (9, 8)]);
        let whisper = Envelope::Order {
            order: BusOrder {
                by: Speaker {
                    nick: Nick::parse("op").unwrap(),
                    user: "op".into(),
                    host: "127.0.0.1".parse().unwrap(),
                },
                target: Nick::parse("bob").unwrap(),
                action: OrderAction::Kick {
                    room: room(),
                    reason: None,
                },
                node: NodeName::parse("n1").unwrap(),
                conn: ConnId::new(3),
                by_owner: false,
            },
        };
        let json = serde_json::to_vec(&whisper).unwrap();
        assert_eq!(
            ChannelMessage::decode(&json).unwrap(),
            ChannelMessage::Envelope(whisper)
        );
    }

    #[test]
    fn envelopes_read_what_the_scripts_write() {
        let line = r#"{"record":{"id":0,"room":"rust","ts":5,"from":"alice","kind":"msg","text":"hi"},"user":"alice","host":"127.0.0.1","node":"n1","conn":3}"#;
        let raw = format!(r#"{{"t":"line","id":42,"prev":41,"line":{line}}}"#);
        let Envelope::Line { id, prev, line } = serde_json::from_str(&raw).unwrap() else {
            panic!("not a line");
        };
        assert_eq!((id.get(), prev), (42, 41));
        assert_eq!(line.record.text, "hi");
        assert_eq!(line.node.as_str(), "n1");
    }
}
