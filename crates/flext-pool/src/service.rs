//! [`Pool`]: the pooled `Service<http::Request<B>>`.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::future::poll_fn;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use flext_core::{BoxError, Deadline, Origin, OriginRef, Sent};
use http::header::{CONNECTION, HOST};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::Connection;
use tower_service::Service;

use crate::body::{Body, Inner as BodyInner};
use crate::config::Config;
use crate::conn::{Conn, KeptOpen, Proto};
use crate::dial::Dialer;
use crate::error::{Error, classify_h2, classify_hyper};
use crate::future::ResponseFuture;
use crate::http2;
use crate::metrics::{CloseReason, OriginSnapshot, PoolSnapshot};
use crate::origin_pool::{Dial, OriginPool, Release};
use crate::ready::ReadyGate;

/// Origins beyond this many are forgotten when they hold nothing (their counters go too).
const KEEP_EMPTY_ORIGINS: usize = 64;

/// Connections found closed before use, in a row, before a request gives up.
const MAX_STALE: usize = 16;

/// A pooled HTTP/1.1 and HTTP/2 client: a `tower::Service<http::Request<B>>` over a
/// connector `C` (a `Service<Uri>` yielding an IO).
///
/// Clones share the pool. See the [crate docs](crate) for an example and
/// [`Config`] for the limits.
///
/// # Readiness
///
/// `poll_ready` returns `Pending` while [`Config::ready_limit`] requests (default 1,024) are
/// queued for a connection across the whole pool, and `Ready` again as soon as one leaves
/// the queue. `Ready` is a promise that a call now is not turned away for a full pool-wide
/// queue; it may still wait for a connection (up to the acquire timeout), or fail at once
/// if its own origin's queue is full. Load shedding or concurrency-limiting layers above
/// the pool therefore see real back-pressure, not an always-ready service.
pub struct Pool<C, B: 'static> {
    shared: Arc<Shared<C, B>>,
}

struct Shared<C, B: 'static> {
    config: Arc<Config>,
    dialer: Arc<Dialer<C>>,
    gate: Arc<ReadyGate>,
    origins: RwLock<HashMap<Origin, Arc<OriginPool<B>>>>,
    // The origin pool the last map lookup found. Most clients talk to one origin, and a pool
    // cloned for every call (as a stack over it is) would otherwise parse, hash and look up
    // the origin on every request. The reaper empties it before it forgets origins (it
    // forgets only those nobody holds), so what this holds is always in `origins`.
    recent: ArcSwapOption<OriginPool<B>>,
    reaper: AtomicBool,
}

impl<C, B: 'static> Clone for Pool<C, B> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
        }
    }
}

