//! A throwaway certificate authority and a `localhost` leaf it signs, made at start.

use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// The server's TLS identity: an acceptor, and the CA clients must trust.
pub(crate) struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    client: rustls::ClientConfig,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("alpn", &self.acceptor.config().alpn_protocols)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("testkit tls: {what}: {e}"))
}

impl Tls {
    /// Generates a CA and a leaf for `localhost`, `127.0.0.1` and `::1`, and an acceptor
    /// offering `alpn` (most preferred first).
    pub(crate) fn generate(alpn: Vec<Vec<u8>>) -> io::Result<Self> {
        // webpki rejects a self-signed leaf (CaUsedAsEndEntity), hence a CA and a leaf.
        let mut ca_params =
            CertificateParams::new(Vec::new()).map_err(|e| tls_error("ca params", e))?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "flext-testkit CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(|e| tls_error("ca key", e))?;
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(|e| tls_error("ca certificate", e))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        let mut leaf_params =
            CertificateParams::new(names).map_err(|e| tls_error("leaf params", e))?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().map_err(|e| tls_error("leaf key", e))?;
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &issuer)
            .map_err(|e| tls_error("leaf certificate", e))?;

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("protocol versions", e))?
            .with_no_client_auth()
            .with_single_cert(vec![leaf_cert.der().clone()], key)
            .map_err(|e| tls_error("server certificate", e))?;
        config.alpn_protocols = alpn;

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca_cert.der().clone())
            .map_err(|e| tls_error("root store", e))?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("protocol versions", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();

        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            client,
        })
    }

    pub(crate) fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub(crate) fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// A client config (ring provider) that trusts only this CA, without ALPN.
    pub(crate) fn client_config(&self) -> &rustls::ClientConfig {
        &self.client
    }
}
