//! What the server tells clients, independent of how a dialect spells it.
//!
//! The state machine produces [`Reply`] values; a dialect's renderer turns
//! each into bytes (see `native::render`). Keeping this layer separate lets
//! an IRC dialect reuse the same state machine later.

use std::net::IpAddr;
use std::time::Duration;

use crate::error::ErrorCode;
use crate::history::Record;
use crate::ids::{MessageId, Nick, RoomName};

/// One step of an IRC SASL exchange (IRCv3 sasl-3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslStep {
    /// `AUTHENTICATE +`: send the credentials.
    Continue,
    /// 903: success.
    Succeeded,
    /// 904: failure.
    Failed,
    /// 905: the credentials were too long.
    TooLong,
    /// 906: aborted by the client.
    Aborted,
    /// 907: already logged in.
    Already,
    /// 908: the mechanisms offered (then 904).
    Mechanisms,
}

/// Someone as others see them: the nickname, and the user and host that
/// IRC shows after it (`nick!user@host`); the native dialect shows the
/// nickname only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Person<'a> {
    /// The nickname.
    pub nick: &'a Nick,
    /// The user name (`~name` for IRC clients, `native` for native ones).
    pub user: &'a str,
    /// The address they connect from.
    pub host: IpAddr,
    /// The account they are logged in to (IRC `account-tag`).
    pub account: Option<&'a Nick>,
}

impl Person<'_> {
    /// `nick!user@host`, as IRC writes a message's source.
    pub fn mask(&self) -> String {
        format!("{}!{}@{}", self.nick, self.user, host_text(self.host))
    }
}

/// An address as an IRC host: IPv6 addresses that start with `:` get a
/// leading `0`, since no IRC parameter may start with one.
pub fn host_text(host: IpAddr) -> String {
    let text = host.to_string();
    if text.starts_with(':') {
        format!("0{text}")
    } else {
        text
    }
}

/// One member in a `#who` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhoEntry<'a> {
    /// The member.
    pub person: Person<'a>,
    /// Whether they own the room (a channel operator, to IRC).
    pub owner: bool,
    /// A channel operator other than the owner (IRC `+o`).
    pub operator: bool,
    /// May speak in a moderated room (IRC `+v`).
    pub voice: bool,
    /// Away, with a message (IRC `AWAY`).
    pub away: bool,
    /// A server operator.
    pub server_operator: bool,
}

/// One room in a `#rooms` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEntry<'a> {
    /// The room.
    pub room: &'a RoomName,
    /// How many members it has.
    pub members: usize,
    /// Invitation only.
    pub private: bool,
    /// Its topic.
    pub topic: Option<&'a str>,
}

/// Where a moderation action applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One room.
    Room(&'a RoomName),
    /// The whole server.
    Server,
}

