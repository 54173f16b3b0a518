//! `TransportError`, `Rejected` and the default classification of errors and responses,
//! as a layer above a pool reads them.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use flext_core::{
    BoxError, Classify, Failure, FailureKind, HttpClassifier, Outcome, Rejected, Sent,
    TransportError, TransportErrorKind, classify_error_chain,
};
use http::{HeaderMap, StatusCode};

/// An error that adds context to an `io::Error`, as a client library's error does.
#[derive(Debug)]
struct Context(&'static str, io::Error);

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Context {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.1)
    }
}

const ALL_KINDS: [TransportErrorKind; 8] = [
    TransportErrorKind::Connect,
    TransportErrorKind::Tls,
    TransportErrorKind::Timeout,
    TransportErrorKind::Reset,
    TransportErrorKind::Refused,
    TransportErrorKind::Acquire,
    TransportErrorKind::Protocol,
    TransportErrorKind::Other,
];

/// Every `is_*` predicate, in the order of `ALL_KINDS` (`Other` has none).
fn predicates(e: &TransportError) -> [bool; 7] {
    [
        e.is_connect(),
        e.is_tls(),
        e.is_timeout(),
        e.is_reset(),
        e.is_refused(),
        e.is_acquire(),
        e.is_protocol(),
    ]
}

#[test]
fn each_kind_has_a_stable_label_and_exactly_one_predicate() {
    let labels: Vec<String> = ALL_KINDS.iter().map(ToString::to_string).collect();
    assert_eq!(
        labels,
        [
            "connect", "tls", "timeout", "reset", "refused", "acquire", "protocol", "other"
        ]
    );
    for (i, kind) in ALL_KINDS.into_iter().enumerate() {
        assert_eq!(kind.as_str(), labels[i]);
        let e = TransportError::new(kind, Sent::Maybe, None);
        assert_eq!(e.kind(), kind);
        let expected: Vec<bool> = (0..7).map(|p| p == i).collect();
        assert_eq!(predicates(&e).to_vec(), expected, "{kind:?}");
    }
}

#[test]
fn display_names_the_kind_and_says_whether_the_request_went_out() {
    let cases = [
        (TransportErrorKind::Connect, Sent::No, "connect error"),
        (TransportErrorKind::Tls, Sent::No, "tls handshake error"),
        (TransportErrorKind::Timeout, Sent::Yes, "attempt timed out"),
        (
            TransportErrorKind::Reset,
            Sent::Maybe,
            "connection reset (request may have been sent)",
        ),
        (
            TransportErrorKind::Reset,
            Sent::No,
            "connection reset (request not sent)",
        ),
        (
            TransportErrorKind::Refused,
            Sent::No,
            "request refused by the server before processing",
        ),
        (
            TransportErrorKind::Acquire,
            Sent::No,
            "no connection available in time (request not sent)",
        ),
        (
            TransportErrorKind::Protocol,
            Sent::Yes,
            "http protocol error",
        ),
        (
            TransportErrorKind::Other,
            Sent::Maybe,
            "transport error (request may have been sent)",
        ),
    ];
    for (kind, sent, text) in cases {
        let e = TransportError::new(kind, sent, None);
        assert_eq!(e.to_string(), text);
        // Lower-case, no trailing punctuation (the style of hyper's and reqwest's errors).
        assert!(!text.ends_with('.'));
        assert_eq!(e.is_never_sent(), sent == Sent::No);
    }
}

#[test]
fn tls_failures_are_never_sent_and_keep_their_cause() {
    let cause = io::Error::new(io::ErrorKind::InvalidData, "unknown issuer");
    let e = TransportError::tls(cause);
    assert!(e.is_tls() && !e.is_connect());
    assert_eq!(e.sent(), Sent::No);
    assert_eq!(e.to_string(), "tls handshake error");
    assert_eq!(e.source().unwrap().to_string(), "unknown issuer");
    let failure = classify_error_chain(&e);
    assert_eq!(
        (failure.kind(), failure.sent()),
        (FailureKind::Connect, Sent::No)
    );
}

#[test]
fn debug_shows_kind_sent_and_the_cause_when_there_is_one() {
    let e = TransportError::connect(io::Error::from(io::ErrorKind::ConnectionRefused));
    let debug = format!("{e:?}");
    assert!(debug.starts_with("TransportError { kind: Connect, sent: No, source: "));
    assert!(debug.contains("ConnectionRefused"), "{debug}");
    let bare = format!("{:?}", TransportError::timeout(Sent::Maybe));
    assert_eq!(bare, "TransportError { kind: Timeout, sent: Maybe }");
}

#[test]
fn rejected_reads_as_refused_locally() {
    let r = Rejected::new("circuit_open", Some(Duration::from_secs(3)));
    assert_eq!(
        r.to_string(),
        "request rejected before sending (circuit_open)"
    );
    let plain: BoxError = "boom".into();
    assert!(Rejected::find(&*plain).is_none());
}

