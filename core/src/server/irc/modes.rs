//! IRC `MODE`: channel modes (`+o +v +b +i +k +l +m +n +s +t`) and user
//! modes (`+i +o +w`), on the model's rooms and sessions.
//!
//! `+i` is the room's privacy (a native private room is `+i`), `+o` on a
//! member makes a channel operator with the owner's rights, and `+b`
//! masks ban beside the address bans of `#ban`. The owner is always an
//! operator.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::cluster::{ModeFlag, RoomMode, Setting};
use crate::error::ErrorCode;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::Priority;
use crate::irc::mask;
use crate::irc::numeric as n;
use crate::irc::render::{self as irc_render, channel};
use crate::reply::Reply;

use crate::server::Server;
use crate::server::room::{ChannelModes, Room};

/// Modes with a parameter one MODE line may change (ISUPPORT `MODES`).
const MODES: usize = 4;

/// One applied change, to announce.
struct Change {
    plus: bool,
    letter: char,
    param: Option<String>,
}

impl Server {
    pub(super) fn irc_mode(&mut self, conn: ConnId, params: &[&str]) {
        let Some(target) = params.first() else {
            return self.need_more_params(conn, "MODE");
        };
        if target.starts_with('#') {
            self.channel_mode(conn, target, &params[1..]);
        } else {
            self.user_mode(conn, target, params.get(1).copied());
        }
    }

    fn channel_mode(&mut self, conn: ConnId, target: &str, args: &[&str]) {
        let Some(name) = target
            .strip_prefix('#')
            .and_then(|bare| RoomName::parse(bare).ok())
            .filter(|name| self.rooms.contains_key(name))
        else {
            return self
                .out
                .error_about(conn, ErrorCode::BadRoom, Some(target), "No such channel");
        };
        let chan = channel(&name);
        let Some(modestring) = args.first() else {
            if !self.may_see(conn, &name) {
                let text = "You're not on that channel";
                return self.numeric(conn, n::ERR_NOTONCHANNEL, &[&chan, text]);
            }
            let (modes, params) = self.mode_summary(&name, conn);
            let mut all = vec![chan.as_str(), modes.as_str()];
            all.extend(params.iter().map(String::as_str));
            return self.numeric(conn, n::RPL_CHANNELMODEIS, &all);
        };
        // A ban list query needs no rights.
        if matches!(*modestring, "b" | "+b") && args.len() == 1 {
            return self.ban_list(conn, &name);
        }
        if self.authority(conn, &name, "change modes").is_none() {
            return;
        }
        let Some(mut draft) = self.rooms.get(&name).map(Draft::of) else {
            return;
        };
        let mut params = args[1..].iter().copied();
        let mut plus = true;
        let mut planned = Vec::new();
        let mut listed = false;
        // As announced (MODES=4): at most four modes with a parameter a
        // line; the rest are ignored, which keeps each answer one line.
        let mut with_parameter = 0;
        for letter in modestring.chars() {
            if matches!(letter, 'b' | 'o' | 'v' | 'k' | 'l') {
                with_parameter += 1;
                if with_parameter > MODES {
                    break;
                }
            }
            match letter {
                '+' => plus = true,
                '-' => plus = false,
                'b' => match params.next() {
                    Some(mask_text) => {
                        if let Some(mode) =
                            self.plan_ban_mask(conn, &name, &mut draft, plus, mask_text)
                        {
                            planned.push(Planned::Room(mode));
                        }
                    }
                    // One listing per MODE line, however many `b`s.
                    None if !listed => {
                        listed = true;
                        self.ban_list(conn, &name);
                    }
                    None => {}
                },
                'o' | 'v' => {
                    let Some(nick) = params.next() else {
                        continue;
                    };
                    if let Some(change) = self.set_member_mode(conn, &name, plus, letter, nick) {
                        planned.push(Planned::Member(change));
                    }
                }
                'k' => match (plus, params.next()) {
                    (true, Some(key)) if valid_key(key) => {
                        draft.modes.key = Some(key.into());
                        planned.push(Planned::Room(RoomMode::Key {
                            key: Some(key.to_owned()),
                        }));
                    }
                    (true, None) => self.need_more_params(conn, "MODE"),
                    (false, _) if draft.modes.key.is_some() => {
                        draft.modes.key = None;
                        planned.push(Planned::Room(RoomMode::Key { key: None }));
                    }
                    _ => {}
                },
                'l' if plus => {
                    let Some(given) = params.next() else {
                        self.need_more_params(conn, "MODE");
                        continue;
                    };
                    let Some(limit) = given.parse::<usize>().ok().filter(|l| *l >= 1) else {
                        let chan = channel(&name);
                        let why = "The limit must be a whole number of at least 1";
                        self.numeric(conn, n::ERR_INVALIDMODEPARAM, &[&chan, "l", given, why]);
                        continue;
                    };
                    // Beyond any room's reach anyway; the cluster keeps
                    // limits as 32-bit numbers.
                    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
                    draft.modes.limit = Some(limit as usize);
                    planned.push(Planned::Room(RoomMode::Limit { limit: Some(limit) }));
                }
                'l' => {
                    if draft.modes.limit.take().is_some() {
                        planned.push(Planned::Room(RoomMode::Limit { limit: None }));
                    }
                }
                'i' | 'm' | 'n' | 's' | 't' => {
                    let flag = match letter {
                        'i' => ModeFlag::Private,
                        'm' => ModeFlag::Moderated,
                        'n' => ModeFlag::NoOutside,
                        's' => ModeFlag::Secret,
                        _ => ModeFlag::TopicLocked,
                    };
                    let mode = RoomMode::Flag { flag, on: plus };
                    if draft.apply(&mode) {
                        planned.push(Planned::Room(mode));
                    }
                }
                other => {
                    let letter = other.to_string();
                    self.out.error_about(
                        conn,
                        ErrorCode::UnknownMode,
                        Some(&letter),
                        "is unknown mode char to me",
                    );
                }
            }
        }
        let room_modes: Vec<RoomMode> = planned
            .iter()
            .filter_map(|planned| match planned {
                Planned::Room(mode) => Some(mode.clone()),
                Planned::Member(_) => None,
            })
            .collect();
        // On a node of a cluster the room's own modes are the cluster's:
        // every node sets and announces them when the bus brings the
        // change back (room_settings.rs); member modes stay here.
        let clustered = !room_modes.is_empty()
            && self.settle_in_cluster(
                conn,
                &name,
                Setting::Modes {
                    modes: room_modes.clone(),
                },
            );
        if clustered {
            planned.retain(|planned| matches!(planned, Planned::Member(_)));
        } else {
            self.apply_room_modes(&name, &room_modes);
        }
        if planned.is_empty() {
            return;
        }
        let changes: Vec<Change> = planned.iter().map(Planned::change).collect();
        let text = describe(&changes);
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        let reply = Reply::ModeChanged {
            room: &name,
            by: me.person(),
            changes: &text,
        };
        if let Some(room) = self.rooms.get_mut(&name) {
            self.out
                .broadcast(&room.audiences(), None, &reply, Priority::Normal);
        }
    }

