//! [`Shaper`]: the live state of shaping: per site a [`SiteShaper`] (connection
//! limiter, message rate, adaptive slow-down), per ruled domain its own rate, all
//! resolved through the [`ShapingTable`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;

use super::clock::Clock;
use super::connection::{ConnectionLimiter, ConnectionPermit};
use super::limits::{AdaptiveConfig, Limits, ShapingConfig};
use super::table::{lower, ShapingTable};
use super::Gcra;
use crate::smtp::reply::Reply;

/// The slowest an adaptive slow-down makes a rate: one message a minute (unless
/// the configured rate is slower already).
const SLOWEST_INTERVAL: u64 = 60_000_000_000;
/// Cap on the slow-down factor (reached only by a long series of throttling
/// replies; the interval floor applies well before).
const MAX_SLOWDOWN: u32 = 1 << 20;

/// Shaping state for every destination. Share one per process (`Arc<Shaper>`).
#[derive(Debug)]
pub struct Shaper {
    /// Resolved limits.
    table: ShapingTable,
    /// The slow-down trigger; patterns lower-cased.
    adaptive: AdaptiveConfig,
    /// Time for every rate limiter and cool-off.
    clock: Arc<dyn Clock>,
    /// Site name -> its live state.
    sites: DashMap<Box<str>, Arc<SiteShaper>>,
    /// Domain -> its own rate limiter, for domains whose rules set a rate.
    domains: DashMap<Box<str>, Arc<Mutex<Gcra>>>,
}

/// The live limits of one site.
#[derive(Debug)]
pub struct SiteShaper {
    /// The site's configured limits.
    limits: Arc<Limits>,
    /// Concurrent connections and connection rate.
    connections: ConnectionLimiter,
    /// The site's total message rate, if limited.
    rate: Option<Mutex<Gcra>>,
    /// The adaptive slow-down in force.
    throttle: Mutex<Throttle>,
    /// How long a slow-down lasts after the last throttling reply, in nanoseconds.
    cool_off: u64,
    /// Time for `rate` and `throttle`.
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Clone, Copy)]
struct Throttle {
    /// 1 when not slowed down; 2, 4, 8 ... after throttling replies.
    slowdown: u32,
    /// When the slow-down ends (clock nanoseconds).
    until: u64,
}

impl Shaper {
    /// The shaper for a validated [`ShapingConfig`].
    pub fn new(config: &ShapingConfig, clock: Arc<dyn Clock>) -> Shaper {
        let mut adaptive = config.adaptive.clone();
        for p in &mut adaptive.patterns {
            *p = p.to_lowercase();
        }
        Shaper {
            table: ShapingTable::new(config),
            adaptive,
            clock,
            sites: DashMap::new(),
            domains: DashMap::new(),
        }
    }

    /// The resolved limits table.
    pub fn table(&self) -> &ShapingTable {
        &self.table
    }

    /// The limits for one transaction's destination: see
    /// [`ShapingTable::limits_for`].
    pub fn limits_for(&self, domain: &str, site: &str, mx_hosts: &[&str]) -> Arc<Limits> {
        self.table.limits_for(domain, site, mx_hosts)
    }

    /// The live state of `site`, made on first use.
    pub fn site(&self, site: &str, mx_hosts: &[&str]) -> Arc<SiteShaper> {
        if let Some(s) = self.sites.get(site) {
            return s.clone();
        }
        let limits = self.table.site_limits(site, mx_hosts);
        let state = Arc::new(SiteShaper {
            connections: ConnectionLimiter::new(
                limits.max_connections,
                limits.connections_per_minute,
                self.clock.clone(),
            ),
            rate: limits
                .max_message_rate
                .map(|r| Mutex::new(Gcra::new(r, limits.message_rate_burst))),
            limits,
            throttle: Mutex::new(Throttle {
                slowdown: 1,
                until: 0,
            }),
            cool_off: u64::try_from(self.adaptive.cool_off.as_nanos()).unwrap_or(u64::MAX),
            clock: self.clock.clone(),
        });
        self.sites.entry(site.into()).or_insert(state).clone()
    }

