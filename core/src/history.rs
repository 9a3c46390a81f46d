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

use crate::ids::{ConnId, MessageId, Nick, RoomName};

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
    /// Not a chat line: an id reservation. Every message id up to and
    /// including this record's id may have been handed out (see
    /// [`IdFloor`] for how restore reads these).
    Reserve,
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
        !self.private && !matches!(self.kind, RecordKind::Whisper | RecordKind::Reserve)
    }

    /// An id reservation (or, at shutdown, the last id used): ids up to
    /// and including `id` may have been handed out. `ts` is the wall-clock
    /// time it was made. Room and sender carry no meaning.
    pub fn reservation(id: MessageId, ts: u64) -> Self {
        Self {
            id,
            room: RoomName::general(),
            ts,
            from: reserver(),
            kind: RecordKind::Reserve,
            text: String::new(),
            to: None,
            private: true,
        }
    }
}

/// The sender named in reservation records.
fn reserver() -> Nick {
    // "chatd" is a valid nickname by the rules in ids.rs (letters only).
    Nick::parse("chatd").expect("chatd is a valid nickname")
}

/// Encodes a record as one checksummed line, LF included.
pub fn encode(record: &Record) -> Vec<u8> {
    encode_line(record)
}

/// Appends one record's line to `out`, as [`encode`] spells it. The
/// history writer encodes a whole batch into one buffer this way, with no
/// allocation per record.
pub fn encode_into(record: &Record, out: &mut Vec<u8>) {
    encode_line_into(record, out);
}

/// Encodes any value as one checksummed line, LF included: eight hex
/// digits of the CRC-32 of its JSON, a space, the JSON. History records
/// and the account store's changes share this framing.
pub fn encode_line<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut line = Vec::new();
    encode_line_into(value, &mut line);
    line
}

/// Appends one line framed as [`encode_line`] frames it to `out`: the JSON
/// is written in place after room for its checksum, which is filled in
/// once the JSON is there.
pub fn encode_line_into<T: serde::Serialize>(value: &T, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    // The values framed this way hold strings, integers and booleans,
    // whose serialisation cannot fail.
    serde_json::to_writer(&mut *out, value).expect("plain data serialises to JSON");
    let crc = crc32fast::hash(&out[start + 9..]);
    for (digit, slot) in out[start..start + 8].iter_mut().enumerate() {
        *slot = HEX[(crc >> (28 - 4 * digit)) as usize & 0xf];
    }
    out.push(b'\n');
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
    decode_line(line)
}

/// Decodes one line framed by [`encode_line`] (without its LF).
pub fn decode_line<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, RecordError> {
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

/// How many ids one reservation covers.
///
/// The core reserves ids ahead of use and the history writer makes each
/// reservation durable; a reservation is asked for when half of the last
/// one is used, so under a working disk the next block is durable long
/// before it is needed. One small record per block on disk.
pub const ID_BLOCK: u64 = 1024;

/// A message id handed out by [`MessageIds::allocate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The id for the message.
    pub id: MessageId,
    /// A reservation to persist before the message's own record: emit
    /// [`Record::reservation`] with this id.
    pub reservation: Option<MessageId>,
}

/// Hands out message ids that keep increasing across restarts.
///
/// Ids are visible to clients (`+ ack ID`, `! not-stored`), including ids
/// of whispers that are never written (`persist_private_messages` off).
/// After a restart, new ids must be above every id a client may have seen.
/// A persisted record covers its own id once it is durable (and its ACK
/// waits for that). Everything else is covered by reservations: every id
/// handed out is below a reservation already emitted, and an ACK for an
/// unwritten whisper waits until a reservation covering it is durable
/// ([`MessageIds::defer_ack`]). A reservation's own id is never given to
/// a message, so a driver's report for it is recognised.
///
/// At shutdown, [`MessageIds::last_used`] is written as a final
/// reservation so ids continue exactly after a clean restart; after a
/// crash they jump by at most [`ID_BLOCK`].
#[derive(Debug, Clone)]
pub struct MessageIds {
    /// The next id to consider handing out.
    next: u64,
    /// The id of the newest reservation emitted; ids below it are covered.
    reserved: u64,
    /// Ids below this are covered by a reservation known to be durable.
    durable: u64,
    /// A reservation failed: emit a new one at the next allocation.
    renew: bool,
    /// Reservation ids not yet passed by `next`: never handed out.
    skip: VecDeque<u64>,
    /// Reservations emitted and not yet reported on.
    outstanding: VecDeque<u64>,
    /// The last id handed out in this run, if any.
    last: Option<u64>,
    /// ACKs for unwritten whispers waiting for a durable reservation, in
    /// id order.
    waiting: VecDeque<(MessageId, ConnId)>,
}

