//! IRC channel commands: JOIN, PART, PRIVMSG, NOTICE, TAGMSG, TOPIC,
//! NAMES, LIST, INVITE, KICK.

use std::time::Instant;

use crate::error::ErrorCode;
use crate::history::RecordKind;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::Priority;
use crate::irc::message::Message;
use crate::irc::numeric as n;
use crate::irc::render::{self as irc_render, channel};
use crate::reply::Reply;
use crate::text;

use super::MAX_TARGETS;
use crate::server::Server;

impl Server {
    pub(super) fn irc_join(&mut self, now: Instant, conn: ConnId, params: &[&str]) {
        let Some(list) = params.first() else {
            return self.need_more_params(conn, "JOIN");
        };
        if *list == "0" {
            let rooms = self
                .sessions
                .get(&conn)
                .map(|s| s.rooms.to_vec())
                .unwrap_or_default();
            for room in rooms {
                self.part(conn, &room, None);
            }
            return;
        }
        self.too_many_targets(conn, list);
        let mut keys = params.get(1).map(|k| k.split(',')).into_iter().flatten();
        for target in list.split(',').take(MAX_TARGETS) {
            let key = keys.next().filter(|k| !k.is_empty());
            if let Some(room) = self.channel_param(conn, target) {
                self.join(now, conn, room, key);
            }
            if !self.sessions.contains_key(&conn) {
                return;
            }
        }
    }

    pub(super) fn irc_part(&mut self, conn: ConnId, params: &[&str]) {
        let Some(list) = params.first() else {
            return self.need_more_params(conn, "PART");
        };
        let reason = params
            .get(1)
            .and_then(|r| text::trusted(r).ok())
            .map(|r| r.into_owned());
        for target in list.split(',').take(MAX_TARGETS) {
            let Some(room) = self.existing_channel(conn, target) else {
                continue;
            };
            if self.not_on(conn, &room, target) {
                continue;
            }
            self.part(conn, &room, reason.as_deref());
        }
    }

    pub(super) fn irc_privmsg(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: &Message<'_>,
        notice: bool,
    ) {
        let command = if notice { "NOTICE" } else { "PRIVMSG" };
        let Some(targets) = msg.params.first().filter(|t| !t.is_empty()) else {
            let text = format!("No recipient given ({command})");
            return self.numeric(conn, n::ERR_NORECIPIENT, &[&text]);
        };
        self.too_many_targets(conn, targets);
        let Some(body) = msg.params.get(1).filter(|t| !t.is_empty()) else {
            return self.numeric(conn, n::ERR_NOTEXTTOSEND, &["No text to send"]);
        };
        // CTCP ACTION is an action; other CTCP goes through as text.
        let (kind, body) = match body.strip_prefix("\u{1}ACTION ") {
            Some(action) => (RecordKind::Action, action.trim_end_matches('\u{1}')),
            None => (RecordKind::Msg, *body),
        };
        let Some(body) = self.trusted(conn, body).map(|b| b.into_owned()) else {
            return;
        };
        for target in targets.split(',').take(MAX_TARGETS) {
            if target.starts_with('#') {
                if let Some(room) = self.channel_param(conn, target) {
                    self.post(
                        now,
                        conn,
                        &room,
                        kind,
                        &body,
                        notice && kind == RecordKind::Msg,
                    );
                }
            } else {
                match Nick::parse(target) {
                    Ok(nick) => {
                        let text = match kind {
                            RecordKind::Action => format!("\u{1}ACTION {body}\u{1}"),
                            _ => body.clone(),
                        };
                        self.whisper(now, conn, &nick, &text, notice);
                    }
                    Err(_) => {
                        self.irc_error(
                            conn,
                            ErrorCode::NoSuchNick,
                            Some(target),
                            "No such nick/channel",
                        );
                    }
                }
            }
            if !self.sessions.contains_key(&conn) {
                return;
            }
        }
    }

    /// `TAGMSG target`: tags only, to a channel's members or one user,
    /// under the same membership rule as PRIVMSG; nothing is stored.
    pub(super) fn irc_tagmsg(&mut self, now: Instant, conn: ConnId, params: &[&str]) {
        let Some(target) = params.first().filter(|t| !t.is_empty()) else {
            return self.numeric(conn, n::ERR_NORECIPIENT, &["No recipient given (TAGMSG)"]);
        };
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        let echo = me.echoes();
        if target.starts_with('#') {
            let Some(name) = self.existing_channel(conn, target) else {
                return;
            };
            let Some(me) = self.sessions.get(&conn) else {
                return;
            };
            // Whoever may not speak here may not send tags either.
            let refusal = self.rooms.get(&name).and_then(|room| {
                crate::server::chat::speech_refusal(room, &name, conn, me, now, false)
            });
            if let Some((code, text)) = refusal {
                return self.irc_error(conn, code, Some(target), &text);
            }
            let chan = channel(&name);
            let reply = Reply::TagMsg {
                target: &chan,
                from: me.person(),
            };
            if let Some(room) = self.rooms.get_mut(&name) {
                self.out
                    .broadcast(&room.audiences(), Some(conn), &reply, Priority::Normal);
            }
            if echo {
                self.out.send(conn, &reply);
            }
            return;
        }
        let Some(to) = Nick::parse(target)
            .ok()
            .and_then(|nick| self.user_named(&nick))
        else {
            return self.irc_error(conn, ErrorCode::NoSuchNick, Some(target), "No such nick");
        };
        let (Some(me), Some(them)) = (self.sessions.get(&conn), self.sessions.get(&to)) else {
            return;
        };
        // The recipient's nickname as it spells it, for both the recipient
        // and the sender's echo.
        let target = them.nick.to_string();
        let reply = Reply::TagMsg {
            target: &target,
            from: me.person(),
        };
        self.out.send(to, &reply);
        if echo {
            self.out.send(conn, &reply);
        }
    }

