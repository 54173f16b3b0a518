use super::*;
use crate::clock::ManualClock;

const SEC: Duration = Duration::from_secs(1);

fn cell_with(
    config: BreakerConfig,
    clock: &ManualClock,
) -> (Arc<Cell>, Arc<Mutex<Vec<Transition>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let shared = Arc::new(Shared {
        ticks: Ticks::new(Arc::new(clock.clone())),
        listeners: vec![Arc::new(move |t: &Transition| {
            sink.lock().unwrap().push(t.clone());
        })],
    });
    let cell = Arc::new(Cell::new("k".into(), config.jitter(0.0), shared));
    (cell, events)
}

fn call(cell: &Arc<Cell>, verdict: Verdict) -> Result<(), CircuitOpen> {
    cell.admit().map(|mut p| p.finish(verdict, None))
}

#[test]
fn consecutive_failures_trip_and_success_resets_the_run() {
    let clock = ManualClock::new();
    let (cell, events) = cell_with(BreakerConfig::default().no_failure_rate(), &clock);
    for _ in 0..4 {
        call(&cell, Verdict::Failure).unwrap();
    }
    call(&cell, Verdict::Success).unwrap();
    for _ in 0..4 {
        call(&cell, Verdict::Failure).unwrap();
    }
    assert_eq!(cell.state(), State::Closed);
    call(&cell, Verdict::Failure).unwrap();
    assert_eq!(cell.state(), State::Open);
    let err = call(&cell, Verdict::Success).unwrap_err();
    assert_eq!(err.retry_after(), Some(30 * SEC));
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].cause, Cause::ConsecutiveFailures(5));
    assert_eq!(events[0].open_for, Some(30 * SEC));
}

#[test]
fn failure_rate_trips_once_enough_calls_were_seen() {
    let clock = ManualClock::new();
    let config = BreakerConfig::default().consecutive_failures(0);
    let (cell, _) = cell_with(config, &clock);
    // 9 successes and 9 failures interleaved: 50%, but below 20 calls.
    for _ in 0..9 {
        call(&cell, Verdict::Success).unwrap();
        call(&cell, Verdict::Failure).unwrap();
    }
    call(&cell, Verdict::Success).unwrap();
    assert_eq!(cell.state(), State::Closed);
    // The 20th call, a failure: 10 of 20.
    call(&cell, Verdict::Failure).unwrap();
    assert_eq!(cell.state(), State::Open);
}

#[test]
fn old_buckets_slide_out_of_the_rate() {
    let clock = ManualClock::new();
    let config = BreakerConfig::default().consecutive_failures(0);
    let (cell, _) = cell_with(config, &clock);
    for _ in 0..15 {
        call(&cell, Verdict::Failure).unwrap();
    }
    clock.advance(10 * SEC);
    // The 15 failures are out of the window: 5 fresh failures are not 20 calls.
    for _ in 0..5 {
        call(&cell, Verdict::Failure).unwrap();
    }
    assert_eq!(cell.state(), State::Closed);
    assert_eq!(cell.snapshot().window_calls, 5);
}

#[test]
fn probe_failure_doubles_and_success_resets_the_open_time() {
    let clock = ManualClock::new();
    let (cell, events) = cell_with(BreakerConfig::default(), &clock);
    for _ in 0..5 {
        call(&cell, Verdict::Failure).unwrap();
    }
    for expect in [60, 120, 240, 300, 300] {
        clock.advance(Duration::from_secs(300));
        call(&cell, Verdict::Failure).unwrap();
        let err = call(&cell, Verdict::Success).unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(expect)));
    }
    clock.advance(Duration::from_secs(300));
    call(&cell, Verdict::Success).unwrap();
    assert_eq!(cell.state(), State::Closed);
    assert_eq!(cell.snapshot().failed_probes, 0);
    for _ in 0..5 {
        call(&cell, Verdict::Failure).unwrap();
    }
    assert_eq!(
        call(&cell, Verdict::Success).unwrap_err().retry_after(),
        Some(30 * SEC)
    );
    let closes = events
        .lock()
        .unwrap()
        .iter()
        .filter(|t| t.to == State::Closed)
        .count();
    assert_eq!(closes, 1);
}

#[test]
fn half_open_admits_only_its_probes_and_cancelled_ones_come_back() {
    let clock = ManualClock::new();
    let (cell, _) = cell_with(BreakerConfig::default().half_open_probes(2), &clock);
    for _ in 0..5 {
        call(&cell, Verdict::Failure).unwrap();
    }
    clock.advance(30 * SEC);
    let p1 = cell.admit().unwrap();
    let mut p2 = cell.admit().unwrap();
    let err = cell.admit().unwrap_err();
    assert!(err.is_half_open());
    assert_eq!(err.retry_after(), Some(30 * SEC));
    drop(p1);
    let mut p3 = cell.admit().unwrap();
    assert!(cell.admit().is_err());
    p2.finish(Verdict::Success, None);
    assert_eq!(cell.state(), State::HalfOpen);
    p3.finish(Verdict::Success, None);
    assert_eq!(cell.state(), State::Closed);
}

