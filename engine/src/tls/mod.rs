//! TLS for every listener, once for both backends (DESIGN.md, section 7).
//!
//! rustls's connection is itself sans-IO: ciphertext read from the socket
//! goes in, plaintext for the core comes out; plaintext from the core goes
//! in, ciphertext for the socket comes out. So the whole TLS layer lives
//! here and the backends only call it:
//!
//! - [`config`]: the certificate and key (PEM files or `--tls-self-signed`)
//!   made into a rustls `ServerConfig`, TLS 1.2 and 1.3, ring provider.
//! - [`TlsAcceptor`]: the listeners' shared, reloadable config (SIGHUP
//!   swaps it for new handshakes; connections keep theirs) and the
//!   handshake timeout.
//! - [`session`]: one connection's TLS state and the [`Transport`] a
//!   backend keeps per connection (plain or TLS), which moves the engine's
//!   queued plaintext into rustls only while rustls holds no ciphertext,
//!   so rustls's buffers stay bounded and the slow-consumer rule keeps
//!   counting what waits in the [`crate::out_queue::OutQueue`].
//! - [`refuse`]: a refused TLS connection still gets its refusal line,
//!   through a completed handshake, on one bounded helper thread.

pub mod config;
pub mod refuse;
pub mod session;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;

pub use self::config::{CertSource, TlsConfigError};
pub use self::session::{TlsError, TlsSession};

/// The default `[tls] handshake_timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every TLS listener shares: the current server config (swapped by
/// [`TlsAcceptor::reload`]) and how long a handshake may take. Cheap to
/// clone; every clone sees a reload.
#[derive(Clone)]
pub struct TlsAcceptor {
    shared: Arc<Shared>,
}

struct Shared {
    /// The config new handshakes use. A connection holds its own `Arc`
    /// from the moment it is created, so swapping this drops nobody.
    current: RwLock<Arc<ServerConfig>>,
    source: CertSource,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("source", &self.shared.source)
            .field("handshake_timeout", &self.shared.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads the certificate from `source` (or makes one) and returns the
    /// acceptor, with the self-signed certificate's SHA-256 fingerprint
    /// (`AB:CD:...`) when one was made.
    pub fn new(
        source: CertSource,
        handshake_timeout: Duration,
    ) -> Result<(Self, Option<String>), TlsConfigError> {
        let (config, fingerprint) = config::build(&source)?;
        let acceptor = Self {
            shared: Arc::new(Shared {
                current: RwLock::new(config),
                source,
                handshake_timeout,
            }),
        };
        Ok((acceptor, fingerprint))
    }

    /// An acceptor over a ready config (tests).
    pub fn from_config(config: Arc<ServerConfig>, handshake_timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: RwLock::new(config),
                source: CertSource::SelfSigned,
                handshake_timeout,
            }),
        }
    }

    /// A new server-side session for an accepted connection, on the
    /// config in force now.
    pub fn session(&self) -> Result<TlsSession, TlsError> {
        TlsSession::new(self.config())
    }

    /// The config new handshakes use.
    pub fn config(&self) -> Arc<ServerConfig> {
        match self.shared.current.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How long a client may take to complete its handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.shared.handshake_timeout
    }

    /// Re-reads the certificate and key files and uses them for new
    /// handshakes; existing connections keep theirs. On an error the old
    /// config stays in force. A self-signed certificate is kept as is:
    /// there is nothing to re-read.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        if matches!(self.shared.source, CertSource::SelfSigned) {
            return Ok(());
        }
        let (config, _) = config::build(&self.shared.source)?;
        match self.shared.current.write() {
            Ok(mut current) => *current = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    /// [`TlsAcceptor::reload`], logged: what SIGHUP does.
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(()) => tracing::info!(source = ?self.shared.source, "TLS certificate reloaded"),
            Err(error) => {
                tracing::error!(%error, "TLS certificate NOT reloaded; the old one stays in use");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::*;

    /// Writes a new certificate and key to `dir`; returns the certificate.
    fn write_pair(dir: &Path) -> CertificateDer<'static> {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        made.cert.der().clone()
    }

    /// Whether a client that trusts only `cert` completes a handshake
    /// with a session the acceptor makes now.
    fn handshakes(acceptor: &TlsAcceptor, cert: &CertificateDer<'static>) -> bool {
        let mut roots = RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut server = acceptor.session().unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            if server.receive(&wire, &mut Vec::new()).is_err() {
                return false;
            }
            let mut reply = Vec::new();
            server.drain_into(&mut reply);
            let mut reply = &reply[..];
            while !reply.is_empty() {
                client.read_tls(&mut reply).unwrap();
                if client.process_new_packets().is_err() {
                    return false;
                }
            }
            if !client.is_handshaking() {
                return true;
            }
        }
        false
    }

    #[test]
    fn reload_swaps_the_certificate_for_new_handshakes_and_keeps_it_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_pair(dir.path());
        let source = CertSource::Files {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        let (acceptor, fingerprint) = TlsAcceptor::new(source, DEFAULT_HANDSHAKE_TIMEOUT).unwrap();
        assert!(fingerprint.is_none());
        assert!(handshakes(&acceptor, &first));
        // A connection made before the reload keeps its config.
        let before = acceptor.config();
        let second = write_pair(dir.path());
        acceptor.reload().expect("reloads");
        assert!(!Arc::ptr_eq(&before, &acceptor.config()));
        assert!(handshakes(&acceptor, &second));
        assert!(!handshakes(&acceptor, &first));
        // A broken file: an error, and the second certificate stays.
        let mut broken = std::fs::File::create(dir.path().join("key.pem")).unwrap();
        broken
            .write_all(b"-----BEGIN PRIVATE KEY-----\nnope\n")
            .unwrap();
        drop(broken);
        let kept = acceptor.config();
        assert!(acceptor.reload().is_err());
        assert!(Arc::ptr_eq(&kept, &acceptor.config()));
        assert!(handshakes(&acceptor, &second));
    }
}
