//! The history reader (`chatd_engine::persist::reader::answer`) on an
//! arbitrary segment, with no index, the index the writer would build, or
//! arbitrary index bytes. Checked:
//!
//! 1. nothing panics, whatever the segment and index bytes;
//! 2. with no index or a correct one, and record ids increasing through
//!    the segment (what the writer guarantees), every query answers
//!    exactly what a brute-force reading gives: every whole line that
//!    decodes (`history::recover`), filtered by the query's scope and fed
//!    to its collector.
//!
//! The first input byte picks the index variant and the query's limit, the
//! second where the segment ends and arbitrary index bytes begin.

#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use chatd_core::history::{self, RecordKind};
use chatd_core::history_query::{HistoryQuery, Position, QueryId, Scope, SearchTerms};
use chatd_core::{ConnId, MessageId, Nick, RoomName};
use chatd_engine::persist::index::{SegmentIndex, build_for_segment};
use chatd_engine::persist::reader::{answer, index_name, segment_name};
use libfuzzer_sys::fuzz_target;

/// One scratch data directory for the whole run (the files are
/// overwritten for every input).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("chatd-fuzz-reader-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("general")).expect("scratch dir");
        std::fs::create_dir_all(dir.join("_whispers")).expect("scratch dir");
        dir
    })
}

/// A connection id (only the core makes them); the reader never looks
/// at it.
fn conn() -> ConnId {
    static CONN: OnceLock<ConnId> = OnceLock::new();
    *CONN.get_or_init(|| {
        let now = std::time::Instant::now();
        let mut server =
            chatd_core::Server::new(chatd_core::Config::default(), now, 0).expect("server");
        server
            .accept(now, "127.0.0.1:1".parse().expect("address"))
            .expect("accepted")
    })
}

fuzz_target!(|bytes: &[u8]| {
    let [mode, cut, rest @ ..] = bytes else {
        return;
    };
    let split = rest.len() * usize::from(*cut) / 255;
    let (segment, raw_index) = rest.split_at(split);
    let dir = scratch();
    let first = MessageId::new(0);
    let room = dir.join("general");
    let whispers = dir.join("_whispers");
    let index = match mode % 3 {
        0 => None,
        1 => Some(build_for_segment(segment)),
        _ => Some(raw_index.to_vec()),
    };
    let _ = SegmentIndex::parse(raw_index);
    for place in [&room, &whispers] {
        std::fs::write(place.join(segment_name(first)), segment).expect("write segment");
        let index_path = place.join(index_name(first));
        match &index {
            Some(bytes) => std::fs::write(&index_path, bytes).expect("write index"),
            None => {
                let _ = std::fs::remove_file(&index_path);
            }
        }
    }

    let records: Vec<Arc<history::Record>> = history::recover(segment)
        .records
        .into_iter()
        .map(Arc::new)
        .collect();
    let increasing = records.windows(2).all(|w| w[0].id < w[1].id);
    let trusted = mode % 3 != 2 && increasing;
    let limit = 1 + usize::from(mode / 3) % 8;
    let middle = records
        .get(records.len() / 2)
        .map_or(MessageId::new(1), |r| r.id);
    let alice = Nick::parse("alice").expect("nick");
    let bob = Nick::parse("bob").expect("nick");
    let words = records
        .iter()
        .find(|r| r.kind != RecordKind::Reserve)
        .and_then(|r| SearchTerms::parse(&r.text))
        .or_else(|| SearchTerms::parse("hi"));
    let mut scopes = vec![
        Scope::Room {
            room: RoomName::general(),
            private_ok: mode & 1 == 0,
        },
        Scope::Whispers {
            me: alice,
            other: bob,
        },
    ];
    if let Some(terms) = words {
        scopes.push(Scope::Search {
            terms,
            room: None,
            private_rooms: Vec::new(),
        });
    }
    for scope in scopes {
        for position in [
            Position::Latest,
            Position::Before(middle),
            Position::Since(middle),
            Position::Around(middle),
        ] {
            let query = HistoryQuery {
                request: QueryId(1),
                conn: conn(),
                scope: scope.clone(),
                position,
                limit,
                below: None,
            };
            let got = answer(dir, &query, None);
            if !trusted || got.shortfall.is_some() {
                continue;
            }
            let mut expected = query.collector();
            for record in &records {
                if query.admits(record) {
                    expected.offer(record.clone());
                }
            }
            let expected = expected.finish();
            assert_eq!(
                got.records.iter().map(|r| r.id).collect::<Vec<_>>(),
                expected.iter().map(|r| r.id).collect::<Vec<_>>(),
                "{scope:?} {position:?} limit {limit}"
            );
        }
    }
});
