//! Reading history back at start, fast: each history's newest segment is
//! read backwards from its end in 64 KiB chunks to its last good record
//! (a torn tail after it is cut off, and the cut synced), then only as far
//! back as the server will hold. What start-up reads does not grow with
//! what is on disk.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Arc;

use chatd_core::history::{self, IdFloor, Record, RecordError};
use chatd_core::{MessageId, RoomName};

use super::migrate::migrate;
use super::segment::{
    BackLine, BackLines, IDS_LOG, WHISPERS_DIR, index_path, is_history_dir, leftovers,
    list_segments, segments_in,
};
use super::storage::{LogFile, Storage};

/// How much history start-up keeps, and how long a record may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryLimits {
    /// Most rooms whose history is kept: those written most recently
    /// (the server's `max_rooms`).
    pub max_rooms: usize,
    /// Records kept per room: its last ones (the server's `history_size`).
    pub history_size: usize,
    /// Memory for all kept records together, counted as the core counts
    /// its history (the server's `history_bytes`): rooms are kept newest
    /// first until it is used.
    pub history_bytes: usize,
    /// Longest record line read; a longer line is damage and is skipped
    /// without being held in memory.
    pub max_record_bytes: usize,
}

impl RecoveryLimits {
    /// The limits that fit a server with `config`: a record holds at most
    /// one chat line, whose JSON escaping can at worst grow it sixfold
    /// (`\u001f`), plus the other fields.
    pub fn for_config(config: &chatd_core::Config) -> Self {
        Self {
            max_rooms: config.max_rooms,
            history_size: config.history_size,
            history_bytes: config.history_bytes,
            max_record_bytes: config.max_line_bytes.saturating_mul(6).saturating_add(4096),
        }
    }

    /// Keeps everything (tests and tools that read whole histories).
    pub fn unlimited() -> Self {
        Self {
            max_rooms: usize::MAX,
            history_size: usize::MAX,
            history_bytes: usize::MAX,
            max_record_bytes: 16 << 20,
        }
    }
}

/// What start-up found in the data directory.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The history kept: the last `history_size` restorable records of
    /// the rooms written most recently, newest rooms first until
    /// `history_bytes` is used, room by room in name order.
    pub records: Vec<Record>,
    /// Rooms whose kept records do not reach back to their first stored
    /// record (or that were not kept at all): their older records are on
    /// disk only. In name order.
    pub incomplete: Vec<RoomName>,
    /// Records decoded.
    pub read: usize,
    /// Histories found (rooms, whispers, id reservations).
    pub logs: usize,
    /// Damaged lines skipped in the middle of what was read.
    pub skipped: usize,
    /// Torn tails cut off.
    pub torn: usize,
    /// Bytes read from the histories' files (migration aside).
    pub bytes_read: u64,
    /// Old flat logs moved into segment directories at this start.
    pub migrated: usize,
    /// Where message ids continue: above every id any log shows as used.
    pub next_id: u64,
}

impl Recovered {
    /// What to give `Server::restore`: the history kept, then one
    /// reservation that carries the id floor of every history (including
    /// records not kept).
    pub fn into_restore(self) -> impl Iterator<Item = Record> {
        let floor =
            (self.next_id > 1).then(|| Record::reservation(MessageId::new(self.next_id - 1), 0));
        self.records.into_iter().chain(floor)
    }
}

/// What one kept record costs in the core's history (as
/// `chatd_core::server::histories::footprint` counts it).
pub fn footprint(record: &Record) -> usize {
    size_of::<Record>() + record.text.len() + 2 * size_of::<usize>() + size_of::<Arc<Record>>()
}

/// The end of a history found at start: its last good record.
struct Tail {
    dir: String,
    last: Record,
    /// The segment holding it, and where the record's line ends.
    segment: String,
    end: u64,
}

