//! Moving connections in and out of rooms and renaming them, with the
//! announcements that go with it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::dialect::Dialect;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::Priority;
use crate::render::Audience;
use crate::reply::{Person, Reply, WhoEntry};

use super::Server;
use super::room::Room;
use super::session::Session;

/// Who hears of one connection's presence change.
#[derive(Debug)]
pub(super) enum Peers {
    /// Nobody (no room, or only rooms too large for presence notices).
    Nobody,
    /// The members of its one room (the connection itself skipped).
    Room(Arc<[Audience]>),
    /// Members of several rooms, each once.
    Set(BTreeSet<ConnId>),
}

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
    /// An IRC client is also given the topic and the member list, as
    /// IRC clients expect after their JOIN.
    pub(super) fn enter_room(&mut self, conn: ConnId, name: &RoomName, entry: Entry) {
        let limit = self.config.presence_announce_limit;
        let style = self.out.style_of(conn);
        // The room's own name is shared (one allocation per room, not one
        // per member): the caller's may be a copy parsed from a command.
        let shared = self
            .rooms
            .get_key_value(name)
            .map(|(shared, _)| shared.clone());
        let (Some(session), Some(room), Some(shared)) = (
            self.sessions.get_mut(&conn),
            self.rooms.get_mut(name),
            shared,
        ) else {
            debug_assert!(false, "enter_room: {conn} or #{name} is gone");
            return;
        };
        if !session.rooms.contains(name) {
            session.rooms.push(shared);
        }
        room.add_member(conn, style);
        match entry {
            Entry::Welcomed => {}
            Entry::Joined => self.out.send(
                conn,
                &Reply::YouJoined {
                    room: name,
                    me: session.person(),
                },
            ),
            Entry::Created { private } => self.out.send(
                conn,
                &Reply::YouCreated {
                    room: name,
                    private,
                    me: session.person(),
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
                who: session.person(),
            };
            self.out
                .broadcast(&room.audiences(), Some(conn), &reply, Priority::Normal);
        }
        if session.dialect == Dialect::Irc {
            self.names(conn, name);
        }
        self.cluster_entered(conn, name);
    }

    /// The member list of a room as one block (IRC's NAMES, the native
    /// `#who` without paging), sorted by nickname.
    pub(super) fn names(&mut self, conn: ConnId, name: &RoomName) {
        let Some(room) = self.rooms.get(name) else {
            return;
        };
        let mut members = who_entries(&self.sessions, room);
        super::cluster::add_remote_members(self.cluster.as_deref(), name, &mut members);
        // The answer is queued whole: at most as many names as fit in a
        // quarter of the slow-consumer bound at about 64 bytes a name
        // (a nickname with its user and host).
        members.truncate((self.config.max_outbound_bytes / 4 / 64).max(1));
        self.out.send_block(
            conn,
            [Reply::Who {
                room: name,
                members: &members,
            }],
        );
    }

    /// A native client leaves its current room (announcing it) and
    /// enters `target`.
    pub(super) fn switch_room(&mut self, conn: ConnId, target: &RoomName, entry: Entry) {
        if let Some(current) = self
            .sessions
            .get(&conn)
            .and_then(|s| s.current_room().cloned())
        {
            self.leave_room(conn, &current, true, None);
        }
        self.enter_room(conn, target, entry);
    }

    /// Takes a connection out of one of its rooms, announcing it (with the
    /// reason, if any) when `announce`.
    pub(super) fn leave_room(
        &mut self,
        conn: ConnId,
        name: &RoomName,
        announce: bool,
        reason: Option<&str>,
    ) {
        let limit = self.config.presence_announce_limit;
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        session.rooms.retain(|room| room != name);
        if let Some(room) = self.rooms.get_mut(name) {
            room.remove_member(conn);
            if announce && room.len() < limit {
                let reply = Reply::Left {
                    room: name,
                    who: session.person(),
                    reason,
                };
                self.out
                    .broadcast(&room.audiences(), None, &reply, Priority::Normal);
            }
        }
        let nick = session.nick;
        self.cluster_left(nick, name, reason);
        self.after_departure(name, conn, nick);
    }

    /// After `conn` left `name`: hand ownership on to the member who has
    /// been connected longest, or remove the room once it is empty
    /// (#general stays).
    pub(super) fn after_departure(&mut self, name: &RoomName, conn: ConnId, nick: Nick) {
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
        // On a node of a cluster every node hands it on when the bus
        // brings the hand-off back (room_settings.rs).
        if self.hand_on_in_cluster(name, nick) {
            return;
        }
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
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
                .broadcast(&room.audiences(), None, &reply, Priority::Normal);
        }
    }

    /// Releases what a removed room held elsewhere: its creator's room
    /// counts, its ban and mute timers, its place in sessions' mute and
    /// invitation lists, and (if private) its history. A public room's
    /// history stays for whoever opens it again, counted against the
    /// history bounds and the first to go when they are exceeded.
    pub(super) fn forget_room(&mut self, name: &RoomName, room: Room) {
        if let Some((creator, group)) = room.created_by {
            if let Some(standing) = self
                .sessions
                .get_mut(&creator)
                .and_then(|s| s.standing_if_any())
            {
                standing.rooms_created = standing.rooms_created.saturating_sub(1);
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
        for (&account, &until) in &room.account_mutes {
            let timer = crate::timers::Timer::AccountMuteExpiry {
                room: name.clone(),
                account,
            };
            self.timers.cancel(until, &timer);
        }
        for conn in &room.invites {
            if let Some(standing) = self
                .sessions
                .get_mut(conn)
                .and_then(|s| s.standing_if_any())
            {
                standing.invited_to.retain(|invited| invited != name);
            }
        }
        if room.private {
            self.histories.remove(name);
        }
    }

    /// [`Self::peers`] as a list of connections other than `conn`, for a
    /// notice each of them gets on its own (away-notify, account-notify).
    pub(super) fn peers_except(&mut self, conn: ConnId) -> Vec<ConnId> {
        match self.peers(conn) {
            Peers::Nobody => Vec::new(),
            Peers::Room(audiences) => audiences
                .iter()
                .flat_map(|a| a.to.iter().copied())
                .filter(|&peer| peer != conn)
                .collect(),
            Peers::Set(set) => set.into_iter().collect(),
        }
    }

    /// Who hears of a presence change of `conn` (a nickname, a quit, an
    /// away message): everyone sharing a room with it that is small
    /// enough for presence notices, each once. Taken before the change,
    /// since a quit empties the rooms.
    pub(super) fn peers(&mut self, conn: ConnId) -> Peers {
        let limit = self.config.presence_announce_limit;
        let Some(session) = self.sessions.get(&conn) else {
            return Peers::Nobody;
        };
        if let [only] = session.rooms.as_slice() {
            // One room (every native client): its shared lists, no copy.
            return match self.rooms.get_mut(only) {
                Some(room) if room.len() <= limit => Peers::Room(room.audiences()),
                _ => Peers::Nobody,
            };
        }
        let mut peers = BTreeSet::new();
        for name in &session.rooms {
            if let Some(room) = self.rooms.get(name)
                && room.len() <= limit
            {
                peers.extend(room.members().filter(|&member| member != conn));
            }
        }
        Peers::Set(peers)
    }

    /// Tells `peers` of `conn`'s change.
    pub(super) fn tell_peers(&mut self, conn: ConnId, peers: Peers, reply: &Reply<'_>) {
        match peers {
            Peers::Nobody => {}
            Peers::Room(audiences) => {
                self.out
                    .broadcast(&audiences, Some(conn), reply, Priority::Normal);
            }
            Peers::Set(set) => self.out.broadcast_to(set, None, reply, Priority::Normal),
        }
    }

    /// `#nick NAME` / `NICK`. On a node of a cluster, a new nickname
    /// waits for the cluster's claim (cluster.rs).
    pub(super) fn change_nick(&mut self, conn: ConnId, new: Nick) {
        if let Some(holder) = self.conn_named(&new)
            && holder != conn
        {
            return self.nick_taken(conn, &new);
        }
        if self.claim_nick(conn, new) {
            return;
        }
        self.apply_nick(conn, new);
    }

    /// Renames a connection whose new nickname is known to be free.
    pub(super) fn apply_nick(&mut self, conn: ConnId, new: Nick) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        if session.nick == new {
            let reply = Reply::NickChangedYou {
                me: session.person(),
                new: &new,
            };
            return self.out.send(conn, &reply);
        }
        // Peers hear of it once each, however many rooms they share.
        let peers = self.peers(conn);
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let old = std::mem::replace(&mut session.nick, new);
        self.nicks.remove(&old.folded(), conn);
        self.index_nick(conn, &new);
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let mut me = session.person();
        me.nick = &old;
        self.out
            .send(conn, &Reply::NickChangedYou { me, new: &new });
        if let Some(viewer) = self.out.viewer_mut(conn) {
            viewer.nick = new;
        }
        let (new, user, host) = (session.nick, session.user().to_owned(), session.peer);
        let reply = Reply::NickChanged {
            old: Person {
                nick: &old,
                user: &user,
                host,
                account: None,
            },
            new: &new,
        };
        self.tell_peers(conn, peers, &reply);
        self.cluster_renamed(old, new);
    }
}

/// A room's members as listings show them, sorted by nickname.
pub(super) fn who_entries<'a>(
    sessions: &'a BTreeMap<ConnId, Box<Session>>,
    room: &'a Room,
) -> Vec<WhoEntry<'a>> {
    let mut members: Vec<WhoEntry<'_>> = room
        .memberships()
        .filter_map(|(member, place)| {
            let session = sessions.get(&member)?;
            Some(WhoEntry {
                person: session.person(),
                owner: room.owner == Some(member),
                operator: place.operator,
                voice: place.voice,
                away: session.away().is_some(),
                server_operator: session.is_operator(),
            })
        })
        .collect();
    members.sort_by_cached_key(|entry| entry.person.nick.folded());
    members
}
