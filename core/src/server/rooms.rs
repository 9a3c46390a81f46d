//! Room commands: join, create, leave, invite, rooms, who, topic.

use std::time::Instant;

use crate::address::AddressGroup;
use crate::error::ErrorCode;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::Priority;
use crate::reply::{Reply, RoomEntry, WhoEntry};

use super::presence::Entry;
use super::room::Room;
use super::{Server, describe_ban};

impl Server {
    /// `#join ROOM`: switch rooms, creating the target if absent.
    pub(super) fn join(&mut self, now: Instant, conn: ConnId, target: RoomName) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        if session.room == target {
            let text = format!("you are already in #{target}");
            return self.out.error(conn, ErrorCode::AlreadyInRoom, &text);
        }
        let Some(room) = self.rooms.get(&target) else {
            return self.create(conn, target, false);
        };
        let exempt = session.is_operator();
        if room.private && !exempt && !room.invites.contains(&conn) {
            let text = format!("#{target} is private; ask its owner for an invitation");
            return self.out.error(conn, ErrorCode::InviteOnly, &text);
        }
        if let Some(ban) = room.active_ban(session.peer.ip(), now)
            && !exempt
        {
            let text = describe_ban(&format!("#{target}"), ban, now);
            return self.out.error(conn, ErrorCode::Banned, &text);
        }
        self.switch_room(conn, &target, Entry::Joined);
    }

    /// `#create ROOM [private]`: a new room owned by the caller.
    pub(super) fn create(&mut self, conn: ConnId, target: RoomName, private: bool) {
        if self.rooms.contains_key(&target) {
            let text = format!("#{target} already exists; type #join #{target}");
            return self.out.error(conn, ErrorCode::RoomExists, &text);
        }
        if self.rooms.len() >= self.config.max_rooms {
            let text = format!(
                "the server has reached its limit of {} rooms",
                self.config.max_rooms
            );
            return self.out.error(conn, ErrorCode::TooManyRooms, &text);
        }
        let Some(group) = self.may_create_room(conn) else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.rooms_created = session.rooms_created.saturating_add(1);
        }
        self.addresses.entry(group).or_default().rooms_created += 1;
        let mut room = Room::new(Some(conn), private);
        room.created_by = Some((conn, group));
        self.rooms.insert(target.clone(), room);
        self.switch_room(conn, &target, Entry::Created { private });
    }

    /// Checks the caller's per-connection and per-address room limits
    /// (operators are exempt) and returns the address group to count the
    /// new room against, or replies with the error.
    fn may_create_room(&mut self, conn: ConnId) -> Option<AddressGroup> {
        let session = self.sessions.get(&conn)?;
        let group = AddressGroup::of(session.peer.ip(), self.config.limits.ipv6_prefix);
        if session.is_operator() {
            return Some(group);
        }
        let limits = &self.config.limits;
        let text = if usize::from(session.rooms_created) >= limits.rooms_per_connection {
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
        self.out.error(conn, ErrorCode::TooManyRooms, &text);
        None
    }

    /// `#leave`: back to #general.
    pub(super) fn leave(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let general = RoomName::general();
        if session.room == general {
            return self.out.error(
                conn,
                ErrorCode::AlreadyInRoom,
                "you are already in #general, the room everyone starts in",
            );
        }
        self.out.send(
            conn,
            &Reply::YouLeft {
                room: &session.room,
            },
        );
        self.switch_room(conn, &general, Entry::Joined);
    }

    /// `#invite NAME`: the owner of a private room lets someone in.
    pub(super) fn invite(&mut self, conn: ConnId, target: &Nick) {
        let invitee = self.conn_named(target);
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        let name = me.room.clone();
        let Some(room) = self.rooms.get_mut(&name) else {
            return;
        };
        if !room.private {
            let text = format!("#{name} is public; anyone can join it");
            return self.out.error(conn, ErrorCode::NotPrivate, &text);
        }
        if room.owner != Some(conn) && !me.is_operator() {
            let text = format!("only the owner of #{name} may invite");
            return self.out.error(conn, ErrorCode::PermissionDenied, &text);
        }
        let Some(invitee) = invitee else {
            return self.no_such_nick(conn, target);
        };
        if room.has_member(invitee) {
            let text = format!("{target} is already in #{name}");
            return self.out.error(conn, ErrorCode::AlreadyInRoom, &text);
        }
        let limit = self.config.limits.invites_per_room;
        if room.invites.len() >= limit && !room.invites.contains(&invitee) {
            let text = format!("#{name} holds {limit} invitations, the most a room may");
            return self.out.error(conn, ErrorCode::LimitReached, &text);
        }
        room.invites.insert(invitee);
        let by = me.nick;
        let Some(guest) = self.sessions.get_mut(&invitee) else {
            return;
        };
        if !guest.invited_to.contains(&name) {
            guest.invited_to.push(name.clone());
        }
        self.out.send(
            conn,
            &Reply::InviteSent {
                room: &name,
                nick: &guest.nick,
            },
        );
        self.out.send(
            invitee,
            &Reply::Invited {
                room: &name,
                by: &by,
            },
        );
    }

    /// `#rooms [PAGE]`: public rooms, and private ones the caller is in,
    /// a page at a time so the answer stays bounded however many exist.
    pub(super) fn list_rooms(&mut self, conn: ConnId, page: Option<usize>) {
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        let visible = |(_, room): &(&RoomName, &Room)| {
            !room.private || room.has_member(conn) || me.is_operator()
        };
        let total = self.rooms.iter().filter(visible).count();
        let paging = Paging::new(page, total, self.config.limits.list_page);
        let shown: Vec<RoomEntry<'_>> = self
            .rooms
            .iter()
            .filter(visible)
            .skip(paging.skip)
            .take(paging.size)
            .map(|(name, room)| RoomEntry {
                room: name,
                members: room.len(),
                private: room.private,
                topic: room.topic.as_deref(),
            })
            .collect();
        let header = Reply::RoomsHeader { count: shown.len() };
        let footer = paging.footer("rooms");
        self.out.send_block(
            conn,
            std::iter::once(header)
                .chain(shown.into_iter().map(Reply::RoomEntry))
                .chain(footer),
        );
    }

    /// `#who [PAGE]`: the members of the caller's room, sorted by
    /// nickname, a page at a time.
    pub(super) fn who(&mut self, conn: ConnId, page: Option<usize>) {
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        let Some(room) = self.rooms.get(&me.room) else {
            return;
        };
        let mut members: Vec<WhoEntry<'_>> = room
            .members()
            .filter_map(|member| self.sessions.get(&member).map(|s| (member, s)))
            .map(|(member, session)| WhoEntry {
                nick: &session.nick,
                owner: room.owner == Some(member),
            })
            .collect();
        members.sort_by_cached_key(|entry| entry.nick.folded());
        let paging = Paging::new(page, members.len(), self.config.limits.list_page);
        let end = (paging.skip + paging.size).min(members.len());
        let who = Reply::Who {
            room: &me.room,
            members: &members[paging.skip..end],
        };
        let footer = paging.footer("who");
        self.out
            .send_block(conn, std::iter::once(who).chain(footer));
    }

    /// `#topic [TEXT]`: show, or set (owner or operator).
    pub(super) fn topic(&mut self, conn: ConnId, text: Option<&str>) {
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&me.room) else {
            return;
        };
        let Some(text) = text else {
            let reply = Reply::Topic {
                room: &me.room,
                topic: room.topic.as_deref(),
            };
            return self.out.send(conn, &reply);
        };
        if room.owner != Some(conn) && !me.is_operator() {
            let text = match room.owner {
                Some(_) => format!(
                    "only the owner of #{} or an operator may set its topic",
                    me.room
                ),
                None => format!("only an operator may set the topic of #{}", me.room),
            };
            return self.out.error(conn, ErrorCode::PermissionDenied, &text);
        }
        room.topic = Some(text.into());
        let reply = Reply::TopicChanged {
            room: &me.room,
            by: &me.nick,
            topic: text,
        };
        self.out
            .broadcast(room.recipients(), None, &reply, Priority::Normal);
    }

    pub(super) fn no_such_nick(&mut self, conn: ConnId, target: &Nick) {
        let text = format!("nobody named {target} is online");
        self.out.error(conn, ErrorCode::NoSuchNick, &text);
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
