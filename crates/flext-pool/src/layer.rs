//! [`PoolLayer`]: turns a connector into a [`Pool`].

use std::fmt;
use std::marker::PhantomData;

use flext_core::BoxError;
use http::Uri;
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::Connection;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::Config;
use crate::service::Pool;

/// Wraps a connector (a `Service<Uri>` yielding an IO that says whether ALPN chose h2)
/// into a pooled [`Pool`] sending requests with body type `B`.
///
/// ```
/// use bytes::Bytes;
/// use flext_pool::{Config, Connector, PoolLayer};
/// use http_body_util::Empty;
/// use tower_layer::Layer;
///
/// let layer = PoolLayer::<Empty<Bytes>>::new(Config::default());
/// let pool = layer.layer(Connector::http());
/// # let _ = pool;
/// ```
pub struct PoolLayer<B> {
    config: Config,
    _body: PhantomData<fn(B)>,
}

impl<B> PoolLayer<B> {
    /// A layer building pools with `config`.
    pub fn new(config: Config) -> PoolLayer<B> {
        PoolLayer {
            config,
            _body: PhantomData,
        }
    }
}

impl<B> Clone for PoolLayer<B> {
    fn clone(&self) -> Self {
        PoolLayer::new(self.config.clone())
    }
}

impl<B> fmt::Debug for PoolLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<C, B> Layer<C> for PoolLayer<B>
where
    C: Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: Read + Write + Connection + Unpin + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Service = Pool<C, B>;

    fn layer(&self, connector: C) -> Pool<C, B> {
        Pool::new(connector, self.config.clone())
    }
}
