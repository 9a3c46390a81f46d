//! Rendering [`Reply`] values as native-dialect lines.
//!
//! Every line starts with a marker that says what it is, so a program can
//! sort lines by their first bytes while a person on `nc` reads them as
//! sentences (docs/PROTOCOL.md, "Replies"):
//!
//! - `[#room] ...` and `[whisper...] ...`: chat;
//! - `* ...`: an event or notice;
//! - `+ WORD ...`: the answer to a query (`+ who`, `+ pong`, `+ ack` ...);
//! - `! CODE: ...`: an error, with a stable code.

use std::borrow::Cow;
use std::fmt::Write;

use bytes::Bytes;

use crate::duration;
use crate::history::{Record, RecordKind};
use crate::ids::MessageId;
use crate::reply::{HistoryOf, Reply, RoomEntry, Scope};
use crate::wall_clock::format_utc;

/// Encodes one reply as one or more LF-terminated lines.
pub fn encode(reply: &Reply<'_>) -> Bytes {
    encode_styled(reply, false)
}

/// Encodes one reply for a client that turned ids on (`#ids on`): chat
/// lines and history entries carry their message id as ` id=N` inside
/// the bracket (`[#general id=42] alice: hello`); every other line is as
/// [`encode`] writes it.
pub fn encode_with_ids(reply: &Reply<'_>) -> Bytes {
    encode_styled(reply, true)
}

fn encode_styled(reply: &Reply<'_>, ids: bool) -> Bytes {
    if matches!(reply, Reply::TagMsg { .. } | Reply::Sasl(_)) {
        // Tags only: nothing a native client shows, and nothing is sent.
        return Bytes::new();
    }
    let mut line = String::with_capacity(64);
    write_reply(&mut line, reply, ids);
    line.push('\n');
    Bytes::from(line)
}

/// ` id=N` when ids are on, nothing otherwise.
struct IdTag(Option<MessageId>);

impl std::fmt::Display for IdTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => write!(f, " id={id}"),
            None => Ok(()),
        }
    }
}

