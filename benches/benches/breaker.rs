//! Closed-path overhead of the breaker over a no-op inner service (a `service_fn` answering
//! 200 with a ready future): one thread, and two threads calling the same origin at once,
//! with tower-resilience's circuit breaker in the same group for a side-by-side figure.
//!
//! Each iteration is one `poll_ready` + `call` + poll of the response future to completion,
//! with a noop waker (no runtime). Allocations per call are printed first.
//!
//! ```text
//! cargo bench -p flext-benches --bench breaker -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Barrier, LazyLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use flext_breaker::BreakerLayer;
use http::{Request, Response, Uri};
use tower::{Layer, Service, service_fn};
use tower_resilience_circuitbreaker::CircuitBreakerLayer;

#[global_allocator]
static ALLOC: &stats_alloc::StatsAlloc<std::alloc::System> = flext_benches::GLOBAL;

const URI: &str = "http://bench.internal/items";

static PARSED: LazyLock<Uri> = LazyLock::new(|| Uri::from_static(URI));

fn request() -> Request<()> {
    // A clone of a static URI and an empty body: building the request allocates nothing
    // and parses nothing.
    let mut req = Request::new(());
    *req.uri_mut() = PARSED.clone();
    req
}

type NoopFn = fn(Request<()>) -> Ready<Result<Response<()>, Infallible>>;

fn noop(_req: Request<()>) -> Ready<Result<Response<()>, Infallible>> {
    ready(Ok(Response::new(())))
}

fn inner() -> tower::util::ServiceFn<NoopFn> {
    service_fn(noop as NoopFn)
}

/// One call, start to end, as a client would make it.
#[inline]
fn one_call<S>(svc: &mut S)
where
    S: Service<Request<()>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("service not ready: {:?}", other.map(|r| r.is_ok())),
    }
    let mut fut = pin!(svc.call(black_box(request())));
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(res)) => {
                black_box(res);
                return;
            }
            Poll::Ready(Err(e)) => panic!("call failed: {e:?}"),
            // Only a breaker that waits on a lock held by the other thread gets here: poll
            // again, as an executor would once woken.
            Poll::Pending => std::hint::spin_loop(),
        }
    }
}

/// Two threads, each making `iters` calls on its own clone of `svc`; the time per call of
/// one thread.
fn contended<S>(svc: &S, iters: u64) -> Duration
where
    S: Service<Request<()>, Response = Response<()>> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    let start_line = Barrier::new(2);
    std::thread::scope(|scope| {
        let mut other = svc.clone();
        let start_line = &start_line;
        scope.spawn(move || {
            start_line.wait();
            for _ in 0..iters {
                one_call(&mut other);
            }
        });
        let mut mine = svc.clone();
        start_line.wait();
        let start = Instant::now();
        for _ in 0..iters {
            one_call(&mut mine);
        }
        start.elapsed()
    })
}

fn flext()
-> impl Service<Request<()>, Response = Response<()>, Error = flext_core::BoxError> + Clone + Send {
    BreakerLayer::new().layer(inner())
}

fn resilience()
-> impl Service<Request<()>, Response = Response<()>, Error: std::fmt::Debug> + Clone + Send {
    let layer = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .build()
        .expect("tower-resilience config");
    layer.layer(inner())
}

fn print_allocations() {
    const N: u64 = 100_000;
    let mut baseline = inner();
    let mut breaker = flext();
    let mut peer = resilience();
    // Warm up: the breaker's first call for an origin makes its entry.
    for _ in 0..1_000 {
        one_call(&mut baseline);
        one_call(&mut breaker);
        one_call(&mut peer);
    }
    for (name, (allocs, bytes)) in [
        (
            "no-op service",
            flext_benches::measure_allocations(N, || one_call(&mut baseline)),
        ),
        (
            "flext-breaker",
            flext_benches::measure_allocations(N, || one_call(&mut breaker)),
        ),
        (
            "tower-resilience-circuitbreaker",
            flext_benches::measure_allocations(N, || one_call(&mut peer)),
        ),
    ] {
        println!("allocations per call, closed path, {name}: {allocs:.2} ({bytes:.1} bytes)");
    }
    // CPU time per call (this thread's, best of 5 runs of 2M calls): steadier than wall time
    // on a shared machine. Baseline and breaker alternate so that both see the same load.
    let (mut base, mut flext) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let cpu = |svc: &mut dyn FnMut()| flext_benches::cpu_ns_per_call(5, 2_000_000, svc);
        if let (Some(b), Some(f)) = (
            cpu(&mut || one_call(&mut baseline)),
            cpu(&mut || one_call(&mut breaker)),
        ) {
            base = base.min(b);
            flext = flext.min(f);
        }
    }
    if base.is_finite() {
        println!(
            "CPU time per call, closed path: no-op {base:.1} ns, flext-breaker {flext:.1} ns (+{:.1} ns)",
            flext - base
        );
    }
}

fn closed_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker/closed");

    let mut baseline = inner();
    group.bench_function("no-op service (baseline)", |b| {
        b.iter(|| one_call(&mut baseline));
    });
    let mut breaker = flext();
    group.bench_function("flext-breaker/1 thread", |b| {
        b.iter(|| one_call(&mut breaker));
    });
    let mut peer = resilience();
    group.bench_function("tower-resilience/1 thread", |b| {
        b.iter(|| one_call(&mut peer));
    });

    let baseline = inner();
    group.bench_function("no-op service (baseline)/2 threads", |b| {
        b.iter_custom(|iters| contended(&baseline, iters));
    });
    let breaker = flext();
    group.bench_function("flext-breaker/2 threads", |b| {
        b.iter_custom(|iters| contended(&breaker, iters));
    });
    let peer = resilience();
    group.bench_function("tower-resilience/2 threads", |b| {
        b.iter_custom(|iters| contended(&peer, iters));
    });
    group.finish();
}

criterion_group!(benches, closed_path);

fn main() {
    print_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
