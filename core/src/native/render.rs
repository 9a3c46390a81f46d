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

use std::fmt::Write;

use bytes::Bytes;

use crate::duration;
use crate::history::{Record, RecordKind};
use crate::reply::{Reply, RoomEntry, Scope};
use crate::wall_clock::format_utc;

/// Encodes one reply as one or more LF-terminated lines.
pub fn encode(reply: &Reply<'_>) -> Bytes {
    let mut line = String::with_capacity(64);
    write_reply(&mut line, reply);
    line.push('\n');
    Bytes::from(line)
}

fn write_reply(out: &mut String, reply: &Reply<'_>) {
    // Writing into a String cannot fail; the results are ignored on purpose.
    let _ = match reply {
        Reply::Welcome { nick, room } => write!(
            out,
            "* welcome, you are {nick} in #{room}; type #help for commands"
        ),
        Reply::NickChangedYou { new } => write!(out, "* you are now {new}"),
        Reply::NickChanged { old, new } => write!(out, "* {old} is now known as {new}"),
        Reply::YouJoined { room } => write!(out, "* you joined #{room}"),
        Reply::YouCreated {
            room,
            private: false,
        } => write!(out, "* you created #{room}; you own it"),
        Reply::YouCreated {
            room,
            private: true,
        } => write!(
            out,
            "* you created private room #{room}; you own it; invite others with #invite NAME"
        ),
        Reply::Joined { room, nick } => write!(out, "* {nick} joined #{room}"),
        Reply::YouLeft { room } => write!(out, "* you left #{room}"),
        Reply::Left { room, nick } => write!(out, "* {nick} left #{room}"),
        Reply::Quit { nick, message } => {
            write!(out, "* {nick} quit").and_then(|()| write_reason(out, *message))
        }
        Reply::OwnerChanged { room, nick } => write!(out, "* {nick} now owns #{room}"),
        Reply::Chat { room, from, text } => write!(out, "[#{room}] {from}: {text}"),
        Reply::Action { room, from, text } => write!(out, "[#{room}] * {from} {text}"),
        Reply::Urgent { room, from, text } => write!(out, "[#{room}] URGENT {from}: {text}"),
        Reply::Whisper { from, text } => write!(out, "[whisper] {from}: {text}"),
        Reply::WhisperSent { to, text } => write!(out, "[whisper to {to}] {text}"),
        Reply::HistoryHeader { room, count } => write!(out, "+ history #{room} {count}"),
        Reply::HistoryEntry(record) => write_history_entry(out, record),
        Reply::Topic {
            room,
            topic: Some(topic),
        } => write!(out, "* topic of #{room}: {topic}"),
        Reply::Topic { room, topic: None } => write!(out, "* #{room} has no topic"),
        Reply::TopicChanged { room, by, topic } => {
            write!(out, "* {by} set the topic of #{room}: {topic}")
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
                out.push_str(member.nick.as_str());
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
            "* {by} invited you to #{room}; type #join #{room} to enter"
        ),
        Reply::Kicked {
            scope,
            nick,
            by,
            reason,
        } => {
            let _ = write!(out, "* {nick} was kicked from ");
            write_scope(out, *scope);
            let _ = write!(out, " by {by}");
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
        Reply::ShuttingDown { reason } => write!(out, "* server shutting down: {reason}"),
        Reply::Error { code, text } => write!(out, "! {code}: {text}"),
    };
}

fn write_history_entry(out: &mut String, record: &Record) -> std::fmt::Result {
    let time = format_utc(record.ts);
    let (room, from, text) = (&record.room, &record.from, &record.text);
    match record.kind {
        // Reservations never reach a history ring; shown like chat if one did.
        RecordKind::Msg | RecordKind::Whisper | RecordKind::Reserve => {
            write!(out, "[#{room} {time}] {from}: {text}")
        }
        RecordKind::Action => write!(out, "[#{room} {time}] * {from} {text}"),
        RecordKind::Urgent => write!(out, "[#{room} {time}] URGENT {from}: {text}"),
    }
}

fn write_room_entry(out: &mut String, entry: &RoomEntry<'_>) -> std::fmt::Result {
    write!(out, "+ room #{} {}", entry.room, entry.members)?;
    if entry.private {
        out.push_str(" private");
    }
    if let Some(topic) = entry.topic {
        write!(out, ": {topic}")?;
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
        write!(out, ": {reason}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::ids::{Nick, RoomName};
    use crate::reply::WhoEntry;

    fn text(reply: Reply<'_>) -> String {
        String::from_utf8(encode(&reply).to_vec()).unwrap()
    }

    #[test]
    fn chat_and_errors_have_their_markers() {
        let room = RoomName::general();
        let alice = Nick::parse("alice").unwrap();
        assert_eq!(
            text(Reply::Chat {
                room: &room,
                from: &alice,
                text: "hi"
            }),
            "[#general] alice: hi\n"
        );
        assert_eq!(
            text(Reply::Error {
                code: ErrorCode::NickTaken,
                text: "alice is taken"
            }),
            "! nick-taken: alice is taken\n"
        );
    }

    #[test]
    fn who_marks_the_owner() {
        let room = RoomName::parse("dev").unwrap();
        let (alice, bob) = (Nick::parse("alice").unwrap(), Nick::parse("bob").unwrap());
        let members = [
            WhoEntry {
                nick: &alice,
                owner: true,
            },
            WhoEntry {
                nick: &bob,
                owner: false,
            },
        ];
        assert_eq!(
            text(Reply::Who {
                room: &room,
                members: &members
            }),
            "+ who #dev 2: @alice bob\n"
        );
    }
}
