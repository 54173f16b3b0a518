//! Health and metrics snapshots of a [`Client`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use flext_breaker::State;
use serde::Serialize;

use crate::client::Client;

/// A client's health: per origin, the breaker and the pool; the retry budget; request counts.
/// Serialize it (JSON, say) to serve it from a health endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// One entry per origin the client has talked to (pool or breaker).
    pub origins: Vec<OriginHealth>,
    /// The retry layer's figures, when retrying is on.
    pub retry: Option<RetryHealth>,
    /// Requests seen by the attempt trace layer, when tracing is on.
    pub requests: Option<RequestCounts>,
}

/// One origin's breaker and pool figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OriginHealth {
    /// `scheme://host:port`.
    pub origin: String,
    /// `closed`, `open`, `half-open`, `forced-open` or `disabled`; `None` without breakers.
    pub breaker_state: Option<&'static str>,
    /// When open: milliseconds until the next probe.
    pub breaker_open_remaining_ms: Option<u64>,
    /// Failure rate over the breaker's window.
    pub breaker_failure_rate: Option<f64>,
    /// Calls the breaker refused.
    pub breaker_rejected: Option<u64>,
    /// `http1`, `http2` or `unknown`.
    pub protocol: Option<&'static str>,
    /// Open HTTP/1.1 connections.
    pub http1_connections: usize,
    /// Open HTTP/2 connections.
    pub http2_connections: usize,
    /// Idle connections.
    pub idle: usize,
    /// Connections in use.
    pub in_use: usize,
    /// Requests waiting for a connection.
    pub waiters: usize,
    /// HTTP/2 streams in flight.
    pub http2_streams_in_flight: usize,
    /// Connections opened so far.
    pub connections_opened: u64,
    /// Requests that reused a pooled connection.
    pub connections_reused: u64,
}

/// The retry layer's counters and budget.
#[derive(Debug, Clone, Serialize)]
pub struct RetryHealth {
    /// Requests seen.
    pub requests: u64,
    /// Attempts made.
    pub attempts: u64,
    /// Retries made.
    pub retries: u64,
    /// Retries refused because the budget was empty.
    pub budget_exhausted: u64,
    /// Retries the budget would allow now.
    pub budget_available: u64,
}

/// Request counts from the trace layer's metrics.
#[derive(Debug, Clone, Serialize)]
pub struct RequestCounts {
    /// Attempts recorded.
    pub total: u64,
    /// By status class (`2xx`, `4xx`, ...).
    pub by_status_class: BTreeMap<&'static str, u64>,
    /// By `error.type`.
    pub by_error_type: BTreeMap<String, u64>,
}

fn state_gauge(state: State) -> u8 {
    match state {
        State::Closed => 0,
        State::Open => 1,
        State::HalfOpen => 2,
        State::ForcedOpen => 3,
        State::Disabled => 4,
    }
}

fn protocol_name(p: flext_pool::Protocol) -> &'static str {
    match p {
        flext_pool::Protocol::Http1 => "http1",
        flext_pool::Protocol::Http2 => "http2",
        _ => "unknown",
    }
}

impl Health {
    pub(crate) fn collect(client: &Client) -> Health {
        let mut origins: BTreeMap<String, OriginHealth> = BTreeMap::new();
        for o in client.pool_metrics().origins {
            let key = o.origin.to_string();
            origins.insert(
                key.clone(),
                OriginHealth {
                    origin: key,
                    protocol: Some(protocol_name(o.protocol)),
                    http1_connections: o.http1_connections,
                    http2_connections: o.http2_connections,
                    idle: o.idle,
                    in_use: o.in_use,
                    waiters: o.waiters,
                    http2_streams_in_flight: o.http2_streams_in_flight,
                    connections_opened: o.counters.opened_http1 + o.counters.opened_http2,
                    connections_reused: o.counters.reused,
                    ..OriginHealth::default()
                },
            );
        }
        if let Some(handle) = client.stack().breakers() {
            for (origin, snap) in handle.snapshots() {
                let key = origin.to_string();
                let entry = origins.entry(key.clone()).or_insert_with(|| OriginHealth {
                    origin: key,
                    ..OriginHealth::default()
                });
                entry.breaker_state = Some(snap.state.as_str());
                entry.breaker_open_remaining_ms = snap
                    .open_remaining
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                entry.breaker_failure_rate = Some(snap.failure_rate);
                entry.breaker_rejected = Some(snap.rejected);
            }
        }
        let retry = client.stack().retry().map(|r| {
            let m = r.metrics();
            RetryHealth {
                requests: m.requests,
                attempts: m.attempts,
                retries: m.retries,
                budget_exhausted: m.budget_exhausted,
                budget_available: m.budget_available,
            }
        });
        let requests = client.stack().metrics().map(|m| {
            let s = m.snapshot();
            RequestCounts {
                total: s.request_count(),
                by_status_class: s.count_by_status_class(),
                by_error_type: s.count_by_error_type(),
            }
        });
        Health {
            origins: origins.into_values().collect(),
            retry,
            requests,
        }
    }
}

