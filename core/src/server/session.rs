//! One connected client.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use smallvec::SmallVec;

use crate::dialect::Dialect;
use crate::ids::{Nick, RoomName};
use crate::line::LineBuffer;
use crate::rate_limit::SlidingWindow;
use crate::reply::Person;

/// Whether a connection has shown signs of life recently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Sent something since the last idle check.
    Active,
    /// Sent the idle ping at this instant and waits for any line.
    Pinged(Instant),
}

/// What a connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// An ordinary user.
    User,
    /// A server operator (`#oper`): moderates everywhere.
    Operator,
}

/// A client's recent lines, for rate limiting and flood detection.
#[derive(Debug, Default)]
pub(crate) struct LineLimits {
    /// Lines admitted recently.
    pub(crate) admitted: SlidingWindow,
    /// Lines refused recently.
    pub(crate) refused: SlidingWindow,
}

/// A connected client's state.
#[derive(Debug)]
pub(crate) struct Session {
    /// The peer's address (its port is never needed, and leaving it out
    /// keeps a session within a smaller allocation).
    pub(crate) peer: IpAddr,
    /// The protocol it speaks.
    pub(crate) dialect: Dialect,
    /// Its transport is encrypted (TLS): passwords may cross it.
    pub(crate) encrypted: bool,
    /// It came through the HTTP listener as a WebSocket.
    pub(crate) web: bool,
    /// Current nickname.
    pub(crate) nick: Nick,
    /// Rooms the client is in, in the order joined. A native client is
    /// always in exactly one, its current room; an IRC client in any
    /// number.
    pub(crate) rooms: SmallVec<[RoomName; 1]>,
    /// IRC registration and capabilities; `None` for native clients.
    pub(crate) irc: Option<Box<IrcState>>,
    /// Framing state: a partial line at most.
    pub(crate) line: LineBuffer,
    /// An IRC client's lines waiting out its rate limit (fakelag), made
    /// only while it is throttled.
    pub(crate) held: Option<Box<Held>>,
    /// Rate-limit state, made on the first line: a connection that never
    /// speaks does not pay for it.
    pub(crate) limits: Option<Box<LineLimits>>,
    /// When the client last sent anything.
    pub(crate) last_active: Instant,
    /// Idle-check state.
    pub(crate) liveness: Liveness,
    /// User or operator.
    pub(crate) role: Role,
    /// Whether each chat line is acknowledged.
    pub(crate) ack: bool,
    /// Whether chat lines carry their message ids (`#ids on`).
    pub(crate) ids: bool,
    /// When this client's pending idle timer fires (to cancel it on
    /// disconnect rather than leave it pending).
    pub(crate) idle_at: Option<Instant>,
    /// Account, grace period, invitations, mutes and rooms created: made
    /// the first time the client has any (see [`Standing`]).
    standing: Option<Box<Standing>>,
}

/// What a client holds beyond a plain connection: an account, a grace
/// period, invitations, mutes, rooms it created. Most connections never
/// hold any of it, so a session keeps it boxed and makes it on first need
/// ([`Session::standing_mut`]): an idle connection pays one pointer for
/// it instead of about a hundred bytes (ARCHITECTURE.md, decision 75).
#[derive(Debug)]
pub(crate) struct Standing {
    /// Private rooms this client is invited to (to clean up on disconnect).
    pub(crate) invited_to: Vec<RoomName>,
    /// Rooms where this client is muted (to clean up on disconnect).
    pub(crate) muted_in: Vec<RoomName>,
    /// Rooms this client created that still exist, for the per-connection
    /// room limit.
    pub(crate) rooms_created: u16,
    /// The account logged in to, as registered.
    pub(crate) account: Option<Nick>,
    /// Operator because the account is an operator account (logging out
    /// ends it; `#oper` does not set it).
    pub(crate) oper_by_account: bool,
    /// When the client, holding a registered nickname it is not logged
    /// in to, is renamed (its pending grace timer).
    pub(crate) grace_at: Option<Instant>,
    /// When this connection's one grace period ends: set the first time
    /// it holds a registered nickname without being logged in to it, and
    /// never extended by changing nicknames (case, a round trip through
    /// another name), so a registered nickname cannot be held for long by
    /// someone without its password. Cleared by a login.
    pub(crate) grace_until: Option<Instant>,
}

