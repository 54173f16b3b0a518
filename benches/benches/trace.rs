//! Overhead of flext-trace's `TraceLayer` over a no-op inner service (a `service_fn` answering
//! 200 with a ready future), with no subscriber installed and with a formatting subscriber
//! writing to `std::io::sink()`, next to tower-http's `TraceLayer` doing the same.
//!
//! Each iteration is one `poll_ready` + `call` + poll of the response future to completion,
//! with a noop waker (no runtime). The request carries one header (`accept`) so that the
//! header map already has room, as a real client's does. Allocations per call are printed
//! first.
//!
//! With the formatting subscriber the level is DEBUG, so that tower-http's default span and
//! events (all DEBUG) are written too; flext writes its INFO span and INFO event.
//!
//! ```text
//! cargo bench -p flext-benches --bench trace -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use flext_trace::{HttpClientMetrics, TraceContext, TraceLayer};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::Empty;
use tower::{Layer, Service, service_fn};
use tracing::level_filters::LevelFilter;

#[global_allocator]
static ALLOC: &stats_alloc::StatsAlloc<std::alloc::System> = flext_benches::GLOBAL;

const URI: &str = "http://bench.internal:8080/items?page=2&sig=s3cr3t";

static PARSED: LazyLock<Uri> = LazyLock::new(|| Uri::from_static(URI));

type Body = Empty<Bytes>;

fn request() -> Request<Body> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = PARSED.clone();
    req.headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    req
}

type NoopFn = fn(Request<Body>) -> Ready<Result<Response<Body>, Infallible>>;

fn noop(_req: Request<Body>) -> Ready<Result<Response<Body>, Infallible>> {
    ready(Ok(Response::new(Empty::new())))
}

fn inner() -> tower::util::ServiceFn<NoopFn> {
    service_fn(noop as NoopFn)
}

/// One call, start to end, as a client would make it.
#[inline]
fn one_call<S, B>(svc: &mut S)
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("not ready: {:?}", other.map(|r| r.err())),
    }
    let fut = pin!(svc.call(request()));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(response)) => {
            black_box(response);
        }
        Poll::Ready(Err(e)) => panic!("error: {e:?}"),
        Poll::Pending => panic!("pending"),
    }
}

fn sink_subscriber() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(LevelFilter::DEBUG)
        .finish()
}

fn print_allocations<S, B>(name: &str, svc: &mut S)
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    // Warm up (first-time series creation, lazies), then count.
    for _ in 0..100 {
        one_call(svc);
    }
    let (allocs, bytes) = flext_benches::measure_allocations(10_000, || one_call(svc));
    println!("{name:<44} {allocs:>5.2} allocations/call, {bytes:>7.1} bytes/call");
}

/// The CPU time per call of `svc`, the best of three runs of `calls` calls, printed.
fn print_cpu_time<S, B>(name: &str, svc: &mut S, calls: u64) -> Option<f64>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let best = flext_benches::cpu_ns_per_call(3, calls, || one_call(svc))?;
    println!("{name:<44} {best:>8.1} ns/call of CPU time");
    Some(best)
}

fn bench(c: &mut Criterion) {
    let mut baseline = inner();
    let mut flext = TraceLayer::attempt().layer(inner());
    let mut flext_always = TraceLayer::attempt()
        .trace_context(TraceContext::Always)
        .layer(inner());
    let mut flext_quiet = TraceLayer::attempt()
        .trace_context(TraceContext::Off)
        .layer(inner());
    let metrics = HttpClientMetrics::new();
    let mut flext_metrics = TraceLayer::attempt()
        .metrics(metrics.clone())
        .layer(inner());
    let mut logical = TraceLayer::logical().layer(inner());
    let mut peer = tower_http::trace::TraceLayer::new_for_http().layer(inner());

    println!("allocations, no subscriber:");
    print_allocations("baseline (no layer)", &mut baseline);
    print_allocations("flext attempt (default)", &mut flext);
    print_allocations("flext attempt, traceparent always", &mut flext_always);
    print_allocations("flext attempt, traceparent off", &mut flext_quiet);
    print_allocations("flext attempt + metrics", &mut flext_metrics);
    print_allocations("flext logical", &mut logical);
    print_allocations("tower-http TraceLayer", &mut peer);
    println!("CPU time per call, no subscriber (best of 3 x 2M calls):");
    let base = print_cpu_time("baseline (no layer)", &mut baseline, 2_000_000);
    let over = |v: Option<f64>| {
        if let (Some(v), Some(b)) = (v, base) {
            println!("{:<44} {:>8.1} ns/call over the baseline", "", v - b);
        }
    };
    over(print_cpu_time(
        "flext attempt (default)",
        &mut flext,
        2_000_000,
    ));
    over(print_cpu_time(
        "flext attempt, traceparent always",
        &mut flext_always,
        2_000_000,
    ));
    over(print_cpu_time(
        "flext attempt, traceparent off",
        &mut flext_quiet,
        2_000_000,
    ));
    over(print_cpu_time(
        "flext attempt + metrics",
        &mut flext_metrics,
        2_000_000,
    ));
    over(print_cpu_time("flext logical", &mut logical, 2_000_000));
    over(print_cpu_time(
        "tower-http TraceLayer",
        &mut peer,
        2_000_000,
    ));

    let mut group = c.benchmark_group("trace/no-subscriber");
    group.bench_function("baseline", |b| b.iter(|| one_call(&mut baseline)));
    group.bench_function("flext-attempt", |b| b.iter(|| one_call(&mut flext)));
    group.bench_function("flext-attempt-traceparent-always", |b| {
        b.iter(|| one_call(&mut flext_always));
    });
    group.bench_function("flext-attempt-traceparent-off", |b| {
        b.iter(|| one_call(&mut flext_quiet));
    });
    group.bench_function("flext-attempt-metrics", |b| {
        b.iter(|| one_call(&mut flext_metrics));
    });
    group.bench_function("flext-logical", |b| b.iter(|| one_call(&mut logical)));
    group.bench_function("tower-http", |b| b.iter(|| one_call(&mut peer)));
    group.finish();

    // Only now is a subscriber ever installed: tracing caches callsite interest, so the
    // no-subscriber figures must come first.
    println!("allocations, fmt subscriber to a sink (DEBUG):");
    tracing::subscriber::with_default(sink_subscriber(), || {
        print_allocations("flext attempt (traceparent)", &mut flext);
        print_allocations("flext attempt + metrics", &mut flext_metrics);
        print_allocations("tower-http TraceLayer", &mut peer);
    });

    println!("CPU time per call, fmt subscriber to a sink (best of 3 x 200k calls):");
    tracing::subscriber::with_default(sink_subscriber(), || {
        print_cpu_time("flext attempt (traceparent)", &mut flext, 200_000);
        print_cpu_time("flext attempt + metrics", &mut flext_metrics, 200_000);
        print_cpu_time("tower-http TraceLayer", &mut peer, 200_000);
    });

    let mut group = c.benchmark_group("trace/fmt-sink");
    tracing::subscriber::with_default(sink_subscriber(), || {
        group.bench_function("flext-attempt", |b| b.iter(|| one_call(&mut flext)));
        group.bench_function("flext-attempt-metrics", |b| {
            b.iter(|| one_call(&mut flext_metrics));
        });
        group.bench_function("tower-http", |b| b.iter(|| one_call(&mut peer)));
    });
    group.finish();
    black_box(metrics.snapshot().request_count());
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
