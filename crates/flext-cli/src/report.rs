//! The reports of `bench` and `demo`: their JSON shapes and their text tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::bench::BenchReport;
use crate::stats::{Latency, percent};

/// The demo's report.
#[derive(Debug, Serialize)]
pub(crate) struct DemoReport {
    /// The embedded server's URL.
    pub(crate) server: String,
    /// The protocol most responses came over.
    pub(crate) protocol: Option<&'static str>,
    /// Wall time of the whole run.
    pub(crate) duration_ms: f64,
    /// Requests started per second.
    pub(crate) rate_rps: u32,
    /// Worker tasks.
    pub(crate) concurrency: usize,
    /// Seed of the fault choice.
    pub(crate) seed: u64,
    /// The client settings that matter to the story.
    pub(crate) settings: Settings,
    /// One entry per phase, in order.
    pub(crate) phases: Vec<PhaseReport>,
    /// Figures over the whole run.
    pub(crate) totals: Totals,
}

/// The client settings of the demo.
#[derive(Debug, Serialize)]
pub(crate) struct Settings {
    /// Total time for a call.
    pub(crate) timeout_ms: f64,
    /// Time for one attempt.
    pub(crate) attempt_timeout_ms: f64,
    /// Retries after the first attempt.
    pub(crate) max_retries: u32,
    /// Failures in a row that open the circuit.
    pub(crate) breaker_consecutive_failures: u32,
    /// The breaker's first open time.
    pub(crate) breaker_open_for_ms: f64,
}

/// One phase of the demo.
#[derive(Debug, Serialize)]
pub(crate) struct PhaseReport {
    /// `healthy`, `faults`, `outage` or `recovery`.
    pub(crate) name: &'static str,
    /// A title for people.
    pub(crate) title: &'static str,
    /// The time the phase was given.
    pub(crate) planned_ms: f64,
    /// The time it took, the last calls included.
    pub(crate) elapsed_ms: f64,
    /// Calls made.
    pub(crate) requests: u64,
    /// Calls whose final status was below 400.
    pub(crate) succeeded: u64,
    /// The other calls.
    pub(crate) failed: u64,
    /// `succeeded / requests` in percent.
    pub(crate) success_pct: f64,
    /// Retries made (attempts beyond the first).
    pub(crate) retries: u64,
    /// Calls an open circuit refused.
    pub(crate) circuit_open_rejections: u64,
    /// Requests that carried a `503,200` script.
    pub(crate) faults_injected: u64,
    /// Latency of every call, failures included.
    pub(crate) latency_ms: Latency,
    /// Latency of the calls an open circuit refused.
    pub(crate) fail_fast_latency_ms: Option<Latency>,
    /// Final statuses.
    pub(crate) status_counts: BTreeMap<String, u64>,
    /// Errors by kind.
    pub(crate) error_kinds: BTreeMap<&'static str, u64>,
    /// When the first call that succeeded ended, from the start of the phase.
    pub(crate) first_success_ms: Option<f64>,
    /// Connections the pool opened during the phase.
    pub(crate) connections_opened: u64,
    /// Requests sent on a reused connection during the phase.
    pub(crate) connections_reused: u64,
    /// The breaker's state at the end of the phase.
    pub(crate) breaker_state: Option<&'static str>,
    /// The breaker's changes of state during the phase.
    pub(crate) breaker_transitions: Vec<Transition>,
}

/// A change of the breaker's state.
#[derive(Debug, Serialize)]
pub(crate) struct Transition {
    /// From the start of the phase.
    pub(crate) at_ms: f64,
    /// The new state.
    pub(crate) state: &'static str,
}

