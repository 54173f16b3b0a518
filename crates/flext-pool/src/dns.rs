//! Name resolution: the TCP connector over the system resolver (hyper-util's `GaiResolver`)
//! or, with the `hickory-dns` feature, over [`HickoryResolver`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

#[cfg(feature = "hickory-dns")]
pub use self::hickory::{HickoryResolver, HickoryResolverBuilder};

/// hyper-util's TCP connector over one resolver or the other. Without the `hickory-dns`
/// feature this is a one-variant enum, and the matches below compile to nothing.
#[derive(Clone)]
pub(crate) enum Tcp {
    /// The system resolver: `getaddrinfo` on tokio's blocking pool.
    System(HttpConnector),
    /// hickory-dns, with its cache.
    #[cfg(feature = "hickory-dns")]
    Hickory(HttpConnector<HickoryResolver>),
}

type SystemConnecting = <HttpConnector as Service<Uri>>::Future;
type Output = <SystemConnecting as Future>::Output;
type ConnectError = <HttpConnector as Service<Uri>>::Error;

/// The future of [`Tcp::call`]: hyper-util's own connect future, unboxed.
pub(crate) enum TcpConnecting {
    System(SystemConnecting),
    #[cfg(feature = "hickory-dns")]
    Hickory(<HttpConnector<HickoryResolver> as Service<Uri>>::Future),
}

impl Future for TcpConnecting {
    type Output = Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Output> {
        // hyper-util's connect futures are boxed inside, hence `Unpin`.
        match self.get_mut() {
            TcpConnecting::System(f) => Pin::new(f).poll(cx),
            #[cfg(feature = "hickory-dns")]
            TcpConnecting::Hickory(f) => Pin::new(f).poll(cx),
        }
    }
}

impl Service<Uri> for Tcp {
    type Response = <Output as IntoIterator>::Item;
    type Error = ConnectError;
    type Future = TcpConnecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        match self {
            Tcp::System(c) => c.poll_ready(cx),
            #[cfg(feature = "hickory-dns")]
            Tcp::Hickory(c) => c.poll_ready(cx),
        }
    }

    fn call(&mut self, dst: Uri) -> TcpConnecting {
        match self {
            Tcp::System(c) => TcpConnecting::System(c.call(dst)),
            #[cfg(feature = "hickory-dns")]
            Tcp::Hickory(c) => TcpConnecting::Hickory(c.call(dst)),
        }
    }
}

#[cfg(feature = "hickory-dns")]
mod hickory {
    use std::fmt;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use flext_core::BoxError;
    use hickory_resolver::config::LookupIpStrategy;
    use hickory_resolver::name_server::TokioConnectionProvider;
    use hickory_resolver::{ResolverBuilder, TokioResolver};
    use hyper_util::client::legacy::connect::dns::Name;
    use tower_service::Service;

    use crate::config::ConfigError;

    /// A caching DNS resolver (hickory-dns) for [`ConnectorBuilder::resolver`], in place of
    /// the system's `getaddrinfo`.
    ///
    /// It reads the system configuration, `/etc/resolv.conf` (the registry on Windows) and
    /// the hosts file, then asks the name servers itself over UDP (TCP when an answer is
    /// truncated), without a thread per lookup. Answers are cached by TTL, negative ones
    /// too; clones share one cache, so share one resolver between connectors. `localhost`
    /// names resolve to the loopback addresses and `.invalid` ones fail at once, without a
    /// query (RFC 6761). A name that cannot be resolved fails the connect with a connect
    /// error, never sent.
    ///
    /// Both address families are looked up together, so that happy eyeballs has both to
    /// try.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flext_pool::{Config, Connector, HickoryResolver, Pool};
    ///
    /// # fn main() -> Result<(), flext_pool::ConfigError> {
    /// let resolver = HickoryResolver::builder()
    ///     .timeout(Duration::from_secs(2))
    ///     .attempts(1)
    ///     .build()?;
    /// let connector = Connector::builder().resolver(resolver).build()?;
    /// let pool = Pool::<_, http_body_util::Empty<bytes::Bytes>>::new(connector, Config::default());
    /// # let _ = pool;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`ConnectorBuilder::resolver`]: crate::ConnectorBuilder::resolver
    #[cfg_attr(docsrs, doc(cfg(feature = "hickory-dns")))]
    #[derive(Clone)]
    pub struct HickoryResolver {
        inner: Arc<TokioResolver>,
    }

    impl HickoryResolver {
        /// A resolver with the system configuration as it is: name servers, search domains,
        /// `timeout` and `attempts` from `/etc/resolv.conf` (hickory's defaults, 5 s and 2
        /// retries, where it says nothing), and a cache of 32 records.
        ///
        /// # Errors
        ///
        /// The system configuration cannot be read or names no name server.
        pub fn from_system_conf() -> Result<HickoryResolver, ConfigError> {
            HickoryResolver::builder().build()
        }

        /// A builder over the system configuration, to change timeouts and the cache size.
        pub fn builder() -> HickoryResolverBuilder {
            HickoryResolverBuilder {
                timeout: None,
                attempts: None,
                cache_size: None,
            }
        }

        /// Drops every cached answer.
        pub fn clear_cache(&self) {
            self.inner.clear_cache();
        }

        fn from_builder(mut builder: ResolverBuilder<TokioConnectionProvider>) -> HickoryResolver {
            // hyper-util's happy eyeballs wants both families; getaddrinfo gives both too.
            builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
            HickoryResolver {
                inner: Arc::new(builder.build()),
            }
        }

