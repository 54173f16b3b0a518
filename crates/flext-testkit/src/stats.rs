//! Counters the server keeps, and the snapshot tests assert on.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use http::Version;

/// A snapshot of what the server has seen, from [`TestServer::stats`](crate::TestServer::stats).
///
/// A request is counted when its head arrives, before any fault is applied, so a dropped or
/// reset request is counted too. [`TestServer::reset_stats`](crate::TestServer::reset_stats)
/// zeroes every counter except `connections_open`, a gauge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Requests received, all protocols.
    pub requests: u64,
    /// Requests received over HTTP/1.0 or HTTP/1.1.
    pub http1_requests: u64,
    /// Requests received over HTTP/2.
    pub http2_requests: u64,
    /// Requests received per `x-testkit-id` header value.
    pub requests_by_id: BTreeMap<String, u64>,
    /// Requests received per URI path (without the query).
    pub requests_by_path: BTreeMap<String, u64>,
    /// TCP connections accepted.
    pub connections_accepted: u64,
    /// TCP connections open now.
    pub connections_open: u64,
    /// The most TCP connections that were open at once.
    pub max_connections_open: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
}

impl Stats {
    /// Requests received with this `x-testkit-id`.
    pub fn requests_for_id(&self, id: &str) -> u64 {
        self.requests_by_id.get(id).copied().unwrap_or(0)
    }

    /// Requests received for this path.
    pub fn requests_for_path(&self, path: &str) -> u64 {
        self.requests_by_path.get(path).copied().unwrap_or(0)
    }
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    http1: AtomicU64,
    http2: AtomicU64,
    accepted: AtomicU64,
    open: AtomicU64,
    max_open: AtomicU64,
    tls_handshakes: AtomicU64,
    keyed: Mutex<Keyed>,
}

#[derive(Debug, Default)]
struct Keyed {
    by_id: HashMap<String, u64>,
    by_path: HashMap<String, u64>,
}

fn bump(map: &mut HashMap<String, u64>, key: &str) {
    // Look up first so that a known key does not allocate.
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

impl Counters {
    pub(crate) fn request(&self, version: Version, id: Option<&str>, path: &str) {
        self.requests.fetch_add(1, Relaxed);
        if version == Version::HTTP_2 {
            self.http2.fetch_add(1, Relaxed);
        } else {
            self.http1.fetch_add(1, Relaxed);
        }
        let mut keyed = crate::lock(&self.keyed);
        if let Some(id) = id {
            bump(&mut keyed.by_id, id);
        }
        bump(&mut keyed.by_path, path);
    }

    /// Counts an accepted connection; it stays open until the guard is dropped.
    pub(crate) fn connection(self: &Arc<Self>) -> OpenConnection {
        self.accepted.fetch_add(1, Relaxed);
        let open = self.open.fetch_add(1, Relaxed) + 1;
        self.max_open.fetch_max(open, Relaxed);
        OpenConnection(Arc::clone(self))
    }

    pub(crate) fn tls_handshake(&self) {
        self.tls_handshakes.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let keyed = crate::lock(&self.keyed);
        Stats {
            requests: self.requests.load(Relaxed),
            http1_requests: self.http1.load(Relaxed),
            http2_requests: self.http2.load(Relaxed),
            requests_by_id: keyed.by_id.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            requests_by_path: keyed.by_path.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            connections_accepted: self.accepted.load(Relaxed),
            connections_open: self.open.load(Relaxed),
            max_connections_open: self.max_open.load(Relaxed),
            tls_handshakes: self.tls_handshakes.load(Relaxed),
        }
    }

    pub(crate) fn reset(&self) {
        let mut keyed = crate::lock(&self.keyed);
        keyed.by_id.clear();
        keyed.by_path.clear();
        for counter in [
            &self.requests,
            &self.http1,
            &self.http2,
            &self.accepted,
            &self.tls_handshakes,
        ] {
            counter.store(0, Relaxed);
        }
        self.max_open.store(self.open.load(Relaxed), Relaxed);
    }
}

/// Keeps a connection counted as open; the connection task owns it.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<Counters>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}
