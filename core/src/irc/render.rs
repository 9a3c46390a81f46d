//! Rendering the server's events as IRC lines (CRLF-terminated).
//!
//! Events about people are spelled as the commands IRC clients know
//! (`PRIVMSG`, `JOIN`, `KICK` ...) from the person's `nick!user@host`;
//! answers to one client are numerics from the server's name, addressed
//! to the client's nickname (`*` before registration). Events that IRC
//! has no words for (a mute, an acknowledgement mode) become a server
//! `NOTICE`; events IRC has no use for (the native welcome line, `+ ack`)
//! render as nothing.

use bytes::Bytes;

use super::message::write;
use super::numeric::{self as n, for_error, is_fatal};
use crate::duration;
use crate::error::ErrorCode;
use crate::history::{Record, RecordKind};
use crate::ids::{MessageId, RoomName};
use crate::render::{IrcTags, Scene, Viewer};
use crate::reply::{Person, Reply, SaslStep, Scope, host_text};
use crate::wall_clock::format_iso8601;

/// Encodes one event for an IRC client with these tags; `viewer` is the
/// recipient when there is exactly one.
pub(crate) fn encode(
    reply: &Reply<'_>,
    tags: IrcTags,
    viewer: Option<&Viewer>,
    scene: &Scene,
) -> Bytes {
    let mut out = Lines {
        text: String::new(),
        tags,
        scene,
        me: match viewer {
            Some(viewer) if !viewer.registering => viewer.nick.as_str(),
            _ => "*",
        },
        viewer,
    };
    out.reply(reply);
    Bytes::from(out.text)
}

/// An IRC channel name for a room.
pub(crate) fn channel(room: &RoomName) -> String {
    format!("#{room}")
}

struct Lines<'a> {
    text: String,
    tags: IrcTags,
    scene: &'a Scene,
    me: &'a str,
    viewer: Option<&'a Viewer>,
}

