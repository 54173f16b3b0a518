//! [`HeaderList`]: a request's headers as kept for a resend.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

/// How many name-value pairs a [`HeaderList`] keeps without allocating.
const INLINE: usize = 1;

/// A request's headers as a layer keeps them to send the request again (a retry, a redirect's
/// next hop, auth's 401 replay): each name and value in the map's order, made into a
/// [`HeaderMap`] again only when the request is resent.
///
/// One pair is kept inline, with no allocation (a client's `User-Agent`, which flext-api's
/// client adds to every request); more take one allocation. A cloned `HeaderMap` takes two
/// (its entries and its index) on every call, resent or not. One pair rather than more keeps
/// the list small enough to sit in a response future, which every layer above moves. Cloning
/// a value copies a pointer for a static one and takes a reference for a shared one, as with
/// the map.
///
/// ```
/// use flext_core::HeaderList;
/// use http::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
///
/// let mut map = HeaderMap::new();
/// map.append(ACCEPT, HeaderValue::from_static("text/html"));
/// map.append(ACCEPT, HeaderValue::from_static("*/*"));
/// map.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t0k3n"));
///
/// let mut kept = HeaderList::of(&map);
/// assert_eq!(kept.len(), 3);
/// assert!(kept.contains(&AUTHORIZATION));
/// assert!(kept.remove(&AUTHORIZATION));
///
/// let again = kept.to_map();
/// let accept: Vec<_> = again.get_all(ACCEPT).iter().collect();
/// assert_eq!(accept, ["text/html", "*/*"]);
/// assert!(!again.contains_key(AUTHORIZATION));
/// ```
#[derive(Clone, Default)]
pub struct HeaderList {
    pairs: SmallVec<[(HeaderName, HeaderValue); INLINE]>,
}

impl HeaderList {
    /// An empty list.
    pub fn new() -> HeaderList {
        HeaderList::default()
    }

    /// A copy of `headers`: every value of every name, in the map's order.
    pub fn of(headers: &HeaderMap) -> HeaderList {
        let mut pairs = SmallVec::new();
        if !headers.is_empty() {
            pairs.reserve(headers.len());
            for (name, value) in headers {
                pairs.push((name.clone(), value.clone()));
            }
        }
        HeaderList { pairs }
    }

    /// The number of name-value pairs (a name with two values counts twice).
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there is no header.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Whether `name` has a value.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Removes every value of `name`; says whether there was one.
    pub fn remove(&mut self, name: &HeaderName) -> bool {
        let before = self.pairs.len();
        self.pairs.retain(|(n, _)| n != name);
        self.pairs.len() != before
    }

    /// Sets `name` to `value` alone, in place of any values it had (as
    /// [`HeaderMap::insert`]).
    pub fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        self.remove(&name);
        self.pairs.push((name, value));
    }

    /// The headers as a map again: the same names, each with its values in the same order.
    ///
    /// A map holds at most 32,768 distinct names; a list made from a map never holds more,
    /// and one grown past that with [`insert`](Self::insert) keeps the names that fit rather
    /// than panic as [`HeaderMap::insert`] would.
    pub fn to_map(&self) -> HeaderMap {
        let mut map = self.empty_map();
        for (name, value) in &self.pairs {
            // Fails only past the map's limit (see above).
            let _ = map.try_append(name.clone(), value.clone());
        }
        map
    }

    /// As [`to_map`](Self::to_map), consuming the list.
    pub fn into_map(self) -> HeaderMap {
        let mut map = self.empty_map();
        for (name, value) in self.pairs {
            // Fails only past the map's limit (see `to_map`).
            let _ = map.try_append(name, value);
        }
        map
    }

    fn empty_map(&self) -> HeaderMap {
        if self.pairs.is_empty() {
            return HeaderMap::new();
        }
        // Pairs count at least the distinct names a map is sized by. Bounded, since
        // `with_capacity` panics past the map's limit of entries, which a count of values
        // could pass; the map grows past the bound as it needs to.
        HeaderMap::with_capacity(self.pairs.len().min(1024))
    }
}

/// The names only: a caller's header may hold a secret.
impl fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(n, _)| n.as_str()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(i: u8) -> HeaderName {
        HeaderName::try_from(format!("x-h{i}")).unwrap()
    }

    proptest! {
        /// A map kept and made again is the same map: names, values and each name's order
        /// of values, whatever the mix of names and repeats, inline or not.
        #[test]
        fn a_kept_map_comes_back_the_same(pairs in prop::collection::vec((0u8..6, 0u16..100), 0..12)) {
            let mut map = HeaderMap::new();
            for (n, v) in &pairs {
                map.append(name(*n), HeaderValue::from(*v));
            }
            let kept = HeaderList::of(&map);
            prop_assert_eq!(kept.len(), map.len());
            prop_assert_eq!(&kept.to_map(), &map);
            prop_assert_eq!(&kept.into_map(), &map);
        }

        /// Removing and inserting act as on the map.
        #[test]
        fn editing_acts_as_on_the_map(
            pairs in prop::collection::vec((0u8..4, 0u16..100), 0..8),
            removed in 0u8..4,
            inserted in 0u8..4,
        ) {
            let mut map = HeaderMap::new();
            for (n, v) in &pairs {
                map.append(name(*n), HeaderValue::from(*v));
            }
            let mut kept = HeaderList::of(&map);
            prop_assert_eq!(kept.remove(&name(removed)), map.remove(name(removed)).is_some());
            prop_assert!(!kept.contains(&name(removed)));
            map.insert(name(inserted), HeaderValue::from_static("new"));
            kept.insert(name(inserted), HeaderValue::from_static("new"));
            prop_assert_eq!(kept.get(&name(inserted)), Some(&HeaderValue::from_static("new")));
            prop_assert_eq!(kept.to_map(), map);
        }
    }

    #[test]
    fn a_sensitive_value_stays_sensitive() {
        let mut secret = HeaderValue::from_static("s3cr3t");
        secret.set_sensitive(true);
        let mut map = HeaderMap::new();
        map.insert("x-key", secret);
        assert!(HeaderList::of(&map).to_map()["x-key"].is_sensitive());
        assert!(HeaderList::of(&map).into_map()["x-key"].is_sensitive());
    }

    #[test]
    fn its_debug_shows_names_not_values() {
        let mut map = HeaderMap::new();
        map.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secret"),
        );
        let shown = format!("{:?}", HeaderList::of(&map));
        assert_eq!(shown, r#"["authorization"]"#);
    }
}
