//! Reading stored history: answers to [`HistoryQuery`]s (`#history`
//! beyond what the core holds in memory, `#search`) and `chatd history
//! export`.
//!
//! The reader only reads, with plain `std::fs`, while the writer appends:
//! every whole LF-terminated line that decodes is a record, a damaged line
//! is skipped, and an unterminated last line (a write in progress or a torn
//! tail not yet cut) is ignored. Nothing here panics, whatever the bytes.
//!
//! Layout (docs/HISTORY.md): a room's records are in `<data>/<room>/`, in
//! segments named after their first record's id (`<FIRSTID>.log`, 20
//! digits); whispers in `<data>/_whispers/`. A segment holds the ids from
//! its name up to the next segment's; only the newest is still written.
//! Segments may have a sparse index (`<FIRSTID>.idx`, see
//! [`super::index`]) whose blocks let a reader skip what cannot matter: by
//! id range (the query's [`Collector::wants`]) and, for a search, by the
//! bloom filter of each block's words. A sealed segment's index covers it
//! whole; the newest segment's covers what it held when the writer last
//! wrote it, and the bytes after it are read as they are.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chatd_core::MessageId;
use chatd_core::history::{self, Record};
use chatd_core::history_query::{
    Collector, HistoryAnswer, HistoryQuery, Position, Scope, Shortfall,
};
use chatd_core::ids::RoomName;

use super::index::{Block, SegmentIndex};
use super::segment::{self, WHISPERS_DIR, parse_segment_name};

/// How long a search may read before it answers with what it found
/// ([`Shortfall::TimeBound`]).
pub const SEARCH_TIME: Duration = Duration::from_millis(250);

/// How long any other query may read: a safety net (a page of history
/// normally costs a few reads), so that no query holds the reader thread
/// for long whatever lies on disk.
pub const HISTORY_TIME: Duration = Duration::from_secs(5);

/// How long the reader thread lets a query read.
fn time_bound(scope: &Scope) -> Duration {
    match scope {
        Scope::Search { .. } => SEARCH_TIME,
        Scope::Room { .. } | Scope::Whispers { .. } => HISTORY_TIME,
    }
}

/// Queries waiting for the reader thread at most; beyond, `submit` refuses.
pub const QUEUE: usize = 64;

/// Bytes read from a segment at a time.
const CHUNK: usize = 64 * 1024;

/// Longest line read; a longer one is damage, skipped without being held
/// in memory. Far above any record the server writes.
const MAX_LINE: usize = 4 << 20;

/// Read sizes: the defaults, or small ones in tests to exercise every
/// line crossing a chunk boundary.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes read at a time.
    chunk: usize,
    /// Longest line read; longer is damage.
    max_line: usize,
}

impl Limits {
    pub(crate) const DEFAULT: Self = Self {
        chunk: CHUNK,
        max_line: MAX_LINE,
    };
}

/// Lines scanned between two looks at the clock.
const LINES_PER_CLOCK: u32 = 256;

/// The file name of the segment whose first record has id `first`.
pub fn segment_name(first: MessageId) -> String {
    segment::segment_name(first.get())
}

/// The file name of the index of the segment whose first record has id
/// `first`.
pub fn index_name(first: MessageId) -> String {
    segment::index_path(&segment_name(first))
}

/// One segment file of a room (or of the whispers).
#[derive(Debug, Clone)]
struct Segment {
    /// Its first record's id (from its name).
    first: u64,
    /// The last id it can hold: one below the next segment's first.
    last: u64,
    /// The newest segment of its directory (still written; its index, if
    /// any, covers only part of it).
    newest: bool,
    dir: Arc<Path>,
}

impl Segment {
    fn log_path(&self) -> PathBuf {
        self.dir.join(segment_name(MessageId::new(self.first)))
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join(index_name(MessageId::new(self.first)))
    }
}

/// The segments of one directory, oldest first. A missing directory has
/// none.
fn list_segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut firsts = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_segment_name) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    firsts.dedup();
    let dir: Arc<Path> = dir.into();
    let count = firsts.len();
    Ok(firsts
        .iter()
        .enumerate()
        .map(|(n, &first)| Segment {
            first,
            last: firsts
                .get(n + 1)
                .map_or(u64::MAX, |next| next.saturating_sub(1).max(first)),
            newest: n + 1 == count,
            dir: dir.clone(),
        })
        .collect())
}

/// The room directories under `dir` (names that are room names).
fn list_rooms(dir: &Path) -> io::Result<Vec<RoomName>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut rooms = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // Room names are lowercase; anything else is not ours.
        let Ok(room) = RoomName::parse(&name) else {
            continue;
        };
        if room.as_str() == name && entry.file_type()?.is_dir() {
            rooms.push(room);
        }
    }
    rooms.sort();
    Ok(rooms)
}

/// Why reading stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The deadline passed.
    Time,
}

/// One query being answered.
struct Run<'a> {
    query: &'a HistoryQuery,
    collector: Collector,
    deadline: Option<Instant>,
    /// Search words, when the query is a search.
    words: &'a [String],
    unreadable: bool,
    lines: u32,
    limits: Limits,
    /// A line lowercased, for the search pre-filter.
    lowered: Vec<u8>,
    /// Bytes of segments read so far.
    bytes_read: u64,
}