    /// Room-wide modes set here: on a single server as they are made, on
    /// no node of a cluster (which adopts its settings instead).
    fn apply_room_modes(&mut self, name: &RoomName, modes: &[RoomMode]) {
        for mode in modes {
            let Some(room) = self.rooms.get_mut(name) else {
                return;
            };
            let lifted = match mode {
                RoomMode::Key { key } => {
                    room.modes.key = key.as_deref().map(Into::into);
                    None
                }
                RoomMode::Limit { limit } => {
                    room.modes.limit = limit.map(|limit| limit as usize);
                    None
                }
                RoomMode::Flag { flag, on } => {
                    *flag_in(&mut room.private, &mut room.modes, *flag) = *on;
                    None
                }
                RoomMode::Mask { mask, on: true } => {
                    room.modes.ban_masks.insert(mask.as_str().into());
                    None
                }
                RoomMode::Mask { mask, on: false } => {
                    room.modes.ban_masks.remove(mask.as_str());
                    None
                }
                RoomMode::Unban { address } => room.bans.remove(address).map(|ban| (*address, ban)),
            };
            if let Some((address, ban)) = lifted {
                self.cancel_room_ban_timer(name, address, &ban);
            }
        }
    }

    /// `+modes` and their parameters, as `324` shows them (the key only
    /// to members).
    fn mode_summary(&self, name: &RoomName, conn: ConnId) -> (String, Vec<String>) {
        let Some(room) = self.rooms.get(name) else {
            return (String::from("+"), Vec::new());
        };
        let mut modes = String::from("+");
        let mut params = Vec::new();
        for (on, letter) in [
            (room.private, 'i'),
            (room.modes.moderated, 'm'),
            (room.modes.no_outside, 'n'),
            (room.modes.secret, 's'),
            (room.modes.topic_locked, 't'),
        ] {
            if on {
                modes.push(letter);
            }
        }
        if let Some(key) = &room.modes.key {
            modes.push('k');
            params.push(if room.has_member(conn) {
                key.to_string()
            } else {
                "*".to_owned()
            });
        }
        if let Some(limit) = room.modes.limit {
            modes.push('l');
            params.push(limit.to_string());
        }
        (modes, params)
    }

