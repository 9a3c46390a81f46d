//! Segments: how a history's files are named and listed, and reading a
//! file's lines backwards from its end in bounded chunks.
//!
//! A room's history is the directory `<room>/` of segments named after
//! their first record's id (20 digits, so names sort by id);
//! whispers live in `_whispers/`; id reservations in the one file
//! `_ids.log`.

use std::io;

use chatd_core::RoomName;
use chatd_core::history::{self, Record};

use super::storage::{Entry, Storage, join};

/// The log that holds id reservations (history.rs, `MessageIds`). Room
/// names start with a letter or digit, so no room is called this.
pub const IDS_LOG: &str = "_ids.log";

/// The directory of whisper segments (`persist_private_messages`).
pub const WHISPERS_DIR: &str = "_whispers";

/// Bytes read at a time when reading backwards.
pub(crate) const CHUNK: usize = 64 * 1024;

/// The file name of a segment whose first record has id `first_id`.
pub fn segment_name(first_id: u64) -> String {
    format!("{first_id:020}.log")
}

/// The first id a segment file name stands for, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The `.idx` beside a segment (`general/0…1.log` -> `general/0…1.idx`).
pub fn index_path(segment: &str) -> String {
    let stem = segment.strip_suffix(".log").unwrap_or(segment);
    format!("{stem}.idx")
}

/// The history a directory in the data directory holds: a room (its name
/// exactly, as rooms are stored) or the whispers.
pub fn is_history_dir(name: &str) -> bool {
    name == WHISPERS_DIR || RoomName::parse(name).is_ok_and(|room| room.as_str() == name)
}

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its path (`general/00000000000000000001.log`).
    pub path: String,
    /// The id in its name.
    pub first_id: u64,
    /// Its length when listed.
    pub len: u64,
}

/// The segments of a history directory, oldest first.
pub fn list_segments<S: Storage>(storage: &mut S, dir: &str) -> io::Result<Vec<Segment>> {
    Ok(segments_in(dir, &storage.list(dir)?))
}

/// The segments among the entries of directory `dir`, oldest first.
pub(crate) fn segments_in(dir: &str, entries: &[Entry]) -> Vec<Segment> {
    let mut segments: Vec<Segment> = entries
        .iter()
        .filter(|entry| !entry.dir)
        .filter_map(|entry| {
            Some(Segment {
                first_id: parse_segment_name(&entry.name)?,
                path: join(dir, &entry.name),
                len: entry.len,
            })
        })
        .collect();
    segments.sort_by_key(|segment| segment.first_id);
    segments
}

/// Files of a history directory left by a crash that nothing reads: an
/// index written half (`.idx.tmp`), an index whose segment is gone.
pub(crate) fn leftovers(dir: &str, entries: &[Entry]) -> Vec<String> {
    let is_segment = |stem: &str| {
        entries
            .iter()
            .any(|entry| !entry.dir && entry.name.strip_suffix(".log") == Some(stem))
    };
    entries
        .iter()
        .filter(|entry| !entry.dir)
        .filter(|entry| {
            entry.name.ends_with(".idx.tmp")
                || entry.name.strip_suffix(".idx").is_some_and(|stem| {
                    parse_segment_name(&format!("{stem}.log")).is_some() && !is_segment(stem)
                })
        })
        .map(|entry| join(dir, &entry.name))
        .collect()
}

/// One line found reading backwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackLine {
    /// A line that fits: its offset, its bytes without the LF, and whether
    /// it has its LF (only a file's last line can lack it).
    Line {
        /// Where it starts.
        offset: u64,
        /// Its bytes, LF excluded.
        bytes: Vec<u8>,
        /// Whether an LF ends it.
        terminated: bool,
    },
    /// A line longer than the limit, dropped as it went by.
    Overlong {
        /// Where it starts.
        offset: u64,
        /// Its length, LF included.
        len: u64,
    },
}

impl BackLine {
    /// Where the line starts.
    pub fn offset(&self) -> u64 {
        match self {
            Self::Line { offset, .. } | Self::Overlong { offset, .. } => *offset,
        }
    }

