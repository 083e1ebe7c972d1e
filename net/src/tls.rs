//! Mutual TLS for internal connections (`docs/format/wire.md` §2.1), an option on top of the
//! cluster-secret handshake: when a [`TlsConfig`] is set in the transport config, every
//! connection is TLS 1.3 (rustls, ring provider) before the first frame. The acceptor requires
//! a client certificate that chains to the cluster CA; the connector verifies the acceptor's
//! certificate against the same CA and the fixed name [`SERVER_NAME`] (addresses change, the
//! cluster CA is what identifies a member). The secret handshake then runs inside TLS.
//!
//! Both transports' drivers speak the `futures-io` traits, so one stream type, [`MaybeTls`],
//! serves tokio and glommio alike: a plain stream passes every call straight through.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use futures_util::io::{AsyncRead, AsyncWrite};
use rustls::RootCertStore;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The DNS name (subject alternative name) every node's certificate carries and every
/// connector checks, whatever address it dialled.
pub const SERVER_NAME: &str = "tierkv-internal";

/// Why the TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A PEM input holds nothing usable of what it should.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input (`tls-ca`, `tls-cert`, `tls-key`).
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificates or key (e.g. a key that does not match the chain).
    #[error("tls: {0}")]
    Config(String),
    /// Only some of `tls-ca`, `tls-cert` and `tls-key` are set.
    #[error("set all of tls-ca, tls-cert and tls-key, or none")]
    Partial,
}

/// The three files of a node's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// PEM of the cluster CA certificate(s).
    pub ca: PathBuf,
    /// PEM of this node's certificate chain (its certificate first).
    pub cert: PathBuf,
    /// PEM of this node's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsPaths {
    /// The paths when all three are set, `None` when none is, an error otherwise.
    pub fn from_parts(
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<Self>, TlsError> {
        match (ca, cert, key) {
            (Some(ca), Some(cert), Some(key)) => Ok(Some(Self { ca, cert, key })),
            (None, None, None) => Ok(None),
            _ => Err(TlsError::Partial),
        }
    }
}

/// A node's TLS settings, ready to wrap connections: cheap to clone (shared configs).
#[derive(Clone)]
pub struct TlsConfig {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig(mutual TLS 1.3)")
    }
}

impl TlsConfig {
    /// Reads the three PEM files (blocking: call before starting shards).
    pub fn load(paths: &TlsPaths) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Io {
                path: path.to_path_buf(),
                source,
            })
        };
        Self::from_pem(&read(&paths.ca)?, &read(&paths.cert)?, &read(&paths.key)?)
    }

    /// Settings from PEM text: the cluster CA, this node's chain and its key.
    pub fn from_pem(ca: &[u8], chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let roots = Arc::new(roots(ca)?);
        let chain = certs("tls-cert", chain)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem {
            what: "tls-key",
            reason: e.to_string(),
        })?;
        let provider = Arc::new(ring_provider());
        let config = |e: rustls::Error| TlsError::Config(e.to_string());
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config)?;
        // Internal connections are long-lived: no session tickets, no resumption.
        server.send_tls13_tickets = 0;
        let mut client = client_builder(provider)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(config)?;
        client.resumption = Resumption::disabled();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// Runs the connector's side of the TLS handshake over `stream`.
    pub async fn connect<S>(&self, stream: S) -> io::Result<MaybeTls<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(SERVER_NAME).map_err(io::Error::other)?;
        let tls = self.connector.connect(name, stream).await?;
        Ok(MaybeTls::Tls(Box::new(TlsStream::from(tls))))
    }

    /// Runs the acceptor's side of the TLS handshake over `stream`: fails unless the peer
    /// presents a certificate of the cluster CA.
    pub async fn accept<S>(&self, stream: S) -> io::Result<MaybeTls<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let tls = self.acceptor.accept(stream).await?;
        Ok(MaybeTls::Tls(Box::new(TlsStream::from(tls))))
    }
}

/// The ring provider: rustls 0.23.48 deprecates it because ring has no post-quantum key
/// exchange (only aws-lc-rs does, and it needs cmake to build). Internal traffic stays on a
/// private network; X25519 and the P-256/P-384 groups are what it negotiates.
#[allow(
    deprecated,
    reason = "ring is the chosen provider: aws-lc-rs needs cmake"
)]
fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

type ClientBuilder = rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>;

fn client_builder(provider: Arc<CryptoProvider>) -> Result<ClientBuilder, TlsError> {
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))
}

fn certs(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

fn roots(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs("tls-ca", pem)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            what: "tls-ca",
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// A connection's byte stream: plain, or TLS over it. The plain case forwards every call.
#[derive(Debug)]
pub enum MaybeTls<S> {
    /// Plain TCP: the bytes of the frames as they are.
    Plain(S),
    /// TLS 1.3 (boxed: a TLS session is a few KiB).
    Tls(Box<TlsStream<S>>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            // A peer that closes without TLS `close_notify` (every pooled connection that is
            // dropped) ends the stream like a plain close: frames carry their own lengths,
            // so a truncation cannot pass for a whole frame.
            Self::Tls(s) => match Pin::new(s.as_mut()).poll_read(cx, buf) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(0))
                }
                other => other,
            },
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    #[inline]
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_close(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_settings_are_refused() {
        let p = || Some(PathBuf::from("x"));
        assert!(matches!(TlsPaths::from_parts(None, None, None), Ok(None)));
        assert!(matches!(TlsPaths::from_parts(p(), p(), p()), Ok(Some(_))));
        assert!(matches!(
            TlsPaths::from_parts(p(), None, p()),
            Err(TlsError::Partial)
        ));
    }

    #[test]
    fn pem_without_certificates_is_refused() {
        let e = TlsConfig::from_pem(b"not pem", b"", b"").unwrap_err();
        assert!(matches!(e, TlsError::Pem { what: "tls-ca", .. }), "{e}");
    }
}
