//! Reliability (issue 11), scaled so that `cargo test` stays quick: each test runs one
//! scenario of `flext_tests::scenario` small and asserts the figures. The full-size
//! run is `cargo xtask soak`; its figures are in `docs/reliability.md`.
//!
//! The tests take a lock so that they run one at a time: they are load tests on a 2-core
//! machine, and the memory test reads the resident memory of the whole process.

use std::alloc::System;
use std::time::Duration;

use flext_api::breaker::State;
use flext_tests::report::table;
use flext_tests::scenario::Protocol;
use flext_tests::scenario::goaway::{GoawayParams, goaway};
use flext_tests::scenario::memory::{BREAKER_MAX_KEYS, MemoryParams, memory};
use flext_tests::scenario::recovery::{RecoveryParams, recovery};
use flext_tests::scenario::slow::{SlowParams, slow};
use flext_tests::scenario::soak::{SoakParams, soak};
use flext_tests::scenario::storm::{StormParams, storm};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::sync::Mutex;

/// One load test at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Counts the live heap for the memory scenario (resident memory alone keeps what earlier
/// tests in this process took).
#[global_allocator]
static HEAP: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live_heap() -> u64 {
    let stats = HEAP.stats();
    stats
        .bytes_allocated
        .saturating_sub(stats.bytes_deallocated) as u64
}

/// Scenario 1: 2,000 requests at 64 concurrent, 10% seeded faults (503, 503 with
/// `Retry-After: 0`, drops over HTTP/1.1, refused streams over h2c, delays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_seeded_faults() {
    let _serial = SERIAL.lock().await;
    let report = soak(SoakParams::default()).await.unwrap();
    println!("{}", table(&report.figures()));

    assert_eq!(report.requests, 2_000);
    assert_eq!(report.faults.total(), 200, "10% faults: {}", report.faults);
    for kind in [
        "503",
        "503 retry-after=0",
        "drop",
        "refused stream",
        "delay",
    ] {
        assert!(
            report.faults.get(kind) > 0,
            "no {kind} fault: {}",
            report.faults
        );
    }
    assert!(
        report.get_failures.is_empty(),
        "GETs failed: {}",
        report.get_failures
    );
    assert!(
        report.keyed_post_failures.is_empty(),
        "POSTs with an idempotency key failed: {}",
        report.keyed_post_failures
    );
    assert_eq!(report.posts_executed_twice, 0, "a POST was executed twice");
    assert!(report.max_post_executions <= 1);
    // POSTs without a key that met a 503 or a drop fail, each with a status or a typed error.
    assert!(
        report.post_failures.total() > 0,
        "{:?}",
        report.post_failures
    );
    assert_eq!(report.post_failures_untyped, 0, "{}", report.post_failures);
    assert!(
        report.attempts_per_request <= 1.15,
        "attempts per request: {:.3}",
        report.attempts_per_request
    );
}

/// Scenario 2, breaker off: 3,000 GETs at 64 concurrent against a server answering 503 to
/// everything; the budget keeps the attempts reaching the server at most 1.25 per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_storm_is_bounded_by_the_budget() {
    let _serial = SERIAL.lock().await;
    let report = storm(StormParams::default()).await.unwrap();
    println!("{}", table(&report.figures()));

    assert_eq!(report.requests, 3_000);
    assert_eq!(report.outcomes.get("503"), 3_000, "{}", report.outcomes);
    assert!(report.budget_exhausted > 0, "the budget ran out");
    assert!(
        report.attempts_per_request <= 1.25,
        "attempts per request: {:.3}",
        report.attempts_per_request
    );
}