    /// `367` for every ban (address bans as `*!*@address`), then `368`.
    fn ban_list(&mut self, conn: ConnId, name: &RoomName) {
        let chan = channel(name);
        let Some(room) = self.rooms.get(name) else {
            return;
        };
        let mut masks: Vec<String> = room
            .bans
            .keys()
            .map(|address| format!("*!*@{address}"))
            .collect();
        masks.extend(room.modes.ban_masks.iter().map(|m| m.to_string()));
        for mask_text in masks {
            self.numeric(conn, n::RPL_BANLIST, &[&chan, &mask_text]);
        }
        self.numeric(
            conn,
            n::RPL_ENDOFBANLIST,
            &[&chan, "End of channel ban list"],
        );
    }

    /// `+b MASK` or `-b MASK` checked against the draft of the room's
    /// modes (and made there), or refused.
    fn plan_ban_mask(
        &mut self,
        conn: ConnId,
        name: &RoomName,
        draft: &mut Draft,
        plus: bool,
        text: &str,
    ) -> Option<RoomMode> {
        let limit = self.config.limits.bans_per_room;
        let canonical = mask::normalize_ban_mask(text);
        if canonical.len() > 200 || canonical.contains(' ') {
            let chan = channel(name);
            let why = "Ban masks are at most 200 characters";
            self.numeric(conn, n::ERR_INVALIDMODEPARAM, &[&chan, "b", "*", why]);
            return None;
        }
        if plus {
            if draft.modes.ban_masks.contains(canonical.as_str()) {
                return None;
            }
            if draft.bans.len() + draft.modes.ban_masks.len() >= limit {
                let text =
                    format!("#{name} holds {limit} bans, the most a room may; lift one first");
                self.out.error(conn, ErrorCode::LimitReached, &text);
                return None;
            }
        }
        let mode = if plus || draft.modes.ban_masks.contains(canonical.as_str()) {
            RoomMode::Mask {
                mask: canonical,
                on: plus,
            }
        } else {
            // An address ban of `#ban` is listed as `*!*@address`; that
            // mask lifts it.
            let address = canonical
                .strip_prefix("*!*@")
                .and_then(|host| {
                    host.strip_prefix('0')
                        .filter(|h| h.starts_with(':'))
                        .unwrap_or(host)
                        .parse()
                        .ok()
                })
                .map(crate::address::canonical)?;
            RoomMode::Unban { address }
        };
        draft.apply(&mode).then_some(mode)
    }

    fn set_member_mode(
        &mut self,
        conn: ConnId,
        name: &RoomName,
        plus: bool,
        letter: char,
        target: &str,
    ) -> Option<Change> {
        if letter == 'o' && *name == RoomName::general() {
            // #general's moderators are the server operators; channel
            // operator status there would make kicks from the server
            // anyone's.
            let chan = channel(name);
            let text = "#general's operators are the server operators";
            self.out
                .error_about(conn, ErrorCode::PermissionDenied, Some(&chan), text);
            return None;
        }
        let Some(member) = Nick::parse(target)
            .ok()
            .and_then(|nick| self.user_named(&nick))
        else {
            self.out
                .error_about(conn, ErrorCode::NoSuchNick, Some(target), "No such nick");
            return None;
        };
        let nick = self.sessions.get(&member)?.nick.to_string();
        let room = self.rooms.get_mut(name)?;
        let Some(place) = room.member_mut(member) else {
            let subject = format!("{nick} #{name}");
            self.out.error_about(
                conn,
                ErrorCode::NotInRoom,
                Some(&subject),
                "They aren't on that channel",
            );
            return None;
        };
        let flag = if letter == 'o' {
            &mut place.operator
        } else {
            &mut place.voice
        };
        if *flag == plus {
            return None;
        }
        *flag = plus;
        Some(Change {
            plus,
            letter,
            param: Some(nick),
        })
    }

    fn user_mode(&mut self, conn: ConnId, target: &str, modestring: Option<&str>) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if !target.eq_ignore_ascii_case(session.nick.as_str()) {
            let line = "Can't change mode for other users";
            return self.numeric(conn, n::ERR_USERSDONTMATCH, &[line]);
        }
        let Some(irc) = session.irc.as_mut() else {
            return;
        };
        let Some(modestring) = modestring else {
            let mut modes = String::from("+");
            if irc.invisible {
                modes.push('i');
            }
            if session.role == crate::server::session::Role::Operator {
                modes.push('o');
            }
            if irc.wallops {
                modes.push('w');
            }
            return self.numeric(conn, n::RPL_UMODEIS, &[&modes]);
        };
        let mut plus = true;
        let mut applied = String::new();
        let mut unknown = false;
        let mut sign = None;
        for letter in modestring.chars() {
            let changed = match letter {
                '+' => {
                    plus = true;
                    continue;
                }
                '-' => {
                    plus = false;
                    continue;
                }
                'i' => std::mem::replace(&mut irc.invisible, plus) != plus,
                'w' => std::mem::replace(&mut irc.wallops, plus) != plus,
                // Operators are made by OPER only; anyone may drop it.
                'o' if !plus && session.role == crate::server::session::Role::Operator => {
                    session.role = crate::server::session::Role::User;
                    true
                }
                'o' => false,
                _ => {
                    unknown = true;
                    false
                }
            };
            if changed {
                if sign != Some(plus) {
                    applied.push(if plus { '+' } else { '-' });
                    sign = Some(plus);
                }
                applied.push(letter);
            }
        }
        let nick = session.nick;
        if !applied.is_empty() {
            let line =
                irc_render::person_line(session.person(), "MODE", &[nick.as_str(), &applied]);
            self.out.send_bytes(conn, line.into(), Priority::Normal);
        }
        if unknown {
            self.numeric(conn, n::ERR_UMODEUNKNOWNFLAG, &["Unknown MODE flag"]);
        }
    }
}

