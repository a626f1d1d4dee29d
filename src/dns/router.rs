//! [`Router`]: domain -> [`Route`], with a TTL cache, negative caching, query
//! coalescing and smarthost overrides.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hickory_proto::xfer::Protocol;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, Resolver, TokioResolver};
use thiserror::Error;
use tokio::sync::OnceCell;

use super::config::{DnsConfig, RouteOverride};
use super::resolve::{self, Answer, Ttls};
use super::route::{Route, RouteError, SiteId};

/// Why a [`Router`] could not be built. The config layer reports `key` as
/// `dns.<key>` (or the override's index and key).
#[derive(Debug, Error)]
pub enum RouterSetupError {
    /// A `[dns]` value is out of range.
    #[error("dns.{key}: {reason}")]
    Config {
        /// The offending key.
        key: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A route override is malformed.
    #[error("route override {index}: {key}: {reason}")]
    Override {
        /// Position in the override list, from 0.
        index: usize,
        /// The offending key.
        key: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// No nameservers were configured and the system's could not be read.
    #[error("reading the system resolver configuration: {0}")]
    SystemConfig(#[source] ResolveError),
}

/// Finds where to deliver each domain's mail.
///
/// Cheap to clone (one `Arc`); share one per process. `route` on a fresh cached
/// domain takes a mutex briefly and allocates only if the domain needs
/// lowercasing; no I/O.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    /// The hickory resolver; it also caches records, so MX hosts shared by many
    /// domains are resolved once per TTL.
    resolver: TokioResolver,
    /// MX host addresses, reused across the domains sharing the hosts.
    hosts: resolve::HostCache,
    /// Cache lifetimes.
    ttls: Ttls,
    /// Smarthosts, in config order; the first match wins.
    overrides: Vec<Arc<RouteOverride>>,
    /// Most entries kept in `cache`.
    capacity: usize,
    /// Domain (or `smarthost:host:port`) -> answer slot. A slot is shared by every
    /// caller that asks while it is being filled: one query per domain at a time.
    cache: Mutex<HashMap<Arc<str>, Arc<Slot>>>,
}

/// One cache entry: empty while its lookup runs, then the answer until it expires.
#[derive(Default)]
struct Slot {
    answer: OnceCell<Answer>,
}

impl Slot {
    /// Filled and past its expiry. A slot being filled is never stale.
    fn is_stale(&self, now: Instant) -> bool {
        self.answer.get().is_some_and(|a| a.expires <= now)
    }

    /// When it may be evicted: filled slots by expiry, empty ones never.
    fn evict_after(&self) -> Option<Instant> {
        self.answer.get().map(|a| a.expires)
    }
}

impl Router {
    /// Builds a router (no I/O beyond reading the system resolver configuration;
    /// lookups need a tokio runtime). Empty `config.nameservers` reads the system's resolver
    /// configuration; otherwise those servers are asked over UDP (TCP when an
    /// answer is truncated) and `/etc/hosts` is not consulted.
    pub fn new(
        config: &DnsConfig,
        overrides: Vec<RouteOverride>,
    ) -> Result<Self, RouterSetupError> {
        config
            .validate()
            .map_err(|(key, reason)| RouterSetupError::Config { key, reason })?;
        for (index, o) in overrides.iter().enumerate() {
            o.validate()
                .map_err(|(key, reason)| RouterSetupError::Override { index, key, reason })?;
        }
        let provider = TokioConnectionProvider::default();
        let mut builder = if config.nameservers.is_empty() {
            Resolver::builder(provider).map_err(RouterSetupError::SystemConfig)?
        } else {
            let mut servers = ResolverConfig::new();
            for addr in &config.nameservers {
                servers.add_name_server(NameServerConfig::new(*addr, Protocol::Udp));
                servers.add_name_server(NameServerConfig::new(*addr, Protocol::Tcp));
            }
            Resolver::builder_with_config(servers, provider)
        };
        let options = builder.options_mut();
        options.timeout = config.timeout;
        options.attempts = config.attempts;
        options.cache_size = config.cache_size;
        options.positive_min_ttl = Some(config.min_ttl);
        options.positive_max_ttl = Some(config.max_ttl);
        options.negative_min_ttl = Some(config.min_ttl);
        options.negative_max_ttl = Some(config.max_ttl);
        if !config.nameservers.is_empty() {
            options.use_hosts_file = ResolveHosts::Never;
        }
        Ok(Router {
            inner: Arc::new(Inner {
                resolver: builder.build(),
                hosts: resolve::HostCache::new(config.cache_size),
                ttls: Ttls::new(config),
                overrides: overrides.into_iter().map(Arc::new).collect(),
                capacity: config.cache_size,
                cache: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Where to deliver mail for `domain` (any case, optional trailing dot, U-label
    /// or A-label, or an address literal like `[192.0.2.1]`).
    ///
    /// Answers, positive and negative, are cached until they expire; concurrent
    /// calls for the same domain share one lookup. Cancel-safe: if the caller
    /// driving a lookup is dropped, another waiter takes it over.
    pub async fn route(&self, domain: &str) -> Result<Arc<Route>, RouteError> {
        let domain = normalize(domain)?;
        if let Some(smarthost) = self.override_for(&domain) {
            // Keyed by relay, not by domain: every domain it serves shares one entry.
            let slot = self.slot(&smarthost.site_key());
            let inner = &self.inner;
            let answer = slot
                .answer
                .get_or_init(|| resolve::resolve_smarthost(&inner.resolver, &inner.ttls, smarthost))
                .await;
            return answer.result.clone();
        }
        if let Some(route) = resolve::address_literal(&domain, &self.inner.ttls) {
            return route;
        }
        let slot = self.slot(&domain);
        let answer = slot
            .answer
            .get_or_init(|| {
                let domain: Arc<str> = Arc::from(&*domain);
                let inner = &self.inner;
                async move {
                    resolve::resolve_domain(&inner.resolver, &inner.hosts, &inner.ttls, &domain)
                        .await
                }
            })
            .await;
        answer.result.clone()
    }

    /// The smarthost for `domain`, if any override matches (config order).
    pub fn override_for(&self, domain: &str) -> Option<&Arc<RouteOverride>> {
        self.inner.overrides.iter().find(|o| o.matches(domain))
    }

    /// Forgets the cached answer for `domain`, so the next `route` asks DNS (e.g.
    /// after an operator fixed a zone). Returns whether there was one.
    pub fn forget(&self, domain: &str) -> bool {
        let Ok(domain) = normalize(domain) else {
            return false;
        };
        self.lock().remove(&*domain).is_some()
    }

    /// The site of `domain` from the cache, without asking DNS: `None` when it was
    /// never routed, its lookup is still running, or it failed. A stale answer
    /// still names its site (the last one known). Read-only; for the queue listing.
    pub fn cached_site(&self, domain: &str) -> Option<SiteId> {
        let domain = normalize(domain).ok()?;
        if let Some(r) = resolve::address_literal(&domain, &self.inner.ttls) {
            return r.ok().map(|route| route.site.clone());
        }
        let key = match self.override_for(&domain) {
            Some(smarthost) => Cow::Owned(smarthost.site_key()),
            None => domain,
        };
        let slot = self.lock().get(&*key).cloned()?;
        let answer = slot.answer.get()?;
        answer.result.as_ref().ok().map(|route| route.site.clone())
    }

    /// How many domains (and smarthosts) have a cache entry, fresh or not.
    pub fn cached(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Slot>>> {
        // The map is consistent after every statement: a panic elsewhere cannot
        // leave it half-updated, so a poisoned lock is still usable.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The fresh or in-flight slot for `key`, or a new empty one in its place.
    fn slot(&self, key: &str) -> Arc<Slot> {
        let now = Instant::now();
        let mut cache = self.lock();
        if let Some(slot) = cache.get(key) {
            if !slot.is_stale(now) {
                return slot.clone();
            }
        } else if cache.len() >= self.inner.capacity {
            evict(&mut cache, self.inner.capacity, now);
        }
        let slot = Arc::new(Slot::default());
        cache.insert(Arc::from(key), slot.clone());
        slot
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("overrides", &self.inner.overrides.len())
            .field("cached", &self.cached())
            .finish()
    }
}

/// Makes room in a full cache: drops stale entries and, if that is not enough,
/// the eighth of entries that expire soonest (so the scan runs once per many
/// inserts, not on each). Entries still being filled are kept.
fn evict(cache: &mut HashMap<Arc<str>, Arc<Slot>>, capacity: usize, now: Instant) {
    cache.retain(|_, slot| !slot.is_stale(now));
    if cache.len() < capacity {
        return;
    }
    let mut expiries: Vec<Instant> = cache.values().filter_map(|s| s.evict_after()).collect();
    let drop = (capacity / 8).max(1).min(expiries.len());
    if drop == 0 {
        return;
    }
    let (_, cutoff, _) = expiries.select_nth_unstable(drop - 1);
    let cutoff = *cutoff;
    let mut dropped = 0;
    cache.retain(|_, slot| match slot.evict_after() {
        Some(expires) if expires <= cutoff && dropped < drop => {
            dropped += 1;
            false
        }
        _ => true,
    });
}

/// Lowercase ASCII (IDNA A-labels), without the trailing dot; address literals
/// kept as they are. Borrows when `domain` is already in that form.
fn normalize(domain: &str) -> Result<Cow<'_, str>, RouteError> {
    let invalid = || RouteError::InvalidDomain {
        domain: domain.into(),
    };
    let bare = domain.strip_suffix('.').unwrap_or(domain);
    if bare.starts_with('[') {
        return Ok(Cow::Borrowed(bare));
    }
    let mut name: Cow<'_, str> = if bare.is_ascii() {
        Cow::Borrowed(bare)
    } else {
        Cow::Owned(idna::domain_to_ascii(bare).map_err(|_| invalid())?)
    };
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name = Cow::Owned(name.to_ascii_lowercase());
    }
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(invalid());
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_domains() {
        assert!(matches!(
            normalize("example.com"),
            Ok(Cow::Borrowed("example.com"))
        ));
        assert_eq!(normalize("Example.COM.").unwrap(), "example.com");
        assert_eq!(
            normalize("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(normalize("[192.0.2.1]").unwrap(), "[192.0.2.1]");
        for bad in ["", ".", "a..b", "exa mple.com", "a@b", &"a".repeat(64)] {
            let err = normalize(bad).err();
            assert!(
                matches!(err, Some(RouteError::InvalidDomain { .. })),
                "{bad:?}"
            );
        }
    }
}
