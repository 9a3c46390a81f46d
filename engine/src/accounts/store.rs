//! The account store: `<data>/_accounts.log`, an append-only log of
//! [`AccountChange`]s, one checksummed JSON line each.
//!
//! A line is `CRC32HEX JSON\n`, the history records' framing
//! (docs/HISTORY.md): eight lowercase hex digits of the CRC-32 of the JSON
//! text, a space, the JSON, an LF. Each [`AccountStore::apply`] appends one
//! line and syncs it before returning, so a change reported stored
//! survives a power cut.
//!
//! At open the log is read whole (accounts are few and small) and
//! replayed:
//! - a damaged stretch after the last good line that one torn append can
//!   explain (no LF except as its last byte) is cut off;
//! - any other damaged line is an error naming its line number: an
//!   account is never dropped silently;
//! - the log is then rewritten with one line per live account by atomic
//!   replace (temp file, sync, rename, directory sync). That compacts it
//!   (it never holds more than the live accounts plus one session's
//!   changes) and, above all, makes durable everything the open hands
//!   out: after a failed fsync the bytes read back may be only in the
//!   page cache (see [`AccountStore::open_on`]).
//!
//! A failed append (disk full, EIO, a failed sync) is cut back to the
//! last good length before the error is returned, so the next open sees
//! the change or not, never a damaged line in the middle. If even the cut
//! fails, the store cuts back before its next append and refuses to
//! append until it can.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chatd_core::history::{self, RecordError};
use chatd_core::{Account, AccountChange, Nick};

use crate::persist::{DirStorage, LogFile, Storage};

/// The store's file name in the data directory.
pub const ACCOUNTS_LOG: &str = "_accounts.log";

/// The compacted log while it is written; renamed over [`ACCOUNTS_LOG`]
/// once synced, removed at open if a crash left it behind.
pub const COMPACTION_TEMP: &str = "_accounts.log.tmp";

/// Why the account store could not be opened or changed.
#[derive(Debug, thiserror::Error)]
pub enum AccountStoreError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A file operation failed; `action` says which.
    #[error("cannot {action} {ACCOUNTS_LOG}: {source}")]
    Io {
        /// What was being done (`read`, `sync`, `append to`, ...).
        action: &'static str,
        /// What the system said.
        source: io::Error,
    },
    /// A line other than a torn last one is damaged. The file is left as
    /// it is for a person to look at: dropping the line would silently
    /// delete or revive an account.
    #[error(
        "{ACCOUNTS_LOG} line {line} is damaged ({problem}); the store is left untouched: repair or remove that line"
    )]
    Corrupt {
        /// The damaged line's number, from 1.
        line: usize,
        /// What is wrong with it.
        problem: RecordError,
    },
}

impl AccountStoreError {
    fn io(action: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { action, source }
    }
}

/// The open account log. Generic over [`Storage`] so the crash test can
/// run it on a simulated disk; servers use [`DirStorage`].
#[derive(Debug)]
pub struct AccountStore<S: Storage = DirStorage> {
    log: S::Log,
    /// Length of the log's good lines: where the next line goes.
    len: u64,
    /// A failed append may have left bytes past `len` that could not be
    /// cut off yet.
    dirty: bool,
}

impl AccountStore<DirStorage> {
    /// Opens (or creates, durably) `<data_dir>/_accounts.log`, creating
    /// the directory if needed, and returns the store with every account
    /// in it, in folded-name order.
    pub fn open(data_dir: &Path) -> Result<(Self, Vec<Account>), AccountStoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| AccountStoreError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        Self::open_on(DirStorage::new(data_dir))
    }
}