impl Lines<'_> {
    /// A line from the server: a numeric or a server command.
    fn server(&mut self, command: &str, params: &[&str]) {
        let source = self.scene.server_name.clone();
        put(&mut self.text, &[], Some(&source), command, params);
        self.text.push_str("\r\n");
    }

    /// A numeric to the viewer: its nickname goes first.
    fn numeric(&mut self, code: &str, params: &[&str]) {
        let mut all = Vec::with_capacity(params.len() + 1);
        all.push(self.me);
        all.extend_from_slice(params);
        self.server(code, &all);
    }

    /// A message from a person, with the tags the recipient asked for.
    fn from(
        &mut self,
        source: &str,
        account: Option<&str>,
        id: Option<MessageId>,
        unix_ms: u64,
        command: &str,
        params: &[&str],
    ) {
        let time = self.tags.time.then(|| format_iso8601(unix_ms));
        let msgid = id.filter(|_| self.tags.msgid).map(|id| id.to_string());
        let mut tags: Vec<(&str, Option<&str>)> = Vec::new();
        if let Some(msgid) = &msgid {
            tags.push(("msgid", Some(msgid)));
        }
        if let Some(time) = &time {
            tags.push(("time", Some(time)));
        }
        if let Some(account) = account.filter(|_| self.tags.account) {
            tags.push(("account", Some(account)));
        }
        let start = self.text.len();
        put(&mut self.text, &tags, Some(source), command, params);
        // Client-only tags ride along for clients that take tags at all
        // (message-tags); they arrive escaped, so they go in verbatim.
        if let Some(client) = self
            .scene
            .client_tags
            .as_deref()
            .filter(|_| self.tags.msgid)
        {
            let line = self.text.split_off(start);
            self.text.push_str(&with_tag(&line, client));
        }
        self.text.push_str("\r\n");
    }

    /// A message from a person, now.
    fn person(&mut self, who: Person<'_>, command: &str, params: &[&str]) {
        let source = mask(who);
        let account = who.account.map(|account| account.as_str());
        self.from(&source, account, None, self.scene.unix_ms, command, params);
    }

    /// A message to a room from a person, with its id.
    fn room_message(
        &mut self,
        id: MessageId,
        room: &RoomName,
        from: Person<'_>,
        command: &str,
        text: &str,
    ) {
        let source = mask(from);
        let unix_ms = self.scene.unix_ms;
        let account = from.account.map(|account| account.as_str());
        let chan = channel(room);
        self.from(&source, account, Some(id), unix_ms, command, &[&chan, text]);
    }

    /// A notice from the server to the viewer (or to a channel).
    fn notice(&mut self, to: &str, text: &str) {
        let to = if to.is_empty() { self.me } else { to };
        let to = to.to_owned();
        self.server("NOTICE", &[&to, text]);
    }

    fn reply(&mut self, reply: &Reply<'_>) {
        match reply {
            // Registration has its own burst (001-005, MOTD); IRC clients
            // are in no room until they JOIN.
            Reply::Welcome { .. } => {}
            Reply::NickChangedYou { me, new } => {
                if self.viewer.is_some_and(|v| !v.registering) && me.nick != *new {
                    self.person(*me, "NICK", &[new.as_str()]);
                }
            }
            Reply::NickChanged { old, new } => self.person(*old, "NICK", &[new.as_str()]),
            Reply::YouJoined { room, me } | Reply::YouCreated { room, me, .. } => {
                self.person(*me, "JOIN", &[&channel(room)]);
            }
            Reply::Joined { room, who } => self.person(*who, "JOIN", &[&channel(room)]),
            Reply::YouLeft { room, reason, me } => {
                let chan = channel(room);
                match reason {
                    Some(reason) => self.person(*me, "PART", &[&chan, reason]),
                    None => self.person(*me, "PART", &[&chan]),
                }
            }
            Reply::Left { room, who, reason } => {
                let chan = channel(room);
                match reason {
                    Some(reason) => self.person(*who, "PART", &[&chan, reason]),
                    None => self.person(*who, "PART", &[&chan]),
                }
            }
            Reply::Quit { who, message } => {
                let message = message.map_or_else(|| "Quit".to_owned(), |m| format!("Quit: {m}"));
                self.person(*who, "QUIT", &[&message]);
            }
            Reply::OwnerChanged { room, nick } => {
                self.server("MODE", &[&channel(room), "+o", nick.as_str()]);
            }
            Reply::Chat {
                id,
                room,
                from,
                text,
                notice,
            } => {
                let command = if *notice { "NOTICE" } else { "PRIVMSG" };
                self.room_message(*id, room, *from, command, text);
            }
            Reply::Action {
                id,
                room,
                from,
                text,
            } => {
                let action = format!("\x01ACTION {text}\x01");
                self.room_message(*id, room, *from, "PRIVMSG", &action);
            }
            Reply::Urgent {
                id,
                room,
                from,
                text,
            } => {
                let urgent = format!("URGENT: {text}");
                self.room_message(*id, room, *from, "PRIVMSG", &urgent);
            }
            Reply::Whisper {
                from, text, notice, ..
            } => {
                let command = if *notice { "NOTICE" } else { "PRIVMSG" };
                let me = self.me.to_owned();
                self.person(*from, command, &[&me, text]);
            }
            // Sent only to clients with echo-message (the server decides).
            Reply::WhisperSent {
                me,
                to,
                text,
                notice,
                ..
            } => {
                let command = if *notice { "NOTICE" } else { "PRIVMSG" };
                self.person(*me, command, &[to.as_str(), text]);
            }
            // Native `#history @NAME` and `#search` only: IRC asks with
            // CHATHISTORY.
            Reply::HistoryHeader { .. }
            | Reply::SearchHeader { .. }
            | Reply::WhisperEntry { .. }
            | Reply::IdsMode(_) => {}
            Reply::HistoryEntry(record) => self.history_entry(record),
            Reply::Topic {
                room,
                topic: Some(topic),
            } => self.numeric(n::RPL_TOPIC, &[&channel(room), topic]),
            Reply::Topic { room, topic: None } => {
                self.numeric(n::RPL_NOTOPIC, &[&channel(room), "No topic is set"]);
            }
            Reply::TopicChanged { room, by, topic } => {
                self.person(*by, "TOPIC", &[&channel(room), topic]);
            }
            Reply::RoomsHeader { .. } => {
                self.numeric(n::RPL_LISTSTART, &["Channel", "Users  Name"])
            }
            Reply::RoomEntry(entry) => {
                let members = entry.members.to_string();
                let topic = entry.topic.unwrap_or("");
                self.numeric(n::RPL_LIST, &[&channel(entry.room), &members, topic]);
            }
            Reply::Page { .. } => {}
            Reply::Who { room, members } => self.names(room, members),
            Reply::Help { usage, summary } => {
                let line = format!("{usage}: {summary}");
                self.notice("", &line);
            }
            Reply::Pong { token } => {
                let server = self.scene.server_name.clone();
                self.server("PONG", &[&server, token.unwrap_or(&server)]);
            }
            Reply::IdlePing { .. } => {
                let server = self.scene.server_name.clone();
                self.text.push_str(&format!("PING :{server}\r\n"));
            }
            Reply::Ack(_) | Reply::AckMode(_) => {}
            Reply::OperUp => self.numeric(n::RPL_YOUREOPER, &["You are now an IRC operator"]),
            Reply::LoggedIn { me, account } => {
                let text = format!("You are now logged in as {account}");
                self.numeric(n::RPL_LOGGEDIN, &[&mask(*me), account.as_str(), &text]);
            }
            Reply::LoggedOut { me, .. } => {
                self.numeric(n::RPL_LOGGEDOUT, &[&mask(*me), "You are now logged out"]);
            }
            Reply::Sasl(step) => self.sasl(*step),
            Reply::Registered { .. }
            | Reply::PasswordChanged
            | Reply::Unregistered { .. }
            | Reply::NickProtected { .. }
            | Reply::NickReclaimed { .. }
            | Reply::Whois { .. }
            | Reply::OperatorAccount { .. }
            | Reply::OperDown => {
                let text = native_text(reply);
                self.notice("", text.trim_start_matches("+ "));
            }
            Reply::InviteSent { room, nick } => {
                self.numeric(n::RPL_INVITING, &[nick.as_str(), &channel(room)]);
            }
            Reply::Invited { room, by } => {
                let me = self.me.to_owned();
                self.person(*by, "INVITE", &[&me, &channel(room)]);
            }
            Reply::Kicked {
                scope: Scope::Room(room),
                who,
                by,
                reason,
            } => {
                let reason = reason.unwrap_or(by.nick.as_str());
                self.person(*by, "KICK", &[&channel(room), who.nick.as_str(), reason]);
            }
            Reply::Kicked {
                scope: Scope::Server,
                who,
                by,
                reason,
            } => {
                let message = match reason {
                    Some(reason) => format!("Killed by {}: {reason}", by.nick),
                    None => format!("Killed by {}", by.nick),
                };
                // The one put out reads it as its connection's end.
                if self.viewer.is_some_and(|viewer| viewer.nick == *who.nick) {
                    let line = format!("ERROR :Closing Link: {} ({message})\r\n", who.nick);
                    self.text.push_str(&line);
                } else {
                    self.person(*who, "QUIT", &[&message]);
                }
            }
            Reply::BannedFromRoom {
                room,
                nick,
                by,
                duration,
                reason,
            } => {
                let mut why = String::from("Banned");
                if let Some(duration) = duration {
                    why.push_str(&format!(" for {}", duration::format(*duration)));
                }
                if let Some(reason) = reason {
                    why.push_str(&format!(": {reason}"));
                }
                let source = by.to_string();
                self.from(
                    &source,
                    None,
                    None,
                    self.scene.unix_ms,
                    "KICK",
                    &[&channel(room), nick.as_str(), &why],
                );
            }
            Reply::BanSet { .. } | Reply::Unbanned { .. } => {
                let text = native_text(reply);
                self.notice("", &text);
            }
            Reply::Muted { room, .. } | Reply::Unmuted { room, .. } => {
                let text = native_text(reply);
                self.notice(&channel(room), &text);
            }
            Reply::TagMsg { target, from } => {
                if self.tags.msgid {
                    self.person(*from, "TAGMSG", &[target]);
                }
            }
            Reply::ModeChanged { room, by, changes } => {
                let mut params = vec![channel(room)];
                params.extend(changes.split(' ').map(str::to_owned));
                let refs: Vec<&str> = params.iter().map(String::as_str).collect();
                self.person(*by, "MODE", &refs);
            }
            Reply::Wallops { from, text } => self.person(*from, "WALLOPS", &[text]),
            Reply::Goodbye => {
                let line = format!("Closing Link: {} (Quit)", self.me);
                self.text.push_str(&format!("ERROR :{line}\r\n"));
            }
            Reply::ShuttingDown { reason } => {
                self.text
                    .push_str(&format!("ERROR :Server shutting down: {reason}\r\n"));
            }
            Reply::Error {
                code,
                subject,
                text,
            } => self.error(*code, *subject, text),
        }
    }

    fn error(&mut self, code: ErrorCode, subject: Option<&str>, text: &str) {
        if is_fatal(code) || (code == ErrorCode::Banned && subject.is_none()) {
            let line = format!("ERROR :Closing Link: {} ({text})\r\n", self.me);
            return self.text.push_str(&line);
        }
        match for_error(code) {
            Some(numeric) => {
                let mut params: Vec<&str> = subject
                    .map(|subject| subject.split(' ').collect())
                    .unwrap_or_default();
                params.push(text);
                self.numeric(numeric, &params);
            }
            None => self.notice("", &format!("{code}: {text}")),
        }
    }

    /// `353` lines of at most about 400 bytes, then `366`.
    fn names(&mut self, room: &RoomName, members: &[crate::reply::WhoEntry<'_>]) {
        let chan = channel(room);
        let caps = self.viewer.map(|v| v.caps);
        let multi = caps.is_some_and(|c| c.has(super::caps::Cap::MultiPrefix));
        let userhost = caps.is_some_and(|c| c.has(super::caps::Cap::UserhostInNames));
        let kind = "=";
        let mut line = String::new();
        for member in members {
            let mut entry = prefixes(member, multi);
            entry.push_str(member.person.nick.as_str());
            if userhost {
                entry = format!(
                    "{entry}!{}@{}",
                    member.person.user,
                    host_text(member.person.host)
                );
            }
            if !line.is_empty() && line.len() + entry.len() > 400 {
                let full = std::mem::take(&mut line);
                self.numeric(n::RPL_NAMREPLY, &[kind, &chan, &full]);
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&entry);
        }
        if !line.is_empty() {
            self.numeric(n::RPL_NAMREPLY, &[kind, &chan, &line]);
        }
        self.numeric(n::RPL_ENDOFNAMES, &[&chan, "End of /NAMES list"]);
    }

    /// One step of a SASL exchange (IRCv3 sasl-3.1).
    fn sasl(&mut self, step: SaslStep) {
        match step {
            SaslStep::Continue => self.text.push_str("AUTHENTICATE +\r\n"),
            SaslStep::Succeeded => {
                self.numeric(n::RPL_SASLSUCCESS, &["SASL authentication successful"]);
            }
            SaslStep::Failed => self.numeric(n::ERR_SASLFAIL, &["SASL authentication failed"]),
            SaslStep::TooLong => self.numeric(n::ERR_SASLTOOLONG, &["SASL message too long"]),
            SaslStep::Aborted => self.numeric(n::ERR_SASLABORTED, &["SASL authentication aborted"]),
            SaslStep::Already => self.numeric(
                n::ERR_SASLALREADY,
                &["You have already authenticated using SASL"],
            ),
            SaslStep::Mechanisms => {
                self.numeric(
                    n::RPL_SASLMECHS,
                    &["PLAIN", "are available SASL mechanisms"],
                );
            }
        }
    }

    fn history_entry(&mut self, record: &Record) {
        let chan = channel(&record.room);
        // Records keep the nickname, not the user and host it had.
        let source = record.from.to_string();
        let text = match record.kind {
            RecordKind::Action => format!("\x01ACTION {}\x01", record.text),
            RecordKind::Urgent => format!("URGENT: {}", record.text),
            RecordKind::Msg | RecordKind::Whisper | RecordKind::Reserve => record.text.clone(),
        };
        let saved = self.tags;
        // History lines carry their time whenever the client takes tags
        // at all: without it they would read as said now.
        self.tags.time = self.tags.time || self.tags.msgid;
        self.from(
            &source,
            None,
            Some(record.id),
            record.ts,
            "PRIVMSG",
            &[&chan, &text],
        );
        self.tags = saved;
    }
}

