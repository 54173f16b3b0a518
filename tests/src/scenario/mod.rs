//! The six scenarios of issue 11. Each takes its size (a number of requests or a duration)
//! in a `*Params` struct whose `Default` is the small size the tests use, and returns a
//! `*Report` of figures with a `figures()` list for [`crate::report::table`].
//!
//! Every scenario talks HTTP over real sockets to a [`flext_testkit::TestServer`] on
//! 127.0.0.1, through a [`flext_api::Client`] with the default stack; where a scenario
//! changes a setting (a protocol, a short timeout, an injected breaker clock), its params
//! say so.

use flext_api::ClientBuilder;
use flext_testkit::TestServer;

pub mod goaway;
pub mod memory;
pub mod recovery;
pub mod slow;
pub mod soak;
pub mod storm;

/// The HTTP version a client speaks to the test server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1, what the default client speaks on plain `http`.
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    H2c,
}

impl Protocol {
    /// `HTTP/1.1` or `h2c`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::H2c => "h2c",
        }
    }

    /// A default client builder for `server`, speaking this protocol.
    pub fn client(self, server: &TestServer) -> ClientBuilder {
        let builder = flext_api::Client::builder().base_url(&server.url("/"));
        match self {
            Protocol::Http1 => builder,
            Protocol::H2c => builder.http2_prior_knowledge(),
        }
    }
}

/// SplitMix64: a seeded, well-mixed number for `(seed, n)`, so that request `n`'s fault does
/// not depend on which worker sends it or when.
pub(crate) fn mix(seed: u64, n: u64) -> u64 {
    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    splitmix(seed ^ splitmix(n))
}

/// Calls refused by the client's breakers so far, over every origin.
pub(crate) fn breaker_rejections(client: &flext_api::Client) -> u64 {
    client.stack().breakers().map_or(0, |handle| {
        handle.snapshots().iter().map(|(_, s)| s.rejected).sum()
    })
}

/// Retries the client's budget refused so far.
pub(crate) fn budget_exhausted(client: &flext_api::Client) -> u64 {
    client
        .stack()
        .retry()
        .map_or(0, |r| r.metrics().budget_exhausted)
}

/// `a / b` for figures, 0 when `b` is 0.
pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}
