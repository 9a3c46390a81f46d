//! IRC `MODE`: channel modes (`+o +v +b +i +k +l +m +n +s +t`) and user
//! modes (`+i +o +w`), on the model's rooms and sessions.
//!
//! `+i` is the room's privacy (a native private room is `+i`), `+o` on a
//! member makes a channel operator with the owner's rights, and `+b`
//! masks ban beside the address bans of `#ban`. The owner is always an
//! operator.

use crate::error::ErrorCode;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::Priority;
use crate::irc::mask;
use crate::irc::numeric as n;
use crate::irc::render::{self as irc_render, channel};
use crate::reply::Reply;

use crate::server::Server;

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
        let mut params = args[1..].iter().copied();
        let mut plus = true;
        let mut changes = Vec::new();
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
                        if let Some(change) = self.set_ban_mask(conn, &name, plus, mask_text) {
                            changes.push(change);
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
                        changes.push(change);
                    }
                }
                'k' => {
                    let key = params.next();
                    let Some(room) = self.rooms.get_mut(&name) else {
                        return;
                    };
                    match (plus, key) {
                        (true, Some(key)) if valid_key(key) => {
                            room.modes.key = Some(key.into());
                            changes.push(Change {
                                plus,
                                letter,
                                param: Some(key.to_owned()),
                            });
                        }
                        (true, None) => self.need_more_params(conn, "MODE"),
                        (false, _) if room.modes.key.is_some() => {
                            room.modes.key = None;
                            changes.push(Change {
                                plus,
                                letter,
                                param: Some("*".to_owned()),
                            });
                        }
                        _ => {}
                    }
                }
                'l' => {
                    let Some(room) = self.rooms.get_mut(&name) else {
                        return;
                    };
                    if plus {
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
                        {
                            room.modes.limit = Some(limit);
                            changes.push(Change {
                                plus,
                                letter,
                                param: Some(limit.to_string()),
                            });
                        }
                    } else if room.modes.limit.take().is_some() {
                        changes.push(Change {
                            plus,
                            letter,
                            param: None,
                        });
                    }
                }
                'i' | 'm' | 'n' | 's' | 't' => {
                    let Some(room) = self.rooms.get_mut(&name) else {
                        return;
                    };
                    let flag = match letter {
                        'i' => &mut room.private,
                        'm' => &mut room.modes.moderated,
                        'n' => &mut room.modes.no_outside,
                        's' => &mut room.modes.secret,
                        _ => &mut room.modes.topic_locked,
                    };
                    if *flag != plus {
                        *flag = plus;
                        changes.push(Change {
                            plus,
                            letter,
                            param: None,
                        });
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
        if changes.is_empty() {
            return;
        }
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

    fn set_ban_mask(
        &mut self,
        conn: ConnId,
        name: &RoomName,
        plus: bool,
        text: &str,
    ) -> Option<Change> {
        let limit = self.config.limits.bans_per_room;
        let canonical = mask::normalize_ban_mask(text);
        if canonical.len() > 200 || canonical.contains(' ') {
            let chan = channel(name);
            let why = "Ban masks are at most 200 characters";
            self.numeric(conn, n::ERR_INVALIDMODEPARAM, &[&chan, "b", "*", why]);
            return None;
        }
        let room = self.rooms.get_mut(name)?;
        if plus {
            if room.modes.ban_masks.contains(canonical.as_str()) {
                return None;
            }
            if room.bans.len() + room.modes.ban_masks.len() >= limit {
                let text =
                    format!("#{name} holds {limit} bans, the most a room may; lift one first");
                self.out.error(conn, ErrorCode::LimitReached, &text);
                return None;
            }
            room.modes.ban_masks.insert(canonical.clone().into());
        } else if !room.modes.ban_masks.remove(canonical.as_str()) {
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
                .map(crate::address::canonical);
            let lifted = address.and_then(|address| Some((address, room.bans.remove(&address)?)));
            let (address, ban) = lifted?;
            self.cancel_room_ban_timer(name, address, &ban);
        }
        Some(Change {
            plus,
            letter: 'b',
            param: Some(canonical),
        })
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
