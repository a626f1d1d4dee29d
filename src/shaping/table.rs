//! [`ShapingTable`]: the limits of a destination, resolved from the default and
//! the rules once per site (and once per site and domain for the few domains that
//! have their own rules), then served from a cache.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use dashmap::DashMap;

use super::limits::{host_matches_suffix, normalise, Limits, Rule, Selector, ShapingConfig};
use super::Rate;

/// Resolved limits per site and domain. Cheap to query: after the first lookup of
/// a site (or of a site and a domain that has rules), one map read and an `Arc`
/// clone; no allocation unless the domain has rules of its own.
#[derive(Debug)]
pub struct ShapingTable {
    /// `[shaping.default]`, shared by every destination no rule selects.
    default: Arc<Limits>,
    /// The rules with their selectors, in file order.
    rules: Vec<(Selector, Rule)>,
    /// Domains named by at least one `domain` rule (normalised).
    ruled_domains: HashSet<String>,
    /// Site name -> limits from the default and the site and mx_suffix rules.
    sites: DashMap<Box<str>, Arc<Limits>>,
    /// "site\ndomain" -> limits, only for domains in `ruled_domains`.
    pairs: DashMap<String, Arc<Limits>>,
}

impl ShapingTable {
    /// A table for a validated [`ShapingConfig`] (rules without exactly one selector
    /// are ignored; [`ShapingConfig::validate`] refuses them).
    pub fn new(config: &ShapingConfig) -> ShapingTable {
        let rules: Vec<(Selector, Rule)> = config
            .rule
            .iter()
            .filter_map(|r| r.selector().map(|s| (s, r.clone())))
            .collect();
        let ruled_domains = rules
            .iter()
            .filter_map(|(s, _)| match s {
                Selector::Domain(d) => Some(d.clone()),
                _ => None,
            })
            .collect();
        ShapingTable {
            default: Arc::new(config.default.clone()),
            rules,
            ruled_domains,
            sites: DashMap::new(),
            pairs: DashMap::new(),
        }
    }

    /// The limits for mail to `domain` through `site`, whose MX hosts are
    /// `mx_hosts`: the default, then every matching rule in file order.
    pub fn limits_for(&self, domain: &str, site: &str, mx_hosts: &[&str]) -> Arc<Limits> {
        let domain = lower(domain);
        if !self.ruled_domains.contains(domain.as_ref()) {
            return self.site_limits(site, mx_hosts);
        }
        let key = format!("{site}\n{domain}");
        if let Some(hit) = self.pairs.get(&key) {
            return hit.clone();
        }
        let limits = Arc::new(self.resolve(Some(&domain), site, mx_hosts));
        self.pairs.entry(key).or_insert(limits).clone()
    }

    /// The limits of `site` itself (default, site and mx_suffix rules): what its
    /// connection pool and its total message rate obey.
    pub fn site_limits(&self, site: &str, mx_hosts: &[&str]) -> Arc<Limits> {
        if let Some(hit) = self.sites.get(site) {
            return hit.clone();
        }
        let resolved = self.resolve(None, site, mx_hosts);
        let limits = if resolved == *self.default {
            self.default.clone()
        } else {
            Arc::new(resolved)
        };
        self.sites.entry(site.into()).or_insert(limits).clone()
    }

    /// The rate a `domain` rule sets for `domain` alone (the last one in file order),
    /// enforced on top of its site's rate.
    pub fn domain_rate(&self, domain: &str) -> Option<Rate> {
        let domain = lower(domain);
        if !self.ruled_domains.contains(domain.as_ref()) {
            return None;
        }
        self.rules
            .iter()
            .filter(|(s, _)| matches!(s, Selector::Domain(d) if *d == *domain))
            .filter_map(|(_, r)| r.max_message_rate)
            .next_back()
    }

    /// Forgets the cached limits of `site` (e.g. when its queue is dropped).
    pub fn forget_site(&self, site: &str) {
        self.sites.remove(site);
        let prefix = format!("{site}\n");
        self.pairs.retain(|k, _| !k.starts_with(&prefix));
    }

    /// Cached entries (sites plus site-and-domain pairs), for metrics.
    pub fn cached(&self) -> usize {
        self.sites.len() + self.pairs.len()
    }

    fn resolve(&self, domain: Option<&str>, site: &str, mx_hosts: &[&str]) -> Limits {
        let mut limits = (*self.default).clone();
        for (selector, rule) in &self.rules {
            let hit = match selector {
                Selector::Domain(d) => domain == Some(d.as_str()),
                Selector::Site(s) => s.eq_ignore_ascii_case(site),
                Selector::MxSuffix(suffix) => {
                    mx_hosts.iter().any(|h| host_matches_suffix(h, suffix))
                }
            };
            if hit {
                rule.apply(&mut limits);
            }
        }
        limits
    }
}

/// `domain` lower case without a trailing dot, allocating only if it must.
pub(crate) fn lower(domain: &str) -> Cow<'_, str> {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    if d.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(normalise(d))
    } else {
        Cow::Borrowed(d)
    }
}
