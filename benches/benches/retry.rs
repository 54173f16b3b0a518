//! Success-path overhead of the retry layer over a no-op inner service (a `service_fn`
//! answering 200 with a ready future), with an empty body and with a small in-memory body
//! (`Full<Bytes>`, 256 bytes), and `tower::retry::Retry` with an equivalent hand-written
//! policy (clone the request, retry a 5xx up to 3 times) in the same group.
//!
//! Each iteration is one `poll_ready` + `call` + poll of the response future to completion,
//! with a noop waker (no runtime: nothing is retried, so nothing sleeps). Allocations per call
//! are printed first.
//!
//! ```text
//! cargo bench -p flext-benches --bench retry -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use flext_core::ReplayBody;
use flext_retry::RetryLayer;
use http::{Request, Response, Uri};
use http_body_util::{Empty, Full};
use tower::retry::Policy;
use tower::{Layer, Service, service_fn};

#[global_allocator]
static ALLOC: &stats_alloc::StatsAlloc<std::alloc::System> = flext_benches::GLOBAL;

const URI: &str = "http://bench.internal/items";

static PARSED: LazyLock<Uri> = LazyLock::new(|| Uri::from_static(URI));

/// 256 bytes, shared: a clone is a reference count, as for a body built once and sent often.
static SMALL: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(vec![b'x'; 256]));

type Body = Full<Bytes>;

fn empty_request() -> Request<Body> {
    // A clone of a static URI: building the request allocates nothing and parses nothing.
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = PARSED.clone();
    req
}

fn small_request() -> Request<Body> {
    let mut req = Request::new(Full::new(SMALL.clone()));
    *req.uri_mut() = PARSED.clone();
    req
}

type Reply = Ready<Result<Response<Empty<Bytes>>, Infallible>>;

fn noop<B>(req: Request<B>) -> Reply {
    drop(black_box(req));
    ready(Ok(Response::new(Empty::new())))
}

/// One call, start to end, as a client would make it.
#[inline]
fn one_call<S, B>(svc: &mut S, make: fn() -> Request<B>)
where
    S: Service<Request<B>, Response = Response<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("service not ready: {:?}", other.map(|r| r.is_ok())),
    }
    let mut fut = pin!(svc.call(black_box(make())));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(res)) => {
            black_box(res);
        }
        Poll::Ready(Err(e)) => panic!("call failed: {e:?}"),
        Poll::Pending => panic!("a no-op call is ready at once"),
    }
}

/// The policy a tower user writes by hand: clone the request, retry a 5xx up to 3 times.
#[derive(Clone)]
struct ServerErrors {
    retries_left: u32,
}

impl<B: Clone, Res> Policy<Request<B>, Response<Res>, Infallible> for ServerErrors {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<B>,
        result: &mut Result<Response<Res>, Infallible>,
    ) -> Option<Ready<()>> {
        match result {
            Ok(res) if res.status().is_server_error() && self.retries_left > 0 => {
                self.retries_left -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        Some(req.clone())
    }
}

fn baseline() -> impl Service<Request<Body>, Response = Response<Empty<Bytes>>, Error = Infallible>
{
    service_fn(noop::<Body>)
}

fn flext() -> impl Service<Request<Body>, Response = Response<Empty<Bytes>>, Error: std::fmt::Debug>
{
    RetryLayer::new().layer(service_fn(noop::<ReplayBody<Body>>))
}

fn tower_retry()
-> impl Service<Request<Body>, Response = Response<Empty<Bytes>>, Error = Infallible> {
    tower::retry::RetryLayer::new(ServerErrors { retries_left: 3 }).layer(service_fn(noop::<Body>))
}

fn print_allocations() {
    const N: u64 = 100_000;
    let (mut base, mut ours, mut theirs) = (baseline(), flext(), tower_retry());
    for (body, make) in [
        ("empty body", empty_request as fn() -> Request<Body>),
        ("256 B Full<Bytes>", small_request),
    ] {
        for _ in 0..1_000 {
            one_call(&mut base, make);
            one_call(&mut ours, make);
            one_call(&mut theirs, make);
        }
        let request = flext_benches::measure_allocations(N, || drop(black_box(make())));
        for (name, (allocs, bytes)) in [
            ("building the request", request),
            (
                "no-op service",
                flext_benches::measure_allocations(N, || one_call(&mut base, make)),
            ),
            (
                "flext-retry",
                flext_benches::measure_allocations(N, || one_call(&mut ours, make)),
            ),
            (
                "tower::retry",
                flext_benches::measure_allocations(N, || one_call(&mut theirs, make)),
            ),
        ] {
            println!("allocations per call, {body}, {name}: {allocs:.2} ({bytes:.1} bytes)");
        }
    }
}

/// The best of 15 batches of 200,000 calls, in ns of this thread's CPU time per call: on a
/// shared 2-core machine the fastest batch is the one least disturbed by other processes, so
/// it is the figure that compares across runs; criterion's medians below include the
/// disturbance.
fn print_best_batches() {
    const BATCH: u64 = 200_000;
    let best =
        |f: &mut dyn FnMut()| flext_benches::cpu_ns_per_call(15, BATCH, f).unwrap_or(f64::NAN);
    let (mut base, mut ours, mut theirs) = (baseline(), flext(), tower_retry());
    for (body, make) in [
        ("empty body", empty_request as fn() -> Request<Body>),
        ("256 B Full<Bytes>", small_request),
    ] {
        let b = best(&mut || one_call(&mut base, make));
        let o = best(&mut || one_call(&mut ours, make));
        let t = best(&mut || one_call(&mut theirs, make));
        println!(
            "best batch, {body}: no-op {b:.1} ns, flext-retry {o:.1} ns (+{:.1}), tower::retry {t:.1} ns (+{:.1})",
            o - b,
            t - b
        );
    }
}

fn success_path(c: &mut Criterion) {
    for (body, make) in [
        ("empty body", empty_request as fn() -> Request<Body>),
        ("256 B body", small_request),
    ] {
        let mut group = c.benchmark_group(format!("retry/{body}"));
        let mut base = baseline();
        group.bench_function("no-op service (baseline)", |b| {
            b.iter(|| one_call(&mut base, make));
        });
        let mut ours = flext();
        group.bench_function("flext-retry", |b| b.iter(|| one_call(&mut ours, make)));
        let mut theirs = tower_retry();
        group.bench_function("tower::retry", |b| b.iter(|| one_call(&mut theirs, make)));
        group.finish();
    }
}

criterion_group!(benches, success_path);

fn main() {
    print_allocations();
    print_best_batches();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
