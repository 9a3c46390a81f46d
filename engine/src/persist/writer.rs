//! The history writer's logic, without its thread or clock: records in,
//! file operations on a [`Storage`], reports out. The thread in
//! `persist.rs` feeds it; the crash test drives it directly on a simulated
//! disk with virtual time. (It reads the machine's clock only to time its
//! fsyncs for metrics, which decide nothing.)

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd_core::MessageId;
use chatd_core::history::{self, Record, RecordKind};

use super::index::IndexBuilder;
use super::retention::{Deletion, Retention, RetentionSummary};
use super::seal::{self, Found};
use super::segment::{IDS_LOG, WHISPERS_DIR, index_path, list_segments, segment_name};
use super::storage::{LogFile, Storage, join};
use super::{FsyncPolicy, PersistReport};
use crate::metrics::SharedLatencies;

/// The history a record belongs in: the directory of its segments (a
/// room's name, or [`WHISPERS_DIR`]), or `None` for id reservations (in
/// [`IDS_LOG`]).
pub fn history_dir(record: &Record) -> Option<String> {
    (record.kind != RecordKind::Reserve).then(|| log_key(record).to_owned())
}

/// The log a record is appended to: its history's directory, or
/// [`IDS_LOG`] for id reservations. Borrowed, so a batch groups its
/// records without an allocation each.
fn log_key(record: &Record) -> &str {
    match record.kind {
        RecordKind::Reserve => IDS_LOG,
        RecordKind::Whisper => WHISPERS_DIR,
        RecordKind::Msg | RecordKind::Action | RecordKind::Urgent => record.room.as_str(),
    }
}

/// The open segment's `.idx` is written again once this many more bytes
/// of records are described than when it was last written.
pub(crate) const INDEX_EVERY: u64 = 256 * 1024;

/// At most this long after a record is appended, its open segment's
/// `.idx` describes it (unless written again since): a room that goes
/// quiet soon has an index covering all of it, so a search reads at most
/// this long's worth of lines, or [`INDEX_EVERY`] bytes, unindexed per room.
pub(crate) const INDEX_AFTER: Duration = Duration::from_secs(5);

/// Most emptied batch buffers kept for reuse, and the largest kept: a
/// batch spread over many rooms, or one of long lines, gives its memory
/// back.
const SPARE_BUFFERS: usize = 8;
const SPARE_BUFFER_BYTES: usize = 1 << 20;

/// How often retention runs when nothing was sealed.
pub(crate) const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// How the writer lays out and trims its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// A segment this long is sealed before the next append.
    pub(crate) segment_bytes: u64,
    /// What retention deletes.
    pub(crate) retention: Retention,
    /// Longest record line read back (sealing scans the segment).
    pub(crate) max_record: usize,
    /// The open segment's `.idx` is rewritten after this many more bytes.
    pub(crate) index_every: u64,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            segment_bytes: crate::persist::DEFAULT_SEGMENT_BYTES,
            retention: Retention::default(),
            max_record: 16 << 20,
            index_every: INDEX_EVERY,
        }
    }
}

