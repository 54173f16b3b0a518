//! One origin's connections, waiters and limits.
//!
//! Everything that decides who gets which connection happens under one `std::sync::Mutex`
//! per origin, never held across an await: acquiring an idle HTTP/1.1 connection or an
//! HTTP/2 stream slot, queueing a waiter, handing a released connection (or a new one) to
//! the oldest waiter, and deciding how many connects to start. Connects run in their own
//! tasks and belong to the pool, not to the request that caused them, so a connect that
//! finishes serves whoever waits longest, and a cancelled request does not waste it.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use flext_core::{Deadline, Origin, Sent, TransportError};
use http::Uri;
use http::header::HeaderValue;
use http::uri::Authority;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::Config;
use crate::conn::{Conn, DEFAULT_MAX_STREAMS, H1State, Lease, Link, Proto};
use crate::error::Error;
use crate::metrics::{CloseReason, OriginMetrics, Protocol};
use crate::ready::ReadyGate;

mod upkeep;

/// Starts a connect for an origin, in a task of its own; implemented over the connector.
pub(crate) trait Dial<B>: Send + Sync {
    /// Connects, then calls [`OriginPool::on_dialed`] with the result, once.
    fn dial(&self, pool: Arc<OriginPool<B>>);

    /// At `at`, runs [`OriginPool::redispatch`] if the pool still exists; `false` without a
    /// runtime to wait on.
    fn redispatch_at(&self, pool: Weak<OriginPool<B>>, at: Instant) -> bool;
}

pub(crate) struct OriginPool<B: 'static> {
    pub(crate) origin: Origin,
    /// `scheme://host:port/`, what the connector is called with.
    pub(crate) connect_uri: Uri,
    pub(crate) authority: Authority,
    /// `Host` for HTTP/1.1 requests that have none.
    pub(crate) host_header: HeaderValue,
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: OriginMetrics,
    dialer: Arc<dyn Dial<B>>,
    gate: Arc<ReadyGate>,
    state: Mutex<State<B>>,
    /// Queued waiters; read without the lock by HTTP/2 releases.
    waiting: AtomicUsize,
    next_conn: AtomicU64,
    epoch: Instant,
    me: Weak<OriginPool<B>>,
}

struct State<B: 'static> {
    proto: Protocol,
    /// Idle HTTP/1.1 connections, most recently used last.
    idle: Vec<Idle<B>>,
    /// Open HTTP/1.1 connections, idle or not (until their driver task ends).
    h1_open: usize,
    /// Open HTTP/2 connections that may still take streams or still carry some.
    h2: Vec<Arc<Conn<B>>>,
    connecting: usize,
    waiters: VecDeque<Waiter<B>>,
    next_waiter: u64,
    /// Streams a connect in progress is expected to carry (the last peer limit seen).
    assumed_streams: usize,
    /// Connects that failed in a row (reset by one that succeeds).
    connect_failures: u32,
    /// No extra HTTP/2 connect before this instant, while an open connection can serve the
    /// waiters: a server that refuses new connections is not redialled in a tight loop.
    extra_dial_after: Option<Instant>,
    /// A timer will look at the waiters again when the backoff ends.
    redial_timer: bool,
}

/// The wait before another extra HTTP/2 connect after `failures` failed in a row: 50 ms,
/// doubling, at most 5 s.
fn extra_dial_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(7);
    Duration::from_millis(50 << doublings).min(Duration::from_secs(5))
}

struct Idle<B: 'static> {
    conn: Arc<Conn<B>>,
    since: Instant,
}

struct Waiter<B: 'static> {
    id: u64,
    tx: oneshot::Sender<Result<Lease<B>, Error>>,
}

/// How a request gives an HTTP/1.1 connection back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// The exchange completed: keep the connection if it is still good.
    Reuse,
    /// Close it.
    Close(CloseReason),
}