/// Scenario 2, default stack: the breaker opens, the server sees no request while it is open,
/// and rejections come back at once.
///
/// The "under 1 ms" is measured and reported by `cargo xtask soak` in release mode;
/// here, in a debug build on a shared machine, the timing assertion is deliberately loose
/// (p99 under 50 ms) and the real check is the server's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_storm_opens_the_breaker_which_fails_fast() {
    let _serial = SERIAL.lock().await;
    let report = storm(StormParams {
        breaker: true,
        ..StormParams::default()
    })
    .await
    .unwrap();
    println!("{}", table(&report.figures()));

    let breaker = report.breaker.as_ref().expect("breaker figures");
    assert_eq!(breaker.state_halfway, Some(State::Open));
    assert_eq!(breaker.state_at_end, Some(State::Open));
    assert!(breaker.opened_after.is_some());
    assert_eq!(
        breaker.server_requests_sent_while_open, 0,
        "the server saw requests sent while the circuit was open"
    );
    assert!(breaker.rejections >= 1_500, "{}", report.outcomes);
    assert_eq!(
        report.outcomes.get("503") + breaker.rejections,
        report.requests,
        "{}",
        report.outcomes
    );
    // Every attempt but the few before the breaker opened was refused locally.
    assert!(report.server_attempts < 200, "{}", report.server_attempts);
    let p99 = breaker.rejection_latency.quantile(0.99);
    assert!(p99 < Duration::from_millis(50), "rejection p99 {p99:?}");
}

/// Scenario 3: stopped, then restarted on the same port; the breaker (default 30 s open time,
/// 3 probes) runs on a manual clock, so nothing waits 30 s and no wall time is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_within_open_time_plus_one_probe() {
    let _serial = SERIAL.lock().await;
    let params = RecoveryParams::default();
    let report = recovery(params.clone()).await.unwrap();
    println!("{}", table(&report.figures()));

    // Which connection error opens the breaker depends on timing: a pooled connection the
    // server closed before the client noticed fails as `reset`, a new one as `connect`.
    assert!(
        report.outage.get("connect") + report.outage.get("reset") >= 1,
        "{}",
        report.outage
    );
    assert!(report.outage.get("circuit_open") >= 1, "{}", report.outage);
    let open_for = report.open_for.expect("the breaker opened");
    assert!(open_for >= params.open_for.mul_f64(0.9) && open_for <= params.open_for.mul_f64(1.1));
    // While open, the restarted server is left alone.
    assert!(report.waves_while_open >= 25, "{}", report.waves_while_open);
    assert_eq!(report.server_requests_while_open, 0);
    // Half-open, 64 callers at once: only the probes reach the server, the rest fail fast.
    assert!(report.half_open_reached >= 1);
    assert!(
        report.half_open_reached <= u64::from(params.probes),
        "{} of {} callers reached the server in half-open",
        report.half_open_reached,
        params.callers
    );
    assert!(report.half_open_rejected >= (params.callers as u64) - u64::from(params.probes));
    // Back within the open time plus one probe round.
    assert_eq!(report.probe_rounds, 1);
    assert!(
        report.recovered_in_time(),
        "{:?} > {:?}",
        report.first_success,
        report.bound
    );
    assert!(report.recovered.is_some());
    assert_eq!(report.final_state, Some(State::Closed));
}

/// Scenario 4: GOAWAY on every connection every 20 ms while 64 callers send GETs over h2c,
/// default stack (`tests/stack.rs` has the same check with fast backoffs and no breaker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_under_load_fails_no_idempotent_request() {
    let _serial = SERIAL.lock().await;
    let report = goaway(GoawayParams::default()).await.unwrap();
    println!("{}", table(&report.figures()));

    assert!(report.failures.is_empty(), "{}", report.failures);
    assert!(report.goaways >= 2, "{}", report.goaways);
    assert!(report.connections > 1, "the GOAWAYs closed connections");
    assert_eq!(report.breaker_rejections, 0);
}

