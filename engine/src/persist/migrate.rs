//! Moving an old data directory (one flat `<room>.log` per room and
//! `_whispers.log`) to segment directories, at start, before recovery.
//!
//! Each old log is scanned forward (a torn tail is cut and the cut
//! synced), then renamed to `<room>/<FIRSTID>.log` (an empty one is
//! deleted), its `.idx` written, and the directories synced. A rename is
//! atomic, so a crash leaves either the old file or the segment, and the
//! next start finishes the rest.

use std::io;

use super::index::IndexBuilder;
use super::recover::scan_lines;
use super::seal::write_index_bytes;
use super::segment::{IDS_LOG, WHISPERS_DIR, is_history_dir, segment_name};
use super::storage::{LogFile, Storage, join};

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Migration {
    /// Old logs moved into segment directories.
    pub logs: usize,
    /// Records in them.
    pub records: usize,
    /// Old logs without a single good record, deleted.
    pub empty: usize,
}

/// The history directory an old flat log belongs in, if it is one.
fn old_log_dir(name: &str) -> Option<&str> {
    if name == IDS_LOG {
        return None;
    }
    let stem = name.strip_suffix(".log")?;
    if stem == "_whispers" {
        Some(WHISPERS_DIR)
    } else if stem != WHISPERS_DIR && is_history_dir(stem) {
        Some(stem)
    } else {
        None
    }
}

/// Moves every old flat log in the data directory into its segment
/// directory; logs one info line if there was any.
pub fn migrate<S: Storage>(storage: &mut S, max_record: usize) -> io::Result<Migration> {
    let mut names: Vec<String> = storage
        .list("")?
        .into_iter()
        .filter(|entry| !entry.dir && old_log_dir(&entry.name).is_some())
        .map(|entry| entry.name)
        .collect();
    names.sort();
    let mut migration = Migration::default();
    for name in names {
        let Some(dir) = old_log_dir(&name) else {
            continue;
        };
        let mut builder = IndexBuilder::new();
        let mut first = None;
        let mut records = 0;
        let scan = scan_lines(storage.read(&name)?, max_record, |offset, len, record| {
            first.get_or_insert(record.id.get());
            records += 1;
            builder.add(offset, len, &record);
        })?;
        let skipped = scan.skipped.len() + scan.more_skipped;
        if skipped > 0 {
            tracing::warn!(log = %name, count = skipped, "old history log has damaged records; they stay in the file and are skipped");
        }
        if let Some(torn) = &scan.torn {
            tracing::warn!(log = %name, offset = torn.offset, len = torn.len, error = %torn.error, "cut off a torn history tail");
            let mut log = storage.open(&name)?.log;
            log.set_len(scan.valid_len)?;
            log.sync()?;
        }
        let Some(first) = first else {
            storage.remove(&name)?;
            storage.sync_dir("")?;
            migration.empty += 1;
            continue;
        };
        if storage.create_dir(dir)? {
            storage.sync_dir("")?;
        }
        let segment = join(dir, &segment_name(first));
        storage.rename(&name, &segment)?;
        storage.sync_dir(dir)?;
        storage.sync_dir("")?;
        if let Err(error) = write_index_bytes(storage, &segment, &builder.finish()) {
            tracing::warn!(%segment, %error, "cannot write a history segment index; readers will scan the segment");
        }
        migration.logs += 1;
        migration.records += records;
    }
    if migration.logs > 0 {
        tracing::info!(
            "migrated {} history logs ({} records) to segmented storage",
            migration.logs,
            migration.records
        );
    }
    Ok(migration)
}
