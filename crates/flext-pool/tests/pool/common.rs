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