impl Run<'_> {
    fn check_time(&self) -> Result<(), Stop> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(Stop::Time),
            _ => Ok(()),
        }
    }

    /// Whether ids `first..=last` could still change the answer, `below`
    /// taken into account.
    fn wants(&self, first: u64, last: u64) -> bool {
        let last = match self.query.below {
            Some(below) if below.get() <= first => return false,
            Some(below) => last.min(below.get() - 1),
            None => last,
        };
        self.collector
            .wants(MessageId::new(first), MessageId::new(last))
    }

    fn failed(&mut self, what: &Path, error: &io::Error) {
        tracing::warn!(path = %what.display(), %error, "could not read stored history");
        self.unreadable = true;
    }

    /// Reads one segment: the blocks that may matter when it has a usable
    /// index; else from its end backwards when `descending` (newest
    /// records wanted first), or all of it from the start.
    fn segment(&mut self, segment: &Segment, descending: bool) -> Result<(), Stop> {
        self.check_time()?;
        if !self.wants(segment.first, segment.last) {
            return Ok(());
        }
        let path = segment.log_path();
        let mut file = match File::open(&path) {
            Ok(file) => file,
            // Deleted by retention since it was listed: its records are gone.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                self.failed(&path, &error);
                return Ok(());
            }
        };
        // `#history` reads the newest segment backwards from its end, a
        // few chunks: its index would cost more than it saves.
        let index = if segment.newest && self.words.is_empty() {
            None
        } else {
            self.index(segment, &file)
        };
        let result = match index {
            None if descending => self.scan_backward(&mut file, segment.first, 0),
            None => self.scan(&mut file, 0, None),
            Some(index) => self.blocks(&mut file, &index, descending, segment.first),
        };
        match result {
            Ok(()) => Ok(()),
            Err(ScanError::Stop(stop)) => Err(stop),
            Err(ScanError::Io(error)) => {
                self.failed(&path, &error);
                Ok(())
            }
        }
    }

    /// The segment's index, when it is intact and fits the segment. An
    /// index with a block past the segment's length is ignored whole: the
    /// segment was cut back since it was written, and bytes after the cut
    /// may be other records than its blocks describe.
    fn index(&self, segment: &Segment, file: &File) -> Option<SegmentIndex> {
        let bytes = std::fs::read(segment.index_path()).ok()?;
        let index = SegmentIndex::parse(&bytes)?;
        let len = file.metadata().ok()?.len();
        let fits = index.blocks.iter().all(|block| {
            block.offset.saturating_add(block.len) <= len
                && block.first_id.get() >= segment.first
                && block.last_id.get() <= segment.last
        });
        if !fits {
            tracing::debug!(path = %segment.index_path().display(), "ignored an index that does not fit its segment");
        }
        fits.then_some(index)
    }

    /// Reads the blocks of an indexed segment that may matter, and any
    /// bytes after the last block (none in a segment sealed by the writer;
    /// in the newest, what was appended since its index was written).
    fn blocks(
        &mut self,
        file: &mut File,
        index: &SegmentIndex,
        descending: bool,
        segment_first: u64,
    ) -> Result<(), ScanError> {
        let tail = index
            .blocks
            .last()
            .map_or(0, |block| block.offset + block.len);
        let mut order: Vec<&Block> = index.blocks.iter().collect();
        if descending {
            order.reverse();
            self.scan_backward(file, segment_first, tail)?;
        }
        for block in order {
            self.check_time()?;
            if !self.wants(block.first_id.get(), block.last_id.get())
                || !block.may_contain_all(self.words)
            {
                continue;
            }
            self.scan(file, block.offset, Some(block.len))?;
        }
        if !descending {
            self.scan(file, tail, None)?;
        }
        Ok(())
    }

    /// Offers every admitted record of `len` bytes of `file` from `offset`
    /// (to its end when `None`).
    fn scan(&mut self, file: &mut File, offset: u64, len: Option<u64>) -> Result<(), ScanError> {
        file.seek(SeekFrom::Start(offset))?;
        let reader: Box<dyn Read + '_> = match len {
            Some(len) => Box::new(Read::take(&mut *file, len)),
            None => Box::new(&mut *file),
        };
        let count = std::cell::Cell::new(0);
        let reader = Counted {
            inner: reader,
            count: &count,
        };
        let result = for_each_line(reader, self.limits, |line| {
            self.line(line)?;
            Ok(())
        });
        self.bytes_read += count.get();
        result
    }

    /// Reads a segment from its end backwards down to `floor` (a line
    /// start), chunk by chunk, and stops as soon as no older record of it
    /// can change the answer: a page of the newest records costs a few
    /// chunks, not the whole segment.
    fn scan_backward(
        &mut self,
        file: &mut File,
        segment_first: u64,
        floor: u64,
    ) -> Result<(), ScanError> {
        let mut pos = file.seek(SeekFrom::End(0))?;
        let mut chunk = vec![0; self.limits.chunk.max(1)];
        // The end of a line whose start lies before `pos` (LF included).
        let mut pending: Vec<u8> = Vec::new();
        // The bytes up to the next LF found (reading backwards) belong to
        // a line that is ignored: the unterminated last line, or one
        // longer than the limit.
        let mut skip_to_lf = true;
        while pos > floor {
            let start = pos.saturating_sub(chunk.len() as u64).max(floor);
            let len = (pos - start) as usize;
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut chunk[..len])?;
            self.bytes_read += len as u64;
            pos = start;
            let mut data = chunk[..len].to_vec();
            data.append(&mut pending);
            let mut end = data.len();
            if skip_to_lf {
                match memchr::memrchr(b'\n', &data) {
                    Some(last) => {
                        end = last + 1;
                        skip_to_lf = false;
                    }
                    None => continue,
                }
            }
            let mut lines = &data[..end];
            if start > floor {
                // The first line may start in an earlier chunk.
                let head = memchr::memchr(b'\n', lines).map_or(lines.len(), |lf| lf + 1);
                // `head` includes its LF; a line of `max_line` bytes is kept.
                if head > self.limits.max_line + 1 {
                    skip_to_lf = true;
                } else {
                    pending = lines[..head].to_vec();
                }
                lines = &lines[head..];
            }
            // Every line in `lines` ends with its LF; newest first.
            let mut rest = lines;
            while let Some(body) = rest.strip_suffix(b"\n") {
                let begin = memchr::memrchr(b'\n', body).map_or(0, |lf| lf + 1);
                let line = &body[begin..];
                rest = &body[..begin];
                if line.len() > self.limits.max_line {
                    continue;
                }
                // Safe on a damaged line's id too (read off its front, it
                // may be anything): backwards reads only look for the
                // newest records below a point, and once the collector is
                // full every older record is below what it keeps.
                if let Some(id) = self.line(line)?
                    && !self.wants(segment_first, id)
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Offers one line's record if the query admits it. Returns the line's
    /// id when known (read off its front, or decoded).
    fn line(&mut self, line: &[u8]) -> Result<Option<u64>, Stop> {
        self.lines += 1;
        if self.lines.is_multiple_of(LINES_PER_CLOCK) {
            self.check_time()?;
        }
        // Most lines of a segment are outside the answer: their id, read
        // off the front of the JSON, says so without decoding.
        let peeked = peek_id(line);
        if let Some(id) = peeked
            && !self.wants(id, id)
        {
            return Ok(Some(id));
        }
        if !may_match(line, self.words, &mut self.lowered) {
            return Ok(peeked);
        }
        let Ok(record) = history::decode(line) else {
            return Ok(None);
        };
        let id = record.id.get();
        if self.query.admits(&record) {
            self.collector.offer(Arc::new(record));
        }
        Ok(Some(id))
    }
}

/// Whether a record line may hold every one of `words` (lowercase) as
/// words of its text, without decoding it: a line of plain ASCII without
/// JSON `\u` escapes holds a word only if its bytes contain the word,
/// ignoring ASCII case. Any other line may (it is decoded to know).
fn may_match(line: &[u8], words: &[String], lowered: &mut Vec<u8>) -> bool {
    if words.is_empty() || !line.is_ascii() || memchr::memmem::find(line, b"\\u").is_some() {
        return true;
    }
    lowered.clear();
    lowered.extend(line.iter().map(u8::to_ascii_lowercase));
    words
        .iter()
        .all(|word| memchr::memmem::find(lowered, word.as_bytes()).is_some())
}

/// A reader that counts the bytes read through it.
struct Counted<'a, R> {
    inner: R,
    count: &'a std::cell::Cell<u64>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Why a scan stopped.
#[derive(Debug)]
enum ScanError {
    Stop(Stop),
    Io(io::Error),
}

impl From<Stop> for ScanError {
    fn from(stop: Stop) -> Self {
        Self::Stop(stop)
    }
}

impl From<io::Error> for ScanError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// Calls `each` with every LF-terminated line of `reader` (without its LF)
/// no longer than `limits.max_line`; an unterminated last line is ignored.
fn for_each_line<E: From<io::Error>>(
    mut reader: impl Read,
    limits: Limits,
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut chunk = vec![0; limits.chunk.max(1)];
    let mut line: Vec<u8> = Vec::new();
    let mut overlong = false;
    loop {
        let read = match reader.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error.into()),
        };
        let mut rest = &chunk[..read];
        while !rest.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                if !overlong && line.len() + rest.len() <= limits.max_line {
                    line.extend_from_slice(rest);
                } else {
                    overlong = true;
                    line = Vec::new();
                }
                break;
            };
            let part = &rest[..end];
            rest = &rest[end + 1..];
            if overlong || line.len() + part.len() > limits.max_line {
                // Damage: skipped.
            } else if line.is_empty() {
                each(part)?;
            } else {
                line.extend_from_slice(part);
                each(&line)?;
            }
            line.clear();
            overlong = false;
        }
    }
}

