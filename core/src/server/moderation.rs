//! Moderation: operators, kicks, bans and mutes, and their expiry.
//!
//! Rules (docs/PROTOCOL.md, "Permissions"): a server operator moderates
//! everywhere; a room's owner kicks, bans and mutes in that room; nobody
//! but an operator may act on an operator. An operator's ban is a server
//! ban; an owner's is a room ban. Bans are by address, so a new nickname
//! does not get around them; mutes are per connection and room.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::command::BanTarget;
use crate::error::ErrorCode;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::{CloseReason, Priority};
use crate::reply::{Person, Reply, Scope};
use crate::timers::Timer;

use crate::cluster::{OrderAction, Setting, SharedRoomBan, Speaker};

use super::cluster::speaker;
use super::presence::Entry;
use super::room::Ban;
use super::{Farewell, Server, describe_ban};

/// Why the caller may moderate here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Authority {
    Operator,
    Owner,
}

impl Server {
    /// `#kick NAME [REASON]`: out of the room, or off the server in #general.
    pub(super) fn kick(
        &mut self,
        conn: ConnId,
        room_name: RoomName,
        target: &Nick,
        reason: Option<&str>,
    ) {
        let Some(authority) = self.authority(conn, &room_name, "kick") else {
            return;
        };
        let general = room_name == RoomName::general();
        if general && authority != Authority::Operator {
            // A kick in #general is a kick from the server: operators only,
            // whatever channel modes say.
            let text = "only an operator may kick in #general (it disconnects)";
            return self
                .out
                .error_about(conn, ErrorCode::PermissionDenied, Some("#general"), text);
        }
        let action = OrderAction::Kick {
            room: room_name.clone(),
            reason: reason.map(str::to_owned),
        };
        if self.order_remote(conn, &room_name, target, action, authority) {
            return;
        }
        let Some(victim) = self.member_target(conn, &room_name, target, authority) else {
            return;
        };
        let Some(by) = self.sessions.get(&conn).map(|s| (speaker(s), s.account())) else {
            return;
        };
        self.kick_member(&by.0, by.1.as_ref(), victim, &room_name, reason);
    }

    /// Carries out a kick decided here or by an operator on another node.
    pub(super) fn kick_member(
        &mut self,
        by: &Speaker,
        by_account: Option<&Nick>,
        victim: ConnId,
        room_name: &RoomName,
        reason: Option<&str>,
    ) {
        let general = *room_name == RoomName::general();
        let scope = if general {
            Scope::Server
        } else {
            Scope::Room(room_name)
        };
        let Some(victim_nick) = self.sessions.get(&victim).map(|s| s.nick) else {
            return;
        };
        self.cluster_kicked(victim_nick, room_name, by, reason);
        let Some(who) = self.sessions.get(&victim) else {
            return;
        };
        let by_person = Person {
            account: by_account,
            ..by.person()
        };
        let reply = Reply::Kicked {
            scope,
            who: who.person(),
            by: by_person,
            reason,
        };

        // The victim is told on its own (an IRC client reads its own
        // disconnection as ERROR, not as someone's QUIT).
        let except = general.then_some(victim);
        if let Some(room) = self.rooms.get_mut(room_name) {
            self.out
                .broadcast(&room.audiences(), except, &reply, Priority::Urgent);
        }
        if general {
            self.out.send_with(victim, &reply, Priority::Urgent);
            // Its other rooms (an IRC client's) hear it quit.
            let others: Vec<RoomName> = self.sessions[&victim]
                .rooms
                .iter()
                .filter(|name| *name != room_name)
                .cloned()
                .collect();
            let (nick, user, host) = {
                let who = &self.sessions[&victim];
                (who.nick, who.user().to_owned(), who.peer)
            };
            let message = format!("kicked by {}", by.nick);
            self.remove_session(victim, Farewell::Silent);
            self.out.close(victim, CloseReason::Kicked);
            let who = Person {
                nick: &nick,
                user: &user,
                host,
                account: None,
            };
            self.announce_quit(&others, who, Some(&message));
            return;
        }
        self.put_out(victim, room_name, None);
    }

