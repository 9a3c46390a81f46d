//! History on disk: per room a directory of append-only segments, written
//! off the hot path with group commit, and read back at start from their
//! ends only.
//!
//! The writer thread takes every record the core emits, appends each to
//! its history's newest segment (`<data-dir>/<room>/<FIRSTID>.log`;
//! whispers in `_whispers/`, id reservations in `_ids.log`; format in
//! docs/HISTORY.md), seals a full segment (synced, indexed) before
//! starting the next, and makes records durable under the
//! [`FsyncPolicy`]: one fsync covers every record written since the last
//! one. Only then does it report the records as
//! persisted, which is when `#ack` clients get their ACK. A record that
//! could not be written is reported as failed and never acknowledged; the
//! server keeps serving chat either way.
//!
//! File operations go through [`Storage`] ([`DirStorage`] on std::fs), so
//! the crash test can run the writer on a simulated disk that loses,
//! tears and reorders whatever was not synced. Between batches the writer
//! also deletes what [`Retention`] says to.

pub mod index;
mod migrate;
pub mod reader;
mod recover;
mod retention;
mod seal;
mod segment;
mod storage;
mod writer;

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod segment_tests;
#[cfg(test)]
pub(crate) mod sim;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chatd_core::history::Record;
use chatd_core::{MessageId, RoomName};
use serde::{Deserialize, Serialize};

pub use self::migrate::{Migration, migrate};
pub use self::reader::{HistoryReader, answer, export};
pub use self::recover::{
    Damage, LogScan, MAX_DETAILED, Recovered, RecoveryLimits, footprint, recover, scan, scan_lines,
};
pub use self::retention::{Deletion, HistoryLimits, Reason, Retention, RetentionSummary};
pub use self::segment::{
    BackLine, BackLines, IDS_LOG, Segment, WHISPERS_DIR, index_path, is_history_dir, list_segments,
    parse_segment_name, segment_name,
};
pub use self::storage::{DirStorage, Entry, FileLog, LogFile, Opened, Storage};
pub use self::writer::history_dir;
use self::writer::{Layout, Writer};
use crate::metrics::SharedLatencies;

/// Default size at which a segment is sealed (`[history] segment_bytes`).
pub const DEFAULT_SEGMENT_BYTES: u64 = 4 << 20;

/// Smallest segment size the settings accept.
pub const MIN_SEGMENT_BYTES: u64 = 64 << 10;

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
    /// Records the writer is done with, handed back so that the thread
    /// that made them lets them go: glibc's `free` of memory another
    /// thread allocated waits for that thread's arena lock, and the writer
    /// dropping the last copies made the core and the writer take turns on
    /// it (28 % of the writer's sleeps in S1). Not an outcome: sent once
    /// written, along with the writer's next reports; the receiver only
    /// lets them go.
    Spent(Vec<Arc<Record>>),
}

/// How the writer runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterOptions {
    /// When written records are forced to disk.
    pub policy: FsyncPolicy,
    /// Most log files open at once; the least recently written is closed
    /// (after a sync) to open another.
    pub open_files: usize,
    /// Most records queued for the writer. When the queue is full (the
    /// disk is stuck or far too slow), a new record is reported as not
    /// stored at once instead of waiting.
    pub queue: usize,
    /// A segment this long is sealed before the next append.
    pub segment_bytes: u64,
    /// What old history is deleted.
    pub retention: Retention,
}

impl WriterOptions {
    /// Default limit on open log files.
    pub const DEFAULT_OPEN_FILES: usize = 64;
    /// Default queue length: with 4 KiB lines at most 64 MiB waiting, and
    /// at 10,000 messages a second well over a second of disk stall.
    pub const DEFAULT_QUEUE: usize = 16_384;

    /// The defaults, with `policy`.
    pub fn new(policy: FsyncPolicy) -> Self {
        Self {
            policy,
            open_files: Self::DEFAULT_OPEN_FILES,
            queue: Self::DEFAULT_QUEUE,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            retention: Retention::default(),
        }
    }
}

/// Reports from the writer, shared with the sending side (which reports
/// records it cannot queue).
type ReportFn = Arc<dyn Fn(PersistReport) + Send + Sync>;

