//! A room's settings on a node of a cluster (docs/CLUSTER.md, "Room
//! settings"): its topic, IRC channel modes and address bans. A change is
//! checked here, goes to the bus, and is applied when it comes back: on
//! every node, the changer's too, in the one order Redis ran the changes.
//! Each node keeps every room's settings, so a room whose first member
//! here joins it starts with them.

use std::time::{Duration, Instant};

use crate::cluster::{BusFailure, BusRequest, RoomChange, RoomSettings, Setting};
use crate::error::ErrorCode;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::Priority;
use crate::reply::{Reply, Scope};
use crate::timers::Timer;

use super::Server;
use super::cluster::{ForBus, UNAVAILABLE, speaker};
use super::irc::modes::describe_room_modes;
use super::moderation::RoomBanNotice;
use super::room::{Ban, Room};
use super::rooms::masks_ban;
use super::session::Session;

impl Server {
    /// A change to a room's settings on a node of a cluster: to the bus,
    /// applied when it comes back. `false` on a single server (the caller
    /// applies it itself); on a node whose bus is down the changer is told
    /// and nothing changes.
    pub(super) fn settle_in_cluster(
        &mut self,
        conn: ConnId,
        room: &RoomName,
        setting: Setting,
    ) -> bool {
        let at_ms = self.out.scene.unix_ms;
        let (node, session) = match self.for_bus(conn, room) {
            ForBus::SingleServer => return false,
            ForBus::Refused => return true,
            ForBus::Ready(node, session) => (node, session),
        };
        let change = RoomChange {
            room: room.clone(),
            setting,
            by: speaker(session),
            node: node.clone(),
            conn,
            at_ms,
        };
        self.bus(BusRequest::Settle(Box::new(change)));
        true
    }

    /// The answer to this node's change: nothing to do when it was made
    /// (its settings arrive like everyone's); the changer is told when it
    /// could not be.
    pub(super) fn settled(&mut self, change: &RoomChange, result: Result<(), BusFailure>) {
        // A stale hand-off of ownership lost to another: nobody to tell.
        if matches!(result, Ok(()) | Err(BusFailure::Outdated)) {
            return;
        }
        // What this node decided by itself is told again when the bus is
        // back; nobody asked for it, so nobody is told it failed.
        if let Some(cluster) = &mut self.cluster {
            match &change.setting {
                Setting::Created { .. } | Setting::Reset => {
                    cluster.creations_due.insert(change.room.clone());
                    return;
                }
                Setting::Owner { .. } | Setting::Renamed { .. } => {
                    cluster.owners_due.insert(change.room.clone());
                    return;
                }
                _ => {}
            }
        }
        if let Some(conn) = self.changer_here(change) {
            let chan = format!("#{}", change.room);
            self.out
                .error_about(conn, ErrorCode::Unavailable, Some(&chan), UNAVAILABLE);
        }
    }

    /// The changer's connection, if the change was made on this node and
    /// the connection is still the user who made it.
    fn changer_here(&self, change: &RoomChange) -> Option<ConnId> {
        let cluster = self.cluster.as_ref()?;
        let session = self.sessions.get(&change.conn)?;
        (cluster.node == change.node && session.nick == change.by.nick).then_some(change.conn)
    }