    /// Takes `recipients` units of the site's rate and, if `domain` has a rate of
    /// its own, of the domain's: `Ok` to send the transaction now, or how long to
    /// wait (nothing is taken then). Called once per transaction.
    pub fn try_send(
        &self,
        site: &SiteShaper,
        domain: &str,
        recipients: u32,
    ) -> Result<(), Duration> {
        let now = self.clock.now_nanos();
        site.refresh(now);
        let domain_gcra = self.domain_limiter(domain, site.limits.message_rate_burst);
        let mut site_rate = site.rate.as_ref().map(|m| m.lock().expect("rate lock"));
        let mut dom_rate = domain_gcra.as_ref().map(|m| m.lock().expect("rate lock"));
        let a = site_rate
            .as_ref()
            .map(|g| g.check(now, recipients))
            .transpose();
        let b = dom_rate
            .as_ref()
            .map(|g| g.check(now, recipients))
            .transpose();
        match (a, b) {
            (Ok(a), Ok(b)) => {
                if let (Some(g), Some(tat)) = (site_rate.as_mut(), a) {
                    g.commit(tat);
                }
                if let (Some(g), Some(tat)) = (dom_rate.as_mut(), b) {
                    g.commit(tat);
                }
                Ok(())
            }
            (Err(w), Ok(_)) | (Ok(_), Err(w)) => Err(w),
            (Err(w1), Err(w2)) => Err(w1.max(w2)),
        }
    }

    fn domain_limiter(&self, domain: &str, burst: u32) -> Option<Arc<Mutex<Gcra>>> {
        let rate = self.table.domain_rate(domain)?;
        let domain = lower(domain);
        if let Some(g) = self.domains.get(domain.as_ref()) {
            return Some(g.clone());
        }
        let g = Arc::new(Mutex::new(Gcra::new(rate, burst)));
        Some(
            self.domains
                .entry(domain.as_ref().into())
                .or_insert(g)
                .clone(),
        )
    }

    /// Whether a reply asks to slow down: one of the adaptive codes, with one of
    /// the patterns in its text.
    pub fn is_throttling(&self, code: u16, text: &str) -> bool {
        if !self.adaptive.enabled || !self.adaptive.codes.contains(&code) {
            return false;
        }
        let text = text.to_lowercase();
        self.adaptive
            .patterns
            .iter()
            .any(|p| text.contains(p.as_str()))
    }

    /// Feeds a receiver's reply to the adaptive slow-down of `site`: a throttling
    /// reply halves the site's message rate (or, with no rate configured, its
    /// connection limit) again and restarts the cool-off. Returns whether it did.
    pub fn on_reply(&self, site: &str, code: u16, text: &str) -> bool {
        if !self.is_throttling(code, text) {
            return false;
        }
        let Some(state) = self.sites.get(site).map(|s| s.clone()) else {
            return false;
        };
        state.slow_down(self.clock.now_nanos());
        true
    }

    /// [`on_reply`](Self::on_reply) for a parsed reply.
    pub fn on_smtp_reply(&self, site: &str, reply: &Reply) -> bool {
        self.on_reply(site, reply.code.get(), &reply.text())
    }

    /// Drops the state of an idle site (its limiters start afresh on next use).
    pub fn forget_site(&self, site: &str) {
        self.sites.remove(site);
        self.table.forget_site(site);
    }
}

impl SiteShaper {
    /// The site's configured limits.
    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// The site's connection limiter (as adapted now).
    pub fn connections(&self) -> &ConnectionLimiter {
        self.refresh(self.clock.now_nanos());
        &self.connections
    }

    /// Waits for the right to open a connection to the site.
    pub async fn acquire_connection(&self) -> ConnectionPermit {
        self.connections().acquire().await
    }

    /// The slow-down factor in force: 1 normally, 2, 4, ... after throttling.
    pub fn slowdown(&self) -> u32 {
        self.refresh(self.clock.now_nanos());
        self.throttle.lock().expect("throttle lock").slowdown
    }

    fn slow_down(&self, now: u64) {
        let mut t = self.throttle.lock().expect("throttle lock");
        t.slowdown = t.slowdown.saturating_mul(2).min(MAX_SLOWDOWN);
        t.until = now.saturating_add(self.cool_off);
        self.apply(t.slowdown);
    }

    /// Ends a slow-down whose cool-off has passed.
    fn refresh(&self, now: u64) {
        let mut t = self.throttle.lock().expect("throttle lock");
        if t.slowdown > 1 && now >= t.until {
            t.slowdown = 1;
            self.apply(1);
        }
    }

    fn apply(&self, slowdown: u32) {
        match (&self.rate, self.limits.max_message_rate) {
            (Some(gcra), Some(rate)) => {
                let base = rate.interval_nanos();
                let slow = base
                    .saturating_mul(u64::from(slowdown))
                    .min(base.max(SLOWEST_INTERVAL));
                gcra.lock().expect("rate lock").set_interval(slow);
            }
            _ => {
                let base = self.limits.max_connections as usize;
                self.connections.set_max((base / slowdown as usize).max(1));
            }
        }
    }
}
