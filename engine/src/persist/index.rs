//! The sparse index of a history segment (`<FIRSTID>.idx`): of all of a
//! sealed segment, of a prefix of the newest (the writer rewrites it as
//! the segment grows, see `writer.rs`).
//!
//! A segment's records are grouped in blocks of consecutive records (a new
//! block starts once the current one holds at least [`BLOCK_BYTES`]). For
//! each block the index keeps where it is in the segment, its id and time
//! range, and a bloom filter of the words of its records
//! ([`chatd_core::history_query::words_of`]), so a search reads only the
//! blocks that may hold every word it looks for.
//!
//! The index is a hint: a reader that finds it missing, short or with a
//! bad checksum ignores it ([`SegmentIndex::parse`] gives `None`) and scans
//! the whole segment; bytes after its last block are scanned too.
//!
//! # Format (little-endian)
//!
//! ```text
//! magic  b"CHATDIX1"                      8 bytes
//! blocks u32                              number of blocks
//! then per block:
//!   offset     u64   byte offset of the block's first record in the segment
//!   len        u64   bytes of whole records in the block
//!   first_id   u64,  last_id u64
//!   first_ts   u64,  last_ts u64          (ms since epoch; min and max ts)
//!   records    u32
//!   bloom_len  u32   bytes of bloom that follow (multiple of 8, >= 32)
//!   bloom      [u8; bloom_len]
//! crc32  u32   CRC-32 of every byte before it
//! ```
//!
//! Bloom: `max(32, ceil(10 * distinct_words / 8))` bytes rounded up to a
//! multiple of 8; four probes; a word's hash is FNV-1a 64 of its UTF-8
//! bytes, `h1` its low 32 bits, `h2` its high 32 bits with the lowest bit
//! set; probe `i` is bit `(h1 + i * h2) mod (bloom_len * 8)`, bit `b` being
//! `1 << (b % 8)` of byte `b / 8`.

use chatd_core::MessageId;
use chatd_core::history::{self, Record, RecordKind};
use chatd_core::history_query::SearchTerms;

/// The first eight bytes of every index.
pub const MAGIC: &[u8; 8] = b"CHATDIX1";

/// A block is closed once it holds at least this many bytes of records.
pub const BLOCK_BYTES: u64 = 16 * 1024;

/// Smallest bloom filter, in bytes.
pub const MIN_BLOOM_BYTES: usize = 32;

/// Bloom bits per distinct word.
const BITS_PER_WORD: usize = 10;

/// Probes per word.
const PROBES: u64 = 4;

/// Bytes of a block's fixed fields (before its bloom).
const BLOCK_HEADER: usize = 6 * 8 + 2 * 4;

/// One block of a segment: consecutive records and a bloom filter of
/// their words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Byte offset of the block's first record in the segment.
    pub offset: u64,
    /// Bytes from `offset` to the end of the block's last record.
    pub len: u64,
    /// Smallest record id in the block.
    pub first_id: MessageId,
    /// Largest record id in the block.
    pub last_id: MessageId,
    /// Earliest record time (ms since the Unix epoch).
    pub first_ts: u64,
    /// Latest record time (ms since the Unix epoch).
    pub last_ts: u64,
    /// Records in the block.
    pub records: u32,
    /// The bloom filter of the block's words (a multiple of 8 bytes, at
    /// least [`MIN_BLOOM_BYTES`]).
    pub bloom: Vec<u8>,
}

impl Block {
    /// Whether the block may hold a record with every one of `words`
    /// (lowercased, as [`words_of`](chatd_core::history_query::words_of) gives them). `false` is certain; `true`
    /// may be a false positive. No words: `true`.
    pub fn may_contain_all(&self, words: &[String]) -> bool {
        words.iter().all(|word| bloom_has(&self.bloom, word))
    }
}

/// The parsed index of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    /// The segment's blocks, in file order.
    pub blocks: Vec<Block>,
}

