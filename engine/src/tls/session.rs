//! One connection's transport: plain TCP, or TLS through rustls's
//! unbuffered server connection (sans-IO: the backend reads and writes the
//! socket, this only transforms bytes).
//!
//! The unbuffered connection, not rustls's `ServerConnection`, because of
//! idle memory: the buffered one keeps a 4 KiB receive buffer for as long
//! as the connection lives once it has read anything (rustls 0.23,
//! `DeframerVecBuffer::prepare_read`), which alone is the whole budget of
//! an idle TLS connection. Here the session owns its two buffers and
//! frees each whenever it is empty: an idle connection holds rustls's
//! state and keys and nothing else (ARCHITECTURE.md, decision 53).
//!
//! Output stays bounded: the core's plaintext waits in the connection's
//! [`OutQueue`], where the slow-consumer rule counts it, and is sealed
//! ([`TlsSession::seal`]) at most [`SEAL_CHUNK`] bytes at a time and only
//! while no ciphertext waits for the socket. So the session never holds
//! more than one chunk's ciphertext (plus handshake messages), and a
//! client that stops reading fills the engine's queue, not the session's.
//! During the handshake nothing is sealed: the welcome lines wait in the
//! queue until the handshake is done.

use std::io::{self, Write};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::ServerConnectionData;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
};

use crate::out_queue::OutQueue;

/// Most plaintext sealed at once: one TLS record's worth.
pub const SEAL_CHUNK: usize = 16 * 1024;