    pub(super) fn irc_topic(&mut self, conn: ConnId, params: &[&str]) {
        let Some(target) = params.first() else {
            return self.need_more_params(conn, "TOPIC");
        };
        let Some(room) = self.existing_channel(conn, target) else {
            return;
        };
        match params.get(1) {
            None if !self.may_see(conn, &room) => {
                self.numeric(
                    conn,
                    n::ERR_NOTONCHANNEL,
                    &[target, "You're not on that channel"],
                );
            }
            None => self.topic(conn, &room, None),
            Some(_) if self.not_on(conn, &room, target) => {}
            // An empty topic clears it.
            Some(&"") => self.topic(conn, &room, Some("")),
            Some(text) => {
                if let Some(text) = self.trusted(conn, text).map(|t| t.into_owned()) {
                    self.topic(conn, &room, Some(&text));
                }
            }
        }
    }

    pub(super) fn irc_names(&mut self, conn: ConnId, params: &[&str]) {
        let Some(list) = params.first() else {
            return self.numeric(conn, n::RPL_ENDOFNAMES, &["*", "End of /NAMES list"]);
        };
        for target in list.split(',').take(1) {
            let room = target
                .strip_prefix('#')
                .and_then(|bare| RoomName::parse(bare).ok())
                .filter(|room| self.may_see(conn, room));
            match room {
                Some(room) => self.names(conn, &room),
                None => self.numeric(conn, n::RPL_ENDOFNAMES, &[target, "End of /NAMES list"]),
            }
        }
    }

    /// Whether `conn` may see a room's members and topic: public and not
    /// secret, or a member, or an operator.
    pub(super) fn may_see(&self, conn: ConnId, name: &RoomName) -> bool {
        let Some(room) = self.rooms.get(name) else {
            return false;
        };
        let operator = self.sessions.get(&conn).is_some_and(|s| s.is_operator());
        !(room.private || room.modes.secret) || room.has_member(conn) || operator
    }

    pub(super) fn irc_list(&mut self, conn: ConnId, params: &[&str]) {
        let wanted: Option<Vec<RoomName>> = params.first().map(|list| {
            list.split(',')
                .filter_map(|t| t.strip_prefix('#').and_then(|b| RoomName::parse(b).ok()))
                .collect()
        });
        let names: Vec<RoomName> = self
            .rooms
            .keys()
            .filter(|name| wanted.as_ref().is_none_or(|w| w.contains(name)))
            .filter(|name| self.may_see(conn, name))
            // A channel is its members: an empty #general (the only room
            // that outlives its members) is not listed unless asked for.
            .filter(|name| wanted.is_some() || self.rooms.get(*name).is_some_and(|r| !r.is_empty()))
            .cloned()
            .collect();
        self.numeric(conn, n::RPL_LISTSTART, &["Channel", "Users  Name"]);
        // The whole answer is queued at once: it must fit well within the
        // slow-consumer bound, so a long LIST is cut (and says so).
        let most = listing_cap(self.config.max_outbound_bytes);
        let more = names.len().saturating_sub(most);
        for name in names.into_iter().take(most) {
            let Some(room) = self.rooms.get(&name) else {
                continue;
            };
            let members = room.len().to_string();
            let topic = room.topic.as_deref().unwrap_or("").to_owned();
            self.numeric(conn, n::RPL_LIST, &[&channel(&name), &members, &topic]);
        }
        if more > 0 {
            let text =
                format!("{more} more rooms not listed; LIST #room,#room asks for rooms by name");
            let me = self.me(conn);
            let line = irc_render::server_line(&self.out.scene, "NOTICE", &[&me, &text]);
            self.send_text(conn, line);
        }
        self.numeric(conn, n::RPL_LISTEND, &["End of /LIST"]);
    }