/// How every transport kind is classified: what retry and the breaker act on.
#[test]
fn transport_errors_classify_by_kind_and_keep_their_sent_flag() {
    let cases = [
        (TransportErrorKind::Connect, Sent::No, FailureKind::Connect),
        (TransportErrorKind::Tls, Sent::No, FailureKind::Connect),
        (
            TransportErrorKind::Timeout,
            Sent::Maybe,
            FailureKind::Timeout,
        ),
        (TransportErrorKind::Acquire, Sent::No, FailureKind::Timeout),
        (TransportErrorKind::Reset, Sent::Maybe, FailureKind::Reset),
        (
            TransportErrorKind::Refused,
            Sent::No,
            FailureKind::NeverSent,
        ),
        (TransportErrorKind::Protocol, Sent::Yes, FailureKind::Other),
        (TransportErrorKind::Other, Sent::Maybe, FailureKind::Other),
    ];
    let classifier = HttpClassifier::default();
    for (kind, sent, expected) in cases {
        let err: BoxError = TransportError::new(kind, sent, None).into();
        let outcome = classifier.classify_error(&*err);
        assert!(!outcome.is_success());
        let failure = outcome.failure().unwrap();
        assert_eq!(
            (failure.kind(), failure.sent()),
            (expected, sent),
            "{kind:?}"
        );
    }
}

#[test]
fn io_errors_classify_by_their_kind() {
    let cases = [
        (io::ErrorKind::NotConnected, FailureKind::Connect, Sent::No),
        (
            io::ErrorKind::AddrNotAvailable,
            FailureKind::Connect,
            Sent::No,
        ),
        (io::ErrorKind::BrokenPipe, FailureKind::Reset, Sent::Maybe),
        (
            io::ErrorKind::UnexpectedEof,
            FailureKind::Reset,
            Sent::Maybe,
        ),
        (io::ErrorKind::TimedOut, FailureKind::Timeout, Sent::Maybe),
        (
            io::ErrorKind::PermissionDenied,
            FailureKind::Other,
            Sent::Maybe,
        ),
    ];
    for (io_kind, kind, sent) in cases {
        let failure = classify_error_chain(&io::Error::from(io_kind));
        assert_eq!(
            (failure.kind(), failure.sent()),
            (kind, sent),
            "{io_kind:?}"
        );
    }
    // An io::Error deeper in the chain is found too.
    let wrapped = Context("reading the response head", io::ErrorKind::TimedOut.into());
    assert_eq!(classify_error_chain(&wrapped).kind(), FailureKind::Timeout);
}

#[test]
fn failures_read_as_labels_and_messages() {
    let cases = [
        (
            Failure::new(
                FailureKind::Status(StatusCode::SERVICE_UNAVAILABLE),
                Sent::Yes,
            ),
            "503",
            "status 503",
        ),
        (
            Failure::new(
                FailureKind::Throttled(StatusCode::TOO_MANY_REQUESTS),
                Sent::Yes,
            ),
            "429",
            "throttled (429)",
        ),
        (
            Failure::new(FailureKind::Timeout, Sent::Maybe),
            "timeout",
            "timeout",
        ),
        (
            Failure::new(FailureKind::Connect, Sent::No),
            "connect",
            "connect",
        ),
        (
            Failure::new(FailureKind::Reset, Sent::Maybe),
            "reset",
            "reset",
        ),
        (
            Failure::new(FailureKind::NeverSent, Sent::No),
            "never_sent",
            "never_sent",
        ),
        (
            Failure::new(FailureKind::Rejected("overloaded"), Sent::No),
            "overloaded",
            "overloaded",
        ),
        (
            Failure::new(FailureKind::Other, Sent::Maybe),
            "other",
            "other",
        ),
    ];
    for (failure, label, text) in cases {
        assert_eq!(failure.label(), label);
        assert_eq!(failure.to_string(), text);
    }
    // Only a response has a status.
    assert_eq!(Failure::new(FailureKind::Reset, Sent::Maybe).status(), None);
    // `Other` is transient only when it certainly was not sent.
    assert!(!Failure::new(FailureKind::Other, Sent::Maybe).is_transient());
    assert!(Failure::new(FailureKind::Other, Sent::No).is_transient());
}

#[test]
fn outcomes_other_than_failures_have_no_failure() {
    let ok = HttpClassifier::default().classify_response(StatusCode::OK, &HeaderMap::new());
    assert!(ok.is_success());
    assert_eq!(ok.failure(), None);
    assert!(!Outcome::Ignored.is_success());
    assert_eq!(Outcome::Ignored.failure(), None);
    let failed = Outcome::Failure(Failure::new(FailureKind::Timeout, Sent::Maybe));
    assert!(!failed.is_success());
}

#[test]
fn the_default_classifier_is_the_system_clock_one_and_debug_hides_the_clock() {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
    let a = HttpClassifier::default().classify_response(StatusCode::BAD_GATEWAY, &headers);
    let b = HttpClassifier::new().classify_response(StatusCode::BAD_GATEWAY, &headers);
    assert_eq!(a, b);
    assert_eq!(
        a.failure().unwrap().retry_after(),
        Some(Duration::from_secs(7))
    );
    assert_eq!(
        format!("{:?}", HttpClassifier::default()),
        "HttpClassifier { .. }"
    );
}