/// What a driver's report about a reservation releases.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Whisper ACKs that may now be sent.
    pub acked: Vec<(MessageId, ConnId)>,
    /// Whisper ACKs that will never come: their id could not be secured.
    pub failed: Vec<(MessageId, ConnId)>,
}

impl MessageIds {
    /// Starts handing out ids at `first` (1 for a new server, or
    /// [`IdFloor::next`] after a restore). Nothing is reserved yet.
    pub fn new(first: u64) -> Self {
        let first = first.max(1);
        Self {
            next: first,
            reserved: first,
            durable: first,
            renew: false,
            skip: VecDeque::new(),
            outstanding: VecDeque::new(),
            last: None,
            waiting: VecDeque::new(),
        }
    }

    /// The next message id, with the reservation to persist first if one
    /// is due.
    pub fn allocate(&mut self) -> Allocation {
        let mut reservation = None;
        if self.renew || self.next + ID_BLOCK / 2 >= self.reserved {
            // Strictly above every earlier reservation, so reservation ids
            // never repeat and the newest one covers everything handed out.
            let id = self.reserved.max(self.next) + ID_BLOCK;
            self.reserved = id;
            self.renew = false;
            self.skip.push_back(id);
            self.outstanding.push_back(id);
            reservation = Some(MessageId::new(id));
        }
        while self.skip.front() == Some(&self.next) {
            self.skip.pop_front();
            self.next += 1;
        }
        let id = self.next;
        self.next += 1;
        self.last = Some(id);
        Allocation {
            id: MessageId::new(id),
            reservation,
        }
    }

    /// Whether `id` is covered by a durable reservation.
    pub fn is_durable(&self, id: MessageId) -> bool {
        id.get() < self.durable
    }

    /// Holds `conn`'s ACK for an unwritten message until a reservation
    /// covering `id` is durable. Ids must be deferred in increasing order.
    pub fn defer_ack(&mut self, id: MessageId, conn: ConnId) {
        self.waiting.push_back((id, conn));
    }

    /// The driver stored `id`. `None` if it is not a reservation (then it
    /// is a message's record).
    pub fn confirm(&mut self, id: MessageId) -> Option<Released> {
        self.take_outstanding(id.get())?;
        self.durable = self.durable.max(id.get());
        let mut released = Released::default();
        while let Some(&(waiting, conn)) = self.waiting.front()
            && waiting.get() < self.durable
        {
            self.waiting.pop_front();
            released.acked.push((waiting, conn));
        }
        Some(released)
    }

    /// The driver could not store `id`. `None` if it is not a reservation.
    /// ACKs waiting for it are failed (a later reservation might have
    /// covered them, but one that failed says the disk is in trouble), and
    /// the next allocation reserves again.
    pub fn fail(&mut self, id: MessageId) -> Option<Released> {
        self.take_outstanding(id.get())?;
        self.renew = true;
        let mut released = Released::default();
        while let Some(&(waiting, conn)) = self.waiting.front()
            && waiting.get() < id.get()
        {
            self.waiting.pop_front();
            released.failed.push((waiting, conn));
        }
        Some(released)
    }

    /// The last id handed out since [`MessageIds::new`], if any: written
    /// at shutdown as the final reservation.
    pub fn last_used(&self) -> Option<MessageId> {
        self.last.map(MessageId::new)
    }

    /// The id the next message would get, skipping reservation ids.
    pub fn peek_next(&self) -> u64 {
        let mut next = self.next;
        for &skipped in &self.skip {
            if skipped == next {
                next += 1;
            }
        }
        next
    }

    fn take_outstanding(&mut self, id: u64) -> Option<()> {
        let at = self.outstanding.iter().position(|&r| r == id)?;
        self.outstanding.remove(at);
        Some(())
    }
}

