//! [`Response`]: status, headers, body helpers and what retrying did.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use flext_retry::RetryInfo;
use http::{HeaderMap, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// The body type of responses below the client's top (what custom layers see): the pool's,
/// which gives its connection back when read to the end (or closes it when dropped early).
pub type ResponseBody = flext_pool::Body;

/// What [`DecodedBody`] reads: the pool's body, through tower-http's decompression when a
/// decompression feature is on.
#[cfg(not(any(feature = "gzip", feature = "brotli", feature = "zstd")))]
pub(crate) type DecodedInner = ResponseBody;
/// What [`DecodedBody`] reads: the pool's body, through tower-http's decompression when a
/// decompression feature is on.
#[cfg(any(feature = "gzip", feature = "brotli", feature = "zstd"))]
pub(crate) type DecodedInner = tower_http::decompression::DecompressionBody<ResponseBody>;

pin_project_lite::pin_project! {
    /// The body of a [`Response`]: the pool's body, decoded when a decompression feature
    /// (`gzip`, `brotli`, `zstd`) is on and the server compressed it. Not boxed: reading it
    /// costs no allocation and no dynamic call.
    pub struct DecodedBody {
        #[pin]
        inner: DecodedInner,
    }
}

impl DecodedBody {
    pub(crate) fn new(inner: DecodedInner) -> DecodedBody {
        DecodedBody { inner }
    }
}

impl fmt::Debug for DecodedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodedBody").finish_non_exhaustive()
    }
}

impl http_body::Body for DecodedBody {
    type Data = Bytes;
    type Error = flext_core::BoxError;

    // With a decompression feature on, the inner error is a `BoxError` already.
    #[allow(clippy::useless_conversion)]
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.project()
            .inner
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response. Read its body once, with [`bytes`](Self::bytes), [`text`](Self::text),
/// [`json`](Self::json), [`chunk`](Self::chunk) or [`into_body`](Self::into_body).
pub struct Response {
    inner: http::Response<DecodedBody>,
    url: Uri,
    limit: u64,
}

impl Response {
    pub(crate) fn new(inner: http::Response<DecodedBody>, url: Uri, limit: u64) -> Response {
        Response { inner, url, limit }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// The HTTP version the response came over (`HTTP/1.1` or `HTTP/2.0`).
    pub fn version(&self) -> Version {
        self.inner.version()
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The URL that was requested (after redirects: the first one).
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// What retrying did, when the request was retried or retrying stopped early for a reason.
    /// `None` means one attempt sufficed.
    pub fn retry_info(&self) -> Option<&RetryInfo> {
        RetryInfo::of(&self.inner)
    }

    /// Attempts made for this response: 1 unless it was retried.
    pub fn attempts(&self) -> u32 {
        self.retry_info().map_or(1, RetryInfo::attempts)
    }

    /// Time spent waiting between attempts.
    pub fn backoff(&self) -> Duration {
        self.retry_info().map_or(Duration::ZERO, RetryInfo::backoff)
    }

    /// The response's extensions (the pool, retry and trace layers leave information there).
    pub fn extensions(&self) -> &http::Extensions {
        self.inner.extensions()
    }

    /// An error if the status is 4xx or 5xx, else the response itself.
    ///
    /// # Errors
    ///
    /// A status error ([`Error::is_status`]) carrying the status and URL.
    pub fn error_for_status(self) -> Result<Response, Error> {
        let status = self.status();
        if status.is_client_error() || status.is_server_error() {
            Err(Error::from_status(status).with_url(self.url))
        } else {
            Ok(self)
        }
    }

    /// The whole body, up to the client's `max_response_body`.
    ///
    /// # Errors
    ///
    /// A body error when reading fails or the body is larger than the limit.
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        let limit = self.limit;
        let declared = self
            .inner
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(Error::too_large(limit).with_url(self.url));
        }
        // Read frame by frame (rather than through `http_body_util::Limited`) so that the
        // future stays `Send` for `tokio::spawn`; one chunk is returned without a copy.
        let mut first: Option<Bytes> = None;
        let mut rest: Vec<u8> = Vec::new();
        let mut total: u64 = 0;
        while let Some(frame) = self.inner.body_mut().frame().await {
            let frame = frame.map_err(|e| Error::body(e).with_url(self.url.clone()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total = total.saturating_add(data.len() as u64);
            if total > limit {
                return Err(Error::too_large(limit).with_url(self.url));
            }
            match &first {
                None if rest.is_empty() => first = Some(data),
                _ => {
                    if let Some(f) = first.take() {
                        rest.extend_from_slice(&f);
                    }
                    rest.extend_from_slice(&data);
                }
            }
        }
        Ok(first.unwrap_or_else(|| Bytes::from(rest)))
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// As [`bytes`](Self::bytes), or a decode error when the body is not UTF-8.
    pub async fn text(self) -> Result<String, Error> {
        let url = self.url.clone();
        let bytes = self.bytes().await?;
        String::from_utf8(bytes.into())
            .map_err(|e| Error::decode("body is not valid utf-8", Some(e.into())).with_url(url))
    }

    /// The body parsed as JSON into `T`.
    ///
    /// # Errors
    ///
    /// As [`bytes`](Self::bytes); a decode error when the content type is set and is not
    /// JSON (`application/json` or `*/*+json`), or when the JSON does not parse into `T` (the
    /// message says where).
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, Error> {
        let url = self.url.clone();
        if let Some(ct) = self.headers().get(http::header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim();
            if !(essence == "application/json" || essence.ends_with("+json")) {
                return Err(Error::decode(
                    format!("expected a json content type, got {essence:?}"),
                    None,
                )
                .with_url(url));
            }
        }
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::decode(format!("invalid json: {e}"), Some(e.into())).with_url(url))
    }

    /// The next chunk of the body, or `None` at its end. Not limited by `max_response_body`.
    ///
    /// # Errors
    ///
    /// A body error when reading fails.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            match self.inner.body_mut().frame().await {
                None => return Ok(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
                Some(Err(e)) => return Err(Error::body(e).with_url(self.url.clone())),
            }
        }
    }

    /// The response as an `http::Response` with the streaming body.
    pub fn into_http(self) -> http::Response<DecodedBody> {
        self.inner
    }

    /// The streaming body.
    pub fn into_body(self) -> DecodedBody {
        self.inner.into_body()
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status())
            .field("version", &self.version())
            .field("attempts", &self.attempts())
            .finish_non_exhaustive()
    }
}
