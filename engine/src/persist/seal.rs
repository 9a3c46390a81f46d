//! Writing a segment's `.idx` (format and builder in `index.rs`): scanned
//! from the segment as a stream, written to `<name>.idx.tmp` and renamed
//! over `<name>.idx`. The index is a hint: it is not synced, and a reader
//! that finds it missing, short or damaged scans the segment instead.

use std::io::{self, Read};

use super::index::IndexBuilder;
use super::recover::scan_lines;
use super::segment::index_path;
use super::storage::Storage;

/// Indexes the first `len` bytes of `segment` and writes its `.idx`.
/// Failing is logged, not fatal: readers do without.
pub(crate) fn write_index<S: Storage>(storage: &mut S, segment: &str, len: u64, max_record: usize) {
    if let Err(error) = try_write_index(storage, segment, len, max_record) {
        tracing::warn!(%segment, %error, "cannot write a history segment index; readers will scan the segment");
    }
}

fn try_write_index<S: Storage>(
    storage: &mut S,
    segment: &str,
    len: u64,
    max_record: usize,
) -> io::Result<()> {
    let mut builder = IndexBuilder::new();
    let reader = storage.read(segment)?.take(len);
    scan_lines(reader, max_record, |offset, line_len, record| {
        builder.add(offset, line_len, &record);
    })?;
    write_index_bytes(storage, segment, &builder.finish())
}

/// Writes finished index bytes beside `segment` (temp file, then rename).
pub(crate) fn write_index_bytes<S: Storage>(
    storage: &mut S,
    segment: &str,
    bytes: &[u8],
) -> io::Result<()> {
    let index = index_path(segment);
    let temp = format!("{index}.tmp");
    storage.write_file(&temp, bytes)?;
    storage.rename(&temp, &index)
}