impl Standing {
    /// A connection that holds nothing.
    const NONE: Self = Self {
        invited_to: Vec::new(),
        muted_in: Vec::new(),
        rooms_created: 0,
        account: None,
        oper_by_account: false,
        grace_at: None,
        grace_until: None,
    };
}

/// What sessions without a [`Standing`] of their own read.
static NO_STANDING: Standing = Standing::NONE;

impl Session {
    pub(crate) fn new(peer: SocketAddr, dialect: Dialect, nick: Nick, now: Instant) -> Self {
        let irc = (dialect == Dialect::Irc).then(Box::default);
        Self {
            peer: peer.ip(),
            dialect,
            encrypted: false,
            web: false,
            nick,
            rooms: SmallVec::new(),
            held: None,
            irc,
            line: LineBuffer::default(),
            limits: None,
            last_active: now,
            liveness: Liveness::Active,
            role: Role::User,
            ack: false,
            ids: false,
            idle_at: None,
            standing: None,
        }
    }

    /// The account, grace period, invitations, mutes and rooms created
    /// (all empty for most connections).
    pub(crate) fn standing(&self) -> &Standing {
        self.standing.as_deref().unwrap_or(&NO_STANDING)
    }

    /// The same, to change: made on first need.
    pub(crate) fn standing_mut(&mut self) -> &mut Standing {
        self.standing
            .get_or_insert_with(|| Box::new(Standing::NONE))
    }

    /// The same, to change only if there is one (removing from it never
    /// needs one made).
    pub(crate) fn standing_if_any(&mut self) -> Option<&mut Standing> {
        self.standing.as_deref_mut()
    }

    /// The account logged in to, as registered.
    pub(crate) fn account(&self) -> Option<Nick> {
        self.standing().account
    }

    /// The account mutes and bans of this client are looked up by
    /// (folded): the account logged in to, or the registered nickname it
    /// holds without logging in (during the grace period), so a guest
    /// taking a muted nickname is muted too.
    pub(crate) fn account_key(&self) -> Option<Nick> {
        let standing = self.standing();
        match (&standing.account, standing.grace_at) {
            (Some(account), _) => Some(account.folded()),
            (None, Some(_)) => Some(self.nick.folded()),
            (None, None) => None,
        }
    }

    pub(crate) fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// The current room of a native client (its only one).
    pub(crate) fn current_room(&self) -> Option<&RoomName> {
        match self.dialect {
            Dialect::Native => self.rooms.first(),
            Dialect::Irc => None,
        }
    }

    /// Whether the client is in `room`.
    pub(crate) fn is_in(&self, room: &RoomName) -> bool {
        self.rooms.contains(room)
    }

    /// The client as others see it.
    pub(crate) fn person(&self) -> Person<'_> {
        Person {
            nick: &self.nick,
            user: self.user(),
            host: self.peer,
            account: self.standing().account.as_ref(),
        }
    }

    /// The user name IRC shows: `~` and the USER name for IRC clients,
    /// `native` for native ones (and IRC ones before USER).
    pub(crate) fn user(&self) -> &str {
        self.irc
            .as_ref()
            .and_then(|irc| irc.user.as_ref())
            .map_or("native", UserNames::user)
    }

    /// The away message, if away (IRC `AWAY`; native clients never are).
    pub(crate) fn away(&self) -> Option<&str> {
        self.irc.as_ref().and_then(|irc| irc.away.as_deref())
    }

    /// Whether the client wants its own messages back (IRC
    /// `echo-message`).
    pub(crate) fn echoes(&self) -> bool {
        self.irc
            .as_ref()
            .is_some_and(|irc| irc.caps.has(crate::irc::caps::Cap::EchoMessage))
    }

    /// Whether the client may use the server yet: native clients at once,
    /// IRC clients once registered.
    pub(crate) fn is_registered(&self) -> bool {
        self.irc.as_ref().is_none_or(|irc| irc.registered)
    }
}

