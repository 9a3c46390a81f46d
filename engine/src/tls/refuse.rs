//! Refusing a TLS connection (per-IP limit, server full, ban) with its
//! reason: the refusal line only means something to the client once the
//! handshake is done, so a helper thread completes the handshake, sends
//! the line and close_notify, and drops the socket.
//!
//! Bounded on every side: one thread for all refusals, at most
//! [`QUEUE`] waiting (beyond that the connection is just closed), each
//! given at most [`REFUSAL_TIME`] in all (blocking socket timeouts), so a
//! flood of refused clients that never finish their handshake costs one
//! thread and a few sockets.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::TlsAcceptor;

/// Refused connections that may wait for the helper.
pub const QUEUE: usize = 64;

/// Most time one refusal may take (handshake and line).
pub const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// The refusal helper (one per server).
#[derive(Debug, Clone)]
pub struct Refuser {
    queue: SyncSender<Refusal>,
}

struct Refusal {
    stream: TcpStream,
    peer: SocketAddr,
    tls: TlsAcceptor,
    line: Bytes,
}

impl Refuser {
    /// Starts the helper thread; it ends when every `Refuser` is dropped.
    pub fn start() -> io::Result<Self> {
        let (queue, refusals) = mpsc::sync_channel::<Refusal>(QUEUE);
        std::thread::Builder::new()
            .name("chatd-tls-refuse".into())
            .spawn(move || {
                for refusal in refusals {
                    let peer = refusal.peer;
                    if let Err(error) = refuse(refusal) {
                        tracing::debug!(%peer, %error, "refusal over TLS not delivered");
                    }
                }
            })?;
        Ok(Self { queue })
    }

    /// Refuses `stream` with `line` over TLS, or just closes it when the
    /// helper is busy.
    pub fn refuse(&self, stream: TcpStream, peer: SocketAddr, tls: TlsAcceptor, line: Bytes) {
        let refusal = Refusal {
            stream,
            peer,
            tls,
            line,
        };
        match self.queue.try_send(refusal) {
            Ok(()) => {}
            Err(TrySendError::Full(refusal) | TrySendError::Disconnected(refusal)) => {
                tracing::debug!(peer = %refusal.peer, "TLS refusal helper busy; closing without a reason");
                let _ = refusal.stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Handshake, line, close_notify, within [`REFUSAL_TIME`].
fn refuse(refusal: Refusal) -> Result<(), Box<dyn std::error::Error>> {
    let Refusal {
        mut stream,
        tls,
        line,
        ..
    } = refusal;
    let deadline = Instant::now() + REFUSAL_TIME.min(tls.handshake_timeout());
    stream.set_nonblocking(false)?;
    let mut session = tls.session()?;
    let left = |deadline: Instant| {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::from(io::ErrorKind::TimedOut))
        } else {
            Ok(left)
        }
    };
    let mut buffer = [0u8; 4096];
    let mut ignored = Vec::new();
    while session.is_handshaking() {
        while session.wants_write() {
            stream.set_write_timeout(Some(left(deadline)?))?;
            session.write_tls(&mut stream)?;
        }
        if !session.is_handshaking() {
            break;
        }
        stream.set_read_timeout(Some(left(deadline)?))?;
        let n = io::Read::read(&mut stream, &mut buffer)?;
        if n == 0 {
            return Err("the client left during the handshake".into());
        }
        session.receive(&buffer[..n], &mut ignored)?;
    }
    let mut out = crate::out_queue::OutQueue::default();
    out.push(&line, chatd_core::Priority::Urgent);
    let mut transport = crate::transport::Transport::from_session(session, deadline);
    stream.set_write_timeout(Some(left(deadline)?))?;
    transport.flush(&mut out, &mut stream, true)?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}