/// The demo's figures over the whole run.
#[derive(Debug, Serialize)]
pub(crate) struct Totals {
    /// Calls made.
    pub(crate) requests: u64,
    /// Calls whose final status was below 400.
    pub(crate) succeeded: u64,
    /// Retries made.
    pub(crate) retries: u64,
    /// Calls an open circuit refused.
    pub(crate) circuit_open_rejections: u64,
    /// Retries refused because the retry budget was empty.
    pub(crate) retry_budget_exhausted: u64,
    /// Connections the pool opened.
    pub(crate) connections_opened: u64,
    /// Requests sent on a reused connection.
    pub(crate) connections_reused: u64,
    /// Requests the server received (attempts, not calls).
    pub(crate) server_requests: u64,
    /// Connections the server accepted.
    pub(crate) server_connections: u64,
    /// TLS handshakes the server completed.
    pub(crate) tls_handshakes: u64,
    /// Attempts the trace layer recorded, by status class.
    pub(crate) traced_attempts_by_status_class: BTreeMap<&'static str, u64>,
    /// Attempts the trace layer recorded, by `error.type`.
    pub(crate) traced_attempts_by_error_type: BTreeMap<String, u64>,
}

/// A latency in milliseconds, short.
fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{:.0}us", v * 1000.0)
    } else if v < 1000.0 {
        format!("{v:.1}ms")
    } else {
        format!("{:.2}s", v / 1000.0)
    }
}

