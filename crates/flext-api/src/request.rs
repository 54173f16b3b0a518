//! [`RequestBuilder`]: headers, query, bodies and per-request settings.

use std::fmt;
use std::time::Duration;

use flext_core::Deadline;
use flext_retry::{IDEMPOTENCY_KEY, RetryOverride};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use serde::Serialize;

use crate::body::Body;
use crate::client::Client;
use crate::error::Error;
use crate::pending::Pending;

/// A request being built. Errors in what is added (an invalid header, a query that does not
/// serialize) are kept and returned by [`send`](Self::send), so the chain reads straight.
///
/// ```no_run
/// # async fn run(client: flext_api::Client) -> Result<(), flext_api::Error> {
/// let response = client
///     .post("orders")
///     .header("x-tenant", "acme")
///     .query(&[("dry_run", "false")])
///     .json(&serde_json::json!({"sku": "A-1", "qty": 2}))
///     .idempotency_key("order-7f3a")
///     .timeout(std::time::Duration::from_secs(5))
///     .send()
///     .await?;
/// # let _ = response; Ok(()) }
/// ```
pub struct RequestBuilder {
    client: Client,
    request: Result<Request<Body>, Error>,
    // Counted from the hand-off to the stack (`send`) or from `build`.
    timeout: Option<Duration>,
}

impl RequestBuilder {
    pub(crate) fn new(client: Client, method: Method, uri: Result<Uri, Error>) -> RequestBuilder {
        let request = uri.map(|uri| {
            let mut req = Request::new(Body::empty());
            *req.method_mut() = method;
            *req.uri_mut() = uri;
            req
        });
        RequestBuilder {
            client,
            request,
            timeout: None,
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Request<Body>) -> Result<(), Error>) -> Self {
        if let Ok(req) = &mut self.request
            && let Err(e) = f(req)
        {
            self.request = Err(e);
        }
        self
    }

    /// Adds a header (an invalid name or value is an error at `send`).
    pub fn header(self, name: &str, value: &str) -> Self {
        let (name, value) = (name.to_string(), value.to_string());
        self.with(move |req| {
            let n = HeaderName::try_from(name.as_str())
                .map_err(|e| Error::request(format!("header name {name:?}: {e}")))?;
            let v = HeaderValue::try_from(value.as_str())
                .map_err(|e| Error::request(format!("value of header {name:?}: {e}")))?;
            req.headers_mut().append(n, v);
            Ok(())
        })
    }

    /// Adds query parameters, serialized with `serde_urlencoded` (a map, a struct, or a list
    /// of pairs).
    pub fn query<T: Serialize + ?Sized>(self, query: &T) -> Self {
        let encoded =
            serde_urlencoded::to_string(query).map_err(|e| Error::request(format!("query: {e}")));
        self.with(move |req| {
            let encoded = encoded?;
            if encoded.is_empty() {
                return Ok(());
            }
            let uri = req.uri();
            let path = uri.path();
            let pq = match uri.query() {
                Some(q) if !q.is_empty() => format!("{path}?{q}&{encoded}"),
                _ => format!("{path}?{encoded}"),
            };
            let mut parts = uri.clone().into_parts();
            parts.path_and_query = Some(
                pq.parse()
                    .map_err(|e| Error::request(format!("query: {e}")))?,
            );
            *req.uri_mut() =
                Uri::from_parts(parts).map_err(|e| Error::request(format!("query: {e}")))?;
            Ok(())
        })
    }

    /// The body, in memory.
    pub fn body(self, body: impl Into<Body>) -> Self {
        let body = body.into();
        self.with(move |req| {
            *req.body_mut() = body;
            Ok(())
        })
    }

    /// A streamed body (replayed on retry while it fits the retry layer's cap).
    pub fn body_stream(self, body: Body) -> Self {
        self.body(body)
    }

    /// A JSON body, with `Content-Type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let bytes =
            serde_json::to_vec(value).map_err(|e| Error::request(format!("json body: {e}")));
        self.with(move |req| {
            *req.body_mut() = Body::from(bytes?);
            req.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(())
        })
    }

    /// A timeout for this call, within the client's total timeout. It counts from when the
    /// request is handed to the stack (the first poll of [`send`](Self::send)'s future), or,
    /// for a request made with [`build`](Self::build), from `build`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A bearer token for this request alone (kept over the client's credential). Marked
    /// sensitive, so it is never logged nor indexed by HTTP/2.
    pub fn bearer_auth(self, token: &str) -> Self {
        let token = token.to_string();
        self.with(move |req| {
            let mut v = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                Error::request("bearer token has characters not allowed in a header")
            })?;
            v.set_sensitive(true);
            req.headers_mut().insert(AUTHORIZATION, v);
            Ok(())
        })
    }

    /// HTTP Basic credentials for this request alone (RFC 7617; a user-id with `:` or a
    /// control character is an error at `send`). Marked sensitive.
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        let value = flext_auth::Credential::basic_header_value(user, password)
            .map_err(|e| Error::request(format!("basic credentials: {e}")));
        self.with(move |req| {
            req.headers_mut().insert(AUTHORIZATION, value?);
            Ok(())
        })
    }

    /// An `Idempotency-Key` header: the server deduplicates by it, so the request may be
    /// retried even when its method is not idempotent.
    pub fn idempotency_key(self, key: &str) -> Self {
        let key = key.to_string();
        self.with(move |req| {
            let v = HeaderValue::try_from(key.as_str())
                .map_err(|e| Error::request(format!("idempotency key: {e}")))?;
            req.headers_mut().insert(IDEMPOTENCY_KEY, v);
            Ok(())
        })
    }

    /// Retries this request like an idempotent one, whatever its method. Only for requests
    /// the server can safely receive twice.
    pub fn retry_non_idempotent(self) -> Self {
        self.with(|req| {
            req.extensions_mut().insert(RetryOverride::Idempotent);
            Ok(())
        })
    }

    /// Never retries this request.
    pub fn no_retry(self) -> Self {
        self.with(|req| {
            req.extensions_mut().insert(RetryOverride::Disabled);
            Ok(())
        })
    }

    /// A request extension (read by custom layers, or `flext_trace::UrlTemplate`).
    pub fn extension<T: Clone + Send + Sync + 'static>(self, value: T) -> Self {
        self.with(move |req| {
            req.extensions_mut().insert(value);
            Ok(())
        })
    }

    /// The request as built, to send later with [`Client::execute`].
    ///
    /// # Errors
    ///
    /// The first error met while building.
    pub fn build(self) -> Result<Request<Body>, Error> {
        let mut request = self.request?;
        if let Some(timeout) = self.timeout {
            Deadline::after(timeout).set_on(&mut request);
        }
        Ok(request)
    }

    /// Sends the request: it goes out when the returned [`Pending`] is awaited.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn send(self) -> Pending {
        match self.request {
            Ok(request) => self.client.execute_owned(request, self.timeout),
            Err(e) => Pending::failed(e),
        }
    }
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.request {
            Ok(req) => f
                .debug_struct("RequestBuilder")
                .field("method", req.method())
                .field("path", &req.uri().path())
                .finish_non_exhaustive(),
            Err(e) => f.debug_tuple("RequestBuilder").field(e).finish(),
        }
    }
}