/// Reads what start-up needs from `storage`: first moves old flat logs
/// into segment directories ([`migrate`]), then per history finds the
/// last good record reading backwards (cutting torn tails off the files
/// and syncing the cut, so appends start on a clean line even after
/// another crash), then reads the tails of the rooms written most
/// recently, within `limits`.
pub fn recover<S: Storage>(storage: &mut S, limits: &RecoveryLimits) -> io::Result<Recovered> {
    let mut recovered = Recovered {
        migrated: migrate(storage, limits.max_record_bytes)?.logs,
        ..Recovered::default()
    };
    let mut floor = IdFloor::default();
    let mut entries = storage.list("")?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rooms = Vec::new();
    for entry in entries {
        if !entry.dir && entry.name == IDS_LOG {
            recovered.logs += 1;
            if let Some((record, _)) =
                last_good(storage, IDS_LOG, entry.len, limits, &mut recovered)?
            {
                // The last reservation written is what counts (IdFloor).
                floor.observe(&record);
            }
        } else if entry.dir && is_history_dir(&entry.name) {
            let Some(tail) = find_tail(storage, &entry.name, limits, &mut recovered)? else {
                continue;
            };
            recovered.logs += 1;
            floor.observe(&tail.last);
            if tail.dir != WHISPERS_DIR {
                rooms.push(tail);
            }
        }
    }
    // Newest rooms first: they are kept while the limits allow.
    rooms.sort_by_key(|tail| std::cmp::Reverse(tail.last.id.get()));
    let mut budget = limits.history_bytes;
    let mut exhausted = false;
    let mut kept: Vec<(RoomName, VecDeque<Record>)> = Vec::new();
    for (index, tail) in rooms.iter().enumerate() {
        let Ok(room) = RoomName::parse(&tail.dir) else {
            continue;
        };
        if exhausted || index >= limits.max_rooms {
            recovered.incomplete.push(room);
            continue;
        }
        let (records, end) = read_tail(storage, tail, limits, &mut budget, &mut recovered)?;
        if end != TailEnd::Complete {
            recovered.incomplete.push(room.clone());
        }
        exhausted = end == TailEnd::Budget;
        if !records.is_empty() {
            kept.push((room, records));
        }
    }
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    recovered.records = kept.into_iter().flat_map(|(_, records)| records).collect();
    recovered.incomplete.sort();
    recovered.next_id = floor.next();
    Ok(recovered)
}

/// The last good record of the file `name` (ending at `len`) and where its
/// line ends; anything after it is a torn tail, cut off and synced.
fn last_good<S: Storage>(
    storage: &mut S,
    name: &str,
    len: u64,
    limits: &RecoveryLimits,
    recovered: &mut Recovered,
) -> io::Result<Option<(Record, u64)>> {
    let mut lines = BackLines::new(name, len, limits.max_record_bytes);
    let mut found = None;
    // What is wrong with the file's last line, for the log.
    let mut last_error: Option<RecordError> = None;
    while let Some(line) = lines.prev(storage)? {
        if let Some(record) = line.record() {
            recovered.read += 1;
            found = Some((record, line.end()));
            break;
        }
        last_error.get_or_insert_with(|| line_error(&line, limits.max_record_bytes));
    }
    recovered.bytes_read += lines.bytes_read;
    let good_end = found.as_ref().map_or(0, |(_, end)| *end);
    if good_end < len {
        let error = last_error.unwrap_or(RecordError::Unterminated);
        tracing::warn!(log = %name, offset = good_end, len = len - good_end, %error, "cut off a torn history tail");
        let mut log = storage.open(name)?.log;
        log.set_len(good_end)?;
        log.sync()?;
        recovered.torn += 1;
    }
    Ok(found)
}

/// Why a line read backwards is not a record.
fn line_error(line: &BackLine, max_record: usize) -> RecordError {
    match line {
        BackLine::Line {
            bytes,
            terminated: true,
            ..
        } => history::decode(bytes)
            .err()
            .unwrap_or(RecordError::Unterminated),
        BackLine::Line { .. } => RecordError::Unterminated,
        BackLine::Overlong { .. } => {
            RecordError::Invalid(format!("longer than {max_record} bytes"))
        }
    }
}

