//! A bounded cache of message bodies, shared by every batch of a message: a message
//! to 10,000 recipients at 100 domains is read from the spool once, not 100 times,
//! while memory stays capped however many messages are queued.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::{Body, SpoolError};
use crate::model::MessageId;

/// Bodies by message id, evicted by the CLOCK (second-chance) policy once their total
/// size passes the capacity. A body larger than the capacity is never cached.
#[derive(Debug)]
pub struct BodyCache {
    /// Maximum total body bytes held.
    capacity: usize,
    /// Map, eviction ring and size, under one short-held lock.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The cached bodies and whether each was used since the clock hand last passed.
    map: HashMap<MessageId, (Body, bool)>,
    /// Insertion ring the clock hand walks; may hold ids already invalidated.
    ring: VecDeque<MessageId>,
    /// Sum of the cached bodies' lengths.
    bytes: usize,
}

impl BodyCache {
    /// A cache holding at most `capacity` bytes of bodies.
    pub fn new(capacity: usize) -> BodyCache {
        BodyCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The cached body of `id`, or `load()`'s, cached on the way. The lock is not
    /// held while loading, so two concurrent misses may both load (harmless).
    pub fn get_or_load(
        &self,
        id: MessageId,
        load: impl FnOnce() -> Result<Body, SpoolError>,
    ) -> Result<Body, SpoolError> {
        if let Some(b) = self.get(id) {
            return Ok(b);
        }
        let body = load()?;
        self.insert(id, body.clone());
        Ok(body)
    }

    /// The cached body of `id`, marking it recently used.
    pub fn get(&self, id: MessageId) -> Option<Body> {
        let mut inner = self.lock();
        inner.map.get_mut(&id).map(|(b, used)| {
            *used = true;
            b.clone()
        })
    }

    /// Drops `id` (its message was removed from the spool).
    pub fn invalidate(&self, id: MessageId) {
        let mut inner = self.lock();
        if let Some((b, _)) = inner.map.remove(&id) {
            inner.bytes -= b.len();
        }
    }

    /// Total bytes cached now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Caches `body` as `id`'s (a message just stored), unless larger than the
    /// capacity.
    pub fn insert(&self, id: MessageId, body: Body) {
        if body.len() > self.capacity {
            return;
        }
        let mut inner = self.lock();
        if inner.map.contains_key(&id) {
            return;
        }
        inner.bytes += body.len();
        inner.map.insert(id, (body, false));
        inner.ring.push_back(id);
        while inner.bytes > self.capacity {
            let Some(victim) = inner.ring.pop_front() else {
                break;
            };
            match inner.map.get_mut(&victim) {
                Some((_, used)) if *used => {
                    *used = false;
                    inner.ring.push_back(victim);
                }
                Some(_) => {
                    if let Some((b, _)) = inner.map.remove(&victim) {
                        inner.bytes -= b.len();
                    }
                }
                None => {} // invalidated earlier
            }
        }
        // Invalidated ids linger in the ring; compact when they dominate it.
        if inner.ring.len() > 2 * inner.map.len() + 64 {
            let Inner { map, ring, .. } = &mut *inner;
            ring.retain(|id| map.contains_key(id));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn body(n: usize) -> Body {
        Arc::from(vec![b'x'; n])
    }

    #[test]
    fn loads_once_and_shares_the_buffer() {
        let cache = BodyCache::new(100);
        let mut loads = 0;
        let a = cache
            .get_or_load(MessageId(1), || {
                loads += 1;
                Ok(body(10))
            })
            .unwrap();
        let b = cache
            .get_or_load(MessageId(1), || {
                loads += 1;
                Ok(body(10))
            })
            .unwrap();
        assert_eq!(loads, 1);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(cache
            .get_or_load(MessageId(2), || Err(SpoolError::NotFound(MessageId(2))))
            .is_err());
    }

    #[test]
    fn stays_within_capacity_and_keeps_recently_used() {
        let cache = BodyCache::new(100);
        for i in 0..5 {
            cache.get_or_load(MessageId(i), || Ok(body(30))).unwrap();
            cache.get(MessageId(0)); // keep 0 hot
            assert!(cache.bytes() <= 100);
        }
        assert!(cache.get(MessageId(0)).is_some());
        assert!(cache.get(MessageId(1)).is_none());
        cache.get_or_load(MessageId(9), || Ok(body(101))).unwrap();
        assert!(cache.get(MessageId(9)).is_none(), "too big to cache");
        cache.invalidate(MessageId(0));
        assert!(cache.get(MessageId(0)).is_none());
        assert!(cache.bytes() <= 70);
    }
}
