//! The IRC command layer: what each IRC command means to the model.
//!
//! IRC lines are parsed by the dialect (`crate::irc::message`); here each
//! command becomes the model's own operations (the same `post`, `join`,
//! `kick` ... the native dialect uses), or, for what only IRC asks
//! (registration, capabilities, WHOIS, ISUPPORT), an answer in numerics
//! rendered by `crate::irc::render`. No rule of the server lives here:
//! permissions, limits and moderation are the model's.

use std::time::Instant;

use bytes::Bytes;

use crate::error::ErrorCode;
use crate::history::RecordKind;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::{CloseReason, Priority};
use crate::irc::caps::{self, Cap};
use crate::irc::message::Message;
use crate::irc::numeric as n;
use crate::irc::render::{self as irc_render, channel};
use crate::render::{IrcTags, Style};
use crate::reply::Reply;
use crate::text;

use super::session::userhost;
use super::{Farewell, Server};

/// Most targets one PRIVMSG, NOTICE, JOIN, PART or KICK may name
/// (ISUPPORT `TARGMAX`).
const MAX_TARGETS: usize = 4;

/// Most lines a CHATHISTORY answer holds (ISUPPORT `CHATHISTORY`).
pub(super) const CHATHISTORY_LIMIT: usize = 100;

/// The version string of VERSION, 002 and 004.
const VERSION: &str = concat!("chatd-", env!("CARGO_PKG_VERSION"));

impl Server {
    /// One line from an IRC client.
    pub(super) fn handle_irc_line(&mut self, now: Instant, conn: ConnId, line: &str) {
        let Ok(msg) = Message::parse(line) else {
            // Nothing IRC can answer: a line with no command.
            return;
        };
        let tags = if line.starts_with('@') {
            line.find(' ').map_or(line.len(), |end| end + 1)
        } else {
            0
        };
        if tags > super::dispatch::IRC_TAG_BYTES || line.len() - tags > self.config.max_line_bytes {
            let text = format!(
                "lines are limited to {} bytes and {} of tags; the line was discarded",
                self.config.max_line_bytes,
                super::dispatch::IRC_TAG_BYTES
            );
            return self.irc_error(conn, ErrorCode::LineTooLong, None, &text);
        }
        let label = msg
            .tag("label")
            .filter(|label| !label.is_empty() && label.len() <= 64)
            .filter(|_| self.has_cap(conn, Cap::LabeledResponse))
            .map(str::to_owned);
        let Some(label) = label else {
            return self.handle_irc_message(now, conn, &msg);
        };
        let mark = self.out.begin_label(conn);
        self.handle_irc_message(now, conn, &msg);
        self.batches += 1;
        let batch = format!("l{}", self.batches);
        let scene = self.out.scene.clone();
        self.out.end_label(mark, |answer| {
            irc_render::labeled(&scene, answer, &label, &batch)
        });
    }

    /// Whether an IRC client enabled a capability.
    fn has_cap(&self, conn: ConnId, cap: Cap) -> bool {
        self.sessions
            .get(&conn)
            .and_then(|s| s.irc.as_ref())
            .is_some_and(|irc| irc.caps.has(cap))
    }

