//! Internal consistency checks, used by tests and property tests.

use std::collections::BTreeMap;

use crate::address::AddressGroup;
use crate::ids::{ConnId, RoomName};

use super::Server;

impl Server {
    /// Checks the invariants that tie the server's maps together and
    /// returns the first one broken, if any:
    ///
    /// 1. every session's nickname maps back to it, and no other names are mapped;
    /// 2. every session is a member of exactly the rooms it lists, each
    ///    once; a native session is in exactly one room, an IRC session in
    ///    at most `limits.rooms_joined`; every room member is a live
    ///    session that lists the room;
    /// 3. #general exists; every other room has a member; an owner is a member;
    /// 4. each room's cached recipient list equals its members;
    /// 5. per-address connection counts add up to the sessions;
    /// 6. no partial line is longer than the line limit plus one byte;
    /// 7. there are no more rooms than the limit allows;
    /// 8. in-memory history is within its byte budget and room count;
    /// 9. bans, mutes and invitations are within their limits;
    /// 10. no timer is pending for what no longer exists: at most one per
    ///     session (two while an IRC client's lines wait out fakelag),
    ///     timed ban and mute;
    /// 11. per-address and per-connection counts of rooms created match the
    ///     rooms that exist.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.nicks.len() != self.sessions.len() {
            return Err(format!(
                "{} nicknames for {} sessions",
                self.nicks.len(),
                self.sessions.len()
            ));
        }
        for (&conn, session) in &self.sessions {
            if self.conn_named(&session.nick) != Some(conn) {
                return Err(format!("{conn}'s nick {} does not map to it", session.nick));
            }
            for name in &session.rooms {
                let in_room = self
                    .rooms
                    .get(name)
                    .is_some_and(|room| room.has_member(conn));
                if !in_room {
                    return Err(format!("{conn} is not in its room #{name}"));
                }
                if session.rooms.iter().filter(|r| *r == name).count() != 1 {
                    return Err(format!("{conn} lists #{name} twice"));
                }
            }
            let count_ok = match session.dialect {
                crate::dialect::Dialect::Native => session.rooms.len() == 1,
                crate::dialect::Dialect::Irc => {
                    session.rooms.len() <= self.config.limits.rooms_joined
                }
            };
            if !count_ok {
                return Err(format!("{conn} is in {} rooms", session.rooms.len()));
            }
            let tags = if session.irc.is_some() {
                super::dispatch::IRC_TAG_BYTES
            } else {
                0
            };
            if session.line.pending_len() > self.config.max_line_bytes + tags + 1 {
                return Err(format!("{conn} holds an over-long partial line"));
            }
        }
        if !self.rooms.contains_key(&RoomName::general()) {
            return Err("#general is missing".into());
        }
        if self.rooms.len() > self.config.max_rooms {
            return Err(format!("{} rooms exceed the limit", self.rooms.len()));
        }
        let mut members = 0;
        for (name, room) in &self.rooms {
            for member in room.members() {
                let here = self.sessions.get(&member).is_some_and(|s| s.is_in(name));
                if !here {
                    return Err(format!("#{name} lists {member}, which is not there"));
                }
            }
            members += room.len();
            if room.is_empty() && *name != RoomName::general() {
                return Err(format!("#{name} is empty but still exists"));
            }
            if let Some(owner) = room.owner
                && !room.has_member(owner)
            {
                return Err(format!("#{name}'s owner {owner} is not a member"));
            }
            if !room.cache_is_consistent() {
                return Err(format!("#{name}'s recipient cache is stale"));
            }
        }
        let listed: usize = self.sessions.values().map(|s| s.rooms.len()).sum();
        if members != listed {
            return Err(format!(
                "{members} memberships for {listed} rooms listed by sessions"
            ));
        }
        let counted: usize = self.addresses.values().map(|a| a.connections).sum();
        if counted != self.sessions.len() + self.web_pending.len() {
            return Err(format!(
                "{counted} address slots for {} sessions and {} HTTP connections",
                self.sessions.len(),
                self.web_pending.len()
            ));
        }
        self.check_bounds()
    }

    /// Invariants 8 to 11.
    fn check_bounds(&self) -> Result<(), String> {
        let limits = &self.config.limits;
        if self.histories.bytes() > self.config.history_bytes
            || self.histories.len() > self.config.max_rooms
        {
            return Err(format!(
                "{} histories of {} bytes exceed the history bounds",
                self.histories.len(),
                self.histories.bytes()
            ));
        }
        if self.server_bans.len() > limits.server_bans {
            return Err(format!("{} server bans", self.server_bans.len()));
        }
        if !self
            .queries
            .only_for(|conn| self.sessions.contains_key(&conn))
        {
            return Err("history requests of a connection that is gone".into());
        }
        // An idle timer per session, a fakelag timer per throttled one,
        // a grace timer per holder of a registered nickname not its own.
        let throttled = self.sessions.values().filter(|s| s.held.is_some()).count();
        let graced = self
            .sessions
            .values()
            .filter(|s| s.standing().grace_at.is_some())
            .count();
        let mut timed = self.sessions.len() + throttled + graced + self.server_bans.len();
        let mut by_address: BTreeMap<AddressGroup, usize> = BTreeMap::new();
        let mut by_conn: BTreeMap<ConnId, usize> = BTreeMap::new();
        for (name, room) in &self.rooms {
            if room.bans.len() > limits.bans_per_room
                || room.mutes.len() > limits.mutes_per_room
                || room.account_bans.len() > limits.bans_per_room
                || room.account_mutes.len() > limits.mutes_per_room
                || room.invites.len() > limits.invites_per_room
            {
                return Err(format!(
                    "#{name} holds more bans, mutes or invites than allowed"
                ));
            }
            timed += room.bans.len() + room.mutes.len() + room.account_mutes.len();
            if let Some((conn, group)) = room.created_by {
                *by_address.entry(group).or_default() += 1;
                *by_conn.entry(conn).or_default() += 1;
            }
        }
        if self.timers.len() > timed {
            return Err(format!(
                "{} timers pending for {timed} sessions, bans and mutes",
                self.timers.len()
            ));
        }
        for (group, address) in &self.addresses {
            let rooms = by_address.get(group).copied().unwrap_or(0);
            if address.rooms_created != rooms {
                return Err(format!(
                    "{group} is counted {} rooms created, {rooms} exist",
                    address.rooms_created
                ));
            }
        }
        for (conn, session) in &self.sessions {
            let rooms = by_conn.get(conn).copied().unwrap_or(0);
            if usize::from(session.standing().rooms_created) != rooms {
                return Err(format!(
                    "{conn} is counted {} rooms created, {rooms} exist",
                    session.standing().rooms_created
                ));
            }
        }
        Ok(())
    }
}

/// One room as the fuzz targets' reference model sees it.
#[cfg(feature = "fuzzing")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView {
    /// The room's name.
    pub name: RoomName,
    /// Its owner, if any (#general has none).
    pub owner: Option<crate::ids::ConnId>,
    /// Invitation only.
    pub private: bool,
    /// Members in increasing id order.
    pub members: Vec<crate::ids::ConnId>,
}

#[cfg(feature = "fuzzing")]
impl Server {
    /// Every room in name order, for comparing the server with a model
    /// built from what clients were told. Read-only; fuzzing builds only.
    pub fn rooms_view(&self) -> Vec<RoomView> {
        self.rooms
            .iter()
            .map(|(name, room)| RoomView {
                name: name.clone(),
                owner: room.owner,
                private: room.private,
                members: room.members().collect(),
            })
            .collect()
    }

    /// Every open connection with its nickname and room, in id order.
    /// Read-only; fuzzing builds only.
    pub fn sessions_view(&self) -> Vec<(crate::ids::ConnId, crate::ids::Nick, RoomName)> {
        self.sessions
            .iter()
            .filter_map(|(&conn, session)| {
                Some((conn, session.nick, session.rooms.first()?.clone()))
            })
            .collect()
    }
}
