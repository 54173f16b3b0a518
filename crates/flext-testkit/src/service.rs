//! The request handler: counts the request, picks its step, and plays it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Serialize;

use crate::body::{TestBody, pattern};
use crate::config::{Config, RandomFaults};
use crate::conn::{ConnCtl, InFlight};
use crate::script::{Action, RetryAfter, Script, ScriptError, Step};
use crate::stats::Counters;
use crate::{CONNECTION_ID_HEADER, ID_HEADER, SCRIPT_HEADER};

/// State every request of a server reads: configuration, counters and scripts.
#[derive(Debug)]
pub(crate) struct Shared {
    latency: Duration,
    max_requests: Option<u64>,
    pub(crate) counters: Arc<Counters>,
    scripts: Mutex<Scripts>,
}

/// Programmatic scripts, the positions in them, and the random-fault generator.
#[derive(Debug, Default)]
struct Scripts {
    by_id: HashMap<String, Arc<Script>>,
    by_path: HashMap<String, Arc<Script>>,
    /// Requests seen per id, for header and programmatic scripts.
    id_position: HashMap<String, u64>,
    /// Requests seen per path with a script header but no id.
    anonymous_position: HashMap<String, u64>,
    /// Requests per path that played the path's script.
    path_position: HashMap<String, u64>,
    faults: Option<(RandomFaults, fastrand::Rng)>,
}

fn advance(map: &mut HashMap<String, u64>, key: &str) -> u64 {
    match map.get_mut(key) {
        Some(n) => {
            *n += 1;
            *n
        }
        None => {
            map.insert(key.to_owned(), 1);
            1
        }
    }
}

impl Shared {
    pub(crate) fn new(config: &Config) -> Self {
        Shared {
            latency: config.latency,
            max_requests: config.max_requests_per_connection,
            counters: Arc::default(),
            scripts: Mutex::new(Scripts {
                faults: config
                    .random_faults
                    .map(|f| (f, fastrand::Rng::with_seed(f.seed))),
                ..Scripts::default()
            }),
        }
    }

    /// Installs a script for requests with this id, from its first step.
    pub(crate) fn script_id(&self, id: &str, script: Script) {
        let mut scripts = crate::lock(&self.scripts);
        scripts.by_id.insert(id.to_owned(), Arc::new(script));
        scripts.id_position.remove(id);
    }

    /// Installs the default script for this path, from its first step.
    pub(crate) fn script_path(&self, path: &str, script: Script) {
        let mut scripts = crate::lock(&self.scripts);
        scripts.by_path.insert(path.to_owned(), Arc::new(script));
        scripts.path_position.remove(path);
    }

    pub(crate) fn clear_scripts(&self) {
        let mut scripts = crate::lock(&self.scripts);
        scripts.by_id.clear();
        scripts.by_path.clear();
        scripts.id_position.clear();
        scripts.anonymous_position.clear();
        scripts.path_position.clear();
    }

    /// The step this request plays: from its header, its id, its path, random faults,
    /// or the plain `200 ok`.
    fn choose(
        &self,
        id: Option<&str>,
        path: &str,
        header: Option<&str>,
    ) -> Result<Step, ScriptError> {
        let header = header.map(Script::parse).transpose()?;
        let mut guard = crate::lock(&self.scripts);
        let scripts = &mut *guard;
        let id_n = id.map(|id| advance(&mut scripts.id_position, id));
        if let Some(script) = header {
            let n = match id_n {
                Some(n) => n,
                None => advance(&mut scripts.anonymous_position, path),
            };
            return Ok(script.step(n).clone());
        }
        if let (Some(id), Some(n)) = (id, id_n)
            && let Some(script) = scripts.by_id.get(id)
        {
            return Ok(script.step(n).clone());
        }
        if let Some(script) = scripts.by_path.get(path) {
            let n = advance(&mut scripts.path_position, path);
            return Ok(script.step(n).clone());
        }
        let mut step = Step::status(StatusCode::OK);
        if let Some((faults, rng)) = &mut scripts.faults {
            // Always two draws, so the sequence does not depend on the probabilities.
            let (fault, delayed) = (rng.f64(), rng.f64());
            let p_drop = faults.p_drop;
            let p_reset = p_drop + faults.p_reset;
            let p_503 = p_reset + faults.p_503;
            if fault < p_drop {
                step.action = Action::Drop;
            } else if fault < p_reset {
                step.action = Action::Reset;
            } else if fault < p_503 {
                step.action = Action::Status(StatusCode::SERVICE_UNAVAILABLE);
            }
            if delayed < faults.p_delay {
                step.options.delay = Some(faults.delay);
            }
        }
        Ok(step)
    }
}

