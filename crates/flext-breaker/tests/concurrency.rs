//! Threads racing on one breaker: the lock-free counts lose nothing, the first calls to a new
//! origin share one breaker, and a half-open breaker admits exactly its probes.
//!
//! The inner service answers with a ready future, so each thread drives its calls by polling
//! once with a no-op waker: no runtime, no sleeps.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use flext_breaker::{Breaker, BreakerConfig, BreakerLayer, ManualClock, State};
use flext_core::{BoxError, Origin};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};

const THREADS: usize = 4;

/// Answers at once with the status in `x-status` (200 by default), counting its calls.
#[derive(Clone, Debug, Default)]
struct Instant {
    calls: Arc<AtomicUsize>,
}

impl Service<Request<()>> for Instant {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let status = req
            .headers()
            .get("x-status")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(200);
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        std::future::ready(Ok(res))
    }
}

fn call(svc: &mut Breaker<Instant>, uri: &str, status: u16) -> Result<Response<()>, BoxError> {
    let req = Request::get(uri)
        .header("x-status", status.to_string())
        .body(())
        .unwrap();
    let future = pin!(svc.call(req));
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("the inner service answers at once"),
    }
}

/// Runs `f(thread index)` on `THREADS` threads released together.
fn race(f: impl Fn(usize) + Send + Sync + 'static) {
    let f = Arc::new(f);
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let (f, start) = (f.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                f(i);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn concurrent_calls_are_all_counted() {
    const CALLS: usize = 2_000;
    let layer = BreakerLayer::builder()
        .config(
            BreakerConfig::default()
                .consecutive_failures(0)
                .no_failure_rate(),
        )
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let svc = layer.layer(Instant::default());
    race(move |i| {
        let mut svc = svc.clone();
        for n in 0..CALLS {
            // Half of each thread's calls fail, interleaved differently per thread.
            let status = if (n + i) % 2 == 0 { 500 } else { 200 };
            let res = call(&mut svc, "http://busy.test/", status).unwrap();
            assert_eq!(res.status(), status);
        }
    });
    let origin: Origin = "http://busy.test".parse().unwrap();
    let s = layer.handle().snapshot(&origin).unwrap();
    let total = (THREADS * CALLS) as u64;
    assert_eq!(s.state, State::Closed);
    assert_eq!((s.window_calls, s.window_failures), (total, total / 2));
    assert_eq!(s.failure_rate, 0.5);
    assert_eq!((s.permitted, s.rejected), (total, 0));
}

#[test]
fn first_calls_to_a_new_origin_from_many_threads_share_one_breaker() {
    const ORIGINS: usize = 50;
    let layer = BreakerLayer::builder()
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let svc = layer.layer(Instant::default());
    race(move |_| {
        let mut svc = svc.clone();
        for n in 0..ORIGINS {
            call(&mut svc, &format!("http://n{n}.test/"), 200).unwrap();
        }
    });
    let handle = layer.handle();
    assert_eq!(handle.len(), ORIGINS);
    for (origin, s) in handle.snapshots() {
        assert_eq!(s.permitted, THREADS as u64, "{origin}");
    }
}

#[test]
fn a_half_open_breaker_admits_exactly_its_probes_under_contention() {
    const PROBES: u32 = 64;
    let clock = ManualClock::new();
    let closes = Arc::new(AtomicUsize::new(0));
    let counter = closes.clone();
    let layer = BreakerLayer::builder()
        .config(
            BreakerConfig::default()
                .consecutive_failures(1)
                .half_open_probes(PROBES)
                .jitter(0.0),
        )
        .clock(clock.clone())
        .on_transition(move |t| {
            if t.to == State::Closed {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();
    let inner = Instant::default();
    let mut svc = layer.layer(inner.clone());
    call(&mut svc, "http://probe.test/", 503).unwrap();
    clock.advance(Duration::from_secs(30));

    // The futures are kept unpolled until every thread is done, so no probe ends (and the
    // breaker cannot close) during the race.
    let futures = Arc::new(Mutex::new(Vec::new()));
    let sink = futures.clone();
    race(move |_| {
        let mut svc = svc.clone();
        let mut mine = Vec::new();
        for _ in 0..PROBES {
            let req = Request::get("http://probe.test/").body(()).unwrap();
            mine.push(Box::pin(svc.call(req)));
        }
        sink.lock().unwrap().extend(mine);
    });
    // One call opened the breaker; exactly PROBES more reached the server.
    assert_eq!(inner.calls.load(Ordering::Relaxed), 1 + PROBES as usize);

    let mut futures = std::mem::take(&mut *futures.lock().unwrap());
    assert_eq!(futures.len(), THREADS * PROBES as usize);
    let (mut ok, mut refused) = (0, 0);
    for future in &mut futures {
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(Ok(_)) => ok += 1,
            Poll::Ready(Err(e)) => {
                let open = flext_breaker::CircuitOpen::find(&*e).unwrap();
                assert!(open.is_half_open());
                refused += 1;
            }
            Poll::Pending => unreachable!(),
        }
    }
    assert_eq!((ok, refused), (PROBES, (THREADS - 1) * PROBES as usize));
    // Every probe succeeded: closed, once.
    let origin: Origin = "http://probe.test".parse().unwrap();
    let s = layer.handle().snapshot(&origin).unwrap();
    assert_eq!(s.state, State::Closed);
    assert_eq!(closes.load(Ordering::Relaxed), 1);
    assert_eq!(s.rejected, (THREADS - 1) as u64 * u64::from(PROBES));
}
