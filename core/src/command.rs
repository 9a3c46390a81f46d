//! What a client asks for, independent of how a dialect spells it.
//!
//! A dialect's parser turns a line into a [`Command`]; names inside are
//! already validated newtypes.

use std::net::IpAddr;
use std::time::Duration;

use crate::history_query::{Position, SearchTerms};
use crate::ids::{Nick, RoomName};

/// One request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// Chat to the current room.
    Say(&'a str),
    /// Show help, for all commands or one.
    Help(Option<&'a str>),
    /// Change nickname.
    Nick(Nick),
    /// Leave the current room and join (creating if absent) another.
    Join {
        /// The room.
        room: RoomName,
        /// Its key, if it has one (IRC `+k`).
        key: Option<&'a str>,
    },
    /// Create a room, public or private, and switch to it.
    Create {
        /// The new room.
        room: RoomName,
        /// Invitation only.
        private: bool,
    },
    /// Invite someone to the current (private) room.
    Invite(Nick),
    /// Go back to the default room.
    Leave,
    /// List rooms: one page of them (the first if none is given).
    Rooms(Option<usize>),
    /// List the members of the current room: one page of them.
    Who(Option<usize>),
    /// Private message.
    Msg {
        /// The recipient.
        to: Nick,
        /// The text.
        text: &'a str,
    },
    /// An action in the current room.
    Me(&'a str),
    /// Show (None) or set the current room's topic.
    Topic(Option<&'a str>),
    /// Show stored messages of a room or of one's whispers.
    History(HistoryArgs),
    /// Find messages containing every search word.
    Search {
        /// The words.
        terms: SearchTerms,
        /// Only this room (`in #ROOM`), else every room one may read.
        room: Option<RoomName>,
    },
    /// Turn acknowledgements on or off.
    Ack(bool),
    /// Turn message ids on chat lines on or off.
    Ids(bool),
    /// An urgent message to the current room.
    Urgent(&'a str),
    /// Ask for a pong carrying the token.
    Ping(Option<&'a str>),
    /// Answer to the server's idle check (any line does, this one is silent).
    Pong,
    /// Become a server operator.
    Oper {
        /// Operator account name.
        name: &'a str,
        /// Its password.
        password: &'a str,
    },
    /// Remove someone from the current room (from the server, in the default room).
    Kick {
        /// Whom.
        target: Nick,
        /// Why.
        reason: Option<&'a str>,
    },
    /// Ban a user's address or an address, from the room (owner) or the server (operator).
    Ban {
        /// Whom.
        target: BanTarget,
        /// How long; forever if absent.
        duration: Option<Duration>,
        /// Why.
        reason: Option<&'a str>,
    },
    /// Lift a ban.
    Unban(IpAddr),
    /// Silence someone in the current room for a while.
    Mute {
        /// Whom.
        target: Nick,
        /// How long.
        duration: Duration,
    },
    /// Lift a mute.
    Unmute(Nick),
    /// Leave the server.
    Quit(Option<&'a str>),
    /// Register the current nickname as an account with this password.
    Register(&'a str),
    /// Log in to an account and take its nickname.
    Login {
        /// The account.
        name: Nick,
        /// Its password.
        password: &'a str,
    },
    /// Log out of the account.
    Logout,
    /// Change the account's password.
    ChangePassword {
        /// The password now.
        old: &'a str,
        /// The new one.
        new: &'a str,
    },
    /// Delete the account (its password confirms it).
    Unregister(&'a str),
    /// Whether a nickname is registered and logged in.
    Whois(Nick),
    /// Set (`true`) or clear an account's operator flag.
    OperatorAccount {
        /// The account.
        name: Nick,
        /// The flag.
        operator: bool,
    },
}

/// The arguments of `#history [#ROOM|@NAME] [before ID|since ID|around ID] [N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryArgs {
    /// Whose history; the current room if absent.
    pub target: Option<HistoryTarget>,
    /// Where in it.
    pub position: Position,
    /// How many entries; the configured default if absent.
    pub count: Option<usize>,
}

/// Whose history `#history` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryTarget {
    /// A room's (`#ROOM`).
    Room(RoomName),
    /// One's whispers with someone (`@NAME`).
    Whispers(Nick),
}

/// Whom a ban names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanTarget {
    /// A connected user, banned by their address.
    Nick(Nick),
    /// An address.
    Ip(IpAddr),
}