impl<C, B: 'static> fmt::Debug for Pool<C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<C, B> Pool<C, B>
where
    C: Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: Read + Write + Connection + Unpin + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A pool over `connector` with `config`.
    pub fn new(connector: C, config: Config) -> Pool<C, B> {
        let config = Arc::new(config);
        Pool {
            shared: Arc::new(Shared {
                gate: Arc::new(ReadyGate::new(config.ready_limit)),
                dialer: Arc::new(Dialer::new(connector, config.clone())),
                config,
                origins: RwLock::new(HashMap::new()),
                recent: ArcSwapOption::empty(),
                reaper: AtomicBool::new(false),
            }),
        }
    }

    /// A [`PoolLayer`](crate::PoolLayer) building pools with `config`.
    pub fn layer(config: Config) -> crate::PoolLayer<B> {
        crate::PoolLayer::new(config)
    }

    /// A snapshot of every origin's connections and counters.
    pub fn metrics(&self) -> PoolSnapshot {
        let origins: Vec<Arc<OriginPool<B>>> = self
            .shared
            .origins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        PoolSnapshot {
            origins: origins.iter().map(|o| o.snapshot()).collect(),
            waiters: self.shared.gate.waiting(),
        }
    }

    /// A snapshot of one origin, if the pool has seen it.
    pub fn origin_metrics(&self, origin: &Origin) -> Option<OriginSnapshot> {
        let pool = self
            .shared
            .origins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(origin)
            .cloned();
        pool.map(|p| p.snapshot())
    }

    /// The pool's settings.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The connector.
    pub fn get_ref(&self) -> &C {
        self.shared.dialer.connector()
    }

    fn origin_pool(&self, uri: &Uri) -> Result<Arc<OriginPool<B>>, Error> {
        let recent = self.shared.recent.load();
        if let Some(pool) = &*recent
            && pool.origin.is_spelled_by(uri)
        {
            return Ok(Arc::clone(pool));
        }
        let pool = self.find_or_add(uri)?;
        // Written only when it changes: the same origin spelled another way (user-info, upper
        // case) misses the quick check but finds the same pool.
        let unchanged = recent.as_ref().is_some_and(|r| Arc::ptr_eq(r, &pool));
        drop(recent);
        if !unchanged {
            self.shared.recent.store(Some(Arc::clone(&pool)));
        }
        Ok(pool)
    }

    /// The origin pool of `uri` from the map, made when new.
    fn find_or_add(&self, uri: &Uri) -> Result<Arc<OriginPool<B>>, Error> {
        let key = OriginRef::from_uri(uri).map_err(Error::invalid_uri)?;
        {
            let map = self
                .shared
                .origins
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(pool) = map.get(&key as &dyn Key) {
                return Ok(pool.clone());
            }
        }
        let origin = key.to_origin();
        let mut map = self
            .shared
            .origins
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = map.get(&origin) {
            return Ok(pool.clone());
        }
        let dialer: Arc<dyn Dial<B>> = self.shared.dialer.clone();
        let pool = OriginPool::new(
            origin.clone(),
            self.shared.config.clone(),
            dialer,
            self.shared.gate.clone(),
        )?;
        map.insert(origin, pool.clone());
        drop(map);
        self.start_reaper();
        Ok(pool)
    }

    /// One task per pool closes idle and expired connections; it ends with the pool.
    fn start_reaper(&self) {
        let config = &self.shared.config;
        let Some(every) = [config.idle_timeout, config.max_lifetime]
            .into_iter()
            .flatten()
            .min()
        else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.shared.reaper.swap(true, Ordering::AcqRel) {
            return;
        }
        let every = (every / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let weak = Arc::downgrade(&self.shared);
        handle.spawn(reap(weak, every));
    }
}

async fn reap<C, B: 'static>(shared: Weak<Shared<C, B>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = tokio::time::Instant::now();
        let pools: Vec<Arc<OriginPool<B>>> = shared
            .origins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut empty = 0;
        for p in &pools {
            empty += usize::from(p.reap(now));
        }
        drop(pools);
        if empty > 0
            && shared
                .origins
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
                > KEEP_EMPTY_ORIGINS
        {
            // Let go of the cached origin, so that it is forgotten too if nobody else holds it;
            // a request that finds it again in the map puts it back.
            shared.recent.store(None);
            let mut map = shared
                .origins
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            // Only the map holds an empty origin nobody is using, and nobody can take a new
            // reference while the write lock is held.
            map.retain(|_, p| Arc::strong_count(p) > 1 || !p.reap(now));
        }
    }
}

impl<C, B> Service<Request<B>> for Pool<C, B>
where
    C: Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: Read + Write + Connection + Unpin + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.shared.gate.poll_ready(cx).map(Ok)
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        match self.origin_pool(req.uri()) {
            Ok(pool) => ResponseFuture::new(Box::pin(send(pool, req))),
            Err(e) => ResponseFuture::error(e),
        }
    }
}

