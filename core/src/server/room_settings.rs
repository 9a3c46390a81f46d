//! A room's settings on a node of a cluster (docs/CLUSTER.md, "Room
//! settings"). A change is checked here, goes to the bus, and is applied
//! when it comes back: on every node, the changer's too, in the one order
//! Redis ran the changes. Each node keeps every room's settings, so a room
//! whose first member here joins it starts with them.

use crate::cluster::{BusFailure, BusRequest, RoomChange, RoomSettings, Setting};
use crate::error::ErrorCode;
use crate::ids::{ConnId, RoomName};
use crate::io::Priority;
use crate::reply::Reply;

use super::Server;
use super::cluster::{ForBus, UNAVAILABLE, speaker};
use super::room::Room;

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
        };
        self.bus(BusRequest::Settle(Box::new(change)));
        true
    }

    /// The answer to this node's change: nothing to do when it was made
    /// (its settings arrive like everyone's); the changer is told when it
    /// could not be.
    pub(super) fn settled(&mut self, change: &RoomChange, result: Result<(), BusFailure>) {
        if result.is_ok() {
            return;
        }
        // Only if the connection is still the user who asked.
        if self
            .sessions
            .get(&change.conn)
            .is_some_and(|session| session.nick == change.by.nick)
        {
            let chan = format!("#{}", change.room);
            self.out.error_about(
                change.conn,
                ErrorCode::Unavailable,
                Some(&chan),
                UNAVAILABLE,
            );
        }
    }

    /// A room's settings after a change, from any node: kept, applied to
    /// the room here if it has members here, and told to them.
    pub(super) fn room_settings_arrived(&mut self, settings: RoomSettings, change: &RoomChange) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let name = &change.room;
        if settings == RoomSettings::default() {
            cluster.settings.remove(name);
        } else {
            cluster.settings.insert(name.clone(), settings.clone());
        }
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        adopt(room, &settings);
        match &change.setting {
            Setting::Topic { topic } => {
                let reply = Reply::TopicChanged {
                    room: name,
                    by: change.by.person(),
                    topic: topic.as_deref().unwrap_or(""),
                };
                self.out
                    .broadcast(&room.audiences(), None, &reply, Priority::Normal);
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
    pub(super) fn all_settings_arrived(&mut self, all: Vec<(RoomName, RoomSettings)>) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.settings = all
            .into_iter()
            .filter(|(_, settings)| *settings != RoomSettings::default())
            .collect();
        for (name, room) in &mut self.rooms {
            let settings = cluster.settings.get(name).cloned().unwrap_or_default();
            adopt(room, &settings);
        }
    }

    /// A room that exists on other nodes, for its first member here: with
    /// the cluster's settings, and no owner (nobody here created it). A
    /// private one keeps the invitations this node was sent for it, and
    /// its history here starts at its first line shown here: what was
    /// said before may belong to an earlier room of its name.
    pub(super) fn room_from_cluster(&self, name: &RoomName) -> Room {
        let private = self.private_elsewhere(name);
        let mut room = Room::new(None, private);
        let Some(cluster) = self.cluster.as_ref() else {
            return room;
        };
        if private {
            room.first_id = u64::MAX;
            room.invites = cluster.invited.get(name).cloned().unwrap_or_default();
        }
        if let Some(settings) = cluster.settings.get(name) {
            adopt(&mut room, settings);
        }
        room
    }

    /// A room was created here, on no other node: what the cluster kept of
    /// an earlier room of its name is reset, as a single server forgets a
    /// room's topic when its last member leaves.
    pub(super) fn room_created_in_cluster(&mut self, conn: ConnId, name: &RoomName) {
        let stale = self
            .cluster
            .as_ref()
            .is_some_and(|cluster| cluster.settings.contains_key(name));
        if stale {
            self.settle_in_cluster(conn, name, Setting::Reset);
        }
    }
}

/// The shared settings, as the room here holds them.
fn adopt(room: &mut Room, settings: &RoomSettings) {
    room.topic = settings.topic.as_deref().map(Into::into);
}
