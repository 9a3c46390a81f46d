//! Chat history: the persist record, its on-disk encoding, recovery of a
//! log's bytes, and the per-room ring of recent messages.
//!
//! # Record format (docs/HISTORY.md)
//!
//! One record per line: eight lowercase hex digits of the CRC-32 of the JSON
//! text, one space, the JSON object, LF.
//!
//! ```text
//! 382ce4f4 {"id":7,"room":"general","ts":1795000000000,"from":"alice","kind":"msg","text":"hi"}
//! ```
//!
//! Ordinary tools read it (`cut -d' ' -f2- general.log | jq .text`). A torn
//! write leaves a last line without LF or with a bad checksum; [`recover`]
//! cuts such a tail off and skips damaged lines in the middle, keeping
//! everything else.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ids::{MessageId, Nick, RoomName};

/// What kind of chat line a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// Ordinary chat.
    Msg,
    /// An action (`#me waves`).
    Action,
    /// An urgent message (`#urgent`).
    Urgent,
    /// A private message (only persisted when configured).
    Whisper,
}

/// One stored chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The message's id.
    pub id: MessageId,
    /// The room it was said in (for a whisper: the sender's room at the time).
    pub room: RoomName,
    /// Wall-clock time, milliseconds since the Unix epoch (UTC).
    pub ts: u64,
    /// The sender's nickname at the time.
    pub from: Nick,
    /// The kind of line.
    pub kind: RecordKind,
    /// The text, as sent.
    pub text: String,
    /// The recipient of a whisper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Nick>,
    /// Said in a private room: written for durability, but never restored
    /// into a room's history (private rooms do not outlive their members).
    #[serde(default, skip_serializing_if = "is_false")]
    pub private: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Record {
    /// Whether this record belongs in a room's visible history after a restart.
    pub fn is_restorable(&self) -> bool {
        !self.private && self.kind != RecordKind::Whisper
    }
}

/// Encodes a record as one checksummed line, LF included.
pub fn encode(record: &Record) -> Vec<u8> {
    // Serialising plain strings and integers cannot fail.
    let json = serde_json::to_string(record).expect("records serialise to JSON");
    let mut line = format!("{:08x} ", crc32fast::hash(json.as_bytes())).into_bytes();
    line.extend_from_slice(json.as_bytes());
    line.push(b'\n');
    line
}

/// Why one line of a log could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The line does not start with eight hex digits and a space.
    #[error("no checksum prefix")]
    NoChecksum,
    /// The checksum does not match the JSON text.
    #[error("checksum mismatch")]
    ChecksumMismatch,
    /// The JSON is not a valid record.
    #[error("invalid record: {0}")]
    Invalid(String),
    /// The last line has no LF: a write was cut short.
    #[error("unterminated last line")]
    Unterminated,
}

/// Decodes one line (without its LF).
pub fn decode(line: &[u8]) -> Result<Record, RecordError> {
    let (Some(hex), Some(b' ')) = (line.get(..8), line.get(8)) else {
        return Err(RecordError::NoChecksum);
    };
    let expected = std::str::from_utf8(hex)
        .ok()
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or(RecordError::NoChecksum)?;
    let json = &line[9..];
    if crc32fast::hash(json) != expected {
        return Err(RecordError::ChecksumMismatch);
    }
    serde_json::from_slice(json).map_err(|error| RecordError::Invalid(error.to_string()))
}

/// A damaged stretch of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset where the damaged line starts.
    pub offset: usize,
    /// Its length in bytes, LF included if present.
    pub len: usize,
    /// What was wrong.
    pub error: RecordError,
}

/// What [`recover`] found in a log's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Every readable record, in file order.
    pub records: Vec<Record>,
    /// Damaged lines followed by good ones: skipped, reported, kept on disk.
    pub skipped: Vec<Damage>,
    /// Damage at the end of the file (a torn write): the log should be cut
    /// to [`Recovery::valid_len`] before appending again.
    pub torn_tail: Option<Damage>,
    /// Length of the log up to and including its last good record.
    pub valid_len: usize,
}