    /// A room's settings after a change, from any node: kept, applied to
    /// the room here if it has members here, and told to them.
    pub(super) fn room_settings_arrived(
        &mut self,
        now: Instant,
        settings: RoomSettings,
        change: &RoomChange,
    ) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let name = &change.room;
        if settings == RoomSettings::default() {
            cluster.settings.remove(name);
        } else {
            cluster.settings.insert(name.clone(), settings);
        }
        let Some(owner_before) = self.rooms.get(name).map(|room| room.owner) else {
            return;
        };
        self.adopt_settings(now, name);
        self.owner_renamed_meanwhile(change);
        // A hand-off made here while the bus was down was told here then.
        let known_here = owner_before.is_some()
            && self
                .rooms
                .get(name)
                .is_some_and(|room| room.owner == owner_before);
        let changer = self.changer_here(change);
        // The changer as their own node knows them (with their account,
        // for IRC's account-tag), or as their node announced them.
        let by = match changer.and_then(|conn| self.sessions.get(&conn)) {
            Some(session) => session.person(),
            None => change.by.person(),
        };
        match &change.setting {
            Setting::Topic { topic } => {
                let reply = Reply::TopicChanged {
                    room: name,
                    by,
                    topic: topic.as_deref().unwrap_or(""),
                };
                if let Some(room) = self.rooms.get_mut(name) {
                    self.out
                        .broadcast(&room.audiences(), None, &reply, Priority::Normal);
                }
            }
            Setting::Modes { modes } => {
                let changes = describe_room_modes(modes);
                let reply = Reply::ModeChanged {
                    room: name,
                    by,
                    changes: &changes,
                };
                if let Some(room) = self.rooms.get_mut(name) {
                    self.out
                        .broadcast(&room.audiences(), None, &reply, Priority::Normal);
                }
            }
            Setting::Owner {
                nick: Some(nick), ..
            } if !known_here => {
                let reply = Reply::OwnerChanged { room: name, nick };
                self.broadcast_in(name, &reply, Priority::Normal);
            }
            Setting::Owner { .. } | Setting::Created { .. } | Setting::Renamed { .. } => {}
            Setting::Ban {
                address,
                ban,
                target,
                for_ms,
            } => {
                if let (Some(_), Some(nick)) = (changer, target) {
                    let ban = self.room_ban(now, ban);
                    self.ban_account(now, name, nick, *address, ban);
                }
                let notice = RoomBanNotice {
                    moderator: changer,
                    by: change.by.nick,
                    target: target.as_ref(),
                    address: *address,
                    duration: for_ms.map(Duration::from_millis),
                    reason: ban.reason.as_deref(),
                };
                self.enforce_room_ban(name, &notice);
            }
            Setting::Unban { address } => {
                if let Some(room) = self.rooms.get_mut(name) {
                    room.account_bans.retain(|_, (banned, _)| banned != address);
                }
                if let Some(conn) = changer {
                    let reply = Reply::Unbanned {
                        scope: Scope::Room(name),
                        address: *address,
                    };
                    self.out.send(conn, &reply);
                }
            }
            // A room created anew on another node while members here were
            // still in an earlier one of its name: only possible in a race
            // of two creations; its settings simply start over.
            Setting::Reset => {}
        }
    }

    /// Every room's settings, read as the bus connected: they replace what
    /// this node knew (it may have missed changes while cut off), and the
    /// rooms here take them.
    pub(super) fn all_settings_arrived(
        &mut self,
        now: Instant,
        all: Vec<(RoomName, RoomSettings)>,
    ) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let creations_due = &cluster.creations_due;
        cluster.settings = all
            .into_iter()
            .filter(|(name, settings)| {
                *settings != RoomSettings::default() && !creations_due.contains(name)
            })
            .collect();
        let names: Vec<RoomName> = self.rooms.keys().cloned().collect();
        for name in names {
            self.adopt_settings(now, &name);
        }
    }

    /// A room that exists on other nodes, for its first member here: its
    /// owner (if here, which it is not yet) and the rest of the cluster's
    /// settings come when the caller adopts them, once it is in place. A
    /// private one keeps the invitations this node was sent for it, and
    /// its history here starts at its first line shown here: what was
    /// said before may belong to an earlier room of its name.
    pub(super) fn room_from_cluster(&self, name: &RoomName) -> Room {
        let private = self.private_elsewhere(name);
        let mut room = Room::new(None, private);
        if let (true, Some(cluster)) = (private, self.cluster.as_ref()) {
            room.first_id = u64::MAX;
            room.invites = cluster.invited.get(name).cloned().unwrap_or_default();
        }
        room
    }

    /// A room was created here, on no other node: the cluster learns its
    /// owner, and what it kept of an earlier room of its name is reset, as
    /// a single server forgets a room's topic, modes and bans when its
    /// last member leaves. The new room starts from the defaults here at
    /// once; while the bus is down the creation waits for it (and what it
    /// reads then is not adopted).
    pub(super) fn room_created_in_cluster(&mut self, conn: ConnId, name: &RoomName) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.settings.remove(name);
        if !cluster.up {
            cluster.creations_due.insert(name.clone());
            return;
        }
        if let Some(owner) = self.sessions.get(&conn).map(|session| session.nick) {
            self.settle_in_cluster(conn, name, Setting::Created { owner });
        }
    }

    /// The creations of rooms made while the bus was down, as it comes
    /// back: in the name of the owner (a reset, if the room has members
    /// but no owner here any more).
    pub(super) fn send_due_creations(&mut self) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let due = std::mem::take(&mut cluster.creations_due);
        for name in due {
            let Some(room) = self.rooms.get(&name) else {
                continue;
            };
            let owner = room
                .owner
                .and_then(|conn| Some((conn, self.sessions.get(&conn)?.nick)));
            let first = room.members().next();
            match (owner, first) {
                (Some((conn, owner)), _) => {
                    self.settle_in_cluster(conn, &name, Setting::Created { owner });
                }
                (None, Some(member)) => {
                    self.settle_in_cluster(member, &name, Setting::Reset);
                }
                (None, None) => {}
            }
        }
    }

    /// The owner `was` left a room here (or the server) on a node of a
    /// cluster: the room passes to its member here who came first, when
    /// the bus brings the hand-off back to every node. Only the first
    /// hand-off from this owner is made (another node may hand it on at
    /// the same time). `true` when the cluster decides (the caller then
    /// changes nothing itself); `false` on a single server, or while the
    /// bus is down: the caller hands it on here, and the cluster hears of
    /// it when the bus is back.
    pub(super) fn hand_on_in_cluster(&mut self, name: &RoomName, was: Nick) -> bool {
        let Some(cluster) = &mut self.cluster else {
            return false;
        };
        if !cluster.up {
            cluster.owners_due.insert(name.clone());
            return false;
        }
        let Some(room) = self.rooms.get_mut(name) else {
            return true;
        };
        room.owner = None;
        let Some(heir) = room.members().next() else {
            return true;
        };
        let Some(nick) = self.sessions.get(&heir).map(|session| session.nick) else {
            return true;
        };
        let setting = Setting::Owner {
            nick: Some(nick),
            was: Some(was),
        };
        self.settle_in_cluster(heir, name, setting);
        true
    }

    /// Ownership changed here while the bus was down (or a change could
    /// not be made): the cluster hears who owns each such room here now,
    /// from the owner it knew.
    pub(super) fn send_due_owners(&mut self) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let due = std::mem::take(&mut cluster.owners_due);
        for name in due {
            let was = self
                .cluster
                .as_ref()
                .and_then(|cluster| cluster.settings.get(&name))
                .and_then(|settings| settings.owner);
            let owner = self
                .rooms
                .get(&name)
                .and_then(|room| room.owner)
                .and_then(|conn| Some((conn, self.sessions.get(&conn)?.nick)));
            if let Some((conn, nick)) = owner
                && was != Some(nick)
            {
                let setting = Setting::Owner {
                    nick: Some(nick),
                    was,
                };
                self.settle_in_cluster(conn, &name, setting);
            }
        }
    }

    /// A user of another node left these rooms (or the cluster): where
    /// they owned one that has members here, this node hands it on too
    /// (the owner's node may have no member left to hand it to; the first
    /// hand-off Redis runs wins).
    pub(super) fn owner_departed<'a>(
        &mut self,
        nick: &Nick,
        rooms: impl IntoIterator<Item = &'a RoomName>,
    ) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let owned: Vec<RoomName> = rooms
            .into_iter()
            .filter(|name| {
                cluster
                    .settings
                    .get(*name)
                    .and_then(|settings| settings.owner)
                    .is_some_and(|owner| owner.folded() == nick.folded())
            })
            .cloned()
            .collect();
        for name in owned {
            // Departures are heard through the bus, so it is up: the
            // cluster decides.
            self.hand_on_in_cluster(&name, *nick);
        }
    }

    /// A user of this node who owns rooms changed their nickname: the
    /// cluster's owner follows (from the old nickname, so it comes after
    /// a creation or hand-off to the old one still on its way).
    pub(super) fn owner_renamed(&mut self, old: &Nick, new: &Nick) {
        if self.cluster.is_none() {
            return;
        }
        let Some(conn) = self.conn_named(new) else {
            return;
        };
        let owned: Vec<RoomName> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.owner == Some(conn))
            .map(|(name, _)| name.clone())
            .collect();
        for name in owned {
            let setting = Setting::Renamed {
                old: *old,
                new: *new,
            };
            self.settle_in_cluster(conn, &name, setting);
        }
    }

    /// A creation or hand-off this node asked for came back naming a
    /// nickname its user no longer holds (renamed while it was on its
    /// way): the user still owns the room here, and the cluster follows.
    fn owner_renamed_meanwhile(&mut self, change: &RoomChange) {
        let written = match &change.setting {
            Setting::Created { owner } => *owner,
            Setting::Owner {
                nick: Some(nick), ..
            } => *nick,
            _ => return,
        };
        let Some(cluster) = &self.cluster else {
            return;
        };
        if cluster.node != change.node {
            return;
        }
        let Some(current) = self.sessions.get(&change.conn).map(|session| session.nick) else {
            return;
        };
        let member = self
            .rooms
            .get(&change.room)
            .is_some_and(|room| room.has_member(change.conn));
        if current == written || !member {
            return;
        }
        if let Some(room) = self.rooms.get_mut(&change.room) {
            room.owner = Some(change.conn);
        }
        let setting = Setting::Renamed {
            old: written,
            new: current,
        };
        self.settle_in_cluster(change.conn, &change.room, setting);
    }

    /// Makes the room here hold the cluster's settings for it: topic,
    /// modes, privacy if it was changed after creation, and the address
    /// bans that still hold, each with its expiry timer.
    pub(super) fn adopt_settings(&mut self, now: Instant, name: &RoomName) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let settings = cluster.settings.get(name).cloned().unwrap_or_default();
        let bans = settings
            .bans
            .iter()
            .filter_map(|(address, shared)| Some((*address, self.live_room_ban(now, shared)?)))
            .collect();
        // The owner, if on this node; one on another node moderates here
        // through orders and settings from theirs. An owner this node
        // chose while the bus was down stays until the cluster hears it.
        let owner = settings
            .owner
            .filter(|_| !cluster.owners_due.contains(name))
            .map(|nick| self.conn_named(&nick));
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        if let Some(owner) = owner {
            room.owner = owner.filter(|conn| room.has_member(*conn));
        }
        room.topic = settings.topic.as_deref().map(Into::into);
        room.modes.key = settings.key.as_deref().map(Into::into);
        room.modes.limit = settings.limit.map(|limit| limit as usize);
        room.modes.moderated = settings.moderated;
        room.modes.no_outside = !settings.outside;
        room.modes.secret = settings.secret;
        room.modes.topic_locked = !settings.topic_open;
        if let Some(private) = settings.private {
            room.private = private;
        }
        room.modes.ban_masks = settings
            .masks
            .keys()
            .map(|mask| mask.as_str().into())
            .collect();
        let before = std::mem::replace(&mut room.bans, bans);
        let timed: Vec<_> = room
            .bans
            .iter()
            .filter_map(|(address, ban)| Some((*address, ban.until?)))
            .collect();
        for (address, ban) in before {
            self.cancel_room_ban_timer(name, address, &ban);
        }
        for (address, until) in timed {
            let timer = Timer::RoomBanExpiry {
                room: name.clone(),
                address,
            };
            self.timers.schedule(until, timer);
        }
    }

    /// Why `session` may not read the lines of a room that has members
    /// only on other nodes, by the cluster's settings for it: as
    /// `closed_to` decides for a room here (a key, `+s`, or a ban keep
    /// its lines to its members and operators).
    pub(super) fn closed_elsewhere(
        &self,
        now: Instant,
        session: &Session,
        name: &RoomName,
    ) -> Option<String> {
        let settings = self.cluster.as_ref()?.settings.get(name)?;
        if session.is_operator() {
            return None;
        }
        if settings.key.is_some() || settings.secret {
            return Some(format!("#{name} is closed"));
        }
        let now_ms = self.wall.unix_ms(now);
        let banned = settings
            .bans
            .get(&session.peer)
            .is_some_and(|ban| ban.holds_at(now_ms))
            || masks_ban(settings.masks.keys().map(String::as_str), session);
        banned.then(|| format!("you are banned from #{name}"))
    }

    /// A shared ban as this node times it, if it still holds.
    fn live_room_ban(&self, now: Instant, shared: &crate::cluster::SharedRoomBan) -> Option<Ban> {
        let now_ms = self.wall.unix_ms(now);
        shared.holds_at(now_ms).then(|| self.room_ban(now, shared))
    }

    /// A shared ban as this node times it.
    fn room_ban(&self, now: Instant, shared: &crate::cluster::SharedRoomBan) -> Ban {
        let now_ms = self.wall.unix_ms(now);
        Ban {
            until: shared
                .until_ms
                .map(|until| now + Duration::from_millis(until.saturating_sub(now_ms))),
            reason: shared.reason.as_deref().map(Into::into),
        }
    }
}
