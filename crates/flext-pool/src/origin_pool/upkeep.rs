//! Housekeeping of an origin: closing idle and expired connections, and snapshots.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::OriginPool;
use crate::metrics::{CloseReason, OriginSnapshot};

impl<B: 'static> OriginPool<B> {
    /// Closes connections idle too long or past their lifetime. Returns whether the origin
    /// holds nothing any more (no connection, connect or waiter).
    pub(crate) fn reap(&self, now: Instant) -> bool {
        let mut st = self.lock();
        let idle_timeout = self.config.idle_timeout;
        st.idle.retain(|i| {
            let reason = if i.conn.is_expired(now) {
                Some(CloseReason::Lifetime)
            } else if idle_timeout.is_some_and(|t| now.saturating_duration_since(i.since) >= t) {
                Some(CloseReason::Idle)
            } else {
                None
            };
            if let Some(reason) = reason {
                i.conn.close_h1(reason);
            }
            reason.is_none()
        });
        let now_ns = self.nanos(now);
        let mut done = Vec::new();
        for c in &st.h2 {
            let Some(h2) = c.h2() else { continue };
            let idle = h2.active.load(Ordering::SeqCst) == 0;
            let idle_for =
                Duration::from_nanos(now_ns.saturating_sub(h2.idle_since.load(Ordering::Relaxed)));
            let too_idle = idle && idle_timeout.is_some_and(|t| idle_for >= t);
            if c.is_expired(now) || too_idle {
                h2.retired.store(true, Ordering::Release);
            }
            if idle && !c.h2_open_for_streams(now) {
                done.push(c.clone());
            }
        }
        for c in &done {
            self.remove_h2_locked(&mut st, c, now);
        }
        st.waiters.is_empty() && st.connecting == 0 && st.h1_open == 0 && st.h2.is_empty()
    }

    pub(crate) fn snapshot(&self) -> OriginSnapshot {
        let st = self.lock();
        let mut streams = 0;
        let mut h2_idle = 0;
        let mut peer_min: Option<u32> = None;
        for c in &st.h2 {
            if let Some(h2) = c.h2() {
                let a = h2.active.load(Ordering::Relaxed);
                streams += a;
                h2_idle += usize::from(a == 0);
            }
            if let Some(m) = c
                .link
                .peer
                .as_ref()
                .and_then(|p| p.max_concurrent_streams())
            {
                peer_min = Some(peer_min.map_or(m, |x| x.min(m)));
            }
        }
        OriginSnapshot {
            origin: self.origin.clone(),
            protocol: st.proto,
            http1_connections: st.h1_open,
            http2_connections: st.h2.len(),
            connecting: st.connecting,
            idle: st.idle.len() + h2_idle,
            in_use: st.h1_open.saturating_sub(st.idle.len()) + (st.h2.len() - h2_idle),
            waiters: st.waiters.len(),
            http2_streams_in_flight: streams,
            http2_peer_max_streams: peer_min,
            counters: self.metrics.counters(),
            connect_time: self.metrics.connect_time(),
            acquire_time: self.metrics.acquire_time(),
        }
    }
}
