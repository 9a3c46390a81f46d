//! The IRC command layer: what each IRC command means to the model.
//!
//! IRC lines are parsed by the dialect (`crate::irc::message`); here each
//! command becomes the model's own operations (the same `post`, `join`,
//! `kick` ... the native dialect uses), or, for what only IRC asks
//! (registration, capabilities, WHOIS, ISUPPORT), an answer in numerics
//! rendered by `crate::irc::render`. No rule of the server lives here:
//! permissions, limits and moderation are the model's.
//!
//! `registration.rs`: PASS, NICK, USER, CAP and the welcome burst;
//! `channels.rs`: JOIN, PART, PRIVMSG, NOTICE, TAGMSG, TOPIC, NAMES,
//! LIST, INVITE, KICK; `modes.rs`: MODE; `users.rs`: WHO, WHOIS, WHOWAS,
//! ISON, USERHOST, AWAY, KILL, WALLOPS; `history.rs`: CHATHISTORY.

mod channels;
mod history;
pub(super) mod modes;
mod registration;
mod sasl;
mod users;

use std::time::Instant;

use bytes::Bytes;

use crate::error::ErrorCode;
use crate::ids::{ConnId, RoomName};
use crate::io::Priority;
use crate::irc::caps::Cap;
use crate::irc::message::Message;
use crate::irc::numeric as n;
use crate::irc::render::{self as irc_render};
use crate::text;

use super::Server;

/// Most targets one PRIVMSG, NOTICE, JOIN, PART or KICK may name
/// (ISUPPORT `TARGMAX`).
pub(super) const MAX_TARGETS: usize = 4;

/// Most lines a CHATHISTORY answer holds (ISUPPORT `CHATHISTORY`).
pub(super) const CHATHISTORY_LIMIT: usize = 100;

/// The version string of VERSION, 002 and 004.
pub(super) const VERSION: &str = concat!("chatd-", env!("CARGO_PKG_VERSION"));

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
        if tags > crate::server::dispatch::IRC_TAG_BYTES
            || line.len() - tags > self.config.max_line_bytes
        {
            let text = format!(
                "lines are limited to {} bytes and {} of tags; the line was discarded",
                self.config.max_line_bytes,
                crate::server::dispatch::IRC_TAG_BYTES
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
    pub(super) fn has_cap(&self, conn: ConnId, cap: Cap) -> bool {
        self.sessions
            .get(&conn)
            .and_then(|s| s.irc.as_ref())
            .is_some_and(|irc| irc.caps.has(cap))
    }

    pub(super) fn handle_irc_message(&mut self, now: Instant, conn: ConnId, msg: &Message<'_>) {
        let command = msg.command.to_ascii_uppercase();
        let params = &msg.params;
        let registered = self.sessions.get(&conn).is_some_and(|s| s.is_registered());
        match command.as_str() {
            "CAP" => self.irc_cap(conn, params),
            "PASS" => self.irc_pass(conn, params),
            "NICK" => self.irc_nick(now, conn, params),
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
            "AUTHENTICATE" => self.irc_authenticate(now, conn, params),
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
                self.out.scene.client_tags = channels::client_tags(msg);
                if command != "PRIVMSG" {
                    self.out.silent = Some(conn);
                }
                match command.as_str() {
                    "TAGMSG" => self.irc_tagmsg(now, conn, params),
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
            "CHATHISTORY" => self.irc_chathistory(now, conn, params),
            _ => {
                let text = "Unknown command";
                self.irc_error(conn, ErrorCode::UnknownCommand, Some(msg.command), text);
            }
        }
    }

    // ----- output helpers -------------------------------------------------

    /// Already-rendered IRC text to one connection.
    pub(super) fn send_text(&mut self, conn: ConnId, text: String) {
        self.out
            .send_bytes(conn, Bytes::from(text), Priority::Normal);
    }

    /// The name numerics address a client by: its nickname once
    /// registered, `*` before.
    pub(super) fn me(&self, conn: ConnId) -> String {
        match self.sessions.get(&conn) {
            Some(session) if session.is_registered() => session.nick.to_string(),
            _ => "*".to_owned(),
        }
    }

    pub(super) fn numeric(&mut self, conn: ConnId, code: &str, params: &[&str]) {
        // NOTICE and TAGMSG are never answered with an error (4xx).
        if self.out.silent == Some(conn) && code.starts_with('4') {
            return;
        }
        let me = self.me(conn);
        let line = irc_render::numeric(&self.out.scene, &me, code, params);
        self.send_text(conn, line);
    }

    pub(super) fn irc_error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        subject: Option<&str>,
        text: &str,
    ) {
        self.out.error_about(conn, code, subject, text);
    }

    pub(super) fn need_more_params(&mut self, conn: ConnId, command: &str) {
        self.irc_error(
            conn,
            ErrorCode::BadSyntax,
            Some(command),
            "Not enough parameters",
        );
    }

    /// A channel parameter as a room, or 403 and `None`.
    pub(super) fn channel_param(&mut self, conn: ConnId, param: &str) -> Option<RoomName> {
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
    pub(super) fn existing_channel(&mut self, conn: ConnId, param: &str) -> Option<RoomName> {
        let room = self.channel_param(conn, param)?;
        if self.rooms.contains_key(&room) {
            return Some(room);
        }
        self.irc_error(conn, ErrorCode::BadRoom, Some(param), "No such channel");
        None
    }
}
