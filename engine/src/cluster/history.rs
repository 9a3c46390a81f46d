//! Answers to `#history` and `#search` when clustered: a room's history is
//! its Redis stream, so every node gives the same answer. Read newest
//! first (XREVRANGE below the query's `below`), offered to the query's
//! collector until it wants nothing older; a search reads every room's
//! stream (or the one named) within the reader's time bound.
//!
//! Whispers are not stored in the cluster: the hub keeps sending
//! whisper queries to the local reader.

use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use chatd_core::MessageId;
use chatd_core::history_query::{Collector, HistoryAnswer, HistoryQuery, Scope, Shortfall};
use chatd_core::ids::RoomName;

use super::link::Link;
use super::rooms::decode_entry;
use super::{Delivery, Shared};
use crate::persist::reader::{HISTORY_TIME, SEARCH_TIME};

/// Queries waiting at most; beyond, they are answered `Busy`.
pub(crate) const QUEUE: usize = 64;

/// Stream entries read per XREVRANGE.
const PAGE: usize = 256;

/// Most rooms a search reads (besides its time bound).
const MAX_SEARCH_ROOMS: usize = 10_000;

pub(crate) fn run(shared: &Shared, queries: &Receiver<Box<HistoryQuery>>) {
    let mut link = Link::new(shared.client.clone());
    // Ends when the bus drops its sender.
    for query in queries {
        let answer = answer(&mut link, &query);
        (shared.sink)(Delivery::History(answer));
    }
}

fn answer(link: &mut Link, query: &HistoryQuery) -> HistoryAnswer {
    let search = matches!(query.scope, Scope::Search { .. });
    let deadline = Instant::now() + if search { SEARCH_TIME } else { HISTORY_TIME };
    let mut collector = query.collector();
    let result = link.with(|conn| {
        let rooms = match &query.scope {
            Scope::Room { room, .. } => vec![room.clone()],
            Scope::Search {
                room: Some(room), ..
            } => vec![room.clone()],
            Scope::Search { room: None, .. } => every_room(conn)?,
            // Not stored in the cluster (the hub does not send these).
            Scope::Whispers { .. } => Vec::new(),
        };
        for room in rooms {
            // Many small rooms: the bound is looked at between them too.
            if Instant::now() >= deadline
                || !read_room(conn, &room, query, &mut collector, deadline)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    });
    let shortfall = match result {
        Ok(true) => None,
        Ok(false) => Some(Shortfall::TimeBound),
        Err(error) => {
            tracing::warn!(%error, "cluster: cannot read history from Redis");
            return HistoryAnswer {
                request: query.request,
                records: Vec::new(),
                shortfall: Some(Shortfall::Unreadable),
            };
        }
    };
    HistoryAnswer {
        request: query.request,
        records: collector.finish(),
        shortfall,
    }
}

/// Every room with a stream, by name (bounded).
fn every_room(conn: &mut redis::Connection) -> redis::RedisResult<Vec<RoomName>> {
    let pattern = chatd_core::cluster::keys::room(&RoomName::general());
    let prefix = pattern
        .strip_suffix(RoomName::general().as_str())
        .unwrap_or("chatd:room:")
        .to_owned();
    let mut rooms = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg("stream")
            .query(conn)?;
        rooms.extend(
            keys.iter()
                .filter_map(|key| key.strip_prefix(&prefix))
                .filter_map(|name| RoomName::parse(name).ok()),
        );
        cursor = next;
        if cursor == 0 || rooms.len() >= MAX_SEARCH_ROOMS {
            break;
        }
    }
    rooms.sort();
    rooms.dedup();
    rooms.truncate(MAX_SEARCH_ROOMS);
    Ok(rooms)
}

/// Offers a room's stream, newest first from below `query.below`, until
/// the collector wants nothing older. False when the time bound ran out.
fn read_room(
    conn: &mut redis::Connection,
    room: &RoomName,
    query: &HistoryQuery,
    collector: &mut Collector,
    deadline: Instant,
) -> redis::RedisResult<bool> {
    // Entries at or above `below` are the core's to merge in.
    let mut top: Option<u64> = query.below.map(|below| below.get());
    loop {
        let highest = top.map_or(u64::MAX, |top| top.saturating_sub(1));
        if highest == 0 || !collector.wants(MessageId::new(1), MessageId::new(highest)) {
            return Ok(true);
        }
        let end = top.map_or_else(|| "+".to_owned(), |top| format!("({top}-0"));
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
            .arg(chatd_core::cluster::keys::room(room))
            .arg(end)
            .arg("-")
            .arg("COUNT")
            .arg(PAGE)
            .query(conn)?;
        let count = entries.len();
        for entry in entries {
            // Move on past an entry even if it does not decode.
            if let Some(id) = entry.0.split_once('-').and_then(|(id, _)| id.parse().ok()) {
                top = Some(id);
            }
            let Some((_, line)) = decode_entry(entry) else {
                continue;
            };
            if query.admits(&line.record) {
                collector.offer(Arc::new(line.record));
            }
        }
        if count < PAGE {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
    }
}
