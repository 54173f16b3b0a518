//! Driving load: how long a run lasts, concurrent workers, and what a call ended with.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flext_api::{Error, Response};

/// How long a load run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// This many requests in all.
    Requests(u64),
    /// Start requests for this long (requests in flight at the end are finished).
    For(Duration),
}

/// Hands out request numbers to concurrent workers until a [`Limit`] is reached.
#[derive(Debug)]
pub struct Limiter {
    next: AtomicU64,
    max: u64,
    deadline: Option<Instant>,
}

impl Limiter {
    /// A limiter starting now.
    pub fn new(limit: Limit) -> Limiter {
        let (max, deadline) = match limit {
            Limit::Requests(n) => (n, None),
            Limit::For(d) => (u64::MAX, Some(Instant::now() + d)),
        };
        Limiter {
            next: AtomicU64::new(0),
            max,
            deadline,
        }
    }

    /// The next request's number, or `None` once the limit is reached.
    pub fn take(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.max).then_some(n)
    }

    /// Requests handed out so far.
    pub fn taken(&self) -> u64 {
        self.next.load(Ordering::Relaxed).min(self.max)
    }
}

/// Runs `concurrency` workers, `worker(0)` to `worker(concurrency - 1)`, each on its own
/// task, and returns their results in order.
///
/// # Panics
///
/// If a worker panics (the panic is passed on, so a test sees it).
pub async fn workers<F, Fut, T>(concurrency: usize, worker: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..concurrency).map(|w| tokio::spawn(worker(w))).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(t) => out.push(t),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

/// What one call ended with, once its body was read to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status, its body read.
    Status(u16),
    /// An error, by [`Error::kind_label`] (`timeout`, `reset`, `circuit_open`, ...).
    Error(&'static str),
}

impl Outcome {
    /// Reads the body of a successful call to its end (so that an HTTP/1.1 connection goes
    /// back to the pool); returns the outcome and the attempts retry made.
    pub async fn of(result: Result<Response, Error>) -> (Outcome, u32) {
        match result {
            Ok(res) => {
                let status = res.status().as_u16();
                let attempts = res.attempts();
                match res.bytes().await {
                    Ok(_) => (Outcome::Status(status), attempts),
                    Err(e) => (Outcome::Error(e.kind_label()), attempts),
                }
            }
            Err(e) => {
                let attempts = e.retry_info().map_or(1, |i| i.attempts());
                (Outcome::Error(e.kind_label()), attempts)
            }
        }
    }

    /// Whether it is a `200`.
    pub fn is_ok(&self) -> bool {
        *self == Outcome::Status(200)
    }

    /// A short label: the status (`503`) or the error kind (`reset`).
    pub fn label(&self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Error(kind) => (*kind).to_owned(),
        }
    }

    /// Whether the caller got something it can act on: a status, or an error of a named
    /// kind (anything but `other`).
    pub fn is_typed(&self) -> bool {
        !matches!(self, Outcome::Error("other"))
    }
}

/// Waits until `ready()` holds, checking after each yield and then every millisecond, for at
/// most `max`; returns how long it took, or `None` if it never held. For state that settles
/// asynchronously (a connection task ending after its socket closed), so that a test asserts
/// the end state rather than sleeping for a guessed time.
pub async fn settle(max: Duration, mut ready: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    for _ in 0..64 {
        if ready() {
            return Some(start.elapsed());
        }
        tokio::task::yield_now().await;
    }
    while start.elapsed() < max {
        if ready() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    ready().then(|| start.elapsed())
}
