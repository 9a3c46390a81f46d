//! Chat: room messages, actions, urgent messages, whispers, history and
//! acknowledgements.

use std::sync::Arc;
use std::time::Instant;

use crate::dialect::Dialect;
use crate::error::ErrorCode;
use crate::history::{MessageIds, Record, RecordKind};
use crate::ids::{ConnId, MessageId, Nick, RoomName};
use crate::io::{Output, Priority};
use crate::irc::caps::Caps;
use crate::render::{Style, Viewer};
use crate::reply::{Person, Reply};

use super::Server;
use super::outbox::Outbox;
use super::room::Room;
use super::session::Session;

impl Server {
    /// A chat line, action or urgent message to the caller's room.
    ///
    /// The line is encoded once and broadcast to the room's shared member
    /// list (the sender excluded), kept in the room's history and handed to
    /// the driver to persist. With acknowledgements on, the sender's ACK
    /// waits for [`Server::handle_persisted`].
    pub(super) fn post(
        &mut self,
        now: Instant,
        conn: ConnId,
        room_name: &RoomName,
        kind: RecordKind,
        text: &str,
        notice: bool,
    ) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        // Names are formatted only for errors: this is the hot path.
        let chan = || format!("#{room_name}");
        let Some(room) = self.rooms.get_mut(room_name) else {
            let chan = chan();
            let text = format!("there is no room {chan}");
            return self
                .out
                .error_about(conn, ErrorCode::BadRoom, Some(&chan), &text);
        };
        let urgent = kind == RecordKind::Urgent;
        if let Some((code, text)) = speech_refusal(room, room_name, conn, session, now, urgent) {
            let chan = chan();
            return self.out.error_about(conn, code, Some(&chan), &text);
        }
        let ts = self.wall.unix_ms(now);
        if self.cluster.is_some() {
            let private = room.private;
            self.post_to_cluster(conn, room_name, kind, text, notice, ts, private);
            return;
        }
        let id = take_id(&mut self.ids, &mut self.out, ts);
        let from = session.person();
        let (reply, priority) = line_reply(kind, id, room_name, from, text, notice);
        self.out
            .broadcast(&room.audiences(), Some(conn), &reply, priority);
        if session.echoes() {
            self.out.send_with(conn, &reply, priority);
        }
        let record = Arc::new(Record {
            id,
            room: room_name.clone(),
            ts,
            from: session.nick,
            kind,
            text: text.to_owned(),
            to: None,
            private: room.private,
        });
        self.histories
            .push(record.clone(), self.config.history_size);
        if session.ack {
            self.pending_acks.insert(id, conn);
        }
        self.out.push(Output::Persist(record));
        self.enforce_history_bounds();
    }

    /// `#msg NAME TEXT`.
    pub(super) fn whisper(
        &mut self,
        now: Instant,
        conn: ConnId,
        target: &Nick,
        text: &str,
        notice: bool,
    ) {
        if self.whisper_to_cluster(conn, target, text, notice) {
            return;
        }
        let Some(recipient) = self.user_named(target) else {
            return self.no_such_nick(conn, target);
        };
        let (Some(me), Some(them)) = (self.sessions.get(&conn), self.sessions.get(&recipient))
        else {
            return;
        };
        // The id comes first: clients with ids on see it on both lines.
        let ts = self.wall.unix_ms(now);
        let id = take_id(&mut self.ids, &mut self.out, ts);
        self.out.send(
            recipient,
            &Reply::Whisper {
                id,
                from: me.person(),
                text,
                notice,
            },
        );
        echo_whisper(&mut self.out, conn, me, id, &them.nick, text, notice);
        if !self.config.persist_private_messages {
            // Nothing is written, so only a durable reservation keeps this
            // id from being handed out again after a restart.
            if me.ack && self.ids.is_durable(id) {
                self.out.send(conn, &Reply::Ack(id));
            } else if me.ack {
                self.ids.defer_ack(id, conn);
            }
            return;
        }
        let record = Arc::new(Record {
            id,
            room: me.rooms.first().cloned().unwrap_or_else(RoomName::general),
            ts,
            from: me.nick,
            kind: RecordKind::Whisper,
            text: text.to_owned(),
            to: Some(them.nick),
            private: true,
        });
        if me.ack {
            self.pending_acks.insert(id, conn);
        }
        self.out.push(Output::Persist(record));
    }

    /// `#ids on|off`: message ids on chat lines and history entries.
    /// A native client with ids on is one more render style, so it gets
    /// a viewer (the renderer's record of its style) and its rooms
    /// regroup their audiences; with ids off it costs nothing again.
    pub(super) fn set_ids(&mut self, conn: ConnId, on: bool) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.dialect != Dialect::Native {
            return;
        }
        session.ids = on;
        let style = if on { Style::NativeIds } else { Style::Native };
        if on {
            self.out.set_viewer(
                conn,
                Viewer {
                    style,
                    nick: session.nick,
                    registering: false,
                    caps: Caps::default(),
                },
            );
        } else {
            self.out.forget_viewer(conn);
        }
        for name in &session.rooms {
            if let Some(room) = self.rooms.get_mut(name) {
                room.restyle(conn, style);
            }
        }
        self.out.send(conn, &Reply::IdsMode(on));
    }

    /// `#ack on|off`.
    pub(super) fn set_ack(&mut self, conn: ConnId, on: bool) {
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.ack = on;
            self.out.send(conn, &Reply::AckMode(on));
        }
    }
}

