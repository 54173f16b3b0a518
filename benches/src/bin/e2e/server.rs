//! The plain server every client talks to: hyper 1.x behind hyper-util's auto builder (HTTP/1.1
//! and HTTP/2 on one port, h2c by its preface), answering every request with 256 bytes after
//! an optional latency, over TCP or TLS. Nothing else runs per request, so the figures are the
//! clients'.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// The size of every response body.
pub(crate) const BODY_LEN: usize = 256;

static BODY: [u8; BODY_LEN] = [b'x'; BODY_LEN];

/// How the server behaves.
#[derive(Clone, Default)]
pub(crate) struct ServerOptions {
    /// Time each response waits before it is sent.
    pub(crate) latency: Duration,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` (hyper's default, 200, when `None`).
    pub(crate) max_streams: Option<u32>,
    /// Serve TLS (ALPN `h2`, `http/1.1`) with this identity.
    pub(crate) tls: Option<Arc<Identity>>,
}

/// A running server; dropping it closes the listener and every connection.
pub(crate) struct Server {
    addr: SocketAddr,
    tls: bool,
    served: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl Server {
    pub(crate) async fn start(options: ServerOptions) -> io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        if let Some(max) = options.max_streams {
            builder.http2().max_concurrent_streams(max);
        }
        let acceptor = options
            .tls
            .as_ref()
            .map(|identity| TlsAcceptor::from(identity.server.clone()));
        let tls = acceptor.is_some();
        let served = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            builder,
            acceptor,
            options.latency,
            served.clone(),
        ));
        Ok(Server {
            addr,
            tls,
            served,
            accept,
        })
    }

    /// The URL of the bench path (`https` and the IP address, which the certificate names,
    /// when serving TLS).
    pub(crate) fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/bench", self.addr)
    }

    /// Responses sent so far, warm-up included (to divide a profile's totals by).
    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The accept task owns the connection tasks' JoinSet: aborting it ends them all.
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    builder: auto::Builder<TokioExecutor>,
    acceptor: Option<TlsAcceptor>,
    latency: Duration,
    served: Arc<AtomicU64>,
) {
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: back off a little instead of spinning.
                eprintln!("server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Reap finished connections so the set does not grow over a long cell.
        while connections.try_join_next().is_some() {}
        let _ = tcp.set_nodelay(true);
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let served = served.clone();
        connections.spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                served.fetch_add(1, Ordering::Relaxed);
                respond(req, latency)
            });
            // Errors are the clients hanging up at the end of a cell: nothing to report.
            match acceptor {
                None => {
                    let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                }
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
            }
        });
    }
}

async fn respond(
    req: Request<Incoming>,
    latency: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    drop(req);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Ok(Response::new(Full::new(Bytes::from_static(&BODY))))
}

/// A throwaway CA and a leaf for `127.0.0.1` and `localhost` it signs (webpki refuses a
/// self-signed leaf as its own anchor), with the server config and what clients must trust.
pub(crate) struct Identity {
    server: Arc<rustls::ServerConfig>,
    /// The CA, PEM-encoded.
    pub(crate) ca_pem: String,
    /// The CA, DER-encoded.
    pub(crate) ca_der: CertificateDer<'static>,
}

impl Identity {
    pub(crate) fn generate() -> Result<Identity, Box<dyn std::error::Error + Send + Sync>> {
        let mut ca_params = CertificateParams::new(Vec::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "flext bench CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate()?;
        let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut server = rustls::ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf_cert.der().clone()], key)?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Identity {
            server: Arc::new(server),
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
        })
    }

    /// A client config (ring) trusting only this CA, without ALPN (each client sets its own).
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        Ok(
            rustls::ClientConfig::builder_with_provider(crate::provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}
