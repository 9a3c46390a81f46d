//! A room's settings as the cluster shares them (docs/CLUSTER.md, "Room
//! settings"): the topic, the IRC channel modes, privacy changed after
//! creation, and the owner's address bans.
//!
//! They are kept in Redis (`chatd:settings`, room name to
//! [`RoomSettings`] as JSON) and changed by one atomic step that merges a
//! [`Setting`]'s [`FieldWrite`]s and publishes the room's new settings to
//! every node, the changer's own too. So every node applies the changes in
//! the one order Redis ran them, and a node that starts or comes back
//! reads them all. [`RoomSettings::merged`] is that merge, for any bus
//! that is not Redis (and for tests of the script).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::Nick;

/// A room's shared settings. Every field left at its default is absent
/// from the JSON, so a room whose settings are all defaults has none
/// stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    /// The topic, if one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// IRC `+k`: the key needed to join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// IRC `+l`: the most members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// IRC `+m`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub moderated: bool,
    /// IRC `-n`: non-members may speak (stored inverted, as `+n` is the
    /// default).
    #[serde(default, skip_serializing_if = "is_false")]
    pub outside: bool,
    /// IRC `+s`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub secret: bool,
    /// IRC `-t`: members may set the topic (stored inverted, as `+t` is
    /// the default).
    #[serde(default, skip_serializing_if = "is_false")]
    pub topic_open: bool,
    /// Privacy set after the room was created (IRC `+i`/`-i`); absent,
    /// the room is as it was created (which presence tells).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<bool>,
    /// IRC `+b` masks (each maps to `true`: a map, so one step adds or
    /// removes one mask without rewriting the others).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub masks: BTreeMap<String, bool>,
    /// Address bans set by the room's owner (or a channel operator).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bans: BTreeMap<IpAddr, SharedRoomBan>,
    /// Who owns the room: a nickname, unique in the cluster, on whichever
    /// node its user is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Nick>,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_false(flag: &bool) -> bool {
    !*flag
}

/// An address ban of a room, as the cluster keeps it: its end in Unix
/// milliseconds, as nodes share no monotonic clock (their wall clocks are
/// assumed close; a ban ends within their difference).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedRoomBan {
    /// When it ends (Unix ms); never if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// Why, as given by the moderator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SharedRoomBan {
    /// Whether it still holds at `now_ms`.
    pub fn holds_at(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|until| until > now_ms)
    }
}

/// A room-wide IRC mode that takes no parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeFlag {
    /// `i`: invitation only.
    Private,
    /// `m`: only operators and voiced members speak.
    Moderated,
    /// `n`: only members speak.
    NoOutside,
    /// `s`: hidden from listings of non-members.
    Secret,
    /// `t`: only operators set the topic.
    TopicLocked,
}

impl ModeFlag {
    /// Its IRC mode letter.
    pub fn letter(self) -> char {
        match self {
            ModeFlag::Private => 'i',
            ModeFlag::Moderated => 'm',
            ModeFlag::NoOutside => 'n',
            ModeFlag::Secret => 's',
            ModeFlag::TopicLocked => 't',
        }
    }
}

/// One change of a room's IRC modes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "m", rename_all = "snake_case")]
pub enum RoomMode {
    /// `+k KEY`, or `-k` (`None`).
    Key {
        /// The new key.
        key: Option<String>,
    },
    /// `+l N`, or `-l` (`None`).
    Limit {
        /// The new limit.
        limit: Option<u32>,
    },
    /// `+i`, `+m`, `+n`, `+s`, `+t` or their `-`.
    Flag {
        /// Which.
        flag: ModeFlag,
        /// `+` or `-`.
        on: bool,
    },
    /// `+b MASK` or `-b MASK`.
    Mask {
        /// The mask, normalized.
        mask: String,
        /// `+` or `-`.
        on: bool,
    },
    /// `-b *!*@ADDRESS`: lifts an address ban.
    Unban {
        /// The address.
        address: IpAddr,
    },
}

/// One change to a room's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "s", rename_all = "lowercase")]
pub enum Setting {
    /// The topic is set, or cleared (`None`).
    Topic {
        /// The new topic.
        topic: Option<String>,
    },
    /// IRC mode changes of one `MODE` line, in their order.
    Modes {
        /// The changes.
        modes: Vec<RoomMode>,
    },
    /// An address ban (`#ban`), by its owner or a channel operator.
    Ban {
        /// The banned address.
        address: IpAddr,
        /// Until when, and why.
        ban: SharedRoomBan,
        /// The nickname the moderator named, if they named one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<Nick>,
        /// The length the moderator gave, to tell them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        for_ms: Option<u64>,
    },
    /// An address ban lifted (`#unban`).
    Unban {
        /// The address.
        address: IpAddr,
    },
    /// The room passes to another owner (or to none), if `was` still
    /// owns it: two nodes handing it on at once, only the first does.
    Owner {
        /// The new owner.
        nick: Option<Nick>,
        /// The owner the change was made from.
        was: Option<Nick>,
    },
    /// The owner changed their nickname: the room stays theirs.
    Renamed {
        /// The owner's nickname before.
        old: Nick,
        /// And after.
        new: Nick,
    },
    /// The room was created anew, owned by its creator: nothing of an
    /// earlier room of its name carries over.
    Created {
        /// The creator.
        owner: Nick,
    },
    /// Everything back to the defaults (a room created anew whose creator
    /// is gone by the time the bus can be told).
    Reset,
}