/// The last good record of a history directory: in its newest segment, or
/// (when that has none, after a crash between sealing a segment and the
/// first record of the next) in the newest segment before it. A newest
/// segment without a good record is removed.
fn find_tail<S: Storage>(
    storage: &mut S,
    dir: &str,
    limits: &RecoveryLimits,
    recovered: &mut Recovered,
) -> io::Result<Option<Tail>> {
    let entries = storage.list(dir)?;
    for leftover in leftovers(dir, &entries) {
        match storage.remove(&leftover) {
            Ok(()) => tracing::info!(file = %leftover, "removed a leftover history index file"),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(file = %leftover, %error, "cannot remove a leftover history index file")
            }
        }
    }
    let mut segments = segments_in(dir, &entries);
    while let Some(newest) = segments.pop() {
        if let Some((last, end)) = last_good(storage, &newest.path, newest.len, limits, recovered)?
        {
            return Ok(Some(Tail {
                dir: dir.to_owned(),
                last,
                segment: newest.path,
                end,
            }));
        }
        tracing::warn!(segment = %newest.path, "removed a history segment without a whole record");
        match storage.remove(&index_path(&newest.path)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        storage.remove(&newest.path)?;
        storage.sync_dir(dir)?;
    }
    Ok(None)
}

/// Why reading a room's tail stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TailEnd {
    /// Everything the room has on disk was kept.
    Complete,
    /// At `history_size` records, or some records were not restorable.
    Partial,
    /// The memory budget for all rooms is used up.
    Budget,
}

/// Reads a room's last records backwards from its tail: at most
/// `history_size` records, restorable ones kept while `budget` lasts.
fn read_tail<S: Storage>(
    storage: &mut S,
    tail: &Tail,
    limits: &RecoveryLimits,
    budget: &mut usize,
    recovered: &mut Recovered,
) -> io::Result<(VecDeque<Record>, TailEnd)> {
    let mut records = VecDeque::new();
    let mut examined = 0usize;
    let mut end_state = TailEnd::Complete;
    let segments = list_segments(storage, &tail.dir)?;
    let Some(newest) = segments.iter().position(|s| s.path == tail.segment) else {
        return Ok((records, TailEnd::Partial));
    };
    for segment in segments[..=newest].iter().rev() {
        let end = if segment.path == tail.segment {
            tail.end
        } else {
            segment.len
        };
        let mut lines = BackLines::new(&segment.path, end, limits.max_record_bytes);
        let result = (|| {
            while let Some(line) = lines.prev(storage)? {
                let Some(record) = line.record() else {
                    recovered.skipped += 1;
                    // A file of garbage must not flood the log.
                    if recovered.skipped <= MAX_DETAILED {
                        tracing::warn!(log = %segment.path, offset = line.offset(), "skipped a damaged history record");
                    }
                    continue;
                };
                recovered.read += 1;
                if examined == limits.history_size {
                    return Ok(Some(TailEnd::Partial));
                }
                examined += 1;
                if !record.is_restorable() {
                    end_state = TailEnd::Partial;
                    continue;
                }
                let cost = footprint(&record);
                if cost > *budget {
                    *budget = 0;
                    return Ok(Some(TailEnd::Budget));
                }
                *budget -= cost;
                records.push_front(record);
            }
            Ok::<_, io::Error>(None)
        })();
        recovered.bytes_read += lines.bytes_read;
        if let Some(stop) = result? {
            return Ok((records, stop));
        }
    }
    Ok((records, end_state))
}

/// A damaged stretch of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset where the damaged line starts.
    pub offset: u64,
    /// Its length in bytes (for a torn tail: to the end of the file).
    pub len: u64,
    /// What was wrong (for a torn tail: with its last line).
    pub error: RecordError,
}

/// What [`scan`] found in one log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogScan {
    /// Damaged lines followed by good ones (the first [`MAX_DETAILED`]).
    pub skipped: Vec<Damage>,
    /// Further damaged lines followed by good ones, counted only.
    pub more_skipped: usize,
    /// Damage after the last good record: cut the log to `valid_len`.
    pub torn: Option<Damage>,
    /// Length of the log up to and including its last good record.
    pub valid_len: u64,
}