fn write_reply(out: &mut String, reply: &Reply<'_>, ids: bool) {
    let tag = |id: MessageId| IdTag(ids.then_some(id));
    // Writing into a String cannot fail; the results are ignored on purpose.
    let _ = match reply {
        Reply::Welcome { nick, room } => write!(
            out,
            "* welcome, you are {nick} in #{room}; type #help for commands"
        ),
        Reply::NickChangedYou { new, .. } => write!(out, "* you are now {new}"),
        Reply::NickChanged { old, new } => write!(out, "* {} is now known as {new}", old.nick),
        Reply::YouJoined { room, .. } => write!(out, "* you joined #{room}"),
        Reply::YouCreated {
            room,
            private: false,
            ..
        } => write!(out, "* you created #{room}; you own it"),
        Reply::YouCreated {
            room,
            private: true,
            ..
        } => write!(
            out,
            "* you created private room #{room}; you own it; invite others with #invite NAME"
        ),
        Reply::Joined { room, who } => write!(out, "* {} joined #{room}", who.nick),
        Reply::YouLeft { room, .. } => write!(out, "* you left #{room}"),
        Reply::Left { room, who, reason } => {
            write!(out, "* {} left #{room}", who.nick).and_then(|()| write_reason(out, *reason))
        }
        Reply::Quit { who, message } => {
            write!(out, "* {} quit", who.nick).and_then(|()| write_reason(out, *message))
        }
        Reply::OwnerChanged { room, nick } => write!(out, "* {nick} now owns #{room}"),
        Reply::Chat {
            id,
            room,
            from,
            text,
            ..
        } => {
            open_room(out, room, ids.then_some(*id));
            write!(out, "{}: {}", from.nick, shown(text))
        }
        Reply::Action {
            id,
            room,
            from,
            text,
        } => {
            open_room(out, room, ids.then_some(*id));
            write!(out, "* {} {}", from.nick, shown(text))
        }
        Reply::Urgent {
            id,
            room,
            from,
            text,
        } => {
            open_room(out, room, ids.then_some(*id));
            write!(out, "URGENT {}: {}", from.nick, shown(text))
        }
        Reply::Whisper { id, from, text, .. } => {
            write!(out, "[whisper{}] {}: {}", tag(*id), from.nick, shown(text))
        }
        Reply::WhisperSent { id, to, text, .. } => {
            write!(out, "[whisper to {to}{}] {}", tag(*id), shown(text))
        }
        Reply::HistoryHeader {
            of: HistoryOf::Room(room),
            count,
        } => write!(out, "+ history #{room} {count}"),
        Reply::HistoryHeader {
            of: HistoryOf::Whispers(nick),
            count,
        } => write!(out, "+ history @{nick} {count}"),
        Reply::SearchHeader {
            count,
            partial: false,
        } => write!(out, "+ search {count}"),
        Reply::SearchHeader {
            count,
            partial: true,
        } => write!(out, "+ search {count} partial"),
        Reply::HistoryEntry(record) => write_history_entry(out, record, ids),
        Reply::WhisperEntry { record, sent } => write_whisper_entry(out, record, *sent, ids),
        Reply::IdsMode(on) => write!(out, "* ids {}", if *on { "on" } else { "off" }),
        Reply::Topic {
            room,
            topic: Some(topic),
        } => write!(out, "* topic of #{room}: {}", shown(topic)),
        Reply::Topic { room, topic: None } => write!(out, "* #{room} has no topic"),
        Reply::TopicChanged {
            room,
            by,
            topic: "",
        } => {
            write!(out, "* {} cleared the topic of #{room}", by.nick)
        }
        Reply::TopicChanged { room, by, topic } => {
            write!(
                out,
                "* {} set the topic of #{room}: {}",
                by.nick,
                shown(topic)
            )
        }
        Reply::RoomsHeader { count } => write!(out, "+ rooms {count}"),
        Reply::Page {
            command,
            page,
            pages,
            total,
        } if page < pages => write!(
            out,
            "+ page {page}/{pages} of {total}; #{command} {} for more",
            page + 1
        ),
        Reply::Page {
            page, pages, total, ..
        } => write!(out, "+ page {page}/{pages} of {total}"),
        Reply::RoomEntry(entry) => write_room_entry(out, entry),
        Reply::Who { room, members } => {
            let _ = write!(out, "+ who #{room} {}:", members.len());
            for member in *members {
                out.push(' ');
                if member.owner {
                    out.push('@');
                }
                out.push_str(member.person.nick.as_str());
            }
            Ok(())
        }
        Reply::Help { usage, summary } => write!(out, "+ help {usage}: {summary}"),
        Reply::Pong { token: Some(token) } => write!(out, "+ pong {token}"),
        Reply::Pong { token: None } => write!(out, "+ pong"),
        Reply::IdlePing { timeout } => write!(
            out,
            "+ ping: idle check, send any line within {} to stay connected",
            duration::format(*timeout)
        ),
        Reply::Ack(id) => write!(out, "+ ack {id}"),
        Reply::AckMode(on) => write!(out, "* acknowledgements {}", if *on { "on" } else { "off" }),
        Reply::OperUp => write!(out, "* you are now a server operator"),
        Reply::InviteSent { room, nick } => write!(out, "* invited {nick} to #{room}"),
        Reply::Invited { room, by } => write!(
            out,
            "* {} invited you to #{room}; type #join #{room} to enter",
            by.nick
        ),
        Reply::Kicked {
            scope,
            who,
            by,
            reason,
        } => {
            let _ = write!(out, "* {} was kicked from ", who.nick);
            write_scope(out, *scope);
            let _ = write!(out, " by {}", by.nick);
            write_reason(out, *reason)
        }
        Reply::BannedFromRoom {
            room,
            nick,
            by,
            duration,
            reason,
        } => {
            let _ = write!(out, "* {nick} was banned from #{room} by {by}");
            write_for(out, *duration);
            write_reason(out, *reason)
        }
        Reply::BanSet {
            scope,
            address,
            duration,
        } => {
            let _ = write!(out, "* banned {address} from ");
            write_scope(out, *scope);
            write_for(out, *duration);
            Ok(())
        }
        Reply::Unbanned { scope, address } => {
            let _ = write!(out, "* unbanned {address} from ");
            write_scope(out, *scope);
            Ok(())
        }
        Reply::Muted {
            room,
            nick,
            by,
            duration,
        } => write!(
            out,
            "* {nick} was muted in #{room} by {by} for {}",
            duration::format(*duration)
        ),
        Reply::Unmuted {
            room,
            nick,
            by: Some(by),
        } => write!(out, "* {nick} was unmuted in #{room} by {by}"),
        Reply::Unmuted {
            room,
            nick,
            by: None,
        } => write!(out, "* {nick} is no longer muted in #{room}"),
        Reply::Goodbye => write!(out, "* goodbye"),
        Reply::Registered { account } => {
            write!(out, "* you registered {account}; you are logged in")
        }
        Reply::LoggedIn { account, .. } => write!(out, "* you are logged in as {account}"),
        Reply::LoggedOut { account, .. } => write!(out, "* you are logged out of {account}"),
        Reply::PasswordChanged => write!(out, "* your password is changed"),
        Reply::Unregistered { account } => write!(out, "* {account} is no longer registered"),
        Reply::Sasl(_) => Ok(()),
        Reply::NickProtected { nick, grace } => write!(
            out,
            "* {nick} is registered; log in with #login {nick} PASSWORD within {} or you will be renamed",
            duration::format(*grace)
        ),
        Reply::NickReclaimed { nick } => write!(
            out,
            "* {nick} is registered to an account you are not logged in to; you are renamed"
        ),
        Reply::Whois {
            nick,
            registered,
            logins,
            online,
            operator,
        } => write_whois(out, nick, *registered, *logins, *online, *operator),
        Reply::OperatorAccount {
            account,
            operator: true,
        } => write!(out, "* {account} is now an operator account"),
        Reply::OperatorAccount {
            account,
            operator: false,
        } => write!(out, "* {account} is no longer an operator account"),
        Reply::OperDown => write!(out, "* you are no longer a server operator"),
        Reply::TagMsg { .. } => Ok(()),
        Reply::ModeChanged { room, by, changes } => {
            write!(out, "* {} set mode {} on #{room}", by.nick, shown(changes))
        }
        Reply::Wallops { from, text } => {
            write!(out, "* wallops from {}: {}", from.nick, shown(text))
        }
        Reply::ShuttingDown { reason } => write!(out, "* server shutting down: {reason}"),
        Reply::Error { code, text, .. } => write!(out, "! {code}: {text}"),
    };
}