/// One field of [`RoomSettings`]'s JSON a change writes: the field, or
/// one entry of a map field (`key`), set to `value` (`null` removes it;
/// a map left empty is removed too). The Redis script merges changes
/// this way, so two nodes changing different settings, or different
/// entries of one map, at once both keep their change.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldWrite {
    /// The field of the settings object.
    pub field: &'static str,
    /// The entry of a map field, if the write is to one entry.
    pub key: Option<String>,
    /// The new value.
    pub value: Value,
}

impl FieldWrite {
    fn whole(field: &'static str, value: Value) -> Self {
        Self {
            field,
            key: None,
            value,
        }
    }

    fn entry(field: &'static str, key: String, value: Value) -> Self {
        Self {
            field,
            key: Some(key),
            value,
        }
    }
}

/// `true` as itself, `false` as a removed field (the default).
fn flag_value(on: bool) -> Value {
    if on { Value::Bool(true) } else { Value::Null }
}

impl Setting {
    /// The fields this change writes, in order; empty for a reset, which
    /// removes them all.
    pub fn writes(&self) -> Vec<FieldWrite> {
        match self {
            Setting::Topic { topic } => vec![FieldWrite::whole(
                "topic",
                topic.as_deref().map_or(Value::Null, Value::from),
            )],
            Setting::Modes { modes } => modes.iter().map(RoomMode::write).collect(),
            Setting::Ban { address, ban, .. } => vec![FieldWrite::entry(
                "bans",
                address.to_string(),
                serde_json::to_value(ban).unwrap_or(Value::Null),
            )],
            Setting::Unban { address } => vec![RoomMode::Unban { address: *address }.write()],
            Setting::Owner { nick, .. } => {
                vec![FieldWrite::whole("owner", nick_value(nick.as_ref()))]
            }
            Setting::Created { owner } => vec![FieldWrite::whole("owner", nick_value(Some(owner)))],
            Setting::Renamed { new, .. } => vec![FieldWrite::whole("owner", nick_value(Some(new)))],
            Setting::Reset => Vec::new(),
        }
    }

    /// Whether the change starts from the defaults (its writes then apply
    /// to nothing of what was).
    pub fn resets(&self) -> bool {
        matches!(self, Setting::Created { .. } | Setting::Reset)
    }

    /// The field the change is made from, and the value it must still
    /// hold for the change to be made (`null`: absent).
    pub fn condition(&self) -> Option<(&'static str, Value)> {
        match self {
            Setting::Owner { was, .. } => Some(("owner", nick_value(was.as_ref()))),
            Setting::Renamed { old, .. } => Some(("owner", nick_value(Some(old)))),
            _ => None,
        }
    }
}

fn nick_value(nick: Option<&Nick>) -> Value {
    nick.map_or(Value::Null, |nick| Value::from(nick.as_str()))
}

impl RoomMode {
    fn write(&self) -> FieldWrite {
        match self {
            RoomMode::Key { key } => {
                FieldWrite::whole("key", key.as_deref().map_or(Value::Null, Value::from))
            }
            RoomMode::Limit { limit } => {
                FieldWrite::whole("limit", limit.map_or(Value::Null, Value::from))
            }
            RoomMode::Flag { flag, on } => match flag {
                ModeFlag::Private => FieldWrite::whole("private", Value::Bool(*on)),
                ModeFlag::Moderated => FieldWrite::whole("moderated", flag_value(*on)),
                ModeFlag::NoOutside => FieldWrite::whole("outside", flag_value(!on)),
                ModeFlag::Secret => FieldWrite::whole("secret", flag_value(*on)),
                ModeFlag::TopicLocked => FieldWrite::whole("topic_open", flag_value(!on)),
            },
            RoomMode::Mask { mask, on } => {
                FieldWrite::entry("masks", mask.clone(), flag_value(*on))
            }
            RoomMode::Unban { address } => {
                FieldWrite::entry("bans", address.to_string(), Value::Null)
            }
        }
    }
}

impl RoomSettings {
    /// These settings after `setting`, merged as the Redis script merges
    /// it (field by field through the JSON), with address bans that ended
    /// by `now_ms` dropped, as the script drops them.
    /// The caller checks [`RoomSettings::admits`] first, as the script
    /// does.
    #[must_use]
    pub fn merged(&self, setting: &Setting, now_ms: u64) -> RoomSettings {
        let mut object = match serde_json::to_value(self) {
            Ok(Value::Object(object)) if !setting.resets() => object,
            _ => Map::new(),
        };
        for write in setting.writes() {
            merge(&mut object, write);
        }
        let mut settings: RoomSettings =
            serde_json::from_value(Value::Object(object)).unwrap_or_default();
        settings.bans.retain(|_, ban| ban.holds_at(now_ms));
        settings
    }
}

