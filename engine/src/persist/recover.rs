//! Reading history back at start: every log streamed record by record
//! through a bounded buffer, torn tails cut off (and the cut synced), and
//! no more history kept than the server will hold.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read};

use chatd_core::MessageId;
use chatd_core::history::{self, IdFloor, Record, RecordError};

use super::storage::{LogFile, Storage};

/// Bytes read from a log at a time.
const CHUNK: usize = 64 * 1024;

/// How much history start-up keeps, and how long a record may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryLimits {
    /// Most rooms whose history is kept: those written most recently
    /// (the server's `max_rooms`).
    pub max_rooms: usize,
    /// Records kept per room: its last ones (the server's `history_size`).
    pub history_size: usize,
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
            max_record_bytes: config.max_line_bytes.saturating_mul(6).saturating_add(4096),
        }
    }

    /// Keeps everything (tests and tools that read whole logs).
    pub fn unlimited() -> Self {
        Self {
            max_rooms: usize::MAX,
            history_size: usize::MAX,
            max_record_bytes: 16 << 20,
        }
    }
}

/// What start-up found in the data directory.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The history kept: the last `history_size` restorable records of
    /// each of the `max_rooms` most recently written rooms, room by room
    /// in file order.
    pub records: Vec<Record>,
    /// Records read in all logs (kept or not).
    pub read: usize,
    /// Logs read.
    pub logs: usize,
    /// Damaged lines skipped in the middle of logs.
    pub skipped: usize,
    /// Torn tails cut off.
    pub torn: usize,
    /// Where message ids continue: above every id any log shows as used.
    pub next_id: u64,
}

impl Recovered {
    /// What to give `Server::restore`: the history kept, then one
    /// reservation that carries the id floor of every record read
    /// (including the ones not kept).
    pub fn into_restore(self) -> impl Iterator<Item = Record> {
        let floor =
            (self.next_id > 1).then(|| Record::reservation(MessageId::new(self.next_id - 1), 0));
        self.records.into_iter().chain(floor)
    }
}

/// Reads every log in `storage`, cutting torn tails off the files (and
/// syncing the cut, so appends start on a clean line even after another
/// crash) and skipping damaged records, each reported in the log.
pub fn recover<S: Storage>(storage: &mut S, limits: &RecoveryLimits) -> io::Result<Recovered> {
    let mut names = storage.list()?;
    names.sort();
    let mut recovered = Recovered::default();
    let mut floor = IdFloor::default();
    // Min-heap on the newest id: the room written longest ago leaves first.
    let mut rooms: BinaryHeap<Reverse<KeptRoom>> = BinaryHeap::new();
    for name in names {
        let mut ring: VecDeque<Record> = VecDeque::new();
        let reader = storage.read(&name)?;
        let scan = scan(reader, limits.max_record_bytes, |record| {
            recovered.read += 1;
            floor.observe(&record);
            if record.is_restorable() && limits.history_size > 0 {
                if ring.len() >= limits.history_size {
                    ring.pop_front();
                }
                ring.push_back(record);
            }
        })?;
        recovered.logs += 1;
        for damage in &scan.skipped {
            tracing::warn!(log = %name, offset = damage.offset, len = damage.len, error = %damage.error, "skipped a damaged history record");
        }
        if scan.more_skipped > 0 {
            tracing::warn!(log = %name, count = scan.more_skipped, "skipped more damaged history records");
        }
        recovered.skipped += scan.skipped.len() + scan.more_skipped;
        if let Some(torn) = &scan.torn {
            tracing::warn!(log = %name, offset = torn.offset, len = torn.len, error = %torn.error, "cut off a torn history tail");
            let mut log = storage.open(&name)?.log;
            log.set_len(scan.valid_len)?;
            log.sync()?;
            recovered.torn += 1;
        }
        if let Some(newest) = ring.iter().map(|r| r.id).max() {
            rooms.push(Reverse(KeptRoom {
                newest,
                records: ring,
            }));
            if rooms.len() > limits.max_rooms {
                rooms.pop();
            }
        }
    }
    let mut rooms: Vec<KeptRoom> = rooms.into_iter().map(|Reverse(room)| room).collect();
    rooms.sort_by(|a, b| a.records[0].room.cmp(&b.records[0].room));
    recovered.records = rooms.into_iter().flat_map(|room| room.records).collect();
    recovered.next_id = floor.next();
    Ok(recovered)
}

/// One room's kept history, ordered by its newest record.
struct KeptRoom {
    newest: MessageId,
    records: VecDeque<Record>,
}

impl PartialEq for KeptRoom {
    fn eq(&self, other: &Self) -> bool {
        self.newest == other.newest
    }
}

impl Eq for KeptRoom {}

impl PartialOrd for KeptRoom {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeptRoom {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.newest.get().cmp(&other.newest.get())
    }
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
    mut reader: R,
    max_record: usize,
    mut on_record: impl FnMut(Record),
) -> io::Result<LogScan> {
    let mut scan = LogScan::default();
    let mut pending = Pending::default();
    let mut chunk = vec![0; CHUNK];
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
                        on_record(record);
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
