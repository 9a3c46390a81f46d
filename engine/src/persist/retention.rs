//! Retention: which whole segments to delete, oldest first.
//!
//! In this order: each history's segments whose last record is older than
//! its retention (a history's newest segment too, but only once all of it
//! has expired); then a history's oldest segments while it is over its
//! size limit; then the oldest segments of all histories (by first id)
//! while everything together is over `max_bytes`. Size limits never
//! delete a history's newest segment. The writer applies the plan between
//! batches (`Writer::enforce_retention`), so chat never waits for it.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use chatd_core::history::Record;

use super::segment::{BackLines, Segment, is_history_dir, list_segments};
use super::storage::Storage;

/// Limits for one history, overriding the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Delete records older than this.
    pub max_age: Option<Duration>,
    /// Delete the oldest segments while the history is bigger.
    pub max_bytes: Option<u64>,
}

/// What retention keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Every history's default limits (`retention`, `room_max_bytes`).
    pub default: HistoryLimits,
    /// All histories together (`max_bytes`).
    pub max_bytes: Option<u64>,
    /// Overrides by history directory (a room's name, or `_whispers`);
    /// a limit an override leaves out is the default's.
    pub overrides: BTreeMap<String, HistoryLimits>,
}

impl Retention {
    /// Whether nothing is ever deleted.
    pub fn is_off(&self) -> bool {
        let unlimited =
            |limits: &HistoryLimits| limits.max_age.is_none() && limits.max_bytes.is_none();
        self.max_bytes.is_none()
            && unlimited(&self.default)
            && self.overrides.values().all(unlimited)
    }

    /// The limits of the history in `dir`.
    pub fn limits_for(&self, dir: &str) -> HistoryLimits {
        let over = self.overrides.get(dir).copied().unwrap_or_default();
        HistoryLimits {
            max_age: over.max_age.or(self.default.max_age),
            max_bytes: over.max_bytes.or(self.default.max_bytes),
        }
    }
}

/// Why a segment is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its last record is older than the retention.
    Age,
    /// Its history is over its size limit.
    RoomSize,
    /// All histories together are over `max_bytes`.
    TotalSize,
}

/// One segment to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The segment's path.
    pub path: String,
    /// Its history's directory.
    pub dir: String,
    /// The first id of its records.
    pub first_id: u64,
    /// The first id of the next segment (its records are below it);
    /// `None` for a history's newest segment.
    pub next_first_id: Option<u64>,
    /// The largest id it may hold.
    pub last_id: u64,
    /// The segment's and its index's bytes.
    pub bytes: u64,
    /// Why.
    pub reason: Reason,
}

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionSummary {
    /// Segments deleted.
    pub segments: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// Deleted for age.
    pub by_age: usize,
    /// Deleted for a history's size.
    pub by_room_size: usize,
    /// Deleted for the total size.
    pub by_total_size: usize,
    /// Segments that could not be deleted (tried again next pass).
    pub failed: usize,
    /// What was deleted.
    pub deleted: Vec<Deletion>,
}

impl RetentionSummary {
    pub(crate) fn add(&mut self, deletion: &Deletion) {
        self.segments += 1;
        self.bytes += deletion.bytes;
        match deletion.reason {
            Reason::Age => self.by_age += 1,
            Reason::RoomSize => self.by_room_size += 1,
            Reason::TotalSize => self.by_total_size += 1,
        }
        self.deleted.push(deletion.clone());
    }
}

/// Bytes read at a time to find a segment's last record (lines are short).
const TAIL_CHUNK: usize = 4096;

/// A file's last good record, if it has one, read backwards in small
/// chunks.
pub(crate) fn last_record<S: Storage>(
    storage: &mut S,
    name: &str,
    len: u64,
    max_record: usize,
) -> io::Result<Option<Record>> {
    let mut lines = BackLines::with_chunk(name, len, max_record, TAIL_CHUNK);
    while let Some(line) = lines.prev(storage)? {
        if let Some(record) = line.record() {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// The segments to delete now (`now_ms`: wall-clock time, ms since the
/// epoch), in the order to delete them.
pub(crate) fn plan<S: Storage>(
    storage: &mut S,
    retention: &Retention,
    now_ms: u64,
    max_record: usize,
) -> io::Result<Vec<Deletion>> {
    let mut deletions = Vec::new();
    let mut total: u64 = 0;
    // Segments size limits may still delete, with their sizes.
    let mut candidates: Vec<Deletion> = Vec::new();
    let mut entries = storage.list("")?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for entry in entries {
        if !entry.dir {
            total += entry.len;
            continue;
        }
        if !is_history_dir(&entry.name) {
            continue;
        }
        let dir = entry.name;
        let listing = storage.list(&dir)?;
        let index_len = |segment: &Segment| {
            let stem = segment
                .path
                .rsplit('/')
                .next()
                .unwrap_or("")
                .trim_end_matches(".log");
            listing
                .iter()
                .find(|e| e.name.strip_suffix(".idx") == Some(stem))
                .map_or(0, |e| e.len)
        };
        let segments = list_segments(storage, &dir)?;
        let deletion = |at: usize, last: Option<u64>, reason: Reason| {
            let next_first_id = segments.get(at + 1).map(|s| s.first_id);
            Deletion {
                path: segments[at].path.clone(),
                dir: dir.clone(),
                first_id: segments[at].first_id,
                next_first_id,
                last_id: next_first_id
                    .map(|next| next.saturating_sub(1))
                    .or(last)
                    .unwrap_or(u64::MAX),
                bytes: segments[at].len + index_len(&segments[at]),
                reason,
            }
        };
        let limits = retention.limits_for(&dir);
        let mut kept_from = 0;
        if let Some(age) = limits.max_age {
            let cutoff = now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
            while kept_from < segments.len() {
                let segment = &segments[kept_from];
                match last_record(storage, &segment.path, segment.len, max_record)? {
                    Some(last) if last.ts < cutoff => {
                        deletions.push(deletion(kept_from, Some(last.id.get()), Reason::Age));
                        kept_from += 1;
                    }
                    _ => break,
                }
            }
        }
        let mut bytes: u64 = segments[kept_from..]
            .iter()
            .map(|s| s.len + index_len(s))
            .sum();
        if let Some(max) = limits.max_bytes {
            while bytes > max && kept_from + 1 < segments.len() {
                let delete = deletion(kept_from, None, Reason::RoomSize);
                bytes -= delete.bytes;
                deletions.push(delete);
                kept_from += 1;
            }
        }
        total += bytes;
        for at in kept_from..segments.len().saturating_sub(1) {
            candidates.push(deletion(at, None, Reason::TotalSize));
        }
    }
    if let Some(max) = retention.max_bytes {
        candidates.sort_by_key(|c| c.first_id);
        for candidate in candidates {
            if total <= max {
                break;
            }
            total -= candidate.bytes;
            deletions.push(candidate);
        }
    }
    Ok(deletions)
}
