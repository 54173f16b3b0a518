//! [`Driver`]: an HTTP/2 connection's task, with keep-alive PINGs and the adaptive window.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::{KeepAlive, Pings, SPEC_WINDOW};
use crate::sniff::PeerState;

/// The largest window the adaptive sizing sets (hyper's and gRPC's cap).
const MAX_WINDOW: u32 = 16 * 1024 * 1024;
/// After a sample that did not grow the window, the next waits at least this long, doubling
/// up to [`MAX_SAMPLE_DELAY`]: a connection whose bandwidth is known is not pinged per RTT.
const MIN_SAMPLE_DELAY: Duration = Duration::from_millis(100);
const MAX_SAMPLE_DELAY: Duration = Duration::from_secs(10);

/// Drives an h2 client connection until it ends.
///
/// One PING at a time serves both purposes:
/// - **keep-alive**: after one to two `interval`s without a frame read, a PING; no answer
///   within `timeout` closes the connection, and the requests on it fail as timeouts.
/// - **adaptive window**: while DATA arrives, a PING measures the round trip; the DATA bytes
///   read during it are a sample of the bandwidth-delay product. When a sample fills two
///   thirds of the window at a bandwidth not seen before, the connection's and the streams'
///   windows grow to twice the sample, up to 16 MiB.
pub(crate) struct Driver<T> {
    conn: h2::client::Connection<T, Bytes>,
    pinger: Option<Pinger>,
    peer: Arc<PeerState>,
    /// Streams the pool has open on the connection.
    active: Arc<AtomicUsize>,
}

struct Pinger {
    pong: h2::PingPong,
    /// When the PING in flight was sent, and the DATA bytes read before the reads that
    /// prompted it (a sample counts the burst that set it off).
    in_flight: Option<(Instant, u64)>,
    /// DATA bytes read as of the end of the last poll.
    seen_bytes: u64,
    keep_alive: Option<KeepAliveState>,
    window: Option<Window>,
}

struct KeepAliveState {
    config: KeepAlive,
    sleep: Pin<Box<Sleep>>,
    /// Frames read when `sleep` was last set: if the count moved by the time it fires, the
    /// connection was not idle. (Read then, not on every poll, so that a busy connection
    /// reads no clock for its keep-alive.)
    frames: u64,
    /// A PING is in flight for keep-alive: `sleep` is its deadline.
    awaiting: bool,
}

#[derive(Clone, Copy)]
struct Window {
    size: u32,
    max_bandwidth: f64,
    next_sample: Option<Instant>,
    delay: Duration,
}

impl<T> Driver<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn new(
        mut conn: h2::client::Connection<T, Bytes>,
        pings: Pings,
        peer: Arc<PeerState>,
        active: Arc<AtomicUsize>,
    ) -> Driver<T> {
        let wanted = pings.keep_alive.is_some() || pings.adaptive_window;
        let pinger = match conn.ping_pong() {
            Some(pong) if wanted => {
                let now = Instant::now();
                Some(Pinger {
                    pong,
                    in_flight: None,
                    seen_bytes: 0,
                    keep_alive: pings.keep_alive.map(|config| KeepAliveState {
                        config,
                        sleep: Box::pin(tokio::time::sleep_until(now + config.interval)),
                        frames: peer.frames(),
                        awaiting: false,
                    }),
                    window: pings.adaptive_window.then_some(Window {
                        size: SPEC_WINDOW,
                        max_bandwidth: 0.0,
                        next_sample: None,
                        delay: Duration::ZERO,
                    }),
                })
            }
            _ => None,
        };
        Driver {
            conn,
            pinger,
            peer,
            active,
        }
    }
}

/// Runs `driver` until the connection ends.
///
/// On a runtime with one worker thread (`current_thread`, or a multi-thread runtime on one
/// core), while more than one stream is open, each wake-up first lets the tasks already ready
/// run (see [`requeue`]): the streams they open meanwhile go out in the same write, instead of
/// a write (and the kernel's network work, on the same thread) per request. This took the pool
/// from 0.90× to 1.2× hyper-util's throughput over h2c at 64 concurrent requests on one
/// thread. With more workers the driver writes at once: the writes then run beside the
/// requests, and a task put back in a queue wakes another worker to steal it, which cost
/// more than the writes it saved (1.15-1.21× against 1.18-1.22× on two). A lone request
/// never waits.
pub(crate) async fn run<T>(mut driver: Driver<T>) -> Result<(), DriverError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let one_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.metrics().num_workers() == 1);
    loop {
        if let Poll::Ready(result) = poll_fn(|cx| Poll::Ready(Pin::new(&mut driver).poll(cx))).await
        {
            return result;
        }
        woken().await;
        if one_worker && driver.active.load(Ordering::Relaxed) > 1 {
            requeue().await;
        }
    }
}