/// The id of a record line as the writer writes it
/// (`CRC32HEX {"id":N,...`), without decoding the line. `None` when the
/// line does not start that way; then only decoding can tell.
fn peek_id(line: &[u8]) -> Option<u64> {
    let rest = line.get(9..)?.strip_prefix(b"{\"id\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Answers `query` from the history stored under `dir`, reading until
/// `deadline` at most (then the answer holds what was found, with
/// [`Shortfall::TimeBound`]). A directory or file that cannot be read is
/// logged and gives [`Shortfall::Unreadable`]; missing directories are
/// empty histories.
pub fn answer(dir: &Path, query: &HistoryQuery, deadline: Option<Instant>) -> HistoryAnswer {
    answer_with(dir, query, deadline, Limits::DEFAULT)
}

fn answer_with(
    dir: &Path,
    query: &HistoryQuery,
    deadline: Option<Instant>,
    limits: Limits,
) -> HistoryAnswer {
    answer_counted(dir, query, deadline, limits).0
}

/// [`answer`], also giving the bytes of segments it read.
pub(crate) fn answer_counted(
    dir: &Path,
    query: &HistoryQuery,
    deadline: Option<Instant>,
    limits: Limits,
) -> (HistoryAnswer, u64) {
    let words: &[String] = match &query.scope {
        Scope::Search { terms, .. } => terms.words(),
        Scope::Room { .. } | Scope::Whispers { .. } => &[],
    };
    let mut run = Run {
        query,
        collector: query.collector(),
        deadline,
        words,
        unreadable: false,
        lines: 0,
        limits,
        lowered: Vec::new(),
        bytes_read: 0,
    };
    let stopped = read_scope(dir, &mut run).is_err();
    let shortfall = if run.unreadable {
        Some(Shortfall::Unreadable)
    } else if stopped {
        Some(Shortfall::TimeBound)
    } else {
        None
    };
    let bytes_read = run.bytes_read;
    (
        HistoryAnswer {
            request: query.request,
            records: run.collector.finish(),
            shortfall,
        },
        bytes_read,
    )
}

/// Lists the segments the query's scope covers and reads them in the
/// order that fills the collector soonest.
fn read_scope(dir: &Path, run: &mut Run<'_>) -> Result<(), Stop> {
    let position = run.query.position;
    match &run.query.scope {
        Scope::Room { room, .. } => {
            let segments = segments_of(dir.join(room.as_str()), run);
            read_directory(&segments, position, run)
        }
        Scope::Whispers { .. } => {
            let segments = segments_of(dir.join(WHISPERS_DIR), run);
            read_directory(&segments, position, run)
        }
        Scope::Search { room, .. } => {
            let rooms = match room {
                Some(room) => vec![room.clone()],
                None => list_rooms(dir).unwrap_or_else(|error| {
                    run.failed(dir, &error);
                    Vec::new()
                }),
            };
            let mut segments: Vec<Segment> = rooms
                .iter()
                .flat_map(|room| segments_of(dir.join(room.as_str()), run))
                .collect();
            // Newest first across rooms, read backwards, for the newest
            // matches (what `#search` asks); oldest first, read forwards,
            // for any other position: reading backwards stops once nothing
            // older can matter, which holds only when older is below.
            segments.sort_by_key(|segment| std::cmp::Reverse(segment.first));
            let ascending = !matches!(position, Position::Latest | Position::Before(_));
            if ascending {
                segments.reverse();
            }
            for segment in &segments {
                run.segment(segment, !ascending)?;
            }
            Ok(())
        }
    }
}

fn segments_of(dir: PathBuf, run: &mut Run<'_>) -> Vec<Segment> {
    list_segments(&dir).unwrap_or_else(|error| {
        run.failed(&dir, &error);
        Vec::new()
    })
}

/// Reads one directory's segments (oldest first in `segments`), starting
/// where the position points.
fn read_directory(segments: &[Segment], position: Position, run: &mut Run<'_>) -> Result<(), Stop> {
    // The segment holding `id`, or the oldest.
    let holding = |id: u64| {
        segments
            .partition_point(|segment| segment.first <= id)
            .saturating_sub(1)
    };
    match position {
        Position::Latest | Position::Before(_) => {
            for segment in segments.iter().rev() {
                run.segment(segment, true)?;
            }
        }
        Position::Since(at) => {
            for segment in &segments[holding(at.get().saturating_add(1))..] {
                run.segment(segment, false)?;
            }
        }
        Position::Around(at) => {
            let pivot = holding(at.get());
            for segment in &segments[pivot..] {
                run.segment(segment, false)?;
            }
            for segment in segments[..pivot].iter().rev() {
                run.segment(segment, true)?;
            }
        }
    }
    Ok(())
}

/// Reads a whole log for export: records of `log` (a room's name or
/// [`WHISPERS_DIR`]) under `dir`, oldest first, those at or after
/// `since_ms` (ms since the Unix epoch) only, each handed to `each` with
/// its JSON text exactly as stored; an error from `each` stops the export
/// and is returned. Returns how many records were handed over.
///
/// A log kept in the layout before segments (`<dir>/<log>.log`) is read
/// too, so an old data directory can be exported before the server has
/// migrated it. Neither existing is [`io::ErrorKind::NotFound`].
pub fn export(
    dir: &Path,
    log: &str,
    since_ms: Option<u64>,
    mut each: impl FnMut(&Record, &str) -> io::Result<()>,
) -> io::Result<usize> {
    if log != WHISPERS_DIR && RoomName::parse(log).map_or(true, |room| room.as_str() != log) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{log:?} is not a room name"),
        ));
    }
    let room_dir = dir.join(log);
    let old_log = dir.join(format!("{log}.log"));
    let mut files: Vec<(PathBuf, Option<SegmentIndex>)> = Vec::new();
    if old_log.is_file() {
        files.push((old_log, None));
    }
    if room_dir.is_dir() {
        let segments = list_segments(&room_dir)?;
        for segment in &segments {
            // The newest segment's index covers a prefix of it; the
            // rest is read after its last block.
            let index = match since_ms {
                Some(_) => std::fs::read(segment.index_path())
                    .ok()
                    .and_then(|bytes| SegmentIndex::parse(&bytes)),
                _ => None,
            };
            files.push((segment.log_path(), index));
        }
    } else if files.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no history for {log} in {}", dir.display()),
        ));
    }
    let mut count = 0;
    let since = since_ms.unwrap_or(0);
    for (path, index) in files {
        let mut file = match File::open(&path) {
            Ok(file) => file,
            // Deleted by retention since it was listed.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        // An index with a block past the file's end is ignored (as `#search`
        // does).
        let len = file.metadata()?.len();
        let index = index.filter(|index| {
            index
                .blocks
                .iter()
                .all(|block| block.offset.saturating_add(block.len) <= len)
        });
        let mut ranges: Vec<(u64, Option<u64>)> = Vec::new();
        match index {
            Some(index) => {
                for block in index.blocks.iter().filter(|block| block.last_ts >= since) {
                    match ranges.last_mut() {
                        Some((start, Some(len))) if *start + *len == block.offset => {
                            *len += block.len;
                        }
                        _ => ranges.push((block.offset, Some(block.len))),
                    }
                }
                let tail = index.blocks.last().map_or(0, |b| b.offset + b.len);
                ranges.push((tail, None));
            }
            None => ranges.push((0, None)),
        }
        for (offset, len) in ranges {
            file.seek(SeekFrom::Start(offset))?;
            let reader: Box<dyn Read + '_> = match len {
                Some(len) => Box::new(Read::take(&mut file, len)),
                None => Box::new(&mut file),
            };
            for_each_line(reader, Limits::DEFAULT, |line| -> io::Result<()> {
                if let Ok(record) = history::decode(line)
                    && record.ts >= since
                {
                    // decode checked the bytes after the prefix are UTF-8 JSON.
                    let json = std::str::from_utf8(&line[9..]).unwrap_or_default();
                    each(&record, json)?;
                    count += 1;
                }
                Ok(())
            })?;
        }
    }
    Ok(count)
}