/// Appends records to their logs and makes them durable under a policy.
pub(crate) struct Writer<S: Storage> {
    storage: S,
    policy: FsyncPolicy,
    layout: Layout,
    /// Most logs kept open; the least recently written one is closed
    /// (synced first) to make room.
    open_limit: usize,
    /// Open logs by history (room directory, `_whispers`, or `_ids.log`).
    open: HashMap<String, OpenLog<S::Log>>,
    /// Use counter for the LRU.
    tick: u64,
    /// Files closed while bytes past their last whole record may remain
    /// (a cut that failed), by path: the length to cut them to before
    /// appending.
    uncut: HashMap<String, u64>,
    /// Segments closed while an `.idx` of theirs may describe bytes cut
    /// off since: it is removed, durably, before they are appended to.
    stale_indexes: HashSet<String>,
    /// Directories with entries (new files or directories) not yet
    /// synced; `""` is the data directory.
    dirs_unsynced: BTreeSet<String>,
    /// Records written to logs closed since the last sync under
    /// [`FsyncPolicy::Never`] (nothing to sync, reported at the next one).
    detached: Vec<MessageId>,
    /// When the oldest record not yet reported was written.
    oldest_unsynced: Option<Instant>,
    reports: Vec<PersistReport>,
    /// A segment was sealed since retention last ran.
    sealed: bool,
    /// When retention runs next regardless.
    next_retention: Option<Instant>,
    /// When the open segments' indexes are next brought up to date
    /// ([`INDEX_AFTER`] after the first append since they last were).
    index_due: Option<Instant>,
    /// The newest id reservation known durable in `_ids.log` (read from
    /// its end at the first retention pass): retention deletes only
    /// records below it.
    covered: Option<u64>,
    /// How long each fsync of a log or directory takes, for metrics
    /// (shared with the hub, which reads it when scraped).
    fsync: Arc<SharedLatencies>,
    /// Emptied batch buffers, kept for the next batches: encoding into a
    /// buffer that already has room moves no bytes to grow it.
    spare_buffers: Vec<Vec<u8>>,
}

/// A log the writer holds open.
struct OpenLog<L> {
    log: L,
    /// Its path.
    path: String,
    /// The directory of a segmented history (`None`: `_ids.log`).
    dir: Option<String>,
    /// Last use, for the LRU.
    used: u64,
    /// End of the last whole record written: the next append goes here.
    good_len: u64,
    /// End of the last record made durable.
    synced_len: u64,
    /// Bytes past `good_len` may be in the file (a failed append or
    /// sync): cut before appending.
    needs_cut: bool,
    /// Records written since the last sync.
    unsynced: Vec<MessageId>,
    /// The index of the segment's first `indexed_len` bytes, fed as
    /// records are appended. `None` until seeded (from the `.idx` and the
    /// bytes after it, before the first append), after a cut below what it
    /// described, and for `_ids.log`.
    index: Option<IndexBuilder>,
    /// The bytes `index` has seen.
    indexed_len: u64,
    /// What the `.idx` last written (or found) covers
    /// ([`IndexBuilder::covered`]); the next is due [`Layout::index_every`]
    /// bytes later.
    index_written: u64,
    /// The most bytes an `.idx` of this segment on disk may describe,
    /// including one a power cut could bring back: a cut below it makes
    /// the index stale.
    index_claims: u64,
    /// An `.idx` may describe bytes that are no longer there (or be
    /// damaged): it is removed and the removal made durable before the
    /// next append, so that it never describes other bytes later.
    stale_index: bool,
    /// Seeding the index failed (a read error): not tried again while the
    /// segment is open; sealing scans it.
    seed_failed: bool,
}

impl<S: Storage> Writer<S> {
    /// A writer on `storage`, keeping at most `open_limit` logs open.
    #[cfg(test)]
    pub(crate) fn new(storage: S, policy: FsyncPolicy, open_limit: usize) -> Self {
        Self::with_layout(storage, policy, open_limit, Layout::default())
    }

    /// A writer with segment size and retention.
    pub(crate) fn with_layout(
        storage: S,
        policy: FsyncPolicy,
        open_limit: usize,
        layout: Layout,
    ) -> Self {
        Self {
            storage,
            policy,
            layout,
            open_limit: open_limit.max(1),
            open: HashMap::new(),
            tick: 0,
            uncut: HashMap::new(),
            stale_indexes: HashSet::new(),
            dirs_unsynced: BTreeSet::new(),
            detached: Vec::new(),
            oldest_unsynced: None,
            reports: Vec::new(),
            sealed: false,
            next_retention: None,
            index_due: None,
            covered: None,
            fsync: Arc::default(),
            spare_buffers: Vec::new(),
        }
    }