/// Sends a request on a pooled connection; resends once, on another connection, a request
/// that a reused connection gave back unsent.
async fn send<B>(pool: Arc<OriginPool<B>>, mut req: Request<B>) -> Result<Response<Body>, Error>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let deadline = Deadline::of(&req);
    let mut retried = false;
    let mut stale = 0;
    loop {
        let lease = pool.acquire(deadline).await?;
        let served = &lease.conn().served;
        let reused = served.load(Ordering::Relaxed) || served.swap(true, Ordering::Relaxed);
        let is_h2 = lease.conn().h2().is_some();
        let result = match &lease.conn().proto {
            Proto::H1(_) => {
                let Some(mut tx) = lease.conn().take_h1_tx() else {
                    drop(lease.into_conn());
                    continue;
                };
                if poll_fn(|cx| tx.poll_ready(cx)).await.is_err() {
                    // Closed while idle: detected before use, nothing was sent.
                    drop(tx);
                    drop(lease.into_conn());
                    stale += 1;
                    if stale > MAX_STALE {
                        return Err(Error::request(
                            &pool.origin,
                            flext_core::TransportError::new(
                                flext_core::TransportErrorKind::Reset,
                                Sent::No,
                                Some(Box::new(crate::error::Message(
                                    "every pooled connection was found closed",
                                ))),
                            ),
                        ));
                    }
                    continue;
                }
                prepare_h1(&mut req, &pool);
                let result = tx.try_send_request(req).await;
                let conn = lease.into_conn();
                match result {
                    Ok(resp) => {
                        conn.put_h1_tx(tx);
                        let reuse = keeps_alive(&resp);
                        let resp = resp.map(BodyInner::H1);
                        return Ok(wrap(resp, conn, reuse, reused, &pool));
                    }
                    Err(mut e) => {
                        drop(tx);
                        let unsent = e.take_message();
                        let (reason, sent) = if unsent.is_some() {
                            (CloseReason::Peer, Sent::No)
                        } else {
                            (CloseReason::Error, Sent::Maybe)
                        };
                        pool.release_h1(conn, Release::Close(reason));
                        (unsent, classify_hyper(e.into_error(), sent), None)
                    }
                }
            }
            Proto::H2(h2) => {
                let opened = match h2.open_kept(req) {
                    KeptOpen::Opened(opened) => Ok(opened),
                    KeptOpen::Refused(req, e) => Err((req, e)),
                    KeptOpen::Unready(req) => {
                        let mut tx = h2.tx.clone();
                        match poll_fn(|cx| tx.poll_ready(cx)).await {
                            Ok(()) => Ok(http2::open(&mut tx, req)),
                            Err(e) => Err((req, e)),
                        }
                    }
                };
                match opened {
                    Err((req, e)) => {
                        // The connection ended, is going away or can open no more streams
                        // (its stream ids are used up): the request is still here, and the
                        // connection takes no more.
                        let link = lease.conn().link.clone();
                        if !link.goaway() {
                            link.set_close_reason(CloseReason::Error);
                        }
                        h2.retired.store(true, Ordering::Release);
                        drop(lease);
                        (Some(req), classify_h2(e, Sent::No), Some(link))
                    }
                    Ok(opened) => {
                        let sent = match opened {
                            Ok(exchange) => exchange.await,
                            Err(e) => Err(e),
                        };
                        match sent {
                            Ok(resp) => {
                                let resp = resp.map(BodyInner::H2);
                                return Ok(wrap(resp, lease.into_conn(), true, reused, &pool));
                            }
                            Err(e) => {
                                // Kept to tell whether the server was closing the
                                // connection gracefully.
                                let link = lease.conn().link.clone();
                                drop(lease);
                                (None, e, Some(link))
                            }
                        }
                    }
                }
            }
        };
        let (unsent, err, link) = result;
        let mark = |t| match &link {
            Some(link) => link.mark(t),
            None => t,
        };
        match unsent {
            Some(r) if !retried && (reused || is_h2) && pool.config.retry_never_sent_once => {
                retried = true;
                pool.metrics
                    .never_sent_retries
                    .fetch_add(1, Ordering::Relaxed);
                req = r;
                restore_absolute(&mut req, &pool);
            }
            Some(_) | None => return Err(Error::request(&pool.origin, mark(err))),
        }
    }
}