/// Whose history a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryOf<'a> {
    /// A room's chat lines.
    Room(&'a RoomName),
    /// Your whispers with this person, both ways.
    Whispers(&'a Nick),
}

/// A line (or, for listings, a block of lines) to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// First line on a new connection.
    Welcome {
        /// The guest nickname given.
        nick: &'a Nick,
        /// The room joined.
        room: &'a RoomName,
    },
    /// Your nickname changed.
    NickChangedYou {
        /// You, before the change.
        me: Person<'a>,
        /// The new nickname.
        new: &'a Nick,
    },
    /// Someone's nickname changed.
    NickChanged {
        /// Before (with the user and host, which do not change).
        old: Person<'a>,
        /// After.
        new: &'a Nick,
    },
    /// You joined a room.
    YouJoined {
        /// You, as IRC shows you (`nick!user@host`) in the echo.
        me: Person<'a>,
        /// The room.
        room: &'a RoomName,
    },
    /// You created (and own) a room.
    YouCreated {
        /// You, as IRC shows you (`nick!user@host`) in the echo.
        me: Person<'a>,
        /// The room.
        room: &'a RoomName,
        /// Invitation only.
        private: bool,
    },
    /// Someone joined your room.
    Joined {
        /// The room.
        room: &'a RoomName,
        /// Who.
        who: Person<'a>,
    },
    /// You left a room.
    YouLeft {
        /// You, as IRC shows you (`nick!user@host`) in the echo.
        me: Person<'a>,
        /// The room.
        room: &'a RoomName,
        /// Why, if you said.
        reason: Option<&'a str>,
    },
    /// Someone left your room.
    Left {
        /// The room.
        room: &'a RoomName,
        /// Who.
        who: Person<'a>,
        /// Why, if they said.
        reason: Option<&'a str>,
    },
    /// Someone left the server.
    Quit {
        /// Who.
        who: Person<'a>,
        /// Their message or the reason.
        message: Option<&'a str>,
    },
    /// The room's owner changed because the owner left.
    OwnerChanged {
        /// The room.
        room: &'a RoomName,
        /// The new owner.
        nick: &'a Nick,
    },
    /// Chat in a room.
    Chat {
        /// Its message id.
        id: MessageId,
        /// The room.
        room: &'a RoomName,
        /// The sender.
        from: Person<'a>,
        /// The text.
        text: &'a str,
        /// Sent as an IRC `NOTICE` (no automatic reply expected).
        notice: bool,
    },
    /// An action in a room.
    Action {
        /// Its message id.
        id: MessageId,
        /// The room.
        room: &'a RoomName,
        /// The sender.
        from: Person<'a>,
        /// The action.
        text: &'a str,
    },
    /// An urgent message in a room.
    Urgent {
        /// Its message id.
        id: MessageId,
        /// The room.
        room: &'a RoomName,
        /// The sender.
        from: Person<'a>,
        /// The text.
        text: &'a str,
    },
    /// A private message to you.
    Whisper {
        /// Its message id.
        id: MessageId,
        /// The sender.
        from: Person<'a>,
        /// Sent as an IRC `NOTICE` (no automatic reply expected).
        notice: bool,
        /// The text.
        text: &'a str,
    },
    /// Echo of a private message you sent.
    WhisperSent {
        /// Its message id.
        id: MessageId,
        /// You, as IRC shows you (`nick!user@host`) in the echo.
        me: Person<'a>,
        /// The recipient.
        to: &'a Nick,
        /// Sent as an IRC `NOTICE`.
        notice: bool,
        /// The text.
        text: &'a str,
    },
    /// Heads a history listing.
    HistoryHeader {
        /// Whose history: a room's, or your whispers with someone.
        of: HistoryOf<'a>,
        /// How many entries follow.
        count: usize,
    },
    /// One history entry of a room (also a search result).
    HistoryEntry(&'a Record),
    /// One stored whisper in a whisper history.
    WhisperEntry {
        /// The whisper.
        record: &'a Record,
        /// Sent by the reader (else received from the other party).
        sent: bool,
    },
    /// Heads the results of a search.
    SearchHeader {
        /// How many entries follow.
        count: usize,
        /// The search stopped at its time bound: older matches may exist.
        partial: bool,
    },
    /// Message ids on chat lines were turned on or off (`#ids`).
    IdsMode(bool),
    /// The current topic.
    Topic {
        /// The room.
        room: &'a RoomName,
        /// The topic, if any.
        topic: Option<&'a str>,
    },
    /// Someone set the topic.
    TopicChanged {
        /// The room.
        room: &'a RoomName,
        /// Who set it.
        by: Person<'a>,
        /// The new topic.
        topic: &'a str,
    },
    /// Heads a room listing.
    RoomsHeader {
        /// How many entries follow.
        count: usize,
    },
    /// One room of a listing.
    RoomEntry(RoomEntry<'a>),
    /// Where a paged answer (`#who`, `#rooms`) stands, after a page that
    /// is not the only one.
    Page {
        /// The command that pages.
        command: &'static str,
        /// This page, from 1.
        page: usize,
        /// How many pages there are.
        pages: usize,
        /// Entries on all pages.
        total: usize,
    },
    /// The members of a room.
    Who {
        /// The room.
        room: &'a RoomName,
        /// Members sorted by nickname.
        members: &'a [WhoEntry<'a>],
    },
    /// Help for one command.
    Help {
        /// Usage line.
        usage: &'a str,
        /// What it does.
        summary: &'a str,
    },
    /// Answer to `#ping`.
    Pong {
        /// The token, if one was given.
        token: Option<&'a str>,
    },
    /// The server's idle check.
    IdlePing {
        /// How long the client has to answer.
        timeout: Duration,
    },
    /// A chat line you sent is stored and delivered.
    Ack(MessageId),
    /// Acknowledgement mode changed.
    AckMode(bool),
    /// You are now a server operator.
    OperUp,
    /// You invited someone.
    InviteSent {
        /// The room.
        room: &'a RoomName,
        /// Whom.
        nick: &'a Nick,
    },
    /// Someone invited you.
    Invited {
        /// The room.
        room: &'a RoomName,
        /// Who invited you.
        by: Person<'a>,
    },
    /// Someone was kicked from a room (or, in scope Server, the server).
    Kicked {
        /// Where from.
        scope: Scope<'a>,
        /// Who.
        who: Person<'a>,
        /// By whom.
        by: Person<'a>,
        /// Why.
        reason: Option<&'a str>,
    },
    /// Someone was banned from a room (their address is not shown).
    BannedFromRoom {
        /// The room.
        room: &'a RoomName,
        /// Who.
        nick: &'a Nick,
        /// By whom.
        by: &'a Nick,
        /// For how long; forever if absent.
        duration: Option<Duration>,
        /// Why.
        reason: Option<&'a str>,
    },
    /// Confirms a ban to the moderator who set it.
    BanSet {
        /// Where.
        scope: Scope<'a>,
        /// The address.
        address: std::net::IpAddr,
        /// For how long; forever if absent.
        duration: Option<Duration>,
    },
    /// A ban was lifted.
    Unbanned {
        /// Where.
        scope: Scope<'a>,
        /// The address.
        address: std::net::IpAddr,
    },
    /// Someone was muted in a room.
    Muted {
        /// The room.
        room: &'a RoomName,
        /// Who.
        nick: &'a Nick,
        /// By whom.
        by: &'a Nick,
        /// For how long.
        duration: Duration,
    },
    /// A mute was lifted (by someone, or by expiry when `by` is None).
    Unmuted {
        /// The room.
        room: &'a RoomName,
        /// Who.
        nick: &'a Nick,
        /// By whom, if not expiry.
        by: Option<&'a Nick>,
    },
    /// Your goodbye after `#quit`.
    Goodbye,
    /// You registered your nickname (and are logged in to it).
    Registered {
        /// The account.
        account: &'a Nick,
    },
    /// You logged in.
    LoggedIn {
        /// You, as IRC shows you (`nick!user@host`), for its 900 numeric.
        me: Person<'a>,
        /// The account.
        account: &'a Nick,
    },
    /// You logged out (or your account was removed).
    LoggedOut {
        /// You, as IRC shows you, for its 901 numeric.
        me: Person<'a>,
        /// The account you were logged in to.
        account: &'a Nick,
    },
    /// Your password was changed.
    PasswordChanged,
    /// Your account was removed (`#unregister`).
    Unregistered {
        /// The account.
        account: &'a Nick,
    },
    /// An IRC SASL exchange step (native clients never start one).
    Sasl(SaslStep),
    /// You hold a registered nickname without being logged in to it.
    NickProtected {
        /// The nickname.
        nick: &'a Nick,
        /// How long until you are renamed.
        grace: Duration,
    },
    /// You are being renamed: your nickname is registered to an account
    /// you are not logged in to.
    NickReclaimed {
        /// The nickname.
        nick: &'a Nick,
    },
    /// What `#whois` knows of a nickname.
    Whois {
        /// The nickname asked about.
        nick: &'a Nick,
        /// Whether it is registered.
        registered: bool,
        /// How many connections are logged in to it.
        logins: usize,
        /// Whether someone holds the nickname now.
        online: bool,
        /// The account is an operator's (shown to operators only).
        operator: bool,
    },
    /// An account's operator flag changed (to the operator who changed it).
    OperatorAccount {
        /// The account.
        account: &'a Nick,
        /// Whether it is now an operator account.
        operator: bool,
    },
    /// You are no longer a server operator (your account's flag was
    /// revoked, or you logged out of an operator account).
    OperDown,
    /// A room's IRC modes changed (operators, voice, key, limit, bans ...).
    ModeChanged {
        /// The room.
        room: &'a RoomName,
        /// Who changed them.
        by: Person<'a>,
        /// The change as IRC writes it: `+o-v bob carol`.
        changes: &'a str,
    },
    /// An IRC `TAGMSG`: tags only (typing notices and the like), for IRC
    /// clients that negotiated `message-tags`; native clients see nothing.
    TagMsg {
        /// The channel (`#room`) or nickname it went to.
        target: &'a str,
        /// The sender.
        from: Person<'a>,
    },
    /// A message from an operator to every operator and every IRC client
    /// with user mode `+w`.
    Wallops {
        /// The operator.
        from: Person<'a>,
        /// The text.
        text: &'a str,
    },
    /// The server is going down.
    ShuttingDown {
        /// Why.
        reason: &'a str,
    },
    /// An error.
    Error {
        /// The stable code.
        code: ErrorCode,
        /// The name (nickname, room, command) it is about, where there is
        /// one: IRC's numerics carry it as a parameter.
        subject: Option<&'a str>,
        /// A sentence for people.
        text: &'a str,
    },
}
