//! Sending a request on an HTTP/2 connection from the caller's task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use flext_core::{BoxError, Sent, TransportError, TransportErrorKind};
use http::header::{
    CONNECTION, CONTENT_LENGTH, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Method, Request, Response, Version};
use http_body::Body;

use super::{RecvBody, SendRequest};
use crate::error::{Message, classify_h2};

/// Opens a stream on `tx` (which the caller made ready) for `req`; the returned future writes
/// its body and waits for the response head. Nothing here waits: `tx` is not needed once
/// this returns.
///
/// An error opening the stream says `Sent::No`; a request body that failed says
/// [`TransportErrorKind::Other`] (the stream is reset with `CANCEL`).
pub(crate) fn open<B>(tx: &mut SendRequest, req: Request<B>) -> Result<Exchange<B>, TransportError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    if req.method() == Method::CONNECT {
        return Err(TransportError::new(
            TransportErrorKind::Other,
            Sent::No,
            Some(Box::new(Message(
                "CONNECT over http2 (a tunnel on a stream) is not supported by flext-pool",
            ))),
        ));
    }
    let (mut parts, body) = req.into_parts();
    prepare(&mut parts.headers, &parts.method, &body);
    parts.version = Version::HTTP_2;
    let end = body.is_end_stream();
    let (response, stream) = tx
        .send_request(Request::from_parts(parts, ()), end)
        .map_err(|e| classify_h2(e, Sent::No))?;
    let pipe = (!end).then(|| Pipe { body, stream });
    Ok(Exchange { response, pipe })
}

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2), which HTTP/1.1 code may set.
const CONNECTION_SPECIFIC: [HeaderName; 4] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Drops connection-specific headers (and those `Connection` names), a `TE` other than
/// `trailers`, and sets `content-length` from an exact body size, as hyper does.
fn prepare<B: Body>(headers: &mut HeaderMap, method: &Method, body: &B) {
    let forbidden = |name: &HeaderName| {
        *name == CONNECTION || *name == TE || CONNECTION_SPECIFIC.contains(name)
    };
    if headers.keys().any(forbidden) {
        strip_connection_specific(headers);
    }
    if !headers.contains_key(CONTENT_LENGTH)
        && let Some(len) = body.size_hint().exact()
        && (len != 0 || has_payload_semantics(method))
    {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
}

fn strip_connection_specific(headers: &mut HeaderMap) {
    for name in &CONNECTION_SPECIFIC {
        if headers.remove(name).is_some() {
            tracing::debug!(header = %name, "connection-specific header dropped for http2");
        }
    }
    if headers.get(TE).is_some_and(|te| te != "trailers") {
        headers.remove(TE);
        tracing::debug!("te header other than `trailers` dropped for http2");
    }
    if let Some(connection) = headers.remove(CONNECTION) {
        tracing::debug!("connection header dropped for http2");
        if let Ok(names) = connection.to_str() {
            for name in names.split(',') {
                headers.remove(name.trim());
            }
        }
    }
}

/// Methods whose request body has a meaning, so that an empty one is announced.
fn has_payload_semantics(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::CONNECT
            | Method::OPTIONS
            | Method::TRACE
    )
}

/// Waits for the response head while writing the request body.
pub(crate) struct Exchange<B> {
    response: h2::client::ResponseFuture,
    pipe: Option<Pipe<B>>,
}

impl<B> Future for Exchange<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<RecvBody>, TransportError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(pipe) = &mut this.pipe {
            match Pin::new(pipe).poll(cx) {
                Poll::Ready(Ok(())) => this.pipe = None,
                Poll::Ready(Err(PipeError::Body(e))) => {
                    return Poll::Ready(Err(TransportError::new(
                        TransportErrorKind::Other,
                        Sent::Maybe,
                        Some(e),
                    )));
                }
                // The stream is gone; the response says why.
                Poll::Ready(Err(PipeError::Stream(_))) => this.pipe = None,
                Poll::Pending => {}
            }
        }
        let result = ready!(Pin::new(&mut this.response).poll(cx));
        if let Some(pipe) = this.pipe.take() {
            // The server answered before the body was all sent: the rest goes out in a task
            // of its own, as long as the server reads it.
            tokio::spawn(async move {
                if let Err(e) = pipe.await {
                    tracing::debug!(error = %e, "request body not sent to its end");
                }
            });
        }
        Poll::Ready(match result {
            Ok(response) => {
                let (head, recv) = response.into_parts();
                let body = RecvBody::new(recv, &head.headers);
                Ok(Response::from_parts(head, body))
            }
            Err(e) => Err(classify_h2(e, Sent::Maybe)),
        })
    }
}