    /// Times every fsync into `latencies` (which the caller shares).
    pub(crate) fn timing_fsyncs(mut self, latencies: Arc<SharedLatencies>) -> Self {
        self.fsync = latencies;
        self
    }

    /// Reports made since the last call, in order.
    pub(crate) fn take_reports(&mut self) -> Vec<PersistReport> {
        std::mem::take(&mut self.reports)
    }

    /// How many logs are open.
    #[cfg(test)]
    pub(crate) fn open_logs(&self) -> usize {
        self.open.len()
    }

    /// Appends a batch: one write per log, records in arrival order.
    pub(crate) fn write_batch(&mut self, now: Instant, batch: &[Arc<Record>]) {
        type Lines<'a> = (Vec<u8>, Vec<MessageId>, Vec<(&'a Record, u64)>);
        let mut per_log: BTreeMap<&str, Lines> = BTreeMap::new();
        for record in batch {
            let entry = per_log.entry(log_key(record)).or_insert_with(|| {
                let bytes = self.spare_buffers.pop().unwrap_or_default();
                (bytes, Vec::new(), Vec::new())
            });
            let start = entry.0.len();
            history::encode_into(record, &mut entry.0);
            entry.1.push(record.id);
            entry.2.push((record, (entry.0.len() - start) as u64));
        }
        let mut failed = Vec::new();
        for (key, (mut bytes, ids, lines)) in per_log {
            let first_id = ids.first().map_or(0, |id| id.get());
            let appended = self.append(key, &bytes, &lines, first_id);
            bytes.clear();
            if self.spare_buffers.len() < SPARE_BUFFERS && bytes.capacity() <= SPARE_BUFFER_BYTES {
                self.spare_buffers.push(bytes);
            }
            match appended {
                Ok(()) => {
                    if let Some(open) = self.open.get_mut(key) {
                        open.unsynced.extend(ids);
                    }
                    self.oldest_unsynced.get_or_insert(now);
                    self.index_due.get_or_insert(now + INDEX_AFTER);
                }
                Err(error) => {
                    tracing::error!(log = %key, %error, records = ids.len(), "cannot write history; these messages are not stored");
                    failed.extend(ids);
                }
            }
        }
        if !failed.is_empty() {
            self.reports.push(PersistReport::Failed(failed));
        }
    }

    /// Whether written records wait for a sync on a timer (`fsync =
    /// every`), so gathering more before writing them delays no report.
    pub(crate) fn syncs_on_a_timer(&self) -> bool {
        matches!(self.policy, FsyncPolicy::Every(_))
    }

    /// How long to wait for more records before a pending sync (or the
    /// next retention pass) is due.
    pub(crate) fn wait_time(&self, now: Instant) -> Option<Duration> {
        let sync = match (self.policy, self.oldest_unsynced) {
            (FsyncPolicy::Every(every), Some(since)) => {
                Some((since + every).saturating_duration_since(now))
            }
            _ => None,
        };
        let retention = if self.layout.retention.is_off() {
            None
        } else {
            Some(
                self.next_retention
                    .map_or(Duration::ZERO, |at| at.saturating_duration_since(now)),
            )
        };
        let index = self.index_due.map(|at| at.saturating_duration_since(now));
        [sync, retention, index].into_iter().flatten().min()
    }

    /// Whether the open segments' indexes are due to be brought up to date.
    pub(crate) fn index_due(&self, now: Instant) -> bool {
        self.index_due.is_some_and(|at| now >= at)
    }

    /// Writes the `.idx` of every open segment with records its index file
    /// does not describe yet.
    pub(crate) fn write_outdated_indexes(&mut self) {
        self.index_due = None;
        for open in self.open.values_mut() {
            if index_outdated(open) {
                write_snapshot(&mut self.storage, open);
            }
        }
    }

    /// Whether [`Writer::sync`] is due.
    pub(crate) fn sync_due(&self, now: Instant) -> bool {
        match self.policy {
            FsyncPolicy::Always | FsyncPolicy::Never => self.oldest_unsynced.is_some(),
            FsyncPolicy::Every(every) => self
                .oldest_unsynced
                .is_some_and(|since| now.saturating_duration_since(since) >= every),
        }
    }

    /// Whether a retention pass is due: retention is on, and a segment
    /// was sealed or a minute passed since the last pass.
    pub(crate) fn retention_due(&self, now: Instant) -> bool {
        !self.layout.retention.is_off()
            && (self.sealed || self.next_retention.is_none_or(|at| now >= at))
    }

    /// Deletes what retention says to (`now_ms`: wall-clock time, ms since
    /// the epoch), closing an open segment first, and logs the counts.
    pub(crate) fn enforce_retention(&mut self, now: Instant, now_ms: u64) -> RetentionSummary {
        self.sealed = false;
        self.next_retention = Some(now + RETENTION_EVERY);
        let covered = match self.covered {
            Some(covered) => covered,
            None => {
                // Only what is durable of it.
                let len = match self.open.get(IDS_LOG) {
                    Some(open) => open.synced_len,
                    None => self.storage.len(IDS_LOG).unwrap_or(0),
                };
                let last = super::retention::last_record(
                    &mut self.storage,
                    IDS_LOG,
                    len,
                    self.layout.max_record,
                )
                .unwrap_or(None);
                let covered = last.map_or(0, |record| record.id.get());
                self.covered = Some(covered);
                covered
            }
        };
        let plan = match super::retention::plan(
            &mut self.storage,
            &self.layout.retention,
            now_ms,
            self.layout.max_record,
        ) {
            Ok(plan) => plan,
            Err(error) => {
                tracing::warn!(%error, "cannot apply history retention; trying again later");
                return RetentionSummary::default();
            }
        };
        let mut summary = RetentionSummary::default();
        for deletion in plan {
            if deletion.last_id >= covered {
                // Its ids are not yet under a durable reservation.
                continue;
            }
            self.close_path(&deletion.path);
            match delete_segment(&mut self.storage, &deletion) {
                Ok(()) => summary.add(&deletion),
                Err(error) => {
                    // Windows: a reader may hold it open. The next pass retries.
                    tracing::warn!(segment = %deletion.path, %error, "cannot delete an expired history segment; trying again later");
                    summary.failed += 1;
                }
            }
        }
        if summary.segments > 0 || summary.failed > 0 {
            tracing::info!(
                segments = summary.segments,
                bytes = summary.bytes,
                by_age = summary.by_age,
                by_room_size = summary.by_room_size,
                by_total_size = summary.by_total_size,
                failed = summary.failed,
                "history retention deleted {} segments ({} bytes)",
                summary.segments,
                summary.bytes
            );
        }
        summary
    }

    /// Closes the log open at `path`, if any, as the LRU would.
    fn close_path(&mut self, path: &str) {
        let key = self
            .open
            .iter()
            .find(|(_, open)| open.path == path)
            .map(|(key, _)| key.clone());
        if let Some(key) = key {
            // About to be deleted: no index written.
            self.close(&key, false);
        }
    }

    /// Shutdown: makes everything written durable and writes the `.idx`
    /// of every open segment that has records its last one does not
    /// describe.
    pub(crate) fn finish(&mut self) {
        self.sync();
        self.write_outdated_indexes();
    }

    /// Makes everything written durable (group commit) and reports it.
    pub(crate) fn sync(&mut self) {
        self.oldest_unsynced = None;
        let mut stored = std::mem::take(&mut self.detached);
        let mut failed = Vec::new();
        if self.policy == FsyncPolicy::Never {
            for open in self.open.values_mut() {
                if open.dir.is_none() {
                    note_covered(&mut self.covered, &open.unsynced);
                }
                stored.append(&mut open.unsynced);
            }
        } else if let Err(error) = self.sync_dirs() {
            // A new log may vanish with its directory entry: nothing
            // written since the last sync can be called durable.
            tracing::error!(%error, "cannot sync a history directory");
            for open in self.open.values_mut() {
                if !open.unsynced.is_empty() {
                    failed.append(&mut open.unsynced);
                    abandon_unsynced(open);
                }
            }
        } else {
            let dirty: Vec<String> = self
                .open
                .iter()
                .filter(|(_, open)| !open.unsynced.is_empty())
                .map(|(name, _)| name.clone())
                .collect();
            for name in dirty {
                if let Some(open) = self.open.get_mut(&name) {
                    let ids = std::mem::take(&mut open.unsynced);
                    if sync_log(open, &self.fsync) {
                        if open.dir.is_none() {
                            note_covered(&mut self.covered, &ids);
                        }
                        stored.extend(ids);
                    } else {
                        failed.extend(ids);
                    }
                }
            }
        }
        if !stored.is_empty() {
            self.reports.push(PersistReport::Stored(stored));
        }
        if !failed.is_empty() {
            self.reports.push(PersistReport::Failed(failed));
        }
    }

    /// Syncs every directory with new entries, the data directory first.
    fn sync_dirs(&mut self) -> io::Result<()> {
        while let Some(dir) = self.dirs_unsynced.first().cloned() {
            let started = Instant::now();
            let synced = self.storage.sync_dir(&dir);
            self.fsync.observe(started.elapsed());
            synced?;
            self.dirs_unsynced.remove(&dir);
        }
        Ok(())
    }

    /// Opens the file a history appends to: `_ids.log`, or the newest
    /// segment of a directory (a new one named after `first_id` if none).
    fn open_history(&mut self, key: &str, first_id: u64) -> io::Result<OpenLog<S::Log>> {
        let (path, dir) = if key == IDS_LOG {
            (IDS_LOG.to_owned(), None)
        } else {
            if self.storage.create_dir(key)? {
                self.dirs_unsynced.insert(String::new());
            }
            let path = match list_segments(&mut self.storage, key)?.pop() {
                Some(newest) => newest.path,
                None => join(key, &segment_name(first_id)),
            };
            (path, Some(key.to_owned()))
        };
        self.open_file(path, dir)
    }

    fn open_file(&mut self, path: String, dir: Option<String>) -> io::Result<OpenLog<S::Log>> {
        let opened = self.storage.open(&path)?;
        if opened.created {
            self.dirs_unsynced.insert(dir.clone().unwrap_or_default());
        }
        // A new segment's index starts empty; an existing one is seeded
        // before the first append.
        let index = (dir.is_some() && opened.created).then(IndexBuilder::new);
        let mut open = OpenLog {
            log: opened.log,
            stale_index: self.stale_indexes.remove(&path),
            path,
            dir,
            used: self.tick,
            good_len: opened.len,
            synced_len: opened.len,
            needs_cut: false,
            unsynced: Vec::new(),
            index,
            indexed_len: 0,
            index_written: 0,
            index_claims: 0,
            seed_failed: false,
        };
        if let Some(len) = self.uncut.remove(&open.path) {
            open.good_len = len;
            open.synced_len = open.synced_len.min(len);
            open.needs_cut = true;
        }
        Ok(open)
    }

    /// Appends whole records to a history, first sealing its segment if
    /// it is full and cutting off anything a failed write left behind, so
    /// a record never lands on a fragment.
    fn append(
        &mut self,
        key: &str,
        bytes: &[u8],
        lines: &[(&Record, u64)],
        first_id: u64,
    ) -> io::Result<()> {
        self.tick += 1;
        if !self.open.contains_key(key) {
            self.make_room();
            let open = self.open_history(key, first_id)?;
            self.open.insert(key.to_owned(), open);
        }
        let full = self.open.get(key).is_some_and(|open| {
            open.dir.is_some() && open.good_len > 0 && open.good_len >= self.layout.segment_bytes
        });
        if full {
            self.rotate(key, first_id)?;
        }
        let tick = self.tick;
        let open = self
            .open
            .get_mut(key)
            .ok_or_else(|| io::Error::other("log not open"))?;
        open.used = tick;
        if open.needs_cut {
            open.log.set_len(open.good_len)?;
            open.needs_cut = false;
        }
        prepare_index(&mut self.storage, open, self.layout.max_record)?;
        let start = open.good_len;
        match open.log.append(bytes) {
            Ok(()) => {
                open.good_len += bytes.len() as u64;
                index_appended(open, start, lines);
                if open.index.as_ref().is_some_and(|index| {
                    index.covered() >= open.index_written.saturating_add(self.layout.index_every)
                }) {
                    write_snapshot(&mut self.storage, open);
                }
                Ok(())
            }
            Err(error) => {
                // Part of the bytes may be in the file. Cut them now; if
                // even that fails, before the next append to this log.
                open.needs_cut = true;
                if open.log.set_len(open.good_len).is_ok() {
                    open.needs_cut = false;
                }
                Err(error)
            }
        }
    }

    /// Syncs the directories, then a log being closed or sealed: whether
    /// its records are durable (if not, they are cut off it).
    fn sync_closing(&mut self, open: &mut OpenLog<S::Log>) -> bool {
        match self.sync_dirs() {
            Ok(()) => sync_log(open, &self.fsync),
            Err(error) => {
                tracing::error!(%error, "cannot sync a history directory");
                abandon_unsynced(open);
                false
            }
        }
    }

    /// Seals the open segment of `key` (cut clean, synced unless the
    /// policy never syncs, indexed) and opens a new one named after
    /// `first_id`. A segment that cannot be made durable is not sealed:
    /// its unsynced records fail and so does this append.
    fn rotate(&mut self, key: &str, first_id: u64) -> io::Result<()> {
        let Some(mut open) = self.open.remove(key) else {
            return Err(io::Error::other("log not open"));
        };
        if open.needs_cut {
            if let Err(error) = open.log.set_len(open.good_len) {
                self.open.insert(key.to_owned(), open);
                return Err(error);
            }
            open.needs_cut = false;
        }
        let ids = std::mem::take(&mut open.unsynced);
        if self.policy == FsyncPolicy::Never {
            self.detached.extend(ids);
        } else {
            let synced = self.sync_closing(&mut open);
            if !synced {
                if !ids.is_empty() {
                    self.reports.push(PersistReport::Failed(ids));
                }
                self.open.insert(key.to_owned(), open);
                return Err(io::Error::other("the full segment could not be sealed"));
            }
            if !ids.is_empty() {
                self.reports.push(PersistReport::Stored(ids));
            }
        }
        // The index built while appending; without one in hand (opened
        // full, or dropped by a cut), from the `.idx` and a scan of the
        // rest.
        let builder = match open.index.take() {
            Some(index) if open.indexed_len == open.good_len => Ok(index),
            _ => seal::seed(
                &mut self.storage,
                &open.path,
                open.good_len,
                self.layout.max_record,
            )
            .map(|(index, _)| index),
        };
        let written = builder.and_then(|index| {
            seal::write_index_bytes(&mut self.storage, &open.path, &index.finish())
        });
        if let Err(error) = written {
            tracing::warn!(segment = %open.path, %error, "cannot write a history segment index; readers will scan the segment");
        }
        drop(open);
        self.sealed = true;
        let new = self.open_file(join(key, &segment_name(first_id)), Some(key.to_owned()))?;
        self.open.insert(key.to_owned(), new);
        Ok(())
    }

    /// Closes the least recently used log if the limit is reached.
    fn make_room(&mut self) {
        while self.open.len() >= self.open_limit {
            let Some(name) = self
                .open
                .iter()
                .min_by_key(|(_, open)| open.used)
                .map(|(name, _)| name.clone())
            else {
                return;
            };
            self.close(&name, true);
        }
    }

    /// Closes an open log, syncing it first unless the policy never syncs,
    /// and (`write_index`) writing its `.idx` if records were appended
    /// since the last.
    fn close(&mut self, key: &str, write_index: bool) {
        let Some(mut open) = self.open.remove(key) else {
            return;
        };
        let ids = std::mem::take(&mut open.unsynced);
        if self.policy == FsyncPolicy::Never {
            self.detached.extend(ids);
        } else if !ids.is_empty() {
            let synced = self.sync_closing(&mut open);
            if synced && open.dir.is_none() {
                note_covered(&mut self.covered, &ids);
            }
            self.reports.push(if synced {
                PersistReport::Stored(ids)
            } else {
                PersistReport::Failed(ids)
            });
        }
        // A reopened log's length is taken as durable, so one is only
        // closed at a durable length (or remembered as still to cut).
        if open.needs_cut {
            self.uncut.insert(open.path.clone(), open.good_len);
        }
        if open.stale_index {
            self.stale_indexes.insert(open.path.clone());
        } else if write_index && index_outdated(&open) {
            write_snapshot(&mut self.storage, &mut open);
        }
    }
}

