//! `Attempt` and `Deadline` as request extensions, on tokio's paused clock.

use std::time::Duration;

use flext_core::{Attempt, Deadline};
use tokio::time::Instant;

#[test]
fn a_request_without_an_attempt_is_the_first() {
    let mut req = http::Request::new(());
    assert_eq!(Attempt::of(&req), Attempt::FIRST);
    req.extensions_mut().insert(Attempt::new(2));
    assert_eq!(Attempt::of(&req).number(), 2);
    assert!(Attempt::of(&req).is_retry());
}

#[tokio::test(start_paused = true)]
async fn a_deadline_is_read_from_the_request_and_follows_the_paused_clock() {
    let mut req = http::Request::new(());
    assert_eq!(Deadline::of(&req), None);
    let at = Instant::now() + Duration::from_secs(2);
    req.extensions_mut().insert(Deadline::at(at));
    let deadline = Deadline::of(&req).expect("set above");
    assert_eq!(deadline.instant(), at);
    tokio::time::advance(Duration::from_millis(1_500)).await;
    assert_eq!(deadline.remaining(), Duration::from_millis(500));
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(deadline.is_expired());
}