/// One change of a MODE line, before it is made.
enum Planned {
    /// A member's `+o`/`+v`, made here at once.
    Member(Change),
    /// A change of the room's own modes.
    Room(RoomMode),
}

impl Planned {
    fn change(&self) -> Change {
        match self {
            Planned::Member(change) => Change {
                plus: change.plus,
                letter: change.letter,
                param: change.param.clone(),
            },
            Planned::Room(mode) => change_of(mode),
        }
    }
}

/// How a room mode change is announced.
fn change_of(mode: &RoomMode) -> Change {
    let (plus, letter, param) = match mode {
        RoomMode::Key { key: Some(key) } => (true, 'k', Some(key.clone())),
        RoomMode::Key { key: None } => (false, 'k', Some("*".to_owned())),
        RoomMode::Limit { limit: Some(limit) } => (true, 'l', Some(limit.to_string())),
        RoomMode::Limit { limit: None } => (false, 'l', None),
        RoomMode::Flag { flag, on } => (*on, flag.letter(), None),
        RoomMode::Mask { mask, on } => (*on, 'b', Some(mask.clone())),
        RoomMode::Unban { address } => (false, 'b', Some(format!("*!*@{address}"))),
    };
    Change {
        plus,
        letter,
        param,
    }
}

/// Room mode changes as MODE announces them (`+kl-b key 10 *!*@host`).
pub(in crate::server) fn describe_room_modes(modes: &[RoomMode]) -> String {
    describe(&modes.iter().map(change_of).collect::<Vec<_>>())
}

/// A room's modes as a MODE line changes them, letter by letter, before
/// anything is made: each letter is checked against the ones before it.
struct Draft {
    private: bool,
    modes: ChannelModes,
    bans: BTreeSet<IpAddr>,
}

impl Draft {
    fn of(room: &Room) -> Self {
        Self {
            private: room.private,
            modes: room.modes.clone(),
            bans: room.bans.keys().copied().collect(),
        }
    }

    /// Makes a flag, mask or address change in the draft; whether it
    /// changed anything.
    fn apply(&mut self, mode: &RoomMode) -> bool {
        match mode {
            RoomMode::Flag { flag, on } => {
                let value = flag_in(&mut self.private, &mut self.modes, *flag);
                std::mem::replace(value, *on) != *on
            }
            RoomMode::Mask { mask, on: true } => self.modes.ban_masks.insert(mask.as_str().into()),
            RoomMode::Mask { mask, on: false } => self.modes.ban_masks.remove(mask.as_str()),
            RoomMode::Unban { address } => self.bans.remove(address),
            RoomMode::Key { .. } | RoomMode::Limit { .. } => true,
        }
    }
}

/// The field a flag sets, in a room or in a draft of its modes.
fn flag_in<'a>(private: &'a mut bool, modes: &'a mut ChannelModes, flag: ModeFlag) -> &'a mut bool {
    match flag {
        ModeFlag::Private => private,
        ModeFlag::Moderated => &mut modes.moderated,
        ModeFlag::NoOutside => &mut modes.no_outside,
        ModeFlag::Secret => &mut modes.secret,
        ModeFlag::TopicLocked => &mut modes.topic_locked,
    }
}

/// `+ov-k alice bob *`.
fn describe(changes: &[Change]) -> String {
    let mut letters = String::new();
    let mut params = Vec::new();
    let mut sign = None;
    for change in changes {
        if sign != Some(change.plus) {
            letters.push(if change.plus { '+' } else { '-' });
            sign = Some(change.plus);
        }
        letters.push(change.letter);
        if let Some(param) = &change.param {
            params.push(param.as_str());
        }
    }
    let mut text = letters;
    for param in params {
        text.push(' ');
        text.push_str(param);
    }
    text
}

/// A key is one word of printable ASCII, at most 23 characters, as
/// IRC servers commonly allow.
fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 23 && key.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}