    /// IRC `KILL` by an operator: the victim is told, disconnected, and
    /// its rooms hear it quit.
    pub(super) fn kill(&mut self, conn: ConnId, victim: ConnId, reason: Option<&str>) {
        let (by, who) = (&self.sessions[&conn], &self.sessions[&victim]);
        let reply = Reply::Kicked {
            scope: Scope::Server,
            who: who.person(),
            by: by.person(),
            reason,
        };
        self.out.send_with(victim, &reply, Priority::Urgent);
        let message = match reason {
            Some(reason) => format!("killed by {}: {reason}", by.nick),
            None => format!("killed by {}", by.nick),
        };
        self.remove_session(victim, Farewell::Quit(Some(&message)));
        self.out.close(victim, CloseReason::Kicked);
    }

    /// Takes a kicked or banned member out of a room, announcing it with
    /// `reason` unless that was done already (`None`); a native client,
    /// which is always in a room, goes back to #general.
    pub(super) fn put_out(&mut self, victim: ConnId, room_name: &RoomName, reason: Option<&str>) {
        self.leave_room(victim, room_name, reason.is_some(), reason);
        let native = self
            .sessions
            .get(&victim)
            .is_some_and(|s| s.dialect == crate::dialect::Dialect::Native);
        if native {
            self.enter_room(victim, &RoomName::general(), Entry::Joined);
        }
    }

    /// `#ban NAME|IP [DURATION] [REASON]`.
    pub(super) fn ban(
        &mut self,
        now: Instant,
        conn: ConnId,
        room_name: RoomName,
        target: &BanTarget,
        duration: Option<Duration>,
        reason: Option<&str>,
    ) {
        let Some(authority) = self.authority(conn, &room_name, "ban") else {
            return;
        };
        let address = match target {
            BanTarget::Ip(address) => *address,
            BanTarget::Nick(nick) => match self.user_named(nick) {
                Some(victim) => self.sessions[&victim].peer,
                // Server bans and a room's bans are the cluster's: a user
                // of another node is banned by the address their node
                // announced.
                None => match self.remote_host(nick) {
                    Some(address) => address,
                    None => return self.no_such_nick(conn, nick),
                },
            },
        };
        // Durations are at most duration::MAX (parsers cap them), so this
        // cannot overflow; should a driver's clock sit near the end of
        // time, a ban that cannot be timed is refused, never made permanent.
        let until = match duration.map(|length| now.checked_add(length)) {
            None => None,
            Some(Some(until)) => Some(until),
            Some(None) => return self.untimeable(conn),
        };
        let ban = Ban {
            until,
            reason: reason.map(Into::into),
        };
        match authority {
            Authority::Operator => self.ban_from_server(now, conn, address, ban, duration),
            Authority::Owner => {
                if !self.room_has_space_for_ban(conn, &room_name, address) {
                    return;
                }
                let nick = match target {
                    BanTarget::Nick(nick) => Some(*nick),
                    BanTarget::Ip(_) => None,
                };
                // On a node of a cluster the room's bans are the
                // cluster's: every node bans the address when the bus
                // brings the ban back (room_settings.rs).
                let shared = SharedRoomBan {
                    until_ms: duration.map(|length| {
                        let length = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
                        self.wall.unix_ms(now).saturating_add(length)
                    }),
                    reason: reason.map(str::to_owned),
                };
                let setting = Setting::Ban {
                    address,
                    ban: shared,
                    target: nick,
                    for_ms: duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                };
                if self.settle_in_cluster(conn, &room_name, setting) {
                    return;
                }
                if let Some(nick) = nick {
                    self.ban_account(now, &room_name, &nick, address, ban.clone());
                }
                self.ban_from_room(&room_name, address, ban.clone());
                let by = self.nick_of(conn);
                let notice = RoomBanNotice {
                    moderator: Some(conn),
                    by,
                    target: nick.as_ref(),
                    address,
                    duration,
                    reason: ban.reason.as_deref(),
                };
                self.enforce_room_ban(&room_name, &notice);
            }
        }
    }

    /// A logged-in user's account is banned with their address, so logging
    /// in from another address does not get back in (accounts are each
    /// node's: on the node where the moderator named them).
    pub(super) fn ban_account(
        &mut self,
        now: Instant,
        room_name: &RoomName,
        nick: &Nick,
        address: IpAddr,
        ban: Ban,
    ) {
        let account = self
            .user_named(nick)
            .and_then(|victim| self.sessions[&victim].account())
            .map(|account| account.folded());
        if let (Some(account), Some(room)) = (account, self.rooms.get_mut(room_name)) {
            room.account_bans.retain(|_, (_, ban)| ban.is_active(now));
            if room.account_bans.len() < self.config.limits.bans_per_room {
                room.account_bans.insert(account, (address, ban));
            }
        }
    }

