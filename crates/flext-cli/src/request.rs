//! `flext request`: one call through the full stack, like curl.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use flext_api::retry::RetryInfo;
use flext_api::{Body, Client, ClientConfig, HttpVersionPref, Response};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{Method, Request};
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::args::RequestArgs;
use crate::client::{self, protocol_label};
use crate::duration::{format as fmt_duration, millis};
use crate::error::CliError;

/// What `--stats-json` holds.
#[derive(Debug, Default, Serialize)]
struct CallStats {
    /// The method sent.
    method: String,
    /// The URL, without user-info and query (they may hold secrets).
    url: String,
    /// The final status, when there was a response.
    status: Option<u16>,
    /// Attempts made, the first included.
    attempts: u32,
    /// Each retry: the failure before it and the wait.
    retries: Vec<RetryStat>,
    /// Time waited between attempts.
    backoff_ms: f64,
    /// `HTTP/1.1` or `HTTP/2`, when there was a response.
    protocol: Option<&'static str>,
    /// From the start of the command to the end of the body (or the failure).
    elapsed_ms: f64,
    /// From the start of the command to the response head.
    head_ms: Option<f64>,
    /// Body bytes written.
    body_bytes: u64,
    /// The breaker of the origin after the call (`closed`, `open`, ...).
    breaker_state: Option<&'static str>,
    /// Connections the pool opened.
    connections_opened: u64,
    /// On failure: the kind (`connect`, `timeout`, `tls`, `circuit_open`, `status`, ...).
    error_kind: Option<&'static str>,
    /// On failure: the message.
    error: Option<String>,
}

/// One retry in `--stats-json`.
#[derive(Debug, Serialize)]
struct RetryStat {
    /// The failure of the attempt before the retry: a status (`"503"`) or a kind.
    after: String,
    /// The wait before the retry.
    delay_ms: f64,
}

impl CallStats {
    fn retry_info(&mut self, info: Option<&RetryInfo>) {
        self.attempts = info.map_or(1, RetryInfo::attempts);
        self.backoff_ms = info.map_or(0.0, |i| millis(i.backoff()));
        self.retries = info
            .map(|i| {
                i.retries()
                    .iter()
                    .map(|r| RetryStat {
                        after: r.failure().label().to_string(),
                        delay_ms: millis(r.delay()),
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
}

/// Runs `flext request`.
///
/// # Errors
///
/// See [`CliError`]; the exit status follows from it.
pub(crate) async fn run(args: RequestArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let mut stats = CallStats {
        method: method_of(&args).to_string(),
        url: redact(&args.url),
        attempts: 1,
        ..CallStats::default()
    };
    let result = call(&args, &mut stats, started).await;
    stats.elapsed_ms = millis(started.elapsed());
    if let Err(e) = &result {
        stats.error_kind = Some(e.kind_label());
        stats.error = Some(e.to_string());
    }
    if let Some(path) = &args.stats_json
        && let Err(e) = write_stats(path, &stats)
    {
        match result {
            Ok(()) => return Err(e),
            // The call's own error matters more; still say the summary is missing.
            Err(_) => eprintln!("flext: {e}"),
        }
    }
    result
}

fn method_of(args: &RequestArgs) -> Method {
    match &args.method {
        Some(m) => m.clone(),
        None if args.data.is_some() || args.json.is_some() => Method::POST,
        None => Method::GET,
    }
}

async fn call(args: &RequestArgs, stats: &mut CallStats, started: Instant) -> Result<(), CliError> {
    let mut config = client::config(&args.conn);
    match args.retries {
        Some(0) => config.retry.enabled = false,
        Some(n) => config.retry.max_retries = n,
        None => {}
    }
    let client = client::build(&args.conn, config.clone())?;
    let request = build_request(&client, args)?;
    if args.verbose {
        eprint!("{}", describe_request(&request, &config));
    }

    let result = client.execute(request).await;
    let head = started.elapsed();
    stats.breaker_state = client::breaker_state(&client);
    stats.connections_opened = client::pool_counts(&client).0;
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            stats.retry_info(e.retry_info());
            if args.verbose {
                eprint!("{}", describe_retries(e.retry_info()));
                eprint!("{}", describe_error(&e, head));
                eprint!("{}", describe_client(&client));
            }
            return Err(CliError::Request(e));
        }
    };
    stats.status = Some(response.status().as_u16());
    stats.protocol = Some(protocol_label(response.version()));
    stats.head_ms = Some(millis(head));
    stats.retry_info(response.retry_info());
    if args.verbose {
        eprint!("{}", describe_retries(response.retry_info()));
        eprint!("{}", head_text(&response, "< ", "\n", true));
    }
    if args.fail && response.status().as_u16() >= 400 {
        if args.verbose {
            eprint!("{}", describe_client(&client));
        }
        return match response.error_for_status() {
            Err(e) => Err(CliError::HttpStatus(e)),
            Ok(_) => Ok(()),
        };
    }

    let bytes = write_body(args, response, stats).await?;
    if args.verbose {
        eprintln!(
            "* {} body bytes; response head after {}, done after {}",
            bytes,
            fmt_duration(head),
            fmt_duration(started.elapsed())
        );
        eprint!("{}", describe_client(&client));
    }
    stats.breaker_state = client::breaker_state(&client);
    Ok(())
}

/// Streams the body to stdout or `-o FILE`, after the head with `-i`; returns its length.
async fn write_body(
    args: &RequestArgs,
    mut response: Response,
    stats: &mut CallStats,
) -> Result<u64, CliError> {
    let (mut out, target): (Box<dyn AsyncWrite + Unpin + Send>, String) = match &args.output {
        Some(path) => {
            let file = tokio::fs::File::create(path)
                .await
                .map_err(|e| CliError::file("creating", path, e))?;
            (Box::new(file), path.display().to_string())
        }
        None => (Box::new(tokio::io::stdout()), "stdout".to_string()),
    };
    let io_err = |e| CliError::io(format!("writing to {target}"), e);
    if args.include {
        let head = head_text(&response, "", "\r\n", false);
        out.write_all(head.as_bytes()).await.map_err(io_err)?;
        out.write_all(b"\r\n").await.map_err(io_err)?;
    }
    let mut bytes = 0u64;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                out.write_all(&chunk).await.map_err(io_err)?;
                bytes += chunk.len() as u64;
                stats.body_bytes = bytes;
            }
            Ok(None) => break,
            Err(e) => {
                // Whatever arrived is written; the error says the rest is missing.
                let _ = out.flush().await;
                return Err(CliError::Request(e));
            }
        }
    }
    out.flush().await.map_err(io_err)?;
    Ok(bytes)
}