impl<S: Storage> AccountStore<S> {
    /// Opens the store at the top of `storage`; see [`AccountStore::open`].
    pub fn open_on(mut storage: S) -> Result<(Self, Vec<Account>), AccountStoreError> {
        remove_leftover_temp(&mut storage)?;
        let opened = storage
            .open(ACCOUNTS_LOG)
            .map_err(AccountStoreError::io("open"))?;
        let mut log = opened.log;
        let mut bytes = Vec::new();
        storage
            .read(ACCOUNTS_LOG)
            .and_then(|mut reader| reader.read_to_end(&mut bytes))
            .map_err(AccountStoreError::io("read"))?;
        let replay = replay(&bytes)?;
        let accounts: Vec<Account> = replay.accounts.into_values().collect();
        if bytes.is_empty() {
            // The empty file's name must survive a power cut before
            // anything is acknowledged from it. Synced at every open, not
            // only when this one created it: an earlier open may have
            // created it and failed to sync.
            log.sync().map_err(AccountStoreError::io("sync"))?;
            storage
                .sync_dir("")
                .map_err(AccountStoreError::io("sync the directory of"))?;
            let store = Self {
                log,
                len: 0,
                dirty: false,
            };
            return Ok((store, accounts));
        }
        if replay.good_len < bytes.len() as u64 {
            tracing::warn!(
                cut = bytes.len() as u64 - replay.good_len,
                "{ACCOUNTS_LOG}: cutting off a torn last line"
            );
        }
        // Rewritten at every open, not only when it has grown past twice
        // its live size: what was read may be only in the page cache. After
        // a failed fsync Linux marks the unwritten pages clean, so a
        // restarted server reads a change that is not on disk, and a later
        // fsync does not write it; only writing the bytes again does.
        // Accounts are small, so the rewrite costs milliseconds. The old
        // handle is closed first: Windows renames over a closed file only.
        drop(log);
        let (log, len) = rewrite(&mut storage, &accounts)?;
        let store = Self {
            log,
            len,
            dirty: false,
        };
        Ok((store, accounts))
    }

    /// Appends `change` and syncs it. On `Ok` the change survives a power
    /// cut; on `Err` the next open sees it or not (and the store has cut
    /// it back if it could).
    pub fn apply(&mut self, change: &AccountChange) -> Result<(), AccountStoreError> {
        if self.dirty {
            self.cut_back()
                .map_err(AccountStoreError::io("cut a failed write off"))?;
        }
        let line = encode(change);
        if let Err(source) = self.log.append(&line) {
            self.cut_back_after_failure();
            return Err(AccountStoreError::Io {
                action: "append to",
                source,
            });
        }
        if let Err(source) = self.log.sync() {
            self.cut_back_after_failure();
            return Err(AccountStoreError::Io {
                action: "sync",
                source,
            });
        }
        self.len += line.len() as u64;
        Ok(())
    }

    /// After a failed append or sync: cut back to the good lines now if
    /// the disk lets us, or before the next append otherwise.
    fn cut_back_after_failure(&mut self) {
        self.dirty = true;
        if let Err(error) = self.cut_back() {
            tracing::error!(%error, "{ACCOUNTS_LOG}: cannot cut a failed write off yet");
        }
    }

    fn cut_back(&mut self) -> io::Result<()> {
        self.log.set_len(self.len)?;
        self.log.sync()?;
        self.dirty = false;
        Ok(())
    }
}

/// Rewrites the log as one line per account, by atomic replace, and
/// opens the new log for appending (with its length).
fn rewrite<S: Storage>(
    storage: &mut S,
    accounts: &[Account],
) -> Result<(S::Log, u64), AccountStoreError> {
    let mut bytes = Vec::new();
    for account in accounts {
        bytes.extend_from_slice(&encode(&AccountChange::Put(account.clone())));
    }
    tracing::debug!(
        bytes = bytes.len(),
        accounts = accounts.len(),
        "{ACCOUNTS_LOG}: rewriting"
    );
    let compact = AccountStoreError::io("rewrite");
    let mut temp = storage.open(COMPACTION_TEMP).map_err(compact)?.log;
    let written = temp
        .set_len(0)
        .and_then(|()| temp.append(&bytes))
        .and_then(|()| temp.sync());
    drop(temp);
    written.map_err(AccountStoreError::io("rewrite"))?;
    storage
        .rename(COMPACTION_TEMP, ACCOUNTS_LOG)
        .map_err(AccountStoreError::io("rewrite"))?;
    storage
        .sync_dir("")
        .map_err(AccountStoreError::io("sync the directory of"))?;
    let opened = storage
        .open(ACCOUNTS_LOG)
        .map_err(AccountStoreError::io("open"))?;
    Ok((opened.log, opened.len))
}

/// Removes a compacted log that a crash left before its rename (the log
/// it was made from is still whole).
fn remove_leftover_temp<S: Storage>(storage: &mut S) -> Result<(), AccountStoreError> {
    let entries = storage
        .list("")
        .map_err(AccountStoreError::io("list the directory of"))?;
    if entries
        .iter()
        .any(|entry| !entry.dir && entry.name == COMPACTION_TEMP)
    {
        storage
            .remove(COMPACTION_TEMP)
            .map_err(AccountStoreError::io("remove the leftover compaction of"))?;
        // Durable before the name is used again: otherwise a power cut
        // could keep the rename of the next temp file but not its
        // creation, renaming this stale one over the log.
        storage
            .sync_dir("")
            .map_err(AccountStoreError::io("sync the directory of"))?;
    }
    Ok(())
}