/// The error that makes hyper reset an HTTP/2 stream with `REFUSED_STREAM`.
///
/// hyper looks for an [`h2::Error`] in the source chain of a service error for the reason.
#[derive(Debug)]
pub(crate) struct ResetStream(h2::Error);

impl fmt::Display for ResetStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stream reset by the test script")
    }
}

impl std::error::Error for ResetStream {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Serves one request on connection `conn`.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnCtl>,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, ResetStream> {
    let (in_flight, nth) = conn.begin();
    let version = req.version();
    let h2 = version == Version::HTTP_2;
    let id_header = req.headers().get(ID_HEADER);
    let id = id_header.and_then(|v| v.to_str().ok());
    let path = req.uri().path();
    shared.counters.request(version, id, path);

    let last_on_conn = shared.max_requests.is_some_and(|max| nth >= max);
    let script = req.headers().get(SCRIPT_HEADER);
    let step = if id_header.is_some() && id.is_none() {
        Err(format!("{ID_HEADER} is not visible ASCII"))
    } else {
        match script.map(HeaderValue::to_str).transpose() {
            Err(_) => Err(format!("{SCRIPT_HEADER} is not visible ASCII")),
            Ok(script) => shared
                .choose(id, path, script)
                .map_err(|e| format!("invalid {SCRIPT_HEADER}: {e}")),
        }
    };
    let step = match step {
        Ok(step) => step,
        Err(message) => {
            pause(shared.latency).await;
            let mut res = text(StatusCode::BAD_REQUEST, message.into(), in_flight);
            finish(&mut res, &conn, h2, last_on_conn);
            return Ok(res);
        }
    };

    let delay = shared
        .latency
        .saturating_add(step.options.delay.unwrap_or_default());
    match step.action {
        Action::Reset | Action::Malformed(_) if h2 => {
            pause(delay).await;
            return Err(ResetStream(h2::Error::from(h2::Reason::REFUSED_STREAM)));
        }
        Action::Drop | Action::Reset => {
            pause(delay).await;
            conn.abort();
            // The connection task drops this future with the connection.
            return std::future::pending().await;
        }
        Action::Malformed(malformed) => {
            // Read the request to its end first, so that closing does not reset the
            // connection over unread bytes.
            let _ = drain(req.into_body()).await;
            pause(delay).await;
            conn.raw(crate::raw::bytes(malformed));
            // The connection task drops this future with the connection.
            return std::future::pending().await;
        }
        Action::Status(_) | Action::Echo | Action::GoAway => {}
    }

    let echo = step.action == Action::Echo;
    let (parts, body) = req.into_parts();
    let received = if echo {
        body.collect()
            .await
            .map(|c| (c.trailers().cloned(), c.to_bytes()))
    } else {
        drain(body).await.map(|()| (None, Bytes::new()))
    };
    let (status, content_type, payload) = match (step.action, received) {
        (_, Err(e)) => (
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            Bytes::from(format!("could not read the request body: {e}")),
        ),
        (Action::Echo, Ok((trailers, body))) => (
            StatusCode::OK,
            "application/json",
            echo_json(&parts, &body, trailers.as_ref(), conn.id()),
        ),
        (Action::Status(status), Ok(_)) => {
            (status, "text/plain; charset=utf-8", default_body(status))
        }
        (_, Ok(_)) => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok"),
        ),
    };
    let options = &step.options;
    let payload = match options.body {
        Some(n) => pattern(usize::try_from(n).unwrap_or(usize::MAX)),
        None => payload,
    };