/// Builds the request: method, URL, body, headers, then per-request credentials set
/// directly as sensitive headers (never logged, never indexed by HTTP/2's HPACK).
fn build_request(client: &Client, args: &RequestArgs) -> Result<Request<Body>, CliError> {
    let mut builder = client.request(method_of(args), &args.url);
    if let Some(key) = &args.idempotency_key {
        builder = builder.idempotency_key(key);
    }
    if let Some(body) = args.json.as_ref().or(args.data.as_ref()) {
        builder = builder.body(body.clone());
    }
    let mut request = builder.build().map_err(CliError::Request)?;
    let headers = request.headers_mut();
    for (name, value) in &args.headers {
        let mut value = value.clone();
        if is_secret_header(name.as_str()) {
            value.set_sensitive(true);
        }
        headers.append(name.clone(), value);
    }
    if args.json.is_some() {
        let json = HeaderValue::from_static("application/json");
        headers.entry(CONTENT_TYPE).or_insert_with(|| json.clone());
        headers.entry(ACCEPT).or_insert(json);
    } else if args.data.is_some() {
        headers
            .entry(CONTENT_TYPE)
            .or_insert(HeaderValue::from_static(
                "application/x-www-form-urlencoded",
            ));
    }
    if let Some(token) = &args.bearer {
        headers.insert(
            AUTHORIZATION,
            secret(format!("Bearer {token}"), "--bearer")?,
        );
    }
    if let Some((user, pass)) = &args.basic {
        let encoded = base64(format!("{user}:{pass}").as_bytes());
        headers.insert(
            AUTHORIZATION,
            secret(format!("Basic {encoded}"), "--basic")?,
        );
    }
    if let Some((name, key)) = &args.api_key {
        headers.insert(name.clone(), secret(key.clone(), "--api-key")?);
    }
    Ok(request)
}

fn secret(value: String, flag: &str) -> Result<HeaderValue, CliError> {
    let mut v = HeaderValue::try_from(value)
        .map_err(|_| CliError::Usage(format!("{flag}: has characters not allowed in a header")))?;
    v.set_sensitive(true);
    Ok(v)
}

fn is_secret_header(name: &str) -> bool {
    matches!(
        name,
        "authorization" | "proxy-authorization" | "cookie" | "x-api-key" | "api-key"
    )
}