/// Answers history queries on a thread of its own
/// (`chatd-history-reader`), one at a time in the order submitted.
pub struct HistoryReader {
    queries: Option<SyncSender<Box<HistoryQuery>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HistoryReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryReader").finish_non_exhaustive()
    }
}

impl HistoryReader {
    /// Starts the reader thread on the data directory `dir`; every answer
    /// goes to `report`. A search reads for [`SEARCH_TIME`] at most, any
    /// other query for [`HISTORY_TIME`].
    pub fn start(
        dir: &Path,
        report: impl Fn(HistoryAnswer) + Send + Sync + 'static,
    ) -> io::Result<Self> {
        let (queries, inbox) = mpsc::sync_channel::<Box<HistoryQuery>>(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("chatd-history-reader".into())
            .spawn(move || {
                for query in inbox {
                    if thread_stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let deadline = Instant::now() + time_bound(&query.scope);
                    report(answer(&dir, &query, Some(deadline)));
                }
            })?;
        Ok(Self {
            queries: Some(queries),
            stop,
            thread: Some(thread),
        })
    }

    /// Queues a query. When [`QUEUE`] queries are already waiting (or the
    /// thread is gone), the query is handed back: answer it as
    /// [`Shortfall::Busy`].
    pub fn submit(&self, query: Box<HistoryQuery>) -> Result<(), Box<HistoryQuery>> {
        let Some(queries) = &self.queries else {
            return Err(query);
        };
        queries.try_send(query).map_err(|error| match error {
            TrySendError::Full(query) | TrySendError::Disconnected(query) => query,
        })
    }
}

impl Drop for HistoryReader {
    /// Stops the thread: the query being read is finished, waiting ones
    /// are dropped unanswered.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.queries = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the history reader thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use chatd_core::history::{RecordKind, encode};
    use chatd_core::history_query::{QueryId, SearchTerms};
    use chatd_core::{ConnId, Nick};

    use super::super::index::{BLOCK_BYTES, build_for_segment};
    use super::*;