        /// A resolver over explicit name servers, for tests.
        #[cfg(test)]
        pub(crate) fn with_config(
            config: hickory_resolver::config::ResolverConfig,
            options: hickory_resolver::config::ResolverOpts,
        ) -> Self {
            let builder =
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                    .with_options(options);
            HickoryResolver::from_builder(builder)
        }
    }

    impl fmt::Debug for HickoryResolver {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let opts = self.inner.options();
            f.debug_struct("HickoryResolver")
                .field("name_servers", &self.inner.config().name_servers().len())
                .field("timeout", &opts.timeout)
                .field("attempts", &opts.attempts)
                .field("cache_size", &opts.cache_size)
                .finish()
        }
    }

    /// The future of a [`HickoryResolver`] lookup.
    type Resolving = Pin<Box<dyn Future<Output = Result<Addrs, BoxError>> + Send>>;

    /// The addresses a [`HickoryResolver`] found, port 0 (the connector sets the port).
    type Addrs = std::vec::IntoIter<SocketAddr>;

    /// What hyper-util's `HttpConnector::new_with_resolver` takes.
    impl Service<Name> for HickoryResolver {
        type Response = Addrs;
        type Error = BoxError;
        type Future = Resolving;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, name: Name) -> Resolving {
            let resolver = self.inner.clone();
            Box::pin(async move {
                let lookup = resolver.lookup_ip(name.as_str()).await?;
                let addrs: Vec<SocketAddr> =
                    lookup.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
                Ok(addrs.into_iter())
            })
        }
    }

    /// Builds a [`HickoryResolver`] over the system configuration; start with
    /// [`HickoryResolver::builder`]. What is not set here comes from `/etc/resolv.conf`.
    #[cfg_attr(docsrs, doc(cfg(feature = "hickory-dns")))]
    #[derive(Debug, Clone)]
    pub struct HickoryResolverBuilder {
        timeout: Option<Duration>,
        attempts: Option<usize>,
        cache_size: Option<usize>,
    }

    impl HickoryResolverBuilder {
        /// How long one query waits for a name server's answer. Default: resolv.conf's
        /// `options timeout`, else 5 s.
        pub fn timeout(mut self, timeout: Duration) -> Self {
            self.timeout = Some(timeout);
            self
        }

        /// How many times a failed query is retried. Default: resolv.conf's
        /// `options attempts`, else 2.
        pub fn attempts(mut self, retries: usize) -> Self {
            self.attempts = Some(retries);
            self
        }

        /// Most records cached (answers and failures, each kept for its TTL). Default 32.
        pub fn cache_size(mut self, records: usize) -> Self {
            self.cache_size = Some(records);
            self
        }

        /// Reads the system configuration and builds the resolver. No query is sent and no
        /// runtime is needed until the first lookup.
        ///
        /// # Errors
        ///
        /// A zero timeout, or a system configuration that cannot be read or names no name
        /// server.
        pub fn build(self) -> Result<HickoryResolver, ConfigError> {
            if self.timeout.is_some_and(|t| t.is_zero()) {
                return Err(ConfigError::new("dns_timeout", "must be above zero"));
            }
            let mut builder = TokioResolver::builder_tokio()
                .map_err(|e| ConfigError::new("resolver", format!("system configuration: {e}")))?;
            let opts = builder.options_mut();
            if let Some(timeout) = self.timeout {
                opts.timeout = timeout;
            }
            if let Some(attempts) = self.attempts {
                opts.attempts = attempts;
            }
            if let Some(size) = self.cache_size {
                opts.cache_size = size;
            }
            Ok(HickoryResolver::from_builder(builder))
        }
    }
}

#[cfg(all(test, feature = "hickory-dns"))]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::str::FromStr;
    use std::time::{Duration, Instant};

    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
    use hyper_util::client::legacy::connect::dns::Name;
    use tower::ServiceExt;

    use super::HickoryResolver;

    #[tokio::test]
    async fn resolves_localhost_without_a_query() {
        let resolver = HickoryResolver::from_system_conf().unwrap();
        let addrs: Vec<SocketAddr> = resolver
            .oneshot(Name::from_str("localhost").unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(addrs.iter().all(|a| a.port() == 0));
    }

    #[test]
    fn builds_outside_a_runtime_and_rejects_a_zero_timeout() {
        let resolver = HickoryResolver::builder()
            .timeout(Duration::from_millis(300))
            .attempts(0)
            .cache_size(64)
            .build()
            .unwrap();
        let debug = format!("{resolver:?}");
        assert!(debug.contains("300ms") && debug.contains("64"), "{debug}");
        let e = HickoryResolver::builder()
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(e.setting(), "dns_timeout");
    }

    /// A name server that never answers (a bound loopback UDP socket nobody reads) makes a
    /// lookup fail after the resolver's timeout, not hang.
    #[tokio::test]
    async fn a_silent_name_server_fails_within_the_timeout() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let servers =
            NameServerConfigGroup::from_ips_clear(&[IpAddr::V4(Ipv4Addr::LOCALHOST)], port, true);
        let config = ResolverConfig::from_parts(None, vec![], servers);
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(200);
        opts.attempts = 0;
        opts.try_tcp_on_error = false;
        let resolver = HickoryResolver::with_config(config, opts);
        let start = Instant::now();
        let result = resolver
            .oneshot(Name::from_str("no-such-host.test").unwrap())
            .await;
        assert!(result.is_err());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        drop(silent);
    }
}
