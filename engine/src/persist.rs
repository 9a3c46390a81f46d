//! History on disk: one append-only log per room, written off the hot path
//! with group commit, and read back at start.
//!
//! The writer thread takes every record the core emits, appends each to its
//! room's log (`<data-dir>/<room>.log`, format in docs/HISTORY.md) and makes
//! it durable under the [`FsyncPolicy`]: one fsync covers every record
//! written since the last one. Only then does it report the records as
//! persisted, which is when `#ack` clients get their ACK. A record that
//! could not be written is reported as failed and never acknowledged; the
//! server keeps serving chat either way.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chatd_core::history::{self, Record};
use chatd_core::{MessageId, RoomName};
use serde::{Deserialize, Serialize};

/// When written records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch of writes, before reporting them.
    Always,
    /// At most this long after a record was written.
    Every(Duration),
    /// Never; the operating system writes back when it likes. A record is
    /// reported once it is in the page cache.
    Never,
}

impl FsyncPolicy {
    /// Parses `always`, `never`, or a duration such as `10ms`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            interval => {
                let every = chatd_core::duration::parse(interval).map_err(|_| {
                    format!("fsync policy {text:?} is not always, never or a duration such as 10ms")
                })?;
                Ok(if every.is_zero() {
                    Self::Always
                } else {
                    Self::Every(every)
                })
            }
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Never => f.write_str("never"),
            Self::Every(every) => write!(f, "every {}", chatd_core::duration::format(*every)),
        }
    }
}

impl Serialize for FsyncPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Every(every) => s.serialize_str(&chatd_core::duration::format(*every)),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What the writer reports back, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistReport {
    /// These records are durable under the policy.
    Stored(Vec<MessageId>),
    /// These records could not be written.
    Failed(Vec<MessageId>),
}

/// The sending side of the writer; dropping it (or [`HistoryWriter::finish`])
/// makes the writer flush, sync and stop.
#[derive(Debug)]
pub struct HistoryWriter {
    records: Option<Sender<Arc<Record>>>,
    thread: Option<JoinHandle<()>>,
}

impl HistoryWriter {
    /// Starts the writer thread on `dir` (created if missing).
    pub fn start(
        dir: &Path,
        policy: FsyncPolicy,
        report: impl Fn(PersistReport) + Send + 'static,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (records, inbox) = mpsc::channel();
        let mut state = WriterState {
            dir: dir.to_path_buf(),
            policy,
            files: BTreeMap::new(),
            dirty: BTreeSet::new(),
            unsynced: Vec::new(),
            oldest_unsynced: None,
            report: Box::new(report),
        };
        let thread = std::thread::Builder::new()
            .name("chatd-history".into())
            .spawn(move || state.run(&inbox))?;
        Ok(Self {
            records: Some(records),
            thread: Some(thread),
        })
    }

    /// Queues a record for its room's log.
    pub fn append(&self, record: Arc<Record>) {
        if let Some(records) = &self.records {
            // The writer only stops after this sender is dropped, so a send
            // can only fail if its thread panicked; the record is then lost
            // and never acknowledged, which is what the failure report means.
            let _ = records.send(record);
        }
    }

    /// Flushes and syncs everything queued, then stops the writer.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.records = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the history writer thread panicked");
        }
    }
}

impl Drop for HistoryWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

struct WriterState {
    dir: PathBuf,
    policy: FsyncPolicy,
    files: BTreeMap<RoomName, File>,
    dirty: BTreeSet<RoomName>,
    unsynced: Vec<MessageId>,
    oldest_unsynced: Option<Instant>,
    report: Box<dyn Fn(PersistReport) + Send>,
}

/// Most records written between two looks at the fsync deadline.
const BATCH: usize = 4096;

