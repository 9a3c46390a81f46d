//! Writing a segment's `.idx` (format and builder in `index.rs`): written
//! to `<name>.idx.tmp` and renamed over `<name>.idx`. The writer keeps an
//! [`IndexBuilder`] per open segment, fed as it appends; [`seed`] starts
//! one for a segment opened again (from its `.idx`, then the bytes after
//! it; with no usable `.idx`, the whole segment: the fallback when
//! sealing has no builder in hand). The index is a hint: it is not synced, and a reader that finds it
//! missing, short or damaged scans the segment instead.

use std::io::{self, Read};

use super::index::{IndexBuilder, SegmentIndex};
use super::recover::scan_lines;
use super::segment::index_path;
use super::storage::Storage;

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

/// What [`seed`] found beside a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// No `.idx`.
    Nothing,
    /// An intact `.idx` describing the segment's first `covered` bytes.
    Usable { covered: u64 },
    /// An `.idx` that is damaged, or describes bytes past the length the
    /// segment is appended at: it must go before anything is appended.
    Unusable,
}

/// A builder describing the first `len` bytes of `segment`: seeded from
/// its `.idx` when that is intact and within `len` (then only the bytes
/// after it are read), else from a scan of the segment.
pub(crate) fn seed<S: Storage>(
    storage: &mut S,
    segment: &str,
    len: u64,
    max_record: usize,
) -> io::Result<(IndexBuilder, Found)> {
    let (mut builder, found) = match read_all(storage, &index_path(segment)) {
        Ok(bytes) => match SegmentIndex::parse(&bytes) {
            Some(index) => {
                let builder = IndexBuilder::from_index(&index);
                if builder.covered() <= len {
                    let covered = builder.covered();
                    (builder, Found::Usable { covered })
                } else {
                    (IndexBuilder::new(), Found::Unusable)
                }
            }
            None => (IndexBuilder::new(), Found::Unusable),
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            (IndexBuilder::new(), Found::Nothing)
        }
        Err(error) => return Err(error),
    };
    let start = builder.covered();
    let reader = RangeReader {
        storage,
        name: segment,
        pos: start,
        end: len,
    };
    scan_lines(reader, max_record, |offset, line_len, record| {
        builder.add(start + offset, line_len, &record);
    })?;
    Ok((builder, found))
}

/// A whole small file, read through [`Storage::read_at`] (counted like
/// every other read).
fn read_all<S: Storage>(storage: &mut S, name: &str) -> io::Result<Vec<u8>> {
    let len = storage.len(name)?;
    let mut bytes = Vec::new();
    RangeReader {
        storage,
        name,
        pos: 0,
        end: len,
    }
    .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Bytes `pos..end` of a file, read with [`Storage::read_at`].
struct RangeReader<'a, S> {
    storage: &'a mut S,
    name: &'a str,
    pos: u64,
    end: u64,
}

impl<S: Storage> Read for RangeReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.end.saturating_sub(self.pos)).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self
            .storage
            .read_at(self.name, self.pos, &mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}