impl RoomSettings {
    /// Whether `setting` may be made on these settings: the field it is
    /// made from still holds what it was made from.
    pub fn admits(&self, setting: &Setting) -> bool {
        let Some((field, expected)) = setting.condition() else {
            return true;
        };
        let object = match serde_json::to_value(self) {
            Ok(Value::Object(object)) => object,
            _ => Map::new(),
        };
        object.get(field).unwrap_or(&Value::Null) == &expected
    }
}

fn merge(object: &mut Map<String, Value>, write: FieldWrite) {
    let Some(key) = write.key else {
        if write.value.is_null() {
            object.remove(write.field);
        } else {
            object.insert(write.field.to_owned(), write.value);
        }
        return;
    };
    // What is not a map (only in damaged data) starts over as one, as
    // the script does.
    let mut entries = match object.remove(write.field) {
        Some(Value::Object(entries)) => entries,
        _ => Map::new(),
    };
    if write.value.is_null() {
        entries.remove(&key);
    } else {
        entries.insert(key, write.value);
    }
    if !entries.is_empty() {
        object.insert(write.field.to_owned(), Value::Object(entries));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modes(modes: Vec<RoomMode>) -> Setting {
        Setting::Modes { modes }
    }

    #[test]
    fn defaults_leave_nothing_behind() {
        let set = RoomSettings::default().merged(
            &modes(vec![
                RoomMode::Flag {
                    flag: ModeFlag::NoOutside,
                    on: false,
                },
                RoomMode::Mask {
                    mask: "*!*@bad".into(),
                    on: true,
                },
                RoomMode::Limit { limit: Some(5) },
            ]),
            0,
        );
        assert!(set.outside);
        assert_eq!(set.limit, Some(5));
        assert_eq!(set.masks.keys().collect::<Vec<_>>(), ["*!*@bad"]);
        let back = set.merged(
            &modes(vec![
                RoomMode::Flag {
                    flag: ModeFlag::NoOutside,
                    on: true,
                },
                RoomMode::Mask {
                    mask: "*!*@bad".into(),
                    on: false,
                },
                RoomMode::Limit { limit: None },
            ]),
            0,
        );
        assert_eq!(back, RoomSettings::default());
        assert_eq!(serde_json::to_string(&back).unwrap(), "{}");
    }

    #[test]
    fn ownership_passes_only_from_the_owner_it_was_made_from() {
        let nick = |name: &str| Nick::parse(name).unwrap();
        let created = RoomSettings {
            topic: Some("old".into()),
            ..RoomSettings::default()
        }
        .merged(
            &Setting::Created {
                owner: nick("alice"),
            },
            0,
        );
        assert_eq!(created.topic, None, "a creation starts from nothing");
        assert_eq!(created.owner, Some(nick("alice")));
        let to_bob = Setting::Owner {
            nick: Some(nick("bob")),
            was: Some(nick("alice")),
        };
        let to_carol = Setting::Owner {
            nick: Some(nick("carol")),
            was: Some(nick("alice")),
        };
        assert!(created.admits(&to_bob) && created.admits(&to_carol));
        let passed = created.merged(&to_bob, 0);
        assert_eq!(passed.owner, Some(nick("bob")));
        assert!(!passed.admits(&to_carol), "the second hand-off is stale");
        let unowned = Setting::Owner {
            nick: Some(nick("dave")),
            was: None,
        };
        assert!(RoomSettings::default().admits(&unowned));
        assert!(!passed.admits(&unowned));
    }

    #[test]
    fn bans_merge_by_address_and_end_on_time() {
        let ban = |until_ms| Setting::Ban {
            address: "10.0.0.1".parse().unwrap(),
            ban: SharedRoomBan {
                until_ms,
                reason: Some("spam".into()),
            },
            target: None,
            for_ms: None,
        };
        let other = Setting::Ban {
            address: "::1".parse().unwrap(),
            ban: SharedRoomBan {
                until_ms: None,
                reason: None,
            },
            target: None,
            for_ms: None,
        };
        let set = RoomSettings::default()
            .merged(&ban(Some(1_000)), 500)
            .merged(&other, 500);
        assert_eq!(set.bans.len(), 2);
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(
            serde_json::from_str::<RoomSettings>(&json).unwrap(),
            set,
            "{json}"
        );
        // Any later change drops the ended one; lifting removes the other.
        let later = set.merged(&Setting::Topic { topic: None }, 1_000);
        assert_eq!(later.bans.len(), 1);
        let lifted = later.merged(
            &Setting::Unban {
                address: "::1".parse().unwrap(),
            },
            1_000,
        );
        assert_eq!(lifted, RoomSettings::default());
    }
}
