//! Random sequences of outcomes, held and cancelled calls, operator commands and clock steps,
//! driven through the real `Breaker` service and through a plain sequential model of the
//! rules; both must agree after every step.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::time::Duration;

use flext_breaker::{BreakerConfig, BreakerLayer, CircuitOpen, ManualClock, State};
use flext_core::{Classify, Failure, FailureKind, Origin, Outcome, Sent};
use http::{HeaderMap, Request, Response, StatusCode};
use proptest::prelude::*;
use tokio::sync::oneshot;
use tower::{Layer, Service, ServiceExt, service_fn};

/// 200 is a success, 500 a failure, 299 neither; a `Retry-After` in seconds rides on any.
#[derive(Clone, Copy, Debug)]
struct TestClassifier;

impl Classify for TestClassifier {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        let wait = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .map(Duration::from_secs);
        match status.as_u16() {
            200 => Outcome::Success,
            299 => Outcome::Ignored,
            _ => Outcome::Failure(
                Failure::new(FailureKind::Status(status), Sent::Yes).with_retry_after(wait),
            ),
        }
    }

    fn classify_error(&self, _: &(dyn StdError + 'static)) -> Outcome {
        Outcome::Failure(Failure::new(FailureKind::Other, Sent::Maybe))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum V {
    Success,
    Failure,
    Ignored,
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Call(V),
    Hold,
    Finish(usize, V),
    Cancel(usize),
    Retry(V, u64),
    ForceOpen,
    Disable,
    Reset,
}

fn verdict() -> impl Strategy<Value = V> {
    prop_oneof![3 => Just(V::Success), 3 => Just(V::Failure), 1 => Just(V::Ignored)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..6_000).prop_map(Op::Advance),
        10 => verdict().prop_map(Op::Call),
        2 => Just(Op::Hold),
        2 => (0usize..4, verdict()).prop_map(|(i, v)| Op::Finish(i, v)),
        1 => (0usize..4).prop_map(Op::Cancel),
        1 => (verdict(), 0u64..400).prop_map(|(v, s)| Op::Retry(v, s)),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::Disable),
        1 => Just(Op::Reset),
    ]
}

#[derive(Clone, Debug)]
struct Cfg {
    consecutive: u32,
    rate: Option<(f64, u32)>,
    buckets: u32,
    open_s: u64,
    probes: u32,
    half_open_s: u64,
    slow: bool,
}

fn cfg() -> impl Strategy<Value = Cfg> {
    (
        0u32..6,
        proptest::option::of((prop_oneof![Just(0.25), Just(0.5), Just(1.0)], 1u32..10)),
        1u32..5,
        1u64..10,
        1u32..4,
        1u64..20,
        any::<bool>(),
    )
        .prop_map(
            |(consecutive, rate, buckets, open_s, probes, half_open_s, slow)| Cfg {
                consecutive,
                rate,
                buckets,
                open_s,
                probes,
                half_open_s,
                slow,
            },
        )
}

const S: u64 = 1_000_000_000;
const SLOW: u64 = 2 * S;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Closed,
    Probe,
    Unrecorded,
}

/// The rules, written plainly: a list of events for the window, no atomics, no packing.
struct Model {
    c: Cfg,
    now: u64,
    state: State,
    generation: u64,
    consecutive: u32,
    events: Vec<(u64, bool)>,
    open_until: u64,
    half_open_deadline: u64,
    hint_until: u64,
    admitted: u32,
    successes: u32,
    failed_probes: u32,
    rejected: u64,
}

impl Model {
    fn max_open(&self) -> u64 {
        self.c.open_s * 4 * S
    }

    /// `Ok((kind, generation, started))` or `Err(retry_after)`.
    fn admit(&mut self) -> Result<(Kind, u64, u64), Option<u64>> {
        loop {
            match self.state {
                State::Closed => return Ok((Kind::Closed, self.generation, self.now)),
                State::Disabled => return Ok((Kind::Unrecorded, self.generation, self.now)),
                State::ForcedOpen => {
                    self.rejected += 1;
                    return Err(None);
                }
                State::Open => {
                    if self.now < self.open_until {
                        self.rejected += 1;
                        return Err(Some(self.open_until - self.now));
                    }
                    self.state = State::HalfOpen;
                    self.generation += 1;
                    self.admitted = 1;
                    self.successes = 0;
                    self.half_open_deadline = self.now + self.c.half_open_s * S;
                    return Ok((Kind::Probe, self.generation, self.now));
                }
                State::HalfOpen => {
                    if self.admitted < self.c.probes {
                        self.admitted += 1;
                        return Ok((Kind::Probe, self.generation, self.now));
                    }
                    if self.now >= self.half_open_deadline {
                        self.failed_probes += 1;
                        self.open();
                        continue;
                    }
                    self.rejected += 1;
                    return Err(Some(self.half_open_deadline - self.now));
                }
            }
        }
    }