/// Prometheus text: the trace layer's request metrics, then pool, breaker and retry gauges.
pub(crate) fn metrics_text(client: &Client) -> String {
    let mut out = client
        .stack()
        .metrics()
        .map(|m| m.prometheus())
        .unwrap_or_default();
    let pool = client.pool_metrics();
    let per_origin = |o: &flext_pool::OriginSnapshot| escape(&o.origin.to_string());
    family(
        &mut out,
        (
            "flext_pool_connections",
            "gauge",
            "Open connections per origin and protocol.",
        ),
        pool.origins.iter().flat_map(|o| {
            [
                (
                    format!("origin=\"{}\",protocol=\"http1\"", per_origin(o)),
                    o.http1_connections as u64,
                ),
                (
                    format!("origin=\"{}\",protocol=\"http2\"", per_origin(o)),
                    o.http2_connections as u64,
                ),
            ]
        }),
    );
    for (name, kind, help, value) in [
        (
            "flext_pool_idle_connections",
            "gauge",
            "Idle connections per origin.",
            (|o: &flext_pool::OriginSnapshot| o.idle as u64)
                as fn(&flext_pool::OriginSnapshot) -> u64,
        ),
        (
            "flext_pool_waiters",
            "gauge",
            "Requests waiting for a connection per origin.",
            |o| o.waiters as u64,
        ),
        (
            "flext_pool_connections_opened_total",
            "counter",
            "Connections opened per origin.",
            |o| o.counters.opened_http1 + o.counters.opened_http2,
        ),
    ] {
        family(
            &mut out,
            (name, kind, help),
            pool.origins
                .iter()
                .map(|o| (format!("origin=\"{}\"", per_origin(o)), value(o))),
        );
    }
    if let Some(handle) = client.stack().breakers() {
        let snaps = handle.snapshots();
        family(
            &mut out,
            (
                "flext_breaker_state",
                "gauge",
                "Breaker state per origin: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled.",
            ),
            snaps.iter().map(|(origin, snap)| {
                (
                    format!("origin=\"{}\"", escape(&origin.to_string())),
                    u64::from(state_gauge(snap.state)),
                )
            }),
        );
        family(
            &mut out,
            (
                "flext_breaker_rejected_total",
                "counter",
                "Calls refused by an open circuit per origin.",
            ),
            snaps.iter().map(|(origin, snap)| {
                (
                    format!("origin=\"{}\"", escape(&origin.to_string())),
                    snap.rejected,
                )
            }),
        );
    }
    if let Some(retry) = client.stack().retry() {
        let m = retry.metrics();
        for (name, kind, help, value) in [
            (
                "flext_retry_retries_total",
                "counter",
                "Retries made.",
                m.retries,
            ),
            (
                "flext_retry_budget_exhausted_total",
                "counter",
                "Retries refused by an empty budget.",
                m.budget_exhausted,
            ),
            (
                "flext_retry_budget_available",
                "gauge",
                "Retries the budget allows now.",
                m.budget_available,
            ),
        ] {
            family(&mut out, (name, kind, help), [(String::new(), value)]);
        }
    }
    out
}

/// Writes one metric family: its `# HELP` and `# TYPE` lines, then a sample per label set
/// (an empty label set writes the bare name).
fn family(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
