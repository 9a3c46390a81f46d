//! IRC CHATHISTORY (draft/chathistory): by message id through the same
//! query path as native `#history` (the whole stored history); by
//! timestamp, `LATEST` after a point and `BETWEEN` over what memory holds.

use std::sync::Arc;
use std::time::Instant;

use crate::history::Record;
use crate::history_query::Position;
use crate::ids::{ConnId, MessageId, RoomName};
use crate::irc::caps::Cap;
use crate::irc::render::{self as irc_render, channel};
use crate::reply::Reply;

use super::CHATHISTORY_LIMIT;
use crate::server::Server;

impl Server {
    /// `CHATHISTORY LATEST|BEFORE|AFTER|AROUND #chan REF LIMIT` (and
    /// `BETWEEN #chan REF REF LIMIT`): the room's history in a
    /// `chathistory` batch. `LATEST *` and `BEFORE`, `AFTER` and `AROUND` a
    /// `msgid=` read the whole stored history as native `#history` does;
    /// the other forms what the server keeps in memory.
    pub(super) fn irc_chathistory(&mut self, now: Instant, conn: ConnId, params: &[&str]) {
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
        let by_id = match (sub.as_str(), points.as_slice()) {
            ("LATEST", [HistoryRef::Latest]) => Some(Position::Latest),
            ("BEFORE", [HistoryRef::Id(id)]) => Some(Position::Before(MessageId::new(*id))),
            ("AFTER", [HistoryRef::Id(id)]) => Some(Position::Since(MessageId::new(*id))),
            ("AROUND", [HistoryRef::Id(id)]) => Some(Position::Around(MessageId::new(*id))),
            _ => None,
        };
        if let Some(position) = by_id {
            return self.irc_history_query(now, conn, room, position, limit);
        }
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
        self.irc_history_batch(conn, &room, &all[range]);
    }

    /// History entries for an IRC client: in a `chathistory` batch if it
    /// takes batches.
    pub(in crate::server) fn irc_history_batch(
        &mut self,
        conn: ConnId,
        room: &RoomName,
        records: &[Arc<Record>],
    ) {
        let batched = self.has_cap(conn, Cap::Batch);
        let mut body = String::new();
        for record in records {
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
            &[&format!("+{id}"), "chathistory", &channel(room)],
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