/// `@` for the owner and operators, `+` for voice; all that apply with
/// multi-prefix, else the highest.
pub(crate) fn prefixes(member: &crate::reply::WhoEntry<'_>, multi: bool) -> String {
    let mut out = String::new();
    if member.owner || member.operator {
        out.push('@');
    }
    if member.voice && (multi || out.is_empty()) {
        out.push('+');
    }
    out
}

/// `nick!user@host`.
pub(crate) fn mask(who: Person<'_>) -> String {
    who.mask()
}

/// The native dialect's sentence for an event IRC has no words for,
/// without its line ending.
fn native_text(reply: &Reply<'_>) -> String {
    let line = crate::native::encode(reply);
    String::from_utf8_lossy(&line)
        .trim_end_matches('\n')
        .trim_start_matches("* ")
        .to_owned()
}

/// One numeric from the server to `me` (already CRLF-terminated):
/// for the IRC command layer's answers that have no dialect-neutral
/// event (registration, WHOIS, ISUPPORT ...).
pub(crate) fn numeric(scene: &Scene, me: &str, code: &str, params: &[&str]) -> String {
    let mut all = Vec::with_capacity(params.len() + 1);
    all.push(me);
    all.extend_from_slice(params);
    server_line(scene, code, &all)
}

/// One line from the server (already CRLF-terminated).
pub(crate) fn server_line(scene: &Scene, command: &str, params: &[&str]) -> String {
    let mut text = String::new();
    put(&mut text, &[], Some(&scene.server_name), command, params);
    text.push_str("\r\n");
    text
}

