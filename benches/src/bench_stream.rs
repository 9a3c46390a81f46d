//! A generator's connection: plain TCP, TLS over it, or a WebSocket on
//! chatd's HTTP listener.
//!
//! The fan-out generator reads every client on reader threads and writes
//! the senders from the sending thread, through clones of one socket. A
//! TLS session is one state for both directions, so a TLS connection's
//! clones share it behind a mutex: the reader holds it while it decrypts
//! what one non-blocking read brought, the sender while it encrypts one
//! batch. Each holds it for microseconds, and only a sender's own socket
//! is shared between two threads.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// One client connection of the generator.
#[derive(Debug)]
pub enum BenchStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(TlsStream),
    /// A WebSocket: lines written go out as masked text frames, frames
    /// read come back as lines.
    WebSocket(WebSocketStream),
}

/// A WebSocket client over one socket. Only the handle that reads keeps
/// decoding state (the generator reads each connection on one thread and
/// writes it from another, through a clone).
#[derive(Debug)]
pub struct WebSocketStream {
    socket: TcpStream,
    /// Bytes read and not yet a whole frame.
    raw: Vec<u8>,
    /// Decoded lines (LF-ended) not yet handed out.
    lines: Vec<u8>,
    /// Where handing out resumes in `lines`.
    given: usize,
    /// The next masking key (a client must mask; any key will do here).
    mask: u32,
}

/// TLS over one socket; clones share the session.
#[derive(Debug)]
pub struct TlsStream {
    session: Arc<Mutex<ClientConnection>>,
    socket: TcpStream,
}

impl BenchStream {
    /// Completes a TLS handshake over `socket` (blocking, within the
    /// socket's read timeout) as a client of `config`.
    pub fn handshake(mut socket: TcpStream, config: Arc<ClientConfig>) -> io::Result<Self> {
        let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
        let mut session = ClientConnection::new(config, name).map_err(io::Error::other)?;
        while session.is_handshaking() {
            session.complete_io(&mut socket)?;
        }
        Ok(Self::Tls(TlsStream {
            session: Arc::new(Mutex::new(session)),
            socket,
        }))
    }

    /// Upgrades `socket`, connected to chatd's HTTP listener at `addr`,
    /// to a WebSocket at `path` (blocking, within the socket's read
    /// timeout). Bytes after the answer's head are kept for the first read.
    pub fn upgrade(
        mut socket: TcpStream,
        addr: std::net::SocketAddr,
        path: &str,
    ) -> io::Result<Self> {
        write!(
            socket,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        // Byte by byte: the frames behind the head must stay unread.
        while !head.ends_with(b"\r\n\r\n") {
            if socket.read(&mut byte)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            head.push(byte[0]);
            if head.len() > 4096 {
                return Err(io::Error::other("an endless answer head"));
            }
        }
        if !head.starts_with(b"HTTP/1.1 101 ") {
            return Err(io::Error::other(format!(
                "upgrade refused: {}",
                String::from_utf8_lossy(&head)
            )));
        }
        Ok(Self::WebSocket(WebSocketStream {
            socket,
            raw: Vec::new(),
            lines: Vec::new(),
            given: 0,
            mask: 0x9e37_79b9,
        }))
    }

    /// The socket underneath (for a poller, timeouts and blocking mode).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Self::Plain(socket) => socket,
            Self::Tls(tls) => &tls.socket,
            Self::WebSocket(ws) => &ws.socket,
        }
    }

    /// A second handle on the same connection.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Self::Plain(socket) => Self::Plain(socket.try_clone()?),
            Self::Tls(tls) => Self::Tls(TlsStream {
                session: tls.session.clone(),
                socket: tls.socket.try_clone()?,
            }),
            Self::WebSocket(ws) => Self::WebSocket(WebSocketStream {
                socket: ws.socket.try_clone()?,
                raw: Vec::new(),
                lines: Vec::new(),
                given: 0,
                mask: ws.mask.rotate_left(7),
            }),
        })
    }
}

impl Read for BenchStream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.read(buffer),
            Self::Tls(tls) => tls.read(buffer),
            Self::WebSocket(ws) => ws.read(buffer),
        }
    }
}