impl<B: 'static> OriginPool<B> {
    pub(crate) fn new(
        origin: Origin,
        config: Arc<Config>,
        dialer: Arc<dyn Dial<B>>,
        gate: Arc<ReadyGate>,
    ) -> Result<Arc<OriginPool<B>>, Error> {
        let authority: Authority = origin.authority().parse().map_err(Error::invalid_uri)?;
        let connect_uri = Uri::builder()
            .scheme(origin.scheme().as_str())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(Error::invalid_uri)?;
        let host = if origin.port() == origin.scheme().default_port() {
            HeaderValue::from_str(origin.host())
        } else {
            HeaderValue::from_str(authority.as_str())
        }
        .map_err(Error::invalid_uri)?;
        let proto = if config.http1_only {
            Protocol::Http1
        } else if origin.scheme().is_secure() {
            Protocol::Unknown
        } else if config.http2_prior_knowledge {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        let assumed = config
            .http2_max_streams_per_connection
            .map_or(DEFAULT_MAX_STREAMS, |c| c.min(DEFAULT_MAX_STREAMS));
        Ok(Arc::new_cyclic(|me| OriginPool {
            origin,
            connect_uri,
            authority,
            host_header: host,
            config,
            metrics: OriginMetrics::default(),
            dialer,
            gate,
            state: Mutex::new(State {
                proto,
                idle: Vec::new(),
                h1_open: 0,
                h2: Vec::new(),
                connecting: 0,
                waiters: VecDeque::new(),
                next_waiter: 0,
                assumed_streams: usize::try_from(assumed).unwrap_or(1),
                connect_failures: 0,
                extra_dial_after: None,
                redial_timer: false,
            }),
            waiting: AtomicUsize::new(0),
            next_conn: AtomicU64::new(1),
            epoch: Instant::now(),
            me: me.clone(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State<B>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn weak(&self) -> Weak<OriginPool<B>> {
        self.me.clone()
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// When a connection opened now stops taking requests: the lifetime less up to
    /// a tenth, at random, so that connections opened together do not retire together.
    pub(crate) fn expiry(&self, now: Instant) -> Option<Instant> {
        let lifetime = self.config.max_lifetime?;
        let cut = lifetime.mul_f64(self.config.lifetime_jitter * fastrand::f64());
        now.checked_add(lifetime.saturating_sub(cut))
    }

    /// An idle connection or a stream slot: at once when one is free, else in FIFO order
    /// once one is, within the acquire timeout (shortened by the request's deadline).
    pub(crate) async fn acquire(&self, deadline: Option<Deadline>) -> Result<Lease<B>, Error> {
        let now = Instant::now();
        let (rx, id, dials) = {
            let mut st = self.lock();
            if st.waiters.is_empty()
                && let Some(lease) = self.try_take_locked(&mut st, now)
            {
                drop(st);
                self.metrics.acquire_time.record_zero();
                return Ok(lease);
            }
            if st.waiters.len() >= self.config.max_waiters {
                drop(st);
                self.metrics
                    .acquire_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Error::queue_full(&self.origin, self.config.max_waiters));
            }
            let (tx, rx) = oneshot::channel();
            let id = st.next_waiter;
            st.next_waiter += 1;
            st.waiters.push_back(Waiter { id, tx });
            // Published before looking for capacity again, so that an HTTP/2 release that
            // does not see this waiter is one whose freed slot the scan below sees.
            self.waiting.fetch_add(1, Ordering::SeqCst);
            self.gate.enter();
            let dials = self.dispatch_locked(&mut st, now);
            (rx, id, dials)
        };
        self.start_dials(dials);

        let pool_limit = now + self.config.acquire_timeout;
        let until = deadline.map_or(pool_limit, |d| d.instant().min(pool_limit));
        // Whether the request's own deadline, not the pool's acquire timeout, ends the wait.
        let deadline_first = until < pool_limit;
        let mut guard = WaiterGuard {
            pool: self,
            id,
            armed: true,
        };
        let result = tokio::time::timeout_at(until, rx).await;
        guard.armed = false;
        match result {
            Ok(Ok(Ok(lease))) => {
                self.metrics.acquire_time.record(now.elapsed());
                Ok(lease)
            }
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) | Err(_) => {
                self.remove_waiter(id);
                self.metrics
                    .acquire_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                self.metrics.acquire_time.record(now.elapsed());
                if deadline_first {
                    Err(Error::deadline_while_acquiring(&self.origin, now.elapsed()))
                } else {
                    Err(Error::acquire_timeout(&self.origin, now.elapsed()))
                }
            }
        }
    }

    fn left_queue(&self) {
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.gate.leave();
    }

    fn remove_waiter(&self, id: u64) {
        let mut st = self.lock();
        if let Some(pos) = st.waiters.iter().position(|w| w.id == id) {
            st.waiters.remove(pos);
            self.left_queue();
        }
    }

    /// A free stream slot on the least loaded HTTP/2 connection, else the most recently
    /// used idle HTTP/1.1 connection that is still good.
    fn try_take_locked(&self, st: &mut State<B>, now: Instant) -> Option<Lease<B>> {
        if !st.h2.is_empty() {
            let cap = self.config.http2_max_streams_per_connection;
            let mut best: Option<(usize, usize)> = None;
            for (i, c) in st.h2.iter().enumerate() {
                let Some(h2) = c.h2() else { continue };
                let active = h2.active.load(Ordering::SeqCst);
                if active < c.h2_limit(cap)
                    && best.is_none_or(|(_, a)| active < a)
                    && c.h2_open_for_streams(now)
                {
                    best = Some((i, active));
                }
            }
            if let Some(conn) = best.and_then(|(i, _)| st.h2.get(i))
                && let Some(h2) = conn.h2()
            {
                h2.active.fetch_add(1, Ordering::SeqCst);
                return Some(Lease::new(conn.clone()));
            }
        }
        while let Some(idle) = st.idle.pop() {
            let conn = idle.conn;
            if conn.is_expired(now) {
                conn.close_h1(CloseReason::Lifetime);
            } else if self
                .config
                .idle_timeout
                .is_some_and(|t| now.saturating_duration_since(idle.since) >= t)
            {
                conn.close_h1(CloseReason::Idle);
            } else if conn.h1_usable() {
                return Some(Lease::new(conn));
            }
            // A closed one is being counted by its driver task as it ends.
        }
        None
    }

    /// Gives free capacity to the oldest waiters; returns how many connects to start.
    fn dispatch_locked(&self, st: &mut State<B>, now: Instant) -> usize {
        while let Some(front) = st.waiters.front() {
            if front.tx.is_closed() {
                st.waiters.pop_front();
                self.left_queue();
                continue;
            }
            let Some(lease) = self.try_take_locked(st, now) else {
                break;
            };
            let Some(waiter) = st.waiters.pop_front() else {
                self.undo_locked(st, lease, now);
                break;
            };
            self.left_queue();
            if let Err(Ok(lease)) = waiter.tx.send(Ok(lease)) {
                self.undo_locked(st, lease, now);
            }
        }
        self.connects_needed_locked(st, now)
    }

    /// Takes back a lease that could not be delivered, without re-locking.
    fn undo_locked(&self, st: &mut State<B>, lease: Lease<B>, now: Instant) {
        let conn = lease.into_conn();
        match &conn.proto {
            Proto::H1(_) => st.idle.push(Idle { conn, since: now }),
            Proto::H2(h2) => {
                h2.active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// How many connects the waiters need, within the limits; counts them as started.
    fn connects_needed_locked(&self, st: &mut State<B>, now: Instant) -> usize {
        let waiting = st.waiters.len();
        if waiting == 0 {
            return 0;
        }
        let open = st.h1_open + st.h2.len() + st.connecting;
        let room = self.config.max_connections.saturating_sub(open);
        let want = match st.proto {
            // One connect until ALPN says which protocol: the others may all fit on it.
            Protocol::Unknown => usize::from(st.connecting == 0),
            Protocol::Http1 => waiting.saturating_sub(st.connecting),
            Protocol::Http2 => {
                let per = st.assumed_streams.max(1);
                let covered = st.connecting.saturating_mul(per);
                if waiting <= covered {
                    0
                } else {
                    let usable = st.h2.iter().filter(|c| c.h2_open_for_streams(now)).count();
                    match st.extra_dial_after {
                        // Backing off: the waiters get the open connections' streams as they
                        // free, and a timer looks again when the backoff ends, in case none
                        // does by then.
                        Some(at) if usable > 0 && now < at => {
                            if !st.redial_timer {
                                st.redial_timer = self.redial_at(at);
                            }
                            0
                        }
                        _ => {
                            let h2_room = self
                                .config
                                .http2_max_connections
                                .saturating_sub(usable + st.connecting);
                            (waiting - covered).div_ceil(per).min(h2_room)
                        }
                    }
                }
            }
        };
        let n = want.min(room);
        st.connecting += n;
        n
    }

    fn start_dials(&self, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(me) = self.me.upgrade() {
            for _ in 0..n {
                self.dialer.dial(me.clone());
            }
        }
    }

    /// A connect finished: register the connection, or fail the waiters it was for.
    pub(crate) fn on_dialed(&self, result: Result<Arc<Conn<B>>, TransportError>, took: Duration) {
        let now = Instant::now();
        let dials = {
            let mut st = self.lock();
            st.connecting = st.connecting.saturating_sub(1);
            self.metrics.connect_time.record(took);
            // A connection that arrives already going away (SETTINGS, then GOAWAY: a server
            // refusing more connections at the HTTP/2 level) is not a successful connect.
            let connected = matches!(&result, Ok(conn)
                if !conn.link.closed.load(Ordering::Acquire) && !conn.link.goaway());
            if connected {
                st.connect_failures = 0;
                st.extra_dial_after = None;
            } else {
                st.connect_failures = st.connect_failures.saturating_add(1);
                st.extra_dial_after = Some(now + extra_dial_backoff(st.connect_failures));
            }
            match result {
                Ok(conn) if connected => {
                    conn.link.registered.store(true, Ordering::Release);
                    match &conn.proto {
                        Proto::H1(_) => {
                            self.metrics.opened_h1.fetch_add(1, Ordering::Relaxed);
                            st.h1_open += 1;
                            st.proto = Protocol::Http1;
                            st.idle.push(Idle { conn, since: now });
                        }
                        Proto::H2(_) => {
                            self.metrics.opened_h2.fetch_add(1, Ordering::Relaxed);
                            st.proto = Protocol::Http2;
                            st.assumed_streams =
                                conn.h2_limit(self.config.http2_max_streams_per_connection);
                            st.h2.push(conn);
                        }
                    }
                }
                // Closed, or going away before it took a stream: never registered (dropping it
                // lets its driver end), and the waiters it was for fail as never sent.
                Ok(unusable) => {
                    let e = unusable
                        .link
                        .peer
                        .as_deref()
                        .and_then(crate::dial::going_away_error)
                        .unwrap_or_else(|| {
                            TransportError::connect(crate::error::Message(
                                "connection closed during its handshake",
                            ))
                        });
                    self.metrics.connect_errors.fetch_add(1, Ordering::Relaxed);
                    self.fail_waiters_locked(&mut st, e, now);
                }
                Err(e) => {
                    self.metrics.connect_errors.fetch_add(1, Ordering::Relaxed);
                    self.fail_waiters_locked(&mut st, e, now);
                }
            }
            let dials = self.dispatch_locked(&mut st, now);
            self.trim_idle_locked(&mut st);
            dials
        };
        self.start_dials(dials);
    }

    /// Runs the dispatch again at `at`, from a task holding only a weak reference to the
    /// pool; `false` without a runtime to run it on.
    fn redial_at(&self, at: Instant) -> bool {
        self.dialer.redispatch_at(self.me.clone(), at)
    }

    /// Gives free capacity to the waiters and starts the connects they need (the end of a
    /// connect backoff).
    pub(crate) fn redispatch(&self) {
        let dials = {
            let mut st = self.lock();
            st.redial_timer = false;
            self.dispatch_locked(&mut st, Instant::now())
        };
        self.start_dials(dials);
    }

    /// Fails the waiters a failed connect was for: those no other connect in progress (or
    /// open HTTP/2 connection) can serve. The others keep waiting.
    fn fail_waiters_locked(&self, st: &mut State<B>, err: TransportError, now: Instant) {
        let waiting = st.waiters.len();
        let n = match st.proto {
            Protocol::Http1 => waiting.saturating_sub(st.connecting).max(1),
            Protocol::Http2 => {
                if st.h2.iter().any(|c| c.h2_open_for_streams(now)) {
                    0
                } else {
                    waiting.saturating_sub(st.connecting.saturating_mul(st.assumed_streams))
                }
            }
            Protocol::Unknown => {
                if st.connecting == 0 {
                    waiting
                } else {
                    0
                }
            }
        };
        let kind = err.kind();
        let shared = Arc::new(err);
        for _ in 0..n.min(waiting) {
            let Some(w) = st.waiters.pop_front() else {
                break;
            };
            self.left_queue();
            let t = TransportError::new(kind, Sent::No, Some(Box::new(Shared(shared.clone()))));
            let _ = w.tx.send(Err(Error::connect(&self.origin, t)));
        }
    }

    /// Closes idle HTTP/1.1 connections beyond the idle limit, oldest first.
    fn trim_idle_locked(&self, st: &mut State<B>) {
        let excess = st.idle.len().saturating_sub(self.config.max_idle);
        for idle in st.idle.drain(..excess) {
            idle.conn.close_h1(CloseReason::Idle);
        }
    }

    /// A connection's driver task ended.
    pub(crate) fn on_closed(&self, link: &Arc<Link>, failed: bool) {
        let now = Instant::now();
        let dials = {
            let mut st = self.lock();
            link.closed.store(true, Ordering::Release);
            if link.registered.load(Ordering::Acquire) {
                if link.is_h2 {
                    st.h2.retain(|c| !Arc::ptr_eq(&c.link, link));
                } else {
                    st.h1_open = st.h1_open.saturating_sub(1);
                    st.idle.retain(|i| !Arc::ptr_eq(&i.conn.link, link));
                }
                let reason = link.close_reason().unwrap_or_else(|| {
                    if link.goaway() {
                        CloseReason::GoAway
                    } else if failed {
                        CloseReason::Error
                    } else {
                        CloseReason::Peer
                    }
                });
                self.metrics.closed(reason);
            }
            self.dispatch_locked(&mut st, now)
        };
        if let Some(peer) = &link.peer {
            peer.wake();
        }
        self.start_dials(dials);
    }

    /// An HTTP/1.1 exchange ended: keep the connection for the next waiter or the idle
    /// list, or close it.
    pub(crate) fn release_h1(&self, conn: Arc<Conn<B>>, how: Release) {
        let now = Instant::now();
        let dials = {
            let mut st = self.lock();
            match how {
                Release::Close(reason) => conn.close_h1(reason),
                Release::Reuse if conn.is_expired(now) => conn.close_h1(CloseReason::Lifetime),
                Release::Reuse => match conn.h1_state() {
                    H1State::Ready => st.idle.push(Idle { conn, since: now }),
                    H1State::Away => conn.link.set_close_reason(CloseReason::Aborted),
                    // Closing already: its driver task counts it as it ends.
                    H1State::Closed => {}
                },
            }
            let dials = self.dispatch_locked(&mut st, now);
            self.trim_idle_locked(&mut st);
            dials
        };
        self.start_dials(dials);
    }

    /// An HTTP/2 stream ended. Lock-free unless someone waits or the connection retires.
    pub(crate) fn release_h2(&self, conn: &Arc<Conn<B>>) {
        let Some(h2) = conn.h2() else { return };
        let before = h2.active.fetch_sub(1, Ordering::SeqCst);
        let mut retire = false;
        if before == 1 {
            let now = Instant::now();
            h2.idle_since.store(self.nanos(now), Ordering::Relaxed);
            retire = !conn.h2_open_for_streams(now);
        }
        if retire || self.waiting.load(Ordering::SeqCst) > 0 {
            let now = Instant::now();
            let dials = {
                let mut st = self.lock();
                if retire && h2.active.load(Ordering::SeqCst) == 0 {
                    self.remove_h2_locked(&mut st, conn, now);
                }
                self.dispatch_locked(&mut st, now)
            };
            self.start_dials(dials);
        }
    }

    fn remove_h2_locked(&self, st: &mut State<B>, conn: &Arc<Conn<B>>, now: Instant) {
        let reason = if conn.link.goaway() {
            CloseReason::GoAway
        } else if conn.is_expired(now) {
            CloseReason::Lifetime
        } else {
            CloseReason::Idle
        };
        conn.link.set_close_reason(reason);
        st.h2.retain(|c| !Arc::ptr_eq(c, conn));
    }
}

/// Takes a waiter out of the queue when its request is dropped while waiting.
struct WaiterGuard<'a, B: 'static> {
    pool: &'a OriginPool<B>,
    id: u64,
    armed: bool,
}

impl<B: 'static> Drop for WaiterGuard<'_, B> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.remove_waiter(self.id);
        }
    }
}

/// One connect error handed to several waiters.
struct Shared(Arc<TransportError>);

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.source() {
            Some(cause) => fmt::Display::fmt(cause, f),
            None => fmt::Display::fmt(&self.0, f),
        }
    }
}

impl StdError for Shared {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source().and_then(|cause| cause.source())
    }
}
