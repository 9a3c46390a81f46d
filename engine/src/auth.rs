//! Operator password checks, off the core's thread.
//!
//! An Argon2 verification takes tens of milliseconds by design; on the
//! hub's thread every client would wait for it. The hub hands each
//! [`PasswordCheck`] to a small pool of workers through a bounded queue and
//! gets the verdict back as an [`Event::PasswordChecked`]. When the queue
//! is full the check is not queued: the core gets
//! [`PasswordVerdict::Busy`] at once and refuses the attempt with
//! `! try-later`, so a flood of logins costs bounded memory and bounded
//! CPU.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use chatd_core::{CheckPurpose, PasswordCheck, PasswordVerdict};

use crate::hub::{Event, Inbox};

/// Checks waiting for a worker before new ones are refused as busy. With
/// at most one check in flight per address, this is only reached by many
/// addresses at once; 32 checks are about half a second of one worker.
pub const QUEUE_CAPACITY: usize = 32;

/// Verifies `password` against an Argon2 PHC string, with the parameters
/// the string names. A hash that cannot be parsed never matches (the core
/// validated every configured hash at start, so this does not happen).
pub fn verify(hash: &str, password: &chatd_core::Password) -> PasswordVerdict {
    let Ok(hash) = PasswordHash::new(hash) else {
        return PasswordVerdict::Mismatch;
    };
    match Argon2::default().verify_password(password.expose().as_bytes(), &hash) {
        Ok(()) => PasswordVerdict::Match,
        Err(_) => PasswordVerdict::Mismatch,
    }
}

/// How many workers verify passwords: one on a machine of up to three
/// cores, so the core and the I/O threads keep the rest; two above.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).clamp(1, 2))
}

/// The worker pool. Dropping it lets the workers finish the check in hand
/// and end.
#[derive(Debug)]
pub struct PasswordChecker {
    jobs: SyncSender<Box<PasswordCheck>>,
}

impl PasswordChecker {
    /// Starts `workers` threads that report verdicts into `inbox`.
    pub fn start(workers: usize, inbox: Arc<Inbox>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::sync_channel(QUEUE_CAPACITY);
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..workers.max(1) {
            let (queue, inbox) = (queue.clone(), inbox.clone());
            std::thread::Builder::new()
                .name(format!("chatd-auth-{index}"))
                .spawn(move || work(&queue, &inbox))?;
        }
        Ok(Self { jobs })
    }

    /// Queues a check, or gives it back when the queue is full.
    pub fn submit(&self, check: Box<PasswordCheck>) -> Result<(), Box<PasswordCheck>> {
        match self.jobs.try_send(check) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(check) | TrySendError::Disconnected(check)) => Err(check),
        }
    }
}

/// One worker: take a check, verify, report, until the pool is dropped.
fn work(queue: &Mutex<Receiver<Box<PasswordCheck>>>, inbox: &Inbox) {
    loop {
        // The lock is held only while waiting for the next check, never
        // while verifying, so the workers verify in parallel.
        let next = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(check) = next else {
            return;
        };
        let verdict = verify(&check.hash, &check.password);
        if verdict == PasswordVerdict::Mismatch {
            match check.purpose {
                CheckPurpose::Operator => tracing::warn!(
                    name = ?check.name,
                    peer = %check.peer,
                    conn = %check.conn,
                    "failed operator login"
                ),
                CheckPurpose::Account => tracing::warn!(
                    name = ?check.name,
                    peer = %check.peer,
                    conn = %check.conn,
                    "failed account login"
                ),
            }
        }
        inbox.send(Event::PasswordChecked {
            request: check.request,
            verdict,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_core::{LoginRequest, Password};

    /// `opensesame` at m=1024,t=1,p=1 (tests/transcripts/oper.chat).
    const HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$Y2hhdGQtdHJhbnNjcmlwdHM$607V5zJpUmsmI3NpQeCJXClNnsXw/01C4mbkTOOEljk";

    #[test]
    fn verify_tells_the_right_password_from_a_wrong_one() {
        assert_eq!(
            verify(HASH, &Password::new("opensesame")),
            PasswordVerdict::Match
        );
        assert_eq!(
            verify(HASH, &Password::new("opensesam")),
            PasswordVerdict::Mismatch
        );
        assert_eq!(
            verify("not a hash", &Password::new("opensesame")),
            PasswordVerdict::Mismatch
        );
    }

    /// A real check, as the core asks for it.
    fn check_from_core() -> PasswordCheck {
        let config = chatd_core::Config {
            operators: vec![chatd_core::OperatorConfig {
                name: "admin".into(),
                password_hash: HASH.into(),
            }],
            ..chatd_core::Config::default()
        };
        let now = std::time::Instant::now();
        let mut server = chatd_core::Server::new(config, now, 1_795_000_000_000).unwrap();
        let conn = server
            .accept(now, "127.0.0.1:40000".parse().unwrap())
            .unwrap();
        server.handle(now, conn, b"#oper admin wrong\n");
        std::iter::from_fn(|| server.poll_output())
            .find_map(|output| match output {
                chatd_core::Output::VerifyPassword(check) => Some(*check),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn a_full_queue_gives_the_check_back() {
        // No workers take from this queue: build the pool by hand.
        let (jobs, _queue) = mpsc::sync_channel(QUEUE_CAPACITY);
        let checker = PasswordChecker { jobs };
        let template = check_from_core();
        let check = |n| {
            Box::new(PasswordCheck {
                request: LoginRequest::new(n),
                ..template.clone()
            })
        };
        for n in 0..QUEUE_CAPACITY as u64 {
            assert!(checker.submit(check(n)).is_ok());
        }
        let refused = checker.submit(check(99)).unwrap_err();
        assert_eq!(refused.request, LoginRequest::new(99));
    }

    #[test]
    fn workers_report_each_verdict_to_the_inbox() {
        let inbox = Arc::new(Inbox::default());
        let checker = PasswordChecker::start(2, inbox.clone()).unwrap();
        let mut check = check_from_core();
        check.request = LoginRequest::new(7);
        checker.submit(Box::new(check)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(event) = inbox.pop() {
                assert!(matches!(
                    event,
                    Event::PasswordChecked { request, verdict: PasswordVerdict::Mismatch }
                        if request == LoginRequest::new(7)
                ));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no verdict");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