/// Reads every record it can from a log's bytes.
///
/// Damage after the last good record is the torn tail; damage before it is
/// skipped. Nothing here panics, whatever the bytes.
pub fn recover(bytes: &[u8]) -> Recovery {
    let mut recovery = Recovery::default();
    let mut damage: Vec<Damage> = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let (line, len, terminated) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], end + 1, true),
            None => (rest, rest.len(), false),
        };
        let result = if terminated {
            decode(line)
        } else {
            Err(RecordError::Unterminated)
        };
        match result {
            Ok(record) => {
                recovery.skipped.append(&mut damage);
                recovery.records.push(record);
                recovery.valid_len = offset + len;
            }
            Err(error) => damage.push(Damage { offset, len, error }),
        }
        offset += len;
    }
    if let Some(first) = damage.first() {
        let len = bytes.len() - first.offset;
        let error = damage
            .last()
            .map(|d| d.error.clone())
            .unwrap_or(RecordError::Unterminated);
        recovery.torn_tail = Some(Damage {
            offset: first.offset,
            len,
            error,
        });
    }
    recovery
}

/// The most recent messages of one room, oldest first.
#[derive(Debug, Clone, Default)]
pub struct HistoryRing {
    entries: VecDeque<Arc<Record>>,
}

impl HistoryRing {
    /// Adds a message, dropping the oldest beyond `capacity`.
    pub fn push(&mut self, record: Arc<Record>, capacity: usize) {
        while self.entries.len() >= capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(record);
    }

    /// The last `count` messages, oldest first.
    pub fn last(&self, count: usize) -> impl Iterator<Item = &Arc<Record>> {
        self.entries
            .iter()
            .skip(self.entries.len().saturating_sub(count))
    }

    /// How many messages are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no message is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, text: &str) -> Record {
        Record {
            id: MessageId::new(id),
            room: RoomName::general(),
            ts: 1_795_000_000_000 + id,
            from: Nick::parse("alice").unwrap(),
            kind: RecordKind::Msg,
            text: text.into(),
            to: None,
            private: false,
        }
    }

    fn log(records: &[Record]) -> Vec<u8> {
        records.iter().flat_map(encode).collect()
    }

    #[test]
    fn encoded_record_is_one_readable_line_that_decodes_back() {
        let original = record(7, "hi \"there\" \u{e9}");
        let line = encode(&original);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let text = std::str::from_utf8(&line).unwrap();
        assert!(
            text[9..].starts_with("{\"id\":7,\"room\":\"general\""),
            "{text}"
        );
        assert_eq!(decode(&line[..line.len() - 1]), Ok(original));
    }

    #[test]
    fn the_documented_example_line_decodes() {
        let line = br#"382ce4f4 {"id":7,"room":"general","ts":1795000000000,"from":"alice","kind":"msg","text":"hi"}"#;
        let record = decode(line).unwrap();
        assert_eq!(record.id.get(), 7);
        assert_eq!(encode(&record), [&line[..], b"\n"].concat());
    }

    #[test]
    fn torn_last_record_is_cut_and_the_rest_kept() {
        let full = log(&[record(1, "a"), record(2, "b"), record(3, "c")]);
        let cut = &full[..full.len() - 5];
        let recovery = recover(cut);
        assert_eq!(recovery.records.len(), 2);
        assert!(recovery.skipped.is_empty());
        let torn = recovery.torn_tail.unwrap();
        assert_eq!(torn.error, RecordError::Unterminated);
        assert_eq!(recovery.valid_len, torn.offset);
        assert_eq!(recovery.valid_len + torn.len, cut.len());
    }

    #[test]
    fn corrupted_middle_record_is_skipped_and_reported() {
        let mut bytes = log(&[record(1, "a"), record(2, "b"), record(3, "c")]);
        let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        bytes[second + 30] ^= 0x20;
        let recovery = recover(&bytes);
        let ids: Vec<u64> = recovery.records.iter().map(|r| r.id.get()).collect();
        assert_eq!(ids, [1, 3]);
        assert_eq!(recovery.skipped.len(), 1);
        assert_eq!(recovery.skipped[0].offset, second);
        assert_eq!(recovery.skipped[0].error, RecordError::ChecksumMismatch);
        assert!(recovery.torn_tail.is_none());
        assert_eq!(recovery.valid_len, bytes.len());
    }

    #[test]
    fn garbage_is_reported_not_fatal() {
        let recovery = recover(b"\xff\xfe not a log\n\n12345678 {}\n");
        assert!(recovery.records.is_empty());
        assert_eq!(recovery.valid_len, 0);
        assert!(recovery.torn_tail.is_some());
    }

    #[test]
    fn ring_keeps_the_newest() {
        let mut ring = HistoryRing::default();
        for id in 1..=5 {
            ring.push(Arc::new(record(id, "x")), 3);
        }
        let ids: Vec<u64> = ring.last(10).map(|r| r.id.get()).collect();
        assert_eq!(ids, [3, 4, 5]);
        let ids: Vec<u64> = ring.last(2).map(|r| r.id.get()).collect();
        assert_eq!(ids, [4, 5]);
    }
}