    fn open(&mut self) {
        let base = (self.c.open_s * S) << self.failed_probes.min(20);
        let mut d = base.min(self.max_open());
        d = d.max(
            self.hint_until
                .saturating_sub(self.now)
                .min(self.max_open()),
        );
        self.open_until = self.now + d;
        self.state = State::Open;
        self.generation += 1;
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.generation += 1;
        self.events.clear();
        self.consecutive = 0;
        self.failed_probes = 0;
    }

    fn finish(&mut self, (kind, generation, started): (Kind, u64, u64), v: V, hint: Option<u64>) {
        // The test classifier puts a `Retry-After` on failures only.
        if let Some(h) = hint.filter(|_| v == V::Failure) {
            self.hint_until = self.hint_until.max(self.now + (h * S).min(self.max_open()));
        }
        let v = if v == V::Success && self.c.slow && self.now - started > SLOW {
            V::Failure
        } else {
            v
        };
        let current = generation == self.generation;
        match kind {
            Kind::Unrecorded => {}
            Kind::Closed => {
                if v == V::Ignored || self.state != State::Closed || !current {
                    return;
                }
                let epoch = self.now / (10 * S / u64::from(self.c.buckets));
                self.events.push((epoch, v == V::Failure));
                if v == V::Success {
                    self.consecutive = 0;
                    return;
                }
                self.consecutive += 1;
                if self.c.consecutive > 0 && self.consecutive >= self.c.consecutive {
                    self.open();
                    return;
                }
                if let Some((threshold, min)) = self.c.rate {
                    let n = u64::from(self.c.buckets);
                    let window: Vec<_> = self
                        .events
                        .iter()
                        .filter(|(e, _)| *e + n > epoch && *e <= epoch)
                        .collect();
                    let calls = window.len() as u64;
                    let failures = window.iter().filter(|(_, f)| *f).count() as u64;
                    if calls >= u64::from(min) && failures as f64 >= threshold * calls as f64 {
                        self.open();
                    }
                }
            }
            Kind::Probe => {
                if self.state != State::HalfOpen || !current {
                    return;
                }
                match v {
                    V::Ignored => self.admitted -= 1,
                    V::Failure => {
                        self.failed_probes += 1;
                        self.open();
                    }
                    V::Success => {
                        self.successes += 1;
                        if self.successes >= self.c.probes {
                            self.close();
                        }
                    }
                }
            }
        }
    }

    fn cancel(&mut self, (kind, generation, _): (Kind, u64, u64)) {
        if kind == Kind::Probe
            && self.state == State::HalfOpen
            && generation == self.generation
            && self.admitted > 0
        {
            self.admitted -= 1;
        }
    }

    fn set(&mut self, to: State) {
        if self.state == to && to != State::Closed {
            return;
        }
        if to == State::Closed {
            self.close();
            self.hint_until = 0;
        } else {
            self.state = to;
            self.generation += 1;
        }
    }
}

type Reply = Response<()>;

fn response(v: V, retry_after: Option<u64>) -> Reply {
    let mut res = Response::new(());
    *res.status_mut() = match v {
        V::Success => StatusCode::OK,
        V::Failure => StatusCode::INTERNAL_SERVER_ERROR,
        V::Ignored => StatusCode::from_u16(299).unwrap(),
    };
    if let Some(s) = retry_after {
        res.headers_mut()
            .insert(http::header::RETRY_AFTER, s.to_string().parse().unwrap());
    }
    res
}