/// Before the first append to a segment opened again, seeds its index
/// (from its `.idx` when intact, then a scan of the bytes after it); and
/// removes an `.idx` that may describe bytes that are no longer there,
/// durably, so that no power cut brings it back over other records.
fn prepare_index<S: Storage>(
    storage: &mut S,
    open: &mut OpenLog<S::Log>,
    max_record: usize,
) -> io::Result<()> {
    let Some(dir) = open.dir.clone() else {
        return Ok(());
    };
    if open.index.is_none() && !open.seed_failed {
        match seal::seed(storage, &open.path, open.good_len, max_record) {
            Ok((index, found)) => {
                open.index = Some(index);
                open.indexed_len = open.good_len;
                match found {
                    Found::Usable { covered } => {
                        open.index_written = covered;
                        open.index_claims = open.index_claims.max(covered);
                    }
                    Found::Unusable => open.stale_index = true,
                    Found::Nothing => open.index_written = 0,
                }
            }
            Err(error) => {
                tracing::warn!(segment = %open.path, %error, "cannot read a history segment to index it; sealing will scan it");
                open.seed_failed = true;
                // Whatever index is there cannot be trusted.
                open.stale_index = true;
            }
        }
    }
    if open.stale_index {
        match storage.remove(&index_path(&open.path)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        storage.sync_dir(&dir)?;
        open.stale_index = false;
        open.index_claims = 0;
        open.index_written = 0;
    }
    Ok(())
}

/// Feeds the records just appended at `start` to the segment's index.
fn index_appended<L>(open: &mut OpenLog<L>, start: u64, lines: &[(&Record, u64)]) {
    let Some(index) = open.index.as_mut() else {
        return;
    };
    if open.indexed_len != start {
        // Not in step with the file: dropped, sealing scans instead.
        open.index = None;
        return;
    }
    let mut offset = start;
    for (record, len) in lines {
        index.add(offset, *len, record);
        offset += len;
    }
    open.indexed_len = open.good_len;
}

/// Whether the segment's index describes records its last `.idx` does not
/// (and may be written: in step with the file, nothing stale on disk).
fn index_outdated<L>(open: &OpenLog<L>) -> bool {
    open.dir.is_some()
        && !open.stale_index
        && open.indexed_len == open.good_len
        && open
            .index
            .as_ref()
            .is_some_and(|index| index.covered() > open.index_written)
}

/// Writes the open segment's `.idx` as its index stands (only bytes
/// already written to the segment are described). Failing is logged:
/// readers scan what no index describes.
fn write_snapshot<S: Storage>(storage: &mut S, open: &mut OpenLog<S::Log>) {
    let Some(index) = open.index.as_ref() else {
        return;
    };
    // Counted before trying: a failed write may still have replaced it.
    open.index_claims = open.index_claims.max(open.indexed_len);
    open.index_written = index.covered();
    if let Err(error) = seal::write_index_bytes(storage, &open.path, &index.snapshot()) {
        tracing::warn!(segment = %open.path, %error, "cannot write a history segment index; readers will scan the segment");
    }
}

/// After the segment was cut back to `good_len`: an index describing more
/// is dropped (sealing or the next append seeds another), and an `.idx`
/// on disk that may describe more is marked stale.
fn index_cut<L>(open: &mut OpenLog<L>) {
    if open.indexed_len > open.good_len {
        open.index = None;
        open.indexed_len = 0;
        open.seed_failed = false;
    }
    if open.index_claims > open.good_len {
        open.stale_index = true;
    }
}

/// Notes reservations made durable (only once the starting point was read
/// from `_ids.log`: before, the first retention pass reads it anyway).
fn note_covered(covered: &mut Option<u64>, reservations: &[MessageId]) {
    if let (Some(covered), Some(last)) = (covered.as_mut(), reservations.last()) {
        // The last reservation written is the one that counts (IdFloor).
        *covered = last.get();
    }
}

/// Deletes a segment's index, then the segment (a segment without its
/// index is fine; an index without its segment is an orphan).
fn delete_segment<S: Storage>(storage: &mut S, deletion: &Deletion) -> io::Result<()> {
    match storage.remove(&super::segment::index_path(&deletion.path)) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    storage.remove(&deletion.path)
}

/// Syncs one log; false if it failed (the error is logged here, where the
/// log's name is known). After a failed sync the kernel may have dropped the
/// unwritten pages while still showing them to reads, so the log is cut
/// back to its last durable length: later records must not follow a hole
/// (the pages may be lost, or written later, as garbage or not at all).
fn sync_log<L: LogFile>(open: &mut OpenLog<L>, fsync: &SharedLatencies) -> bool {
    let started = Instant::now();
    let synced = open.log.sync();
    // Failed ones too: a disk that errors slowly is what this shows.
    fsync.observe(started.elapsed());
    match synced {
        Ok(()) => {
            open.synced_len = open.good_len;
            true
        }
        Err(error) => {
            tracing::error!(log = %open.path, %error, "cannot sync history to disk; unsynced messages are not stored");
            abandon_unsynced(open);
            false
        }
    }
}

/// Cuts the records written since the last durable length off a log (they
/// are reported as not stored). Their bytes may be partly on disk, and
/// must not become a hole under records written later.
fn abandon_unsynced<L: LogFile>(open: &mut OpenLog<L>) {
    open.good_len = open.synced_len;
    index_cut(open);
    open.needs_cut = true;
    if open.log.set_len(open.good_len).is_ok() {
        open.needs_cut = false;
    }
}

#[cfg(test)]
mod fsync_timing_tests {
    use chatd_core::{Nick, RoomName};

    use super::super::storage::DirStorage;
    use super::*;

    fn record(id: u64) -> Arc<Record> {
        Arc::new(Record {
            id: MessageId::new(id),
            room: RoomName::parse("general").expect("room"),
            ts: id,
            from: Nick::parse("alice").expect("nick"),
            kind: RecordKind::Msg,
            text: format!("message {id}"),
            to: None,
            private: false,
        })
    }

    /// The fsyncs one sync of a record in a new room makes, as timed.
    fn fsyncs_timed(policy: FsyncPolicy) -> u64 {
        let dir = tempfile::tempdir().expect("temporary directory");
        let latencies = Arc::new(SharedLatencies::default());
        let mut writer =
            Writer::new(DirStorage::new(dir.path()), policy, 4).timing_fsyncs(latencies.clone());
        let now = Instant::now();
        writer.write_batch(now, &[record(1)]);
        writer.sync();
        latencies.snapshot().count()
    }

    #[test]
    fn every_fsync_of_a_log_or_directory_is_timed() {
        // The data directory and the room's (new entries), then the log.
        assert_eq!(fsyncs_timed(FsyncPolicy::Always), 3);
        assert_eq!(fsyncs_timed(FsyncPolicy::Never), 0);
    }
}