/// Damaged lines described one by one per log; a log of garbage must not
/// fill memory with descriptions of it.
pub const MAX_DETAILED: usize = 64;

/// Reads a log record by record, handing each good one to `on_record`.
///
/// Holds at most one read chunk and one line of at most `max_record`
/// bytes, whatever the log's size: a longer line is damage, dropped as it
/// streams by. The same rules as `chatd_core::history::recover`: damage
/// before a good record is skipped, damage after the last one is the torn
/// tail.
pub fn scan<R: Read>(
    reader: R,
    max_record: usize,
    mut on_record: impl FnMut(Record),
) -> io::Result<LogScan> {
    scan_lines(reader, max_record, |_, _, record| on_record(record))
}

/// [`scan`], also giving each record's offset and line length (LF
/// included), as the segment index wants them.
pub fn scan_lines<R: Read>(
    mut reader: R,
    max_record: usize,
    mut on_record: impl FnMut(u64, u64, Record),
) -> io::Result<LogScan> {
    let mut scan = LogScan::default();
    let mut pending = Pending::default();
    let mut chunk = vec![0; super::segment::CHUNK];
    let mut line: Vec<u8> = Vec::new();
    let mut overlong = false;
    let mut line_start: u64 = 0;
    let mut offset: u64 = 0;
    loop {
        let read = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let mut rest = &chunk[..read];
        while !rest.is_empty() {
            let (part, terminated) = match memchr::memchr(b'\n', rest) {
                Some(end) => (&rest[..end], true),
                None => (rest, false),
            };
            if !overlong && line.len() + part.len() <= max_record {
                line.extend_from_slice(part);
            } else {
                overlong = true;
                line = Vec::new();
            }
            let consumed = part.len() + usize::from(terminated);
            offset += consumed as u64;
            rest = &rest[consumed..];
            if terminated {
                let result = if overlong {
                    Err(RecordError::Invalid(format!(
                        "longer than {max_record} bytes"
                    )))
                } else {
                    history::decode(&line)
                };
                let damage = Damage {
                    offset: line_start,
                    len: offset - line_start,
                    error: RecordError::Unterminated,
                };
                match result {
                    Ok(record) => {
                        pending.skip_into(&mut scan);
                        scan.valid_len = offset;
                        on_record(line_start, offset - line_start, record);
                    }
                    Err(error) => pending.push(Damage { error, ..damage }),
                }
                line.clear();
                overlong = false;
                line_start = offset;
            }
        }
    }
    if line_start < offset {
        pending.push(Damage {
            offset: line_start,
            len: offset - line_start,
            error: RecordError::Unterminated,
        });
    }
    if let Some((first, last_error)) = pending.first.zip(pending.last_error) {
        scan.torn = Some(Damage {
            offset: first,
            len: offset - first,
            error: last_error,
        });
    }
    Ok(scan)
}

/// Damage since the last good record, not yet known to be skipped or torn.
#[derive(Default)]
struct Pending {
    first: Option<u64>,
    last_error: Option<RecordError>,
    detailed: Vec<Damage>,
    more: usize,
}

impl Pending {
    fn push(&mut self, damage: Damage) {
        self.first.get_or_insert(damage.offset);
        self.last_error = Some(damage.error.clone());
        if self.detailed.len() < MAX_DETAILED {
            self.detailed.push(damage);
        } else {
            self.more += 1;
        }
    }

    fn skip_into(&mut self, scan: &mut LogScan) {
        let room = MAX_DETAILED.saturating_sub(scan.skipped.len());
        let detailed = std::mem::take(&mut self.detailed);
        let extra = detailed.len().saturating_sub(room);
        scan.skipped.extend(detailed.into_iter().take(room));
        scan.more_skipped += extra + self.more;
        *self = Self::default();
    }
}