fn wrap<B>(
    resp: Response<BodyInner>,
    conn: Arc<Conn<B>>,
    reuse: bool,
    reused: bool,
    pool: &OriginPool<B>,
) -> Response<Body>
where
    B: Send + 'static,
    Conn<B>: Send + Sync,
{
    if reused {
        pool.metrics.reused.fetch_add(1, Ordering::Relaxed);
    }
    resp.map(|inner| Body::new(inner, conn, reuse))
}

/// HTTP/1.1 wants the origin form (`/path?query`) and a `Host` header.
fn prepare_h1<B>(req: &mut Request<B>, pool: &OriginPool<B>) {
    if req.version() == Version::HTTP_2 {
        *req.version_mut() = Version::HTTP_11;
    }
    if !req.headers().contains_key(HOST) {
        req.headers_mut().insert(HOST, pool.host_header.clone());
    }
    if req.uri().scheme().is_some() && req.method() != http::Method::CONNECT {
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(pq);
    }
}

/// Gives a request made ready for HTTP/1.1 its absolute URI back, for a resend that may go
/// over HTTP/2.
fn restore_absolute<B>(req: &mut Request<B>, pool: &OriginPool<B>) {
    if req.uri().scheme().is_some() {
        return;
    }
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    if let Ok(uri) = Uri::builder()
        .scheme(pool.origin.scheme().as_str())
        .authority(pool.authority.clone())
        .path_and_query(pq)
        .build()
    {
        *req.uri_mut() = uri;
    }
}

/// Whether an HTTP/1.1 connection may carry another request after this response.
fn keeps_alive<T>(resp: &Response<T>) -> bool {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS || resp.version() == Version::HTTP_10 {
        return false;
    }
    !resp.headers().get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}

/// Lets the map of origins be probed with a borrowed [`OriginRef`], without allocating.
trait Key {
    fn key(&self) -> OriginRef<'_>;
}

impl Key for Origin {
    fn key(&self) -> OriginRef<'_> {
        self.as_ref()
    }
}

impl Key for OriginRef<'_> {
    fn key(&self) -> OriginRef<'_> {
        *self
    }
}

impl<'a> Borrow<dyn Key + 'a> for Origin {
    fn borrow(&self) -> &(dyn Key + 'a) {
        self
    }
}

impl Hash for dyn Key + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialEq for dyn Key + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for dyn Key + '_ {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_ref_probes_the_map() {
        let mut map: HashMap<Origin, u8> = HashMap::new();
        map.insert("http://example.com".parse().unwrap(), 1);
        let uri: Uri = "HTTP://Example.COM:80/x".parse().unwrap();
        let key = OriginRef::from_uri(&uri).unwrap();
        assert_eq!(map.get(&key as &dyn Key), Some(&1));
        let other: Uri = "http://example.com:8080/".parse().unwrap();
        let key = OriginRef::from_uri(&other).unwrap();
        assert_eq!(map.get(&key as &dyn Key), None);
    }

    #[test]
    fn connection_close_is_seen() {
        let resp = Response::builder()
            .header(CONNECTION, "keep-alive, Close")
            .body(())
            .unwrap();
        assert!(!keeps_alive(&resp));
        assert!(keeps_alive(&Response::new(())));
        let old = Response::builder()
            .version(Version::HTTP_10)
            .body(())
            .unwrap();
        assert!(!keeps_alive(&old));
    }

    #[test]
    fn the_public_types_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        type P = Pool<crate::Connector, http_body_util::Empty<bytes::Bytes>>;
        send_sync::<P>();
        send_sync::<Body>();
        send_sync::<Error>();
        send::<ResponseFuture>();
        send_sync::<crate::PoolLayer<http_body_util::Empty<bytes::Bytes>>>();
    }
}