impl WriterState {
    fn run(&mut self, inbox: &Receiver<Arc<Record>>) {
        loop {
            let first = match self.wait_time() {
                None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(wait) => inbox.recv_timeout(wait),
            };
            match first {
                Ok(record) => {
                    let mut batch = vec![record];
                    batch.extend(inbox.try_iter().take(BATCH - 1));
                    self.write_batch(&batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.sync();
                    return;
                }
            }
            if self.sync_due() {
                self.sync();
            }
        }
    }

    /// How long to wait for more records before a pending sync is due.
    fn wait_time(&self) -> Option<Duration> {
        match (self.policy, self.oldest_unsynced) {
            (FsyncPolicy::Every(every), Some(since)) => {
                Some((since + every).saturating_duration_since(Instant::now()))
            }
            _ => None,
        }
    }

    fn sync_due(&self) -> bool {
        match self.policy {
            FsyncPolicy::Always | FsyncPolicy::Never => !self.unsynced.is_empty(),
            FsyncPolicy::Every(every) => self
                .oldest_unsynced
                .is_some_and(|since| since.elapsed() >= every),
        }
    }

    fn write_batch(&mut self, batch: &[Arc<Record>]) {
        // One write per room per batch: records of a room are contiguous in
        // its buffer, in arrival order.
        let mut per_room: BTreeMap<&RoomName, (Vec<u8>, Vec<MessageId>)> = BTreeMap::new();
        for record in batch {
            let entry = per_room.entry(&record.room).or_default();
            entry.0.extend_from_slice(&history::encode(record));
            entry.1.push(record.id);
        }
        let mut failed = Vec::new();
        for (room, (bytes, ids)) in per_room {
            match self.append(room, &bytes) {
                Ok(()) => {
                    self.dirty.insert(room.clone());
                    self.unsynced.extend(ids);
                    self.oldest_unsynced.get_or_insert_with(Instant::now);
                }
                Err(error) => {
                    tracing::error!(room = %room, %error, records = ids.len(), "cannot write history; these messages are not stored");
                    // A failed append may have left a partial line; the next
                    // start cuts it off as a torn tail. Reopen next time.
                    self.files.remove(room);
                    failed.extend(ids);
                }
            }
        }
        if !failed.is_empty() {
            (self.report)(PersistReport::Failed(failed));
        }
    }

    fn append(&mut self, room: &RoomName, bytes: &[u8]) -> io::Result<()> {
        if !self.files.contains_key(room) {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path(&self.dir, room))?;
            self.files.insert(room.clone(), file);
        }
        let file = self
            .files
            .get_mut(room)
            .ok_or_else(|| io::Error::other("log file vanished"))?;
        file.write_all(bytes)
    }

    fn sync(&mut self) {
        if self.unsynced.is_empty() {
            return;
        }
        let mut sync_failed = false;
        if self.policy != FsyncPolicy::Never {
            for room in std::mem::take(&mut self.dirty) {
                if let Some(file) = self.files.get(&room)
                    && let Err(error) = file.sync_data()
                {
                    tracing::error!(room = %room, %error, "cannot sync history to disk");
                    sync_failed = true;
                }
            }
        } else {
            self.dirty.clear();
        }
        self.oldest_unsynced = None;
        let ids = std::mem::take(&mut self.unsynced);
        // After a failed fsync nothing written since the last good one can be
        // called durable.
        (self.report)(if sync_failed {
            PersistReport::Failed(ids)
        } else {
            PersistReport::Stored(ids)
        });
    }
}

/// The log file of a room. Room names are safe file names by construction.
pub fn log_path(dir: &Path, room: &RoomName) -> PathBuf {
    dir.join(format!("{}.log", room.as_str()))
}

/// What start-up found in the data directory.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every readable record, room by room in file order.
    pub records: Vec<Record>,
    /// Logs read.
    pub logs: usize,
    /// Damaged lines skipped in the middle of logs.
    pub skipped: usize,
    /// Torn tails cut off.
    pub torn: usize,
}