/// Why a TLS connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The peer sent something that is not TLS, or broke the protocol.
    #[error("TLS error: {0}")]
    Protocol(#[from] rustls::Error),
    /// Output could not be made (rustls refused to encode or encrypt).
    #[error("TLS I/O error: {0}")]
    Io(#[from] io::Error),
}

/// One server-side TLS connection.
pub struct TlsSession {
    conn: UnbufferedServerConnection,
    /// Ciphertext received and not yet processed: part of a record.
    /// Empty (unallocated) between records.
    incoming: Vec<u8>,
    /// Ciphertext for the socket; `outgoing[sent..]` is still to go.
    /// Unallocated once all of it went.
    outgoing: Vec<u8>,
    sent: usize,
    /// The handshake is done: application data may be sealed.
    established: bool,
    /// close_notify is queued (or the connection closed before the
    /// handshake finished, when there is none to send).
    pub(crate) close_sent: bool,
    /// rustls failed: the connection is over and rustls is never called
    /// again (it would read the failed input a second time). Only its
    /// alert, already queued, is left to send.
    failed: bool,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("established", &self.established)
            .field("incoming", &self.incoming.len())
            .field("outgoing", &(self.outgoing.len() - self.sent))
            .field("close_sent", &self.close_sent)
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A session that waits for the client's hello.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        Ok(Self {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            established: false,
            close_sent: false,
            failed: false,
        })
    }

    /// Feeds ciphertext read from the socket; the plaintext it carried is
    /// appended to `plaintext`, handshake messages to send are queued.
    /// Returns whether the peer sent close_notify. An error means the
    /// connection is over (garbage, a broken handshake): the caller closes
    /// it, nothing else is affected. A part of a record is kept for the
    /// next call; nothing is ever dropped.
    pub fn receive(
        &mut self,
        ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
    ) -> Result<bool, TlsError> {
        if self.failed {
            return Err(TlsError::Io(io::Error::other("the TLS connection failed")));
        }
        self.incoming.extend_from_slice(ciphertext);
        let processed = self.process(plaintext);
        if processed.is_err() {
            self.failed = true;
            self.queue_alert();
        }
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        processed
    }

    /// Processes every whole record received (see [`Self::receive`]).
    fn process(&mut self, plaintext: &mut Vec<u8>) -> Result<bool, TlsError> {
        let mut peer_closed = false;
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let discard = status.discard;
            let mut more = true;
            match status.state? {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        plaintext.extend_from_slice(record?.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut encoder) => {
                    encode_into(&mut self.outgoing, &mut encoder)?;
                }
                // Kept in `outgoing`, in order, for the backend to send.
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::PeerClosed => peer_closed = true,
                ConnectionState::WriteTraffic(_) => {
                    self.established = true;
                    more = false;
                }
                // Waiting for more input, closed, or early data (which the
                // config never accepts): nothing more to do now.
                _ => more = false,
            }
            self.incoming.drain(..discard);
            if !more {
                break;
            }
        }
        Ok(peer_closed)
    }

    /// After a failed handshake or record, rustls still has the alert that
    /// tells the peer why (a TLS 1.1 client hears "protocol version"
    /// instead of a bare hang-up): queue it for the caller's last write.
    /// Asked for once: the alert is one message, and asking again would
    /// have rustls read the failed input again (the input buffer must not
    /// be touched either: rustls remembers how far into it it got).
    fn queue_alert(&mut self) {
        let status = self.conn.process_tls_records(&mut self.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut encoder)) = status.state {
            let _ = encode_into(&mut self.outgoing, &mut encoder);
        }
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        !self.established
    }

    /// Whether ciphertext waits for the socket.
    pub fn wants_write(&self) -> bool {
        self.sent < self.outgoing.len()
    }

    /// Seals up to [`SEAL_CHUNK`] bytes of queued plaintext, if the
    /// handshake is done and no ciphertext waits. Returns whether anything
    /// was sealed.
    pub fn seal(&mut self, out: &mut OutQueue) -> io::Result<bool> {
        if !self.established || self.wants_write() || self.close_sent || self.failed {
            return Ok(false);
        }
        let Some(batch) = out.take_batch() else {
            return Ok(false);
        };
        let chunk = batch.unsent().len().min(SEAL_CHUNK);
        let sealed = self.encrypt(&batch.unsent()[..chunk]);
        out.written(batch, if sealed.is_ok() { chunk } else { 0 });
        sealed.map(|()| chunk > 0)
    }

    /// Encrypts `plaintext` into `outgoing` (the handshake is done).
    /// Handshake records rustls still has to send (a key update's answer)
    /// go first.
    fn encrypt(&mut self, plaintext: &[u8]) -> io::Result<()> {
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            match status.state.map_err(io::Error::other)? {
                ConnectionState::WriteTraffic(mut writer) => {
                    // A record's overhead is under 64 bytes, so this fits.
                    return append_grown(&mut self.outgoing, plaintext.len() + 64, |buffer| {
                        writer.encrypt(plaintext, buffer).map_err(Grow::from)
                    });
                }
                ConnectionState::EncodeTlsData(mut encoder) => {
                    encode_into(&mut self.outgoing, &mut encoder)?;
                }
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                other => {
                    return Err(io::Error::other(format!(
                        "TLS connection cannot send now ({other:?})"
                    )));
                }
            }
        }
    }

    /// Writes waiting ciphertext to `socket` (one write).
    pub fn write_tls(&mut self, socket: &mut impl Write) -> io::Result<usize> {
        let written = socket.write(&self.outgoing[self.sent..])?;
        self.sent += written;
        self.release_sent();
        Ok(written)
    }

    /// Appends all waiting ciphertext to `buffer` (a completion send).
    pub fn drain_into(&mut self, buffer: &mut Vec<u8>) {
        if buffer.is_empty() && self.sent == 0 {
            // Hand the buffer over whole instead of copying it.
            std::mem::swap(buffer, &mut self.outgoing);
        } else {
            buffer.extend_from_slice(&self.outgoing[self.sent..]);
            self.sent = self.outgoing.len();
        }
        self.release_sent();
    }

    /// Frees the output buffer once everything in it went.
    fn release_sent(&mut self) {
        if self.sent >= self.outgoing.len() {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
    }

    /// Queues close_notify, once: the core closed the connection. Before
    /// the handshake is done there is no record layer to send it with;
    /// the connection just ends.
    pub fn close_notify(&mut self) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        if !self.established || self.failed {
            return;
        }
        let status = self.conn.process_tls_records(&mut self.incoming);
        if let Ok(ConnectionState::WriteTraffic(mut writer)) = status.state {
            let queued = append_grown(&mut self.outgoing, 64, |buffer| {
                writer.queue_close_notify(buffer).map_err(Grow::from)
            });
            if let Err(error) = queued {
                tracing::debug!(%error, "no close_notify");
            }
        }
    }
}

/// What an encoder that did not fit wants.
enum Grow {
    /// Room for this many bytes.
    To(InsufficientSizeError),
    /// It failed for another reason.
    Fail(io::Error),
}

impl From<EncryptError> for Grow {
    fn from(error: EncryptError) -> Self {
        match error {
            EncryptError::InsufficientSize(size) => Self::To(size),
            other => Self::Fail(io::Error::other(other.to_string())),
        }
    }
}

