//! Pooled connections: what the pool keeps of an HTTP/1.1 or HTTP/2 connection, and the
//! lease a request holds while it uses one.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError, Weak};
use std::task::{Context, Poll, Waker};

use flext_core::TransportError;
use http::Request;
use hyper::client::conn::http1;
use tokio::time::Instant;

use crate::error::Message;
use crate::http2;
use crate::metrics::CloseReason;
use crate::origin_pool::OriginPool;
use crate::sniff::PeerState;

/// What the pool and a connection's driver task share about the connection. The task holds
/// only this (not the [`Conn`]), so that dropping the last [`Conn`] closes the connection.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) id: u64,
    pub(crate) is_h2: bool,
    /// Set by the pool when it retires the connection, read when the connection ends.
    close_reason: AtomicU8,
    /// The pool counted the connection as open (set and read under the origin's lock).
    pub(crate) registered: AtomicBool,
    /// The driver task ended (set and read under the origin's lock).
    pub(crate) closed: AtomicBool,
    /// HTTP/2 only: what the frame sniffer learnt.
    pub(crate) peer: Option<Arc<PeerState>>,
}

impl Link {
    pub(crate) fn new(id: u64, peer: Option<Arc<PeerState>>) -> Arc<Link> {
        Arc::new(Link {
            id,
            is_h2: peer.is_some(),
            close_reason: AtomicU8::new(0),
            registered: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            peer,
        })
    }

    /// Records why the pool let the connection go; the first reason wins.
    pub(crate) fn set_close_reason(&self, reason: CloseReason) {
        let _ = self.close_reason.compare_exchange(
            0,
            reason as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        CloseReason::from_u8(self.close_reason.load(Ordering::Acquire))
    }

    /// Whether the server sent a GOAWAY on this (HTTP/2) connection.
    pub(crate) fn goaway(&self) -> bool {
        self.peer.as_ref().is_some_and(|p| p.goaway())
    }

    /// `err`, marked [`TransportError::during_goaway`] when the server was closing this
    /// connection gracefully (every GOAWAY it sent says `NO_ERROR`); a timeout when the
    /// connection was closed for an unanswered keep-alive PING.
    pub(crate) fn mark(&self, err: TransportError) -> TransportError {
        if self.peer.as_ref().is_some_and(|p| p.ping_timed_out()) {
            return TransportError::new(
                flext_core::TransportErrorKind::Timeout,
                err.sent(),
                Some(Box::new(Message(
                    "the connection was closed: an http2 keep-alive ping was not answered in time",
                ))),
            );
        }
        if self.peer.as_ref().is_some_and(|p| p.graceful_goaway()) {
            err.during_goaway()
        } else {
            err
        }
    }
}

/// A connection the pool hands out.
pub(crate) struct Conn<B: 'static> {
    pub(crate) link: Arc<Link>,
    pub(crate) pool: Weak<OriginPool<B>>,
    /// When the connection stops taking new requests (its jittered lifetime).
    pub(crate) expires: Option<Instant>,
    /// It carried a request already; only read once set, so HTTP/2 streams do not all
    /// write one shared cache line.
    pub(crate) served: AtomicBool,
    pub(crate) proto: Proto<B>,
}

pub(crate) enum Proto<B> {
    H1(H1<B>),
    H2(H2),
}

pub(crate) struct H1<B> {
    /// The sender; taken out while a request is being sent, put back for the body.
    tx: Mutex<Option<http1::SendRequest<B>>>,
}

pub(crate) struct H2 {
    pub(crate) tx: http2::SendRequest,
    /// Clones of `tx` kept one per thread slot (see [`H2::open_kept`]), made on first use.
    senders: Box<[Sender]>,
    /// Streams this pool has open on the connection (shared with its driver, which batches
    /// writes while more than one is open).
    pub(crate) active: Arc<AtomicUsize>,
    /// Nanoseconds after the origin pool's epoch when `active` last fell to zero.
    pub(crate) idle_since: AtomicU64,
    /// No new streams: lifetime over, or idle too long.
    pub(crate) retired: AtomicBool,
}

/// A kept clone of a connection's `SendRequest`, alone on its cache lines.
#[repr(align(128))]
struct Sender(Mutex<Option<http2::SendRequest>>);

