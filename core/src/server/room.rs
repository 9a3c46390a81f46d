//! One room's state.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::address::AddressGroup;
use crate::ids::{ConnId, Nick};
use crate::render::{self, Audience, Style};

/// A ban on an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ban {
    /// When it ends; never if None.
    pub(crate) until: Option<Instant>,
    /// Why, as given by the moderator.
    pub(crate) reason: Option<Box<str>>,
}

impl Ban {
    pub(crate) fn is_active(&self, now: Instant) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

/// One member's place in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    /// How the member wants events spelled (kept here so a broadcast
    /// needs no session lookups).
    pub(crate) style: Style,
    /// A channel operator besides the owner (IRC `+o`).
    pub(crate) operator: bool,
    /// May speak while the room is moderated (IRC `+v`).
    pub(crate) voice: bool,
}

/// IRC channel modes beyond what the native dialect has (`+i` is
/// [`Room::private`]; `+n` and `+t` hold unless turned off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelModes {
    /// `+k`: the key needed to join.
    pub(crate) key: Option<Box<str>>,
    /// `+l`: most members.
    pub(crate) limit: Option<usize>,
    /// `+m`: only operators and voiced members speak.
    pub(crate) moderated: bool,
    /// `+n`: only members speak (on by default).
    pub(crate) no_outside: bool,
    /// `+s`: hidden from room listings of non-members.
    pub(crate) secret: bool,
    /// `+t`: only operators set the topic (on by default).
    pub(crate) topic_locked: bool,
    /// `+b` masks (`nick!user@host`), beside the address bans.
    pub(crate) ban_masks: BTreeSet<Box<str>>,
}

impl Default for ChannelModes {
    fn default() -> Self {
        Self {
            key: None,
            limit: None,
            moderated: false,
            no_outside: true,
            secret: false,
            topic_locked: true,
            ban_masks: BTreeSet::new(),
        }
    }
}

/// A room: members, owner, privacy, topic, and its moderation state.
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// Who may moderate it besides operators (#general has none).
    pub(crate) owner: Option<ConnId>,
    /// Invitation only.
    pub(crate) private: bool,
    /// Topic text.
    pub(crate) topic: Option<Box<str>>,
    members: BTreeMap<ConnId, Member>,
    /// The member lists by style as shared by broadcasts; rebuilt after
    /// a change.
    audiences: Option<Arc<[Audience]>>,
    /// IRC channel modes that have no native command.
    pub(crate) modes: ChannelModes,
    /// Invited connections (private rooms).
    pub(crate) invites: BTreeSet<ConnId>,
    /// Muted connections and when their mute ends.
    pub(crate) mutes: BTreeMap<ConnId, Instant>,
    /// Banned addresses.
    pub(crate) bans: BTreeMap<IpAddr, Ban>,
    /// Muted accounts (folded names) and when their mute ends: a mute
    /// of a logged-in user follows the account across reconnects.
    pub(crate) account_mutes: BTreeMap<Nick, Instant>,
    /// Banned accounts (folded names), with the address banned with
    /// them (`#unban` of that address lifts both): a ban of a logged-in
    /// user follows the account to other addresses.
    pub(crate) account_bans: BTreeMap<Nick, (IpAddr, Ban)>,
    /// The account that owns the room (folded), when a logged-in user
    /// created it: it takes ownership back whenever it comes back.
    pub(crate) owner_account: Option<Nick>,
    /// Who created it and from where, counted against their room limits
    /// while the room exists (#general has no creator).
    pub(crate) created_by: Option<(ConnId, AddressGroup)>,
    /// The first message id this room could have used: stored lines of a
    /// private room below it belong to an earlier room of the same name,
    /// which its members now must not read.
    pub(crate) first_id: u64,
}

impl Room {
    pub(crate) fn new(owner: Option<ConnId>, private: bool) -> Self {
        Self {
            owner,
            private,
            ..Self::default()
        }
    }

    pub(crate) fn add_member(&mut self, conn: ConnId, style: Style) {
        let member = Member {
            style,
            operator: false,
            voice: false,
        };
        if self.members.insert(conn, member).is_none() {
            self.audiences = None;
        }
    }

    pub(crate) fn remove_member(&mut self, conn: ConnId) {
        if self.members.remove(&conn).is_some() {
            self.audiences = None;
        }
    }

    pub(crate) fn has_member(&self, conn: ConnId) -> bool {
        self.members.contains_key(&conn)
    }

    pub(crate) fn member(&self, conn: ConnId) -> Option<&Member> {
        self.members.get(&conn)
    }

    /// A member's place, to change its channel modes.
    pub(crate) fn member_mut(&mut self, conn: ConnId) -> Option<&mut Member> {
        self.members.get_mut(&conn)
    }

    /// A member's style changed (it negotiated IRC capabilities).
    pub(crate) fn restyle(&mut self, conn: ConnId, style: Style) {
        if let Some(member) = self.members.get_mut(&conn)
            && member.style != style
        {
            member.style = style;
            self.audiences = None;
        }
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.members.keys().copied()
    }

    /// Members with their places, in increasing id order.
    pub(crate) fn memberships(&self) -> impl Iterator<Item = (ConnId, &Member)> + '_ {
        self.members.iter().map(|(&conn, member)| (conn, member))
    }

    /// Whether `conn` moderates here: the owner or a channel operator.
    pub(crate) fn is_moderator(&self, conn: ConnId) -> bool {
        self.owner == Some(conn) || self.members.get(&conn).is_some_and(|m| m.operator)
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members by style, each list in increasing id order, shared:
    /// building them costs once per membership change, not once per
    /// message.
    pub(crate) fn audiences(&mut self) -> Arc<[Audience]> {
        self.audiences
            .get_or_insert_with(|| {
                render::audiences(self.members.iter().map(|(&conn, m)| (conn, m.style)))
            })
            .clone()
    }

    /// The remaining time of a member's mute, if muted at `now`.
    pub(crate) fn muted_for(&self, conn: ConnId, now: Instant) -> Option<std::time::Duration> {
        self.mutes
            .get(&conn)
            .filter(|&&until| until > now)
            .map(|&until| until - now)
    }

    /// The remaining time of an account's mute (folded name), if muted at
    /// `now`.
    pub(crate) fn account_muted_for(
        &self,
        account: &Nick,
        now: Instant,
    ) -> Option<std::time::Duration> {
        self.account_mutes
            .get(account)
            .filter(|&&until| until > now)
            .map(|&until| until - now)
    }

    pub(crate) fn active_ban(&self, address: IpAddr, now: Instant) -> Option<&Ban> {
        self.bans.get(&address).filter(|ban| ban.is_active(now))
    }

    /// Whether the cached audiences (if built) match the members.
    pub(crate) fn cache_is_consistent(&self) -> bool {
        self.audiences.as_ref().is_none_or(|cached| {
            *cached == render::audiences(self.members.iter().map(|(&c, m)| (c, m.style)))
        })
    }
}