    fn ban_from_server(
        &mut self,
        now: Instant,
        conn: ConnId,
        address: IpAddr,
        ban: Ban,
        duration: Option<Duration>,
    ) {
        let limit = self.config.limits.server_bans;
        if self.server_bans.len() >= limit && !self.server_bans.contains_key(&address) {
            let text = format!("the server holds {limit} bans, the most it may; lift one first");
            return self.out.error(conn, ErrorCode::LimitReached, &text);
        }
        let reply = Reply::BanSet {
            scope: Scope::Server,
            address,
            duration,
        };
        self.out.send(conn, &reply);
        self.cluster_banned(now, address, &ban);
        self.impose_server_ban(now, address, ban, Some(conn));
    }

    /// Bans an address from this server and disconnects its users (but
    /// `moderator`, and operators): an operator's ban here, or one another
    /// node of the cluster passed on.
    pub(super) fn impose_server_ban(
        &mut self,
        now: Instant,
        address: IpAddr,
        ban: Ban,
        moderator: Option<ConnId>,
    ) {
        if let Some(until) = ban.until {
            self.timers.schedule(until, Timer::ServerBanExpiry(address));
        }
        let text = describe_ban("this server", &ban, now);
        if let Some(replaced) = self.server_bans.insert(address, ban) {
            self.cancel_server_ban_timer(address, &replaced);
        }
        // Every victim goes before anyone is told, so no victim hears of
        // another while its own notice is on the way.
        let victims = self.sessions_at(address, moderator);
        let departures: Vec<_> = victims
            .iter()
            .map(|victim| {
                let session = &self.sessions[victim];
                (
                    session.rooms.clone(),
                    session.nick,
                    session.user().to_owned(),
                    session.peer,
                )
            })
            .collect();
        for victim in victims {
            self.out.send_with(
                victim,
                &Reply::Error {
                    code: ErrorCode::Banned,
                    subject: None,
                    text: &text,
                },
                Priority::Urgent,
            );
            self.remove_session(victim, Farewell::Silent);
            self.out.close(victim, CloseReason::Banned);
        }
        for (rooms, nick, user, host) in departures {
            let who = Person {
                nick: &nick,
                user: &user,
                host,
                account: None,
            };
            self.announce_quit(&rooms, who, Some("banned"));
        }
    }

    /// Whether the room may hold one more ban (of `address`); the
    /// moderator is told when it may not.
    fn room_has_space_for_ban(
        &mut self,
        conn: ConnId,
        room_name: &RoomName,
        address: IpAddr,
    ) -> bool {
        let limit = self.config.limits.bans_per_room;
        let Some(room) = self.rooms.get(room_name) else {
            return false;
        };
        let held = room.bans.len() + room.modes.ban_masks.len();
        if held >= limit && !room.bans.contains_key(&address) {
            let text =
                format!("#{room_name} holds {limit} bans, the most a room may; lift one first");
            self.out.error(conn, ErrorCode::LimitReached, &text);
            return false;
        }
        true
    }