/// What [`H2::open_kept`] did with a request.
pub(crate) enum KeptOpen<B> {
    /// Opened (or refused by `h2` when opening): nothing more to wait for before sending.
    Opened(Result<http2::Exchange<B>, TransportError>),
    /// The connection takes no more streams (it ended, is going away, or has used up its
    /// stream ids); the request was not sent.
    Refused(Request<B>, h2::Error),
    /// This thread's sender is taken (a thread sharing its slot is sending): the request is
    /// given back, to be sent through a clone made for it.
    Unready(Request<B>),
}

impl H2 {
    /// Opens a stream for `req` on this thread's kept clone of the sender when it is free and
    /// ready without waiting.
    ///
    /// Cloning `h2`'s `SendRequest` for each request takes the connection's stream lock
    /// (which every task using the connection and the connection's own task take) once to
    /// clone it and once to drop it; with two or more worker threads that lock is contended,
    /// and each extra hold of it costs more than the rest of the send. The clone kept per
    /// thread slot is made once; a `poll_ready` after the open (one hold of the lock rather
    /// than two) checks that it keeps no stream.
    pub(crate) fn open_kept<B>(&self, req: Request<B>) -> KeptOpen<B>
    where
        B: http_body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<flext_core::BoxError>,
    {
        let sender = &self.senders[flext_core::thread_slot() % self.senders.len()];
        let mut slot = match sender.0.try_lock() {
            Ok(slot) => slot,
            // A panic while it was held: start from a fresh clone.
            Err(TryLockError::Poisoned(poisoned)) => {
                let mut slot = poisoned.into_inner();
                *slot = None;
                sender.0.clear_poison();
                slot
            }
            Err(TryLockError::WouldBlock) => return KeptOpen::Unready(req),
        };
        let tx = slot.get_or_insert_with(|| self.tx.clone());
        let mut noop = Context::from_waker(Waker::noop());
        // The sender never holds a stream here (see below), so this only asks whether the
        // connection takes another stream; it registers no waker.
        match tx.poll_ready(&mut noop) {
            Poll::Ready(Ok(())) => {
                let opened = http2::open(tx, req);
                // A stream that takes the peer's last free stream slot is kept in the sender
                // (h2's `pending`) until a later `poll_ready` sees it open. Kept there, it
                // would hold a reference to the stream past the request (a dropped response
                // would then not reset it, and its unread data would not be released), and
                // the next request's `poll_ready` would take the stream's one send waker
                // from its body writer. Such a sender goes with this request; the slot gets
                // a fresh clone next time. (The no-op registration this makes on the new
                // stream is replaced by its body writer's first poll.)
                if tx.poll_ready(&mut noop).is_pending() {
                    *slot = None;
                }
                KeptOpen::Opened(opened)
            }
            Poll::Ready(Err(e)) => KeptOpen::Refused(req, e),
            Poll::Pending => KeptOpen::Unready(req),
        }
    }
}

