//! Scenario 3, recovery: the server is stopped, the breaker opens, the server is restarted
//! on the same port, and the client comes back within the breaker's open time plus one
//! probe; in half-open, of 64 concurrent callers no more than the configured probes reach
//! the server.
//!
//! The callers come in waves: 64 concurrent GETs, one attempt each (`no_retry`, so that
//! every request the server sees is one breaker decision), then the clock moves one step.
//! The breaker is the default stack's, with the open time and the number of probes from the
//! params, given to the client through [`ClientBuilder::layer`](flext_api::ClientBuilder::layer)
//! (the slot right above where the built-in one sits, which is turned off) so that it can
//! take an injected clock and report its transitions:
//!
//! - [`RecoveryClock::Manual`] (the tests): a [`ManualClock`] moved by hand, so the default 30 s
//!   open time costs no waiting and no wall-clock timing is asserted;
//! - [`RecoveryClock::Real`] (the full-size run): the breaker's own clock and real sleeps,
//!   with a short open time, to measure the recovery time in seconds.
//!
//! The first `probes` requests the restarted server gets are held for `probe_latency`, so
//! that the whole wave meets the breaker while it is half-open.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flext_api::Client;
use flext_api::breaker::{BreakerConfig, BreakerLayer, ManualClock, State, Transition};
use flext_api::core::Origin;
use flext_testkit::{ID_HEADER, TestServer};

use crate::load::{Outcome, workers};
use crate::report::{Counts, Figure, duration};

/// Which clock the breaker reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryClock {
    /// An injected [`ManualClock`], moved one step between waves.
    Manual,
    /// The breaker's default clock; the scenario sleeps one step between waves.
    Real,
}

/// The recovery's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryParams {
    /// Concurrent callers per wave.
    pub callers: usize,
    /// The breaker's `half_open_probes`.
    pub probes: u32,
    /// The breaker's base open time (jittered by ±10%).
    pub open_for: Duration,
    /// Which clock the breaker reads.
    pub clock: RecoveryClock,
    /// How far the clock moves between two waves.
    pub step: Duration,
    /// How long the restarted server holds each probe before answering.
    pub probe_latency: Duration,
}

impl Default for RecoveryParams {
    /// The tests' settings: 64 callers, 3 probes, the default 30 s open time on a manual
    /// clock moved 1 s per wave, probes held 300 ms.
    fn default() -> RecoveryParams {
        RecoveryParams {
            callers: 64,
            probes: 3,
            open_for: Duration::from_secs(30),
            clock: RecoveryClock::Manual,
            step: Duration::from_secs(1),
            probe_latency: Duration::from_millis(300),
        }
    }
}

/// One breaker transition, with the time on the breaker's clock since the scenario began.
#[derive(Debug, Clone)]
pub struct Event {
    /// On the breaker's clock.
    pub at: Duration,
    /// On the wall clock.
    pub instant: Instant,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// Why, as the breaker says it.
    pub cause: String,
    /// For an opening: how long it stays open (jitter included).
    pub open_for: Option<Duration>,
}

/// The recovery's figures.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    /// The parameters it ran with.
    pub params: RecoveryParams,
    /// Outcomes of the requests sent while the server was down.
    pub outage: Counts,
    /// The open time the breaker drew when it opened (jitter included).
    pub open_for: Option<Duration>,
    /// Waves after the restart that met an open breaker (every call refused).
    pub waves_while_open: usize,
    /// Requests the restarted server saw while the breaker was open (before half-open).
    pub server_requests_while_open: u64,
    /// Of the half-open wave's callers, how many reached the server.
    pub half_open_reached: u64,
    /// Of the half-open wave's callers, how many were refused at once.
    pub half_open_rejected: u64,
    /// Waves in which the server saw requests before every caller got `200` (1: one probe
    /// round sufficed).
    pub probe_rounds: usize,
    /// From the opening to the first `200`, on the breaker's clock (with the manual clock,
    /// the probe's round trip is not on it: see `probe_round_trip`).
    pub first_success: Option<Duration>,
    /// From the opening to the first wave in which every caller got `200`, on the breaker's
    /// clock.
    pub recovered: Option<Duration>,
    /// What `first_success` may be at most: the open time drawn, one step of the clock, and
    /// with the real clock the probe's latency and one more step (the refused wave before the
    /// probe's and the probe's round trip take wall time).
    pub bound: Option<Duration>,
    /// Wall time of the half-open wave (the probes' round trip).
    pub probe_round_trip: Option<Duration>,
    /// The breaker's state at the end.
    pub final_state: Option<State>,
    /// Every transition.
    pub events: Vec<Event>,
}