/// Encodes a change as one checksummed line, LF included (the history
/// records' framing).
pub(super) fn encode(change: &AccountChange) -> Vec<u8> {
    history::encode_line(change)
}

/// Decodes one line (without its LF).
fn decode(line: &[u8]) -> Result<AccountChange, RecordError> {
    history::decode_line(line)
}

/// What the log's bytes say.
struct Replay {
    /// Live accounts by folded name.
    accounts: BTreeMap<Nick, Account>,
    /// Length of the log up to the end of its last good line.
    good_len: u64,
}

/// Replays the log's lines; see the module docs for what is cut and what
/// is an error.
fn replay(bytes: &[u8]) -> Result<Replay, AccountStoreError> {
    let mut accounts = BTreeMap::new();
    let mut good_len = 0;
    // The first damaged line since the last good one: its number, error.
    let mut damaged: Option<(usize, RecordError)> = None;
    let mut start = 0;
    let mut number = 0;
    while start < bytes.len() {
        number += 1;
        let (line, end) = match memchr::memchr(b'\n', &bytes[start..]) {
            Some(at) => (&bytes[start..start + at], start + at + 1),
            None => (&bytes[start..], bytes.len()),
        };
        let decoded = if end == bytes.len() && bytes[end - 1] != b'\n' {
            Err(RecordError::Unterminated)
        } else {
            decode(line)
        };
        match decoded {
            Ok(change) => {
                if let Some((line, problem)) = damaged {
                    return Err(AccountStoreError::Corrupt { line, problem });
                }
                apply_to(&mut accounts, change);
                good_len = end as u64;
            }
            Err(problem) => {
                if damaged.is_none() {
                    damaged = Some((number, problem));
                }
            }
        }
        start = end;
    }
    // One torn append leaves at most one damaged line, at the end (with
    // or without its LF). More than that is damage, not a crash.
    let tail = &bytes[good_len as usize..];
    let lfs = memchr::memchr_iter(b'\n', tail).count();
    if lfs > 1 || (lfs == 1 && tail.last() != Some(&b'\n')) {
        let (line, problem) = damaged.expect("a damaged tail has a damaged line");
        return Err(AccountStoreError::Corrupt { line, problem });
    }
    Ok(Replay { accounts, good_len })
}

