//! What the breakers are keyed by: [`ByOrigin`] (the default) or a user function
//! ([`key_fn`]).

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;

use flext_core::{Origin, OriginRef};
use http::Request;

/// A type usable as a breaker key. Implemented for every type with these bounds.
///
/// `Display` names the breaker in [`CircuitOpen`](crate::CircuitOpen), snapshots and
/// traces.
pub trait Key: Clone + Eq + Hash + fmt::Display + fmt::Debug + Send + Sync + 'static {}

impl<T> Key for T where T: Clone + Eq + Hash + fmt::Display + fmt::Debug + Send + Sync + 'static {}

/// A key read from a request, possibly borrowed, used to find its breaker without making an
/// owned key first.
///
/// It must hash exactly as the owned key it stands for; [`OriginRef`] does for [`Origin`].
pub trait KeyProbe<K>: Hash {
    /// Whether this is the same key as `key`.
    fn matches(&self, key: &K) -> bool;

    /// The owned key, made only when a new breaker is created.
    fn into_key(self) -> K;
}

impl<K: Key> KeyProbe<K> for K {
    fn matches(&self, key: &K) -> bool {
        self == key
    }

    fn into_key(self) -> K {
        self
    }
}

impl KeyProbe<Origin> for OriginRef<'_> {
    fn matches(&self, key: &Origin) -> bool {
        *self == *key
    }

    fn into_key(self) -> Origin {
        self.to_origin()
    }
}

/// What the breakers of a layer are keyed by.
pub trait Partition: Clone + Send + Sync + 'static {
    /// The key type.
    type Key: Key;
}

/// How to read a [`Partition`]'s key from a request with a body of type `B`.
///
/// A request without a key (for [`ByOrigin`], one whose URI is not absolute) goes through
/// unguarded and uncounted.
pub trait PartitionFor<B>: Partition {
    /// The key as read from a request, borrowed where it can be.
    type Probe<'a>: KeyProbe<Self::Key>
    where
        Self: 'a,
        B: 'a;

    /// The key of `req`, if it has one.
    fn probe<'a>(&'a self, req: &'a Request<B>) -> Option<Self::Probe<'a>>;

    /// Whether `req` certainly has the key `key`: the test of each service's one-entry
    /// cache of the last breaker it used, so it runs on every call. `false` when unsure is
    /// correct (the call then takes the map); the default reads the probe.
    #[inline]
    fn is_key(&self, req: &Request<B>, key: &Self::Key) -> bool {
        self.probe(req).is_some_and(|p| p.matches(key))
    }
}

/// One breaker per [`Origin`] (scheme, host, port) of the request URI: the default.
///
/// The origin is read with [`OriginRef`], which allocates nothing for a known origin. A
/// request whose URI has no origin (a relative URI, as a tonic `Channel` sends) is not
/// guarded: key such traffic with [`key_fn`] instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByOrigin;

impl Partition for ByOrigin {
    type Key = Origin;
}

impl<B> PartitionFor<B> for ByOrigin {
    type Probe<'a>
        = OriginRef<'a>
    where
        B: 'a;

    #[inline]
    fn probe<'a>(&'a self, req: &'a Request<B>) -> Option<OriginRef<'a>> {
        OriginRef::from_uri(req.uri()).ok()
    }

    /// [`Origin::is_spelled_by`]: the URI's scheme and authority as written, compared byte
    /// for byte with the origin, without parsing: a lower-case `host[:port]` (the common form)
    /// matches at the cost of a short comparison; anything else (upper case, user-info) says
    /// `false` and takes the parsing path.
    #[inline]
    fn is_key(&self, req: &Request<B>, key: &Origin) -> bool {
        key.is_spelled_by(req.uri())
    }
}

/// A [`Partition`] made from a function of the request; see [`key_fn`].
pub struct KeyFn<F, K> {
    f: F,
    _key: PhantomData<fn() -> K>,
}