    /// The record on this line, if it is a whole line that decodes.
    pub fn record(&self) -> Option<Record> {
        match self {
            Self::Line {
                bytes,
                terminated: true,
                ..
            } => history::decode(bytes).ok(),
            _ => None,
        }
    }

    /// Where the line ends (just past its LF).
    pub fn end(&self) -> u64 {
        match self {
            Self::Line {
                offset,
                bytes,
                terminated,
            } => offset + bytes.len() as u64 + u64::from(*terminated),
            Self::Overlong { offset, len } => offset + len,
        }
    }
}

/// Reads a file's lines from a given end towards its start, holding one
/// chunk and at most one line of `max_line` bytes.
#[derive(Debug)]
pub struct BackLines {
    name: String,
    /// Bytes `[loaded, end)` of the file not yet handed out are `buf`.
    end: u64,
    buf: Vec<u8>,
    max_line: usize,
    /// Bytes read at a time.
    chunk: usize,
    /// Bytes read from storage so far.
    pub bytes_read: u64,
}

impl BackLines {
    /// The lines of `name` that end at or before `end`.
    pub fn new(name: &str, end: u64, max_line: usize) -> Self {
        Self::with_chunk(name, end, max_line, CHUNK)
    }

    /// The same, reading `chunk` bytes at a time.
    pub fn with_chunk(name: &str, end: u64, max_line: usize, chunk: usize) -> Self {
        Self {
            name: name.to_owned(),
            end,
            buf: Vec::new(),
            max_line: max_line.max(1),
            chunk: chunk.max(1),
            bytes_read: 0,
        }
    }

    fn loaded(&self) -> u64 {
        self.end - self.buf.len() as u64
    }

    /// Reads the chunk before what is loaded and puts it in front.
    fn load_more<S: Storage>(&mut self, storage: &mut S) -> io::Result<()> {
        let to = self.loaded();
        let from = to.saturating_sub(self.chunk as u64);
        let mut chunk = vec![0; (to - from) as usize];
        let mut done = 0;
        while done < chunk.len() {
            let n = storage.read_at(&self.name, from + done as u64, &mut chunk[done..])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} is shorter than expected", self.name),
                ));
            }
            done += n;
        }
        self.bytes_read += chunk.len() as u64;
        chunk.extend_from_slice(&self.buf);
        self.buf = chunk;
        Ok(())
    }

    /// The line before the ones handed out so far, or `None` at the start.
    pub fn prev<S: Storage>(&mut self, storage: &mut S) -> io::Result<Option<BackLine>> {
        if self.end == 0 {
            return Ok(None);
        }
        if self.buf.is_empty() {
            self.load_more(storage)?;
        }
        let terminated = self.buf.last() == Some(&b'\n');
        loop {
            // Loading puts bytes in front, so the line's end stays put.
            let body_end = self.buf.len() - usize::from(terminated);
            let start = memchr::memrchr(b'\n', &self.buf[..body_end]).map(|at| at + 1);
            if start.is_some() || self.loaded() == 0 {
                let start = start.unwrap_or(0);
                let bytes = self.buf[start..body_end].to_vec();
                let offset = self.loaded() + start as u64;
                self.buf.truncate(start);
                self.end = offset;
                return Ok(Some(BackLine::Line {
                    offset,
                    bytes,
                    terminated,
                }));
            }
            if self.buf.len() > self.max_line + 1 {
                return self.skip_overlong(storage).map(Some);
            }
            self.load_more(storage)?;
        }
    }

    /// Everything loaded belongs to a line too long to keep: reads on
    /// backwards, dropping each chunk, to the LF before it.
    fn skip_overlong<S: Storage>(&mut self, storage: &mut S) -> io::Result<BackLine> {
        let line_end = self.end;
        loop {
            let at = self.loaded();
            self.buf.clear();
            self.end = at;
            if at == 0 {
                return Ok(BackLine::Overlong {
                    offset: 0,
                    len: line_end,
                });
            }
            self.load_more(storage)?;
            if let Some(pos) = memchr::memrchr(b'\n', &self.buf) {
                let offset = self.loaded() + pos as u64 + 1;
                self.buf.truncate(pos + 1);
                self.end = offset;
                return Ok(BackLine::Overlong {
                    offset,
                    len: line_end - offset,
                });
            }
        }
    }
}
