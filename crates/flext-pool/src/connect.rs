//! [`Connector`]: TCP (hyper-util's `HttpConnector`), an optional proxy tunnel, and TLS
//! (hyper-rustls on ring) with ALPN.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use flext_core::BoxError;
use http::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::config::ConfigError;
#[cfg(feature = "hickory-dns")]
use crate::dns::HickoryResolver;
use crate::dns::Tcp;
use crate::proxy::{Proxy, ProxyConnector};
use crate::tls::TlsConfig;

/// The IO a [`Connector`] yields: TCP, or TLS over TCP.
pub type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

type Connecting = Pin<Box<dyn Future<Output = Result<Io, BoxError>> + Send>>;

/// The connector behind [`Pool::http`](crate::Pool::http) and
/// [`Pool::https`](crate::Pool::https): a `Service<Uri>` over hyper-util's `HttpConnector`
/// (system resolver, or hickory-dns with the `hickory-dns` feature; happy eyeballs), an
/// optional proxy tunnel, and rustls.
///
/// Defaults: TCP connect timeout 10 s, `TCP_NODELAY` on, TCP keep-alive every 60 s, happy
/// eyeballs fallback after 300 ms; ALPN offers `h2` and `http/1.1`.
///
/// ```
/// use std::time::Duration;
/// use flext_pool::{Connector, TlsConfig};
///
/// let connector = Connector::builder()
///     .connect_timeout(Duration::from_secs(3))
///     .tls(TlsConfig::new())
///     .build()?;
/// # let _ = connector;
/// # Ok::<(), flext_pool::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Connector {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Plain(ProxyConnector),
    Tls(HttpsConnector<ProxyConnector>),
}

impl Connector {
    /// Plain TCP with the defaults; `https` URIs fail to connect.
    pub fn http() -> Connector {
        Connector {
            inner: Inner::Plain(ProxyConnector::new(tcp(&ConnectorBuilder::default()), None)),
        }
    }

    /// TCP and TLS with the defaults and `tls`'s roots.
    ///
    /// # Errors
    ///
    /// As [`ConnectorBuilder::build`].
    pub fn https(tls: TlsConfig) -> Result<Connector, ConfigError> {
        Connector::builder().tls(tls).build()
    }

    /// A builder with the defaults.
    pub fn builder() -> ConnectorBuilder {
        ConnectorBuilder::default()
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = matches!(self.inner, Inner::Tls(_));
        f.debug_struct("Connector").field("tls", &tls).finish()
    }
}

impl Service<Uri> for Connector {
    type Response = Io;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.inner {
            Inner::Plain(c) => c.poll_ready(cx),
            Inner::Tls(c) => c.poll_ready(cx),
        }
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        match &mut self.inner {
            Inner::Tls(c) => c.call(dst),
            Inner::Plain(c) => {
                if dst.scheme() == Some(&http::uri::Scheme::HTTPS) {
                    return Box::pin(async {
                        Err(BoxError::from(
                            "an https uri needs a connector with tls (Pool::https)",
                        ))
                    });
                }
                let connecting = c.call(dst);
                Box::pin(async move { connecting.await.map(MaybeHttpsStream::Http) })
            }
        }
    }
}

/// Builds a [`Connector`]; start with [`Connector::builder`].
#[derive(Debug, Clone)]
pub struct ConnectorBuilder {
    connect_timeout: Option<Duration>,
    nodelay: bool,
    keepalive: Option<Duration>,
    happy_eyeballs: Option<Duration>,
    tls: Option<TlsConfig>,
    proxy: Option<Proxy>,
    http1_only: bool,
    #[cfg(feature = "hickory-dns")]
    resolver: Option<HickoryResolver>,
}

impl Default for ConnectorBuilder {
    fn default() -> ConnectorBuilder {
        ConnectorBuilder {
            connect_timeout: Some(Duration::from_secs(10)),
            nodelay: true,
            keepalive: Some(Duration::from_secs(60)),
            happy_eyeballs: Some(Duration::from_millis(300)),
            tls: None,
            proxy: None,
            http1_only: false,
            #[cfg(feature = "hickory-dns")]
            resolver: None,
        }
    }
}

impl ConnectorBuilder {
    /// Longest a TCP connect may take (per address tried). Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// `TCP_NODELAY`. Default on: requests are written whole, Nagle only adds latency.
    pub fn tcp_nodelay(mut self, enabled: bool) -> Self {
        self.nodelay = enabled;
        self
    }

