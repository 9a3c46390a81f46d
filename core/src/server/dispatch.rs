//! From bytes to commands: framing, rate limiting, parsing, dispatch.

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::command::Command;
use crate::duration;
use crate::error::ErrorCode;
use crate::history::RecordKind;
use crate::ids::ConnId;
use crate::io::CloseReason;
use crate::line::Frame;
use crate::native::{self, help};
use crate::reply::Reply;
use crate::text;

use super::session::{Held, Liveness};
use crate::timers::Timer;

/// The bytes of tags an IRC line may carry on top of `max_line_bytes`
/// (IRCv3 message-tags: 4094 for a client's tags, with `@` and a space).
pub(super) const IRC_TAG_BYTES: usize = 4096;

/// Most lines an IRC client may have waiting under fakelag before it is
/// disconnected for flooding.
pub(super) const FAKELAG_LINES: usize = 16;
use super::{Farewell, Server};

impl Server {
    pub(super) fn handle_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            // Closed by the core while the driver still had bytes in hand.
            return;
        };
        session.last_active = now;
        session.liveness = Liveness::Active;
        // The dialect is looked up once per read, not once per line.
        let irc = session.irc.is_some();
        // The buffer leaves the session while its lines are handled, so a
        // handler may touch any state (even remove this session).
        let mut buffer = std::mem::take(&mut session.line);
        // IRC lines may carry up to 4094 bytes of client tags before the
        // message itself, which keeps the usual limit (server/irc/mod.rs).
        let max_len = self.config.max_line_bytes + if irc { IRC_TAG_BYTES } else { 0 };
        buffer.feed(bytes, max_len, |frame| {
            self.counters.lines_in += 1;
            self.handle_frame(now, conn, frame, irc);
            if self.sessions.contains_key(&conn) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        });
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.line = buffer;
        }
    }

    fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: Frame<'_>, irc: bool) {
        if irc {
            return self.handle_irc_frame(now, conn, frame);
        }
        if !self.admit_line(now, conn) {
            return;
        }
        self.handle_admitted(now, conn, frame, false);
    }

    /// An IRC client's line under fakelag: past the rate limit its lines
    /// wait (in order) instead of being dropped, and are handled as the
    /// budget allows; only a client that keeps more than
    /// [`FAKELAG_LINES`] waiting is disconnected for flooding.
    fn handle_irc_frame(&mut self, now: Instant, conn: ConnId, frame: Frame<'_>) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let line = match frame {
            Frame::Line(line) => line,
            // Framing errors are answered at once: they cost no work.
            // Framing errors are answered at once, within the rate limit
            // like any line, so a stream of bad bytes ends in a flood
            // disconnect, not in as many answers.
            other => {
                if self.admit_line(now, conn) {
                    self.handle_admitted(now, conn, other, true);
                }
                return;
            }
        };
        if let Some(held) = session.held.as_mut() {
            self.counters.rate_limited += 1;
            if held.lines.len() >= FAKELAG_LINES {
                return self.flood_out(conn);
            }
            held.lines.push_back(line.into());
            return;
        }
        match self.check_rate(now, conn) {
            Ok(()) => self.handle_admitted(now, conn, Frame::Line(line), true),
            Err(wait) => {
                self.counters.rate_limited += 1;
                let at = now + wait.max(Duration::from_millis(1));
                if let Some(session) = self.sessions.get_mut(&conn) {
                    session.held = Some(Box::new(Held {
                        lines: std::iter::once(line.into()).collect(),
                        at,
                    }));
                    self.timers.schedule(at, Timer::Fakelag(conn));
                }
            }
        }
    }

    /// A fakelag timer fired: handle the held lines the budget allows now.
    pub(super) fn release_held(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(held) = self.sessions.get_mut(&conn).and_then(|s| s.held.as_mut()) else {
                return;
            };
            let Some(line) = held.lines.pop_front() else {
                if let Some(session) = self.sessions.get_mut(&conn) {
                    session.held = None;
                }
                return;
            };
            match self.check_rate(now, conn) {
                Ok(()) => self.handle_admitted(now, conn, Frame::Line(&line), true),
                Err(wait) => {
                    let at = now + wait.max(Duration::from_millis(1));
                    if let Some(held) = self.sessions.get_mut(&conn).and_then(|s| s.held.as_mut()) {
                        held.lines.push_front(line);
                        held.at = at;
                        self.timers.schedule(at, Timer::Fakelag(conn));
                    }
                    return;
                }
            }
        }
    }

    fn flood_out(&mut self, conn: ConnId) {
        self.counters.flood_disconnects += 1;
        self.out.error(
            conn,
            ErrorCode::Flooding,
            "you kept sending past the rate limit; disconnecting",
        );
        self.remove_session(conn, Farewell::Quit(Some("flooding")));
        self.out.close(conn, CloseReason::Flooding);
    }

    fn handle_admitted(&mut self, now: Instant, conn: ConnId, frame: Frame<'_>, irc: bool) {
        let (code, text) = match frame {
            Frame::Line(line) => return self.handle_line(now, conn, line, irc),
            Frame::TooLong => (
                ErrorCode::LineTooLong,
                format!(
                    "lines are limited to {} bytes; the line was discarded",
                    self.config.max_line_bytes
                ),
            ),
            Frame::InvalidUtf8 => (
                ErrorCode::BadUtf8,
                "the line was not valid UTF-8 and was discarded".to_owned(),
            ),
            Frame::ControlChar => (
                ErrorCode::ControlChar,
                "control characters other than tab are not allowed; the line was discarded"
                    .to_owned(),
            ),
        };
        self.out.error(conn, code, &text);
    }

    /// Applies the per-connection and per-IP sliding windows. A refused
    /// line gets an error with the retry delay; too many refusals within
    /// one window close the connection for flooding.
    fn admit_line(&mut self, now: Instant, conn: ConnId) -> bool {
        let retry = match self.check_rate(now, conn) {
            Ok(()) => return true,
            Err(retry) => retry,
        };
        self.counters.rate_limited += 1;
        let limits = &self.config.rate_limit;
        let Some(mine) = self.sessions.get_mut(&conn).and_then(|s| s.limits.as_mut()) else {
            return false;
        };
        mine.refused.record(now);
        let strikes = mine.refused.count(now, limits.window);
        let flood_limit = limits.flood_disconnect_after as usize;
        if flood_limit > 0 && strikes >= flood_limit {
            self.flood_out(conn);
            return false;
        }
        let text = format!(
            "slow down: the line was dropped; retry in {}",
            duration::format(retry.max(Duration::from_millis(1)))
        );
        self.out.error(conn, ErrorCode::RateLimited, &text);
        false
    }

    /// The per-connection and per-address sliding windows: `Ok` (and the
    /// line counted) if both have room, else how long until they will.
    fn check_rate(&mut self, now: Instant, conn: ConnId) -> Result<(), Duration> {
        let limits = &self.config.rate_limit;
        if !limits.enabled {
            return Ok(());
        }
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        let group = crate::address::AddressGroup::of(session.peer, self.config.limits.ipv6_prefix);
        let Some(address) = self.addresses.get_mut(&group) else {
            debug_assert!(false, "{conn} has no address entry");
            return Ok(());
        };
        let mine = session.limits.get_or_insert_with(Box::default);
        let own = mine.admitted.check(now, limits.connection_budget());
        let shared = address.admitted.check(now, limits.ip_budget());
        match (own, shared) {
            (Ok(()), Ok(())) => {
                mine.admitted.record(now);
                address.admitted.record(now);
                Ok(())
            }
            (Err(a), Err(b)) => Err(a.max(b)),
            (Err(wait), Ok(())) | (Ok(()), Err(wait)) => Err(wait),
        }
    }

    fn handle_line(&mut self, now: Instant, conn: ConnId, line: &str, irc: bool) {
        if line.trim_matches([' ', '\t']).is_empty() {
            return;
        }
        if irc {
            return self.handle_irc_line(now, conn, line);
        }
        match native::parse(line) {
            Ok(command) => self.dispatch(now, conn, command),
            Err(error) => self.out.error(conn, error.code(), &error.to_string()),
        }
    }

    fn dispatch(&mut self, now: Instant, conn: ConnId, command: Command<'_>) {
        // Native commands act on the client's current room.
        let Some(room) = self
            .sessions
            .get(&conn)
            .and_then(|s| s.current_room().cloned())
        else {
            return;
        };
        // Every text others will see passes text::trusted first: nothing
        // made only of invisible characters, no bidirectional control left
        // open. A departing user's quit message is dropped instead.
        match command {
            Command::Say(text) | Command::Me(text) | Command::Urgent(text) => {
                let kind = match command {
                    Command::Me(_) => RecordKind::Action,
                    Command::Urgent(_) => RecordKind::Urgent,
                    _ => RecordKind::Msg,
                };
                if let Some(text) = self.trusted(conn, text) {
                    self.post(now, conn, &room, kind, &text, false);
                }
            }
            Command::Msg { to, text } => {
                if let Some(text) = self.trusted(conn, text) {
                    self.whisper(now, conn, &to, &text, false);
                }
            }
            Command::Help(topic) => self.help(conn, topic),
            Command::Nick(nick) => self.change_nick_protected(now, conn, nick),
            Command::Join { room: target, key } => self.join(now, conn, target, key),
            Command::Create { room, private } => self.create(conn, room, private),
            Command::Invite(nick) => self.invite(conn, room, &nick),
            Command::Leave => self.leave(conn),
            Command::Rooms(page) => self.list_rooms(conn, page),
            Command::Who(page) => self.who(conn, &room, page),
            Command::Topic(None) => self.topic(conn, &room, None),
            Command::Topic(Some(text)) => {
                if let Some(text) = self.trusted(conn, text) {
                    self.topic(conn, &room, Some(&text));
                }
            }
            Command::History(args) => self.history(now, conn, &room, args),
            Command::Search { terms, room } => self.search(now, conn, terms, room),
            Command::Ack(on) => self.set_ack(conn, on),
            Command::Ids(on) => self.set_ids(conn, on),
            Command::Ping(token) => self.out.send(conn, &Reply::Pong { token }),
            Command::Pong => {}
            Command::Oper { name, password } => self.oper(now, conn, name, password),
            Command::Kick { target, reason } => {
                if let Some(reason) = self.trusted_reason(conn, reason) {
                    self.kick(conn, room, &target, reason.as_deref());
                }
            }
            Command::Ban {
                target,
                duration,
                reason,
            } => {
                if let Some(reason) = self.trusted_reason(conn, reason) {
                    self.ban(now, conn, room, &target, duration, reason.as_deref());
                }
            }
            Command::Unban(address) => self.unban(conn, room, address),
            Command::Mute { target, duration } => self.mute(now, conn, room, &target, duration),
            Command::Unmute(target) => self.unmute(now, conn, room, &target),
            Command::Quit(message) => {
                let message = message.and_then(|m| text::trusted(m).ok());
                self.quit(conn, message.as_deref());
            }
            Command::Register(password) => self.register(now, conn, password),
            Command::Login { name, password } => self.login(now, conn, name, password, false),
            Command::Logout => self.logout(now, conn),
            Command::ChangePassword { old, new } => self.change_password(now, conn, old, new),
            Command::Unregister(password) => self.unregister(now, conn, password),
            Command::Whois(nick) => self.whois(conn, &nick),
            Command::OperatorAccount { name, operator } => {
                self.set_operator_account(conn, &name, operator)
            }
        }
    }

    /// The text as others will see it, or an `invisible-text` error.
    pub(super) fn trusted<'a>(&mut self, conn: ConnId, text: &'a str) -> Option<Cow<'a, str>> {
        match text::trusted(text) {
            Ok(text) => Some(text),
            Err(error) => {
                self.out.error(
                    conn,
                    ErrorCode::InvisibleText,
                    &format!("{error}; nothing was sent"),
                );
                None
            }
        }
    }

    /// An optional reason checked like any text: `Some(None)` when none
    /// was given, `None` when the one given was refused.
    pub(super) fn trusted_reason<'a>(
        &mut self,
        conn: ConnId,
        reason: Option<&'a str>,
    ) -> Option<Option<Cow<'a, str>>> {
        match reason {
            None => Some(None),
            Some(reason) => self.trusted(conn, reason).map(Some),
        }
    }

    fn help(&mut self, conn: ConnId, topic: Option<&str>) {
        let Some(topic) = topic else {
            let lines = help::COMMANDS.iter().map(|spec| Reply::Help {
                usage: spec.usage,
                summary: spec.summary,
            });
            return self.out.send_block(conn, lines);
        };
        match help::find(topic) {
            Some(spec) => self.out.send(
                conn,
                &Reply::Help {
                    usage: spec.usage,
                    summary: spec.summary,
                },
            ),
            None => {
                let text = format!(
                    "#{} is not a command; type #help for the list",
                    topic.trim_start_matches('#')
                );
                self.out.error(conn, ErrorCode::UnknownCommand, &text);
            }
        }
    }

    pub(super) fn quit(&mut self, conn: ConnId, message: Option<&str>) {
        self.out.send(conn, &Reply::Goodbye);
        self.remove_session(conn, Farewell::Quit(message));
        self.out.close(conn, CloseReason::Quit);
    }
}