/// Standard base64 with padding (RFC 4648 §4), for Basic credentials.
fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The URL without user-info and query.
fn redact(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => {
            let mut out = String::new();
            if let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) {
                let _ = write!(out, "{scheme}://{host}");
                if let Some(port) = uri.port_u16() {
                    let _ = write!(out, ":{port}");
                }
            }
            out.push_str(uri.path());
            out
        }
        Err(_) => String::new(),
    }
}

fn write_headers(out: &mut String, headers: &HeaderMap, prefix: &str, eol: &str, redact: bool) {
    for (name, value) in headers {
        let shown = if redact && (value.is_sensitive() || is_secret_header(name.as_str())) {
            "[redacted]".to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        let _ = write!(out, "{prefix}{name}: {shown}{eol}");
    }
}

/// The status line and headers, like curl prints them.
fn head_text(response: &Response, prefix: &str, eol: &str, redact: bool) -> String {
    let mut out = format!(
        "{prefix}{} {}{eol}",
        protocol_label(response.version()),
        response.status()
    );
    write_headers(&mut out, response.headers(), prefix, eol, redact);
    out
}

fn describe_request(request: &Request<Body>, config: &ClientConfig) -> String {
    let retries = if config.retry.enabled {
        config.retry.max_retries.to_string()
    } else {
        "off".to_string()
    };
    let mut out = format!(
        "* flext {}: retries {retries}, timeout {}, attempt timeout {}, breaker {}, protocol {}\n",
        env!("CARGO_PKG_VERSION"),
        fmt_duration(config.timeout),
        fmt_duration(config.attempt_timeout),
        if config.breaker.enabled { "on" } else { "off" },
        match config.protocol {
            HttpVersionPref::Http1 => "HTTP/1.1 only",
            HttpVersionPref::Http2PriorKnowledge => "HTTP/2 with prior knowledge",
            _ => "auto (HTTP/2 when TLS ALPN picks it)",
        },
    );
    let _ = writeln!(out, "> {} {}", request.method(), request.uri());
    write_headers(&mut out, request.headers(), "> ", "\n", true);
    if let Some(len) = request
        .body()
        .as_bytes()
        .map(<[u8]>::len)
        .filter(|n| *n > 0)
    {
        let _ = writeln!(out, "> ({len} body bytes)");
    }
    out
}

fn describe_retries(info: Option<&RetryInfo>) -> String {
    let mut out = String::new();
    let Some(info) = info else {
        out.push_str("* 1 attempt\n");
        return out;
    };
    for (i, r) in info.retries().iter().enumerate() {
        let _ = writeln!(
            out,
            "* attempt {} failed ({}); retried after {}",
            i + 1,
            r.failure().label(),
            fmt_duration(r.delay())
        );
    }
    let _ = writeln!(
        out,
        "* {} attempt{}, {} in backoff",
        info.attempts(),
        if info.attempts() == 1 { "" } else { "s" },
        fmt_duration(info.backoff())
    );
    if let Some(reason) = info.stop_reason() {
        let _ = writeln!(out, "* not retried further: {reason}");
    }
    out
}

fn describe_error(e: &flext_api::Error, after: Duration) -> String {
    let mut out = format!(
        "* failed after {} ({}): {e}\n",
        fmt_duration(after),
        e.kind_label()
    );
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let _ = writeln!(out, "*   caused by: {c}");
        cause = c.source();
    }
    if let Some(wait) = e.circuit_retry_after() {
        let _ = writeln!(
            out,
            "* the breaker lets a probe through in {}",
            fmt_duration(wait)
        );
    }
    out
}

fn describe_client(client: &Client) -> String {
    let mut out = String::new();
    for o in client.health().origins {
        if let Some(state) = o.breaker_state {
            let _ = writeln!(
                out,
                "* breaker {}: {state} (failure rate {:.0}%, {} rejected)",
                o.origin,
                o.breaker_failure_rate.unwrap_or(0.0) * 100.0,
                o.breaker_rejected.unwrap_or(0)
            );
        }
        let _ = writeln!(
            out,
            "* pool {}: {} connection{} opened, {} reused",
            o.origin,
            o.connections_opened,
            if o.connections_opened == 1 { "" } else { "s" },
            o.connections_reused
        );
    }
    out
}

fn write_stats(path: &Path, stats: &CallStats) -> Result<(), CliError> {
    let mut text = serde_json::to_string_pretty(stats)
        .map_err(|e| CliError::io("encoding --stats-json", e.into()))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| CliError::file("writing", path, e))
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn urls_lose_their_secrets() {
        assert_eq!(
            redact("https://user:pw@api.example.com:8443/x?token=s3cret"),
            "https://api.example.com:8443/x"
        );
    }
}