    pub(super) fn irc_invite(&mut self, conn: ConnId, params: &[&str]) {
        let [target, chan, ..] = params else {
            return self.need_more_params(conn, "INVITE");
        };
        let Ok(nick) = Nick::parse(target) else {
            return self.irc_error(conn, ErrorCode::NoSuchNick, Some(target), "No such nick");
        };
        let Some(room) = self.existing_channel(conn, chan) else {
            return;
        };
        if self.not_on(conn, &room, chan) {
            return;
        }
        if self.rooms.get(&room).is_some_and(|r| r.private) {
            return self.invite(conn, room, &nick);
        }
        // A public room needs no invitation to enter: IRC still passes the
        // invitation on (RFC 2812, 3.2.7), and nothing is recorded.
        let Some(invitee) = self.user_named(&nick) else {
            return self.no_such_nick(conn, &nick);
        };
        if self.rooms.get(&room).is_some_and(|r| r.has_member(invitee)) {
            let nick = self.sessions[&invitee].nick.to_string();
            return self.numeric(
                conn,
                n::ERR_USERONCHANNEL,
                &[&nick, chan, "is already on channel"],
            );
        }
        let (me, them) = (&self.sessions[&conn], &self.sessions[&invitee]);
        let reply_to_me = Reply::InviteSent {
            room: &room,
            nick: &them.nick,
        };
        let reply_to_them = Reply::Invited {
            room: &room,
            by: me.person(),
        };
        self.out.send(conn, &reply_to_me);
        self.out.send(invitee, &reply_to_them);
    }

    /// `KICK #a[,#b] nick[,nick]`: one channel and several nicknames, or
    /// as many channels as nicknames, paired (RFC 2812, 3.2.8).
    pub(super) fn irc_kick(&mut self, conn: ConnId, params: &[&str]) {
        let [chans, targets, ..] = params else {
            return self.need_more_params(conn, "KICK");
        };
        let reason = params
            .get(2)
            .and_then(|r| text::trusted(r).ok())
            .map(|r| r.into_owned());
        let chans: Vec<&str> = chans.split(',').take(MAX_TARGETS).collect();
        let targets: Vec<&str> = targets.split(',').take(MAX_TARGETS).collect();
        let pairs: Vec<(&str, &str)> = match chans.as_slice() {
            [one] => targets.iter().map(|t| (*one, *t)).collect(),
            many if many.len() == targets.len() => many.iter().copied().zip(targets).collect(),
            _ => return self.need_more_params(conn, "KICK"),
        };
        for (chan, target) in pairs {
            let Some(room) = self.existing_channel(conn, chan) else {
                continue;
            };
            if self.not_on(conn, &room, chan) {
                continue;
            }
            match Nick::parse(target) {
                Ok(nick) => self.kick(conn, room, &nick, reason.as_deref()),
                Err(_) => self.irc_error(conn, ErrorCode::NoSuchNick, Some(target), "No such nick"),
            }
            if !self.sessions.contains_key(&conn) {
                return;
            }
        }
    }

    /// `407` for the targets of a list past [`MAX_TARGETS`], which are
    /// not acted on.
    pub(super) fn too_many_targets(&mut self, conn: ConnId, list: &str) {
        if let Some(first_dropped) = list.split(',').nth(MAX_TARGETS) {
            let text = format!("Too many targets; only the first {MAX_TARGETS} were taken");
            self.numeric(conn, n::ERR_TOOMANYTARGETS, &[first_dropped, &text]);
        }
    }

    /// `442` and true when `conn` is not in `room` (server operators act
    /// from outside, as they do in the native dialect).
    pub(super) fn not_on(&mut self, conn: ConnId, room: &RoomName, chan: &str) -> bool {
        let Some(session) = self.sessions.get(&conn) else {
            return true;
        };
        if session.is_in(room) || session.is_operator() {
            return false;
        }
        self.numeric(
            conn,
            n::ERR_NOTONCHANNEL,
            &[chan, "You're not on that channel"],
        );
        true
    }
}

/// Most entries of a LIST or WHO answer: the answer is queued whole, so
/// at about 512 bytes an entry it stays within half the slow-consumer
/// bound.
pub(super) fn listing_cap(max_outbound_bytes: usize) -> usize {
    (max_outbound_bytes / 2 / 512).max(1)
}

/// The client-only tags (`+name[=value]`) of a message, escaped again for
/// relaying; at most 4094 bytes of them, as IRCv3 message-tags allows a
/// client (more are dropped whole, never cut).
pub(super) fn client_tags(msg: &Message<'_>) -> Option<std::sync::Arc<str>> {
    let mut out = String::new();
    for tag in msg.tags.iter().filter(|tag| tag.key.starts_with('+')) {
        let value = crate::irc::message::escape_tag_value(&tag.value);
        let item = if value.is_empty() {
            tag.key.to_owned()
        } else {
            format!("{}={value}", tag.key)
        };
        if out.len() + item.len() + 1 > 4094 {
            break;
        }
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(&item);
    }
    (!out.is_empty()).then(|| out.into())
}