/// One line from a person, with no tags (already CRLF-terminated).
pub(crate) fn person_line(who: Person<'_>, command: &str, params: &[&str]) -> String {
    let mut text = String::new();
    put(&mut text, &[], Some(&mask(who)), command, params);
    text.push_str("\r\n");
    text
}

/// Puts every line of `lines` into the batch `id` (`@batch=id` first
/// among its tags).
pub(crate) fn in_batch(lines: &str, id: &str) -> String {
    let tag = format!("batch={id}");
    lines
        .split_inclusive("\r\n")
        .map(|line| {
            // A line of an inner batch carries that batch's tag only; the
            // inner batch's own BATCH lines carry the outer tag.
            if line.starts_with("@batch=") {
                line.to_owned()
            } else {
                with_tag(line, &tag)
            }
        })
        .collect()
}

/// The answer to a command that carried `@label=` (IRCv3
/// `labeled-response`): `ACK` when there is none, the one line with the
/// label, or a `labeled-response` batch around several lines.
pub(crate) fn labeled(scene: &Scene, answer: &str, label: &str, batch: &str) -> String {
    let label = super::message::escape_tag_value(label);
    let lines = answer.split_inclusive("\r\n").count();
    match lines {
        0 => {
            let mut text = format!("@label={label} ");
            text.push_str(&server_line(scene, "ACK", &[]));
            text
        }
        1 => with_tag(answer, &format!("label={label}")),
        _ => {
            let start = server_line(scene, "BATCH", &[&format!("+{batch}"), "labeled-response"]);
            let mut text = with_tag(&start, &format!("label={label}"));
            text.push_str(&in_batch(answer, batch));
            text.push_str(&server_line(scene, "BATCH", &[&format!("-{batch}")]));
            text
        }
    }
}