/// `[#room] ` or, with ids on, `[#room id=N] `: the start of a live chat
/// line, written piece by piece (the hot path of every broadcast).
fn open_room(out: &mut String, room: &crate::ids::RoomName, id: Option<MessageId>) {
    out.push_str("[#");
    out.push_str(room.as_str());
    if let Some(id) = id {
        let _ = write!(out, " id={id}");
    }
    out.push_str("] ");
}

/// Text as a native terminal may show it (IRC formatting removed).
fn shown(text: &str) -> Cow<'_, str> {
    crate::text::without_irc_formatting(text)
}

fn write_history_entry(out: &mut String, record: &Record, ids: bool) -> std::fmt::Result {
    let time = format_utc(record.ts);
    let (room, from, text) = (&record.room, &record.from, &record.text);
    let tag = IdTag(ids.then_some(record.id));
    match record.kind {
        // Reservations never reach a history ring; shown like chat if one did.
        RecordKind::Msg | RecordKind::Whisper | RecordKind::Reserve => {
            write!(out, "[#{room} {time}{tag}] {from}: {}", shown(text))
        }
        RecordKind::Action => write!(out, "[#{room} {time}{tag}] * {from} {}", shown(text)),
        RecordKind::Urgent => write!(out, "[#{room} {time}{tag}] URGENT {from}: {}", shown(text)),
    }
}