impl SegmentIndex {
    /// Parses an index file's bytes. `None` when they are not a whole,
    /// intact index (wrong magic, short, bad checksum, inconsistent
    /// blocks): the reader then scans the segment instead. Never panics.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let body_len = bytes.len().checked_sub(4)?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut input = Input(body);
        if input.take(MAGIC.len())? != MAGIC {
            return None;
        }
        let count = input.u32()? as usize;
        // Every block takes at least its header and the smallest bloom, so
        // a damaged count cannot make this allocate more than the file.
        if count > input.0.len() / (BLOCK_HEADER + MIN_BLOOM_BYTES) {
            return None;
        }
        let mut blocks = Vec::with_capacity(count);
        let mut end = 0u64;
        for _ in 0..count {
            let block = Block {
                offset: input.u64()?,
                len: input.u64()?,
                first_id: MessageId::new(input.u64()?),
                last_id: MessageId::new(input.u64()?),
                first_ts: input.u64()?,
                last_ts: input.u64()?,
                records: input.u32()?,
                bloom: {
                    let len = input.u32()? as usize;
                    if len < MIN_BLOOM_BYTES || !len.is_multiple_of(8) {
                        return None;
                    }
                    input.take(len)?.to_vec()
                },
            };
            let block_end = block.offset.checked_add(block.len)?;
            if block.offset < end
                || block.first_id > block.last_id
                || block.first_ts > block.last_ts
                || block.records == 0
            {
                return None;
            }
            end = block_end;
            blocks.push(block);
        }
        if !input.0.is_empty() {
            return None;
        }
        Some(Self { blocks })
    }
}

/// Reads little-endian fields off the front of a byte slice.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.0.len() < len {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Builds the index of a segment from its records, in file order.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    out: Vec<u8>,
    blocks: u32,
    current: Option<Open>,
    /// End of the last record described (0: none).
    covered: u64,
}

/// The block being filled.
#[derive(Debug)]
struct Open {
    offset: u64,
    end: u64,
    first_id: u64,
    last_id: u64,
    first_ts: u64,
    last_ts: u64,
    records: u32,
    /// The FNV-1a hash of every word added (repeats included until the
    /// block is closed): hashing in place keeps the writer from allocating
    /// a string per word.
    word_hashes: Vec<u64>,
}

impl IndexBuilder {
    /// An empty index.
    pub fn new() -> Self {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&0u32.to_le_bytes());
        Self {
            out,
            blocks: 0,
            current: None,
            covered: 0,
        }
    }

    /// A builder that goes on from an existing index: its blocks are kept
    /// as they are (closed), and the next record added starts a new block.
    /// Records added must lie at or after [`IndexBuilder::covered`].
    pub fn from_index(index: &SegmentIndex) -> Self {
        let mut builder = Self::new();
        for block in &index.blocks {
            builder.put_block(
                [
                    block.offset,
                    block.len,
                    block.first_id.get(),
                    block.last_id.get(),
                    block.first_ts,
                    block.last_ts,
                ],
                block.records,
                &block.bloom,
            );
            builder.covered = builder.covered.max(block.offset.saturating_add(block.len));
        }
        builder
    }

    /// The end of the last record described (0 when there is none): an
    /// index of this builder tells readers nothing about bytes from here.
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// Adds the record whose line (LF included) starts at byte `offset` of
    /// the segment and is `line_len` bytes long. Records are added in file
    /// order; damaged lines between them are simply not added (a block
    /// spans them, and its reader skips them again).
    pub fn add(&mut self, offset: u64, line_len: u64, record: &Record) {
        if self
            .current
            .as_ref()
            .is_some_and(|open| open.end - open.offset >= BLOCK_BYTES)
        {
            self.close();
        }
        let end = offset.saturating_add(line_len);
        let id = record.id.get();
        let open = self.current.get_or_insert_with(|| Open {
            offset,
            end,
            first_id: id,
            last_id: id,
            first_ts: record.ts,
            last_ts: record.ts,
            records: 0,
            word_hashes: Vec::new(),
        });
        open.end = open.end.max(end);
        open.first_id = open.first_id.min(id);
        open.last_id = open.last_id.max(id);
        open.first_ts = open.first_ts.min(record.ts);
        open.last_ts = open.last_ts.max(record.ts);
        open.records = open.records.saturating_add(1);
        self.covered = self.covered.max(end);
        if record.kind != RecordKind::Reserve {
            for_each_word_hash(&record.text, |hash| open.word_hashes.push(hash));
        }
    }

    /// Writes out the block being filled.
    fn close(&mut self) {
        let Some(open) = self.current.take() else {
            return;
        };
        let (fields, records, bloom) = open.block();
        self.put_block(fields, records, &bloom);
    }

    /// Appends one block's bytes to the index.
    fn put_block(&mut self, fields: [u64; 6], records: u32, bloom: &[u8]) {
        put_block(&mut self.out, fields, records, bloom);
        self.blocks += 1;
    }

    /// The index file's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.close();
        seal_bytes(self.out, self.blocks)
    }

    /// The index file's bytes as [`IndexBuilder::finish`] would give them
    /// now (the block being filled included, as a block), without ending
    /// the builder: records added later go on filling the same block.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = self.out.clone();
        let mut blocks = self.blocks;
        if let Some(open) = &self.current {
            let (fields, records, bloom) = open.block();
            put_block(&mut out, fields, records, &bloom);
            blocks += 1;
        }
        seal_bytes(out, blocks)
    }
}

