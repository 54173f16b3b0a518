//! Overhead of attaching a credential over a no-op inner service (a `service_fn` answering
//! with a ready future): flext-auth's static bearer (`AuthLayer<Credential>`, which hands the
//! request on as it came, as tower-http's `AddAuthorization` does), its cached provider on a
//! warm token (`AuthLayer<CachedProvider>`, with and without the 401 replay, which keeps a copy
//! of the request head; its inner service gets a `ReplayBody`), and tower-http's
//! `AddAuthorization` bearer in the same group, beside the inner service alone and the inner
//! service behind the request-body conversion alone (`ReplayBody::once`).
//!
//! The tokio runtime the cached token was fetched on stays up while the calls are measured, as
//! it does in a client: the token's refresh point is registered with its timer, which is what
//! lets the warm path skip reading tokio's clock (a runtime that shuts down fires its timers,
//! and the warm path then reads the clock on every call, about 20 ns more).
//!
//! Each iteration is one `poll_ready` + `call` + poll of the response future, with a noop
//! waker (no runtime). The inner service keeps the request head and the next iteration reuses
//! it with its headers cleared, in every variant: inserting into an empty `HeaderMap`
//! allocates its table whoever does it, and a client's requests usually carry headers already.
//! Allocations per call are printed first, counted the same way.
//!
//! ```text
//! cargo bench -p flext-benches --bench auth -- --warm-up-time 1 --measurement-time 3
//! ```

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use flext_auth::{AuthLayer, CachedProvider, Credential, Token, provider_fn};
use flext_core::{Origin, ReplayBody};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::Empty;
use tokio::runtime::Runtime;
use tower::{Layer, Service, service_fn};
use tower_http::auth::AddAuthorizationLayer;

#[global_allocator]
static ALLOC: &stats_alloc::StatsAlloc<std::alloc::System> = flext_benches::GLOBAL;

const URI: &str = "https://api.example.com/v1/items";
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl";

static PARSED: LazyLock<Uri> = LazyLock::new(|| Uri::from_static(URI));

type Body = Empty<Bytes>;

fn request() -> Request<Body> {
    let mut req = Request::new(Body::new());
    *req.uri_mut() = PARSED.clone();
    *req.headers_mut() = HeaderMap::with_capacity(8);
    req
}

thread_local! {
    /// The head of the last request the no-op service got, for the next iteration to reuse.
    static HEAD: RefCell<Option<Parts>> = const { RefCell::new(None) };
}

/// The no-op inner service: keeps the request head for reuse and answers at once.
fn noop<B>(req: Request<B>) -> NoopFut {
    let (head, body) = req.into_parts();
    drop(black_box(body));
    HEAD.with(|slot| *slot.borrow_mut() = Some(head));
    ready(Ok(Response::new(())))
}

type NoopFut = Ready<Result<Response<()>, Infallible>>;
type Plain = tower::util::ServiceFn<fn(Request<Body>) -> NoopFut>;
type Replay = tower::util::ServiceFn<fn(Request<ReplayBody<Body>>) -> NoopFut>;

fn plain() -> Plain {
    service_fn(noop::<Body> as fn(_) -> _)
}

fn replay() -> Replay {
    service_fn(noop::<ReplayBody<Body>> as fn(_) -> _)
}

/// One call, start to end, as a client would make it, with the head the previous call left
/// (its headers cleared).
#[inline]
fn one_call<S>(svc: &mut S)
where
    S: Service<Request<Body>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    let head = HEAD.with(|slot| slot.borrow_mut().take()).map(|mut head| {
        head.headers.clear();
        head.extensions.clear();
        head
    });
    let req = match head {
        Some(head) => Request::from_parts(head, Body::new()),
        None => request(),
    };
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("service not ready: {:?}", other.map(|r| r.is_ok())),
    }
    let fut = pin!(svc.call(black_box(req)));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(res)) => drop(black_box(res)),
        Poll::Ready(Err(e)) => panic!("call failed: {e:?}"),
        Poll::Pending => panic!("a warm call must not wait"),
    }
}

/// The `Authorization` the last call sent.
fn sent_authorization() -> Option<HeaderValue> {
    HEAD.with(|slot| {
        let head = slot.borrow();
        head.as_ref()?.headers.get("authorization").cloned()
    })
}

/// The no-op service behind the body conversion every request with a cached provider goes
/// through (the inner service gets a `ReplayBody`, so that a 401 can be replayed), and nothing
/// else: the part of that overhead that is the body type, not the credential.
type WrapOnly = tower::util::MapRequest<Replay, fn(Request<Body>) -> Request<ReplayBody<Body>>>;

fn wrap_only() -> WrapOnly {
    tower::util::MapRequest::new(replay(), |req: Request<Body>| req.map(ReplayBody::once))
}

fn origin() -> Origin {
    "https://api.example.com".parse().unwrap()
}

fn cached(rt: &Runtime, replay: bool) -> AuthLayer<CachedProvider> {
    let cache = CachedProvider::new(provider_fn(|| async {
        Ok::<_, Infallible>(Token::new(TOKEN).expires_in(Duration::from_secs(3600)))
    }));
    // Warm it: the measured calls find the token cached.
    rt.block_on(cache.prefetch()).unwrap();
    AuthLayer::builder(cache)
        .origin(origin())
        .replay_on_unauthorized(replay)
        .build()
        .unwrap()
}