    /// A deterministic pseudo-random source (xorshift).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len() as u64) as usize]
        }
    }

    const ROOMS: [&str; 3] = ["general", "dev", "secret"];
    const NICKS: [&str; 3] = ["alice", "Bob", "carol"];
    const WORDS: [&str; 12] = [
        "rust", "async", "tokio", "lunch", "deploy", "friday", "Coffee", "bug", "fix", "release",
        "x", "zebra",
    ];

    /// Connection ids come only from the core.
    fn conn() -> ConnId {
        let now = Instant::now();
        let mut server = chatd_core::Server::new(chatd_core::Config::default(), now, 0).unwrap();
        server.accept(now, "127.0.0.1:1".parse().unwrap()).unwrap()
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    fn nick(name: &str) -> Nick {
        Nick::parse(name).unwrap()
    }

    fn record(id: u64, room_name: &str, text: &str) -> Record {
        Record {
            id: MessageId::new(id),
            room: room(room_name),
            ts: 1_795_000_000_000 + id * 1000,
            from: nick("alice"),
            kind: RecordKind::Msg,
            text: text.into(),
            to: None,
            private: false,
        }
    }

    /// Writes segments the way the writer lays them out.
    struct Store {
        dir: PathBuf,
        /// Per directory: (first id, bytes) of each segment, oldest first.
        segments: BTreeMap<String, Vec<(u64, Vec<u8>)>>,
        /// The newest segments get an index too (as the writer writes it
        /// for an open segment).
        index_newest: bool,
    }

    impl Store {
        fn new(dir: &Path) -> Self {
            Self {
                dir: dir.to_path_buf(),
                segments: BTreeMap::new(),
                index_newest: false,
            }
        }

        fn dir_of(record: &Record) -> String {
            match record.kind {
                RecordKind::Whisper => WHISPERS_DIR.to_owned(),
                _ => record.room.as_str().to_owned(),
            }
        }

        /// Appends a record, starting a new segment first when the newest
        /// holds `segment_bytes` or more.
        fn append(&mut self, record: &Record, segment_bytes: usize) {
            let segments = self.segments.entry(Self::dir_of(record)).or_default();
            if segments
                .last()
                .is_none_or(|(_, bytes)| bytes.len() >= segment_bytes)
            {
                segments.push((record.id.get(), Vec::new()));
            }
            let last = segments.len() - 1;
            segments[last].1.extend_from_slice(&encode(record));
        }

        /// Appends raw bytes to a directory's newest segment.
        fn append_raw(&mut self, dir: &str, bytes: &[u8]) {
            if let Some((_, segment)) = self.segments.get_mut(dir).and_then(|s| s.last_mut()) {
                segment.extend_from_slice(bytes);
            }
        }

        /// Writes every segment, and an index for each sealed one.
        fn write(&self, mut index: impl FnMut(&str, u64, Vec<u8>) -> Option<Vec<u8>>) {
            for (name, segments) in &self.segments {
                let dir = self.dir.join(name);
                std::fs::create_dir_all(&dir).unwrap();
                for (n, (first, bytes)) in segments.iter().enumerate() {
                    let first_id = MessageId::new(*first);
                    std::fs::write(dir.join(segment_name(first_id)), bytes).unwrap();
                    if (n + 1 < segments.len() || self.index_newest)
                        && let Some(idx) = index(name, *first, build_for_segment(bytes))
                    {
                        std::fs::write(dir.join(index_name(first_id)), idx).unwrap();
                    }
                }
            }
        }
    }

    /// A random history: rooms (some records private), whispers both
    /// ways, damaged lines, torn tails.
    fn random_history(rng: &mut Rng, count: u64) -> Vec<Record> {
        let mut records = Vec::new();
        let mut id = 1;
        for _ in 0..count {
            id += 1 + rng.below(3);
            let words = 1 + rng.below(6);
            let text = (0..words)
                .map(|_| rng.pick(&WORDS))
                .collect::<Vec<_>>()
                .join(if rng.chance(50) { " " } else { ", " });
            let mut record = record(id, rng.pick(&ROOMS), &text);
            record.from = nick(rng.pick(&NICKS));
            match rng.below(10) {
                0 => record.kind = RecordKind::Action,
                1 => record.kind = RecordKind::Urgent,
                2 | 3 => {
                    record.kind = RecordKind::Whisper;
                    record.to = Some(nick(rng.pick(&NICKS)));
                }
                _ => {}
            }
            record.private = record.room.as_str() == "secret" && rng.chance(70);
            records.push(record);
        }
        records
    }

    fn random_query(rng: &mut Rng, max_id: u64) -> HistoryQuery {
        let scope = match rng.below(3) {
            0 => Scope::Room {
                room: room(rng.pick(&ROOMS)),
                private_ok: rng.chance(50),
            },
            1 => Scope::Whispers {
                me: nick(&rng.pick(&NICKS).to_uppercase()),
                other: nick(rng.pick(&NICKS)),
            },
            _ => {
                let text = (0..1 + rng.below(2))
                    .map(|_| rng.pick(&WORDS))
                    .collect::<Vec<_>>()
                    .join(" ");
                Scope::Search {
                    terms: SearchTerms::parse(&text)
                        .unwrap_or_else(|| SearchTerms::parse("rust").unwrap()),
                    room: rng.chance(30).then(|| room(rng.pick(&ROOMS))),
                    private_rooms: if rng.chance(50) {
                        vec![room("secret")]
                    } else {
                        Vec::new()
                    },
                }
            }
        };
        let at = MessageId::new(rng.below(max_id + 10));
        let position = match rng.below(4) {
            0 => Position::Latest,
            1 => Position::Before(at),
            2 => Position::Since(at),
            _ => Position::Around(at),
        };
        HistoryQuery {
            request: QueryId(rng.next()),
            conn: conn(),
            scope,
            position,
            limit: 1 + rng.below(40) as usize,
            below: rng
                .chance(30)
                .then(|| MessageId::new(rng.below(max_id + 10))),
        }
    }

    /// Every record in every log file under `dir`, read whole.
    fn on_disk(dir: &Path) -> Vec<Record> {
        let mut records = Vec::new();
        for entry in walk(dir) {
            if entry.extension().is_some_and(|ext| ext == "log") {
                let bytes = std::fs::read(&entry).unwrap();
                records.extend(history::recover(&bytes).records);
            }
        }
        records
    }

    /// The answer by brute force: every record offered (those whose line
    /// is no longer than `max_line`).
    fn reference(records: &[Record], query: &HistoryQuery, max_line: usize) -> Vec<Arc<Record>> {
        let mut collector = query.collector();
        for record in records
            .iter()
            .filter(|record| query.admits(record) && encode(record).len() - 1 <= max_line)
        {
            collector.offer(Arc::new(record.clone()));
        }
        collector.finish()
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    fn ids(records: &[Arc<Record>]) -> Vec<u64> {
        records.iter().map(|record| record.id.get()).collect()
    }

    /// Writes a random history under a fresh directory: segments of random
    /// sizes, damaged lines, torn tails, indexes present, missing or
    /// corrupt.
    fn write_random(rng: &mut Rng, count: u64, dir: &Path) -> u64 {
        let records = random_history(rng, count);
        let segment_bytes = [2_000, 20_000, 50_000][rng.below(3) as usize];
        let mut store = Store::new(dir);
        store.index_newest = rng.chance(50);
        for record in &records {
            store.append(record, segment_bytes);
            if rng.chance(2) {
                let dir = Store::dir_of(record);
                store.append_raw(&dir, b"0000000 {\"damaged\n");
            }
        }
        for name in ["general", WHISPERS_DIR] {
            if rng.chance(50) {
                store.append_raw(name, &encode(&record(99_999_999, "general", "rust"))[..30]);
            }
        }
        let prefixes: BTreeMap<(String, u64), Vec<u8>> = store
            .segments
            .iter()
            .flat_map(|(name, segments)| {
                segments.iter().map(move |(first, bytes)| {
                    (
                        (name.clone(), *first),
                        build_for_segment(&bytes[..bytes.len() / 2]),
                    )
                })
            })
            .collect();
        store.write(|name, first, idx| match rng.below(7) {
            0 => None,
            // An index of the segment's first half: the rest is read too.
            3 => Some(prefixes[&(name.to_owned(), first)].clone()),
            1 => {
                let mut bad = idx;
                let at = rng.below(bad.len() as u64) as usize;
                bad[at] ^= 1;
                Some(bad)
            }
            2 => Some(idx[..idx.len() / 2].to_vec()),
            _ => Some(idx),
        });
        records.last().map_or(0, |record| record.id.get())
    }

    #[test]
    fn answers_match_brute_force_over_random_histories() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let (mut asked, mut answered) = (0, 0);
        for round in 0..12 {
            let tmp = tempfile::tempdir().unwrap();
            let count = 300 + rng.below(1500);
            let max_id = write_random(&mut rng, count, tmp.path());
            let stored = on_disk(tmp.path());
            // Small reads put every line across chunk boundaries; a small
            // line limit makes some lines too long.
            let limits = Limits {
                chunk: [3, 7, 100, 4096, CHUNK][rng.below(5) as usize],
                max_line: if rng.chance(25) { 160 } else { MAX_LINE },
            };
            for _ in 0..80 {
                let query = random_query(&mut rng, max_id);
                let expected = reference(&stored, &query, limits.max_line);
                let answer = answer_with(tmp.path(), &query, None, limits);
                assert_eq!(answer.request, query.request);
                assert_eq!(answer.shortfall, None, "{query:?}");
                assert_eq!(
                    ids(&answer.records),
                    ids(&expected),
                    "round {round}, {limits:?}: {query:?}"
                );
                assert_eq!(answer.records, expected);
                asked += 1;
                answered += usize::from(!expected.is_empty());
            }
        }
        assert!(
            answered * 3 > asked * 2,
            "{answered} of {asked} answers had records"
        );
    }

    /// Positions and limits in one room, against a known list.
    #[test]
    fn room_positions_page_through_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::new(tmp.path());
        for id in 1..=500 {
            store.append(&record(id * 2, "general", "hello"), 1500);
        }
        store.write(|_, _, idx| Some(idx));
        let query = |position, limit| HistoryQuery {
            request: QueryId(1),
            conn: conn(),
            scope: Scope::Room {
                room: room("general"),
                private_ok: false,
            },
            position,
            limit,
            below: None,
        };
        let got = |position, limit| ids(&answer(tmp.path(), &query(position, limit), None).records);
        let at = MessageId::new;
        assert_eq!(got(Position::Latest, 3), [996, 998, 1000]);
        assert_eq!(got(Position::Before(at(500)), 3), [494, 496, 498]);
        assert_eq!(got(Position::Since(at(500)), 3), [502, 504, 506]);
        assert_eq!(got(Position::Since(at(501)), 2), [502, 504]);
        assert_eq!(got(Position::Around(at(500)), 5), [496, 498, 500, 502, 504]);
        assert_eq!(got(Position::Since(at(0)), 2), [2, 4]);
        assert_eq!(got(Position::Before(at(3)), 5), [2]);
        assert_eq!(got(Position::Since(at(1000)), 5), Vec::<u64>::new());
        let mut below = query(Position::Latest, 2);
        below.below = Some(at(800));
        assert_eq!(ids(&answer(tmp.path(), &below, None).records), [796, 798]);
        let mut other = query(Position::Latest, 2);
        other.scope = Scope::Room {
            room: room("nowhere"),
            private_ok: true,
        };
        let empty = answer(tmp.path(), &other, None);
        assert_eq!((empty.records.len(), empty.shortfall), (0, None));
    }

    #[test]
    fn damaged_lines_are_skipped_and_a_torn_last_line_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("general");
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = encode(&record(1, "general", "one"));
        bytes.extend_from_slice(b"\xff\xfe garbage\n\n");
        let mut bad = encode(&record(2, "general", "two"));
        bad[12] ^= 1;
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&encode(&record(3, "general", "three")));
        let torn = encode(&record(4, "general", "four"));
        bytes.extend_from_slice(&torn[..torn.len() - 1]);
        std::fs::write(dir.join(segment_name(MessageId::new(1))), &bytes).unwrap();
        let query = HistoryQuery {
            request: QueryId(9),
            conn: conn(),
            scope: Scope::Room {
                room: room("general"),
                private_ok: false,
            },
            position: Position::Latest,
            limit: 10,
            below: None,
        };
        let answer = answer(tmp.path(), &query, None);
        assert_eq!(ids(&answer.records), [1, 3]);
        assert_eq!(answer.shortfall, None);
    }

    /// A search at a position other than the newest reads forwards (found
    /// by the `history_reader` fuzz target: reading backwards stopped
    /// before the records above the position).
    #[test]
    fn a_search_around_an_id_finds_the_records_above_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::new(tmp.path());
        for id in 1..=7 {
            store.append(
                &record(id, "general", &format!("hello world {id}")),
                1 << 20,
            );
        }
        store.write(|_, _, _| None);
        // A damaged newest line whose front claims a low id (its checksum
        // fails), as the fuzzer made it.
        let path = tmp
            .path()
            .join("general")
            .join(segment_name(MessageId::new(1)));
        let mut bytes = std::fs::read(&path).unwrap();
        let mut damaged = encode(&record(4, "general", "hello world"));
        damaged[0] ^= 1;
        bytes.extend_from_slice(&damaged);
        std::fs::write(&path, &bytes).unwrap();
        let query = |position| HistoryQuery {
            request: QueryId(1),
            conn: conn(),
            scope: Scope::Search {
                terms: SearchTerms::parse("hello world").unwrap(),
                room: None,
                private_rooms: Vec::new(),
            },
            position,
            limit: 1,
            below: None,
        };
        let around = answer(
            tmp.path(),
            &query(Position::Around(MessageId::new(6))),
            None,
        );
        assert_eq!(ids(&around.records), [6]);
        let since = answer(tmp.path(), &query(Position::Since(MessageId::new(3))), None);
        assert_eq!(ids(&since.records), [4]);
        let latest = answer(tmp.path(), &query(Position::Latest), None);
        assert_eq!(ids(&latest.records), [7]);
    }

    /// A block whose bloom filter rules the words out is not read: seen
    /// by planting a matching record in it after the index was built.
    #[test]
    fn search_reads_only_blocks_whose_bloom_may_match() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::new(tmp.path());
        let mut id = 0;
        while store.segments.get("general").is_none_or(|s| s.len() < 3) {
            id += 1;
            let text = if id == 7 { "needle here" } else { "plain hays" };
            store.append(&record(id, "general", text), 3 * BLOCK_BYTES as usize);
        }
        // The first segment's idx is built from the records above; then a
        // record in its last block (no "needle" there) is replaced by one
        // of the same length that has the word.
        let (first, bytes) = store.segments["general"][0].clone();
        let idx = build_for_segment(&bytes);
        let blocks = SegmentIndex::parse(&idx).unwrap().blocks;
        assert!(blocks.len() >= 3);
        let last = blocks.last().unwrap();
        let hidden = record(last.first_id.get(), "general", "needle hay");
        let line = encode(&hidden);
        let original = encode(&record(last.first_id.get(), "general", "plain hays"));
        assert_eq!(line.len(), original.len());
        let mut planted = bytes.clone();
        let at = last.offset as usize;
        planted[at..at + line.len()].copy_from_slice(&line);
        store.segments.get_mut("general").unwrap()[0].1 = planted;
        store.write(|_, segment, fresh| Some(if segment == first { idx.clone() } else { fresh }));
        let query = HistoryQuery {
            request: QueryId(1),
            conn: conn(),
            scope: Scope::Search {
                terms: SearchTerms::parse("NEEDLE").unwrap(),
                room: None,
                private_rooms: Vec::new(),
            },
            position: Position::Latest,
            limit: 10,
            below: None,
        };
        assert_eq!(ids(&answer(tmp.path(), &query, None).records), [7]);
        // Without the index the whole segment is scanned.
        std::fs::remove_file(
            tmp.path()
                .join("general")
                .join(index_name(MessageId::new(first))),
        )
        .unwrap();
        assert_eq!(
            ids(&answer(tmp.path(), &query, None).records),
            [7, last.first_id.get()]
        );
    }

    /// An index that describes more than its segment now holds (the
    /// segment was cut back, and other records written after the cut) is
    /// ignored whole, also its blocks that still fit: they may describe
    /// bytes that are other records now.
    #[test]
    fn an_index_with_a_block_past_the_end_of_its_segment_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        let mut id = 0;
        while bytes.len() < 6 * BLOCK_BYTES as usize {
            id += 1;
            bytes.extend_from_slice(&encode(&record(id, "general", "plain hays")));
        }
        let idx = build_for_segment(&bytes);
        let blocks = SegmentIndex::parse(&idx).unwrap().blocks;
        let covered = bytes.len();
        // Cut back into the second block; a needle there, then more
        // records, to a little less than the index covers.
        let cut = blocks[1].offset as usize + 200;
        let cut = cut + memchr::memchr(b'\n', &bytes[cut..]).unwrap() + 1;
        bytes.truncate(cut);
        id += 1;
        let needle = id;
        bytes.extend_from_slice(&encode(&record(needle, "general", "needle hay")));
        while bytes.len() + 300 < covered {
            id += 1;
            bytes.extend_from_slice(&encode(&record(id, "general", "plain hays")));
        }
        assert!(blocks[1].offset + blocks[1].len < bytes.len() as u64);
        let dir = tmp.path().join("general");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(segment_name(MessageId::new(1))), &bytes).unwrap();
        std::fs::write(dir.join(index_name(MessageId::new(1))), &idx).unwrap();
        let query = HistoryQuery {
            request: QueryId(1),
            conn: conn(),
            scope: Scope::Search {
                terms: SearchTerms::parse("needle").unwrap(),
                room: None,
                private_rooms: Vec::new(),
            },
            position: Position::Latest,
            limit: 10,
            below: None,
        };
        assert_eq!(ids(&answer(tmp.path(), &query, None).records), [needle]);
    }

    #[test]
    fn a_search_stops_at_its_deadline_with_what_it_found() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::new(tmp.path());
        for id in 1..=20_000 {
            let room_name = ROOMS[(id % 2) as usize];
            store.append(&record(id, room_name, "common words rust"), 1 << 20);
        }
        store.write(|_, _, idx| Some(idx));
        let query = HistoryQuery {
            request: QueryId(1),
            conn: conn(),
            scope: Scope::Search {
                terms: SearchTerms::parse("rust").unwrap(),
                room: None,
                private_rooms: Vec::new(),
            },
            // The oldest matches: the reader must go through everything.
            position: Position::Since(MessageId::new(0)),
            limit: 20_000,
            below: None,
        };
        let started = Instant::now();
        let answer = answer(
            tmp.path(),
            &query,
            Some(started + Duration::from_millis(10)),
        );
        let took = started.elapsed();
        assert_eq!(answer.shortfall, Some(Shortfall::TimeBound));
        assert!(
            answer.records.len() < 20_000,
            "{} found",
            answer.records.len()
        );
        assert!(took < Duration::from_millis(500), "took {took:?}");
        assert!(
            answer
                .records
                .iter()
                .all(|record| record.text == "common words rust")
        );
        let past = super::answer(tmp.path(), &query, Some(started));
        assert_eq!(
            (past.records.len(), past.shortfall),
            (0, Some(Shortfall::TimeBound))
        );
    }

    #[test]
    fn unreadable_directories_and_files_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        // A room "directory" that is a file.
        std::fs::write(tmp.path().join("general"), b"not a directory").unwrap();
        // A segment that is a directory.
        let dev = tmp.path().join("dev");
        std::fs::create_dir_all(dev.join(segment_name(MessageId::new(5)))).unwrap();
        std::fs::write(
            dev.join(segment_name(MessageId::new(1))),
            encode(&record(1, "dev", "hello")),
        )
        .unwrap();
        let query = |name: &str| HistoryQuery {
            request: QueryId(1),
            conn: conn(),
            scope: Scope::Room {
                room: room(name),
                private_ok: false,
            },
            position: Position::Latest,
            limit: 10,
            below: None,
        };
        let general = answer(tmp.path(), &query("general"), None);
        assert_eq!(general.shortfall, Some(Shortfall::Unreadable));
        let dev = answer(tmp.path(), &query("dev"), None);
        assert_eq!(dev.shortfall, Some(Shortfall::Unreadable));
        assert_eq!(ids(&dev.records), [1], "what could be read is kept");
        let missing = answer(&tmp.path().join("nothing"), &query("dev"), None);
        assert_eq!((missing.records.len(), missing.shortfall), (0, None));
    }

    /// The pre-filter never hides a match: a word whose letters change
    /// when lowercased (the Kelvin sign lowercases to `k`) or that sits
    /// behind a JSON escape is still found.
    #[test]
    fn the_search_pre_filter_never_hides_a_match() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("general");
        std::fs::create_dir_all(&dir).unwrap();
        let texts = ["\u{212A}EY", "KEY\u{1f}x", "Key!", "keys", "monkey"];
        let mut bytes: Vec<u8> = texts
            .iter()
            .zip(1..)
            .flat_map(|(text, id)| encode(&record(id, "general", text)))
            .collect();
        // Written by another encoder: "Key" with its K escaped.
        let json =
            r#"{"id":6,"room":"general","ts":1,"from":"bob","kind":"msg","text":"\u004bey"}"#;
        bytes.extend_from_slice(
            format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes())).as_bytes(),
        );
        std::fs::write(dir.join(segment_name(MessageId::new(1))), bytes).unwrap();
        let query = HistoryQuery {
            request: QueryId(1),
            conn: conn(),
            scope: Scope::Search {
                terms: SearchTerms::parse("key").unwrap(),
                room: None,
                private_rooms: Vec::new(),
            },
            position: Position::Latest,
            limit: 10,
            below: None,
        };
        assert_eq!(ids(&answer(tmp.path(), &query, None).records), [1, 2, 3, 6]);
        let mut lowered = Vec::new();
        let words = ["key".to_owned()];
        assert!(may_match(
            b"0 {\"text\":\"no words asked\"}",
            &[],
            &mut lowered
        ));
        assert!(may_match(b"0 {\"text\":\"A KEY\"}", &words, &mut lowered));
        assert!(!may_match(b"0 {\"text\":\"A KE Y\"}", &words, &mut lowered));
    }

    #[test]
    fn a_search_has_the_short_time_bound() {
        let search = Scope::Search {
            terms: SearchTerms::parse("rust").unwrap(),
            room: None,
            private_rooms: Vec::new(),
        };
        assert_eq!(time_bound(&search), Duration::from_millis(250));
        let room = Scope::Room {
            room: room("general"),
            private_ok: true,
        };
        assert_eq!(time_bound(&room), Duration::from_secs(5));
        let whispers = Scope::Whispers {
            me: nick("alice"),
            other: nick("bob"),
        };
        assert_eq!(time_bound(&whispers), Duration::from_secs(5));
    }

    #[test]
    fn peek_id_reads_the_id_off_a_record_line_or_gives_up() {
        let line = encode(&record(123_456, "general", "hi"));
        assert_eq!(peek_id(&line[..line.len() - 1]), Some(123_456));
        assert_eq!(peek_id(b"01234567 {\"id\":12}"), None);
        assert_eq!(peek_id(b"01234567 {\"id\":,"), None);
        assert_eq!(peek_id(b"01234567 {\"room\":\"a\",\"id\":3,"), None);
        assert_eq!(peek_id(b"0123"), None);
        assert_eq!(peek_id(b"01234567 {\"id\":99999999999999999999,"), None);
    }

    #[test]
    fn no_panic_on_random_segment_and_index_bytes() {
        let mut rng = Rng(99);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("general");
        std::fs::create_dir_all(&dir).unwrap();
        let good: Vec<u8> = (1..200)
            .flat_map(|id| encode(&record(id, "general", "rust and more")))
            .collect();
        for round in 0..40 {
            let mut bytes = good.clone();
            for _ in 0..rng.below(20) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = rng.next() as u8;
            }
            if round % 2 == 0 {
                bytes.truncate(rng.below(bytes.len() as u64) as usize);
            }
            let mut idx = build_for_segment(&good);
            if round % 3 == 0 {
                let at = rng.below(idx.len() as u64) as usize;
                idx[at] = rng.next() as u8;
            }
            std::fs::write(dir.join(segment_name(MessageId::new(1))), &bytes).unwrap();
            std::fs::write(dir.join(index_name(MessageId::new(1))), &idx).unwrap();
            std::fs::write(
                dir.join(segment_name(MessageId::new(500))),
                encode(&record(500, "general", "rust")),
            )
            .unwrap();
            for _ in 0..5 {
                let query = random_query(&mut rng, 500);
                let answer = answer(tmp.path(), &query, None);
                assert!(answer.records.iter().all(|record| query.admits(record)));
            }
        }
    }

    #[test]
    fn the_reader_thread_answers_in_order_and_refuses_beyond_its_queue() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::new(tmp.path());
        for id in 1..=50 {
            store.append(&record(id, "general", "hello rust"), 1 << 20);
        }
        store.write(|_, _, idx| Some(idx));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let sink = answers.clone();
        let (started, release) = mpsc::channel::<()>();
        let (go, wait) = mpsc::channel::<()>();
        let gate = Mutex::new(Some((started, wait)));
        let reader = HistoryReader::start(tmp.path(), move |answer: HistoryAnswer| {
            if let Some((started, wait)) = gate.lock().unwrap().take() {
                started.send(()).unwrap();
                // Hold the thread on its first answer until the queue is
                // full (not forever should the test fail meanwhile).
                let _ = wait.recv_timeout(Duration::from_secs(10));
            }
            sink.lock().unwrap().push(answer);
        })
        .unwrap();
        let query = |n: u64| {
            Box::new(HistoryQuery {
                request: QueryId(n),
                conn: conn(),
                scope: if n.is_multiple_of(2) {
                    Scope::Room {
                        room: room("general"),
                        private_ok: false,
                    }
                } else {
                    Scope::Search {
                        terms: SearchTerms::parse("rust").unwrap(),
                        room: None,
                        private_rooms: Vec::new(),
                    }
                },
                position: Position::Latest,
                limit: 2,
                below: None,
            })
        };
        reader.submit(query(0)).unwrap();
        release.recv().unwrap();
        for n in 1..=QUEUE as u64 {
            reader.submit(query(n)).unwrap();
        }
        let refused = reader.submit(query(999)).unwrap_err();
        assert_eq!(refused.request, QueryId(999));
        go.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while answers.lock().unwrap().len() < QUEUE + 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let answers = answers.lock().unwrap();
        let order: Vec<u64> = answers.iter().map(|answer| answer.request.0).collect();
        assert_eq!(order, (0..=QUEUE as u64).collect::<Vec<_>>());
        assert!(
            answers
                .iter()
                .all(|answer| ids(&answer.records) == [49, 50])
        );
        drop(answers);
        drop(reader);
    }

    #[test]
    fn export_reads_a_log_oldest_first_from_a_date() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::new(tmp.path());
        for id in 1..=3000 {
            store.append(&record(id, "general", "words words words"), 100_000);
        }
        store.append(&record(3001, "dev", "other room"), 100_000);
        store.append_raw("general", b"torn {\"id\"");
        store.write(|_, _, idx| Some(idx));
        let mut seen = Vec::new();
        let count = export(tmp.path(), "general", None, |record, json| {
            assert_eq!(encode(record)[9..], format!("{json}\n").into_bytes()[..]);
            seen.push(record.id.get());
            Ok(())
        })
        .unwrap();
        assert_eq!(count, 3000);
        assert_eq!(seen, (1..=3000).collect::<Vec<_>>());
        let since = record(2500, "general", "").ts;
        let mut seen = Vec::new();
        let count = export(tmp.path(), "general", Some(since), |record, _| {
            seen.push(record.id.get());
            Ok(())
        })
        .unwrap();
        assert_eq!((count, seen), (501, (2500..=3000).collect::<Vec<_>>()));
        let missing = export(tmp.path(), "nowhere", None, |_, _| Ok(())).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let bad = export(tmp.path(), "../general", None, |_, _| Ok(())).unwrap_err();
        assert_eq!(bad.kind(), io::ErrorKind::InvalidInput);
        // The layout before segments.
        std::fs::write(
            tmp.path().join("old.log"),
            encode(&record(7, "old", "from before")),
        )
        .unwrap();
        let mut seen = Vec::new();
        export(tmp.path(), "old", None, |record, _| {
            seen.push(record.id.get());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [7]);
        // An error from the callback stops the export.
        let mut calls = 0;
        let stopped = export(tmp.path(), "general", None, |_, _| {
            calls += 1;
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        })
        .unwrap_err();
        assert_eq!((stopped.kind(), calls), (io::ErrorKind::BrokenPipe, 1));
    }

    /// Figures for the report, not a check: `cargo test -p chatd-engine
    /// --lib persist::reader::tests::measure -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn measure_queries_on_a_large_history() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::new(tmp.path());
        let mut rng = Rng(3);
        let count: u64 = 300_000;
        let written = Instant::now();
        for id in 1..=count {
            let room_name = ["general", "dev", "secret", "lunch"][(id % 4) as usize];
            let mut text: Vec<&str> = (0..8).map(|_| rng.pick(&WORDS)).collect();
            if id % 50_000 == 0 {
                text.push("needle");
            }
            store.append(&record(id, room_name, &text.join(" ")), 4 << 20);
        }
        store.write(|_, _, idx| Some(idx));
        let bytes: usize = store
            .segments
            .values()
            .flatten()
            .map(|(_, b)| b.len())
            .sum();
        println!(
            "{count} records, {} MB in {} segments, written in {:?}",
            bytes >> 20,
            store.segments.values().map(Vec::len).sum::<usize>(),
            written.elapsed()
        );
        let run = |name: &str, scope: Scope, position: Position| {
            let query = HistoryQuery {
                request: QueryId(1),
                conn: conn(),
                scope,
                position,
                limit: 20,
                below: None,
            };
            let started = Instant::now();
            let answer = answer(tmp.path(), &query, Some(started + Duration::from_secs(60)));
            println!(
                "{name}: {} records, {:?}, {:?}",
                answer.records.len(),
                answer.shortfall,
                started.elapsed()
            );
        };
        let general = || Scope::Room {
            room: room("general"),
            private_ok: false,
        };
        let needle = || Scope::Search {
            terms: SearchTerms::parse("needle").unwrap(),
            room: None,
            private_rooms: Vec::new(),
        };
        run("room latest 20", general(), Position::Latest);
        run(
            "room before the middle",
            general(),
            Position::Before(MessageId::new(count / 2)),
        );
        run(
            "room around an old id",
            general(),
            Position::Around(MessageId::new(1000)),
        );
        run("search a rare word (indexes)", needle(), Position::Latest);
        for entry in walk(tmp.path()) {
            if entry.extension().is_some_and(|ext| ext == "idx") {
                std::fs::remove_file(entry).unwrap();
            }
        }
        run(
            "room before the middle, no indexes",
            general(),
            Position::Before(MessageId::new(count / 2)),
        );
        run("search a rare word, no indexes", needle(), Position::Latest);
    }
}