impl Open {
    /// The hashes of the block's words, each once, sorted.
    fn distinct_word_hashes(&self) -> Vec<u64> {
        let mut hashes = self.word_hashes.clone();
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }

    /// The block's fixed fields, record count and bloom filter.
    fn block(&self) -> ([u64; 6], u32, Vec<u8>) {
        (
            [
                self.offset,
                self.end - self.offset,
                self.first_id,
                self.last_id,
                self.first_ts,
                self.last_ts,
            ],
            self.records,
            bloom_of(&self.distinct_word_hashes()),
        )
    }
}

/// Appends one block (fields, record count, bloom) to index bytes.
fn put_block(out: &mut Vec<u8>, fields: [u64; 6], records: u32, bloom: &[u8]) {
    for field in fields {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&records.to_le_bytes());
    // A bloom is 10 bits per distinct word of at most 16 KiB of text
    // (plus one line): far below 4 GiB.
    let bloom_len = u32::try_from(bloom.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&bloom_len.to_le_bytes());
    out.extend_from_slice(bloom);
}

/// Index bytes with their block count and checksum filled in.
fn seal_bytes(mut out: Vec<u8>, blocks: u32) -> Vec<u8> {
    out[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&blocks.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Indexes a whole segment from its bytes: every LF-terminated line that
/// decodes is a record; damaged lines and an unterminated last line are
/// left out.
pub fn build_for_segment(bytes: &[u8]) -> Vec<u8> {
    let mut builder = IndexBuilder::new();
    let mut offset = 0usize;
    while let Some(end) = memchr::memchr(b'\n', &bytes[offset..]) {
        let line_len = end + 1;
        if let Ok(record) = history::decode(&bytes[offset..offset + end]) {
            builder.add(offset as u64, line_len as u64, &record);
        }
        offset += line_len;
    }
    builder.finish()
}

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Calls `each` with the [`fnv1a64`] of every word [`words_of`](chatd_core::history_query::words_of) finds in
/// `text`, in order, without allocating for ASCII words (the common case
/// on the writer's path; other words are lowercased the way `words_of`
/// does it).
fn for_each_word_hash(text: &str, mut each: impl FnMut(u64)) {
    if text.is_ascii() {
        // One pass over the bytes, hashing as it goes: for ASCII,
        // `char::is_alphanumeric` is `u8::is_ascii_alphanumeric`, so the
        // words and their hashes are the ones the general path finds, at
        // a fraction of its cost (this runs for every record written).
        let mut hash = FNV_OFFSET;
        let mut len = 0;
        for &byte in text.as_bytes() {
            if byte.is_ascii_alphanumeric() {
                hash ^= u64::from(byte.to_ascii_lowercase());
                hash = hash.wrapping_mul(FNV_PRIME);
                len += 1;
            } else {
                if len >= SearchTerms::MIN_WORD {
                    each(hash);
                }
                hash = FNV_OFFSET;
                len = 0;
            }
        }
        if len >= SearchTerms::MIN_WORD {
            each(hash);
        }
        return;
    }
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_ascii() {
            if word.len() >= SearchTerms::MIN_WORD {
                let mut hash = FNV_OFFSET;
                for &byte in word.as_bytes() {
                    hash ^= u64::from(byte.to_ascii_lowercase());
                    hash = hash.wrapping_mul(FNV_PRIME);
                }
                each(hash);
            }
        } else if word.chars().count() >= SearchTerms::MIN_WORD {
            each(fnv1a64(word.to_lowercase().as_bytes()));
        }
    }
}

/// The bits a word (by its [`fnv1a64`]) sets in a bloom of `bits` bits.
fn probes(hash: u64, bits: u64) -> impl Iterator<Item = u64> {
    let h1 = hash & 0xffff_ffff;
    let h2 = (hash >> 32) | 1;
    (0..PROBES).map(move |i| (h1 + i * h2) % bits)
}

/// A bloom filter holding the words with these distinct hashes.
fn bloom_of(word_hashes: &[u64]) -> Vec<u8> {
    let len = (BITS_PER_WORD * word_hashes.len())
        .div_ceil(8)
        .next_multiple_of(8)
        .max(MIN_BLOOM_BYTES);
    let mut bloom = vec![0u8; len];
    let bits = len as u64 * 8;
    for &hash in word_hashes {
        for bit in probes(hash, bits) {
            bloom[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }
    bloom
}

/// Whether a bloom filter may hold `word`.
fn bloom_has(bloom: &[u8], word: &str) -> bool {
    let bits = bloom.len() as u64 * 8;
    if bits == 0 {
        return true;
    }
    probes(fnv1a64(word.as_bytes()), bits).all(|bit| {
        bloom
            .get((bit / 8) as usize)
            .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
    })
}

/// The ids of the records of `segment` that a reader using `index` would
/// miss: whole lines that decode, start before the end of the index's last
/// block, and are not inside a block whose id and time ranges and bloom
/// filter admit them (readers read the bytes after the last block as they
/// are). Test builds only.
#[cfg(test)]
pub(crate) fn hidden_records(segment: &[u8], index: &SegmentIndex) -> Vec<u64> {
    let covered = index
        .blocks
        .iter()
        .map(|block| block.offset + block.len)
        .max()
        .unwrap_or(0);
    let mut hidden = Vec::new();
    let mut offset = 0usize;
    while let Some(end) = memchr::memchr(b'\n', &segment[offset..]) {
        let (start, stop) = (offset as u64, (offset + end + 1) as u64);
        if let Ok(record) = history::decode(&segment[offset..offset + end])
            && start < covered
        {
            let words: Vec<String> = if record.kind == RecordKind::Reserve {
                Vec::new()
            } else {
                chatd_core::history_query::words_of(&record.text).collect()
            };
            let found = index.blocks.iter().any(|block| {
                block.offset <= start
                    && stop <= block.offset + block.len
                    && block.first_id <= record.id
                    && record.id <= block.last_id
                    && block.first_ts <= record.ts
                    && record.ts <= block.last_ts
                    && block.may_contain_all(&words)
            });
            if !found {
                hidden.push(record.id.get());
            }
        }
        offset += end + 1;
    }
    hidden
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chatd_core::history::encode;
    use chatd_core::history_query::words_of;
    use chatd_core::{Nick, RoomName};

    use super::*;

    fn record(id: u64, text: &str) -> Record {
        Record {
            id: MessageId::new(id),
            room: RoomName::parse("general").unwrap(),
            ts: 1_795_000_000_000 + id * 1000,
            from: Nick::parse("alice").unwrap(),
            kind: RecordKind::Msg,
            text: text.into(),
            to: None,
            private: false,
        }
    }

    /// A deterministic pseudo-random word source (xorshift).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn word(&mut self) -> String {
            let len = 3 + (self.next() % 8) as usize;
            (0..len)
                .map(|_| char::from(b'a' + (self.next() % 26) as u8))
                .collect()
        }
    }

    /// A segment of `count` records, each with a few random words.
    fn segment(count: u64, rng: &mut Rng) -> (Vec<u8>, Vec<(u64, u64, Record)>) {
        let mut bytes = Vec::new();
        let mut lines = Vec::new();
        for id in 1..=count {
            let text = (0..4).map(|_| rng.word()).collect::<Vec<_>>().join(" ");
            let record = record(id, &text);
            let line = encode(&record);
            lines.push((bytes.len() as u64, line.len() as u64, record));
            bytes.extend_from_slice(&line);
        }
        (bytes, lines)
    }

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn an_index_round_trips_and_covers_every_record() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (bytes, lines) = segment(2000, &mut rng);
        let built = build_for_segment(&bytes);
        let mut builder = IndexBuilder::new();
        for (offset, len, record) in &lines {
            builder.add(*offset, *len, record);
        }
        assert_eq!(builder.finish(), built, "builder and scan agree");
        let index = SegmentIndex::parse(&built).expect("a fresh index parses");
        assert!(index.blocks.len() > 1, "{} blocks", index.blocks.len());
        let mut next = 0;
        for (n, block) in index.blocks.iter().enumerate() {
            assert_eq!(block.offset, next, "blocks are consecutive");
            next = block.offset + block.len;
            if n + 1 < index.blocks.len() {
                assert!(block.len >= BLOCK_BYTES && block.len < BLOCK_BYTES + 1024);
            }
            assert!(block.bloom.len() >= MIN_BLOOM_BYTES && block.bloom.len() % 8 == 0);
            let inside: Vec<&Record> = lines
                .iter()
                .filter(|(offset, _, _)| (block.offset..block.offset + block.len).contains(offset))
                .map(|(_, _, record)| record)
                .collect();
            assert_eq!(block.records as usize, inside.len());
            assert_eq!(block.first_id, inside[0].id);
            assert_eq!(block.last_id, inside[inside.len() - 1].id);
            assert_eq!(block.first_ts, inside[0].ts);
            assert_eq!(block.last_ts, inside[inside.len() - 1].ts);
            for record in inside {
                let words: Vec<String> = words_of(&record.text).collect();
                assert!(block.may_contain_all(&words), "{words:?} in block {n}");
            }
        }
        assert_eq!(next, bytes.len() as u64);
        assert_eq!(
            index
                .blocks
                .iter()
                .map(|b| b.records as usize)
                .sum::<usize>(),
            lines.len()
        );
    }

    #[test]
    fn damaged_lines_and_a_torn_tail_are_left_out() {
        let mut bytes = encode(&record(1, "alpha beta"));
        bytes.extend_from_slice(b"garbage line\n");
        let second = bytes.len() as u64;
        bytes.extend_from_slice(&encode(&record(2, "gamma")));
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&encode(&record(3, "torn"))[..20]);
        let index = SegmentIndex::parse(&build_for_segment(&bytes)).unwrap();
        assert_eq!(index.blocks.len(), 1);
        let block = &index.blocks[0];
        assert_eq!((block.offset, block.len, block.records), (0, end, 2));
        assert!(second < end);
        assert_eq!((block.first_id.get(), block.last_id.get()), (1, 2));
        assert!(block.may_contain_all(&["alpha".into(), "gamma".into()]));
    }

    /// A snapshot is what `finish` would give at that point, and the
    /// builder goes on as if none had been taken.
    #[test]
    fn a_snapshot_is_the_index_so_far_and_changes_nothing() {
        let mut rng = Rng(0xfeed);
        let (bytes, lines) = segment(600, &mut rng);
        let mut builder = IndexBuilder::new();
        assert_eq!(
            SegmentIndex::parse(&builder.snapshot()),
            Some(SegmentIndex::default())
        );
        for (n, (offset, len, record)) in lines.iter().enumerate() {
            builder.add(*offset, *len, record);
            assert_eq!(builder.covered(), offset + len);
            if n % 97 == 0 {
                let end = (offset + len) as usize;
                assert_eq!(builder.snapshot(), build_for_segment(&bytes[..end]), "{n}");
            }
        }
        assert_eq!(builder.finish(), build_for_segment(&bytes));
    }

    /// An index restored from a snapshot goes on with a new block at its
    /// end: its blocks stay, and every later record is described after
    /// them.
    #[test]
    fn a_builder_restored_from_an_index_goes_on_after_it() {
        let mut rng = Rng(0xbeef);
        let (bytes, lines) = segment(900, &mut rng);
        let half = lines.len() / 2;
        let (offset, len, _) = &lines[half - 1];
        let prefix =
            SegmentIndex::parse(&build_for_segment(&bytes[..(offset + len) as usize])).unwrap();
        let mut builder = IndexBuilder::from_index(&prefix);
        assert_eq!(builder.covered(), offset + len);
        for (offset, len, record) in &lines[half..] {
            builder.add(*offset, *len, record);
        }
        let index = SegmentIndex::parse(&builder.finish()).expect("a valid index");
        assert_eq!(index.blocks[..prefix.blocks.len()], prefix.blocks[..]);
        let rest = &index.blocks[prefix.blocks.len()..];
        assert_eq!(
            rest[0].offset,
            offset + len,
            "a new block at the covered end"
        );
        assert_eq!(rest[0].first_id, lines[half].2.id);
        let total: u32 = index.blocks.iter().map(|block| block.records).sum();
        assert_eq!(total as usize, lines.len());
        let last = index.blocks.last().unwrap();
        assert_eq!(last.offset + last.len, bytes.len() as u64);
        for (offset, _, record) in &lines {
            let block = index
                .blocks
                .iter()
                .find(|b| (b.offset..b.offset + b.len).contains(offset))
                .expect("every record in a block");
            let words: Vec<String> = words_of(&record.text).collect();
            assert!(block.may_contain_all(&words));
            assert!(block.first_id <= record.id && record.id <= block.last_id);
        }
    }

    #[test]
    fn an_empty_segment_has_an_empty_index() {
        let built = build_for_segment(b"");
        assert_eq!(SegmentIndex::parse(&built), Some(SegmentIndex::default()));
    }

    #[test]
    fn a_damaged_or_short_index_is_refused() {
        let mut rng = Rng(42);
        let (bytes, _) = segment(300, &mut rng);
        let built = build_for_segment(&bytes);
        assert!(SegmentIndex::parse(&built).is_some());
        for cut in 0..built.len() {
            assert_eq!(SegmentIndex::parse(&built[..cut]), None, "cut at {cut}");
        }
        for at in (0..built.len()).step_by(7) {
            let mut bad = built.clone();
            bad[at] ^= 0x10;
            assert_eq!(SegmentIndex::parse(&bad), None, "flipped byte {at}");
        }
        let mut longer = built.clone();
        longer.push(0);
        assert_eq!(SegmentIndex::parse(&longer), None);
    }

    /// An index whose checksum is right but whose fields are not is still
    /// refused, and nothing panics on random bytes.
    #[test]
    fn inconsistent_fields_are_refused_and_random_bytes_never_panic() {
        let with_crc = |mut body: Vec<u8>| {
            let crc = crc32fast::hash(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(SegmentIndex::parse(&with_crc(body)), None, "huge count");
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&1u32.to_le_bytes());
        for field in [0u64, 10, 5, 4, 0, 0] {
            body.extend_from_slice(&field.to_le_bytes());
        }
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&32u32.to_le_bytes());
        body.extend_from_slice(&[0; 32]);
        assert_eq!(
            SegmentIndex::parse(&with_crc(body)),
            None,
            "first id > last id"
        );
        let mut rng = Rng(7);
        let (segment, _) = segment(50, &mut rng);
        let built = build_for_segment(&segment);
        let mut body = built[..built.len() - 4].to_vec();
        body.push(0);
        assert_eq!(SegmentIndex::parse(&with_crc(body)), None, "trailing byte");
        for len in 0..400 {
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if len >= 8 {
                bytes[..8].copy_from_slice(MAGIC);
            }
            let _ = SegmentIndex::parse(&with_crc(bytes.clone()));
            let _ = SegmentIndex::parse(&bytes);
        }
    }

    #[test]
    fn false_positives_stay_rare() {
        let mut rng = Rng(0x1234_5678);
        let words: HashSet<String> = (0..1000).map(|_| rng.word()).collect();
        let hashes: Vec<u64> = words.iter().map(|w| fnv1a64(w.as_bytes())).collect();
        let bloom = bloom_of(&hashes);
        assert_eq!(
            bloom.len(),
            (10 * words.len()).div_ceil(8).next_multiple_of(8)
        );
        assert!(words.iter().all(|word| bloom_has(&bloom, word)));
        let mut tried = 0;
        let mut positive = 0;
        while tried < 20_000 {
            let word = format!("{}{}", rng.word(), rng.next() % 1000);
            if words.contains(&word) {
                continue;
            }
            tried += 1;
            positive += usize::from(bloom_has(&bloom, &word));
        }
        // 10 bits a word and 4 probes: about 1.2 %.
        let rate = positive as f64 / tried as f64;
        assert!(rate < 0.025, "false-positive rate {rate}");
        assert!(rate > 0.002, "suspiciously low rate {rate}");
    }

    #[test]
    fn word_hashes_are_the_hashes_of_the_search_words() {
        let mut rng = Rng(7);
        let pieces = [
            "Rust",
            "ÉTÉ",
            "a",
            "x1",
            "naïve",
            "DEPLOY",
            "--",
            " ",
            "ß",
            "日本語",
            "42",
            "İstanbul",
            ".",
            "Ab",
        ];
        for _ in 0..2000 {
            let text: String = (0..rng.next() % 12)
                .map(|_| pieces[(rng.next() % pieces.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(if rng.next().is_multiple_of(2) {
                    " "
                } else {
                    ""
                });
            let mut hashed = Vec::new();
            for_each_word_hash(&text, |hash| hashed.push(hash));
            let expected: Vec<u64> = words_of(&text).map(|w| fnv1a64(w.as_bytes())).collect();
            assert_eq!(hashed, expected, "{text:?}");
        }
    }
}
