//! Per-connection state shared between a connection task and the requests it serves.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a request asks of its connection, and what the connection task watches.
#[derive(Debug)]
pub(crate) struct ConnCtl {
    id: u64,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    close: AtomicBool,
    abort: AtomicBool,
    /// Bytes to write on the raw socket instead of a response, then close.
    raw: Mutex<Option<Bytes>>,
    notify: Notify,
    idle: Notify,
}

impl ConnCtl {
    pub(crate) fn new(id: u64) -> Self {
        ConnCtl {
            id,
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            close: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            raw: Mutex::new(None),
            notify: Notify::new(),
            idle: Notify::new(),
        }
    }

    /// The server-assigned connection number, 1 for the first connection.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Counts a request on this connection and marks it in flight until the guard drops.
    ///
    /// Returns the guard and the request's 1-based position on the connection.
    pub(crate) fn begin(self: &Arc<Self>) -> (InFlight, u64) {
        self.in_flight.fetch_add(1, Relaxed);
        let n = self.requests.fetch_add(1, Relaxed) + 1;
        (InFlight(Arc::clone(self)), n)
    }

    /// Asks for a graceful shutdown: GOAWAY on HTTP/2, close when idle on HTTP/1.1.
    pub(crate) fn close(&self) {
        self.close.store(true, Relaxed);
        self.notify.notify_one();
    }

    /// Asks for the connection to be dropped at once, without a response.
    pub(crate) fn abort(&self) {
        self.abort.store(true, Relaxed);
        self.notify.notify_one();
    }

    /// Asks the connection task to stop serving HTTP, write `bytes` on the socket as they
    /// are, and close. HTTP/1.1 only.
    pub(crate) fn raw(&self, bytes: Bytes) {
        *crate::lock(&self.raw) = Some(bytes);
        self.notify.notify_one();
    }

    /// Waits for [`close`](Self::close), [`abort`](Self::abort) or [`raw`](Self::raw).
    pub(crate) async fn command(&self) -> Command {
        self.notify.notified().await;
        if let Some(bytes) = crate::lock(&self.raw).take() {
            Command::Raw(bytes)
        } else if self.abort.load(Relaxed) {
            Command::Abort
        } else {
            Command::Close
        }
    }

    /// Waits until the last request in flight is done.
    pub(crate) async fn became_idle(&self) {
        self.idle.notified().await;
    }

    /// When the connection will have been idle for `timeout`, or `None` while busy.
    pub(crate) fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        Some(*crate::lock(&self.idle_since) + timeout)
    }
}

/// What a request asked of its connection task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Shut down gracefully.
    Close,
    /// Drop the connection at once.
    Abort,
    /// Write these bytes on the raw socket, then close.
    Raw(Bytes),
}

/// Marks a request in flight on its connection; dropped when the response body is done.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnCtl>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // Lock first so that idle_deadline never sees zero in flight with a stale idle_since.
        let mut idle_since = crate::lock(&self.0.idle_since);
        if self.0.in_flight.fetch_sub(1, Relaxed) == 1 {
            *idle_since = Instant::now();
            self.0.idle.notify_one();
        }
    }
}
