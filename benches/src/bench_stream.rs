//! A generator's connection: plain TCP, or TLS over it.
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

    /// The socket underneath (for a poller, timeouts and blocking mode).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Self::Plain(socket) => socket,
            Self::Tls(tls) => &tls.socket,
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
        })
    }
}

impl Read for BenchStream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.read(buffer),
            Self::Tls(tls) => tls.read(buffer),
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
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(socket) => socket.write_all(bytes),
            Self::Tls(tls) => tls.write_all(bytes),
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
