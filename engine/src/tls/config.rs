//! The TLS server config: certificate chain and key from PEM files, or a
//! self-signed certificate made in memory, with the ring provider and
//! TLS 1.2 and 1.3 only (rustls has nothing older).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// PEM files: the chain (leaf first) and its private key.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// A certificate for `localhost`, `127.0.0.1` and `::1`, made at
    /// start-up (`--tls-self-signed`).
    SelfSigned,
}

/// Why no TLS config could be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The certificate file is unreadable or holds no certificate.
    #[error("cannot read the TLS certificate {path}: {cause}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: String,
    },
    /// The key file is unreadable or holds no private key.
    #[error("cannot read the TLS private key {path}: {cause}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: String,
    },
    /// rustls refused the pair (the key does not match, ...).
    #[error("the TLS certificate and key cannot be used: {0}")]
    Rustls(#[from] rustls::Error),
    /// The self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
}

/// The names a self-signed certificate is valid for.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Builds the config for `source`; for a self-signed certificate also its
/// SHA-256 fingerprint.
pub fn build(source: &CertSource) -> Result<(Arc<ServerConfig>, Option<String>), TlsConfigError> {
    let (chain, key, fingerprint) = match source {
        CertSource::Files { cert, key } => {
            let chain = read_chain(cert)?;
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|error| TlsConfigError::Key {
                    path: key.clone(),
                    cause: error.to_string(),
                })?;
            (chain, key_der, None)
        }
        CertSource::SelfSigned => {
            let (chain, key) = self_signed()?;
            let fingerprint = fingerprint(&chain[0]);
            (chain, key, Some(fingerprint))
        }
    };
    Ok((server_config(chain, key)?, fingerprint))
}

/// A rustls server config over `chain` and `key`.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A self-signed certificate for [`SELF_SIGNED_NAMES`] and its key.
pub fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), rcgen::Error>
{
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    Ok((vec![cert], key))
}

/// The SHA-256 fingerprint of a certificate as hex pairs, `AB:CD:...`.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring_sha256(cert.as_ref());
    digest
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ring_sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

fn read_chain(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let error = |cause: String| TlsConfigError::Cert {
        path: path.clone(),
        cause,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if chain.is_empty() {
        return Err(error("no CERTIFICATE in the file".into()));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_has_a_sha256_fingerprint() {
        let (config, fingerprint) = build(&CertSource::SelfSigned).expect("made");
        let fingerprint = fingerprint.expect("self-signed has one");
        assert_eq!(fingerprint.len(), 32 * 3 - 1, "{fingerprint}");
        assert!(fingerprint.split(':').all(|pair| pair.len() == 2));
        assert!(config.alpn_protocols.is_empty());
    }

    #[test]
    fn missing_or_empty_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let source = CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        };
        let error = build(&source).unwrap_err().to_string();
        assert!(
            error.contains("certificate") && error.contains("cert.pem"),
            "{error}"
        );
        std::fs::write(&cert, "not pem").unwrap();
        let error = build(&source).unwrap_err().to_string();
        assert!(error.contains("no CERTIFICATE"), "{error}");
    }
}
