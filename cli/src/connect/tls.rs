//! TLS for `chatd connect --tls`: how a connection is made (plain TCP or
//! rustls over it), how the server's certificate is checked, and what a
//! person is told when it does not pass.
//!
//! The client is blocking std I/O on the link thread, so it uses rustls's
//! [`StreamOwned`] over the [`TcpStream`]. The handshake is finished
//! before the link reports the connection up, so a certificate problem
//! is a failed connection attempt with a one-line reason, never a
//! connection that dies on its first line.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme, StreamOwned,
};

/// Longest wait for the server's side of the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the server: plain TCP, or TLS with a verified (or, with
/// `--insecure`, unverified) certificate.
#[derive(Clone)]
pub(crate) enum Connector {
    /// Plain TCP.
    Plain,
    /// TLS over TCP.
    Tls {
        /// Roots, protocol versions, verifier.
        config: Arc<ClientConfig>,
        /// The name the certificate must be for (the host of HOST:PORT).
        name: ServerName<'static>,
        /// Verification is off: warn at every connection.
        insecure: bool,
    },
}

impl Connector {
    /// The connector for `addr` (HOST:PORT) with the command line's TLS
    /// options. Fails on an unreadable `--ca` file or a host that is not
    /// a valid DNS name or IP address.
    pub(crate) fn new(
        addr: &str,
        tls: bool,
        ca: Option<&Path>,
        insecure: bool,
    ) -> anyhow::Result<Self> {
        if !tls {
            anyhow::ensure!(
                ca.is_none() && !insecure,
                "--ca and --insecure are for TLS connections: add --tls"
            );
            return Ok(Self::Plain);
        }
        let host = host_of(addr);
        let name = ServerName::try_from(host.to_owned())
            .with_context(|| format!("{host:?} is not a host name or IP address"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("the TLS provider offers no protocol version")?;
        let config = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(roots(ca)?)
                .with_no_client_auth()
        };
        Ok(Self::Tls {
            config: Arc::new(config),
            name,
            insecure,
        })
    }

    /// The warning to give before each connection made with `--insecure`.
    pub(crate) fn warning(&self) -> Option<String> {
        match self {
            Self::Tls {
                insecure: true,
                name,
                ..
            } => Some(format!(
                "warning: --insecure: the certificate of {} is not checked; anyone on the way can read and change this connection",
                name.to_str()
            )),
            _ => None,
        }
    }

    /// Connects to `addr`, finishing the TLS handshake if there is one.
    /// The error is one line for people.
    pub(crate) fn connect(&self, addr: &str) -> Result<Stream, String> {
        let tcp = TcpStream::connect(addr)
            .map_err(|error| format!("cannot connect to {addr}: {error}"))?;
        let Self::Tls { config, name, .. } = self else {
            return Ok(Stream::Plain(tcp));
        };
        let mut conn = ClientConnection::new(config.clone(), name.clone())
            .map_err(|error| format!("cannot start TLS: {error}"))?;
        let mut tcp = tcp;
        tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(|error| error.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)
                .map_err(|error| handshake_failure(addr, name, &error))?;
        }
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }
}

/// The host part of HOST:PORT (`[::1]:9443` gives `::1`).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _port)| host);
    host.strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host)
}

/// Mozilla's roots (webpki-roots), plus every certificate in `ca`.
fn roots(ca: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Some(ca) = ca else {
        return Ok(roots);
    };
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("cannot read the CA file {}", ca.display()))?
    {
        let cert = cert.with_context(|| format!("{} is not valid PEM", ca.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("{} holds a certificate that cannot be a CA", ca.display()))?;
        added += 1;
    }
    anyhow::ensure!(added > 0, "{} holds no PEM certificate", ca.display());
    Ok(roots)
}

/// One line about a failed handshake; certificate problems say which.
fn handshake_failure(addr: &str, name: &ServerName<'_>, error: &io::Error) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return format!("TLS handshake with {addr} failed: {error}");
    };
    match tls {
        rustls::Error::InvalidCertificate(problem) => describe(name, problem),
        other => format!("TLS handshake with {addr} failed: {other}"),
    }
}

/// A certificate problem for people.
fn describe(name: &ServerName<'_>, problem: &CertificateError) -> String {
    let name = name.to_str();
    match problem {
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("certificate for {name} expired on {}", date(*not_after))
        }
        CertificateError::Expired => format!("certificate for {name} has expired"),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "certificate for {name} is not valid before {}",
            date(*not_before)
        ),
        CertificateError::NotValidYet => format!("certificate for {name} is not valid yet"),
        CertificateError::NotValidForNameContext { presented, .. } => {
            let names: Vec<String> = presented.iter().map(|name| plain_name(name)).collect();
            if names.is_empty() {
                format!("certificate names no host, not {name}")
            } else {
                format!("certificate is for {}, not {name}", names.join(", "))
            }
        }
        CertificateError::NotValidForName => format!("certificate is not for {name}"),
        CertificateError::UnknownIssuer => {
            "certificate is signed by an unknown authority; pass --ca FILE if it is a private one"
                .into()
        }
        CertificateError::BadSignature => "certificate has a bad signature".into(),
        CertificateError::Revoked => format!("certificate for {name} was revoked"),
        other => format!("certificate for {name} was refused: {other}"),
    }
}

/// `2025-01-01` from a Unix time.
fn date(time: UnixTime) -> String {
    let seconds = i64::try_from(time.as_secs()).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(seconds)
        .map(|time| time.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| format!("{seconds} seconds after 1970"))
}

/// webpki names a certificate's names by their Debug form
/// (`DnsName("other.example")`, `IpAddress(127.0.0.1)`); people want the
/// name alone.
fn plain_name(presented: &str) -> String {
    let inner = presented
        .split_once('(')
        .and_then(|(_kind, rest)| rest.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"').to_owned()
}

/// A connection to the server, plain or TLS.
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The socket underneath (for timeouts and options).
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.read(buf),
            Self::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.write(buf),
            Self::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(tcp) => tcp.flush(),
            Self::Tls(tls) => tls.flush(),
        }
    }
}

/// `--insecure`: any certificate for any name is accepted. The handshake
/// signatures are still checked (they cost nothing and prove the server
/// holds the key of the certificate it sent).
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_taken_from_host_and_port() {
        assert_eq!(host_of("localhost:9443"), "localhost");
        assert_eq!(host_of("[::1]:9443"), "::1");
        assert_eq!(host_of("chat.example"), "chat.example");
    }

    #[test]
    fn presented_names_are_shown_without_their_kind() {
        assert_eq!(plain_name(r#"DnsName("other.example")"#), "other.example");
        assert_eq!(plain_name("IpAddress(127.0.0.1)"), "127.0.0.1");
    }

    #[test]
    fn an_expiry_date_is_a_plain_date() {
        assert_eq!(
            date(UnixTime::since_unix_epoch(Duration::from_secs(
                1_735_689_600
            ))),
            "2025-01-01"
        );
    }
}