    fn handle_irc_message(&mut self, now: Instant, conn: ConnId, msg: &Message<'_>) {
        let command = msg.command.to_ascii_uppercase();
        let params = &msg.params;
        let registered = self.sessions.get(&conn).is_some_and(|s| s.is_registered());
        match command.as_str() {
            "CAP" => self.irc_cap(conn, params),
            "PASS" => self.irc_pass(conn, params),
            "NICK" => self.irc_nick(conn, params),
            "USER" => self.irc_user(conn, params),
            "PING" if params.first().is_none_or(|p| p.is_empty()) => {
                self.numeric(conn, n::ERR_NOORIGIN, &["No origin specified"]);
            }
            "PING" => {
                let token = params.first().copied().unwrap_or("");
                let server = self.config.irc.server_name.clone();
                let line = irc_render::server_line(&self.out.scene, "PONG", &[&server, token]);
                self.send_text(conn, line);
            }
            "PONG" => {}
            "QUIT" => {
                let message = params.first().and_then(|m| text::trusted(m).ok());
                self.quit(conn, message.as_deref());
            }
            _ if !registered => self.irc_error(
                conn,
                ErrorCode::NotRegistered,
                None,
                "You have not registered",
            ),
            "JOIN" => self.irc_join(now, conn, params),
            "PART" => self.irc_part(conn, params),
            "PRIVMSG" | "NOTICE" | "TAGMSG" => {
                self.out.scene.client_tags = client_tags(msg);
                if command == "NOTICE" {
                    self.out.silent = Some(conn);
                }
                match command.as_str() {
                    "TAGMSG" => self.irc_tagmsg(conn, params),
                    _ => self.irc_privmsg(now, conn, msg, command == "NOTICE"),
                }
                self.out.scene.client_tags = None;
                self.out.silent = None;
            }
            "TOPIC" => self.irc_topic(conn, params),
            "NAMES" => self.irc_names(conn, params),
            "LIST" => self.irc_list(conn, params),
            "INVITE" => self.irc_invite(conn, params),
            "KICK" => self.irc_kick(conn, params),
            "MODE" => self.irc_mode(conn, params),
            "WHO" => self.irc_who(conn, params),
            "WHOIS" => self.irc_whois(conn, params),
            "WHOWAS" => self.irc_whowas(conn, params),
            "ISON" => self.irc_ison(conn, params),
            "USERHOST" => self.irc_userhost(conn, params),
            "AWAY" => self.irc_away(conn, params),
            "OPER" => match params.as_slice() {
                [name, password, ..] => self.oper(now, conn, name, password),
                _ => self.need_more_params(conn, "OPER"),
            },
            "KILL" => self.irc_kill(conn, params),
            "WALLOPS" => self.irc_wallops(conn, params),
            "TIME" => {
                let time = crate::wall_clock::format_utc(self.out.scene.unix_ms) + " UTC";
                let server = self.config.irc.server_name.clone();
                self.numeric(conn, n::RPL_TIME, &[&server, &time]);
            }
            "VERSION" => {
                let server = self.config.irc.server_name.clone();
                self.numeric(
                    conn,
                    n::RPL_VERSION,
                    &[VERSION, &server, "chatd, native and IRC on one model"],
                );
                self.isupport(conn);
            }
            "INFO" => {
                for line in [
                    VERSION,
                    "chatd: one chat server, native and IRC clients in the same rooms",
                    "History is durable; native clients can ask for acknowledgements",
                ] {
                    self.numeric(conn, n::RPL_INFO, &[line]);
                }
                self.numeric(conn, n::RPL_ENDOFINFO, &["End of INFO list"]);
            }
            "MOTD" => self.motd(conn),
            "LUSERS" => self.lusers(conn),
            "CHATHISTORY" => self.irc_chathistory(conn, params),
            _ => {
                let text = "Unknown command";
                self.irc_error(conn, ErrorCode::UnknownCommand, Some(msg.command), text);
            }
        }
    }

    // ----- output helpers -------------------------------------------------

    /// Already-rendered IRC text to one connection.
    fn send_text(&mut self, conn: ConnId, text: String) {
        self.out
            .send_bytes(conn, Bytes::from(text), Priority::Normal);
    }

    /// The name numerics address a client by: its nickname once
    /// registered, `*` before.
    fn me(&self, conn: ConnId) -> String {
        match self.sessions.get(&conn) {
            Some(session) if session.is_registered() => session.nick.to_string(),
            _ => "*".to_owned(),
        }
    }

    fn numeric(&mut self, conn: ConnId, code: &str, params: &[&str]) {
        let me = self.me(conn);
        let line = irc_render::numeric(&self.out.scene, &me, code, params);
        self.send_text(conn, line);
    }

    fn irc_error(&mut self, conn: ConnId, code: ErrorCode, subject: Option<&str>, text: &str) {
        self.out.error_about(conn, code, subject, text);
    }

    fn need_more_params(&mut self, conn: ConnId, command: &str) {
        self.irc_error(
            conn,
            ErrorCode::BadSyntax,
            Some(command),
            "Not enough parameters",
        );
    }

    /// A channel parameter as a room, or 403 and `None`.
    fn channel_param(&mut self, conn: ConnId, param: &str) -> Option<RoomName> {
        let parsed = param
            .strip_prefix('#')
            .and_then(|bare| RoomName::parse(bare).ok());
        if parsed.is_none() {
            let text = "No such channel (rooms are # and up to 32 letters, digits, _ - .)";
            self.irc_error(conn, ErrorCode::BadRoom, Some(param), text);
        }
        parsed
    }

    /// A channel that must exist, or 403 and `None`.
    fn existing_channel(&mut self, conn: ConnId, param: &str) -> Option<RoomName> {
        let room = self.channel_param(conn, param)?;
        if self.rooms.contains_key(&room) {
            return Some(room);
        }
        self.irc_error(conn, ErrorCode::BadRoom, Some(param), "No such channel");
        None
    }

    // ----- registration ---------------------------------------------------