impl Write for BenchStream {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.write(bytes),
            Self::Tls(tls) => {
                tls.write_all(bytes)?;
                Ok(bytes.len())
            }
            Self::WebSocket(ws) => {
                ws.write_all(bytes)?;
                Ok(bytes.len())
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(socket) => socket.write_all(bytes),
            Self::Tls(tls) => tls.write_all(bytes),
            Self::WebSocket(ws) => ws.write_all(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsStream {
    fn lock(&self) -> MutexGuard<'_, ClientConnection> {
        // A reader that panicked holding the session ends the run anyway.
        self.session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Plaintext that arrived, decrypting what one read of the socket
    /// brings when none is waiting. `Ok(0)` is the end of the stream.
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let mut session = self.lock();
        loop {
            match session.reader().read(buffer) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                done => return done,
            }
            if session.read_tls(&mut &self.socket)? == 0 {
                return Ok(0);
            }
            session.process_new_packets().map_err(io::Error::other)?;
        }
    }

    /// Encrypts `bytes` and writes them out. A full socket (the reader set
    /// it non-blocking) is waited out without holding the session, so the
    /// reader can drain what the server sends meanwhile.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut session = self.lock();
        session.writer().write_all(bytes)?;
        while session.wants_write() {
            match session.write_tls(&mut &self.socket) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    drop(session);
                    std::thread::sleep(Duration::from_micros(50));
                    session = self.lock();
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

impl WebSocketStream {
    /// Lines from the frames that arrived, reading the socket once when
    /// none are waiting. `Ok(0)` is the end of the stream (or a close).
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.given < self.lines.len() {
                let n = (self.lines.len() - self.given).min(buffer.len());
                buffer[..n].copy_from_slice(&self.lines[self.given..self.given + n]);
                self.given += n;
                if self.given == self.lines.len() {
                    self.lines.clear();
                    self.given = 0;
                }
                return Ok(n);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = (&self.socket).read(&mut chunk)?;
            if n == 0 {
                return Ok(0);
            }
            self.raw.extend_from_slice(&chunk[..n]);
            if self.decode()? {
                return Ok(0);
            }
        }
    }

    /// Moves every whole frame of `raw` into `lines`; true at a close.
    fn decode(&mut self) -> io::Result<bool> {
        let mut at = 0;
        let mut closed = false;
        while self.raw.len() - at >= 2 {
            let (opcode, short) = (self.raw[at] & 0x0f, self.raw[at + 1] & 0x7f);
            let (length, header) = match short {
                126 if self.raw.len() - at >= 4 => (
                    u16::from_be_bytes([self.raw[at + 2], self.raw[at + 3]]) as usize,
                    4,
                ),
                127 if self.raw.len() - at >= 10 => {
                    let mut eight = [0u8; 8];
                    eight.copy_from_slice(&self.raw[at + 2..at + 10]);
                    (u64::from_be_bytes(eight) as usize, 10)
                }
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if self.raw.len() - at < header + length {
                break;
            }
            let payload = &self.raw[at + header..at + header + length];
            match opcode {
                1 | 2 => {
                    self.lines.extend_from_slice(payload);
                    self.lines.push(b'\n');
                }
                8 => closed = true,
                _ => {}
            }
            at += header + length;
        }
        self.raw.drain(..at);
        Ok(closed)
    }

    /// Sends each line of `bytes` (LF-ended) as one masked text frame.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut frames = Vec::with_capacity(bytes.len() + 16);
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            frames.push(0x81);
            match line.len() {
                n if n < 126 => frames.push(0x80 | n as u8),
                n if n < 65536 => {
                    frames.push(0x80 | 126);
                    frames.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    frames.push(0x80 | 127);
                    frames.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            self.mask = self
                .mask
                .wrapping_mul(0x0101_0101)
                .wrapping_add(0x9e37_79b9);
            let mask = self.mask.to_be_bytes();
            frames.extend_from_slice(&mask);
            frames.extend(line.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        // A full socket (the reader set it non-blocking) is waited out.
        let mut rest = &frames[..];
        while !rest.is_empty() {
            match (&self.socket).write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// A client configuration that accepts any server certificate: the
/// benchmarks talk to a server they started themselves with a
/// self-signed certificate made in memory, over loopback. Signatures are
/// still checked, so the handshake costs what a verifying client's does
/// minus the chain walk. Session resumption is off: every handshake is a
/// full one.
pub fn trusting_client_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// Accepts every certificate (see [`trusting_client_config`]).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