/// One line with one more tag, first among its tags.
fn with_tag(line: &str, tag: &str) -> String {
    match line.strip_prefix('@') {
        Some(rest) => format!("@{tag};{rest}"),
        None => format!("@{tag} {line}"),
    }
}

/// Writes one message (without CRLF), first making every parameter but
/// the last fit where it goes: a middle parameter may not be empty, hold
/// a space or start with `:`. Parameters echo what clients sent (an
/// empty item of `JOIN ,#a`, say), so this is where bad ones are caught.
/// The last parameter of a numeric or of a command that carries text
/// (`PRIVMSG`, `TOPIC`, `KICK` ...) always comes after `:`, as most
/// servers write it, so a one-word message looks like a longer one.
fn put(
    out: &mut String,
    tags: &[(&str, Option<&str>)],
    source: Option<&str>,
    command: &str,
    params: &[&str],
) {
    let Some((last, middle)) = params.split_last() else {
        return write(out, tags, source, command, params);
    };
    let mut fixed: Vec<std::borrow::Cow<'_, str>> =
        middle.iter().map(|p| middle_param(p)).collect();
    let text = match command {
        "QUIT" | "AWAY" | "WALLOPS" => true,
        "PRIVMSG" | "NOTICE" | "TOPIC" | "KICK" | "PART" => params.len() >= 2,
        numeric => numeric.bytes().all(|b| b.is_ascii_digit()),
    };
    if !text {
        fixed.push(std::borrow::Cow::Borrowed(last));
    }
    let refs: Vec<&str> = fixed.iter().map(|p| p.as_ref()).collect();
    write(out, tags, source, command, &refs);
    if text {
        out.push_str(" :");
        out.push_str(last);
    }
}

/// A parameter made fit for a middle position: `*` for an empty one,
/// spaces replaced, a leading `:` escaped by a `*`.
fn middle_param(param: &str) -> std::borrow::Cow<'_, str> {
    if param.is_empty() {
        return "*".into();
    }
    if !param.contains(' ') && !param.starts_with(':') {
        return param.into();
    }
    let mut fixed = param.replace(' ', "_");
    if fixed.starts_with(':') {
        fixed.insert(0, '*');
    }
    fixed.into()
}