impl<B: 'static> Conn<B> {
    pub(crate) fn new_h1(
        link: Arc<Link>,
        pool: Weak<OriginPool<B>>,
        expires: Option<Instant>,
        tx: http1::SendRequest<B>,
    ) -> Conn<B> {
        Conn {
            link,
            pool,
            expires,
            served: AtomicBool::new(false),
            proto: Proto::H1(H1 {
                tx: Mutex::new(Some(tx)),
            }),
        }
    }

    pub(crate) fn new_h2(
        link: Arc<Link>,
        pool: Weak<OriginPool<B>>,
        expires: Option<Instant>,
        tx: http2::SendRequest,
        active: Arc<AtomicUsize>,
        idle_since: u64,
    ) -> Conn<B> {
        Conn {
            link,
            pool,
            expires,
            served: AtomicBool::new(false),
            proto: Proto::H2(H2 {
                tx,
                senders: (0..flext_core::thread_slots())
                    .map(|_| Sender(Mutex::new(None)))
                    .collect(),
                active,
                idle_since: AtomicU64::new(idle_since),
                retired: AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn is_expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }

    /// Takes the HTTP/1.1 sender out for a request.
    pub(crate) fn take_h1_tx(&self) -> Option<http1::SendRequest<B>> {
        match &self.proto {
            Proto::H1(h1) => h1.tx.lock().unwrap_or_else(PoisonError::into_inner).take(),
            Proto::H2(_) => None,
        }
    }

    /// Puts the HTTP/1.1 sender back, for the time the response body is read.
    pub(crate) fn put_h1_tx(&self, tx: http1::SendRequest<B>) {
        if let Proto::H1(h1) = &self.proto {
            *h1.tx.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        }
    }

    /// Whether an HTTP/1.1 connection can take another request: its sender is home and its
    /// driver has not ended.
    pub(crate) fn h1_usable(&self) -> bool {
        match &self.proto {
            Proto::H1(h1) => h1
                .tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .is_some_and(|tx| !tx.is_closed()),
            Proto::H2(_) => false,
        }
    }

    /// Where an HTTP/1.1 connection stands when it comes back.
    pub(crate) fn h1_state(&self) -> H1State {
        match &self.proto {
            Proto::H1(h1) => match &*h1.tx.lock().unwrap_or_else(PoisonError::into_inner) {
                Some(tx) if tx.is_closed() => H1State::Closed,
                Some(_) => H1State::Ready,
                None => H1State::Away,
            },
            Proto::H2(_) => H1State::Closed,
        }
    }

    /// Drops the HTTP/1.1 sender, which ends the connection once it is idle.
    pub(crate) fn close_h1(&self, reason: CloseReason) {
        self.link.set_close_reason(reason);
        drop(self.take_h1_tx());
    }

    pub(crate) fn h2(&self) -> Option<&H2> {
        match &self.proto {
            Proto::H2(h2) => Some(h2),
            Proto::H1(_) => None,
        }
    }

    /// Whether an HTTP/2 connection takes new streams at all.
    pub(crate) fn h2_open_for_streams(&self, now: Instant) -> bool {
        match &self.proto {
            Proto::H2(h2) => {
                !h2.retired.load(Ordering::Acquire)
                    && !self.link.goaway()
                    && !self.link.closed.load(Ordering::Acquire)
                    && !self.is_expired(now)
            }
            Proto::H1(_) => false,
        }
    }

    /// The HTTP/2 stream limit: the peer's, under the local cap; 100 (hyper's assumption)
    /// while the peer names none.
    pub(crate) fn h2_limit(&self, local_cap: Option<u32>) -> usize {
        let peer = self
            .link
            .peer
            .as_ref()
            .and_then(|p| p.max_concurrent_streams())
            .unwrap_or(DEFAULT_MAX_STREAMS);
        let limit = match local_cap {
            Some(cap) => peer.min(cap),
            None => peer,
        };
        usize::try_from(limit).unwrap_or(usize::MAX)
    }
}

impl<B: 'static> Drop for Conn<B> {
    fn drop(&mut self) {
        // The HTTP/2 driver then sees h2 close the connection itself, not the server.
        if let Some(peer) = &self.link.peer {
            peer.set_released();
        }
    }
}

/// See [`Conn::h1_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum H1State {
    /// The sender is home and the connection open.
    Ready,
    /// The connection's driver has ended or is ending.
    Closed,
    /// The sender went with a request that was abandoned: the connection will close.
    Away,
}

/// The stream limit assumed while a peer names none: hyper's `initial_max_send_streams`.
pub(crate) const DEFAULT_MAX_STREAMS: u32 = 100;

/// The right to send one request on a connection: an idle HTTP/1.1 connection or one
/// HTTP/2 stream slot. Dropped unused, it gives the connection or slot back.
pub(crate) struct Lease<B: 'static> {
    conn: Arc<Conn<B>>,
    armed: bool,
}

impl<B: 'static> Lease<B> {
    pub(crate) fn new(conn: Arc<Conn<B>>) -> Lease<B> {
        Lease { conn, armed: true }
    }

    pub(crate) fn conn(&self) -> &Arc<Conn<B>> {
        &self.conn
    }

    /// Gives up the lease without returning anything to the pool; the caller takes over.
    pub(crate) fn into_conn(mut self) -> Arc<Conn<B>> {
        self.armed = false;
        self.conn.clone()
    }
}

impl<B: 'static> Drop for Lease<B> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pool) = self.conn.pool.upgrade() {
            match self.conn.proto {
                Proto::H1(_) => {
                    pool.release_h1(self.conn.clone(), crate::origin_pool::Release::Reuse);
                }
                Proto::H2(_) => pool.release_h2(&self.conn),
            }
        }
    }
}
