//! The server builder and its validated configuration.

use std::io;
use std::time::Duration;

use crate::TestServer;

/// Which HTTP versions a connection may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Protocol {
    Http1,
    Http2,
    /// Detect the HTTP/2 preface, else HTTP/1.1.
    #[default]
    Auto,
}

/// Seeded random faults for requests that carry no script.
///
/// Each such request draws two numbers from a generator seeded with `seed`, one per server:
/// the first picks `drop` with probability `p_drop`, else `reset` with `p_reset`, else a 503
/// with `p_503`, else the normal response; the second adds `delay` with probability `p_delay`.
/// Two servers with the same seed and the same sequence of requests see the same faults.
///
/// ```
/// use std::time::Duration;
/// use flext_testkit::RandomFaults;
///
/// let faults = RandomFaults { seed: 7, p_503: 0.2, p_delay: 0.1, delay: Duration::from_millis(50), ..Default::default() };
/// # let _ = faults;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RandomFaults {
    /// Seed of the generator; the same seed gives the same sequence of faults.
    pub seed: u64,
    /// Probability of a `503 Service Unavailable`.
    pub p_503: f64,
    /// Probability of a stream reset (HTTP/2) or a dropped connection (HTTP/1.1).
    pub p_reset: f64,
    /// Probability of closing the connection without a response.
    pub p_drop: f64,
    /// Probability of waiting `delay` before the response head.
    pub p_delay: f64,
    /// The delay applied with probability `p_delay`.
    pub delay: Duration,
}

impl RandomFaults {
    fn validate(&self) -> io::Result<()> {
        let probabilities = [
            ("p_503", self.p_503),
            ("p_reset", self.p_reset),
            ("p_drop", self.p_drop),
            ("p_delay", self.p_delay),
        ];
        for (name, p) in probabilities {
            if !(0.0..=1.0).contains(&p) {
                return Err(invalid(format!(
                    "random faults: {name} = {p} is not in 0..=1"
                )));
            }
        }
        let sum = self.p_503 + self.p_reset + self.p_drop;
        if sum > 1.0 + 1e-9 {
            return Err(invalid(format!(
                "random faults: p_503 + p_reset + p_drop = {sum} is more than 1"
            )));
        }
        Ok(())
    }
}

/// The server configuration a [`Builder`] collects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Config {
    pub(crate) protocol: Protocol,
    pub(crate) tls: bool,
    pub(crate) alpn: Option<Vec<Vec<u8>>>,
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) keep_alive_timeout: Option<Duration>,
    pub(crate) latency: Duration,
    pub(crate) max_requests_per_connection: Option<u64>,
    pub(crate) random_faults: Option<RandomFaults>,
}

impl Config {
    /// The ALPN protocols offered: as configured, else those of the protocol.
    pub(crate) fn alpn(&self) -> Vec<Vec<u8>> {
        if let Some(alpn) = &self.alpn {
            return alpn.clone();
        }
        match self.protocol {
            Protocol::Http1 => vec![b"http/1.1".to_vec()],
            Protocol::Http2 => vec![b"h2".to_vec()],
            Protocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }

    fn validate(&self) -> io::Result<()> {
        if let Some(faults) = &self.random_faults {
            faults.validate()?;
        }
        if self.max_requests_per_connection == Some(0) {
            return Err(invalid(
                "max_requests_per_connection must be at least 1".into(),
            ));
        }
        for protocol in self.alpn.iter().flatten() {
            if protocol.is_empty() || protocol.len() > 255 {
                return Err(invalid(format!(
                    "alpn protocol names are 1 to 255 bytes, not {}",
                    protocol.len()
                )));
            }
        }
        Ok(())
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Configures and starts a [`TestServer`]; from [`TestServer::builder`].
///
/// The defaults: plain TCP, HTTP/1.1 and HTTP/2 detected per connection, no latency, no
/// limits beyond hyper's (200 concurrent HTTP/2 streams), idle connections kept open.
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct Builder {
    config: Config,
}

impl Builder {
    pub(crate) fn new() -> Self {
        Builder::default()
    }

    /// Speak only HTTP/1.1 (and 1.0).
    pub fn http1(mut self) -> Self {
        self.config.protocol = Protocol::Http1;
        self
    }

    /// Speak only HTTP/2: with prior knowledge on plain TCP (h2c), or ALPN `h2` with
    /// [`tls`](Self::tls).
    pub fn h2c(mut self) -> Self {
        self.config.protocol = Protocol::Http2;
        self
    }

    /// Speak HTTP/1.1 or HTTP/2, detecting the HTTP/2 connection preface (the default).
    pub fn auto(mut self) -> Self {
        self.config.protocol = Protocol::Auto;
        self
    }

    /// Serve TLS with a certificate for `localhost`, `127.0.0.1` and `::1`, signed by a CA
    /// made at start (see [`TestServer::ca_pem`]).
    ///
    /// ALPN offers `h2` and `http/1.1` (only what [`http1`](Self::http1) or
    /// [`h2c`](Self::h2c) allow, if set); the negotiated protocol then decides the
    /// connection's HTTP version. A client that offers no ALPN gets the builder's protocol.
    pub fn tls(mut self) -> Self {
        self.config.tls = true;
        self
    }

    /// Offer exactly these ALPN protocols, most preferred first, like `["http/1.1"]`.
    /// Implies [`tls`](Self::tls).
    pub fn alpn<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.config.tls = true;
        self.config.alpn = Some(protocols.into_iter().map(|p| p.as_ref().to_vec()).collect());
        self
    }

    /// The HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` the server announces.
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.config.max_concurrent_streams = Some(max);
        self
    }

    /// Close connections with no request in flight for this long: HTTP/1.1 connections are
    /// closed, HTTP/2 connections get a GOAWAY.
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.config.keep_alive_timeout = Some(timeout);
        self
    }

    /// Wait this long before every response head, on top of any scripted `delay`.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.config.latency = latency;
        self
    }

    /// Serve at most `n` requests per connection: the n-th HTTP/1.1 response carries
    /// `Connection: close`; the n-th HTTP/2 request starts a graceful shutdown (GOAWAY).
    ///
    /// [`start`](Self::start) fails if `n` is 0.
    pub fn max_requests_per_connection(mut self, n: u64) -> Self {
        self.config.max_requests_per_connection = Some(n);
        self
    }

    /// Inject seeded random faults into requests that carry no script.
    ///
    /// [`start`](Self::start) fails if a probability is outside `0..=1` or if
    /// `p_503 + p_reset + p_drop` exceeds 1.
    pub fn random_faults(mut self, faults: RandomFaults) -> Self {
        self.config.random_faults = Some(faults);
        self
    }

    /// Validates the configuration, binds `127.0.0.1:0` and starts serving.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] for an invalid configuration, or the error of binding
    /// the socket or of making the TLS certificates.
    pub async fn start(self) -> io::Result<TestServer> {
        self.config.validate()?;
        TestServer::start_with(self.config).await
    }
}
