//! # flext-core
//!
//! The vocabulary that more than one flext layer needs, and nothing else:
//!
//! - [`Origin`]: scheme, host and port of a request, normalised; the key of per-host breakers,
//!   pools and credentials. [`OriginRef`] reads one from a URI without allocating.
//! - [`parse_retry_after`] / [`retry_after`]: RFC 9110 `Retry-After`, both forms.
//! - [`Classify`], [`Outcome`], [`Failure`]: how a response head or an error is sorted into
//!   success, a named failure, or ignored; [`HttpClassifier`] is the default.
//! - [`TransportError`]: the error below HTTP that a pool produces and every layer reads by
//!   downcast, with [`Sent`]: whether the request reached the server, which is what makes
//!   resending a `POST` safe or not.
//! - Request extensions: [`Attempt`] and [`Deadline`]; [`RequestHead`] and [`HeaderList`], a
//!   request's head and headers as a layer keeps them to send it again.
//! - [`coarse`]: the kernel's coarse monotonic clock, for per-request time checks.
//! - [`thread_slot`] / [`thread_slots`]: per-thread slots, for state kept once per thread.
//! - [`Replayable`] / [`ReplayBody`]: a request body that can be sent more than once (retries,
//!   auth's 401 replay), kept within [`ReplayLimits`].
//!
//! ```
//! use flext_core::{Classify, HttpClassifier, Origin, Outcome, FailureKind};
//! use http::{HeaderMap, StatusCode};
//!
//! let origin = Origin::from_uri(&"https://api.example.com/v1/items".parse().unwrap()).unwrap();
//! assert_eq!(origin.port(), 443);
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(http::header::RETRY_AFTER, "2".parse().unwrap());
//! let outcome = HttpClassifier::new().classify_response(StatusCode::SERVICE_UNAVAILABLE, &headers);
//! let failure = outcome.failure().unwrap();
//! assert_eq!(failure.kind(), FailureKind::Status(StatusCode::SERVICE_UNAVAILABLE));
//! assert_eq!(failure.retry_after(), Some(std::time::Duration::from_secs(2)));
//! assert_eq!(HttpClassifier::new().classify_response(StatusCode::NOT_FOUND, &headers), Outcome::Success);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

mod body;
mod classify;
pub mod coarse;
mod error;
mod extensions;
mod headers;
mod origin;
mod retry_after;
mod slot;

pub use body::{
    DEFAULT_MAX_REPLAY_BYTES, DEFAULT_MAX_REPLAY_MEMORY, NotReplayable, ReplayBody,
    ReplayBodyError, ReplayLimits, ReplayMemory, Replayable,
};
pub use classify::{Classify, Failure, FailureKind, HttpClassifier, Outcome, classify_error_chain};
pub use error::{BoxError, Rejected, Sent, TransportError, TransportErrorKind};
pub use extensions::{Attempt, Deadline, RequestHead};
pub use headers::HeaderList;
pub use origin::{Origin, OriginError, OriginRef, Scheme};
pub use retry_after::{parse_retry_after, retry_after};
pub use slot::{thread_slot, thread_slots};
