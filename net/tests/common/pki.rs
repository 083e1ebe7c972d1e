//! Test-time certificates (rcgen): a cluster CA and node certificates for the mTLS tests.
//! Nothing here is committed key material: every run makes fresh keys.

use net::tls::{SERVER_NAME, TlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority: its certificate and key.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    /// A fresh self-signed CA.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A node certificate (SAN `tierkv-internal`, server and client use) and its key, PEM.
    pub fn node(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![SERVER_NAME.to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The TLS settings of a node of this CA.
    pub fn tls(&self, name: &str) -> TlsConfig {
        let (cert, key) = self.node(name);
        TlsConfig::from_pem(self.cert.pem().as_bytes(), cert.as_bytes(), key.as_bytes()).unwrap()
    }

    /// A config that trusts this CA's servers but presents no client certificate.
    pub fn no_client_cert(&self) -> futures_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        #[allow(deprecated)]
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        futures_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
    }
}