    /// TCP keep-alive probes after this much silence; `None` disables them. Default 60 s.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle;
        self
    }

    /// How long the first address family gets before the other is tried too (RFC 8305);
    /// `None` tries addresses one after the other. Default 300 ms.
    pub fn happy_eyeballs_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.happy_eyeballs = timeout;
        self
    }

    /// Enables `https` with these roots. Without it the connector speaks plain TCP only.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Tunnels connections through a proxy.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Offers only `http/1.1` in ALPN (use with [`Config`](crate::Config)'s `http1_only`).
    pub fn http1_only(mut self, enabled: bool) -> Self {
        self.http1_only = enabled;
        self
    }

    /// Resolves names with `resolver` (hickory-dns, cached) instead of the system's
    /// `getaddrinfo`. Behind a proxy, `resolver` resolves the proxy's own name; the
    /// origin's is resolved by the proxy (`CONNECT`, `socks5h`), or for `socks5` by
    /// hyper-util's SOCKS connector with the system resolver.
    #[cfg(feature = "hickory-dns")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hickory-dns")))]
    pub fn resolver(mut self, resolver: HickoryResolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Builds the connector.
    ///
    /// # Errors
    ///
    /// TLS settings that cannot be used: no root certificate at all, or none of the system
    /// roots could be loaded.
    pub fn build(self) -> Result<Connector, ConfigError> {
        let tcp = ProxyConnector::new(tcp(&self), self.proxy.as_ref());
        let Some(tls) = &self.tls else {
            return Ok(Connector {
                inner: Inner::Plain(tcp),
            });
        };
        let alpn: &[&[u8]] = if self.http1_only {
            &[b"http/1.1"]
        } else {
            &[b"h2", b"http/1.1"]
        };
        let config = tls.build(alpn)?;
        // hyper-rustls' builder insists on writing ALPN itself; this keeps ours.
        let https = HttpsConnector::from((tcp, config));
        Ok(Connector {
            inner: Inner::Tls(https),
        })
    }
}

fn tcp(b: &ConnectorBuilder) -> Tcp {
    #[cfg(feature = "hickory-dns")]
    if let Some(resolver) = &b.resolver {
        return Tcp::Hickory(configure(
            HttpConnector::new_with_resolver(resolver.clone()),
            b,
        ));
    }
    Tcp::System(configure(HttpConnector::new(), b))
}

fn configure<R>(mut http: HttpConnector<R>, b: &ConnectorBuilder) -> HttpConnector<R> {
    http.enforce_http(false);
    http.set_connect_timeout(b.connect_timeout);
    http.set_nodelay(b.nodelay);
    http.set_keepalive(b.keepalive);
    http.set_happy_eyeballs_timeout(b.happy_eyeballs);
    http
}

impl<B> crate::Pool<Connector, B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A pool for plain `http` origins with the default [`Config`](crate::Config).
    pub fn http() -> crate::Pool<Connector, B> {
        crate::Pool::http_with(crate::Config::default())
    }

    /// A pool for plain `http` origins with `config`.
    pub fn http_with(config: crate::Config) -> crate::Pool<Connector, B> {
        let connector = Connector {
            inner: Inner::Plain(ProxyConnector::new(
                tcp(&Connector::builder().connect_timeout(config.connect_timeout)),
                None,
            )),
        };
        crate::Pool::new(connector, config)
    }

    /// A pool for `https` (and `http`) origins with the default [`Config`](crate::Config)
    /// and `tls`'s roots; ALPN offers `h2` and `http/1.1`.
    ///
    /// # Errors
    ///
    /// As [`ConnectorBuilder::build`].
    pub fn https(tls: TlsConfig) -> Result<crate::Pool<Connector, B>, ConfigError> {
        crate::Pool::https_with(crate::Config::default(), tls)
    }

    /// A pool for `https` (and `http`) origins with `config`; ALPN offers `http/1.1` alone
    /// when `config` is HTTP/1.1-only.
    ///
    /// # Errors
    ///
    /// As [`ConnectorBuilder::build`].
    pub fn https_with(
        config: crate::Config,
        tls: TlsConfig,
    ) -> Result<crate::Pool<Connector, B>, ConfigError> {
        let connector = Connector::builder()
            .connect_timeout(config.connect_timeout)
            .http1_only(config.http1_only)
            .tls(tls)
            .build()?;
        Ok(crate::Pool::new(connector, config))
    }
}