/// A stored whisper as its reader sees it: `[whisper to bob TIME] hi` when
/// the reader sent it, `[whisper TIME] bob: hi` when it came from the other
/// party.
fn write_whisper_entry(
    out: &mut String,
    record: &Record,
    sent: bool,
    ids: bool,
) -> std::fmt::Result {
    let time = format_utc(record.ts);
    let tag = IdTag(ids.then_some(record.id));
    let text = shown(&record.text);
    match (&record.to, sent) {
        (Some(to), true) => write!(out, "[whisper to {to} {time}{tag}] {text}"),
        _ => write!(out, "[whisper {time}{tag}] {}: {text}", record.from),
    }
}

fn write_room_entry(out: &mut String, entry: &RoomEntry<'_>) -> std::fmt::Result {
    write!(out, "+ room #{} {}", entry.room, entry.members)?;
    if entry.private {
        out.push_str(" private");
    }
    if let Some(topic) = entry.topic {
        write!(out, ": {}", shown(topic))?;
    }
    Ok(())
}

/// `+ whois alice: registered, logged in on 2 connections, online`.
fn write_whois(
    out: &mut String,
    nick: &crate::ids::Nick,
    registered: bool,
    logins: usize,
    online: bool,
    operator: bool,
) -> std::fmt::Result {
    write!(out, "+ whois {nick}: ")?;
    if registered {
        out.push_str("registered, ");
        match logins {
            0 => out.push_str("not logged in, "),
            1 => out.push_str("logged in on 1 connection, "),
            n => write!(out, "logged in on {n} connections, ")?,
        }
    } else {
        out.push_str("not registered, ");
    }
    out.push_str(if online { "online" } else { "offline" });
    if operator {
        out.push_str(", operator");
    }
    Ok(())
}

fn write_scope(out: &mut String, scope: Scope<'_>) {
    match scope {
        Scope::Room(room) => {
            let _ = write!(out, "#{room}");
        }
        Scope::Server => out.push_str("the server"),
    }
}

fn write_for(out: &mut String, duration: Option<std::time::Duration>) {
    if let Some(duration) = duration {
        let _ = write!(out, " for {}", duration::format(duration));
    }
}

fn write_reason(out: &mut String, reason: Option<&str>) -> std::fmt::Result {
    if let Some(reason) = reason {
        write!(out, ": {}", shown(reason))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::ids::{Nick, RoomName};
    use crate::reply::{Person, WhoEntry};

    fn text(reply: Reply<'_>) -> String {
        String::from_utf8(encode(&reply).to_vec()).unwrap()
    }

    #[test]
    fn chat_and_errors_have_their_markers() {
        let room = RoomName::general();
        let alice = Nick::parse("alice").unwrap();
        assert_eq!(
            text(Reply::Chat {
                id: crate::ids::MessageId::new(1),
                room: &room,
                from: Person {
                    nick: &alice,
                    user: "native",
                    host: [127, 0, 0, 1].into(),
                    account: None,
                },
                text: "hi",
                notice: false,
            }),
            "[#general] alice: hi\n"
        );
        assert_eq!(
            text(Reply::Error {
                code: ErrorCode::NickTaken,
                subject: None,
                text: "alice is taken"
            }),
            "! nick-taken: alice is taken\n"
        );
    }

    #[test]
    fn irc_formatting_never_reaches_a_native_terminal() {
        assert_eq!(shown("plain"), "plain");
        assert_eq!(
            shown("\x02bold\x02 \x0304,12red\x03 \x01ACTION\x01"),
            "bold red ACTION"
        );
        assert_eq!(shown("\x0312,x"), ",x");
    }

    #[test]
    fn who_marks_the_owner() {
        let room = RoomName::parse("dev").unwrap();
        let (alice, bob) = (Nick::parse("alice").unwrap(), Nick::parse("bob").unwrap());
        let entry = |nick, owner| WhoEntry {
            person: Person {
                nick,
                user: "native",
                host: [127, 0, 0, 1].into(),
                account: None,
            },
            owner,
            operator: false,
            voice: false,
            away: false,
            server_operator: false,
        };
        let members = [entry(&alice, true), entry(&bob, false)];
        assert_eq!(
            text(Reply::Who {
                room: &room,
                members: &members
            }),
            "+ who #dev 2: @alice bob\n"
        );
    }
}
