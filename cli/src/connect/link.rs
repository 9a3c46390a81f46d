//! The connection to the server, on its own thread: connects, reconnects
//! with backoff when the server goes away, passes lines both ways.

use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread;
use std::time::Duration;

use super::tls::{Connector, Stream};

/// First and longest wait between reconnection attempts.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(10);
/// How often the thread looks for lines to send while waiting for input.
const POLL: Duration = Duration::from_millis(20);

/// What happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkEvent {
    /// A connection is up (the first, or a new one after a loss).
    Connected,
    /// Something the user must see before a connection is made (the
    /// `--insecure` warning, given at every connection).
    Warning(String),
    /// A line from the server, without its LF.
    Line(String),
    /// The connection is gone (or could not be made); the next attempt
    /// comes after `retry_in`.
    Lost {
        /// Why, for people.
        reason: String,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
}

/// The user's side of the link.
pub(crate) struct Link {
    outgoing: Outgoing,
    /// Events, in order.
    pub(crate) events: Receiver<LinkEvent>,
}

impl Link {
    /// Starts the link thread for `addr`.
    pub(crate) fn spawn(addr: String, connector: Connector) -> Self {
        let (report, events) = mpsc::channel();
        let outgoing = spawn_reporting(addr, connector, move |event| report.send(event).is_ok());
        Self { outgoing, events }
    }

    /// Sends one line (the LF is added).
    pub(crate) fn send(&self, line: &str) {
        self.outgoing.send(line);
    }
}

/// The sending side of a link whose events go where its starter said.
pub(crate) struct Outgoing(Sender<String>);

impl Outgoing {
    /// Sends one line (the LF is added).
    pub(crate) fn send(&self, line: &str) {
        // The thread only ends after this side is dropped.
        let _ = self.0.send(line.to_owned());
    }
}

/// Starts the link thread for `addr`, connecting through `connector`
/// (plain or TLS), giving each event to `report`, which answers false
/// once nobody listens any more (the thread then ends).
pub(crate) fn spawn_reporting(
    addr: String,
    connector: Connector,
    report: impl Fn(LinkEvent) -> bool + Send + 'static,
) -> Outgoing {
    let (outgoing, lines) = mpsc::channel();
    thread::spawn(move || run(&addr, &connector, &lines, &report));
    Outgoing(outgoing)
}

fn run(
    addr: &str,
    connector: &Connector,
    lines: &Receiver<String>,
    report: &dyn Fn(LinkEvent) -> bool,
) {
    let mut retry = FIRST_RETRY;
    loop {
        if let Some(warning) = connector.warning()
            && !report(LinkEvent::Warning(warning))
        {
            return;
        }
        let reason = match connector.connect(addr) {
            Ok(stream) => {
                if !report(LinkEvent::Connected) {
                    return;
                }
                retry = FIRST_RETRY;
                match serve(stream, lines, report) {
                    Some(reason) => reason,
                    None => return,
                }
            }
            Err(reason) => reason,
        };
        // Lines typed while there is no connection are not kept: the user
        // is told the link is down and sees when it is back.
        while lines.try_recv().is_ok() {}
        if !report(LinkEvent::Lost {
            reason,
            retry_in: retry,
        }) {
            return;
        }
        match lines.recv_timeout(retry) {
            Err(RecvTimeoutError::Disconnected) => return,
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
        }
        retry = (retry * 2).min(LONGEST_RETRY);
    }
}

/// Moves lines until the connection ends (Some(reason)) or the user side
/// is gone (None).
fn serve(
    mut stream: Stream,
    lines: &Receiver<String>,
    report: &dyn Fn(LinkEvent) -> bool,
) -> Option<String> {
    if let Err(error) = stream.tcp().set_read_timeout(Some(POLL)) {
        return Some(error.to_string());
    }
    let _ = stream.tcp().set_nodelay(true);
    let mut unread = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        loop {
            match lines.try_recv() {
                Ok(line) => {
                    // Flushed at once: over TLS a line may otherwise wait
                    // in the record layer.
                    let sent = stream
                        .write_all(format!("{line}\n").as_bytes())
                        .and_then(|()| stream.flush());
                    if let Err(error) = sent {
                        return Some(error.to_string());
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return None,
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) => return Some("the server closed the connection".into()),
            Ok(n) => {
                unread.extend_from_slice(&buffer[..n]);
                while let Some(end) = unread.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = unread.drain(..=end).collect();
                    let text = String::from_utf8_lossy(&line[..end])
                        .trim_end_matches('\r')
                        .to_owned();
                    if !report(LinkEvent::Line(text)) {
                        return None;
                    }
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            // TLS: the server closed the socket without a close_notify
            // (as when it exits); for the user the same as a plain close.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                return Some("the server closed the connection".into());
            }
            Err(error) => return Some(error.to_string()),
        }
    }
}
