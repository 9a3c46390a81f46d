//! The users of other nodes, as their nodes announced them: what `#who`,
//! `#rooms`, NAMES and presence notices need to see the whole cluster.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::{NodeName, NodeUser, Speaker};
use crate::ids::{Nick, RoomName};
use crate::reply::Person;

/// One user of another node.
#[derive(Debug, Clone)]
pub(super) struct RemoteUser {
    /// Who, as their node describes them.
    pub(super) who: Speaker,
    /// Their node.
    pub(super) node: NodeName,
    /// Their rooms.
    pub(super) rooms: BTreeSet<RoomName>,
}

impl RemoteUser {
    /// As replies show a person.
    pub(super) fn person(&self) -> Person<'_> {
        self.who.person()
    }
}

/// Every other node's users, by folded nickname, and each room's remote
/// members.
#[derive(Debug, Default)]
pub(super) struct Mirror {
    users: BTreeMap<Nick, RemoteUser>,
    rooms: BTreeMap<RoomName, BTreeSet<Nick>>,
    /// Rooms some node said are private there.
    private: BTreeSet<RoomName>,
}

impl Mirror {
    /// The user holding a nickname on another node, if any.
    pub(super) fn user(&self, nick: &Nick) -> Option<&RemoteUser> {
        self.users.get(&nick.folded())
    }

    /// A user of `node` entered `room` (known or new to the mirror),
    /// which is private there if `private`.
    pub(super) fn join(&mut self, node: &NodeName, who: Speaker, room: RoomName, private: bool) {
        if private {
            self.private.insert(room.clone());
        }
        let key = who.nick.folded();
        if self.users.get(&key).is_some_and(|user| user.node != *node) {
            // The name moved to another node (its old holder's node lost
            // it while cut off): the old entry's rooms go with it.
            self.remove(&who.nick);
        }
        let user = self.users.entry(key).or_insert_with(|| RemoteUser {
            who: who.clone(),
            node: node.clone(),
            rooms: BTreeSet::new(),
        });
        user.who = who;
        user.node = node.clone();
        user.rooms.insert(room.clone());
        self.rooms.entry(room).or_default().insert(key);
    }

    /// A user left a room; `None` if the mirror did not have them there.
    pub(super) fn leave(&mut self, nick: &Nick, room: &RoomName) -> Option<RemoteUser> {
        let key = nick.folded();
        let user = self.users.get_mut(&key)?;
        if !user.rooms.remove(room) {
            return None;
        }
        let user = user.clone();
        self.forget_member(room, &key);
        Some(user)
    }

    /// A user left their node; what the mirror knew of them.
    pub(super) fn remove(&mut self, nick: &Nick) -> Option<RemoteUser> {
        let key = nick.folded();
        let user = self.users.remove(&key)?;
        for room in &user.rooms {
            self.forget_member(room, &key);
        }
        Some(user)
    }

    /// A user changed nickname; what the mirror knew of them before.
    pub(super) fn rename(&mut self, old: &Nick, new: Nick) -> Option<RemoteUser> {
        let mut user = self.remove(old)?;
        let before = user.clone();
        user.who.nick = new;
        let key = new.folded();
        for room in &user.rooms {
            self.rooms.entry(room.clone()).or_default().insert(key);
        }
        self.users.insert(key, user);
        Some(before)
    }

    /// Replaces everything known of `node` with its snapshot.
    pub(super) fn replace_node(&mut self, node: &NodeName, users: Vec<NodeUser>) {
        self.remove_node(node);
        for user in users {
            if user.rooms.is_empty() {
                // Still a user (an IRC client in no channel): `#msg` and
                // nickname checks see them.
                let key = user.who.nick.folded();
                self.users.insert(
                    key,
                    RemoteUser {
                        who: user.who,
                        node: node.clone(),
                        rooms: BTreeSet::new(),
                    },
                );
                continue;
            }
            for room in user.rooms {
                let private = user.private.contains(&room);
                self.join(node, user.who.clone(), room, private);
            }
        }
    }