/// Appends the handshake record `encoder` holds to `outgoing`.
fn encode_into(
    outgoing: &mut Vec<u8>,
    encoder: &mut EncodeTlsData<'_, ServerConnectionData>,
) -> io::Result<()> {
    // Handshake messages: the certificate is the largest, under 4 KiB.
    append_grown(outgoing, 4096, |buffer| {
        encoder.encode(buffer).map_err(|error| match error {
            EncodeError::InsufficientSize(size) => Grow::To(size),
            other => Grow::Fail(io::Error::other(other.to_string())),
        })
    })
}

/// Runs `write` on spare room at the end of `buffer`, growing it as the
/// encoder asks, and keeps what it wrote.
fn append_grown(
    buffer: &mut Vec<u8>,
    mut room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Grow>,
) -> io::Result<()> {
    let start = buffer.len();
    loop {
        buffer.resize(start + room, 0);
        match write(&mut buffer[start..]) {
            Ok(written) => {
                buffer.truncate(start + written);
                return Ok(());
            }
            Err(Grow::To(size)) if size.required_size > room => room = size.required_size,
            Err(Grow::To(_)) => {
                buffer.truncate(start);
                return Err(io::Error::other(
                    "a TLS encoder asked for less room than it had",
                ));
            }
            Err(Grow::Fail(error)) => {
                buffer.truncate(start);
                return Err(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use chatd_core::Priority;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::*;
    use crate::tls::TlsAcceptor;
    use crate::tls::config;
    use crate::transport::Transport;
    use std::time::Instant;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A server transport and an in-memory rustls client that trusts it.
    fn pair() -> (Transport, ClientConnection) {
        let (chain, key) = config::self_signed().expect("certificate");
        let mut roots = RootCertStore::empty();
        roots.add(chain[0].clone()).expect("root");
        let server = config::server_config(chain, key).expect("server config");
        let acceptor = TlsAcceptor::from_config(server, TIMEOUT);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").expect("name");
        let client = ClientConnection::new(Arc::new(client), name).expect("client");
        let transport = Transport::new(Some(&acceptor), None, Instant::now()).expect("transport");
        (transport, client)
    }

    /// What the client sends, as bytes on the wire.
    fn client_flight(client: &mut ClientConnection) -> Vec<u8> {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("into a Vec");
        }
        wire
    }

    /// Everything the server writes now, as bytes on the wire.
    fn server_flight(transport: &mut Transport, out: &mut OutQueue, closing: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        assert!(
            transport
                .flush(out, &mut wire, closing)
                .expect("into a Vec")
        );
        wire
    }

    /// Feeds the server's bytes to the client; returns the plaintext.
    fn client_reads(client: &mut ClientConnection, mut wire: &[u8]) -> Vec<u8> {
        let mut plaintext = Vec::new();
        while !wire.is_empty() {
            client.read_tls(&mut wire).expect("client reads");
            let state = client.process_new_packets().expect("client processes");
            let start = plaintext.len();
            plaintext.resize(start + state.plaintext_bytes_to_read(), 0);
            client
                .reader()
                .read_exact(&mut plaintext[start..])
                .expect("plaintext");
        }
        plaintext
    }

    /// Runs the handshake to its end with `out` queued meanwhile; returns
    /// the plaintext the client got.
    fn handshake(
        transport: &mut Transport,
        client: &mut ClientConnection,
        out: &mut OutQueue,
    ) -> Vec<u8> {
        let mut got = Vec::new();
        for _ in 0..10 {
            let hello = client_flight(client);
            let received = transport.received(&hello).expect("handshake input");
            assert!(received.plaintext.is_empty());
            let reply = server_flight(transport, out, false);
            got.extend(client_reads(client, &reply));
            if !client.is_handshaking() && transport.handshake_deadline().is_none() {
                return got;
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn lines_cross_a_handshake_with_an_in_memory_client() {
        let (mut transport, mut client) = pair();
        let mut out = OutQueue::default();
        // The core greets at once; the greeting waits for the handshake.
        out.push(b"* welcome\n", Priority::Normal);
        let hello = client_flight(&mut client);
        transport.received(&hello).expect("ClientHello");
        let first = server_flight(&mut transport, &mut out, false);
        assert_eq!(
            out.queued(),
            10,
            "plaintext stays queued during the handshake"
        );
        let mut got = client_reads(&mut client, &first);
        got.extend(handshake(&mut transport, &mut client, &mut out));
        got.extend(client_reads(
            &mut client,
            &server_flight(&mut transport, &mut out, false),
        ));
        assert_eq!(got, b"* welcome\n");
        assert!(out.is_empty());
        client
            .writer()
            .write_all(b"#nick zed\n")
            .expect("client writes");
        let received = transport
            .received(&client_flight(&mut client))
            .expect("plaintext");
        assert_eq!(received.plaintext, b"#nick zed\n");
        assert!(!received.peer_closed);
    }

    #[test]
    fn closing_sends_close_notify_after_the_last_line() {
        let (mut transport, mut client) = pair();
        let mut out = OutQueue::default();
        handshake(&mut transport, &mut client, &mut out);
        out.push(b"* goodbye\n", Priority::Normal);
        let wire = server_flight(&mut transport, &mut out, true);
        let mut wire = &wire[..];
        while !wire.is_empty() {
            client.read_tls(&mut wire).expect("read");
        }
        let state = client.process_new_packets().expect("process");
        assert!(state.peer_has_closed(), "close_notify arrived");
        let mut line = vec![0; state.plaintext_bytes_to_read()];
        client.reader().read_exact(&mut line).expect("line");
        assert_eq!(line, b"* goodbye\n");
        // Once only, however often the closing connection is flushed.
        assert!(server_flight(&mut transport, &mut out, true).is_empty());
    }

    #[test]
    fn a_large_read_is_taken_whole() {
        let (mut transport, mut client) = pair();
        let mut out = OutQueue::default();
        handshake(&mut transport, &mut client, &mut out);
        let lines = b"0123456789abcdef\n".repeat(8 * 1024);
        client.set_buffer_limit(None);
        client.writer().write_all(&lines).expect("client writes");
        // More than one 64 KiB read of the I/O thread, in one call.
        let received = transport
            .received(&client_flight(&mut client))
            .expect("taken");
        assert_eq!(received.plaintext, lines);
    }

    #[test]
    fn garbage_is_an_error_for_that_connection() {
        let (mut transport, _) = pair();
        let error = transport
            .received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect_err("not TLS");
        assert!(matches!(error, TlsError::Protocol(_)), "{error}");
    }

    #[test]
    fn a_truncated_client_hello_waits_until_the_handshake_deadline() {
        let (mut transport, mut client) = pair();
        let hello = client_flight(&mut client);
        let half = &hello[..hello.len() / 2];
        // One byte at a time, as a slowloris sends it: no error, no
        // plaintext, nothing to answer; only the deadline ends it.
        for byte in half.chunks(1) {
            let received = transport.received(byte).expect("not an error yet");
            assert!(received.plaintext.is_empty());
        }
        assert!(!transport.wants_write());
        let deadline = transport.handshake_deadline().expect("still handshaking");
        assert!(!transport.handshake_expired(deadline - Duration::from_millis(1)));
        assert!(transport.handshake_expired(deadline));
        // The record completed with garbage: an error.
        assert!(transport.received(&vec![0xff; hello.len()]).is_err());
    }

    /// A socket that takes `room` bytes, then would block.
    struct Tight {
        room: usize,
        taken: Vec<u8>,
    }

    impl Write for Tight {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = bytes.len().min(self.room);
            self.room -= n;
            self.taken.extend_from_slice(&bytes[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_client_that_stops_reading_fills_the_out_queue_not_rustls() {
        let (mut transport, mut client) = pair();
        let mut out = OutQueue::default();
        handshake(&mut transport, &mut client, &mut out);
        let megabyte = vec![b'x'; 1024 * 1024];
        out.push(&megabyte, Priority::Normal);
        let mut socket = Tight {
            room: 1000,
            taken: Vec::new(),
        };
        assert!(
            !transport
                .flush(&mut out, &mut socket, false)
                .expect("would block")
        );
        // One chunk went into rustls; the rest still counts in the queue,
        // where the slow-consumer rule sees it.
        assert_eq!(out.queued(), megabyte.len() - SEAL_CHUNK);
        for _ in 0..100 {
            let _ = transport.flush(&mut out, &mut socket, false);
        }
        assert_eq!(
            out.queued(),
            megabyte.len() - SEAL_CHUNK,
            "nothing more moved"
        );
        // Room again: it all arrives, in order.
        socket.room = usize::MAX;
        assert!(transport.flush(&mut out, &mut socket, false).expect("all"));
        assert!(out.is_empty());
        assert_eq!(client_reads(&mut client, &socket.taken), megabyte);
    }
}
