//! Moving connections between rooms and renaming them, with the
//! announcements that go with it.

use crate::error::ErrorCode;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::Priority;
use crate::reply::Reply;

use super::Server;

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
            let private = room.private;
            self.rooms.remove(name);
            // A private room's history leaves with it; a public room's stays
            // for whoever opens it again, within the room limit.
            if private || self.histories.len() > self.config.max_rooms {
                self.histories.remove(name);
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
