//! The account worker: one thread that owns the [`AccountStore`] and
//! hashes new passwords, so neither an Argon2 hash nor an fsync ever runs
//! on the hub's thread.
//!
//! Jobs come through a bounded queue. When it is full a job is given back
//! at once ([`AccountWorker::submit`]), as [`crate::auth::PasswordChecker`]
//! does, so the hub can answer "try later" instead of queueing without
//! bound. One thread does both kinds of job, in order: a store write
//! always follows the hash it carries, and the log has one writer.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use chatd_core::{AccountWrite, HashRequest};

use super::hash::hash_password;
use super::store::AccountStore;
use crate::hub::{Event, Inbox};
use crate::persist::Storage;

/// Jobs waiting for the worker before new ones are given back. A hash
/// takes tens of milliseconds, so 32 jobs are about a second of work.
pub const QUEUE_CAPACITY: usize = 32;

/// Work for the account worker, boxed as the core emits it.
#[derive(Debug)]
pub enum Job {
    /// Hash a new password; answered by [`Event::PasswordHashed`].
    Hash(Box<HashRequest>),
    /// Make a change durable; answered by [`Event::AccountStored`].
    Store(Box<AccountWrite>),
}

/// The worker thread. Dropping this lets it finish the queued jobs and
/// end (and close the store).
#[derive(Debug)]
pub struct AccountWorker {
    jobs: SyncSender<Job>,
}

impl AccountWorker {
    /// Starts the thread, which owns `store` and reports into `inbox`.
    /// Without a store (a server that keeps nothing on disk) every change
    /// counts as stored: accounts then live as long as the process.
    pub fn start<S: Storage>(
        store: Option<AccountStore<S>>,
        inbox: Arc<Inbox>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::sync_channel(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("chatd-accounts".into())
            .spawn(move || work(store, &queue, &inbox))?;
        Ok(Self { jobs })
    }

    /// Queues a job, or gives it back when the queue is full (or the
    /// worker is gone).
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Err(job),
        }
    }
}

/// The thread: one job at a time until the [`AccountWorker`] is dropped.
fn work<S: Storage>(mut store: Option<AccountStore<S>>, queue: &Receiver<Job>, inbox: &Inbox) {
    for job in queue {
        let event = match job {
            Job::Hash(hash) => Event::PasswordHashed {
                request: hash.request,
                hash: Some(hash_password(&hash.password)),
            },
            Job::Store(write) => {
                let applied = store
                    .as_mut()
                    .map_or(Ok(()), |store| store.apply(&write.change));
                let stored = match applied {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::error!(
                            %error,
                            account = %write.change.name(),
                            "account change not stored"
                        );
                        false
                    }
                };
                Event::AccountStored {
                    request: write.request,
                    stored,
                }
            }
        };
        inbox.send(event);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use chatd_core::{Account, AccountChange, LoginRequest, Nick, Password};

    use super::*;
    use crate::persist::sim::{Faults, SimDisk};

    fn next_event(inbox: &Inbox) -> Event {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(event) = inbox.pop() {
                return event;
            }
            assert!(Instant::now() < deadline, "no event from the worker");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn alice() -> AccountChange {
        AccountChange::Put(Account {
            name: Nick::parse("alice").unwrap(),
            password_hash: "$argon2id$x".into(),
            operator: false,
            registered_at_ms: 0,
        })
    }

    #[test]
    fn the_worker_hashes_and_stores_and_reports_each_job() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = AccountStore::open(dir.path()).unwrap();
        let inbox = Arc::new(Inbox::default());
        let worker = AccountWorker::start(Some(store), inbox.clone()).unwrap();
        worker
            .submit(Job::Hash(Box::new(HashRequest {
                request: LoginRequest::new(1),
                password: Password::new("long enough"),
            })))
            .unwrap();
        worker
            .submit(Job::Store(Box::new(AccountWrite {
                request: LoginRequest::new(2),
                change: alice(),
            })))
            .unwrap();
        match next_event(&inbox) {
            Event::PasswordHashed {
                request,
                hash: Some(hash),
            } => {
                assert_eq!(request, LoginRequest::new(1));
                assert_eq!(
                    crate::auth::verify(&hash, &Password::new("long enough")),
                    chatd_core::PasswordVerdict::Match
                );
            }
            other => panic!("expected a hash, got {other:?}"),
        }
        assert!(matches!(
            next_event(&inbox),
            Event::AccountStored { request, stored: true } if request == LoginRequest::new(2)
        ));
        drop(worker);
        // The change is on disk.
        let (_store, accounts) = AccountStore::open(dir.path()).unwrap();
        assert_eq!(accounts.len(), 1);
    }

    #[test]
    fn a_full_queue_gives_the_job_back() {
        // No thread takes from this queue: build the worker by hand.
        let (jobs, _queue) = mpsc::sync_channel(QUEUE_CAPACITY);
        let worker = AccountWorker { jobs };
        let job = |n| {
            Job::Store(Box::new(AccountWrite {
                request: LoginRequest::new(n),
                change: alice(),
            }))
        };
        for n in 0..QUEUE_CAPACITY as u64 {
            assert!(worker.submit(job(n)).is_ok());
        }
        match worker.submit(job(99)) {
            Err(Job::Store(write)) => assert_eq!(write.request, LoginRequest::new(99)),
            other => panic!("expected the job back, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_write_is_reported_as_not_stored() {
        let disk = SimDisk::new(7, Faults::default());
        let (store, _) = AccountStore::open_on(disk.clone()).unwrap();
        // Every append fails from now on, as on a full disk.
        disk.set_faults(Faults {
            write: 1000,
            ..Faults::default()
        });
        let inbox = Arc::new(Inbox::default());
        let worker = AccountWorker::start(Some(store), inbox.clone()).unwrap();
        worker
            .submit(Job::Store(Box::new(AccountWrite {
                request: LoginRequest::new(3),
                change: alice(),
            })))
            .unwrap();
        assert!(matches!(
            next_event(&inbox),
            Event::AccountStored { request, stored: false } if request == LoginRequest::new(3)
        ));
    }
}
