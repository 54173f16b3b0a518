use std::future::poll_fn;
use std::task::Poll;

use bytes::Bytes;
use flext_pool::{Connector, Error, Pool};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use tower::{Service, ServiceExt};

pub(crate) type Client = Pool<Connector, Empty<Bytes>>;

pub(crate) fn get(uri: Uri) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap()
}

pub(crate) fn get_scripted(uri: Uri, script: &str) -> Request<Empty<Bytes>> {
    Request::get(uri)
        .header(flext_testkit::SCRIPT_HEADER, script)
        .body(Empty::new())
        .unwrap()
}

/// Sends a request and reads the whole body.
pub(crate) async fn fetch<S>(
    pool: &S,
    req: Request<Empty<Bytes>>,
) -> Result<(Response<()>, Bytes), Error>
where
    S: Service<Request<Empty<Bytes>>, Response = Response<flext_pool::Body>, Error = Error> + Clone,
{
    let resp = pool.clone().oneshot(req).await?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok((Response::from_parts(parts, ()), bytes))
}

/// Polls `poll_ready` once.
pub(crate) async fn is_ready<S, R>(svc: &mut S) -> bool
where
    S: Service<R>,
{
    poll_fn(|cx| Poll::Ready(svc.poll_ready(cx).is_ready())).await
}

/// Waits (yielding, never sleeping) until `cond` holds; fails after 5 s.
pub(crate) async fn until(mut cond: impl FnMut() -> bool) {
    let wait = async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), wait)
        .await
        .expect("condition not met within 5 s");
}

/// A raw h2 server on loopback with h2's default settings: each connection goes to
/// `serve`. Returns its `http://` URI.
#[allow(dead_code, reason = "used by the edges and http2 test binaries")]
pub(crate) async fn h2_server<F, Fut>(serve: F) -> Uri
where
    F: Fn(h2::server::Connection<tokio::net::TcpStream, Bytes>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    h2_server_with(h2::server::Builder::new(), serve).await
}

/// [`h2_server`] with the server's settings from `builder`.
#[allow(dead_code, reason = "used by the edges and http2 test binaries")]
pub(crate) async fn h2_server_with<F, Fut>(builder: h2::server::Builder, serve: F) -> Uri
where
    F: Fn(h2::server::Connection<tokio::net::TcpStream, Bytes>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            // Small frames (WINDOW_UPDATE) go out at once, not after the peer's delayed ACK.
            let _ = tcp.set_nodelay(true);
            if let Ok(conn) = builder.handshake(tcp).await {
                tokio::spawn(serve(conn));
            }
        }
    });
    format!("http://{addr}/").parse().unwrap()
}
