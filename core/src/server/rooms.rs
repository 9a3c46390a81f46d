//! Room commands: join, create, leave, invite, rooms, who, topic.

use std::time::Instant;

use crate::address::AddressGroup;
use crate::cluster::{OrderAction, Setting};
use crate::dialect::Dialect;
use crate::error::ErrorCode;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::Priority;
use crate::reply::{Person, Reply, RoomEntry};

use super::moderation::Authority;
use super::presence::Entry;
use super::room::Room;
use super::session::Session;
use super::{Server, describe_ban};

impl Server {
    /// `#join ROOM [KEY]` / `JOIN`: a native client switches rooms, an
    /// IRC client adds one; the target is created if absent.
    pub(super) fn join(&mut self, now: Instant, conn: ConnId, target: RoomName, key: Option<&str>) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let native = session.dialect == Dialect::Native;
        let chan = format!("#{target}");
        if session.is_in(&target) {
            if native {
                let text = format!("you are already in #{target}");
                self.out.error(conn, ErrorCode::AlreadyInRoom, &text);
            }
            // IRC servers ignore a JOIN of a channel the client is in.
            return;
        }
        if !native && session.rooms.len() >= self.config.limits.rooms_joined {
            let text = format!(
                "you are in {} rooms, the most one connection may be in",
                self.config.limits.rooms_joined
            );
            return self
                .out
                .error_about(conn, ErrorCode::TooManyRooms, Some(&chan), &text);
        }
        if self.private_elsewhere(&target)
            && !session.is_operator()
            && !self.invited_elsewhere(conn, &target)
        {
            let text = format!("{chan} is private; ask its owner for an invitation");
            return self
                .out
                .error_about(conn, ErrorCode::InviteOnly, Some(&chan), &text);
        }
        let from_cluster = !self.rooms.contains_key(&target) && self.exists_elsewhere(&target);
        if from_cluster {
            if self.rooms.len() >= self.config.max_rooms {
                let text = format!(
                    "the server has reached its limit of {} rooms",
                    self.config.max_rooms
                );
                return self
                    .out
                    .error_about(conn, ErrorCode::TooManyRooms, Some(&chan), &text);
            }
            // A room of the cluster with no members here yet: joined, not
            // created (nobody here owns it), with the cluster's settings.
            let room = self.room_from_cluster(&target);
            self.rooms.insert(target.clone(), room);
            self.adopt_settings(now, &target);
        }
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let Some(room) = self.rooms.get(&target) else {
            return self.create(conn, target, false);
        };
        let exempt = session.is_operator();
        // Invitation first, then bans: the order native clients always saw.
        let refusal = if exempt {
            None
        } else if room.private && !room.invites.contains(&conn) {
            Some((
                ErrorCode::InviteOnly,
                format!("{chan} is private; ask its owner for an invitation"),
            ))
        } else if let Some(ban) = room.active_ban(session.peer, now) {
            Some((ErrorCode::Banned, describe_ban(&chan, ban, now)))
        } else if let Some(ban) = session
            .account_key()
            .and_then(|account| room.account_bans.get(&account))
            .map(|(_, ban)| ban)
            .filter(|ban| ban.is_active(now))
        {
            Some((ErrorCode::Banned, describe_ban(&chan, ban, now)))
        } else if mask_banned(room, session) {
            Some((ErrorCode::Banned, format!("you are banned from {chan}")))
        } else if room.modes.key.as_deref().is_some_and(|k| Some(k) != key) {
            Some((
                ErrorCode::BadKey,
                format!("{chan} needs the right key to join"),
            ))
        } else if room
            .modes
            .limit
            .is_some_and(|limit| room.len() + self.members_elsewhere(&target) >= limit)
        {
            Some((ErrorCode::RoomFull, format!("{chan} is full")))
        } else {
            None
        };
        if let Some((code, text)) = refusal {
            // A room brought in from the cluster for this join goes again
            // when the join is refused: it has nobody here.
            if from_cluster && let Some(room) = self.rooms.remove(&target) {
                self.forget_room(&target, room);
            }
            return self.out.error_about(conn, code, Some(&chan), &text);
        }
        if native {
            self.switch_room(conn, &target, Entry::Joined);
        } else {
            self.enter_room(conn, &target, Entry::Joined);
        }
        // A room its account owns comes back to it.
        if let Some(account) = self.sessions.get(&conn).and_then(|s| s.account()) {
            self.reclaim_rooms(conn, &account);
        }
    }

    /// `#create ROOM [private]`: a new room owned by the caller.
    pub(super) fn create(&mut self, conn: ConnId, target: RoomName, private: bool) {
        if self.rooms.contains_key(&target) || self.exists_elsewhere(&target) {
            let text = format!("#{target} already exists; type #join #{target}");
            return self.out.error(conn, ErrorCode::RoomExists, &text);
        }
        if self.rooms.len() >= self.config.max_rooms {
            let text = format!(
                "the server has reached its limit of {} rooms",
                self.config.max_rooms
            );
            let chan = format!("#{target}");
            return self
                .out
                .error_about(conn, ErrorCode::TooManyRooms, Some(&chan), &text);
        }
        let Some(group) = self.may_create_room(conn, &target) else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&conn) {
            let standing = session.standing_mut();
            standing.rooms_created = standing.rooms_created.saturating_add(1);
        }
        self.addresses.entry(group).or_default().rooms_created += 1;
        let mut room = Room::new(Some(conn), private);
        room.created_by = Some((conn, group));
        room.owner_account = self
            .sessions
            .get(&conn)
            .and_then(|s| s.account())
            .map(|account| account.folded());
        // On a node of a cluster, ids come from Redis: the floor is set by
        // the room's first line here (cluster.rs, `show_line`).
        room.first_id = if self.cluster.is_some() {
            u64::MAX
        } else {
            self.ids.peek_next()
        };
        self.rooms.insert(target.clone(), room);
        self.room_created_in_cluster(conn, &target);
        let native = self
            .sessions
            .get(&conn)
            .is_some_and(|s| s.dialect == Dialect::Native);
        if native {
            self.switch_room(conn, &target, Entry::Created { private });
        } else {
            self.enter_room(conn, &target, Entry::Created { private });
        }
    }

    /// Checks the caller's per-connection and per-address room limits
    /// (operators are exempt) and returns the address group to count the
    /// new room against, or replies with the error.
    fn may_create_room(&mut self, conn: ConnId, target: &RoomName) -> Option<AddressGroup> {
        let session = self.sessions.get(&conn)?;
        let group = AddressGroup::of(session.peer, self.config.limits.ipv6_prefix);
        if session.is_operator() {
            return Some(group);
        }
        let limits = &self.config.limits;
        let text = if usize::from(session.standing().rooms_created) >= limits.rooms_per_connection {
            format!(
                "you have created {} rooms that still exist, the most one connection may",
                limits.rooms_per_connection
            )
        } else if self
            .addresses
            .get(&group)
            .is_some_and(|address| address.rooms_created >= limits.rooms_per_ip)
        {
            format!(
                "connections from {group} have created {} rooms that still exist, the most one address may",
                limits.rooms_per_ip
            )
        } else {
            return Some(group);
        };
        let chan = format!("#{target}");
        self.out
            .error_about(conn, ErrorCode::TooManyRooms, Some(&chan), &text);
        None
    }

    /// `#leave`: back to #general.
    pub(super) fn leave(&mut self, conn: ConnId) {
        let Some(current) = self.sessions.get(&conn).and_then(|s| s.current_room()) else {
            return;
        };
        let general = RoomName::general();
        if *current == general {
            return self.out.error(
                conn,
                ErrorCode::AlreadyInRoom,
                "you are already in #general, the room everyone starts in",
            );
        }
        let current = current.clone();
        if let Some(session) = self.sessions.get(&conn) {
            let reply = Reply::YouLeft {
                room: &current,
                reason: None,
                me: session.person(),
            };
            self.out.send(conn, &reply);
        }
        self.switch_room(conn, &general, Entry::Joined);
    }

    /// IRC `PART`: leave one room, telling its members why.
    pub(super) fn part(&mut self, conn: ConnId, name: &RoomName, reason: Option<&str>) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        // Callers check membership (IRC's 442 comes from them).
        if !session.is_in(name) {
            return;
        }
        // IRC echoes a PART to the one who leaves; the members hear it
        // after it is gone.
        let reply = Reply::YouLeft {
            room: name,
            reason,
            me: session.person(),
        };
        self.out.send(conn, &reply);
        self.leave_room(conn, name, true, reason);
    }

    /// `#invite NAME` / `INVITE`: the owner of a private room lets
    /// someone in.
    pub(super) fn invite(&mut self, conn: ConnId, name: RoomName, target: &Nick) {
        let invitee = self.user_named(target);
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&name) else {
            return;
        };
        if !room.private {
            let text = format!("#{name} is public; anyone can join it");
            return self.out.error(conn, ErrorCode::NotPrivate, &text);
        }
        if !room.is_moderator(conn) && !me.is_operator() {
            let text = format!("only the owner of #{name} may invite");
            let chan = format!("#{name}");
            return self
                .out
                .error_about(conn, ErrorCode::PermissionDenied, Some(&chan), &text);
        }
        let Some(invitee) = invitee else {
            let authority = if me.is_operator() {
                Authority::Operator
            } else {
                Authority::Owner
            };
            let action = OrderAction::Invite { room: name.clone() };
            if self.order_remote(conn, &name, target, action, authority) {
                return;
            }
            return self.no_such_nick(conn, target);
        };
        if room.has_member(invitee) {
            let text = format!("{target} is already in #{name}");
            let subject = format!("{target} #{name}");
            return self
                .out
                .error_about(conn, ErrorCode::AlreadyInRoom, Some(&subject), &text);
        }
        let limit = self.config.limits.invites_per_room;
        if room.invites.len() >= limit && !room.invites.contains(&invitee) {
            let text = format!("#{name} holds {limit} invitations, the most a room may");
            return self.out.error(conn, ErrorCode::LimitReached, &text);
        }
        room.invites.insert(invitee);
        let (by, user, host) = (me.nick, me.user().to_owned(), me.peer);
        let Some(guest) = self.sessions.get_mut(&invitee) else {
            return;
        };
        let standing = guest.standing_mut();
        if !standing.invited_to.contains(&name) {
            standing.invited_to.push(name.clone());
        }
        self.out.send(
            conn,
            &Reply::InviteSent {
                room: &name,
                nick: &guest.nick,
            },
        );
        let by = Person {
            nick: &by,
            user: &user,
            host,
            account: None,
        };
        self.out.send(invitee, &Reply::Invited { room: &name, by });
    }

    /// `#rooms [PAGE]`: public rooms, and private ones the caller is in,
    /// a page at a time so the answer stays bounded however many exist.
    pub(super) fn list_rooms(&mut self, conn: ConnId, page: Option<usize>) {
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        let visible = |(_, room): &(&RoomName, &Room)| {
            !(room.private || room.modes.secret) || room.has_member(conn) || me.is_operator()
        };
        let remote = |name: &RoomName| self.remote_count(name);
        let elsewhere = self.remote_only_rooms();
        let (paging, shown): (Paging, Vec<RoomEntry<'_>>) = if elsewhere.is_empty() {
            // One server (or no room only elsewhere): a page of the map.
            let total = self.rooms.iter().filter(visible).count();
            let paging = Paging::new(page, total, self.config.limits.list_page);
            let shown = self
                .rooms
                .iter()
                .filter(visible)
                .skip(paging.skip)
                .take(paging.size)
                .map(|(name, room)| room_entry(name, room, remote(name)))
                .collect();
            (paging, shown)
        } else {
            // On a node of a cluster, rooms with members only on other
            // nodes are listed too, in name order with the rest.
            let mut all: Vec<RoomEntry<'_>> = self
                .rooms
                .iter()
                .filter(visible)
                .map(|(name, room)| room_entry(name, room, remote(name)))
                .chain(elsewhere.iter().map(|name| RoomEntry {
                    room: name,
                    members: remote(name),
                    private: false,
                    topic: None,
                }))
                .collect();
            all.sort_by(|a, b| a.room.cmp(b.room));
            let paging = Paging::new(page, all.len(), self.config.limits.list_page);
            let shown = all
                .into_iter()
                .skip(paging.skip)
                .take(paging.size)
                .collect();
            (paging, shown)
        };
        let header = Reply::RoomsHeader { count: shown.len() };
        let footer = paging.footer("rooms");
        self.out.send_block(
            conn,
            std::iter::once(header)
                .chain(shown.into_iter().map(Reply::RoomEntry))
                .chain(footer),
        );
    }

    /// `#who [PAGE]`: the members of a room, sorted by nickname, a page
    /// at a time.
    pub(super) fn who(&mut self, conn: ConnId, name: &RoomName, page: Option<usize>) {
        let Some(room) = self.rooms.get(name) else {
            return;
        };
        let mut members = super::presence::who_entries(&self.sessions, room);
        super::cluster::add_remote_members(self.cluster.as_deref(), name, &mut members);
        let paging = Paging::new(page, members.len(), self.config.limits.list_page);
        let end = (paging.skip + paging.size).min(members.len());
        let who = Reply::Who {
            room: name,
            members: &members[paging.skip..end],
        };
        let footer = paging.footer("who");
        self.out
            .send_block(conn, std::iter::once(who).chain(footer));
    }

    /// `#topic [TEXT]` / `TOPIC`: show, or set (owner, channel operator
    /// or server operator; anyone in a room whose topic IRC unlocked).
    pub(super) fn topic(&mut self, conn: ConnId, name: &RoomName, text: Option<&str>) {
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        let Some(text) = text else {
            let reply = Reply::Topic {
                room: name,
                topic: room.topic.as_deref(),
            };
            return self.out.send(conn, &reply);
        };
        let unlocked = !room.modes.topic_locked && room.has_member(conn);
        if !room.is_moderator(conn) && !me.is_operator() && !unlocked {
            let text = match room.owner {
                Some(_) => format!("only the owner of #{name} or an operator may set its topic"),
                None => format!("only an operator may set the topic of #{name}"),
            };
            let chan = format!("#{name}");
            return self
                .out
                .error_about(conn, ErrorCode::PermissionDenied, Some(&chan), &text);
        }
        // An empty topic (IRC's `TOPIC #room :`) clears it.
        let topic = (!text.is_empty()).then(|| text.to_owned());
        // On a node of a cluster every node sets it when the bus brings
        // the change back (room_settings.rs).
        if self.settle_in_cluster(conn, name, Setting::Topic { topic }) {
            return;
        }
        let (Some(me), Some(room)) = (self.sessions.get(&conn), self.rooms.get_mut(name)) else {
            return;
        };
        room.topic = (!text.is_empty()).then(|| text.into());
        let reply = Reply::TopicChanged {
            room: name,
            by: me.person(),
            topic: text,
        };
        self.out
            .broadcast(&room.audiences(), None, &reply, Priority::Normal);
    }

    pub(super) fn no_such_nick(&mut self, conn: ConnId, target: &Nick) {
        let text = format!("nobody named {target} is online");
        self.out
            .error_about(conn, ErrorCode::NoSuchNick, Some(target.as_str()), &text);
    }
}