/// Wakes the task and returns `Pending` once: tokio puts a task that woke itself at the back
/// of its worker's queue, behind the tasks already ready, so they run first. (On the
/// multi-thread scheduler a wake from another task would put it in the slot that runs next;
/// the current-thread scheduler always queues at the back.)
async fn requeue() {
    let mut first = true;
    poll_fn(|cx| {
        if std::mem::take(&mut first) {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
}

/// `Pending` once, without registering a waker: returns when the task is polled again,
/// that is when something the driver registered woke it.
async fn woken() {
    let mut first = true;
    poll_fn(|_| {
        if std::mem::take(&mut first) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
}

impl<T> Future for Driver<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Result<(), DriverError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        // The connection first: what it reads is what the pinger looks at.
        if let Poll::Ready(result) = Pin::new(&mut this.conn).poll(cx) {
            // h2 ends a connection whose socket reached its end without a GOAWAY as if it
            // had closed well; RFC 9113 §6.8 wants a GOAWAY before a close, and the
            // streams on it failed. A connection the pool let go (h2 then sends its own
            // GOAWAY) ends well.
            return Poll::Ready(match result {
                Ok(()) if !this.peer.goaway() && !this.peer.released() => Err(DriverError::Eof),
                Ok(()) => Ok(()),
                Err(e) => Err(DriverError::H2(e)),
            });
        }
        if let Some(pinger) = &mut this.pinger
            && let Err(e) = pinger.poll(cx, &mut this.conn, &this.peer)
        {
            return Poll::Ready(Err(e));
        }
        Poll::Pending
    }
}

impl Pinger {
    fn poll<T, B>(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut h2::client::Connection<T, B>,
        peer: &PeerState,
    ) -> Result<(), DriverError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
        B: bytes::Buf,
    {
        if let Some((sent, bytes_then)) = self.in_flight
            && let Poll::Ready(pong) = self.pong.poll_pong(cx)
        {
            pong?;
            self.in_flight = None;
            let now = Instant::now();
            let bytes = peer.data_bytes();
            if let Some(window) = &mut self.window {
                let before = *window;
                let rtt = now.saturating_duration_since(sent);
                if let Some(size) = window.sample(bytes.saturating_sub(bytes_then), rtt, now) {
                    conn.set_target_window_size(size);
                    if conn.set_initial_window_size(size).is_err() {
                        // h2 sends no SETTINGS while the last one is unacknowledged: the
                        // stream window grows at a later sample.
                        *window = before;
                    } else {
                        tracing::trace!(window = size, "http2 window grown");
                    }
                    // The SETTINGS and WINDOW_UPDATE go out at the connection's next poll.
                    cx.waker().wake_by_ref();
                }
            }
            // The next sample counts from here: the bytes of this one are not counted twice.
            self.seen_bytes = bytes;
            if let Some(ka) = &mut self.keep_alive {
                ka.awaiting = false;
                ka.frames = peer.frames();
                ka.sleep.as_mut().reset(now + ka.config.interval);
            }
        }
        if let Some(ka) = &mut self.keep_alive {
            while ka.sleep.as_mut().poll(cx).is_ready() {
                let now = Instant::now();
                if ka.awaiting {
                    peer.set_ping_timed_out();
                    return Err(DriverError::KeepAlive(ka.config.timeout));
                }
                let frames = peer.frames();
                if frames != ka.frames {
                    // Not idle for a whole interval: look again one interval from now.
                    ka.frames = frames;
                    ka.sleep.as_mut().reset(now + ka.config.interval);
                    continue;
                }
                if self.in_flight.is_none() {
                    self.pong.send_ping(h2::Ping::opaque())?;
                    self.in_flight = Some((now, peer.data_bytes()));
                }
                ka.awaiting = true;
                ka.sleep.as_mut().reset(now + ka.config.timeout);
            }
        }
        let bytes = peer.data_bytes();
        if self.in_flight.is_none()
            && bytes > self.seen_bytes
            && let Some(window) = &self.window
            && window.size < MAX_WINDOW
        {
            let now = Instant::now();
            if window.next_sample.is_none_or(|at| now >= at) {
                self.pong.send_ping(h2::Ping::opaque())?;
                self.in_flight = Some((now, self.seen_bytes));
                // Registers the wake-up for its answer.
                if let Poll::Ready(Err(e)) = self.pong.poll_pong(cx) {
                    return Err(DriverError::H2(e));
                }
            }
        }
        self.seen_bytes = bytes;
        Ok(())
    }
}

impl Window {
    /// Takes a sample: `bytes` of DATA read during a PING's round trip `rtt`. Returns the
    /// new window size when the sample says the window limits the transfer: it filled two
    /// thirds of the window at a bandwidth not seen before.
    fn sample(&mut self, bytes: u64, rtt: Duration, now: Instant) -> Option<u32> {
        let bandwidth = bytes as f64 / rtt.as_secs_f64().max(1e-6);
        let fills = bytes.saturating_mul(3) >= u64::from(self.size).saturating_mul(2);
        if bandwidth > self.max_bandwidth && fills && self.size < MAX_WINDOW {
            self.max_bandwidth = bandwidth;
            let size = u32::try_from(bytes.saturating_mul(2)).unwrap_or(MAX_WINDOW);
            self.size = size.clamp(SPEC_WINDOW, MAX_WINDOW);
            self.delay = Duration::ZERO;
            self.next_sample = None;
            return Some(self.size);
        }
        self.max_bandwidth = self.max_bandwidth.max(bandwidth);
        self.delay = (self.delay * 2).clamp(MIN_SAMPLE_DELAY, MAX_SAMPLE_DELAY);
        self.next_sample = Some(now + self.delay);
        None
    }
}

/// Why a connection's driver ended with an error.
#[derive(Debug)]
pub(crate) enum DriverError {
    H2(h2::Error),
    /// A keep-alive PING went unanswered for this long.
    KeepAlive(Duration),
    /// The server closed the socket without a GOAWAY.
    Eof,
}

impl From<h2::Error> for DriverError {
    fn from(e: h2::Error) -> DriverError {
        DriverError::H2(e)
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::H2(e) => fmt::Display::fmt(e, f),
            DriverError::KeepAlive(timeout) => {
                write!(f, "http2 keep-alive ping not answered within {timeout:?}")
            }
            DriverError::Eof => f.write_str("the server closed the connection without a GOAWAY"),
        }
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DriverError::H2(e) => Some(e),
            DriverError::KeepAlive(_) | DriverError::Eof => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window {
            size: SPEC_WINDOW,
            max_bandwidth: 0.0,
            next_sample: None,
            delay: Duration::ZERO,
        }
    }

    const RTT: Duration = Duration::from_millis(10);

    #[test]
    fn a_sample_that_fills_the_window_at_a_new_bandwidth_doubles_it() {
        let now = Instant::now();
        let mut w = window();
        assert_eq!(w.sample(60_000, RTT, now), Some(120_000));
        // At once again, as long as it grows.
        assert_eq!(w.next_sample, None);
        assert_eq!(w.sample(100_000, RTT, now), Some(200_000));
    }

    #[test]
    fn a_sample_under_two_thirds_of_the_window_leaves_it_and_spaces_the_next() {
        let now = Instant::now();
        let mut w = window();
        assert_eq!(w.sample(40_000, RTT, now), None);
        assert_eq!(w.size, SPEC_WINDOW);
        assert_eq!(w.next_sample, Some(now + MIN_SAMPLE_DELAY));
        assert_eq!(w.sample(40_000, RTT, now), None);
        assert_eq!(w.next_sample, Some(now + 2 * MIN_SAMPLE_DELAY));
        for _ in 0..20 {
            w.sample(0, RTT, now);
        }
        assert_eq!(w.next_sample, Some(now + MAX_SAMPLE_DELAY));
    }

    #[test]
    fn a_full_window_at_a_bandwidth_already_seen_does_not_grow_it() {
        let now = Instant::now();
        let mut w = window();
        assert_eq!(w.sample(60_000, RTT, now), Some(120_000));
        // The window was filled, but over twice the time: the link, not the window, limits.
        assert_eq!(w.sample(90_000, 2 * RTT, now), None);
        assert_eq!(w.size, 120_000);
    }

    #[test]
    fn the_window_stops_at_sixteen_mib() {
        let now = Instant::now();
        let mut w = window();
        let mut bytes = 60_000u64;
        let mut last = SPEC_WINDOW;
        while let Some(size) = w.sample(bytes, RTT, now) {
            assert!(size > last && size <= MAX_WINDOW, "{size}");
            last = size;
            bytes = u64::from(size);
        }
        assert_eq!(w.size, MAX_WINDOW);
        assert_eq!(w.sample(u64::from(MAX_WINDOW) * 4, RTT / 2, now), None);
    }
}