#[test]
fn a_hung_probe_times_out_and_its_late_verdict_is_ignored() {
    let clock = ManualClock::new();
    let (cell, events) = cell_with(BreakerConfig::default(), &clock);
    for _ in 0..5 {
        call(&cell, Verdict::Failure).unwrap();
    }
    clock.advance(30 * SEC);
    let mut hung = cell.admit().unwrap();
    clock.advance(30 * SEC);
    let err = cell.admit().unwrap_err();
    assert_eq!(err.state(), State::Open);
    assert_eq!(err.retry_after(), Some(60 * SEC));
    hung.finish(Verdict::Success, None);
    assert_eq!(cell.state(), State::Open);
    let causes: Vec<Cause> = events.lock().unwrap().iter().map(|t| t.cause).collect();
    assert_eq!(
        causes,
        [
            Cause::ConsecutiveFailures(5),
            Cause::OpenElapsed,
            Cause::ProbeTimedOut
        ]
    );
}

#[test]
fn results_from_before_a_trip_are_ignored() {
    let clock = ManualClock::new();
    let (cell, _) = cell_with(BreakerConfig::default().consecutive_failures(1), &clock);
    let mut old = cell.admit().unwrap();
    call(&cell, Verdict::Failure).unwrap();
    assert_eq!(cell.state(), State::Open);
    clock.advance(30 * SEC);
    let mut probe = cell.admit().unwrap();
    old.finish(Verdict::Failure, None);
    assert_eq!(cell.state(), State::HalfOpen);
    probe.finish(Verdict::Success, None);
    assert_eq!(cell.state(), State::Closed);
}

#[test]
fn retry_after_lengthens_the_open_time_within_the_cap() {
    let clock = ManualClock::new();
    let (cell, _) = cell_with(BreakerConfig::default(), &clock);
    let mut throttled = cell.admit().unwrap();
    throttled.finish(Verdict::Success, Some(120 * SEC));
    for _ in 0..5 {
        call(&cell, Verdict::Failure).unwrap();
    }
    assert_eq!(
        call(&cell, Verdict::Success).unwrap_err().retry_after(),
        Some(120 * SEC)
    );

    let (cell, _) = cell_with(BreakerConfig::default(), &clock);
    let mut p = cell.admit().unwrap();
    p.finish(Verdict::Failure, Some(Duration::from_secs(86_400)));
    for _ in 0..4 {
        call(&cell, Verdict::Failure).unwrap();
    }
    assert_eq!(
        call(&cell, Verdict::Success).unwrap_err().retry_after(),
        Some(300 * SEC)
    );
}

#[test]
fn slow_calls_count_as_failures() {
    let clock = ManualClock::new();
    let config = BreakerConfig::default()
        .consecutive_failures(2)
        .slow_call(2 * SEC);
    let (cell, _) = cell_with(config, &clock);
    for _ in 0..2 {
        let mut p = cell.admit().unwrap();
        clock.advance(3 * SEC);
        p.finish(Verdict::Success, None);
    }
    assert_eq!(cell.state(), State::Open);
}

#[test]
fn jitter_stays_within_its_spread() {
    let clock = ManualClock::new();
    for _ in 0..50 {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let shared = Arc::new(Shared {
            ticks: Ticks::new(Arc::new(clock.clone())),
            listeners: vec![Arc::new(move |t: &Transition| {
                sink.lock().unwrap().push(t.open_for);
            })],
        });
        let cell = Arc::new(Cell::new("k".into(), BreakerConfig::default(), shared));
        for _ in 0..5 {
            call(&cell, Verdict::Failure).unwrap();
        }
        let open_for = events.lock().unwrap()[0].unwrap();
        assert!(open_for >= 27 * SEC && open_for <= 33 * SEC, "{open_for:?}");
    }
}

#[test]
fn operator_states_hold_until_reset() {
    let clock = ManualClock::new();
    let (cell, _) = cell_with(BreakerConfig::default(), &clock);
    cell.set(State::ForcedOpen);
    let err = call(&cell, Verdict::Success).unwrap_err();
    assert!(err.is_forced());
    assert_eq!(err.retry_after(), None);
    clock.advance(Duration::from_secs(3600));
    assert!(call(&cell, Verdict::Success).is_err());
    cell.set(State::Disabled);
    for _ in 0..50 {
        call(&cell, Verdict::Failure).unwrap();
    }
    assert_eq!(cell.state(), State::Disabled);
    cell.set(State::Closed);
    assert_eq!(cell.state(), State::Closed);
    let s = cell.snapshot();
    assert_eq!((s.permitted, s.rejected), (50, 2));
}

#[test]
fn a_poisoned_lock_does_not_panic() {
    let clock = ManualClock::new();
    let (cell, _) = cell_with(BreakerConfig::default(), &clock);
    let c = cell.clone();
    let _ = std::thread::spawn(move || {
        let _guard = c.failed_probes.lock().unwrap();
        panic!("poison");
    })
    .join();
    for _ in 0..5 {
        call(&cell, Verdict::Failure).unwrap();
    }
    assert_eq!(cell.state(), State::Open);
    assert_eq!(cell.snapshot().state, State::Open);
}