/// One page of a listing: which entries, and the line that says where it
/// stands when there is more than one page.
#[derive(Debug, Clone, Copy)]
struct Paging {
    page: usize,
    pages: usize,
    total: usize,
    skip: usize,
    size: usize,
}

impl Paging {
    /// Page `page` (from 1; past the last means the last) of `total`
    /// entries, `size` a page.
    fn new(page: Option<usize>, total: usize, size: usize) -> Self {
        let size = size.max(1);
        let pages = total.div_ceil(size).max(1);
        let page = page.unwrap_or(1).clamp(1, pages);
        Self {
            page,
            pages,
            total,
            skip: (page - 1) * size,
            size,
        }
    }

    /// "+ page P/T of N", only when there is more than one page, so short
    /// listings look as they always did.
    fn footer(self, command: &'static str) -> Option<Reply<'static>> {
        (self.pages > 1).then_some(Reply::Page {
            command,
            page: self.page,
            pages: self.pages,
            total: self.total,
        })
    }
}

/// A room as `#rooms` lists it, with `remote` members on other nodes.
fn room_entry<'a>(name: &'a RoomName, room: &'a Room, remote: usize) -> RoomEntry<'a> {
    RoomEntry {
        room: name,
        members: room.len() + remote,
        private: room.private,
        topic: room.topic.as_deref(),
    }
}

/// Whether one of a room's IRC ban masks matches the client's
/// `nick!user@host`.
pub(super) fn mask_banned(room: &Room, session: &Session) -> bool {
    masks_ban(room.modes.ban_masks.iter().map(|mask| &**mask), session)
}

/// Whether one of `masks` matches the session's `nick!user@host`.
pub(super) fn masks_ban<'a>(masks: impl Iterator<Item = &'a str>, session: &Session) -> bool {
    let mut masks = masks.peekable();
    if masks.peek().is_none() {
        return false;
    }
    let full = session.person().mask();
    masks.any(|mask| crate::irc::mask::matches(mask, &full))
}
