//! [`TlsConfig`]: which servers to trust, built into a rustls client config on ring.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::ConfigError;

/// Which servers a TLS connection trusts.
///
/// By default: Mozilla's root certificates bundled into the binary (feature
/// `webpki-roots`, on by default). The operating system's roots come with the
/// `system-roots` feature and `TlsConfig::system_roots`; private CAs (and test servers)
/// are added from PEM with [`TlsConfig::add_root_pem`]. Certificate checks can be turned
/// off only through the loudly named [`TlsConfig::danger_accept_invalid_certs`].
///
/// The crypto provider is always rustls' `ring` provider; ALPN is set by the pool (`h2`
/// and `http/1.1`, or `http/1.1` alone when the pool is HTTP/1.1-only).
///
/// ```
/// use flext_pool::TlsConfig;
///
/// let pem = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
/// assert!(TlsConfig::new().add_root_pem(pem.as_bytes()).is_err());
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    webpki_roots: bool,
    system_roots: bool,
    extra_roots: Vec<CertificateDer<'static>>,
    accept_invalid_certs: bool,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig::new()
    }
}

impl TlsConfig {
    /// Trust the bundled web PKI roots (when the `webpki-roots` feature is on) and nothing
    /// else.
    pub fn new() -> TlsConfig {
        TlsConfig {
            webpki_roots: cfg!(feature = "webpki-roots"),
            system_roots: false,
            extra_roots: Vec::new(),
            accept_invalid_certs: false,
        }
    }

    /// Whether to trust Mozilla's roots bundled with the `webpki-roots` feature. Default on
    /// when the feature is.
    pub fn webpki_roots(mut self, enabled: bool) -> TlsConfig {
        self.webpki_roots = enabled && cfg!(feature = "webpki-roots");
        self
    }

    /// Whether to trust the operating system's root certificates, loaded when the pool is
    /// built. Default off.
    #[cfg(feature = "system-roots")]
    #[cfg_attr(docsrs, doc(cfg(feature = "system-roots")))]
    pub fn system_roots(mut self, enabled: bool) -> TlsConfig {
        self.system_roots = enabled;
        self
    }

    /// Trusts the CA certificates in a PEM document (one or more `CERTIFICATE` blocks), on
    /// top of the other roots.
    ///
    /// # Errors
    ///
    /// A document with no certificate, or one that is not valid PEM.
    pub fn add_root_pem(mut self, pem: &[u8]) -> Result<TlsConfig, ConfigError> {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ConfigError::new("root_pem", e.to_string()))?;
            self.extra_roots.push(cert);
            added += 1;
        }
        if added == 0 {
            return Err(ConfigError::new(
                "root_pem",
                "no certificate in the pem document",
            ));
        }
        Ok(self)
    }

    /// Trusts a CA certificate given in DER.
    pub fn add_root_der(mut self, der: impl Into<CertificateDer<'static>>) -> TlsConfig {
        self.extra_roots.push(der.into());
        self
    }

    /// **Development only.** Accepts any server certificate, for any name, expired or
    /// self-signed: anyone on the path can read and change the traffic. Signatures are still
    /// checked, so the handshake itself is sound.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> TlsConfig {
        self.accept_invalid_certs = accept;
        self
    }

    /// The rustls client config, with ALPN `alpn`.
    pub(crate) fn build(&self, alpn: &[&[u8]]) -> Result<ClientConfig, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("tls", e.to_string()))?;
        let mut config = if self.accept_invalid_certs {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth()
        } else {
            let roots = self.roots()?;
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    fn roots(&self) -> Result<RootCertStore, ConfigError> {
        let mut store = RootCertStore::empty();
        #[cfg(feature = "webpki-roots")]
        if self.webpki_roots {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        #[cfg(feature = "system-roots")]
        if self.system_roots {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 && !found.errors.is_empty() {
                return Err(ConfigError::new(
                    "system_roots",
                    format!(
                        "no system root certificate could be loaded: {}",
                        found.errors[0]
                    ),
                ));
            }
        }
        for cert in &self.extra_roots {
            store
                .add(cert.clone())
                .map_err(|e| ConfigError::new("root_pem", e.to_string()))?;
        }
        if store.is_empty() {
            return Err(ConfigError::new(
                "roots",
                "no root certificate to trust: enable the webpki-roots or system-roots feature, or add a CA",
            ));
        }
        Ok(store)
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("webpki_roots", &self.webpki_roots)
            .field("system_roots", &self.system_roots)
            .field("extra_roots", &self.extra_roots.len())
            .field("danger_accept_invalid_certs", &self.accept_invalid_certs)
            .finish()
    }
}

/// Accepts any certificate; still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCert {
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
    fn alpn_is_set_and_no_roots_is_an_error() {
        let c = TlsConfig::new()
            .danger_accept_invalid_certs(true)
            .build(&[b"h2", b"http/1.1"])
            .unwrap();
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        let e = TlsConfig::new().webpki_roots(false).build(&[]).unwrap_err();
        assert_eq!(e.setting(), "roots");
    }

    #[cfg(feature = "webpki-roots")]
    #[test]
    fn bundled_roots_by_default() {
        assert!(TlsConfig::new().build(&[b"h2"]).is_ok());
    }
}
