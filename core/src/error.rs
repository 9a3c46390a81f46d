//! Stable error codes: the machine-readable part of every error reply.
//!
//! A code never changes meaning once released; docs/PROTOCOL.md lists them.

use std::fmt;

/// Why a client's line or connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorCode {
    /// A line was longer than the limit and was discarded.
    LineTooLong,
    /// A line was not valid UTF-8.
    BadUtf8,
    /// A line held a control character other than tab.
    ControlChar,
    /// A chat line, topic or reason had nothing visible in it.
    InvisibleText,
    /// The command does not exist.
    UnknownCommand,
    /// The command's arguments do not fit its usage.
    BadSyntax,
    /// An argument is well formed but out of range (a duration of zero,
    /// below zero or over 3650d; a count below one).
    BadArgument,
    /// The nickname is not valid.
    BadNick,
    /// Someone else has that nickname.
    NickTaken,
    /// The room name is not valid.
    BadRoom,
    /// `#create` of a room that exists.
    RoomExists,
    /// The room limit is reached.
    TooManyRooms,
    /// A bound on bans, mutes or invitations is reached.
    LimitReached,
    /// The room is private and you are not invited.
    InviteOnly,
    /// You are banned from the room or the server.
    Banned,
    /// Nobody has that nickname.
    NoSuchNick,
    /// The target is not in the room.
    NotInRoom,
    /// You are already in that room.
    AlreadyInRoom,
    /// The command needs rights you do not have.
    PermissionDenied,
    /// Wrong operator name or password.
    BadCredentials,
    /// You are muted in this room.
    Muted,
    /// Too many lines in the rate-limit window; retry later.
    RateLimited,
    /// Sustained flooding: the connection is closed.
    Flooding,
    /// The message could not be stored (acknowledgement mode).
    NotStored,
    /// No ban on that address.
    NotBanned,
    /// The target is not muted.
    NotMuted,
    /// The server holds as many connections as it may.
    ServerFull,
    /// Your address holds as many connections as it may.
    TooManyConnections,
    /// You did not answer the idle check in time.
    IdleTimeout,
    /// The room is not private (for `#invite`).
    NotPrivate,
    /// Operator login refused for now (recent failures, one already being
    /// checked, or no room to check it); the text says when to retry.
    TryLater,
    /// The room holds as many members as its limit (IRC `+l`) allows.
    RoomFull,
    /// The room needs a key (IRC `+k`) and none or another was given.
    BadKey,
    /// An IRC client must register (NICK and USER) first.
    NotRegistered,
    /// An IRC mode letter the server does not know.
    UnknownMode,
    /// The stored history could not be read just now (`#history`,
    /// `#search`); the server's log says why.
    HistoryUnavailable,
    /// A password was sent over an unencrypted connection from an
    /// address other than loopback; use TLS.
    EncryptionRequired,
    /// The nickname is already registered (`#register`).
    AccountExists,
    /// No such account, or you are not logged in to one.
    NotLoggedIn,
    /// This node of a cluster cannot reach the cluster's shared store just
    /// now: the line, whisper or nickname change was not taken. Try again.
    Unavailable,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 40] = [
        Self::LineTooLong,
        Self::BadUtf8,
        Self::ControlChar,
        Self::InvisibleText,
        Self::UnknownCommand,
        Self::BadSyntax,
        Self::BadArgument,
        Self::BadNick,
        Self::NickTaken,
        Self::BadRoom,
        Self::RoomExists,
        Self::TooManyRooms,
        Self::LimitReached,
        Self::InviteOnly,
        Self::Banned,
        Self::NoSuchNick,
        Self::NotInRoom,
        Self::AlreadyInRoom,
        Self::PermissionDenied,
        Self::BadCredentials,
        Self::Muted,
        Self::RateLimited,
        Self::Flooding,
        Self::NotStored,
        Self::NotBanned,
        Self::NotMuted,
        Self::ServerFull,
        Self::TooManyConnections,
        Self::IdleTimeout,
        Self::NotPrivate,
        Self::TryLater,
        Self::RoomFull,
        Self::BadKey,
        Self::NotRegistered,
        Self::UnknownMode,
        Self::HistoryUnavailable,
        Self::EncryptionRequired,
        Self::AccountExists,
        Self::NotLoggedIn,
        Self::Unavailable,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LineTooLong => "line-too-long",
            Self::BadUtf8 => "bad-utf8",
            Self::ControlChar => "control-char",
            Self::InvisibleText => "invisible-text",
            Self::UnknownCommand => "unknown-command",
            Self::BadSyntax => "bad-syntax",
            Self::BadArgument => "bad-argument",
            Self::BadNick => "bad-nick",
            Self::NickTaken => "nick-taken",
            Self::BadRoom => "bad-room",
            Self::RoomExists => "room-exists",
            Self::TooManyRooms => "too-many-rooms",
            Self::LimitReached => "limit-reached",
            Self::InviteOnly => "invite-only",
            Self::Banned => "banned",
            Self::NoSuchNick => "no-such-nick",
            Self::NotInRoom => "not-in-room",
            Self::AlreadyInRoom => "already-in-room",
            Self::PermissionDenied => "permission-denied",
            Self::BadCredentials => "bad-credentials",
            Self::Muted => "muted",
            Self::RateLimited => "rate-limited",
            Self::Flooding => "flooding",
            Self::NotStored => "not-stored",
            Self::NotBanned => "not-banned",
            Self::NotMuted => "not-muted",
            Self::ServerFull => "server-full",
            Self::TooManyConnections => "too-many-connections",
            Self::IdleTimeout => "idle-timeout",
            Self::NotPrivate => "not-private",
            Self::TryLater => "try-later",
            Self::RoomFull => "room-full",
            Self::BadKey => "bad-key",
            Self::NotRegistered => "not-registered",
            Self::UnknownMode => "unknown-mode",
            Self::HistoryUnavailable => "history-unavailable",
            Self::EncryptionRequired => "encryption-required",
            Self::AccountExists => "account-exists",
            Self::NotLoggedIn => "not-logged-in",
            Self::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_lowercase_words() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "duplicate {text}");
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit())
            );
        }
    }
}