    /// An owner's address ban on a single server, with its timer.
    fn ban_from_room(&mut self, room_name: &RoomName, address: IpAddr, ban: Ban) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        if let Some(until) = ban.until {
            let timer = Timer::RoomBanExpiry {
                room: room_name.clone(),
                address,
            };
            self.timers.schedule(until, timer);
        }
        if let Some(replaced) = room.bans.insert(address, ban) {
            self.cancel_room_ban_timer(room_name, address, &replaced);
        }
    }

    /// After a room banned an address: its members from there here are
    /// put out, and the moderator, if here, is told.
    pub(super) fn enforce_room_ban(&mut self, room_name: &RoomName, notice: &RoomBanNotice<'_>) {
        if !self.rooms.contains_key(room_name) {
            return;
        }
        let victims: Vec<ConnId> = self
            .sessions_at(notice.address, notice.moderator)
            .into_iter()
            .filter(|victim| self.rooms[room_name].has_member(*victim))
            .collect();
        if let Some(moderator) = notice.moderator {
            match notice.target {
                None => self.out.send(
                    moderator,
                    &Reply::BanSet {
                        scope: Scope::Room(room_name),
                        address: notice.address,
                        duration: notice.duration,
                    },
                ),
                Some(nick) if victims.is_empty() => self.out.send(
                    moderator,
                    &Reply::BannedFromRoom {
                        room: room_name,
                        nick,
                        by: &notice.by,
                        duration: notice.duration,
                        reason: notice.reason,
                    },
                ),
                Some(_) => {}
            }
        }
        for victim in victims {
            let nick = self.nick_of(victim);
            let reply = Reply::BannedFromRoom {
                room: room_name,
                nick: &nick,
                by: &notice.by,
                duration: notice.duration,
                reason: notice.reason,
            };
            self.broadcast_in(room_name, &reply, Priority::Urgent);
            self.put_out(victim, room_name, None);
        }
    }

    /// `#unban IP`: an operator lifts a server ban (or, failing that, a ban
    /// in their room); an owner lifts a ban in their room.
    pub(super) fn unban(&mut self, conn: ConnId, room_name: RoomName, address: IpAddr) {
        let Some(authority) = self.authority(conn, &room_name, "unban") else {
            return;
        };
        if authority == Authority::Operator
            && let Some(lifted) = self.server_bans.remove(&address)
        {
            self.cancel_server_ban_timer(address, &lifted);
            self.cluster_unbanned(address);
            let reply = Reply::Unbanned {
                scope: Scope::Server,
                address,
            };
            return self.out.send(conn, &reply);
        }
        let banned_here = self
            .rooms
            .get(&room_name)
            .is_some_and(|room| room.bans.contains_key(&address));
        // On a node of a cluster every node lifts it when the bus brings
        // the change back (room_settings.rs).
        if banned_here && self.settle_in_cluster(conn, &room_name, Setting::Unban { address }) {
            return;
        }
        if let Some(room) = self.rooms.get_mut(&room_name) {
            // Account bans set with this address go with it.
            room.account_bans
                .retain(|_, (banned, _)| *banned != address);
        }
        let lifted = self
            .rooms
            .get_mut(&room_name)
            .and_then(|room| room.bans.remove(&address));
        let Some(lifted) = lifted else {
            let text = format!("{address} is not banned from #{room_name} or the server");
            return self.out.error(conn, ErrorCode::NotBanned, &text);
        };
        self.cancel_room_ban_timer(&room_name, address, &lifted);
        let reply = Reply::Unbanned {
            scope: Scope::Room(&room_name),
            address,
        };
        self.out.send(conn, &reply);
    }

    /// `#mute NAME DURATION`.
    pub(super) fn mute(
        &mut self,
        now: Instant,
        conn: ConnId,
        room_name: RoomName,
        target: &Nick,
        duration: Duration,
    ) {
        let Some(authority) = self.authority(conn, &room_name, "mute") else {
            return;
        };
        let action = OrderAction::Mute {
            room: room_name.clone(),
            for_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        };
        if self.order_remote(conn, &room_name, target, action, authority) {
            return;
        }
        let Some(victim) = self.member_target(conn, &room_name, target, authority) else {
            return;
        };
        if now.checked_add(duration).is_none() {
            return self.untimeable(conn);
        }
        let by = self.nick_of(conn);
        if let Err(text) = self.mute_member(now, by, victim, &room_name, duration) {
            self.out.error(conn, ErrorCode::LimitReached, &text);
        }
    }

    /// Carries out a mute decided here or by an operator on another node;
    /// the error text when the room holds all the mutes it may.
    pub(super) fn mute_member(
        &mut self,
        now: Instant,
        by: Nick,
        victim: ConnId,
        room_name: &RoomName,
        duration: Duration,
    ) -> Result<(), String> {
        let Some(until) = now.checked_add(duration) else {
            return Ok(());
        };
        let limit = self.config.limits.mutes_per_room;
        let Some(room) = self.rooms.get_mut(room_name) else {
            return Ok(());
        };
        if room.mutes.len() >= limit && !room.mutes.contains_key(&victim) {
            return Err(format!(
                "#{room_name} holds {limit} mutes, the most a room may; lift one first"
            ));
        }
        let timer = Timer::MuteExpiry {
            room: room_name.clone(),
            conn: victim,
        };
        if let Some(replaced) = room.mutes.insert(victim, until) {
            self.timers.cancel(replaced, &timer);
        }
        self.timers.schedule(until, timer);
        // A logged-in user's account is muted too: the mute follows it
        // to a new connection, from any address.
        if let Some(account) = self.sessions.get(&victim).and_then(|s| s.account())
            && room.account_mutes.len() < limit
        {
            let account = account.folded();
            let timer = Timer::AccountMuteExpiry {
                room: room_name.clone(),
                account,
            };
            if let Some(replaced) = room.account_mutes.insert(account, until) {
                self.timers.cancel(replaced, &timer);
            }
            self.timers.schedule(until, timer);
        }
        if let Some(session) = self.sessions.get_mut(&victim)
            && !session.standing().muted_in.contains(room_name)
        {
            session.standing_mut().muted_in.push(room_name.clone());
        }
        let nick = self.nick_of(victim);
        let reply = Reply::Muted {
            room: room_name,
            nick: &nick,
            by: &by,
            duration,
        };
        self.broadcast_in(room_name, &reply, Priority::Urgent);
        self.cluster_muted(nick, room_name, by, duration);
        Ok(())
    }

    /// `#unmute NAME`.
    pub(super) fn unmute(
        &mut self,
        now: Instant,
        conn: ConnId,
        room_name: RoomName,
        target: &Nick,
    ) {
        let Some(authority) = self.authority(conn, &room_name, "unmute") else {
            return;
        };
        let Some(victim) = self.member_target(conn, &room_name, target, authority) else {
            return;
        };
        let lifted = self
            .rooms
            .get_mut(&room_name)
            .and_then(|room| room.mutes.remove(&victim));
        if let Some(until) = lifted {
            self.forget_mute(&room_name, victim, until);
        }
        let account = self.sessions.get(&victim).and_then(|s| s.account_key());
        let account_lifted = account.and_then(|account| {
            let until = self
                .rooms
                .get_mut(&room_name)?
                .account_mutes
                .remove(&account)?;
            let timer = Timer::AccountMuteExpiry {
                room: room_name.clone(),
                account,
            };
            self.timers.cancel(until, &timer);
            Some(until)
        });
        let lifted = lifted.max(account_lifted);
        if lifted.is_none_or(|until| until <= now) {
            let text = format!("{target} is not muted in #{room_name}");
            return self.out.error(conn, ErrorCode::NotMuted, &text);
        }
        let (by, nick) = (self.nick_of(conn), self.nick_of(victim));
        let reply = Reply::Unmuted {
            room: &room_name,
            nick: &nick,
            by: Some(&by),
        };
        self.broadcast_in(&room_name, &reply, Priority::Normal);
    }

    pub(super) fn expire_mute(&mut self, at: Instant, room_name: &RoomName, conn: ConnId) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        if room.mutes.get(&conn) != Some(&at) {
            return;
        }
        room.mutes.remove(&conn);
        let member = room.has_member(conn);
        if let Some(standing) = self
            .sessions
            .get_mut(&conn)
            .and_then(|s| s.standing_if_any())
        {
            standing.muted_in.retain(|muted| muted != room_name);
        }
        if !member {
            return;
        }
        let nick = self.nick_of(conn);
        let reply = Reply::Unmuted {
            room: room_name,
            nick: &nick,
            by: None,
        };
        self.broadcast_in(room_name, &reply, Priority::Normal);
    }

    pub(super) fn expire_room_ban(&mut self, at: Instant, room_name: &RoomName, address: IpAddr) {
        if let Some(room) = self.rooms.get_mut(room_name)
            && room
                .bans
                .get(&address)
                .is_some_and(|ban| ban.until == Some(at))
        {
            room.bans.remove(&address);
        }
    }

    pub(super) fn expire_server_ban(&mut self, at: Instant, address: IpAddr) {
        if self
            .server_bans
            .get(&address)
            .is_some_and(|ban| ban.until == Some(at))
        {
            self.server_bans.remove(&address);
        }
    }

    /// The caller's right to `action` in a room, or a permission error.
    /// A room's channel operators (IRC `+o`) act with its owner's right.
    pub(super) fn authority(
        &mut self,
        conn: ConnId,
        room_name: &RoomName,
        action: &str,
    ) -> Option<Authority> {
        let session = self.sessions.get(&conn)?;
        let room = self.rooms.get(room_name);
        if session.is_operator() {
            return Some(Authority::Operator);
        }
        if room.is_some_and(|room| room.is_moderator(conn)) {
            return Some(Authority::Owner);
        }
        let text = match room.and_then(|room| room.owner) {
            Some(_) => format!("only the owner of #{room_name} or an operator may {action} here"),
            None => format!("only an operator may {action} in #{room_name}"),
        };
        let subject = format!("#{room_name}");
        self.out
            .error_about(conn, ErrorCode::PermissionDenied, Some(&subject), &text);
        None
    }

    /// Resolves a moderation target that must be in the room and must not
    /// outrank the caller; replies with the error otherwise.
    fn member_target(
        &mut self,
        conn: ConnId,
        room_name: &RoomName,
        target: &Nick,
        authority: Authority,
    ) -> Option<ConnId> {
        let Some(victim) = self.user_named(target) else {
            self.no_such_nick(conn, target);
            return None;
        };
        if !self
            .rooms
            .get(room_name)
            .is_some_and(|room| room.has_member(victim))
        {
            let text = format!("{target} is not in #{room_name}");
            let subject = format!("{target} #{room_name}");
            self.out
                .error_about(conn, ErrorCode::NotInRoom, Some(&subject), &text);
            return None;
        }
        let owner = self.rooms.get(room_name).and_then(|room| room.owner);
        if authority != Authority::Operator && owner == Some(victim) && owner != Some(conn) {
            // A channel operator acts with the owner's rights, never on
            // the owner.
            let text = format!("{target} owns #{room_name}");
            let chan = format!("#{room_name}");
            self.out
                .error_about(conn, ErrorCode::PermissionDenied, Some(&chan), &text);
            return None;
        }
        if authority != Authority::Operator && self.sessions[&victim].is_operator() {
            let text = format!("{target} is a server operator");
            let chan = format!("#{room_name}");
            self.out
                .error_about(conn, ErrorCode::PermissionDenied, Some(&chan), &text);
            return None;
        }
        Some(victim)
    }

    /// Connections from `address` that a ban removes: everyone there but
    /// operators and the moderator, in id order.
    fn sessions_at(&self, address: IpAddr, moderator: Option<ConnId>) -> Vec<ConnId> {
        self.sessions
            .iter()
            .filter(|&(&id, s)| Some(id) != moderator && s.peer == address && !s.is_operator())
            .map(|(&id, _)| id)
            .collect()
    }

    /// A mute ended early: its timer and its place in the session's list go.
    pub(super) fn forget_mute(&mut self, room_name: &RoomName, conn: ConnId, until: Instant) {
        let timer = Timer::MuteExpiry {
            room: room_name.clone(),
            conn,
        };
        self.timers.cancel(until, &timer);
        if let Some(standing) = self
            .sessions
            .get_mut(&conn)
            .and_then(|s| s.standing_if_any())
        {
            standing.muted_in.retain(|muted| muted != room_name);
        }
    }

    pub(super) fn cancel_server_ban_timer(&mut self, address: IpAddr, ban: &Ban) {
        if let Some(until) = ban.until {
            self.timers.cancel(until, &Timer::ServerBanExpiry(address));
        }
    }

    pub(super) fn cancel_room_ban_timer(
        &mut self,
        room_name: &RoomName,
        address: IpAddr,
        ban: &Ban,
    ) {
        if let Some(until) = ban.until {
            let timer = Timer::RoomBanExpiry {
                room: room_name.clone(),
                address,
            };
            self.timers.cancel(until, &timer);
        }
    }

    fn untimeable(&mut self, conn: ConnId) {
        self.out.error(
            conn,
            ErrorCode::BadArgument,
            "that duration reaches past what this server can time; use a shorter one",
        );
    }

    fn nick_of(&self, conn: ConnId) -> Nick {
        self.sessions[&conn].nick
    }

    /// One reply to every member of a room, the subject of it included.
    pub(super) fn broadcast_in(
        &mut self,
        room_name: &RoomName,
        reply: &Reply<'_>,
        priority: Priority,
    ) {
        if let Some(room) = self.rooms.get_mut(room_name) {
            self.out.broadcast(&room.audiences(), None, reply, priority);
        }
    }
}

/// What a room's address ban tells, on the node that carries it out.
pub(super) struct RoomBanNotice<'a> {
    /// The moderator, if on this node.
    pub(super) moderator: Option<ConnId>,
    /// The moderator's nickname.
    pub(super) by: Nick,
    /// The nickname the moderator named, if any.
    pub(super) target: Option<&'a Nick>,
    /// The banned address.
    pub(super) address: IpAddr,
    /// For how long, as the moderator gave it.
    pub(super) duration: Option<Duration>,
    /// Why.
    pub(super) reason: Option<&'a str>,
}