/// Writes a request body to its stream, a chunk at a time as the peer's window allows.
struct Pipe<B> {
    body: B,
    stream: h2::SendStream<Bytes>,
}

enum PipeError {
    /// The request body failed; the stream was reset.
    Body(BoxError),
    /// The stream was reset or the connection ended.
    Stream(h2::Error),
}

impl std::fmt::Display for PipeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipeError::Body(e) => write!(f, "request body failed: {e}"),
            PipeError::Stream(e) => write!(f, "stream ended: {e}"),
        }
    }
}

impl<B> Future for Pipe<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<(), PipeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            // Room in the window first, so that no more than one chunk waits in h2's buffer.
            if this.stream.capacity() == 0 {
                this.stream.reserve_capacity(1);
                loop {
                    match this.stream.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(0))) => {}
                        Poll::Ready(Some(Ok(_))) => break,
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(PipeError::Stream(e))),
                        Poll::Ready(None) => return Poll::Ready(Ok(())),
                        Poll::Pending => return this.pending_unless_reset(cx),
                    }
                }
            }
            let frame = match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => return this.pending_unless_reset(cx),
                Poll::Ready(frame) => frame,
            };
            let sent = match frame {
                None => this.stream.send_data(Bytes::new(), true).map(|()| true),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        let end = this.body.is_end_stream();
                        this.stream.send_data(bytes, end).map(|()| end)
                    }
                    Err(frame) => match frame.into_trailers() {
                        Ok(trailers) => this.stream.send_trailers(trailers).map(|()| true),
                        // A frame of another kind is skipped.
                        Err(_) => Ok(false),
                    },
                },
                Some(Err(e)) => {
                    this.stream.send_reset(h2::Reason::CANCEL);
                    return Poll::Ready(Err(PipeError::Body(e.into())));
                }
            };
            match sent {
                Ok(true) => return Poll::Ready(Ok(())),
                Ok(false) => {}
                Err(e) if e.reason().is_none() && !e.is_io() => {
                    // h2 refused the frame itself (a chunk too large): the stream is still
                    // open, and the server would wait for the rest of the body.
                    this.stream.send_reset(h2::Reason::CANCEL);
                    return Poll::Ready(Err(PipeError::Body(Box::new(e))));
                }
                Err(e) => return Poll::Ready(Err(PipeError::Stream(e))),
            }
        }
    }
}

impl<B> Pipe<B> {
    /// `Pending`, with a wake-up registered for a reset of the stream too: a server that
    /// refuses the body must not leave the pipe waiting for it.
    fn pending_unless_reset(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PipeError>> {
        match self.stream.poll_reset(cx) {
            Poll::Ready(Ok(reason)) => Poll::Ready(Err(PipeError::Stream(reason.into()))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(PipeError::Stream(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Empty, Full};

    fn prepared(headers: &[(&str, &str)], method: &Method, body: &impl Body) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        prepare(&mut map, method, body);
        map
    }

    #[test]
    fn connection_specific_headers_and_those_connection_names_are_dropped() {
        let h = prepared(
            &[
                ("connection", "keep-alive, x-hop"),
                ("keep-alive", "timeout=5"),
                ("x-hop", "1"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "websocket"),
                ("proxy-connection", "keep-alive"),
                ("x-kept", "yes"),
            ],
            &Method::GET,
            &Empty::<Bytes>::new(),
        );
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn te_is_kept_only_as_trailers() {
        let kept = prepared(&[("te", "trailers")], &Method::GET, &Empty::<Bytes>::new());
        assert_eq!(kept.get(TE).map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        let dropped = prepared(&[("te", "gzip")], &Method::GET, &Empty::<Bytes>::new());
        assert!(dropped.get(TE).is_none());
    }

    #[test]
    fn content_length_comes_from_an_exact_size_and_is_announced_empty_only_with_payload_semantics()
    {
        let full = prepared(&[], &Method::POST, &Full::new(Bytes::from_static(b"abc")));
        assert_eq!(
            full.get(CONTENT_LENGTH).map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
        let empty_post = prepared(&[], &Method::POST, &Empty::<Bytes>::new());
        assert_eq!(
            empty_post.get(CONTENT_LENGTH).map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
        let empty_get = prepared(&[], &Method::GET, &Empty::<Bytes>::new());
        assert!(empty_get.get(CONTENT_LENGTH).is_none());
        let own = prepared(
            &[("content-length", "3")],
            &Method::PUT,
            &Full::new(Bytes::from_static(b"abc")),
        );
        assert_eq!(own.get_all(CONTENT_LENGTH).iter().count(), 1);
    }
}
