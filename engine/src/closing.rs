//! How a connection is cut off or let go: one rule for both backends.
//!
//! The backends differ in how they write (a readiness `writev`, a
//! completion send that owns its buffer), not in what a client sees when
//! its connection ends. Every ending goes through here
//! (ARCHITECTURE.md, decision 22):
//!
//! - **Slow consumer** ([`too_slow`], then [`abort`]): the client stopped
//!   reading. What is queued for it will never be read, so the connection
//!   is reset at once: the kernel drops its send buffer (megabytes, for a
//!   client that stopped reading) instead of keeping it for a peer that
//!   may never take it. A completion backend cancels its send in flight,
//!   which would otherwise hold the socket open until the client reads.
//! - **Closed by the core** ([`Ending::Closed`]): a kick, a ban, `#quit`.
//!   Queued output is written, our side is shut down ([`finish`]), and the
//!   connection waits up to [`LINGER`] for the peer to hang up, discarding
//!   what it sends meanwhile. Closing with unread input would make the
//!   kernel send a reset, which can destroy the last lines (the ban notice)
//!   before the peer reads them.
//! - **Server stopping** ([`Ending::Stopping`]): the same, without
//!   waiting for the peer: the process is about to exit, and a client that
//!   keeps its end open must not hold the shutdown for [`LINGER`]. Unread
//!   input is read away first ([`discard_unread`]).
//! - **Closing, and the peer reads nothing** ([`CLOSE_FLUSH_LIMIT`]): the
//!   last bytes of a closed connection that cannot leave in time are not
//!   waited for; the connection is reset.
//! - **Peer gone or socket failed**: dropped at once; the core is told.

use std::io::Read;
use std::net::Shutdown;
use std::time::Duration;

use socket2::SockRef;

/// How long a connection the core closed waits for its peer to hang up
/// after our end of stream, before its socket is dropped anyway.
pub const LINGER: Duration = Duration::from_secs(2);

/// How long a connection being closed (by the core, or by its transport
/// after a TLS error or an HTTP answer) may take to get its last bytes
/// out. The core has forgotten it and freed its address slot, so a peer
/// that never reads must not keep its socket and buffers: past this it is
/// reset, as a slow consumer is.
pub const CLOSE_FLUSH_LIMIT: Duration = Duration::from_secs(10);

/// Most reads spent discarding a closing connection's unread input.
const DISCARD_READS: usize = 4;

/// Whether a connection is a slow consumer: more than `max_outbound`
/// bytes of its output wait after the socket was offered them (decision
/// 14). `waiting` leaves out what the kernel has already taken, including a
/// completion send in flight: the kernel owns those bytes.
pub fn too_slow(waiting: usize, max_outbound: usize) -> bool {
    waiting > max_outbound
}

/// Why a connection whose output is all written is being let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The core closed it while the server runs.
    Closed,
    /// The server is shutting down.
    Stopping,
}

impl Ending {
    /// How long to wait, after [`finish`], for the peer to hang up.
    pub fn linger(self) -> Duration {
        match self {
            Ending::Closed => LINGER,
            Ending::Stopping => Duration::ZERO,
        }
    }
}

/// Ends our side of a connection whose output is all written: the peer
/// reads everything, then the end of the stream.
pub fn finish<'s>(socket: impl Into<SockRef<'s>>) {
    // A peer that already left makes this fail; there is nothing to do then.
    let _ = socket.into().shutdown(Shutdown::Write);
}

/// Reads away (a bounded amount of) input nobody will handle, so closing
/// the socket sends an end of stream rather than a reset that could
/// destroy the last lines before the peer reads them.
pub fn discard_unread<'s>(socket: impl Into<SockRef<'s>>) {
    let socket = socket.into();
    // The socket is about to be closed: it no longer matters whether a
    // completion backend kept it blocking.
    if socket.set_nonblocking(true).is_err() {
        return;
    }
    let mut buffer = [0u8; 4096];
    for _ in 0..DISCARD_READS {
        match (&*socket).read(&mut buffer) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

/// Cuts a slow consumer off: once the backend drops the socket, the
/// close resets the connection (zero linger). No `shutdown` first: its end
/// of stream would reach a peer with room to read it, which would then see
/// a graceful close. A completion backend must also end any send in
/// flight, which holds the socket open until it completes.
pub fn abort<'s>(socket: impl Into<SockRef<'s>>) {
    if let Err(error) = socket.into().set_linger(Some(Duration::ZERO)) {
        tracing::debug!(%error, "cannot set zero linger");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (server, client)
    }

    #[test]
    fn an_aborted_connection_is_reset_with_its_output_unread() {
        let (server, mut client) = pair();
        (&server).write_all(&[b'x'; 1000]).expect("write");
        abort(&server);
        drop(server);
        let mut buffer = [0u8; 4096];
        let mut seen = 0;
        let ended = loop {
            match client.read(&mut buffer) {
                Ok(0) => break "end of stream",
                Ok(n) => seen += n,
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                    break "reset";
                }
                Err(error) => panic!("{error}"),
            }
        };
        // A graceful close would deliver all 1000 bytes, then the end.
        assert!(
            ended == "reset" || seen < 1000,
            "{ended} after {seen} bytes"
        );
    }

    #[test]
    fn a_finished_connection_delivers_everything_then_the_end() {
        let (server, mut client) = pair();
        (&server).write_all(b"bye\n").expect("write");
        finish(&server);
        let mut received = Vec::new();
        client.read_to_end(&mut received).expect("read");
        assert_eq!(received, b"bye\n");
    }

    #[test]
    fn only_a_stopping_server_skips_the_linger() {
        assert_eq!(Ending::Closed.linger(), LINGER);
        assert_eq!(Ending::Stopping.linger(), Duration::ZERO);
        assert!(too_slow(1025, 1024));
        assert!(!too_slow(1024, 1024));
    }
}