    /// Every user, in folded-nickname order.
    pub(super) fn users(&self) -> impl Iterator<Item = &RemoteUser> {
        self.users.values()
    }

    /// Whether some node said the room is private there.
    pub(super) fn is_private(&self, room: &RoomName) -> bool {
        self.private.contains(room)
    }

    /// Forgets every user of `node`, returning them in nickname order.
    pub(super) fn remove_node(&mut self, node: &NodeName) -> Vec<RemoteUser> {
        let gone: Vec<Nick> = self
            .users
            .iter()
            .filter(|(_, user)| user.node == *node)
            .map(|(key, _)| *key)
            .collect();
        gone.iter().filter_map(|nick| self.remove(nick)).collect()
    }

    /// The remote members of a room, in folded-nickname order.
    pub(super) fn members(&self, room: &RoomName) -> impl Iterator<Item = &RemoteUser> {
        self.rooms
            .get(room)
            .into_iter()
            .flatten()
            .filter_map(|key| self.users.get(key))
    }

    /// Whether `node` is the one holding the nickname here: news about a
    /// user comes only from their own node.
    pub(super) fn holds(&self, node: &NodeName, nick: &Nick) -> bool {
        self.user(nick).is_some_and(|user| user.node == *node)
    }

    /// How many users of other nodes are known.
    pub(super) fn len(&self) -> usize {
        self.users.len()
    }

    /// How many remote members a room has.
    pub(super) fn count(&self, room: &RoomName) -> usize {
        self.rooms.get(room).map_or(0, BTreeSet::len)
    }

    /// Rooms with remote members, in name order.
    pub(super) fn rooms(&self) -> impl Iterator<Item = &RoomName> {
        self.rooms.keys()
    }

    /// Whether a room has remote members.
    pub(super) fn has_room(&self, room: &RoomName) -> bool {
        self.rooms.contains_key(room)
    }

    fn forget_member(&mut self, room: &RoomName, key: &Nick) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(key);
            if members.is_empty() {
                self.rooms.remove(room);
                self.private.remove(room);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speaker(nick: &str) -> Speaker {
        Speaker {
            nick: Nick::parse(nick).unwrap(),
            user: nick.to_owned(),
            host: "127.0.0.1".parse().unwrap(),
        }
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[test]
    fn joins_leaves_renames_and_node_loss_keep_rooms_and_users_in_step() {
        let (n2, n3) = (
            NodeName::parse("n2").unwrap(),
            NodeName::parse("n3").unwrap(),
        );
        let mut mirror = Mirror::default();
        mirror.join(&n2, speaker("Bob"), room("rust"), false);
        mirror.join(&n2, speaker("Bob"), room("go"), true);
        mirror.join(&n3, speaker("carol"), room("rust"), false);
        assert!(mirror.is_private(&room("go")));
        assert_eq!(mirror.count(&room("rust")), 2);
        assert!(mirror.user(&Nick::parse("BOB").unwrap()).is_some());

        assert!(
            mirror
                .leave(&Nick::parse("bob").unwrap(), &room("go"))
                .is_some()
        );
        assert!(!mirror.has_room(&room("go")));
        assert!(!mirror.is_private(&room("go")), "privacy outlived the room");
        assert!(
            mirror
                .leave(&Nick::parse("bob").unwrap(), &room("go"))
                .is_none()
        );

        mirror.rename(&Nick::parse("bob").unwrap(), Nick::parse("robert").unwrap());
        let names: Vec<_> = mirror
            .members(&room("rust"))
            .map(|u| u.who.nick.to_string())
            .collect();
        assert_eq!(names, ["carol", "robert"]);

        let gone = mirror.remove_node(&n3);
        assert_eq!(gone.len(), 1);
        assert_eq!(mirror.count(&room("rust")), 1);
        assert_eq!(mirror.rooms().count(), 1);
    }
}