fn counts<K: std::fmt::Display>(map: impl IntoIterator<Item = (K, u64)>) -> String {
    let parts: Vec<String> = map.into_iter().map(|(k, v)| format!("{k} {v}")).collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The bench report as a table.
pub(crate) fn bench(r: &BenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "flext bench: {} {}, concurrency {}{}",
        r.method,
        r.url,
        r.concurrency,
        if r.interrupted { " (interrupted)" } else { "" }
    );
    let _ = writeln!(out);
    let rows = [
        (
            "requests",
            format!(
                "{} in {} ({:.1} req/s)",
                r.requests,
                ms(r.elapsed_ms),
                r.throughput_rps
            ),
        ),
        (
            "succeeded",
            format!(
                "{} ({:.1}%), {} with another status, {} without a response",
                r.succeeded,
                percent(r.succeeded, r.requests),
                r.responses - r.succeeded,
                r.errors
            ),
        ),
        (
            "latency",
            if r.responses == 0 {
                "-".to_string()
            } else {
                format!(
                    "p50 {}  p90 {}  p99 {}  max {}  mean {}",
                    ms(r.latency_ms.p50),
                    ms(r.latency_ms.p90),
                    ms(r.latency_ms.p99),
                    ms(r.latency_ms.max),
                    ms(r.latency_ms.mean)
                )
            },
        ),
        (
            "error lat.",
            if r.errors == 0 {
                "-".to_string()
            } else {
                let l = &r.error_latency_ms;
                format!(
                    "p50 {}  p90 {}  p99 {}  max {}  mean {}",
                    ms(l.p50),
                    ms(l.p90),
                    ms(l.p99),
                    ms(l.max),
                    ms(l.mean)
                )
            },
        ),
        (
            "statuses",
            counts(r.status_counts.iter().map(|(k, v)| (k, *v))),
        ),
        ("errors", counts(r.error_kinds.iter().map(|(k, v)| (k, *v)))),
        ("retries", r.retries.to_string()),
        (
            "circuit open",
            format!("{} calls refused", r.circuit_open_rejections),
        ),
        (
            "connections",
            format!(
                "{} opened, {} reused ({})",
                r.connections_opened,
                r.connections_reused,
                r.protocol.unwrap_or("no response")
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "  {name:<12} {value}");
    }
    out
}

/// One line about a phase: what the figures say happened.
pub(crate) fn phase_line(p: &PhaseReport) -> String {
    let mut parts = vec![format!(
        "{} of {} succeeded ({:.1}%)",
        p.succeeded, p.requests, p.success_pct
    )];
    if p.faults_injected > 0 {
        parts.push(format!(
            "{} met a 503 first",
            plural(p.faults_injected, "request", "requests")
        ));
    }
    parts.push(plural(p.retries, "retry", "retries"));
    for t in &p.breaker_transitions {
        let what = match t.state {
            "open" => "circuit opened",
            "half-open" => "circuit half-open",
            "closed" => "circuit closed",
            other => other,
        };
        parts.push(format!("{what} at +{}", ms(t.at_ms)));
    }
    if let Some(ff) = &p.fail_fast_latency_ms {
        parts.push(format!(
            "{} refused by the open circuit (p50 {}, p99 {})",
            plural(p.circuit_open_rejections, "call", "calls"),
            ms(ff.p50),
            ms(ff.p99)
        ));
    }
    let other: Vec<(&str, u64)> = p
        .error_kinds
        .iter()
        .filter(|(k, _)| **k != "circuit_open")
        .map(|(k, v)| (*k, *v))
        .collect();
    if !other.is_empty() {
        parts.push(format!("other errors: {}", counts(other)));
    }
    if p.name == "recovery"
        && let Some(first) = p.first_success_ms
    {
        parts.push(format!("first success at +{}", ms(first)));
    }
    parts.push(format!(
        "{} opened",
        plural(p.connections_opened, "connection", "connections")
    ));
    parts.join("; ")
}

/// The demo report as a table and a few lines of what happened.
pub(crate) fn demo(r: &DemoReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nflext demo: {} requests/s, {} tasks, {} over {} in {}",
        r.rate_rps,
        r.concurrency,
        r.protocol.unwrap_or("-"),
        r.server,
        ms(r.duration_ms)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:<19} {:>6} {:>8} {:>7} {:>7} {:>9} {:>8} {:>8} {:>5}  breaker",
        "phase", "time", "requests", "ok", "retries", "rejected", "p50", "p99", "conns"
    );
    for (i, p) in r.phases.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:<19} {:>6} {:>8} {:>6.1}% {:>7} {:>9} {:>8} {:>8} {:>5}  {}",
            format!("{} {}", i + 1, p.title),
            ms(p.elapsed_ms),
            p.requests,
            p.success_pct,
            p.retries,
            p.circuit_open_rejections,
            ms(p.latency_ms.p50),
            ms(p.latency_ms.p99),
            p.connections_opened,
            p.breaker_state.unwrap_or("-")
        );
    }
    let _ = writeln!(out, "\n  what happened:");
    for (i, p) in r.phases.iter().enumerate() {
        let _ = writeln!(out, "  {} {}: {}", i + 1, p.title, phase_line(p));
    }
    let t = &r.totals;
    let _ = writeln!(
        out,
        "  pool: {} for {} calls; {} sent on a reused connection (the server accepted {}, {} TLS handshakes)",
        plural(
            t.connections_opened,
            "connection opened",
            "connections opened"
        ),
        t.requests,
        plural(t.connections_reused, "attempt", "attempts"),
        t.server_connections,
        t.tls_handshakes
    );
    let _ = writeln!(
        out,
        "  retries: {} in all, {} refused by an empty retry budget; the server saw {} attempts",
        t.retries, t.retry_budget_exhausted, t.server_requests
    );
    let _ = writeln!(
        out,
        "  tracing: attempt spans by status {}; by error type {}",
        counts(
            t.traced_attempts_by_status_class
                .iter()
                .map(|(k, v)| (k, *v))
        ),
        counts(t.traced_attempts_by_error_type.iter().map(|(k, v)| (k, *v)))
    );
    let s = &r.settings;
    let _ = writeln!(
        out,
        "  note: the retry layer retries a refused call once the circuit's remaining open time is\n        \
         over, when that fits in the call's timeout; so the calls just before a probe wait for it."
    );
    let _ = writeln!(
        out,
        "  settings: breaker opens after {} failures in a row for {}; timeout {}, attempt timeout {}, {} retries",
        s.breaker_consecutive_failures,
        ms(s.breaker_open_for_ms),
        ms(s.timeout_ms),
        ms(s.attempt_timeout_ms),
        s.max_retries
    );
    out
}