/// Keys the breakers by what `f` returns for each request; `None` lets a request through
/// unguarded.
///
/// The key is made on every call, so a key that allocates (a `String`) costs an allocation
/// per call; an `Arc<str>`, an integer or a `&'static str` does not.
///
/// ```
/// use flext_breaker::{BreakerLayer, key_fn};
///
/// // One breaker per tenant, named by a header.
/// let layer = BreakerLayer::keyed(key_fn(|req: &http::Request<()>| {
///     req.headers()
///         .get("x-tenant")
///         .and_then(|v| v.to_str().ok())
///         .map(|t| if t == "big" { "big" } else { "other" })
/// }))
/// .build()
/// .unwrap();
/// # let _ = layer;
/// ```
pub fn key_fn<B, K, F>(f: F) -> KeyFn<F, K>
where
    F: Fn(&Request<B>) -> Option<K>,
{
    KeyFn {
        f,
        _key: PhantomData,
    }
}

impl<F: Clone, K> Clone for KeyFn<F, K> {
    fn clone(&self) -> Self {
        KeyFn {
            f: self.f.clone(),
            _key: PhantomData,
        }
    }
}

impl<F, K> fmt::Debug for KeyFn<F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn")
            .field("key", &std::any::type_name::<K>())
            .finish_non_exhaustive()
    }
}

impl<F, K> Partition for KeyFn<F, K>
where
    F: Clone + Send + Sync + 'static,
    K: Key,
{
    type Key = K;
}

impl<F, K, B> PartitionFor<B> for KeyFn<F, K>
where
    F: Fn(&Request<B>) -> Option<K> + Clone + Send + Sync + 'static,
    K: Key,
{
    type Probe<'a>
        = K
    where
        B: 'a;

    fn probe<'a>(&'a self, req: &'a Request<B>) -> Option<K> {
        (self.f)(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn origin_probe_hashes_and_matches_like_the_origin() {
        let state = std::hash::RandomState::new();
        let req = Request::get("HTTP://LocalHost:8080/a").body(()).unwrap();
        let probe = PartitionFor::<()>::probe(&ByOrigin, &req).unwrap();
        let origin: Origin = "http://localhost:8080".parse().unwrap();
        assert_eq!(state.hash_one(probe), state.hash_one(&origin));
        assert!(probe.matches(&origin));
        assert_eq!(probe.into_key(), origin);

        let relative = Request::get("/a").body(()).unwrap();
        assert!(PartitionFor::<()>::probe(&ByOrigin, &relative).is_none());
    }

    #[test]
    fn the_fast_origin_test_never_says_yes_wrongly() {
        let origin: Origin = "http://bench.internal".parse().unwrap();
        let v6: Origin = "https://[::1]:8443".parse().unwrap();
        let cases = [
            ("http://bench.internal/x", &origin, true),
            ("http://bench.internal:80/x", &origin, true),
            ("http://bench.internal:8080/x", &origin, false),
            ("http://bench.internal:080/x", &origin, true),
            ("https://bench.internal/x", &origin, false),
            ("http://bench.internal.evil/x", &origin, false),
            ("http://bench/x", &origin, false),
            ("https://[::1]:8443/", &v6, true),
            ("https://[::1]/", &v6, false),
            ("/relative", &origin, false),
        ];
        for (uri, key, expect) in cases {
            let req = Request::get(uri).body(()).unwrap();
            assert_eq!(
                PartitionFor::<()>::is_key(&ByOrigin, &req, key),
                expect,
                "{uri}"
            );
            // Whenever the fast test says yes, the parsing path agrees.
            if expect {
                assert!(
                    PartitionFor::<()>::probe(&ByOrigin, &req)
                        .unwrap()
                        .matches(key)
                );
            }
        }
        // Forms the fast test leaves to the parsing path.
        for uri in ["HTTP://Bench.Internal/x", "http://user@bench.internal/x"] {
            let req = Request::get(uri).body(()).unwrap();
            assert!(!PartitionFor::<()>::is_key(&ByOrigin, &req, &origin));
            assert!(
                PartitionFor::<()>::probe(&ByOrigin, &req)
                    .unwrap()
                    .matches(&origin)
            );
        }
    }
}
