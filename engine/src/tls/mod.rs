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
pub use self::session::{TlsError, TlsSession, Transport};

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
