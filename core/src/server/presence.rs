//! Moving connections between rooms and renaming them, with the
//! announcements that go with it.

use crate::error::ErrorCode;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::Priority;
use crate::reply::Reply;

use super::Server;
use super::room::Room;

/// What the entering client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entry {
    /// Nothing: the welcome line already said where they are.
    Welcomed,
    /// "you joined #room".
    Joined,
    /// "you created #room; you own it".
    Created {
        /// Invitation only.
        private: bool,
    },
}

impl Server {
    /// Puts a connection into an existing room, tells it (and the room).
    pub(super) fn enter_room(&mut self, conn: ConnId, name: &RoomName, entry: Entry) {
        let limit = self.config.presence_announce_limit;
        let (Some(session), Some(room)) = (self.sessions.get_mut(&conn), self.rooms.get_mut(name))
        else {
            debug_assert!(false, "enter_room: {conn} or #{name} is gone");
            return;
        };
        session.room = name.clone();
        room.add_member(conn);
        match entry {
            Entry::Welcomed => {}
            Entry::Joined => self.out.send(conn, &Reply::YouJoined { room: name }),
            Entry::Created { private } => self.out.send(
                conn,
                &Reply::YouCreated {
                    room: name,
                    private,
                },
            ),
        }
        if let Some(topic) = &room.topic {
            self.out.send(
                conn,
                &Reply::Topic {
                    room: name,
                    topic: Some(topic),
                },
            );
        }
        if room.len() <= limit {
            let reply = Reply::Joined {
                room: name,
                nick: &session.nick,
            };
            self.out
                .broadcast(room.recipients(), Some(conn), &reply, Priority::Normal);
        }
    }

    /// Leaves the current room (announcing it) and enters `target`.
    pub(super) fn switch_room(&mut self, conn: ConnId, target: &RoomName, entry: Entry) {
        self.leave_room(conn, true);
        self.enter_room(conn, target, entry);
    }

    /// Takes a connection out of its current room. The session keeps the
    /// old room name until it enters another.
    pub(super) fn leave_room(&mut self, conn: ConnId, announce: bool) {
        let limit = self.config.presence_announce_limit;
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let name = session.room.clone();
        if let Some(room) = self.rooms.get_mut(&name) {
            room.remove_member(conn);
            if announce && room.len() < limit {
                let reply = Reply::Left {
                    room: &name,
                    nick: &session.nick,
                };
                self.out
                    .broadcast(room.recipients(), None, &reply, Priority::Normal);
            }
        }
        self.after_departure(&name, conn);
    }

    /// After `conn` left `name`: hand ownership on to the member who has
    /// been connected longest, or remove the room once it is empty
    /// (#general stays).
    pub(super) fn after_departure(&mut self, name: &RoomName, conn: ConnId) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        if room.is_empty() && *name != RoomName::general() {
            if let Some(room) = self.rooms.remove(name) {
                self.forget_room(name, room);
            }
            return;
        }
        if room.owner != Some(conn) {
            return;
        }
        let heir = room.members().next();
        room.owner = heir;
        if let Some(heir) = room.owner
            && let Some(session) = self.sessions.get(&heir)
        {
            let reply = Reply::OwnerChanged {
                room: name,
                nick: &session.nick,
            };
            self.out
                .broadcast(room.recipients(), None, &reply, Priority::Normal);
        }
    }

    /// Releases what a removed room held elsewhere: its creator's room
    /// counts, its ban and mute timers, its place in sessions' mute and
    /// invitation lists, and (if private) its history. A public room's
    /// history stays for whoever opens it again, counted against the
    /// history bounds and the first to go when they are exceeded.
    fn forget_room(&mut self, name: &RoomName, room: Room) {
        if let Some((creator, group)) = room.created_by {
            if let Some(session) = self.sessions.get_mut(&creator) {
                session.rooms_created = session.rooms_created.saturating_sub(1);
            }
            if let Some(address) = self.addresses.get_mut(&group) {
                address.rooms_created = address.rooms_created.saturating_sub(1);
                if address.connections == 0 && address.rooms_created == 0 {
                    self.addresses.remove(&group);
                }
            }
        }
        for (address, ban) in &room.bans {
            self.cancel_room_ban_timer(name, *address, ban);
        }
        for (&conn, &until) in &room.mutes {
            self.forget_mute(name, conn, until);
        }
        for conn in &room.invites {
            if let Some(session) = self.sessions.get_mut(conn) {
                session.invited_to.retain(|invited| invited != name);
            }
        }
        if room.private {
            self.histories.remove(name);
        }
    }

    /// `#nick NAME`.
    pub(super) fn change_nick(&mut self, conn: ConnId, new: Nick) {
        let limit = self.config.presence_announce_limit;
        if let Some(holder) = self.conn_named(&new)
            && holder != conn
        {
            let text = format!("{new} is taken; pick another nickname");
            return self.out.error(conn, ErrorCode::NickTaken, &text);
        }
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.nick == new {
            return self.out.send(conn, &Reply::NickChangedYou { new: &new });
        }
        let old = std::mem::replace(&mut session.nick, new);
        self.nicks.remove(&old.folded());
        self.nicks.insert(session.nick.folded(), conn);
        self.out
            .send(conn, &Reply::NickChangedYou { new: &session.nick });
        if let Some(room) = self.rooms.get_mut(&session.room)
            && room.len() <= limit
        {
            let reply = Reply::NickChanged {
                old: &old,
                new: &session.nick,
            };
            self.out
                .broadcast(room.recipients(), Some(conn), &reply, Priority::Normal);
        }
    }
}
