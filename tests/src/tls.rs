//! The harness's TLS mode: a certificate made for the run, written where
//! a server (in-process or a `chatd` process, also under Wine) reads it,
//! and rustls clients that trust exactly that certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};

/// The name the test certificate is for, and the clients ask for.
pub const SERVER_NAME: &str = "localhost";

/// A test certificate on disk and a client config that trusts it.
#[derive(Clone)]
pub struct TestTls {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Clients that trust the certificate.
    pub client: Arc<ClientConfig>,
}

impl std::fmt::Debug for TestTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl TestTls {
    /// Makes a certificate for localhost and 127.0.0.1 in `dir`.
    pub fn create(dir: &Path) -> Result<Self, String> {
        let names = vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()];
        let made = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
        let cert = dir.join("tls-cert.pem");
        let key = dir.join("tls-key.pem");
        std::fs::write(&cert, made.cert.pem()).map_err(|e| e.to_string())?;
        std::fs::write(&key, made.signing_key.serialize_pem()).map_err(|e| e.to_string())?;
        let client = client_trusting(made.cert.der().clone())?;
        Ok(Self { cert, key, client })
    }
}

/// A client config (ring, TLS 1.2 and 1.3) whose only root is `cert`.
pub fn client_trusting(cert: CertificateDer<'static>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server name clients verify.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("a valid DNS name")
}