/// A room line as its recipients see it, and how urgently it goes out:
/// the one rule for lines said here and lines another node said.
pub(super) fn line_reply<'a>(
    kind: RecordKind,
    id: MessageId,
    room: &'a RoomName,
    from: Person<'a>,
    text: &'a str,
    notice: bool,
) -> (Reply<'a>, Priority) {
    match kind {
        RecordKind::Action => (
            Reply::Action {
                id,
                room,
                from,
                text,
            },
            Priority::Normal,
        ),
        RecordKind::Urgent => (
            Reply::Urgent {
                id,
                room,
                from,
                text,
            },
            Priority::Urgent,
        ),
        RecordKind::Msg | RecordKind::Whisper | RecordKind::Reserve => (
            Reply::Chat {
                id,
                room,
                from,
                text,
                notice,
            },
            Priority::Normal,
        ),
    }
}

/// The sender's own copy of a whisper it sent: native clients always get
/// it, IRC clients with echo-message.
pub(super) fn echo_whisper(
    out: &mut Outbox,
    conn: ConnId,
    me: &Session,
    id: MessageId,
    to: &Nick,
    text: &str,
    notice: bool,
) {
    if me.dialect == Dialect::Native || me.echoes() {
        let reply = Reply::WhisperSent {
            id,
            me: me.person(),
            to,
            text,
            notice,
        };
        out.send(conn, &reply);
    }
}

/// Why a client may not speak in a room now, if it may not: the rules
/// every way of speaking shares (native chat, PRIVMSG, NOTICE, TAGMSG).
/// Room names are formatted only here, off the hot path.
pub(super) fn speech_refusal(
    room: &Room,
    room_name: &RoomName,
    conn: ConnId,
    session: &Session,
    now: Instant,
    urgent: bool,
) -> Option<(ErrorCode, String)> {
    // A native client speaks in its current room, where it is a member
    // by invariant 2: the member lookup is left to IRC clients and to
    // the rare rules that need it.
    let native = session.dialect == Dialect::Native;
    let member = || room.member(conn).copied();
    let moderator = || {
        room.owner == Some(conn) || member().is_some_and(|m| m.operator) || session.is_operator()
    };
    let outside = !native && member().is_none();
    if outside && (room.modes.no_outside || room.private) && !session.is_operator() {
        return Some((ErrorCode::Muted, format!("you are not in #{room_name}")));
    }
    if urgent && !moderator() {
        let text = match room.owner {
            Some(_) => {
                format!("only the owner of #{room_name} or an operator may send urgent messages")
            }
            None => format!("only an operator may send urgent messages in #{room_name}"),
        };
        return Some((ErrorCode::PermissionDenied, text));
    }
    let account_mute = || {
        session
            .account_key()
            .and_then(|account| room.account_muted_for(&account, now))
    };
    if let Some(left) = room.muted_for(conn, now).or_else(account_mute) {
        let text = format!(
            "you are muted in #{room_name} for another {}",
            crate::duration::format(left)
        );
        return Some((ErrorCode::Muted, text));
    }
    if !room.modes.ban_masks.is_empty() && !moderator() && super::rooms::mask_banned(room, session)
    {
        return Some((
            ErrorCode::Muted,
            format!("you are banned from #{room_name}"),
        ));
    }
    if room.modes.moderated && !moderator() && !member().is_some_and(|m| m.voice) {
        let text =
            format!("#{room_name} is moderated: only its operators and voiced members speak");
        return Some((ErrorCode::Muted, text));
    }
    None
}

/// The next message id; a reservation that falls due goes to the writer
/// first, so it is queued ahead of the records using its ids.
fn take_id(ids: &mut MessageIds, out: &mut Outbox, ts: u64) -> MessageId {
    let allocation = ids.allocate();
    if let Some(reserved) = allocation.reservation {
        out.push(Output::Persist(Arc::new(Record::reservation(reserved, ts))));
    }
    allocation.id
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::io::Output;
    use crate::server::Server;
    use crate::test_support::epoch;

    #[test]
    fn ids_are_one_more_style_encoded_once_for_all_its_recipients() {
        let now = epoch();
        let mut server = Server::new(Config::default(), now, 1_795_000_000_000).unwrap();
        let conns: Vec<_> = (1..=4)
            .map(|i| {
                let peer = format!("127.0.0.{i}:5000").parse().unwrap();
                server.accept(now, peer).unwrap()
            })
            .collect();
        let broadcasts = |server: &mut Server, line: &str| {
            server.handle(now, conns[0], line.as_bytes());
            std::iter::from_fn(|| server.poll_output())
                .filter_map(|output| match output {
                    Output::Broadcast { to, bytes, .. } => {
                        Some((to.len(), String::from_utf8(bytes.to_vec()).unwrap()))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        broadcasts(&mut server, "");
        assert_eq!(broadcasts(&mut server, "plain\n").len(), 1);
        for &conn in &conns[2..] {
            server.handle(now, conn, b"#ids on\n");
        }
        let sent = broadcasts(&mut server, "with ids\n");
        assert_eq!(
            sent,
            [
                (2, "[#general] guest1: with ids\n".to_owned()),
                (2, "[#general id=2] guest1: with ids\n".to_owned()),
            ]
        );
        for &conn in &conns[2..] {
            server.handle(now, conn, b"#ids off\n");
        }
        assert_eq!(broadcasts(&mut server, "plain again\n").len(), 1);
        server.check_invariants().unwrap();
    }
}
