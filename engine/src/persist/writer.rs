//! The history writer's logic, without its thread or clock: records in,
//! file operations on a [`Storage`], reports out. The thread in
//! `persist.rs` feeds it; the crash test drives it directly on a simulated
//! disk with virtual time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd_core::MessageId;
use chatd_core::history::{self, Record, RecordKind};

use super::storage::{LogFile, Storage};
use super::{FsyncPolicy, PersistReport};

/// The log that holds id reservations (history.rs, `MessageIds`). Room
/// names start with a letter or digit, so no room's log is called this.
pub const IDS_LOG: &str = "_ids.log";

/// The log that holds whispers when `persist_private_messages` is on.
pub const WHISPERS_LOG: &str = "_whispers.log";

/// The log a record belongs in.
pub fn log_name(record: &Record) -> String {
    match record.kind {
        RecordKind::Reserve => IDS_LOG.to_owned(),
        RecordKind::Whisper => WHISPERS_LOG.to_owned(),
        RecordKind::Msg | RecordKind::Action | RecordKind::Urgent => {
            format!("{}.log", record.room.as_str())
        }
    }
}

/// Appends records to their logs and makes them durable under a policy.
pub(crate) struct Writer<S: Storage> {
    storage: S,
    policy: FsyncPolicy,
    /// Most logs kept open; the least recently written one is closed
    /// (synced first) to make room.
    open_limit: usize,
    open: HashMap<String, OpenLog<S::Log>>,
    /// Use counter for the LRU.
    tick: u64,
    /// Logs closed while bytes past their last whole record may remain
    /// (a cut that failed): the length to cut them to before appending.
    uncut: HashMap<String, u64>,
    /// A log was created since the directory was last synced.
    dir_unsynced: bool,
    /// Records written to logs closed since the last sync under
    /// [`FsyncPolicy::Never`] (nothing to sync, reported at the next one).
    detached: Vec<MessageId>,
    /// When the oldest record not yet reported was written.
    oldest_unsynced: Option<Instant>,
    reports: Vec<PersistReport>,
}

/// A log the writer holds open.
struct OpenLog<L> {
    log: L,
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
}

impl<S: Storage> Writer<S> {
    /// A writer on `storage`, keeping at most `open_limit` logs open.
    pub(crate) fn new(storage: S, policy: FsyncPolicy, open_limit: usize) -> Self {
        Self {
            storage,
            policy,
            open_limit: open_limit.max(1),
            open: HashMap::new(),
            tick: 0,
            uncut: HashMap::new(),
            dir_unsynced: false,
            detached: Vec::new(),
            oldest_unsynced: None,
            reports: Vec::new(),
        }
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
        let mut per_log: BTreeMap<String, (Vec<u8>, Vec<MessageId>)> = BTreeMap::new();
        for record in batch {
            let entry = per_log.entry(log_name(record)).or_default();
            entry.0.extend_from_slice(&history::encode(record));
            entry.1.push(record.id);
        }
        let mut failed = Vec::new();
        for (name, (bytes, ids)) in per_log {
            match self.append(&name, &bytes) {
                Ok(()) => {
                    if let Some(open) = self.open.get_mut(&name) {
                        open.unsynced.extend(ids);
                    }
                    self.oldest_unsynced.get_or_insert(now);
                }
                Err(error) => {
                    tracing::error!(log = %name, %error, records = ids.len(), "cannot write history; these messages are not stored");
                    failed.extend(ids);
                }
            }
        }
        if !failed.is_empty() {
            self.reports.push(PersistReport::Failed(failed));
        }
    }

    /// How long to wait for more records before a pending sync is due.
    pub(crate) fn wait_time(&self, now: Instant) -> Option<Duration> {
        match (self.policy, self.oldest_unsynced) {
            (FsyncPolicy::Every(every), Some(since)) => {
                Some((since + every).saturating_duration_since(now))
            }
            _ => None,
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

    /// Makes everything written durable (group commit) and reports it.
    pub(crate) fn sync(&mut self) {
        self.oldest_unsynced = None;
        let mut stored = std::mem::take(&mut self.detached);
        let mut failed = Vec::new();
        if self.policy == FsyncPolicy::Never {
            for open in self.open.values_mut() {
                stored.append(&mut open.unsynced);
            }
        } else if let Err(error) = self.sync_dir_if_needed() {
            // A new log may vanish with its directory entry: nothing
            // written since the last sync can be called durable.
            tracing::error!(%error, "cannot sync the history directory");
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
                    if sync_log(&name, open) {
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

    fn sync_dir_if_needed(&mut self) -> std::io::Result<()> {
        if self.dir_unsynced {
            self.storage.sync_dir()?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// Appends whole records to a log, first cutting off anything a failed
    /// write left behind, so a record never lands on a fragment.
    fn append(&mut self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.tick += 1;
        let tick = self.tick;
        if !self.open.contains_key(name) {
            self.make_room();
            let opened = self.storage.open(name)?;
            self.dir_unsynced |= opened.created;
            let mut open = OpenLog {
                log: opened.log,
                used: tick,
                good_len: opened.len,
                synced_len: opened.len,
                needs_cut: false,
                unsynced: Vec::new(),
            };
            if let Some(len) = self.uncut.remove(name) {
                open.good_len = len;
                open.synced_len = open.synced_len.min(len);
                open.needs_cut = true;
            }
            self.open.insert(name.to_owned(), open);
        }
        let open = self
            .open
            .get_mut(name)
            .ok_or_else(|| std::io::Error::other("log not open"))?;
        open.used = tick;
        if open.needs_cut {
            open.log.set_len(open.good_len)?;
            open.needs_cut = false;
        }
        match open.log.append(bytes) {
            Ok(()) => {
                open.good_len += bytes.len() as u64;
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

    /// Closes the least recently used log if the limit is reached, syncing
    /// it first unless the policy never syncs.
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
            let Some(mut open) = self.open.remove(&name) else {
                return;
            };
            let ids = std::mem::take(&mut open.unsynced);
            if self.policy == FsyncPolicy::Never {
                self.detached.extend(ids);
            } else if !ids.is_empty() {
                let synced = match self.sync_dir_if_needed() {
                    Ok(()) => sync_log(&name, &mut open),
                    Err(error) => {
                        tracing::error!(%error, "cannot sync the history directory");
                        abandon_unsynced(&mut open);
                        false
                    }
                };
                self.reports.push(if synced {
                    PersistReport::Stored(ids)
                } else {
                    PersistReport::Failed(ids)
                });
            }
            // A reopened log's length is taken as durable, so one is only
            // closed at a durable length (or remembered as still to cut).
            if open.needs_cut {
                self.uncut.insert(name, open.good_len);
            }
        }
    }
}

/// Syncs one log; false if it failed (the error is logged here, where the
/// log's name is known). After a failed sync the kernel may have dropped the
/// unwritten pages while still showing them to reads, so the log is cut
/// back to its last durable length: later records must not follow a hole
/// (the pages may be lost, or written later, as garbage or not at all).
fn sync_log<L: LogFile>(name: &str, open: &mut OpenLog<L>) -> bool {
    match open.log.sync() {
        Ok(()) => {
            open.synced_len = open.good_len;
            true
        }
        Err(error) => {
            tracing::error!(log = %name, %error, "cannot sync history to disk; unsynced messages are not stored");
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
    open.needs_cut = true;
    if open.log.set_len(open.good_len).is_ok() {
        open.needs_cut = false;
    }
}
