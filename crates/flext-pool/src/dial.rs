//! Opening a connection: the connector's IO, the protocol choice, the handshake (hyper's for
//! HTTP/1.1, h2's for HTTP/2), the driver task, and for HTTP/2 the wait for the server's
//! first SETTINGS.

use std::error::Error as StdError;
use std::future::{Future, poll_fn};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Weak};
use std::time::Duration;

use flext_core::{BoxError, Sent, TransportError, TransportErrorKind};
use http::Uri;
use hyper::client::conn::http1;
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tower_service::Service;

use crate::config::Config;
use crate::conn::{Conn, Link};
use crate::error::{Message, classify_connect};
use crate::http2::{self, Pings};
use crate::origin_pool::{Dial, OriginPool};
use crate::sniff::{PeerState, Sniff};

/// Starts connects over a connector `C`, each in a task of its own.
pub(crate) struct Dialer<C> {
    connector: C,
    config: Arc<Config>,
    h1: http1::Builder,
    h2: Arc<(h2::client::Builder, Pings)>,
}

impl<C> Dialer<C> {
    pub(crate) fn new(connector: C, config: Arc<Config>) -> Dialer<C> {
        let h1 = http1::Builder::new();
        let h2 = Arc::new(http2::builder(&config));
        Dialer {
            connector,
            config,
            h1,
            h2,
        }
    }

    pub(crate) fn connector(&self) -> &C {
        &self.connector
    }
}

impl<C, B> Dial<B> for Dialer<C>
where
    C: Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: Read + Write + Connection + Unpin + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn dial(&self, pool: Arc<OriginPool<B>>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            let e = TransportError::connect(Message("no tokio runtime to connect in"));
            pool.on_dialed(Err(e), Duration::ZERO);
            return;
        };
        let connector = self.connector.clone();
        let h1 = self.h1.clone();
        let h2 = self.h2.clone();
        let timeout = self.config.connect_timeout;
        handle.spawn(async move {
            let start = Instant::now();
            let result =
                match tokio::time::timeout(timeout, connect(connector, &pool, h1, h2)).await {
                    Ok(result) => result,
                    Err(_) => Err(TransportError::connect(Message("connect timed out"))),
                };
            if let Err(e) = &result {
                tracing::debug!(origin = %pool.origin, error = %Chain(e), "connect failed");
            }
            pool.on_dialed(result, start.elapsed());
        });
    }

    fn redispatch_at(&self, pool: Weak<OriginPool<B>>, at: Instant) -> bool {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        handle.spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(pool) = pool.upgrade() {
                pool.redispatch();
            }
        });
        true
    }
}

async fn connect<C, B>(
    mut connector: C,
    pool: &Arc<OriginPool<B>>,
    h1: http1::Builder,
    h2: Arc<(h2::client::Builder, Pings)>,
) -> Result<Arc<Conn<B>>, TransportError>
where
    C: Service<Uri>,
    C::Response: Read + Write + Connection + Unpin + Send + 'static,
    C::Error: Into<BoxError>,
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(|e| classify_connect(e.into()))?;
    let io = connector
        .call(pool.connect_uri.clone())
        .await
        .map_err(|e| classify_connect(e.into()))?;
    let config = &pool.config;
    let use_h2 = if io.connected().is_negotiated_h2() {
        if config.http1_only {
            return Err(TransportError::new(
                TransportErrorKind::Protocol,
                Sent::No,
                Some(Box::new(Message(
                    "the connector negotiated h2 but the pool is http1_only",
                ))),
            ));
        }
        true
    } else {
        config.http2_prior_knowledge && !pool.origin.scheme().is_secure()
    };
    let now = Instant::now();
    let id = pool.next_conn_id();
    let expires = pool.expiry(now);
    if use_h2 {
        let peer = PeerState::new();
        let link = Link::new(id, Some(peer.clone()));
        let io = Sniff::new(TokioIo::new(io), peer.clone());
        let (builder, pings) = &*h2;
        let (tx, conn) = builder
            .handshake(io)
            .await
            .map_err(TransportError::connect)?;
        let active = Arc::new(AtomicUsize::new(0));
        let driver = http2::Driver::new(conn, *pings, peer.clone(), active.clone());
        spawn_driver(http2::run(driver), pool.weak(), link.clone());
        let conn = Arc::new(Conn::new_h2(
            link,
            pool.weak(),
            expires,
            tx,
            active,
            pool.nanos(now),
        ));
        // The server's SETTINGS is the first frame it sends; waiting for it means the first
        // streams are spread according to its real limit, not an assumed one.
        peer.wait_settings().await;
        if !peer.settings_seen() {
            return Err(going_away_error(&peer).unwrap_or_else(|| {
                TransportError::connect(Message(
                    "connection closed before the server's http2 settings",
                ))
            }));
        }
        tracing::debug!(origin = %pool.origin, id, max_streams = ?peer.max_concurrent_streams(), "http2 connection open");
        Ok(conn)
    } else {
        let link = Link::new(id, None);
        let (tx, driver) = h1.handshake(io).await.map_err(TransportError::connect)?;
        spawn_driver(driver, pool.weak(), link.clone());
        tracing::debug!(origin = %pool.origin, id, "http1 connection open");
        Ok(Arc::new(Conn::new_h1(link, pool.weak(), expires, tx)))
    }
}

/// The error of a new HTTP/2 connection the server sent a GOAWAY on before it took a
/// request; `None` without a GOAWAY. Closed gracefully (`NO_ERROR`), the server is up and
/// shedding or restarting, and no request was sent: a refusal (resendable, not a sign of an
/// outage), not a connect failure. With an error code, a connect failure.
pub(crate) fn going_away_error(peer: &PeerState) -> Option<TransportError> {
    if peer.graceful_goaway() {
        Some(TransportError::new(
            TransportErrorKind::Refused,
            Sent::No,
            Some(Box::new(Message(
                "the server closed the new http2 connection gracefully (GOAWAY) before it took a request",
            ))),
        ))
    } else if peer.goaway() {
        Some(TransportError::connect(Message(
            "the server closed the new http2 connection with an error (GOAWAY)",
        )))
    } else {
        None
    }
}

/// Runs a connection until it ends, then tells the pool. The task holds the pool weakly and
/// never holds the [`Conn`], so dropping the pool or the connection's last handle ends it.
fn spawn_driver<F, E, B>(driver: F, pool: Weak<OriginPool<B>>, link: Arc<Link>)
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: StdError + 'static,
    B: Send + 'static,
{
    tokio::spawn(async move {
        let result = driver.await;
        if let Err(e) = &result
            && link.close_reason().is_none()
        {
            tracing::debug!(id = link.id, error = %Chain(e), "connection ended with an error");
        }
        match pool.upgrade() {
            Some(pool) => pool.on_closed(&link, result.is_err()),
            None => {
                if let Some(peer) = &link.peer {
                    peer.wake();
                }
            }
        }
    });
}

/// Displays an error with its sources, `a: b: c`.
struct Chain<'a>(&'a (dyn StdError + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}