impl RecoveryReport {
    /// Whether the first `200` came within the open time plus one probe.
    pub fn recovered_in_time(&self) -> bool {
        matches!((self.first_success, self.bound), (Some(t), Some(b)) if t <= b)
    }

    /// The figures, for a table.
    pub fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let opt = |d: Option<Duration>| d.map_or_else(|| "never".into(), duration);
        vec![
            Figure::new(
                "settings",
                format!(
                    "{} callers, {} probes, open time {} ±10%, {:?} clock, step {}, probe held {}",
                    p.callers,
                    p.probes,
                    duration(p.open_for),
                    p.clock,
                    duration(p.step),
                    duration(p.probe_latency)
                ),
            ),
            Figure::new("outage outcomes", &self.outage),
            Figure::new("open time drawn", opt(self.open_for)),
            Figure::new("waves refused while open", self.waves_while_open),
            Figure::new(
                "server requests while open",
                self.server_requests_while_open,
            ),
            Figure::new(
                "half-open wave: reached the server / refused",
                format!("{} / {}", self.half_open_reached, self.half_open_rejected),
            ),
            Figure::new("probe rounds", self.probe_rounds),
            Figure::new("first 200 after the opening", opt(self.first_success)),
            Figure::new("bound (open time + probe + wave pacing)", opt(self.bound)),
            Figure::new("every caller 200 after the opening", opt(self.recovered)),
            Figure::new("probe round trip (wall)", opt(self.probe_round_trip)),
            Figure::new(
                "transitions",
                self.events
                    .iter()
                    .map(|e| {
                        format!(
                            "{:?}→{:?} at {} ({})",
                            e.from,
                            e.to,
                            duration(e.at),
                            e.cause
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ]
    }
}

/// One call of a wave.
#[derive(Debug, Clone)]
struct Call {
    id: String,
    started: Instant,
    ended: Instant,
    outcome: Outcome,
}

async fn wave(client: &Client, path: &str, tag: &str, callers: usize) -> Vec<Call> {
    workers(callers, |i| {
        let id = format!("{tag}-{i}");
        let request = client.get(path).header(ID_HEADER, &id).no_retry();
        async move {
            let started = Instant::now();
            let (outcome, _) = Outcome::of(request.send().await).await;
            Call {
                id,
                started,
                ended: Instant::now(),
                outcome,
            }
        }
    })
    .await
}

/// The breaker's clock as the scenario moves it.
struct Clock {
    manual: Option<ManualClock>,
    start: Instant,
}

impl Clock {
    fn now(&self) -> Duration {
        match &self.manual {
            Some(clock) => clock.elapsed(),
            None => self.start.elapsed(),
        }
    }

    async fn pass(&self, d: Duration) {
        match &self.manual {
            Some(clock) => clock.advance(d),
            None => tokio::time::sleep(d).await,
        }
    }
}

/// Runs the recovery; see the [module docs](self).
///
/// # Errors
///
/// If the server does not start or restart, or the client does not build.
pub async fn recovery(params: RecoveryParams) -> Result<RecoveryReport, crate::Error> {
    let clock = Arc::new(Clock {
        manual: (params.clock == RecoveryClock::Manual).then(ManualClock::new),
        start: Instant::now(),
    });
    let events = Arc::new(Mutex::new(Vec::<Event>::new()));
    let mut builder = BreakerLayer::builder()
        .config(
            BreakerConfig::default()
                .open_duration(params.open_for)
                .max_open_duration(params.open_for * 10)
                .half_open_probes(params.probes),
        )
        .on_transition({
            let (clock, events) = (Arc::clone(&clock), Arc::clone(&events));
            move |t: &Transition| {
                let event = Event {
                    at: clock.now(),
                    instant: Instant::now(),
                    from: t.from,
                    to: t.to,
                    cause: t.cause.to_string(),
                    open_for: t.open_for,
                };
                events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
            }
        });
    if let Some(manual) = &clock.manual {
        builder = builder.clock(manual.clone());
    }
    let breaker = builder.build()?;
    let handle = breaker.handle();

    let server = TestServer::builder().http1().start().await?;
    let origin = Origin::from_uri(&server.uri("/"))?;
    let client = Client::builder()
        .base_url(&server.url("/"))
        .no_breaker()
        .layer(breaker)
        .build()?;
    let n = params.callers;

    // Up, then down: the breaker opens on connection errors.
    let warm = wave(&client, "recovery/warm", "warm", n).await;
    let mut outage = Counts::default();
    for c in &warm {
        if !c.outcome.is_ok() {
            outage.add(&format!("warm-up {}", c.outcome.label()));
        }
    }
    server.stop().await;
    // Until the breaker is open, then one more wave that it refuses whole.
    let mut opened_waves = 0;
    for k in 0..20 {
        for c in wave(&client, "recovery/down", &format!("down-{k}"), n).await {
            outage.add(&c.outcome.label());
        }
        if handle.state(&origin) == Some(State::Open) {
            opened_waves += 1;
            if opened_waves == 2 {
                break;
            }
        }
    }
    let snapshot =
        |events: &Mutex<Vec<Event>>| events.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let opened = snapshot(&events).into_iter().find(|e| e.to == State::Open);

    // Back up on the same port; the first `probes` requests are held.
    let held = format!("200;delay={}ms", params.probe_latency.as_millis());
    let script = vec![held.as_str(); params.probes as usize].join(",") + ",200";
    server.script_path("/recovery/after", &script)?;
    server.restart().await?;

    let mut calls: Vec<(Instant, Instant, Vec<Call>)> = Vec::new();
    let mut first_success = None;
    let mut recovered = None;
    let open_for = opened.as_ref().and_then(|e| e.open_for);
    let limit = open_for.unwrap_or(params.open_for) * 2 + params.step * 4;
    let opened_at = opened.as_ref().map_or(Duration::ZERO, |e| e.at);
    for k in 0.. {
        clock.pass(params.step).await;
        let at = clock.now().saturating_sub(opened_at);
        let wall = Instant::now();
        let done = wave(&client, "recovery/after", &format!("after-{k}"), n).await;
        let took = wall.elapsed();
        if first_success.is_none() {
            first_success = done
                .iter()
                .filter(|c| c.outcome.is_ok())
                .map(|c| match &clock.manual {
                    Some(_) => at,
                    None => c
                        .ended
                        .saturating_duration_since(clock.start)
                        .saturating_sub(opened_at),
                })
                .min();
        }
        let all_ok = done.iter().all(|c| c.outcome.is_ok());
        calls.push((wall, wall + took, done));
        if all_ok {
            recovered = Some(at);
            break;
        }
        if at > limit {
            break;
        }
    }

    let stats = server.stats();
    let events = snapshot(&events);
    let after_open = |to: State| {
        events
            .iter()
            .filter(|e| opened.as_ref().is_some_and(|o| e.instant >= o.instant))
            .find(|e| e.to == to)
            .map(|e| e.instant)
    };
    let half_open_at = after_open(State::HalfOpen);
    let closed_at = after_open(State::Closed);
    let mut report = RecoveryReport {
        params: params.clone(),
        outage,
        open_for,
        waves_while_open: 0,
        server_requests_while_open: 0,
        half_open_reached: 0,
        half_open_rejected: 0,
        probe_rounds: 0,
        first_success,
        recovered,
        bound: open_for.map(|d| {
            d + params.step
                + match params.clock {
                    RecoveryClock::Manual => Duration::ZERO,
                    RecoveryClock::Real => params.probe_latency + params.step,
                }
        }),
        probe_round_trip: None,
        final_state: handle.state(&origin),
        events: events.clone(),
    };
    for (start, end, done) in &calls {
        let seen: Vec<&Call> = done
            .iter()
            .filter(|c| stats.requests_for_id(&c.id) > 0)
            .collect();
        let all_ok = done.iter().all(|c| c.outcome.is_ok());
        if half_open_at.is_none_or(|at| *end < at) {
            // A wave over before the breaker let a probe through: it was open throughout.
            report.waves_while_open += usize::from(!all_ok);
            report.server_requests_while_open += seen.len() as u64;
            continue;
        }
        if seen.is_empty() || all_ok {
            continue;
        }
        report.probe_rounds += 1;
        if report.probe_rounds == 1 {
            // Callers that started after the breaker closed are not half-open calls.
            report.half_open_reached = seen
                .iter()
                .filter(|c| closed_at.is_none_or(|at| c.started < at))
                .count() as u64;
            report.half_open_rejected = done
                .iter()
                .filter(|c| c.outcome == Outcome::Error("circuit_open"))
                .count() as u64;
            report.probe_round_trip = Some(end.saturating_duration_since(*start));
        }
    }
    Ok(report)
}