/// The sending side of the writer; dropping it (or [`HistoryWriter::finish`])
/// makes the writer flush, sync and stop.
pub struct HistoryWriter {
    records: Option<SyncSender<Arc<Record>>>,
    report: ReportFn,
    /// Records refused because the queue was full, for the log.
    refused: AtomicU64,
    /// How long the writer's fsyncs take, for metrics.
    fsync: Arc<SharedLatencies>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriter")
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl HistoryWriter {
    /// Starts the writer thread on the directory `dir` (created if missing).
    pub fn start(
        dir: &Path,
        options: WriterOptions,
        report: impl Fn(PersistReport) + Send + Sync + 'static,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Self::start_on(DirStorage::new(dir), options, report)
    }

    /// Starts the writer thread on any storage.
    pub fn start_on<S: Storage>(
        storage: S,
        options: WriterOptions,
        report: impl Fn(PersistReport) + Send + Sync + 'static,
    ) -> io::Result<Self> {
        let report: ReportFn = Arc::new(report);
        let (records, inbox) = mpsc::sync_channel(options.queue.max(1));
        let layout = Layout {
            segment_bytes: options.segment_bytes.max(1),
            retention: options.retention,
            ..Layout::default()
        };
        let fsync = Arc::new(SharedLatencies::default());
        let mut writer = Writer::with_layout(storage, options.policy, options.open_files, layout)
            .timing_fsyncs(fsync.clone());
        let thread_report = report.clone();
        let thread = std::thread::Builder::new()
            .name("chatd-history".into())
            .spawn(move || run(&mut writer, &inbox, thread_report.as_ref()))?;
        Ok(Self {
            records: Some(records),
            report,
            refused: AtomicU64::new(0),
            fsync,
            thread: Some(thread),
        })
    }

    /// How long the writer's fsyncs (of logs and directories) took.
    pub(crate) fn fsync_latencies(&self) -> &SharedLatencies {
        &self.fsync
    }

    /// Queues a record for its log. Never blocks: if the queue is full the
    /// record is reported as not stored at once (its sender, if waiting for
    /// an ACK, gets `! not-stored`), so a stuck disk neither stalls chat
    /// nor grows memory, and nothing is acknowledged that was not written.
    pub fn append(&self, record: Arc<Record>) {
        let Some(records) = &self.records else {
            return;
        };
        let id = record.id;
        match records.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let refused = self.refused.fetch_add(1, Ordering::Relaxed);
                // Once per 10,000, so a stuck disk does not flood the log.
                if refused.is_multiple_of(10_000) {
                    tracing::error!(
                        refused = refused + 1,
                        "the history writer is behind (queue full); messages are not stored"
                    );
                }
                (self.report)(PersistReport::Failed(vec![id]));
            }
            // The writer only stops after this sender is dropped, so this
            // means its thread panicked.
            Err(TrySendError::Disconnected(_)) => {
                (self.report)(PersistReport::Failed(vec![id]));
            }
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

/// Most records written between two looks at the fsync deadline.
const BATCH: usize = 4096;

/// While records keep coming and syncs are on a timer, the writer lets
/// them gather this long (never past a due sync) before taking the next
/// batch: each wake-up costs the writer a sleep and the core a futex
/// wake, and under load it woke for every handful of records (3,400
/// times a second in S1). No record is reported later for it: with
/// `fsync = every`, records are reported at the sync.
const GATHER: Duration = Duration::from_millis(5);

/// The writer thread: batches from the queue, syncs when due, reports.
fn run<S: Storage>(
    writer: &mut Writer<S>,
    inbox: &Receiver<Arc<Record>>,
    report: &(dyn Fn(PersistReport) + Send + Sync),
) {
    // Reused from batch to batch: the writer allocates nothing per wake.
    let mut batch = Vec::with_capacity(BATCH);
    // Written records, handed back with the next reports.
    let mut spent = Vec::new();
    loop {
        let first = match writer.wait_time(Instant::now()) {
            None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(wait) => inbox.recv_timeout(wait),
        };
        let mut stop = false;
        let mut gather = false;
        match first {
            Ok(record) => {
                batch.push(record);
                batch.extend(inbox.try_iter().take(BATCH - 1));
                writer.write_batch(Instant::now(), &batch);
                gather = batch.len() < BATCH && writer.syncs_on_a_timer();
                spent.append(&mut batch);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => stop = true,
        }
        if stop {
            // Syncs, and writes the open segments' indexes.
            writer.finish();
        } else if writer.sync_due(Instant::now()) {
            writer.sync();
        }
        let reports = writer.take_reports();
        let reported = !reports.is_empty();
        for one in reports {
            report(one);
        }
        if reported && !spent.is_empty() {
            report(PersistReport::Spent(std::mem::take(&mut spent)));
        }
        if stop {
            return;
        }
        let now = Instant::now();
        if writer.index_due(now) {
            writer.write_outdated_indexes();
        }
        if writer.retention_due(now) {
            writer.enforce_retention(now, unix_ms());
            for one in writer.take_reports() {
                report(one);
            }
        }
        if gather {
            let pause = writer
                .wait_time(Instant::now())
                .map_or(GATHER, |due| due.min(GATHER));
            std::thread::sleep(pause);
        }
    }
}

/// Wall-clock time for retention (the writer thread may read clocks; the
/// core may not).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The answer to a history query when no stored history is read
/// (`persist = false`): nothing stored, so no records, never a wait.
pub fn unanswered(
    query: &chatd_core::history_query::HistoryQuery,
) -> chatd_core::history_query::HistoryAnswer {
    chatd_core::history_query::HistoryAnswer {
        request: query.request,
        records: Vec::new(),
        shortfall: None,
    }
}

/// The directory of a room's segments. Room names are safe file names by
/// construction.
pub fn room_dir(dir: &Path, room: &RoomName) -> PathBuf {
    dir.join(room.as_str())
}

/// Every byte of a history (a room's name, or [`WHISPERS_DIR`]) in order:
/// its segments one after the other, as one old flat log would hold them
/// (for tools and tests; `chatd_core::history::recover` reads the result).
pub fn read_history(dir: &Path, history: &str) -> io::Result<Vec<u8>> {
    let mut storage = DirStorage::new(dir);
    let mut bytes = Vec::new();
    for segment in list_segments(&mut storage, history)? {
        io::Read::read_to_end(&mut storage.read(&segment.path)?, &mut bytes)?;
    }
    Ok(bytes)
}

/// Reads what start-up needs under `dir` (see [`recover`]). A missing
/// directory is an empty history.
pub fn recover_dir(dir: &Path, limits: &RecoveryLimits) -> io::Result<Recovered> {
    recover(&mut DirStorage::new(dir), limits)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use chatd_core::Nick;
    use chatd_core::history::{self, RecordKind};

    use super::sim::{Faults, SimDisk};
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
        let writer = HistoryWriter::start(dir, WriterOptions::new(policy), move |report| {
            sink.lock().unwrap().push(report)
        })
        .unwrap();
        for record in records {
            writer.append(record.clone());
        }
        writer.finish();
        reports.lock().unwrap().clone()
    }

    /// The one segment of a history.
    fn only_segment(dir: &Path, history: &str) -> PathBuf {
        let mut storage = DirStorage::new(dir);
        let segments = list_segments(&mut storage, history).unwrap();
        assert_eq!(segments.len(), 1, "{segments:?}");
        dir.join(&segments[0].path)
    }

    /// At shutdown the writer thread writes the index of every open
    /// segment, so a search after a restart has blocks to skip.
    #[test]
    fn shutdown_writes_the_open_segments_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<Arc<Record>> = (1..=40)
            .map(|id| record(id, ["a", "b"][id as usize % 2]))
            .collect();
        write_all(dir.path(), FsyncPolicy::Always, &records);
        for room in ["a", "b"] {
            let segment = only_segment(dir.path(), room);
            let bytes = std::fs::read(&segment).unwrap();
            let index = std::fs::read(segment.with_extension("idx")).expect("an index");
            assert_eq!(index, index::build_for_segment(&bytes), "{room}");
        }
    }

    fn stored_ids(reports: &[PersistReport]) -> Vec<u64> {
        reports
            .iter()
            .flat_map(|report| match report {
                PersistReport::Stored(ids) => ids.clone(),
                PersistReport::Failed(_) | PersistReport::Spent(_) => Vec::new(),
            })
            .map(MessageId::get)
            .collect()
    }

    /// Every record written comes back to the reporting side, after the
    /// report that stored it, so the thread that made it frees it; the
    /// writer keeps no copy.
    #[test]
    fn written_records_are_handed_back_after_their_reports() {
        let dir = tempfile::tempdir().unwrap();
        for policy in [
            FsyncPolicy::Always,
            FsyncPolicy::Every(Duration::from_millis(5)),
            FsyncPolicy::Never,
        ] {
            let records: Vec<Arc<Record>> = (1..=300)
                .map(|id| record(id, ["a", "b", "c"][id as usize % 3]))
                .collect();
            let reports = write_all(dir.path(), policy, &records);
            let mut stored = BTreeSet::new();
            let mut handed_back = Vec::new();
            for report in &reports {
                match report {
                    PersistReport::Stored(ids) => stored.extend(ids.iter().map(|id| id.get())),
                    PersistReport::Failed(ids) => panic!("{policy:?}: failed {ids:?}"),
                    PersistReport::Spent(spent) => {
                        for record in spent {
                            let id = record.id.get();
                            assert!(stored.contains(&id), "{policy:?}: {id} back before stored");
                            handed_back.push(id);
                        }
                    }
                }
            }
            handed_back.sort_unstable();
            assert_eq!(handed_back, (1..=300).collect::<Vec<u64>>(), "{policy:?}");
            for record in &records {
                assert_eq!(
                    Arc::strong_count(record),
                    2,
                    "{policy:?}: the writer kept a copy"
                );
            }
        }
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
        let recovered = recover_dir(dir.path(), &RecoveryLimits::unlimited()).unwrap();
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
        let path = only_segment(dir.path(), "general");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 7);
        std::fs::write(&path, &bytes).unwrap();
        let recovered = recover_dir(dir.path(), &RecoveryLimits::unlimited()).unwrap();
        assert_eq!((recovered.records.len(), recovered.torn), (1, 1));
        write_all(dir.path(), FsyncPolicy::Always, &[record(3, "general")]);
        let ids: Vec<u64> = recover_dir(dir.path(), &RecoveryLimits::unlimited())
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
        // A file where the room's directory should be.
        let blocker = dir.path().join("general");
        std::fs::write(&blocker, b"").unwrap();
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

    #[test]
    fn whispers_and_id_reservations_have_their_own_logs() {
        let dir = tempfile::tempdir().unwrap();
        let whisper = Arc::new(Record {
            kind: RecordKind::Whisper,
            to: Some(Nick::parse("bob").unwrap()),
            private: true,
            ..(*record(2, "rust")).clone()
        });
        let reservation = Arc::new(Record::reservation(MessageId::new(1025), 0));
        let records = [reservation, record(1, "rust"), whisper];
        let mut ids = stored_ids(&write_all(dir.path(), FsyncPolicy::Always, &records));
        ids.sort_unstable();
        assert_eq!(ids, [1, 2, 1025]);
        let read = |name: &str| String::from_utf8(read_history(dir.path(), name).unwrap()).unwrap();
        assert!(
            !read("rust").contains("whisper"),
            "not in the sender's room log"
        );
        assert!(read(WHISPERS_DIR).contains("\"kind\":\"whisper\""));
        let ids = std::fs::read_to_string(dir.path().join(IDS_LOG)).unwrap();
        assert!(ids.contains("\"kind\":\"reserve\""));
        assert!(!dir.path().join("general").exists());
        let recovered = recover_dir(dir.path(), &RecoveryLimits::unlimited()).unwrap();
        assert_eq!(recovered.logs, 3);
        assert_eq!(recovered.next_id, 1026);
        // Only the room's chat is history; the floor rides along at the end.
        let restore: Vec<Record> = recovered.into_restore().collect();
        assert_eq!(restore.len(), 2);
        assert_eq!(restore[1].kind, RecordKind::Reserve);
        assert_eq!(restore[1].id.get(), 1025);
    }

    /// A disk whose first `open` does not answer until released.
    #[derive(Clone)]
    struct StuckDisk {
        disk: SimDisk,
        /// Set when the writer has entered `open` (so holds its batch).
        entered: Arc<(Mutex<bool>, std::sync::Condvar)>,
        release: Arc<(Mutex<bool>, std::sync::Condvar)>,
    }

    fn set(flag: &(Mutex<bool>, std::sync::Condvar)) {
        *flag.0.lock().unwrap() = true;
        flag.1.notify_all();
    }

    fn wait(flag: &(Mutex<bool>, std::sync::Condvar)) {
        let mut set = flag.0.lock().unwrap();
        while !*set {
            set = flag.1.wait(set).unwrap();
        }
    }

    impl Storage for StuckDisk {
        type Log = <SimDisk as Storage>::Log;
        type Reader = <SimDisk as Storage>::Reader;

        fn open(&mut self, name: &str) -> io::Result<Opened<Self::Log>> {
            set(&self.entered);
            wait(&self.release);
            self.disk.open(name)
        }

        fn create_dir(&mut self, dir: &str) -> io::Result<bool> {
            self.disk.create_dir(dir)
        }

        fn sync_dir(&mut self, dir: &str) -> io::Result<()> {
            self.disk.sync_dir(dir)
        }

        fn list(&mut self, dir: &str) -> io::Result<Vec<Entry>> {
            self.disk.list(dir)
        }

        fn read(&mut self, name: &str) -> io::Result<Self::Reader> {
            self.disk.read(name)
        }

        fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            self.disk.read_at(name, offset, buf)
        }

        fn len(&mut self, name: &str) -> io::Result<u64> {
            self.disk.len(name)
        }

        fn remove(&mut self, name: &str) -> io::Result<()> {
            self.disk.remove(name)
        }

        fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
            self.disk.rename(from, to)
        }