fn allocations<S>(name: &str, mut svc: S)
where
    S: Service<Request<Body>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    // Warm up (a shared header value is promoted to shared on its first clone).
    one_call(&mut svc);
    let (allocs, bytes) = flext_benches::measure_allocations(10_000, || one_call(&mut svc));
    println!("auth/{name}: {allocs:.2} allocations, {bytes:.0} bytes per call");
}

struct Layers {
    bearer: AuthLayer<Credential>,
    tower_http: AddAuthorizationLayer,
    warm: AuthLayer<CachedProvider>,
    warm_no_replay: AuthLayer<CachedProvider>,
    /// The runtime the cached tokens were fetched on, kept up as a client's would be.
    _rt: Runtime,
}

fn layers() -> Layers {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    Layers {
        bearer: AuthLayer::builder(Credential::bearer(TOKEN).unwrap())
            .origin(origin())
            .build()
            .unwrap(),
        tower_http: AddAuthorizationLayer::bearer(TOKEN).as_sensitive(true),
        warm: cached(&rt, true),
        warm_no_replay: cached(&rt, false),
        _rt: rt,
    }
}

/// One call of a variant, as a boxed closure.
type Call = Box<dyn FnMut()>;

fn print_allocations() {
    let Layers {
        bearer,
        tower_http,
        warm,
        warm_no_replay,
        _rt,
    } = layers();
    // Each variant checks once that the header really is attached.
    let expected = format!("Bearer {TOKEN}");
    let check = || {
        let sent = sent_authorization().expect("the credential was attached");
        assert_eq!(sent, expected.as_str());
        assert!(sent.is_sensitive());
    };
    one_call(&mut bearer.layer(plain()));
    check();
    one_call(&mut warm.layer(replay()));
    check();
    one_call(&mut tower_http.layer(plain()));
    assert_eq!(sent_authorization().unwrap(), expected.as_str());

    allocations("baseline (no-op inner service)", plain());
    allocations("baseline + ReplayBody::once", wrap_only());
    allocations("flext static bearer", bearer.layer(plain()));
    allocations(
        "tower-http AddAuthorization bearer",
        tower_http.layer(plain()),
    );
    allocations("flext cached provider, warm", warm.layer(replay()));
    allocations(
        "flext cached provider, warm, no 401 replay",
        warm_no_replay.layer(replay()),
    );

    // CPU time per call (this thread's, best of 3 rounds of 5 runs of 1M calls, the variants
    // alternating so that all see the same load): steadier than wall time on a shared machine.
    let mut base = plain();
    let mut variants: Vec<(&str, Call)> = vec![
        ("flext static bearer", {
            let mut svc = bearer.layer(plain());
            Box::new(move || one_call(&mut svc))
        }),
        ("tower-http AddAuthorization bearer", {
            let mut svc = tower_http.layer(plain());
            Box::new(move || one_call(&mut svc))
        }),
        ("flext cached provider, warm", {
            let mut svc = warm.layer(replay());
            Box::new(move || one_call(&mut svc))
        }),
        ("flext cached provider, warm, no 401 replay", {
            let mut svc = warm_no_replay.layer(replay());
            Box::new(move || one_call(&mut svc))
        }),
    ];
    let mut best_base = f64::INFINITY;
    let mut best = vec![f64::INFINITY; variants.len()];
    for _ in 0..3 {
        if let Some(b) = flext_benches::cpu_ns_per_call(5, 1_000_000, || one_call(&mut base)) {
            best_base = best_base.min(b);
        }
        for ((_, f), best) in variants.iter_mut().zip(best.iter_mut()) {
            if let Some(v) = flext_benches::cpu_ns_per_call(5, 1_000_000, &mut *f) {
                *best = best.min(v);
            }
        }
    }
    println!("CPU time per call: no-op {best_base:.1} ns");
    for ((name, _), v) in variants.iter().zip(&best) {
        println!(
            "CPU time per call: {name} {v:.1} ns (+{:.1} ns)",
            v - best_base
        );
    }
}

fn bench(c: &mut Criterion) {
    let Layers {
        bearer,
        tower_http,
        warm,
        warm_no_replay,
        _rt,
    } = layers();
    let mut group = c.benchmark_group("auth");
    let mut svc = plain();
    group.bench_function("baseline (no-op inner service)", |b| {
        b.iter(|| one_call(&mut svc));
    });
    let mut svc = wrap_only();
    group.bench_function("baseline + ReplayBody::once", |b| {
        b.iter(|| one_call(&mut svc));
    });
    let mut svc = bearer.layer(plain());
    group.bench_function("flext static bearer", |b| {
        b.iter(|| one_call(&mut svc));
    });
    let mut svc = tower_http.layer(plain());
    group.bench_function("tower-http AddAuthorization bearer", |b| {
        b.iter(|| one_call(&mut svc));
    });
    let mut svc = warm.layer(replay());
    group.bench_function("flext cached provider, warm", |b| {
        b.iter(|| one_call(&mut svc));
    });
    let mut svc = warm_no_replay.layer(replay());
    group.bench_function("flext cached provider, warm, no 401 replay", |b| {
        b.iter(|| one_call(&mut svc));
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    print_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