    pause(delay).await;
    let body = TestBody::chunked(
        payload,
        options.chunks.unwrap_or(1),
        options.chunk_delay.unwrap_or_default(),
        Some(in_flight),
    );
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(value) = options.retry_after.and_then(retry_after) {
        headers.insert(RETRY_AFTER, value);
    }
    // Scripted headers replace the server's own of the same name.
    for (name, _) in &options.headers {
        headers.remove(name);
    }
    for (name, value) in &options.headers {
        headers.append(name.clone(), value.clone());
    }
    let close = last_on_conn || options.close || step.action == Action::GoAway;
    finish(&mut res, &conn, h2, close);
    Ok(res)
}

async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// Reads and discards a request body, so that an HTTP/1.1 connection stays reusable.
async fn drain(mut body: Incoming) -> Result<(), hyper::Error> {
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

fn default_body(status: StatusCode) -> Bytes {
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Bytes::new()
    } else if status.is_success() {
        Bytes::from_static(b"ok")
    } else {
        Bytes::from_static(status.canonical_reason().unwrap_or("").as_bytes())
    }
}

fn text(status: StatusCode, body: Bytes, in_flight: InFlight) -> Response<TestBody> {
    let mut res = Response::new(TestBody::full(body, Some(in_flight)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// Adds the connection id and, if `close`, closes the connection after this response.
fn finish(res: &mut Response<TestBody>, conn: &ConnCtl, h2: bool, close: bool) {
    res.headers_mut()
        .insert(CONNECTION_ID_HEADER, HeaderValue::from(conn.id()));
    if close {
        if h2 {
            conn.close();
        } else {
            res.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// The `Retry-After` value; dates are clamped to what an HTTP-date can express.
fn retry_after(retry_after: RetryAfter) -> Option<HeaderValue> {
    match retry_after {
        RetryAfter::Seconds(secs) => Some(HeaderValue::from(secs)),
        RetryAfter::DateIn(secs) => {
            // httpdate panics before 1970 and after 9999.
            const LAST_HTTP_DATE: u64 = 253_402_300_799;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let at = now.saturating_add(secs).min(LAST_HTTP_DATE);
            let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(at));
            HeaderValue::from_str(&date).ok()
        }
    }
}

/// The JSON description of a request that `echo` answers with.
#[derive(Debug, Serialize)]
struct Echo<'a> {
    method: &'a str,
    uri: String,
    path: &'a str,
    query: Option<&'a str>,
    version: &'static str,
    headers: Vec<(&'a str, Cow<'a, str>)>,
    body: Cow<'a, str>,
    body_len: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    trailers: Option<Vec<(&'a str, Cow<'a, str>)>>,
    connection: u64,
}

fn pairs(headers: &HeaderMap) -> Vec<(&str, Cow<'_, str>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value.as_bytes())))
        .collect()
}

fn echo_json(
    parts: &http::request::Parts,
    body: &Bytes,
    trailers: Option<&HeaderMap>,
    connection: u64,
) -> Bytes {
    let echo = Echo {
        method: parts.method.as_str(),
        uri: parts.uri.to_string(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        version: match parts.version {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        },
        headers: pairs(&parts.headers),
        body: String::from_utf8_lossy(body),
        body_len: body.len(),
        trailers: trailers.map(pairs),
        connection,
    };
    // Serializing strings and integers cannot fail.
    serde_json::to_vec(&echo).map_or_else(|e| Bytes::from(e.to_string()), Bytes::from)
}