        fn write_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
            self.disk.write_file(name, bytes)
        }
    }

    #[test]
    fn a_full_queue_answers_not_stored_at_once_instead_of_blocking() {
        let flag = || Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let stuck = StuckDisk {
            disk: SimDisk::new(1, Faults::default()),
            entered: flag(),
            release: flag(),
        };
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let options = WriterOptions {
            queue: 2,
            ..WriterOptions::new(FsyncPolicy::Always)
        };
        let writer = HistoryWriter::start_on(stuck.clone(), options, move |report| {
            sink.lock().unwrap().push(report)
        })
        .unwrap();
        // The writer takes record 1 and gets stuck on the disk; of the ten
        // that follow, the queue takes two and the rest are refused at once.
        writer.append(record(1, "general"));
        wait(&stuck.entered);
        for id in 2..=11 {
            writer.append(record(id, "general"));
        }
        let failed: Vec<u64> = reports
            .lock()
            .unwrap()
            .iter()
            .flat_map(|report| match report {
                PersistReport::Failed(ids) => ids.clone(),
                PersistReport::Stored(_) | PersistReport::Spent(_) => Vec::new(),
            })
            .map(MessageId::get)
            .collect();
        // Released before asserting, so a failure cannot hang the test.
        set(&stuck.release);
        writer.finish();
        assert_eq!(failed, (4..=11).collect::<Vec<u64>>(), "refused at once");
        let mut stored = stored_ids(&reports.lock().unwrap());
        stored.sort_unstable();
        assert_eq!(stored, [1, 2, 3]);
    }

    #[test]
    fn an_overlong_line_is_skipped_without_being_held() {
        let mut bytes = history::encode(&record(1, "general"));
        bytes.extend(std::iter::repeat_n(b'x', 3 << 20));
        bytes.push(b'\n');
        bytes.extend(history::encode(&record(2, "general")));
        let mut ids = Vec::new();
        let scan = scan(&bytes[..], 1 << 20, |record| ids.push(record.id.get())).unwrap();
        assert_eq!(ids, [1, 2]);
        assert_eq!(scan.skipped.len(), 1);
        assert!(scan.torn.is_none());
        assert_eq!(scan.valid_len, bytes.len() as u64);
    }

    #[test]
    fn streaming_scan_agrees_with_the_core_on_damage() {
        let full: Vec<u8> = (1..=4)
            .flat_map(|id| history::encode(&record(id, "general")))
            .collect();
        let mut damaged = full.clone();
        let second = full.iter().position(|&b| b == b'\n').unwrap() + 1;
        damaged[second + 20] ^= 0x01;
        damaged.truncate(damaged.len() - 9);
        let core = history::recover(&damaged);
        let mut ids = Vec::new();
        let scan = scan(&damaged[..], 1 << 20, |record| ids.push(record.id)).unwrap();
        let core_ids: Vec<MessageId> = core.records.iter().map(|r| r.id).collect();
        assert_eq!(ids, core_ids);
        assert_eq!(scan.valid_len, core.valid_len as u64);
        assert_eq!(scan.skipped.len(), core.skipped.len());
        let torn = scan.torn.unwrap();
        let core_torn = core.torn_tail.unwrap();
        assert_eq!(
            (torn.offset, torn.len),
            (core_torn.offset as u64, core_torn.len as u64)
        );
    }

    /// Descriptors of this process open on files under `dir`.
    #[cfg(target_os = "linux")]
    fn descriptors_under(dir: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir))
            .count()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thousand_room_logs_on_disk_hold_at_most_the_limit_of_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().canonicalize().unwrap();
        let mut writer = writer::Writer::new(DirStorage::new(&dir), FsyncPolicy::Never, 16);
        let now = Instant::now();
        let mut most = 0;
        for id in 1..=1000 {
            writer.write_batch(now, &[record(id, &format!("room{id}"))]);
            most = most.max(descriptors_under(&dir));
        }
        writer.sync();
        assert_eq!(most, 16);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1000);
    }
}