/// Scenario 5: 32 GETs whose response heads are held 5 s, with attempts of 100 ms and 450 ms
/// in all, over HTTP/1.1 and h2c with the breaker off (the timeouts end the calls), then over
/// HTTP/1.1 with the default stack (the timeouts open the breaker, which ends the rest).
///
/// The 50 ms bound on the deadline is the and is asserted as is: tokio's timers fire
/// within a millisecond or two of their deadline, and what is late beyond that is the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_times_out_keeps_the_deadline_and_leaks_nothing() {
    let _serial = SERIAL.lock().await;
    for (protocol, breaker) in [
        (Protocol::Http1, false),
        (Protocol::H2c, false),
        (Protocol::Http1, true),
    ] {
        let params = SlowParams {
            protocol,
            breaker,
            ..SlowParams::default()
        };
        let report = slow(params.clone()).await.unwrap();
        println!("{}", table(&report.figures()));

        // A call whose deadline passes while its last attempt waits for a new HTTP/1.1
        // connection is a timeout too (the pool reports the deadline, not a shortage).
        assert_eq!(report.outcomes.get("acquire"), 0, "{}", report.outcomes);
        let timed_out = report.outcomes.get("timeout");
        if breaker {
            assert_eq!(
                timed_out + report.outcomes.get("circuit_open"),
                report.requests,
                "{}",
                report.outcomes
            );
            assert!(
                report.outcomes.get("circuit_open") > 0,
                "{}",
                report.outcomes
            );
        } else {
            assert!(report.outcomes.get("timeout") > 0, "{}", report.outcomes);
            assert_eq!(timed_out, report.requests, "{}", report.outcomes);
            // Attempt timeouts fired, and each timed-out GET was tried again while time was
            // left.
            assert!(
                report.attempts_per_request >= 2.0,
                "{:.2}",
                report.attempts_per_request
            );
        }
        assert!(
            report.max_overshoot <= Duration::from_millis(50),
            "{} a call failed {:?} after the total timeout",
            protocol.name(),
            report.max_overshoot
        );
        // Back to idle: nothing in use, waiting, connecting or streaming; open connections
        // idle. Once the client is dropped, its tasks end.
        assert!(
            report.settled_in.is_some(),
            "pool {:?}",
            report.pool_settled
        );
        assert!(report.pool_settled.is_idle());
        assert!(
            report.tasks_ended_in.is_some(),
            "tasks: {} before the client, {} after it was dropped",
            report.tasks_before,
            report.tasks_after
        );
    }
}

/// Scenario 6: 5 s of load while other callers go to ever new origins (1,280 at once, more
/// than the breaker map holds, then 50 a second). The bounds are generous for a debug build
/// on a shared machine: the live heap (counted by this binary's allocator) may not grow by
/// more than 2 MiB after the warm-up, resident memory by more than 8 MiB (it includes what
/// earlier tests in this process left to the allocator, so it is the weaker check here; the
/// full-size run reads it in a fresh process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_and_the_breaker_map_bounded() {
    let _serial = SERIAL.lock().await;
    let report = memory(MemoryParams {
        live_heap: Some(live_heap),
        ..MemoryParams::default()
    })
    .await
    .unwrap();
    println!("{}", table(&report.figures()));

    assert!(report.requests > 1_000, "{}", report.requests);
    assert!(
        report.distinct_origins > BREAKER_MAX_KEYS as u64,
        "{} origins do not test the bound",
        report.distinct_origins
    );
    assert!(
        report.breakers_max <= BREAKER_MAX_KEYS,
        "{}",
        report.breakers_max
    );
    let judged = report
        .samples
        .iter()
        .filter(|s| s.at >= report.warmup_ended)
        .count();
    assert!(judged >= 5, "only {judged} samples after the warm-up");
    assert!(
        report.heap_growth_kib() <= 2 * 1024,
        "the live heap grew {} KiB after warm-up",
        report.heap_growth_kib()
    );
    if report.rss_at_warmup_kib > 0 {
        assert!(
            report.growth_kib() <= 8 * 1024,
            "VmRSS grew {} KiB after warm-up",
            report.growth_kib()
        );
    }
}
