//! Building a [`Client`] from the shared connection options, and reading what it knows about
//! breakers and the pool.

use flext_api::{Client, ClientBuilder, ClientConfig, HttpVersionPref};
use http::Version;

use crate::args::ConnArgs;
use crate::error::CliError;

/// The client settings the options ask for, on top of flext-api's defaults.
///
/// A `--timeout` shorter than the default attempt timeout shortens the attempt timeout too
/// (so `--timeout 2s` alone is valid), and the breaker's window grows to twice the attempt
/// timeout when needed (flext-api requires it, so slow failures stay visible).
pub(crate) fn config(conn: &ConnArgs) -> ClientConfig {
    let mut c = ClientConfig::default();
    if let Some(t) = conn.timeout {
        c.timeout = t;
        c.attempt_timeout = c.attempt_timeout.min(t);
    }
    if let Some(t) = conn.attempt_timeout {
        c.attempt_timeout = t;
    }
    c.connect_timeout = c.connect_timeout.min(c.timeout);
    c.breaker.window = c.breaker.window.max(c.attempt_timeout.saturating_mul(2));
    c.protocol = if conn.http1 {
        HttpVersionPref::Http1
    } else if conn.http2_prior_knowledge {
        HttpVersionPref::Http2PriorKnowledge
    } else {
        HttpVersionPref::Auto
    };
    c.danger_accept_invalid_certs = conn.insecure;
    c
}

/// Builds the client.
///
/// # Errors
///
/// [`CliError::Setup`] naming the setting flext-api refused.
pub(crate) fn build(conn: &ConnArgs, config: ClientConfig) -> Result<Client, CliError> {
    let mut builder = ClientBuilder::from_config(config);
    if let Some(ca) = &conn.cacert {
        builder = builder.add_root_certificate_pem(&ca.pem);
    }
    builder
        .build()
        .map_err(|e| match (&conn.cacert, e.setting()) {
            (Some(ca), Some("root_certificate")) => {
                CliError::Usage(format!("--cacert {}: {e}", ca.path.display()))
            }
            _ => CliError::Setup(e),
        })
}

/// `HTTP/1.1`, `HTTP/2`, ... as curl writes them.
pub(crate) fn protocol_label(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// Connections the pool opened and reuses it made so far, over every origin.
pub(crate) fn pool_counts(client: &Client) -> (u64, u64) {
    client
        .pool_metrics()
        .origins
        .iter()
        .fold((0, 0), |(opened, reused), o| {
            (
                opened + o.counters.opened_http1 + o.counters.opened_http2,
                reused + o.counters.reused,
            )
        })
}

/// The state of the first breaker the client holds (`closed`, `open`, `half-open`, ...), or
/// `None` without breakers or before the first call.
pub(crate) fn breaker_state(client: &Client) -> Option<&'static str> {
    let handle = client.stack().breakers()?;
    handle
        .snapshots()
        .first()
        .map(|(_, snapshot)| snapshot.state.as_str())
}
