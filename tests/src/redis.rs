//! A real `redis-server` for the cluster tests: Debian's binary on a free
//! loopback port, in a temporary directory of its own, with the AOF on and
//! fsynced at every write, so an acknowledged write survives `kill -9`.
//!
//! ```no_run
//! let mut redis = chatd_tests::redis::RedisServer::start().expect("redis-server");
//! let url = redis.url(); // redis://127.0.0.1:PORT/0
//! redis.kill_9();        // as a crash: no shutdown, no save
//! redis.restart();       // same port, same directory: the AOF is replayed
//! ```
//!
//! The server is killed (and reaped) when the value is dropped, panic or
//! not. Where `redis-server` is not installed, [`RedisServer::start`] says
//! so loudly and returns `None` so the test can skip; with
//! `CHATD_REQUIRE_REDIS=1` (as in CI) it panics instead.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::{KillOnDrop, free_port};

/// How long a starting (or restarting, AOF-replaying) server may take to
/// answer PING.
const START_WAIT: Duration = Duration::from_secs(10);
/// How often a starting server is asked.
const POLL: Duration = Duration::from_millis(50);

/// A `redis-server` process this test started, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    /// The working directory: the AOF and the log live here, and survive a
    /// kill for the restart.
    dir: tempfile::TempDir,
    process: Option<KillOnDrop>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers
    /// PING. `None` (after a loud warning) when `redis-server` is not
    /// installed and `CHATD_REQUIRE_REDIS` is not `1`.
    pub fn start() -> Option<Self> {
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("chatd-redis-")
            .tempdir()
            .expect("a temporary directory for redis-server");
        let mut server = Self {
            binary,
            port: free_port(),
            dir,
            process: None,
        };
        server.spawn();
        Some(server)
    }

    /// The URL a bus connects to: database 0 on this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The loopback port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (AOF and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server process is running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|process| matches!(process.0.try_wait(), Ok(None)))
    }

    /// Kills the server with SIGKILL, as a crash: nothing is saved beyond
    /// what the AOF already holds. Returns once the process is reaped, so
    /// the port is closed.
    pub fn kill_9(&mut self) {
        if let Some(mut process) = self.process.take() {
            // Child::kill sends SIGKILL on Unix.
            let _ = process.0.kill();
            let _ = process.0.wait();
        }
    }

    /// Starts the server again on the same port and directory (killing it
    /// first if it still runs), and waits until it answers PING: the AOF is
    /// replayed, so every write it acknowledged is back.
    pub fn restart(&mut self) {
        self.kill_9();
        self.spawn();
    }

    /// A connection to the server, for a test to look at or change what is
    /// stored.
    pub fn client(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("a redis URL");
        let connection = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("a connection to the test's redis-server");
        connection
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("a read timeout");
        connection
    }

    fn spawn(&mut self) {
        let log = self.dir.path().join("redis.log");
        let child = Command::new(&self.binary)
            .current_dir(self.dir.path())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.path().to_string_lossy()])
            // Every write is in the AOF and on disk before Redis answers:
            // what a test saw acknowledged survives kill -9.
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            // No RDB snapshots: the AOF is the only record, and no fork.
            .args(["--save", ""])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .args(["--logfile", &log.to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", self.binary.display()));
        let mut process = KillOnDrop(child);
        self.wait_ready(&mut process, &log);
        self.process = Some(process);
    }

    /// Asks PING until the server answers PONG (it answers LOADING while it
    /// replays the AOF), failing at once if it exits.
    fn wait_ready(&self, process: &mut KillOnDrop, log: &Path) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Ok(Some(status)) = process.0.try_wait() {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic!(
                    "redis-server exited ({status}) before answering on {addr}; its log:\n{log}"
                );
            }
            let last_error = match self.ping() {
                Ok(()) => return,
                Err(err) => err.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "redis-server on {addr} does not answer PING: {last_error}"
            );
            std::thread::sleep(POLL);
        }
    }

    fn ping(&self) -> redis::RedisResult<()> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_connection_with_timeout(POLL * 4)?;
        connection.set_read_timeout(Some(POLL * 4))?;
        let pong: String = redis::cmd("PING").query(&mut connection)?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "PING answered",
                pong,
            )))
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// `redis-server` on the PATH, or `None` after a loud warning (a panic
/// with `CHATD_REQUIRE_REDIS=1`).
fn find_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        let message = "redis-server is not installed (apt-get install -y redis-server)";
        if std::env::var("CHATD_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!("CHATD_REQUIRE_REDIS=1 but {message}");
        }
        // Straight to the process's stderr: the test harness captures
        // eprintln! and would hide the warning of a test that passes.
        let _ = writeln!(
            std::io::stderr().lock(),
            "!!!!!!!! SKIPPED: {message}: the Redis test did NOT run !!!!!!!!"
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acknowledged_write_survives_kill_9_and_restart() {
        let Some(mut redis) = RedisServer::start() else {
            return;
        };
        let port = redis.port();
        let mut client = redis.client();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query(&mut client)
            .unwrap();
        redis.kill_9();
        assert!(!redis.is_running());
        assert!(redis::cmd("PING").query::<String>(&mut client).is_err());
        redis.restart();
        assert_eq!(redis.port(), port);
        let value: String = redis::cmd("GET")
            .arg("k")
            .query(&mut redis.client())
            .unwrap();
        assert_eq!(value, "v");
    }
}