fn run(c: Cfg, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async move {
        let clock = ManualClock::new();
        let mut config = BreakerConfig::default()
            .consecutive_failures(c.consecutive)
            .window(Duration::from_secs(10), c.buckets)
            .open_duration(Duration::from_secs(c.open_s))
            .max_open_duration(Duration::from_secs(c.open_s * 4))
            .jitter(0.0)
            .half_open_probes(c.probes)
            .half_open_timeout(Duration::from_secs(c.half_open_s));
        config = match c.rate {
            Some((t, min)) => config.failure_rate(t, min),
            None => config.no_failure_rate(),
        };
        if c.slow {
            config = config.slow_call(Duration::from_nanos(SLOW));
        }
        let layer = BreakerLayer::builder()
            .config(config)
            .clock(clock.clone())
            .classifier(TestClassifier)
            .build()
            .unwrap();
        let handle = layer.handle();
        // The inner service answers with whatever the request's channel is sent.
        let mut svc = layer.layer(service_fn(|req: Request<oneshot::Receiver<Reply>>| async {
            req.into_body()
                .await
                .map_err(|_| std::io::Error::other("test dropped the reply"))
        }));
        let origin: Origin = "http://model.test".parse().unwrap();
        let mut model = Model {
            c,
            now: 0,
            state: State::Closed,
            generation: 0,
            consecutive: 0,
            events: Vec::new(),
            open_until: 0,
            half_open_deadline: 0,
            hint_until: 0,
            admitted: 0,
            successes: 0,
            failed_probes: 0,
            rejected: 0,
        };
        let mut held = VecDeque::new();

        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Advance(ms) => {
                    clock.advance(Duration::from_millis(ms));
                    model.now += ms * 1_000_000;
                }
                Op::Call(_) | Op::Retry(..) | Op::Hold => {
                    let (v, hint) = match op {
                        Op::Call(v) => (v, None),
                        Op::Retry(v, s) => (v, Some(s)),
                        _ => (V::Success, None),
                    };
                    let (tx, rx) = oneshot::channel();
                    let req = Request::get("http://model.test/x").body(rx).unwrap();
                    let fut = svc.ready().await.unwrap().call(req);
                    let expected = model.admit();
                    if let Op::Hold = op {
                        if let Ok(permit) = expected {
                            held.push_back((fut, tx, permit));
                            if held.len() > 4 {
                                let (fut, _, permit) = held.pop_front().unwrap();
                                drop(fut);
                                model.cancel(permit);
                            }
                        } else {
                            let err = fut.await.unwrap_err();
                            prop_assert!(CircuitOpen::find(&*err).is_some(), "step {step}: {err}");
                        }
                    } else {
                        let _ = tx.send(response(v, hint));
                        match (fut.await, expected) {
                            (Ok(_), Ok(permit)) => model.finish(permit, v, hint),
                            (Err(err), Err(left)) => {
                                let open = CircuitOpen::find(&*err).unwrap();
                                prop_assert_eq!(
                                    open.retry_after(),
                                    left.map(Duration::from_nanos),
                                    "step {}",
                                    step
                                );
                            }
                            (got, want) => {
                                return Err(TestCaseError::fail(format!(
                                    "step {step}: breaker {:?}, model {want:?}",
                                    got.map(|r| r.status())
                                )));
                            }
                        }
                    }
                }
                Op::Finish(i, v) => {
                    if i < held.len() {
                        let (fut, tx, permit) = held.remove(i).unwrap();
                        let _ = tx.send(response(v, None));
                        prop_assert!(fut.await.is_ok());
                        model.finish(permit, v, None);
                    }
                }
                Op::Cancel(i) => {
                    if i < held.len() {
                        let (fut, _, permit) = held.remove(i).unwrap();
                        drop(fut);
                        model.cancel(permit);
                    }
                }
                Op::ForceOpen => {
                    handle.force_open(&origin);
                    model.set(State::ForcedOpen);
                }
                Op::Disable => {
                    handle.disable(&origin);
                    model.set(State::Disabled);
                }
                Op::Reset => {
                    handle.reset(&origin);
                    if handle.state(&origin).is_some() {
                        model.set(State::Closed);
                    }
                }
            }
            let snapshot = handle.snapshot(&origin);
            let state = snapshot.as_ref().map_or(State::Closed, |s| s.state);
            prop_assert_eq!(state, model.state, "step {}", step);
            if let Some(s) = snapshot {
                prop_assert_eq!(s.rejected, model.rejected, "step {}", step);
                if model.state == State::Closed {
                    prop_assert_eq!(s.consecutive_failures, model.consecutive, "step {}", step);
                }
                prop_assert_eq!(s.failed_probes, model.failed_probes, "step {}", step);
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn breaker_agrees_with_the_model(c in cfg(), ops in proptest::collection::vec(op(), 1..120)) {
        run(c, ops)?;
    }
}
