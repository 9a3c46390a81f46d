//! Internal consistency checks, used by tests and property tests.

use crate::ids::RoomName;

use super::Server;

impl Server {
    /// Checks the invariants that tie the server's maps together and
    /// returns the first one broken, if any:
    ///
    /// 1. every session's nickname maps back to it, and no other names are mapped;
    /// 2. every session is a member of exactly its current room, and every
    ///    room member is a live session;
    /// 3. #general exists; every other room has a member; an owner is a member;
    /// 4. each room's cached recipient list equals its members;
    /// 5. per-address connection counts add up to the sessions;
    /// 6. no partial line is longer than the line limit plus one byte;
    /// 7. there are no more rooms than the limit allows.
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
            let in_room = self
                .rooms
                .get(&session.room)
                .is_some_and(|room| room.has_member(conn));
            if !in_room {
                return Err(format!("{conn} is not in its room #{}", session.room));
            }
            if session.line.pending_len() > self.config.max_line_bytes + 1 {
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
                let here = self.sessions.get(&member).is_some_and(|s| s.room == *name);
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
        if members != self.sessions.len() {
            return Err(format!(
                "{members} memberships for {} sessions",
                self.sessions.len()
            ));
        }
        let counted: usize = self.addresses.values().map(|a| a.connections).sum();
        if counted != self.sessions.len() {
            return Err(format!(
                "{counted} address slots for {} sessions",
                self.sessions.len()
            ));
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
            .map(|(&conn, session)| (conn, session.nick, session.room.clone()))
            .collect()
    }
}