/// Where message ids continue after a restart, computed from stored
/// records in the order they were written.
///
/// Chat records count by their id (the largest wins). Reservation
/// records count by the **last** one read: reservations only grow within
/// a run, and a run's final one (written at a clean shutdown) is the
/// exact last id it used, which may be below its own earlier
/// reservations. Every reservation must therefore be read in the order
/// written (the writer keeps them in one log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdFloor {
    largest_record: u64,
    last_reservation: u64,
}

impl IdFloor {
    /// Takes one stored record into account.
    pub fn observe(&mut self, record: &Record) {
        let id = record.id.get();
        if record.kind == RecordKind::Reserve {
            self.last_reservation = id;
        } else {
            self.largest_record = self.largest_record.max(id);
        }
    }

    /// The first id the restarted server may hand out.
    pub fn next(&self) -> u64 {
        self.largest_record.max(self.last_reservation) + 1
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

    #[test]
    fn ids_are_reserved_ahead_and_reservation_ids_are_never_handed_out() {
        let mut ids = MessageIds::new(1);
        let first = ids.allocate();
        assert_eq!(first.id.get(), 1);
        let reserved = first.reservation.expect("the first id needs a reservation");
        assert_eq!(reserved.get(), 1 + ID_BLOCK);
        let mut reservations = vec![reserved.get()];
        let mut handed = vec![1];
        for _ in 0..5 * ID_BLOCK {
            let allocation = ids.allocate();
            reservations.extend(allocation.reservation.map(MessageId::get));
            // Every id handed out is covered by a reservation already emitted.
            assert!(allocation.id.get() < *reservations.last().unwrap());
            handed.push(allocation.id.get());
        }
        assert!(handed.windows(2).all(|w| w[0] < w[1]));
        assert!(reservations.windows(2).all(|w| w[0] < w[1]));
        assert!(reservations.iter().all(|r| !handed.contains(r)));
    }

    #[test]
    fn deferred_acks_wait_for_a_durable_reservation_and_fail_with_it() {
        let mut ids = MessageIds::new(1);
        let conn = ConnId::new(9);
        let first = ids.allocate();
        assert!(!ids.is_durable(first.id));
        ids.defer_ack(first.id, conn);
        assert_eq!(
            ids.confirm(first.id),
            None,
            "a message id is no reservation"
        );
        let reserved = first.reservation.unwrap();
        let released = ids.confirm(reserved).unwrap();
        assert_eq!(released.acked, [(first.id, conn)]);
        let after = ids.allocate().id;
        assert!(ids.is_durable(after));

        let mut ids = MessageIds::new(1);
        let first = ids.allocate();
        ids.defer_ack(first.id, conn);
        let released = ids.fail(first.reservation.unwrap()).unwrap();
        assert_eq!(released.failed, [(first.id, conn)]);
        // A failed reservation is renewed at the next allocation, above it.
        let next = ids.allocate();
        assert!(next.reservation.unwrap() > first.reservation.unwrap());
    }

    #[test]
    fn floor_takes_the_largest_record_and_the_last_reservation() {
        let mut floor = IdFloor::default();
        assert_eq!(floor.next(), 1);
        floor.observe(&Record::reservation(MessageId::new(1025), 0));
        floor.observe(&record(7, "a"));
        assert_eq!(floor.next(), 1026);
        // A clean shutdown writes the exact last id after the reservation.
        floor.observe(&Record::reservation(MessageId::new(9), 0));
        assert_eq!(floor.next(), 10);
        floor.observe(&record(12, "b"));
        assert_eq!(floor.next(), 13);
    }

    #[test]
    fn reservations_round_trip_and_are_never_restorable() {
        let reservation = Record::reservation(MessageId::new(2049), 5);
        let line = encode(&reservation);
        assert_eq!(decode(&line[..line.len() - 1]), Ok(reservation.clone()));
        assert!(!reservation.is_restorable());
    }

    #[test]
    fn the_documented_reservation_line_decodes() {
        let line = br#"17939549 {"id":1025,"room":"general","ts":1795000000000,"from":"chatd","kind":"reserve","text":"","private":true}"#;
        let record = decode(line).unwrap();
        assert_eq!(
            record,
            Record::reservation(MessageId::new(1025), 1_795_000_000_000)
        );
    }
}