    fn irc_pass(&mut self, conn: ConnId, params: &[&str]) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.is_registered() {
            return self.numeric(conn, n::ERR_ALREADYREGISTERED, &["You may not reregister"]);
        }
        let Some(given) = params.first() else {
            return self.need_more_params(conn, "PASS");
        };
        let expected = self.config.irc.password.as_deref();
        let matched = expected.is_none_or(|expected| constant_time_eq(expected, given));
        if let Some(irc) = session.irc.as_mut() {
            irc.pass_ok = matched;
        }
    }

    fn irc_nick(&mut self, conn: ConnId, params: &[&str]) {
        let Some(wanted) = params.first().filter(|p| !p.is_empty()) else {
            return self.numeric(conn, n::ERR_NONICKNAMEGIVEN, &["No nickname given"]);
        };
        let nick = match Nick::parse_chosen(wanted) {
            Ok(nick) => nick,
            Err(error) => {
                let text = format!("Erroneous nickname: {error}");
                return self.irc_error(conn, ErrorCode::BadNick, Some(wanted), &text);
            }
        };
        let before = self.sessions.get(&conn).map(|s| s.nick);
        self.change_nick(conn, nick);
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.nick != nick || before.is_none() {
            return;
        }
        if let Some(irc) = session.irc.as_mut()
            && !irc.registered
        {
            irc.nick_given = true;
            self.complete_registration(conn);
        }
    }

    fn irc_user(&mut self, conn: ConnId, params: &[&str]) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.is_registered() {
            return self.numeric(conn, n::ERR_ALREADYREGISTERED, &["You may not reregister"]);
        }
        let [user, _, _, realname, ..] = params else {
            return self.need_more_params(conn, "USER");
        };
        // Without identd every user name is "~" and what the client
        // said, kept to what a host mask can safely hold.
        let clean: String = user
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            .take(9)
            .collect();
        let clean = if clean.is_empty() {
            "user".to_owned()
        } else {
            clean
        };
        let realname: String = realname.chars().take(100).collect();
        session.userhost = userhost(&format!("~{clean}"), session.peer);
        let userhost = session.userhost.clone();
        if let Some(irc) = session.irc.as_mut() {
            irc.user = Some((clean.into(), realname.into()));
        }
        if let Some(viewer) = self.out.viewer_mut(conn) {
            viewer.userhost = userhost;
        }
        self.complete_registration(conn);
    }

    fn irc_cap(&mut self, conn: ConnId, params: &[&str]) {
        let me = self.me(conn);
        let Some(sub) = params.first().map(|s| s.to_ascii_uppercase()) else {
            return self.need_more_params(conn, "CAP");
        };
        let Some(irc) = self.sessions.get_mut(&conn).and_then(|s| s.irc.as_mut()) else {
            return;
        };
        let scene = self.out.scene.clone();
        match sub.as_str() {
            "LS" => {
                if !irc.registered {
                    irc.negotiating = true;
                }
                let v302 = params
                    .get(1)
                    .and_then(|v| v.parse::<u32>().ok())
                    .is_some_and(|v| v >= 302);
                let listing = caps::listing(v302, CHATHISTORY_LIMIT).join(" ");
                let line = irc_render::server_line(&scene, "CAP", &[&me, "LS", &listing]);
                self.send_text(conn, line);
            }
            "LIST" => {
                let enabled: Vec<&str> = irc.caps.iter().map(Cap::name).collect();
                let line =
                    irc_render::server_line(&scene, "CAP", &[&me, "LIST", &enabled.join(" ")]);
                self.send_text(conn, line);
            }
            "REQ" => {
                if !irc.registered {
                    irc.negotiating = true;
                }
                let asked = params.get(1).copied().unwrap_or("");
                let changes: Option<Vec<(Cap, bool)>> = asked
                    .split(' ')
                    .filter(|word| !word.is_empty())
                    .map(|word| match word.strip_prefix('-') {
                        Some(name) => Cap::named(name).map(|cap| (cap, false)),
                        None => Cap::named(word).map(|cap| (cap, true)),
                    })
                    .collect();
                let verdict = match changes {
                    Some(changes) if !changes.is_empty() => {
                        for (cap, on) in changes {
                            irc.caps.set(cap, on);
                        }
                        "ACK"
                    }
                    _ => "NAK",
                };
                let line = irc_render::server_line(&scene, "CAP", &[&me, verdict, asked]);
                self.send_text(conn, line);
                if verdict == "ACK" {
                    self.restyle(conn);
                }
            }
            "END" => {
                irc.negotiating = false;
                self.complete_registration(conn);
            }
            _ => {
                let line = irc_render::numeric(
                    &scene,
                    &me,
                    n::ERR_INVALIDCAPCMD,
                    &[&sub, "Invalid CAP command"],
                );
                self.send_text(conn, line);
            }
        }
    }

    /// After capabilities changed: the connection's style (tags) follows,
    /// in its viewer and in every room it is in.
    fn restyle(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let Some(irc) = session.irc.as_ref() else {
            return;
        };
        let caps = irc.caps;
        let style = Style::Irc(IrcTags {
            time: caps.has(Cap::ServerTime),
            msgid: caps.has(Cap::MessageTags),
        });
        for name in &session.rooms {
            if let Some(room) = self.rooms.get_mut(name) {
                room.restyle(conn, style);
            }
        }
        if let Some(viewer) = self.out.viewer_mut(conn) {
            viewer.style = style;
            viewer.caps = caps;
        }
    }

    /// Completes registration once NICK and USER are in and capability
    /// negotiation is over: checks PASS, then sends 001-005, LUSERS and
    /// the MOTD.
    fn complete_registration(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let Some(irc) = session.irc.as_mut() else {
            return;
        };
        if irc.registered || irc.negotiating || !irc.nick_given || irc.user.is_none() {
            return;
        }
        if !irc.pass_ok {
            self.out
                .error_about(conn, ErrorCode::BadCredentials, None, "Password incorrect");
            let line = "ERROR :Closing Link: password required\r\n".to_owned();
            self.send_text(conn, line);
            self.remove_session(conn, Farewell::Silent);
            self.out.close(conn, CloseReason::Quit);
            return;
        }
        irc.registered = true;
        let nick = session.nick.to_string();
        let userhost = session.userhost.clone();
        if let Some(viewer) = self.out.viewer_mut(conn) {
            viewer.registering = false;
        }
        let network = self.config.irc.network.clone();
        let server = self.config.irc.server_name.clone();
        let welcome = format!("Welcome to the {network} IRC network, {nick}!{userhost}");
        self.numeric(conn, n::RPL_WELCOME, &[&welcome]);
        let host = format!("Your host is {server}, running version {VERSION}");
        self.numeric(conn, n::RPL_YOURHOST, &[&host]);
        let created = format!(
            "This server was created {} UTC",
            crate::wall_clock::format_utc(self.wall.anchor_unix_ms())
        );
        self.numeric(conn, n::RPL_CREATED, &[&created]);
        self.numeric(
            conn,
            n::RPL_MYINFO,
            &[&server, VERSION, "iow", "biklmnost", "bklov"],
        );
        self.isupport(conn);
        self.lusers(conn);
        self.motd(conn);
    }

    /// `005`: what this server supports, thirteen tokens a line.
    fn isupport(&mut self, conn: ConnId) {
        let limits = &self.config.limits;
        let tokens = [
            "AWAYLEN=390".to_owned(),
            "CASEMAPPING=ascii".to_owned(),
            format!("CHANLIMIT=#:{}", limits.rooms_joined),
            "CHANMODES=b,k,l,imnst".to_owned(),
            format!("CHANNELLEN={}", 1 + crate::ids::RoomName::MAX_LEN),
            "CHANTYPES=#".to_owned(),
            format!("CHATHISTORY={CHATHISTORY_LIMIT}"),
            "HOSTLEN=64".to_owned(),
            "KICKLEN=390".to_owned(),
            format!("MAXLIST=b:{}", limits.bans_per_room),
            format!("MAXTARGETS={MAX_TARGETS}"),
            "MODES=4".to_owned(),
            "MSGREFTYPES=msgid,timestamp".to_owned(),
            format!("NETWORK={}", self.config.irc.network),
            format!("NICKLEN={}", Nick::MAX_LEN),
            "PREFIX=(ov)@+".to_owned(),
            format!(
                "TARGMAX=JOIN:{MAX_TARGETS},KICK:{MAX_TARGETS},NAMES:1,PART:{MAX_TARGETS},PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS},WHOIS:1"
            ),
            "TOPICLEN=390".to_owned(),
            "USERLEN=10".to_owned(),
        ];
        for chunk in tokens.chunks(13) {
            let mut params: Vec<&str> = chunk.iter().map(String::as_str).collect();
            params.push("are supported by this server");
            self.numeric(conn, n::RPL_ISUPPORT, &params);
        }
    }

    fn lusers(&mut self, conn: ConnId) {
        let users = self.sessions.len();
        let operators = self.sessions.values().filter(|s| s.is_operator()).count();
        let rooms = self.rooms.len();
        let line = format!("There are {users} users and 0 invisible on 1 servers");
        self.numeric(conn, n::RPL_LUSERCLIENT, &[&line]);
        if operators > 0 {
            self.numeric(
                conn,
                n::RPL_LUSEROP,
                &[&operators.to_string(), "operator(s) online"],
            );
        }
        self.numeric(
            conn,
            n::RPL_LUSERCHANNELS,
            &[&rooms.to_string(), "channels formed"],
        );
        let line = format!("I have {users} clients and 0 servers");
        self.numeric(conn, n::RPL_LUSERME, &[&line]);
    }

    fn motd(&mut self, conn: ConnId) {
        let Some(motd) = self.config.irc.motd.clone() else {
            return self.numeric(conn, n::ERR_NOMOTD, &["MOTD File is missing"]);
        };
        let server = self.config.irc.server_name.clone();
        self.numeric(
            conn,
            n::RPL_MOTDSTART,
            &[&format!("- {server} Message of the day - ")],
        );
        for line in motd.lines() {
            self.numeric(conn, n::RPL_MOTD, &[&format!("- {line}")]);
        }
        self.numeric(conn, n::RPL_ENDOFMOTD, &["End of /MOTD command."]);
    }

    // ----- channels -------------------------------------------------------

    fn irc_join(&mut self, now: Instant, conn: ConnId, params: &[&str]) {
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

    fn irc_part(&mut self, conn: ConnId, params: &[&str]) {
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

    fn irc_privmsg(&mut self, now: Instant, conn: ConnId, msg: &Message<'_>, notice: bool) {
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
    fn irc_tagmsg(&mut self, conn: ConnId, params: &[&str]) {
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
            if !me.is_in(&name) {
                let text = "Cannot send to channel";
                return self.irc_error(conn, ErrorCode::Muted, Some(target), text);
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
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        let reply = Reply::TagMsg {
            target,
            from: me.person(),
        };
        self.out.send(to, &reply);
        if echo {
            self.out.send(conn, &reply);
        }
    }

    fn irc_topic(&mut self, conn: ConnId, params: &[&str]) {
        let Some(target) = params.first() else {
            return self.need_more_params(conn, "TOPIC");
        };
        let Some(room) = self.existing_channel(conn, target) else {
            return;
        };
        match params.get(1) {
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

    fn irc_names(&mut self, conn: ConnId, params: &[&str]) {
        let Some(list) = params.first() else {
            return self.numeric(conn, n::RPL_ENDOFNAMES, &["*", "End of /NAMES list"]);
        };
        for target in list.split(',').take(MAX_TARGETS) {
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
    fn may_see(&self, conn: ConnId, name: &RoomName) -> bool {
        let Some(room) = self.rooms.get(name) else {
            return false;
        };
        let operator = self.sessions.get(&conn).is_some_and(|s| s.is_operator());
        !(room.private || room.modes.secret) || room.has_member(conn) || operator
    }

    fn irc_list(&mut self, conn: ConnId, params: &[&str]) {
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

    fn irc_invite(&mut self, conn: ConnId, params: &[&str]) {
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
    fn irc_kick(&mut self, conn: ConnId, params: &[&str]) {
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
    fn too_many_targets(&mut self, conn: ConnId, list: &str) {
        if let Some(first_dropped) = list.split(',').nth(MAX_TARGETS) {
            let text = format!("Too many targets; only the first {MAX_TARGETS} were taken");
            self.numeric(conn, n::ERR_TOOMANYTARGETS, &[first_dropped, &text]);
        }
    }

    /// `442` and true when `conn` is not in `room` (server operators act
    /// from outside, as they do in the native dialect).
    fn not_on(&mut self, conn: ConnId, room: &RoomName, chan: &str) -> bool {
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

    // ----- users ----------------------------------------------------------

    fn irc_who(&mut self, conn: ConnId, params: &[&str]) {
        let mask = params.first().copied().unwrap_or("*");
        let operators_only = params.get(1).is_some_and(|flags| flags.contains('o'));
        let server = self.config.irc.server_name.clone();
        let multi = self.has_cap(conn, Cap::MultiPrefix);
        let mut lines = Vec::new();
        if let Some(room) = mask
            .strip_prefix('#')
            .and_then(|b| RoomName::parse(b).ok())
            .filter(|room| self.may_see(conn, room))
            && let Some(r) = self.rooms.get(&room)
        {
            for entry in super::presence::who_entries(&self.sessions, r) {
                let Some(target) = self.user_named(entry.person.nick) else {
                    continue;
                };
                lines.push((target, Some(room.clone())));
            }
        } else if matches!(mask, "*" | "0") {
            // Everyone visible: those who share a room with the asker,
            // bounded like any listing.
            let limit = self.config.limits.list_page;
            let mut seen = std::collections::BTreeSet::new();
            let rooms = self
                .sessions
                .get(&conn)
                .map(|s| s.rooms.to_vec())
                .unwrap_or_default();
            for name in rooms {
                if let Some(room) = self.rooms.get(&name) {
                    seen.extend(room.members());
                }
            }
            lines.extend(seen.into_iter().take(limit).map(|target| (target, None)));
        } else if let Ok(nick) = Nick::parse(mask)
            && let Some(target) = self.user_named(&nick)
        {
            lines.push((target, None));
        }
        let most = listing_cap(self.config.max_outbound_bytes);
        let lines: Vec<Vec<String>> = lines
            .into_iter()
            .take(most)
            .filter(|(target, _)| !operators_only || self.sessions[target].is_operator())
            .map(|(target, room)| self.who_line(target, room.as_ref(), &server, multi))
            .collect();
        for params in lines {
            let refs: Vec<&str> = params.iter().map(String::as_str).collect();
            self.numeric(conn, n::RPL_WHOREPLY, &refs);
        }
        self.numeric(conn, n::RPL_ENDOFWHO, &[mask, "End of WHO list"]);
    }

    /// The parameters of one `352` line after the recipient's nickname.
    fn who_line(
        &self,
        target: ConnId,
        room: Option<&RoomName>,
        server: &str,
        multi_prefix: bool,
    ) -> Vec<String> {
        let session = &self.sessions[&target];
        let (user, host) = session.userhost.split_once('@').unwrap_or(("", ""));
        let mut flags = String::from(if session.away.is_some() { "G" } else { "H" });
        if session.is_operator() {
            flags.push('*');
        }
        let room_name = room.or(session.rooms.first());
        if let Some(name) = room_name
            && let Some(r) = self.rooms.get(name)
        {
            let voice = r.member(target).is_some_and(|m| m.voice);
            if r.is_moderator(target) {
                flags.push('@');
            }
            if voice && (multi_prefix || !r.is_moderator(target)) {
                flags.push('+');
            }
        }
        let chan = room_name.map_or_else(|| "*".to_owned(), channel);
        vec![
            chan,
            user.to_owned(),
            host.to_owned(),
            server.to_owned(),
            session.nick.to_string(),
            flags,
            format!("0 {}", realname(session)),
        ]
    }

    fn irc_whois(&mut self, conn: ConnId, params: &[&str]) {
        // `WHOIS server nick` names the server first; there is one.
        let Some(target) = params.last() else {
            return self.numeric(conn, n::ERR_NONICKNAMEGIVEN, &["No nickname given"]);
        };
        let Some(found) = Nick::parse(target)
            .ok()
            .and_then(|nick| self.user_named(&nick))
        else {
            self.irc_error(
                conn,
                ErrorCode::NoSuchNick,
                Some(target),
                "No such nick/channel",
            );
            return self.numeric(conn, n::RPL_ENDOFWHOIS, &[target, "End of /WHOIS list"]);
        };
        let server = self.config.irc.server_name.clone();
        let session = &self.sessions[&found];
        let nick = session.nick.to_string();
        let (user, host) = session.userhost.split_once('@').unwrap_or(("", ""));
        let (user, host, real) = (user.to_owned(), host.to_owned(), realname(session));
        let away = session.away.clone();
        let operator = session.is_operator();
        let channels: Vec<String> = session
            .rooms
            .iter()
            .filter(|room| self.may_see(conn, room))
            .map(|room| {
                let moderator = self.rooms.get(room).is_some_and(|r| r.is_moderator(found));
                format!("{}{}", if moderator { "@" } else { "" }, channel(room))
            })
            .collect();
        self.numeric(conn, n::RPL_WHOISUSER, &[&nick, &user, &host, "*", &real]);
        if !channels.is_empty() {
            self.numeric(conn, n::RPL_WHOISCHANNELS, &[&nick, &channels.join(" ")]);
        }
        self.numeric(conn, n::RPL_WHOISSERVER, &[&nick, &server, "chatd"]);
        if let Some(away) = away {
            self.numeric(conn, n::RPL_AWAY, &[&nick, &away]);
        }
        if operator {
            self.numeric(conn, n::RPL_WHOISOPERATOR, &[&nick, "is an IRC operator"]);
        }
        self.numeric(conn, n::RPL_ENDOFWHOIS, &[&nick, "End of /WHOIS list"]);
    }

    fn irc_whowas(&mut self, conn: ConnId, params: &[&str]) {
        let Some(target) = params.first() else {
            return self.numeric(conn, n::ERR_NONICKNAMEGIVEN, &["No nickname given"]);
        };
        let server = self.config.irc.server_name.clone();
        let found: Vec<(String, String, String, String)> = Nick::parse(target)
            .ok()
            .map(|nick| {
                self.departed
                    .iter()
                    .rev()
                    .filter(|gone| gone.nick.folded() == nick.folded())
                    .map(|gone| {
                        let (user, host) = gone.userhost.split_once('@').unwrap_or(("", ""));
                        (
                            gone.nick.to_string(),
                            user.to_owned(),
                            host.to_owned(),
                            gone.realname.to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if found.is_empty() {
            self.numeric(
                conn,
                n::ERR_WASNOSUCHNICK,
                &[target, "There was no such nickname"],
            );
        }
        for (nick, user, host, real) in found {
            self.numeric(conn, n::RPL_WHOWASUSER, &[&nick, &user, &host, "*", &real]);
            self.numeric(conn, n::RPL_WHOISSERVER, &[&nick, &server, "chatd"]);
        }
        self.numeric(conn, n::RPL_ENDOFWHOWAS, &[target, "End of WHOWAS"]);
    }

    fn irc_ison(&mut self, conn: ConnId, params: &[&str]) {
        if params.is_empty() {
            return self.need_more_params(conn, "ISON");
        }
        let online: Vec<String> = params
            .iter()
            .flat_map(|p| p.split(' '))
            .filter_map(|word| Nick::parse(word).ok())
            .filter_map(|nick| self.user_named(&nick))
            .map(|found| self.sessions[&found].nick.to_string())
            .collect();
        self.numeric(conn, n::RPL_ISON, &[&online.join(" ")]);
    }

    fn irc_userhost(&mut self, conn: ConnId, params: &[&str]) {
        if params.is_empty() {
            return self.need_more_params(conn, "USERHOST");
        }
        let replies: Vec<String> = params
            .iter()
            .take(5)
            .filter_map(|word| Nick::parse(word).ok())
            .filter_map(|nick| self.user_named(&nick))
            .map(|found| {
                let session = &self.sessions[&found];
                format!(
                    "{}{}={}{}",
                    session.nick,
                    if session.is_operator() { "*" } else { "" },
                    if session.away.is_some() { '-' } else { '+' },
                    session.userhost
                )
            })
            .collect();
        self.numeric(conn, n::RPL_USERHOST, &[&replies.join(" ")]);
    }

    fn irc_away(&mut self, conn: ConnId, params: &[&str]) {
        let message = params
            .first()
            .filter(|m| !m.is_empty())
            .and_then(|m| text::trusted(m).ok())
            .map(|m| m.chars().take(390).collect::<String>());
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        session.away = message.clone().map(Into::into);
        match &message {
            Some(_) => self.numeric(
                conn,
                n::RPL_NOWAWAY,
                &["You have been marked as being away"],
            ),
            None => self.numeric(
                conn,
                n::RPL_UNAWAY,
                &["You are no longer marked as being away"],
            ),
        }
        // away-notify: peers that asked for it hear of the change.
        let peers = match self.peers(conn) {
            super::presence::Peers::Nobody => Vec::new(),
            super::presence::Peers::Room(audiences) => audiences
                .iter()
                .flat_map(|a| a.to.iter().copied())
                .filter(|&peer| peer != conn)
                .collect(),
            super::presence::Peers::Set(set) => set.into_iter().collect(),
        };
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let params: Vec<&str> = message.as_deref().into_iter().collect();
        let line = Bytes::from(irc_render::person_line(session.person(), "AWAY", &params));
        for peer in peers {
            if self.has_cap(peer, Cap::AwayNotify) {
                self.out.send_bytes(peer, line.clone(), Priority::Normal);
            }
        }
    }

    fn irc_kill(&mut self, conn: ConnId, params: &[&str]) {
        let [target, ..] = params else {
            return self.need_more_params(conn, "KILL");
        };
        if !self.sessions.get(&conn).is_some_and(|s| s.is_operator()) {
            return self.numeric(
                conn,
                n::ERR_NOPRIVILEGES,
                &["Permission Denied- You're not an IRC operator"],
            );
        }
        let Some(victim) = Nick::parse(target)
            .ok()
            .and_then(|nick| self.user_named(&nick))
        else {
            return self.irc_error(conn, ErrorCode::NoSuchNick, Some(target), "No such nick");
        };
        let reason = params
            .get(1)
            .and_then(|r| text::trusted(r).ok())
            .map(|r| r.into_owned());
        self.kill(conn, victim, reason.as_deref());
    }

    fn irc_wallops(&mut self, conn: ConnId, params: &[&str]) {
        let Some(text) = params.first() else {
            return self.need_more_params(conn, "WALLOPS");
        };
        if !self.sessions.get(&conn).is_some_and(|s| s.is_operator()) {
            return self.numeric(
                conn,
                n::ERR_NOPRIVILEGES,
                &["Permission Denied- You're not an IRC operator"],
            );
        }
        let Some(text) = self.trusted(conn, text).map(|t| t.into_owned()) else {
            return;
        };
        let readers: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.is_operator() || s.irc.as_ref().is_some_and(|irc| irc.wallops))
            .map(|(&id, _)| id)
            .collect();
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        let reply = Reply::Wallops {
            from: me.person(),
            text: &text,
        };
        self.out
            .broadcast_to(readers, None, &reply, Priority::Normal);
    }

    // ----- history --------------------------------------------------------

    /// `CHATHISTORY LATEST|BEFORE|AFTER|AROUND #chan REF LIMIT` (and
    /// `BETWEEN #chan REF REF LIMIT`): the room's recent history in a
    /// `chathistory` batch, within what the server keeps in memory.
    fn irc_chathistory(&mut self, conn: ConnId, params: &[&str]) {
        let fail = |server: &mut Self, code: &str, text: &str| {
            let line =
                irc_render::server_line(&server.out.scene, "FAIL", &["CHATHISTORY", code, text]);
            server.send_text(conn, line);
        };
        let [sub, target, rest @ ..] = params else {
            return fail(self, "NEED_MORE_PARAMS", "Missing parameters");
        };
        let sub = sub.to_ascii_uppercase();
        let Some(room) = target
            .strip_prefix('#')
            .and_then(|b| RoomName::parse(b).ok())
            .filter(|room| {
                // Like native `#history`: the rooms you are in (operators:
                // any), so a ban or a key keeps a room's history closed.
                self.sessions
                    .get(&conn)
                    .is_some_and(|s| s.is_in(room) || s.is_operator())
            })
        else {
            return fail(
                self,
                "INVALID_TARGET",
                "No such channel or you may not read it",
            );
        };
        let (refs, limit) = match (sub.as_str(), rest) {
            ("BETWEEN", [a, b, limit, ..]) => (vec![*a, *b], *limit),
            ("LATEST" | "BEFORE" | "AFTER" | "AROUND", [a, limit, ..]) => (vec![*a], *limit),
            _ => {
                return fail(
                    self,
                    "INVALID_PARAMS",
                    "Unknown subcommand or missing parameters",
                );
            }
        };
        // 0 asks for the most the server gives; anything not a number is
        // refused, and more than the most is the most.
        let Ok(limit) = limit.parse::<u64>() else {
            return fail(self, "INVALID_PARAMS", "The limit must be a number");
        };
        let limit = match usize::try_from(limit) {
            Ok(0) | Err(_) => CHATHISTORY_LIMIT,
            Ok(limit) => limit.min(CHATHISTORY_LIMIT),
        };
        let Some(points) = refs
            .iter()
            .map(|r| HistoryRef::parse(r))
            .collect::<Option<Vec<HistoryRef>>>()
        else {
            return fail(
                self,
                "INVALID_PARAMS",
                "References are msgid=N, timestamp=T or *",
            );
        };
        let all: Vec<_> = self
            .histories
            .last(&room, self.config.history_size)
            .cloned()
            .collect();
        let position = |point: &HistoryRef, after: bool| -> usize {
            // Index of the first record after (or at/after) the point.
            all.iter()
                .position(|r| match point {
                    HistoryRef::Id(id) => {
                        if after {
                            r.id.get() > *id
                        } else {
                            r.id.get() >= *id
                        }
                    }
                    HistoryRef::Time(ms) => {
                        if after {
                            r.ts > *ms
                        } else {
                            r.ts >= *ms
                        }
                    }
                    HistoryRef::Latest => false,
                })
                .unwrap_or(all.len())
        };
        let range = match (sub.as_str(), points.as_slice()) {
            ("LATEST", [HistoryRef::Latest]) => all.len().saturating_sub(limit)..all.len(),
            ("LATEST", [point]) => {
                let start = position(point, true);
                all.len().saturating_sub(limit).max(start)..all.len()
            }
            ("BEFORE", [point]) => {
                let end = position(point, false);
                end.saturating_sub(limit)..end
            }
            ("AFTER", [point]) => {
                let start = position(point, true);
                start..(start + limit).min(all.len())
            }
            ("AROUND", [point]) => {
                let middle = position(point, false);
                let start = middle.saturating_sub(limit / 2);
                start..(start + limit).min(all.len())
            }
            ("BETWEEN", [a, b]) => {
                let (x, y) = (position(a, true), position(b, false));
                let (start, end) = (x.min(y), x.max(y));
                start..end.min(start + limit)
            }
            _ => {
                return fail(
                    self,
                    "INVALID_PARAMS",
                    "That reference does not fit the subcommand",
                );
            }
        };
        let batched = self.has_cap(conn, Cap::Batch);
        let mut body = String::new();
        for record in &all[range] {
            let rendered = self.out.render(conn, &Reply::HistoryEntry(record));
            body.push_str(&String::from_utf8_lossy(&rendered));
        }
        if !batched {
            return self.send_text(conn, body);
        }
        self.batches += 1;
        let id = format!("h{}", self.batches);
        let scene = self.out.scene.clone();
        let mut text = irc_render::server_line(
            &scene,
            "BATCH",
            &[&format!("+{id}"), "chathistory", &channel(&room)],
        );
        text.push_str(&irc_render::in_batch(&body, &id));
        text.push_str(&irc_render::server_line(
            &scene,
            "BATCH",
            &[&format!("-{id}")],
        ));
        self.send_text(conn, text);
    }
}

/// Most entries of a LIST or WHO answer: the answer is queued whole, so
/// at about 512 bytes an entry it stays within half the slow-consumer
/// bound.
fn listing_cap(max_outbound_bytes: usize) -> usize {
    (max_outbound_bytes / 2 / 512).max(1)
}

/// A CHATHISTORY reference.
enum HistoryRef {
    /// `msgid=N`.
    Id(u64),
    /// `timestamp=YYYY-MM-DDThh:mm:ss.sssZ`, as Unix milliseconds.
    Time(u64),
    /// `*`: the newest end.
    Latest,
}

impl HistoryRef {
    fn parse(text: &str) -> Option<Self> {
        if text == "*" {
            return Some(Self::Latest);
        }
        if let Some(id) = text.strip_prefix("msgid=") {
            return id.parse().ok().map(Self::Id);
        }
        text.strip_prefix("timestamp=")
            .and_then(crate::wall_clock::parse_iso8601)
            .map(Self::Time)
    }
}

/// The client-only tags (`+name[=value]`) of a message, escaped again for
/// relaying; at most 4094 bytes of them, as IRCv3 message-tags allows a
/// client (more are dropped whole, never cut).
fn client_tags(msg: &Message<'_>) -> Option<std::sync::Arc<str>> {
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

/// A client's real name (the native dialect has none: its nickname).
fn realname(session: &super::session::Session) -> String {
    session
        .irc
        .as_ref()
        .and_then(|irc| irc.user.as_ref())
        .map_or_else(|| session.nick.to_string(), |(_, real)| real.to_string())
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a password was right.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}
