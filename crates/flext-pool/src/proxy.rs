//! [`Proxy`]: HTTP CONNECT and SOCKS5 tunnels through hyper-util's proxy connectors.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use flext_core::BoxError;
use http::Uri;
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::config::ConfigError;
use crate::dns::Tcp;

/// Where connections go through a proxy, and which proxy.
///
/// Every proxied connection is a tunnel: HTTP `CONNECT` for an `http://` proxy, SOCKS5 for
/// `socks5://` (names resolved here) or `socks5h://` (names resolved by the proxy). TLS to
/// the origin runs inside the tunnel, end to end. Credentials in the proxy URI
/// (`http://user:pass@proxy:3128`) are sent as `Proxy-Authorization: Basic` or SOCKS5
/// username/password. A proxy reached over TLS (`https://` proxy URI) is not supported.
///
/// ```
/// use flext_pool::Proxy;
///
/// let proxy = Proxy::all("http://proxy.internal:3128")?.no_proxy("localhost, .internal");
/// assert!(Proxy::all("ftp://proxy").is_err());
/// # let _ = proxy;
/// # Ok::<(), flext_pool::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Proxy {
    source: Source,
}

#[derive(Clone)]
enum Source {
    Explicit { uri: String, no: String },
    Env,
}

impl Proxy {
    /// Sends every connection through the proxy at `uri`.
    ///
    /// # Errors
    ///
    /// A URI that does not parse, has no host, or a scheme other than `http`, `socks5` and
    /// `socks5h`.
    pub fn all(uri: &str) -> Result<Proxy, ConfigError> {
        let parsed: Uri = uri
            .parse()
            .map_err(|_| ConfigError::new("proxy", "not a valid uri"))?;
        match parsed.scheme_str() {
            Some("http" | "socks5" | "socks5h") => {}
            _ => {
                return Err(ConfigError::new(
                    "proxy",
                    "the scheme must be http, socks5 or socks5h",
                ));
            }
        }
        if parsed.host().is_none_or(str::is_empty) {
            return Err(ConfigError::new("proxy", "the uri has no host"));
        }
        Ok(Proxy {
            source: Source::Explicit {
                uri: uri.to_owned(),
                no: String::new(),
            },
        })
    }

    /// Reads the proxy from the environment when the connector is built, as curl does:
    /// `HTTPS_PROXY` for https origins, `HTTP_PROXY` for http ones, `ALL_PROXY` for both,
    /// and `NO_PROXY` for the hosts that go direct (lower-case names work too). Nothing is
    /// proxied when they are unset.
    pub fn from_env() -> Proxy {
        Proxy {
            source: Source::Env,
        }
    }

    /// Hosts that bypass the proxy, in `NO_PROXY` syntax: comma-separated names (a name
    /// also matches its subdomains; a leading dot is allowed), IP addresses, CIDR ranges,
    /// or `*` for all. Ignored for [`Proxy::from_env`], which reads `NO_PROXY`.
    pub fn no_proxy(mut self, hosts: &str) -> Proxy {
        if let Source::Explicit { no, .. } = &mut self.source {
            *no = hosts.to_owned();
        }
        self
    }

    pub(crate) fn matcher(&self) -> Matcher {
        match &self.source {
            Source::Explicit { uri, no } => Matcher::builder().all(uri).no(no).build(),
            Source::Env => Matcher::from_env(),
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URI may hold credentials: show only where the setting comes from.
        let source = match self.source {
            Source::Explicit { .. } => "explicit",
            Source::Env => "environment",
        };
        f.debug_struct("Proxy").field("source", &source).finish()
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

/// TCP, directly or through a tunnel, as the proxy settings say for each destination.
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    inner: Tcp,
    matcher: Option<Arc<Matcher>>,
}

impl ProxyConnector {
    pub(crate) fn new(inner: Tcp, proxy: Option<&Proxy>) -> ProxyConnector {
        ProxyConnector {
            inner,
            matcher: proxy.map(|p| Arc::new(p.matcher())),
        }
    }
}

impl fmt::Debug for ProxyConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConnector")
            .field("proxied", &self.matcher.is_some())
            .finish()
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let intercept = self.matcher.as_ref().and_then(|m| m.intercept(&dst));
        let mut inner = self.inner.clone();
        let Some(intercept) = intercept else {
            return Box::pin(async move { inner.call(dst).await.map_err(Into::into) });
        };
        let proxy = intercept.uri().clone();
        match proxy.scheme_str() {
            Some("http") => {
                let mut tunnel = Tunnel::new(proxy, inner);
                if let Some(auth) = intercept.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move { tunnel.call(dst).await.map_err(Into::into) })
            }
            Some(scheme @ ("socks5" | "socks5h")) => {
                let mut socks = SocksV5::new(proxy.clone(), inner).local_dns(scheme == "socks5");
                if let Some((user, pass)) = intercept.raw_auth() {
                    socks = socks.with_auth(user.to_owned(), pass.to_owned());
                }
                Box::pin(async move { socks.call(dst).await.map_err(Into::into) })
            }
            _ => Box::pin(async move {
                Err(BoxError::from(
                    "unsupported proxy scheme (http, socks5 and socks5h are supported)",
                ))
            }),
        }
    }
}
