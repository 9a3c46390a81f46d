//! Account work off the core's thread: hashing new passwords and making
//! account changes durable.
//!
//! The hub hands every [`Output::HashPassword`](chatd_core::Output) and
//! [`Output::StoreAccount`](chatd_core::Output) to an [`AccountJobs`]; the
//! answers come back into the hub's inbox as [`Event::PasswordHashed`] and
//! [`Event::AccountStored`]. The trait is the seam where the durable
//! account store (a worker with its own CRC-checked, compacting log) plugs
//! in; [`AccountLog`] is the simple one this crate starts with: one JSON
//! [`AccountChange`] per line in `<data>/_accounts.log`, fsynced per
//! change, read back at start.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};

use argon2::password_hash::{PasswordHasher, SaltString};
use chatd_core::{Account, AccountChange, AccountWrite, HashRequest};

use crate::hub::{Event, Inbox};

/// Where the hub sends account work. Every job must be answered exactly
/// once through the inbox (a job that cannot be done answers `None` /
/// `false`), never synchronously from these calls.
pub trait AccountJobs: Send {
    /// Hashes `request.password` (Argon2id) and reports
    /// [`Event::PasswordHashed`].
    fn hash(&self, request: Box<HashRequest>);
    /// Makes `write.change` durable and reports [`Event::AccountStored`].
    fn store(&self, write: Box<AccountWrite>);
}

/// The file the accounts live in, under the data directory.
pub const ACCOUNTS_FILE: &str = "_accounts.log";

/// One job for the [`AccountLog`] thread.
enum Job {
    Hash(Box<HashRequest>),
    Store(Box<AccountWrite>),
}

/// A thread that hashes passwords and appends account changes to
/// `<data>/_accounts.log` (or keeps them in memory only, without a data
/// directory). Jobs are done in order, one at a time: account changes are
/// rare, and one at a time keeps the file's order the core's order.
#[derive(Debug)]
pub struct AccountLog {
    jobs: Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Hash(request) => write!(f, "Hash({})", request.request),
            Job::Store(write) => write!(f, "Store({})", write.request),
        }
    }
}

impl AccountLog {
    /// Reads the accounts stored under `data_dir` (none if `None`, for a
    /// server that keeps nothing on disk) and starts the thread that
    /// reports into `inbox`.
    pub fn start(data_dir: Option<&Path>, inbox: Arc<Inbox>) -> io::Result<(Self, Vec<Account>)> {
        let (accounts, file) = match data_dir {
            Some(dir) => {
                let path = dir.join(ACCOUNTS_FILE);
                let accounts = read(&path)?;
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                (accounts, Some((file, path)))
            }
            None => (Vec::new(), None),
        };
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("chatd-accounts".into())
            .spawn(move || work(&queue, file, &inbox))?;
        Ok((Self { jobs }, accounts))
    }
}

impl AccountJobs for AccountLog {
    fn hash(&self, request: Box<HashRequest>) {
        // A send fails only once the thread has ended, with the process.
        let _ = self.jobs.send(Job::Hash(request));
    }

    fn store(&self, write: Box<AccountWrite>) {
        let _ = self.jobs.send(Job::Store(write));
    }
}

/// Hashes a password with Argon2id at the argon2 crate's default
/// parameters, with a fresh random salt.
pub fn hash_password(password: &chatd_core::Password) -> Option<String> {
    let salt = SaltString::encode_b64(&random_salt()).ok()?;
    argon2::Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .ok()
        .map(|hash| hash.to_string())
}

/// 16 random bytes from the standard library's OS-seeded hasher keys
/// (`RandomState`): salts need to be unique, not secret.
fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    for (index, chunk) in salt.chunks_mut(8).enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_usize(index);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    salt
}

/// The accounts a log describes, its changes applied in order. A last
/// line cut short by a crash is ignored; any other bad line is an error
/// naming it.
fn read(path: &Path) -> io::Result<Vec<Account>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let lines: Vec<String> = BufReader::new(file).lines().collect::<Result<_, _>>()?;
    let mut accounts = std::collections::BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        let change: AccountChange = match serde_json::from_str(line) {
            Ok(change) => change,
            Err(_) if index + 1 == lines.len() => break,
            Err(error) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} line {}: {error}", path.display(), index + 1),
                ));
            }
        };
        match change {
            AccountChange::Put(account) => {
                accounts.insert(account.name.folded(), account);
            }
            AccountChange::Remove { name } => {
                accounts.remove(&name.folded());
            }
        }
    }
    Ok(accounts.into_values().collect())
}

fn work(queue: &Receiver<Job>, mut file: Option<(File, PathBuf)>, inbox: &Inbox) {
    while let Ok(job) = queue.recv() {
        match job {
            Job::Hash(request) => {
                let hash = hash_password(&request.password);
                inbox.send(Event::PasswordHashed {
                    request: request.request,
                    hash,
                });
            }
            Job::Store(write) => {
                let stored = match file.as_mut() {
                    Some((file, path)) => match append(file, &write.change) {
                        Ok(()) => true,
                        Err(error) => {
                            tracing::error!(path = %path.display(), %error, "cannot store an account change");
                            false
                        }
                    },
                    None => true,
                };
                inbox.send(Event::AccountStored {
                    request: write.request,
                    stored,
                });
            }
        }
    }
}

/// Appends one change as a JSON line and makes it durable.
fn append(file: &mut File, change: &AccountChange) -> io::Result<()> {
    let mut line = serde_json::to_vec(change).map_err(io::Error::other)?;
    line.push(b'\n');
    file.write_all(&line)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_core::Nick;

    fn account(name: &str) -> Account {
        Account {
            name: Nick::parse(name).unwrap(),
            password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            operator: false,
            registered_at_ms: 1,
        }
    }

    #[test]
    fn changes_read_back_in_order_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ACCOUNTS_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        append(&mut file, &AccountChange::Put(account("alice"))).unwrap();
        append(&mut file, &AccountChange::Put(account("bob"))).unwrap();
        let remove = AccountChange::Remove {
            name: Nick::parse("ALICE").unwrap(),
        };
        append(&mut file, &remove).unwrap();
        file.write_all(b"{\"op\":\"put\",\"na").unwrap();
        assert_eq!(read(&path).unwrap(), [account("bob")]);
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ACCOUNTS_FILE);
        std::fs::write(&path, "garbage\n{\"op\":\"remove\",\"name\":\"bob\"}\n").unwrap();
        let error = read(&path).unwrap_err();
        let expected = format!("{ACCOUNTS_FILE} line 1:");
        assert!(error.to_string().contains(&expected), "{error}");
    }

    #[test]
    fn hashes_verify_and_salts_differ() {
        let password = chatd_core::Password::new("correct-horse");
        let (a, b) = (
            hash_password(&password).unwrap(),
            hash_password(&password).unwrap(),
        );
        assert_ne!(a, b);
        assert_eq!(
            crate::auth::verify(&a, &password),
            chatd_core::PasswordVerdict::Match
        );
    }
}
