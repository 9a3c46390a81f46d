//! The harness the IRC tests share: a server driven directly, lines
//! collected per connection.

#![allow(dead_code)] // each test file uses part of it

use std::net::SocketAddr;
use std::time::Instant;

use chatd_core::{Config, ConnId, Dialect, Output, Server};

#[allow(clippy::disallowed_methods)]
pub(crate) fn epoch() -> Instant {
    Instant::now()
}

pub(crate) fn peer(host: u8) -> SocketAddr {
    format!("127.0.0.{host}:5000")
        .parse()
        .expect("valid address")
}

/// Every line `conn` received, in order, CRLF removed.
pub(crate) fn lines_to(conn: ConnId, outputs: &[Output]) -> Vec<String> {
    let mut lines = Vec::new();
    for output in outputs {
        let bytes = match output {
            Output::Send { to, bytes, .. } if *to == conn => bytes,
            Output::Broadcast {
                to, except, bytes, ..
            } if to.contains(&conn) && *except != Some(conn) => bytes,
            _ => continue,
        };
        let text = String::from_utf8(bytes.to_vec()).expect("UTF-8");
        lines.extend(text.lines().map(|l| l.trim_end_matches('\r').to_owned()));
    }
    lines
}

pub(crate) struct Harness {
    pub(crate) server: Server,
    pub(crate) now: Instant,
}

impl Harness {
    pub(crate) fn new(config: Config) -> Self {
        let now = epoch();
        let server = Server::new(config, now, 1_795_000_000_000).expect("valid config");
        Self { server, now }
    }

    pub(crate) fn connect(&mut self, dialect: Dialect, host: u8) -> ConnId {
        self.server
            .accept_as(self.now, peer(host), dialect)
            .expect("admitted")
    }

    /// Sends lines from `conn`, returns what `watch` received.
    pub(crate) fn say(&mut self, conn: ConnId, text: &str, watch: ConnId) -> Vec<String> {
        self.server.handle(self.now, conn, text.as_bytes());
        let outputs: Vec<Output> = std::iter::from_fn(|| self.server.poll_output()).collect();
        lines_to(watch, &outputs)
    }
}

pub(crate) fn registered(h: &mut Harness, host: u8, nick: &str) -> ConnId {
    let conn = h.connect(Dialect::Irc, host);
    let lines = h.say(
        conn,
        &format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n"),
        conn,
    );
    assert!(lines[0].contains(" 001 "), "no welcome: {lines:?}");
    conn
}

/// Bytes sent to `conn` (directly or by broadcast) among `outputs`.
pub(crate) fn sent_bytes(conn: ConnId, outputs: &[Output]) -> usize {
    outputs
        .iter()
        .map(|output| match output {
            Output::Send { to, bytes, .. } if *to == conn => bytes.len(),
            Output::Broadcast {
                to, except, bytes, ..
            } if to.contains(&conn) && *except != Some(conn) => bytes.len(),
            _ => 0,
        })
        .sum()
}
