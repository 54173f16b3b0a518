//! Cost of flext's whole default stack without I/O: `flext_api::stack(&ClientConfig::default())`
//! over a no-op inner service (a `service_fn` answering 200 with a ready future), next to the
//! inner service alone, and with one part of the stack turned off at a time (retry, breaker,
//! trace, redirects) to show what each costs inside the stack.
//!
//! Each iteration is what `flext_api::Client::execute` does with its stack: clone the boxed
//! service, `poll_ready`, `call`, and poll the response future to completion, with a noop
//! waker inside an entered tokio runtime (the timeout layers need its timer; nothing
//! sleeps). "reused" variants skip the clone, as a caller holding its own service would. No
//! tracing subscriber is installed. Allocations per call and CPU time per call (this thread's,
//! from the scheduler, so other processes' time is not counted) are printed first.
//!
//! ```text
//! cargo bench -p flext-benches --bench stack -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use flext_api::{AttemptBody, Body, ClientConfig, Propagate, StackService};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::Empty;
use tower::{Service, service_fn};

#[global_allocator]
static ALLOC: &stats_alloc::StatsAlloc<std::alloc::System> = flext_benches::GLOBAL;

const URI: &str = "http://bench.internal:8080/items/42";

static PARSED: LazyLock<Uri> = LazyLock::new(|| Uri::from_static(URI));

/// A GET as `Client::execute` hands it to the stack: a `User-Agent` header already set (the
/// client adds its default headers first), an empty in-memory body.
fn request() -> Request<Body> {
    let mut req = Request::new(Body::empty());
    *req.uri_mut() = PARSED.clone();
    req.headers_mut()
        .insert(header::USER_AGENT, HeaderValue::from_static("flext/0.1.0"));
    req
}

type Reply = Ready<Result<Response<Empty<Bytes>>, Infallible>>;

fn noop<B>(req: Request<B>) -> Reply {
    drop(black_box(req));
    ready(Ok(Response::new(Empty::new())))
}

/// The whole stack for `config` over the no-op service.
fn stack(config: &ClientConfig) -> StackService<Empty<Bytes>> {
    let layers = match flext_api::stack(config) {
        Ok(layers) => layers,
        Err(e) => panic!("invalid bench configuration: {e}"),
    };
    layers.layer(service_fn(noop::<AttemptBody>))
}

fn configs() -> Vec<(&'static str, ClientConfig)> {
    let full = ClientConfig::default();
    let mut no_retry = full.clone();
    no_retry.retry.enabled = false;
    let mut no_breaker = full.clone();
    no_breaker.breaker.enabled = false;
    let mut no_trace = full.clone();
    no_trace.trace.enabled = false;
    let mut no_traceparent = full.clone();
    no_traceparent.trace.propagate = Propagate::Off;
    let mut always_traceparent = full.clone();
    always_traceparent.trace.propagate = Propagate::Always;
    let mut no_redirects = full.clone();
    no_redirects.max_redirects = 0;
    let mut bare = full.clone();
    bare.retry.enabled = false;
    bare.breaker.enabled = false;
    bare.trace.enabled = false;
    bare.max_redirects = 0;
    vec![
        ("full default stack", full),
        ("retry off", no_retry),
        ("breaker off", no_breaker),
        ("trace off", no_trace),
        ("traceparent always", always_traceparent),
        ("traceparent off", no_traceparent),
        ("redirects off", no_redirects),
        ("all off (timeouts, boxing)", bare),
    ]
}

/// One call on `svc` itself.
#[inline]
fn one_call<S>(svc: &mut S)
where
    S: Service<Request<Body>, Response = Response<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => panic!("service failed: {e:?}"),
        Poll::Pending => panic!("service not ready"),
    }
    let mut fut = pin!(svc.call(black_box(request())));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(res)) => {
            black_box(res);
        }
        Poll::Ready(Err(e)) => panic!("call failed: {e:?}"),
        Poll::Pending => panic!("a no-op call is ready at once"),
    }
}

/// One call the way `Client::execute` makes it: on a clone of the shared service.
#[inline]
fn one_cloned_call(svc: &StackService<Empty<Bytes>>) {
    let mut clone = svc.clone();
    one_call(&mut clone);
}

/// Time this thread spent on a CPU, from the scheduler (Linux).
/// CPU ns per call of `f`, the best of three runs of `calls` calls.
fn cpu_ns_per_call(calls: u64, f: &mut dyn FnMut()) -> Option<f64> {
    flext_benches::cpu_ns_per_call(3, calls, f)
}

fn report(name: &str, base: Option<f64>, f: &mut dyn FnMut()) {
    for _ in 0..1_000 {
        f();
    }
    let (allocs, bytes) = flext_benches::measure_allocations(10_000, &mut *f);
    let cpu = cpu_ns_per_call(200_000, f);
    let cpu = match (cpu, base) {
        (Some(c), Some(b)) => format!("{c:>8.1} ns CPU/call ({:+.1} over the no-op)", c - b),
        (Some(c), None) => format!("{c:>8.1} ns CPU/call"),
        _ => "CPU time unavailable".to_owned(),
    };
    println!("{name:<44} {allocs:>5.2} allocs ({bytes:>6.0} B)  {cpu}");
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let _entered = runtime.enter();

    let mut baseline = service_fn(noop::<Body>);
    let stacks: Vec<(&str, StackService<Empty<Bytes>>)> = configs()
        .into_iter()
        .map(|(name, config)| (name, stack(&config)))
        .collect();

    println!("per call, no subscriber (CPU time: best of 3 x 200k calls):");
    let base = {
        for _ in 0..1_000 {
            one_call(&mut baseline);
        }
        let (allocs, bytes) =
            flext_benches::measure_allocations(10_000, || one_call(&mut baseline));
        let cpu = cpu_ns_per_call(200_000, &mut || one_call(&mut baseline));
        println!(
            "{:<44} {allocs:>5.2} allocs ({bytes:>6.0} B)  {:>8.1} ns CPU/call",
            "no-op service alone",
            cpu.unwrap_or(f64::NAN)
        );
        cpu
    };
    for (name, svc) in &stacks {
        report(&format!("{name}, cloned per call"), base, &mut || {
            one_cloned_call(svc);
        });
    }
    {
        let mut reused = stacks[0].1.clone();
        report("full default stack, reused", base, &mut || {
            one_call(&mut reused);
        });
    }

    let mut group = c.benchmark_group("stack/no-io");
    group.bench_function("no-op service (baseline)", |b| {
        b.iter(|| one_call(&mut baseline));
    });
    for (name, svc) in &stacks {
        group.bench_function(*name, |b| b.iter(|| one_cloned_call(svc)));
    }
    let mut reused = stacks[0].1.clone();
    group.bench_function("full default stack, reused", |b| {
        b.iter(|| one_call(&mut reused));
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
