//! From dialect-neutral events to bytes: which dialect renders what.
//!
//! The state machine emits [`Reply`] events; each connection has a
//! [`Style`] (its dialect, and for IRC the message tags it asked for), and
//! a broadcast is encoded once per style present among its recipients,
//! never once per recipient.

use std::sync::Arc;

use bytes::Bytes;

use crate::dialect::Dialect;
use crate::ids::{ConnId, Nick};
use crate::reply::Reply;
use crate::{irc, native};

/// The IRCv3 tags a connection receives on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct IrcTags {
    /// `server-time`: `@time=` on messages.
    pub(crate) time: bool,
    /// `message-tags`: `msgid=` on chat messages.
    pub(crate) msgid: bool,
    /// `account-tag`: `account=` on messages from logged-in users.
    pub(crate) account: bool,
}

/// How one connection wants events spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Style {
    /// The native line dialect.
    Native,
    /// The native line dialect with message ids on chat lines (`#ids on`):
    /// one more style, so a broadcast is still encoded once per style
    /// present, never once per recipient.
    NativeIds,
    /// IRC, with these tags.
    Irc(IrcTags),
}

impl Style {
    /// The plain style of a dialect (no capabilities negotiated yet).
    pub(crate) fn of(dialect: Dialect) -> Self {
        match dialect {
            Dialect::Native => Self::Native,
            Dialect::Irc => Self::Irc(IrcTags::default()),
        }
    }
}

/// Who an IRC connection is, as the renderer needs it for replies to
/// that connection alone (IRC numerics name their target; the events
/// that echo the connection's own acts carry its mask). Native
/// connections need none: their replies name nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Viewer {
    /// How it wants events spelled.
    pub(crate) style: Style,
    /// Its nickname.
    pub(crate) nick: Nick,
    /// It has not finished IRC registration: numerics name it `*`.
    pub(crate) registering: bool,
    /// The IRC capabilities it enabled (none for native clients).
    pub(crate) caps: crate::irc::caps::Caps,
}

/// What every rendering may need besides the event: the server's name
/// (the source of IRC numerics) and the wall-clock time of the input
/// being handled (IRC's `server-time`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scene {
    /// The IRC server name.
    pub(crate) server_name: Arc<str>,
    /// Milliseconds since the Unix epoch, now.
    pub(crate) unix_ms: u64,
    /// Client-only tags (`+typing=active`, already escaped) of the IRC
    /// message being relayed, for recipients that negotiated
    /// `message-tags`; none outside that relay.
    pub(crate) client_tags: Option<Arc<str>>,
}

/// The recipients of one style in a broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Audience {
    /// Their style.
    pub(crate) style: Style,
    /// Recipients in increasing id order.
    pub(crate) to: Arc<[ConnId]>,
}

/// Groups recipients (in increasing id order) by style, styles in order.
pub(crate) fn audiences(members: impl Iterator<Item = (ConnId, Style)>) -> Arc<[Audience]> {
    let mut groups: Vec<(Style, Vec<ConnId>)> = Vec::new();
    for (conn, style) in members {
        match groups.iter_mut().find(|(s, _)| *s == style) {
            Some((_, list)) => list.push(conn),
            None => groups.push((style, vec![conn])),
        }
    }
    groups.sort_by_key(|(style, _)| *style);
    groups
        .into_iter()
        .map(|(style, to)| Audience {
            style,
            to: to.into(),
        })
        .collect()
}

/// Encodes one event for one style; `viewer` is the recipient when there
/// is exactly one.
pub(crate) fn encode(
    style: Style,
    reply: &Reply<'_>,
    viewer: Option<&Viewer>,
    scene: &Scene,
) -> Bytes {
    match style {
        Style::Native => native::encode(reply),
        Style::NativeIds => native::render::encode_with_ids(reply),
        Style::Irc(tags) => irc::render::encode(reply, tags, viewer, scene),
    }
}