/// Lines held back by fakelag, and when the next may go.
#[derive(Debug)]
pub(crate) struct Held {
    /// The lines, oldest first.
    pub(crate) lines: std::collections::VecDeque<Box<str>>,
    /// When the pending fakelag timer fires (to cancel it on disconnect).
    pub(crate) at: Instant,
}

/// An IRC client's protocol state: registration and capabilities.
#[derive(Debug, Default)]
pub(crate) struct IrcState {
    /// `PASS` was given and matched (or none is needed).
    pub(crate) pass_ok: bool,
    /// A `NICK` was given.
    pub(crate) nick_given: bool,
    /// The user name as shown (`~` and the `USER` name) and the real
    /// name, once given.
    pub(crate) user: Option<UserNames>,
    /// The away message, if away (`AWAY`).
    pub(crate) away: Option<Box<str>>,
    /// `CAP LS` or `CAP REQ` started negotiation: registration waits for
    /// `CAP END`.
    pub(crate) negotiating: bool,
    /// Registration is complete (001 was sent).
    pub(crate) registered: bool,
    /// Capabilities enabled.
    pub(crate) caps: crate::irc::caps::Caps,
    /// User modes `+i` and `+w`.
    pub(crate) invisible: bool,
    /// Receives WALLOPS.
    pub(crate) wallops: bool,
    /// A SASL exchange in progress: the base64 credentials received so
    /// far (`AUTHENTICATE` lines of 400 bytes continue). Boxed: it lives
    /// for one exchange, and inline it would grow every IRC connection's
    /// state for good.
    #[allow(
        clippy::box_collection,
        reason = "the box is the point: 8 bytes while idle instead of 24"
    )]
    pub(crate) sasl: Option<Box<String>>,
}

/// An IRC client's user name as shown and its real name, in one
/// allocation rather than two: every registered IRC connection holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserNames {
    /// The user name followed by the real name.
    text: Box<str>,
    /// Where the real name begins.
    split: u16,
}

impl UserNames {
    /// Both names; `user` is at most a few hundred bytes (one IRC line
    /// holds both).
    pub(crate) fn new(user: &str, realname: &str) -> Self {
        let mut end = user.len().min(usize::from(u16::MAX));
        while !user.is_char_boundary(end) {
            end -= 1;
        }
        let user = &user[..end];
        Self {
            text: format!("{user}{realname}").into_boxed_str(),
            split: u16::try_from(user.len()).unwrap_or(u16::MAX),
        }
    }

    /// The user name as shown (`~` and the `USER` name).
    pub(crate) fn user(&self) -> &str {
        &self.text[..usize::from(self.split)]
    }

    /// The real name.
    pub(crate) fn realname(&self) -> &str {
        &self.text[usize::from(self.split)..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_keep_both_names_apart_in_one_allocation() {
        let names = UserNames::new("~zoë", "Zoë Ångström: 🦀 rust");
        assert_eq!(names.user(), "~zoë");
        assert_eq!(names.realname(), "Zoë Ångström: 🦀 rust");
        let empty = UserNames::new("~user", "");
        assert_eq!((empty.user(), empty.realname()), ("~user", ""));
    }

    #[test]
    fn a_connection_without_standing_reads_empty_and_gets_one_on_first_change() {
        let now = crate::test_support::epoch();
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut session = Session::new(peer, Dialect::Native, Nick::parse("ann").unwrap(), now);
        assert!(session.standing.is_none());
        assert_eq!(session.account(), None);
        assert!(session.standing_if_any().is_none());
        session.standing_mut().account = Some(Nick::parse("ann").unwrap());
        assert_eq!(session.account(), Some(Nick::parse("ann").unwrap()));
        assert_eq!(session.peer, IpAddr::from([127, 0, 0, 1]));
    }
}