/// Reads every room log under `dir`, cutting torn tails off the files (so
/// appends start on a clean line) and skipping damaged records, each
/// reported in the log. A missing directory is an empty history.
pub fn recover_dir(dir: &Path) -> io::Result<Recovered> {
    let mut recovered = Recovered::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(recovered),
        Err(error) => return Err(error),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    paths.sort();
    for path in paths {
        if !path.is_file() {
            tracing::warn!(log = %path.display(), "not a regular file; skipped");
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let recovery = history::recover(&bytes);
        recovered.logs += 1;
        for damage in &recovery.skipped {
            tracing::warn!(log = %path.display(), offset = damage.offset, len = damage.len, error = %damage.error, "skipped a damaged history record");
        }
        recovered.skipped += recovery.skipped.len();
        if let Some(torn) = &recovery.torn_tail {
            tracing::warn!(log = %path.display(), offset = torn.offset, len = torn.len, error = %torn.error, "cut off a torn history tail");
            OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(recovery.valid_len as u64)?;
            recovered.torn += 1;
        }
        recovered.records.extend(recovery.records);
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chatd_core::Nick;
    use chatd_core::history::RecordKind;

    use super::*;

    fn record(id: u64, room: &str) -> Arc<Record> {
        Arc::new(Record {
            id: MessageId::new(id),
            room: RoomName::parse(room).unwrap(),
            ts: id,
            from: Nick::parse("alice").unwrap(),
            kind: RecordKind::Msg,
            text: format!("message {id}"),
            to: None,
            private: false,
        })
    }

    fn write_all(dir: &Path, policy: FsyncPolicy, records: &[Arc<Record>]) -> Vec<PersistReport> {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let writer =
            HistoryWriter::start(dir, policy, move |report| sink.lock().unwrap().push(report))
                .unwrap();
        for record in records {
            writer.append(record.clone());
        }
        writer.finish();
        reports.lock().unwrap().clone()
    }

    fn stored_ids(reports: &[PersistReport]) -> Vec<u64> {
        reports
            .iter()
            .flat_map(|report| match report {
                PersistReport::Stored(ids) => ids.clone(),
                PersistReport::Failed(_) => Vec::new(),
            })
            .map(MessageId::get)
            .collect()
    }

    #[test]
    fn records_land_in_per_room_logs_and_are_all_reported_stored() {
        let dir = tempfile::tempdir().unwrap();
        for policy in [
            FsyncPolicy::Always,
            FsyncPolicy::Every(Duration::from_millis(5)),
            FsyncPolicy::Never,
        ] {
            let records = [
                record(1, "general"),
                record(2, "rust"),
                record(3, "general"),
            ];
            let mut ids = stored_ids(&write_all(dir.path(), policy, &records));
            ids.sort_unstable();
            assert_eq!(ids, [1, 2, 3], "{policy}");
        }
        let recovered = recover_dir(dir.path()).unwrap();
        assert_eq!(recovered.logs, 2);
        assert_eq!(recovered.records.len(), 9);
        assert_eq!(recovered.records[0].room.as_str(), "general");
    }

    #[test]
    fn torn_tail_is_cut_from_the_file_and_appends_continue_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        write_all(
            dir.path(),
            FsyncPolicy::Always,
            &[record(1, "general"), record(2, "general")],
        );
        let path = log_path(dir.path(), &RoomName::general());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 7);
        std::fs::write(&path, &bytes).unwrap();
        let recovered = recover_dir(dir.path()).unwrap();
        assert_eq!((recovered.records.len(), recovered.torn), (1, 1));
        write_all(dir.path(), FsyncPolicy::Always, &[record(3, "general")]);
        let ids: Vec<u64> = recover_dir(dir.path())
            .unwrap()
            .records
            .iter()
            .map(|r| r.id.get())
            .collect();
        assert_eq!(ids, [1, 3]);
    }

    #[test]
    fn unwritable_directory_reports_failure_instead_of_storing() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("general.log");
        std::fs::create_dir(&blocker).unwrap();
        let reports = write_all(
            dir.path(),
            FsyncPolicy::Always,
            &[record(1, "general"), record(2, "rust")],
        );
        assert_eq!(stored_ids(&reports), [2]);
        assert!(reports.contains(&PersistReport::Failed(vec![MessageId::new(1)])));
    }

    #[test]
    fn policy_parses_words_and_durations() {
        assert_eq!(FsyncPolicy::parse("always"), Ok(FsyncPolicy::Always));
        assert_eq!(
            FsyncPolicy::parse("10ms"),
            Ok(FsyncPolicy::Every(Duration::from_millis(10)))
        );
        assert!(FsyncPolicy::parse("sometimes").is_err());
    }
}
