//! The identities found for a request, kept in its extensions for the next
//! layer with the same extractor and for the handler.

use http::Extensions;

use super::{Identity, IdentityExtractor};

/// The identities found for a request, by extractor (the address of its
/// `Arc`).
#[derive(Clone, Debug)]
pub(crate) struct IdentityCache {
    entries: Vec<(usize, Identity)>,
}

impl IdentityCache {
    fn new(extractor: usize, identity: Identity) -> IdentityCache {
        IdentityCache {
            entries: vec![(extractor, identity)],
        }
    }

    fn get(&self, extractor: usize) -> Option<&Identity> {
        self.entries
            .iter()
            .find(|(id, _)| *id == extractor)
            .map(|(_, identity)| identity)
    }

    fn insert(&mut self, extractor: usize, identity: Identity) {
        self.entries.push((extractor, identity));
    }

    /// The identity the layer nearest the handler found.
    pub(crate) fn latest(&self) -> Option<&Identity> {
        self.entries.last().map(|(_, identity)| identity)
    }
}

/// Keeps `identity`, found by `extractor`, when it is worth keeping.
pub(crate) fn keep<I: IdentityExtractor>(
    extractor: &I,
    extensions: &mut Extensions,
    identity: &Identity,
) {
    if !extractor.caches() {
        return;
    }
    let id = extractor.cache_id();
    match extensions.get_mut::<IdentityCache>() {
        Some(cache) => cache.insert(id, identity.clone()),
        None => {
            extensions.insert(IdentityCache::new(id, identity.clone()));
        }
    }
}

/// The identity another layer with the same extractor kept, if any.
pub(crate) fn cached<I: IdentityExtractor>(
    extractor: &I,
    extensions: &Extensions,
) -> Option<Identity> {
    if !extractor.caches() {
        return None;
    }
    let cache = extensions.get::<IdentityCache>()?;
    cache.get(extractor.cache_id()).cloned()
}