/// Applies one change to the live accounts.
pub(super) fn apply_to(accounts: &mut BTreeMap<Nick, Account>, change: AccountChange) {
    match change {
        AccountChange::Put(account) => {
            accounts.insert(account.name.folded(), account);
        }
        AccountChange::Remove { name } => {
            accounts.remove(&name.folded());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, hash: &str) -> Account {
        Account {
            name: Nick::parse(name).unwrap(),
            password_hash: hash.into(),
            operator: false,
            registered_at_ms: 1_795_000_000_000,
        }
    }

    fn remove(name: &str) -> AccountChange {
        AccountChange::Remove {
            name: Nick::parse(name).unwrap(),
        }
    }

    fn log_of(dir: &Path) -> Vec<u8> {
        std::fs::read(dir.join(ACCOUNTS_LOG)).unwrap()
    }

    #[test]
    fn the_first_open_creates_an_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (_store, accounts) = AccountStore::open(&data).unwrap();
        assert!(accounts.is_empty());
        assert_eq!(log_of(&data), b"");
    }

    #[test]
    fn accounts_survive_a_restart_and_lines_are_readable_json() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = AccountStore::open(dir.path()).unwrap();
        let alice = account("Alice", "$argon2id$a");
        let bob = account("bob", "$argon2id$b");
        store.apply(&AccountChange::Put(alice.clone())).unwrap();
        store.apply(&AccountChange::Put(bob.clone())).unwrap();
        drop(store);
        let (_store, accounts) = AccountStore::open(dir.path()).unwrap();
        assert_eq!(accounts, vec![alice, bob]);
        let text = String::from_utf8(log_of(dir.path())).unwrap();
        let first = text.lines().next().unwrap();
        assert!(
            first.ends_with(r#"{"op":"put","name":"Alice","password_hash":"$argon2id$a","operator":false,"registered_at_ms":1795000000000}"#),
            "{first}"
        );
    }

    #[test]
    fn a_put_replaces_and_a_remove_deletes_by_folded_name() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = AccountStore::open(dir.path()).unwrap();
        store
            .apply(&AccountChange::Put(account("alice", "old")))
            .unwrap();
        store
            .apply(&AccountChange::Put(account("carol", "c")))
            .unwrap();
        let mut new = account("ALICE", "new");
        new.operator = true;
        store.apply(&AccountChange::Put(new.clone())).unwrap();
        store.apply(&remove("Carol")).unwrap();
        drop(store);
        let (_store, accounts) = AccountStore::open(dir.path()).unwrap();
        assert_eq!(accounts, vec![new]);
    }

    #[test]
    fn a_log_is_compacted_to_one_line_per_account_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = AccountStore::open(dir.path()).unwrap();
        for n in 0..5 {
            store
                .apply(&AccountChange::Put(account("alice", &format!("hash{n}"))))
                .unwrap();
        }
        store
            .apply(&AccountChange::Put(account("bob", "b")))
            .unwrap();
        drop(store);
        let before = log_of(dir.path()).len();
        let (mut store, accounts) = AccountStore::open(dir.path()).unwrap();
        let after = log_of(dir.path());
        assert!(after.len() < before);
        assert_eq!(String::from_utf8_lossy(&after).lines().count(), 2);
        assert!(!dir.path().join(COMPACTION_TEMP).exists());
        // The compacted log takes new lines, and says the same.
        store.apply(&remove("bob")).unwrap();
        drop(store);
        let (_store, reopened) = AccountStore::open(dir.path()).unwrap();
        assert_eq!(reopened, vec![accounts[0].clone()]);
        assert_eq!(accounts[0].password_hash, "hash4");
    }

    #[test]
    fn reopening_a_compact_log_writes_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = AccountStore::open(dir.path()).unwrap();
        store
            .apply(&AccountChange::Put(account("alice", "a")))
            .unwrap();
        store
            .apply(&AccountChange::Put(account("bob", "b")))
            .unwrap();
        drop(store);
        let before = log_of(dir.path());
        AccountStore::open(dir.path()).unwrap();
        assert_eq!(log_of(dir.path()), before);
    }

    #[test]
    fn a_leftover_compaction_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        AccountStore::open(dir.path()).unwrap();
        // A crash before the rename of a rewrite of an (emptied) log.
        std::fs::write(dir.path().join(COMPACTION_TEMP), b"half a rewri").unwrap();
        let (_store, accounts) = AccountStore::open(dir.path()).unwrap();
        assert!(accounts.is_empty());
        assert!(!dir.path().join(COMPACTION_TEMP).exists());
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = AccountStore::open(dir.path()).unwrap();
        store
            .apply(&AccountChange::Put(account("alice", "a")))
            .unwrap();
        drop(store);
        let good = log_of(dir.path());
        let torn = encode(&AccountChange::Put(account("bob", "b")));
        for tail in [&torn[..20], &torn[..torn.len() - 1], b"\0\0\0\0\0\0\0\n"] {
            let mut bytes = good.clone();
            bytes.extend_from_slice(tail);
            std::fs::write(dir.path().join(ACCOUNTS_LOG), &bytes).unwrap();
            let (mut store, accounts) = AccountStore::open(dir.path()).unwrap();
            assert_eq!(accounts, vec![account("alice", "a")]);
            assert_eq!(log_of(dir.path()), good);
            // New lines go where the torn one was.
            store
                .apply(&AccountChange::Put(account("carol", "c")))
                .unwrap();
            drop(store);
            let (_store, accounts) = AccountStore::open(dir.path()).unwrap();
            assert_eq!(accounts.len(), 2);
            std::fs::write(dir.path().join(ACCOUNTS_LOG), &good).unwrap();
        }
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = AccountStore::open(dir.path()).unwrap();
        for name in ["alice", "bob", "carol"] {
            store
                .apply(&AccountChange::Put(account(name, "h")))
                .unwrap();
        }
        drop(store);
        let mut bytes = log_of(dir.path());
        let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        bytes[second + 20] ^= 0x01;
        std::fs::write(dir.path().join(ACCOUNTS_LOG), &bytes).unwrap();
        let error = AccountStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(
                error,
                AccountStoreError::Corrupt {
                    line: 2,
                    problem: RecordError::ChecksumMismatch
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("line 2"), "{error}");
        // The file is left for a person to look at.
        assert_eq!(log_of(dir.path()), bytes);
    }

    #[test]
    fn two_damaged_lines_at_the_end_are_an_error_not_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = AccountStore::open(dir.path()).unwrap();
        store
            .apply(&AccountChange::Put(account("alice", "a")))
            .unwrap();
        drop(store);
        let mut bytes = log_of(dir.path());
        bytes.extend_from_slice(b"garbage\nmore garbage\n");
        std::fs::write(dir.path().join(ACCOUNTS_LOG), &bytes).unwrap();
        let error = AccountStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(error, AccountStoreError::Corrupt { line: 2, .. }),
            "{error:?}"
        );
    }
}
