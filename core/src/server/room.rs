//! One room's state.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::address::AddressGroup;
use crate::ids::ConnId;

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

/// A room: members, owner, privacy, topic, and its moderation state.
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// Who may moderate it besides operators (#general has none).
    pub(crate) owner: Option<ConnId>,
    /// Invitation only.
    pub(crate) private: bool,
    /// Topic text.
    pub(crate) topic: Option<Box<str>>,
    members: BTreeSet<ConnId>,
    /// The member list as shared by broadcasts; rebuilt after a change.
    recipients: Option<Arc<[ConnId]>>,
    /// Invited connections (private rooms).
    pub(crate) invites: BTreeSet<ConnId>,
    /// Muted connections and when their mute ends.
    pub(crate) mutes: BTreeMap<ConnId, Instant>,
    /// Banned addresses.
    pub(crate) bans: BTreeMap<IpAddr, Ban>,
    /// Who created it and from where, counted against their room limits
    /// while the room exists (#general has no creator).
    pub(crate) created_by: Option<(ConnId, AddressGroup)>,
}

impl Room {
    pub(crate) fn new(owner: Option<ConnId>, private: bool) -> Self {
        Self {
            owner,
            private,
            ..Self::default()
        }
    }

    pub(crate) fn add_member(&mut self, conn: ConnId) {
        if self.members.insert(conn) {
            self.recipients = None;
        }
    }

    pub(crate) fn remove_member(&mut self, conn: ConnId) {
        if self.members.remove(&conn) {
            self.recipients = None;
        }
    }

    pub(crate) fn has_member(&self, conn: ConnId) -> bool {
        self.members.contains(&conn)
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.members.iter().copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members in increasing id order, shared: building it costs once per
    /// membership change, not once per message.
    pub(crate) fn recipients(&mut self) -> Arc<[ConnId]> {
        self.recipients
            .get_or_insert_with(|| self.members.iter().copied().collect())
            .clone()
    }

    /// The remaining time of a member's mute, if muted at `now`.
    pub(crate) fn muted_for(&self, conn: ConnId, now: Instant) -> Option<std::time::Duration> {
        self.mutes
            .get(&conn)
            .filter(|&&until| until > now)
            .map(|&until| until - now)
    }

    pub(crate) fn active_ban(&self, address: IpAddr, now: Instant) -> Option<&Ban> {
        self.bans.get(&address).filter(|ban| ban.is_active(now))
    }

    /// Whether the cached recipient list (if built) matches the members.
    pub(crate) fn cache_is_consistent(&self) -> bool {
        self.recipients
            .as_ref()
            .is_none_or(|cached| cached.iter().copied().eq(self.members.iter().copied()))
    }
}
