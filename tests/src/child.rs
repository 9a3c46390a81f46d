//! Helpers for tests that start real programs (chatd, IRC clients, a
//! browser's driver) on loopback ports.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// How often a starting program is looked at.
const POLL: Duration = Duration::from_millis(100);

/// A loopback port that was free a moment ago (bound, read and released).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until `process` accepts connections on `addr`, at most `wait`,
/// failing at once if it exits.
pub fn wait_listening(process: &mut KillOnDrop, addr: SocketAddr, what: &str, wait: Duration) {
    let deadline = Instant::now() + wait;
    while TcpStream::connect_timeout(&addr, POLL).is_err() {
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!("{what} exited ({status}) before listening on {addr}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {addr}"
        );
        std::thread::sleep(POLL);
    }
}

/// Kills and reaps a child process when dropped, panic or not.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
