//! One site: a set of MX hosts shared by every domain routed to it, with one pool
//! of sessions, one set of limits, the batches staged for it and whether it is
//! "dead" (its last connection attempt failed on every host).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::dns::{Route, SiteId};
use crate::egress::{Credentials, Endpoint, SessionOptions, TlsPolicy};
use crate::queue::{Batch, Scheduler};
use crate::shaping::{Limits, Shaper, SiteShaper};
use crate::smtp::reply::Reply;

/// Most active domains a session looks at for direct work per take (the
/// dispatcher's `take_next` covers the rest).
const DIRECT_TRIES: usize = 64;

/// A site and its pool's shared state.
#[derive(Debug)]
pub(crate) struct Site {
    /// The site key.
    pub id: SiteId,
    /// Live limits: connections, rates, adaptive slow-down.
    pub shaper: Arc<SiteShaper>,
    /// How sessions to this site are set up (TLS policy, timeouts, window).
    pub options: Arc<SessionOptions>,
    /// Wakes one idle session when work is staged.
    pub notify: Notify,
    /// Sessions running (connecting or connected).
    pub sessions: AtomicUsize,
    /// Sessions waiting for work.
    pub idle: AtomicUsize,
    /// Sessions connected (past the SMTP greeting).
    pub connected: AtomicUsize,
    /// Sessions opened, for spreading them over equal-preference hosts.
    opened: AtomicUsize,
    /// Everything that changes under a lock.
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The latest route (endpoints to connect to).
    route: Arc<Route>,
    /// Batches handed over by the dispatcher, oldest first.
    staged: VecDeque<Batch>,
    /// The domains routed here.
    domains: Vec<Slot>,
    /// Position of each domain in `domains`.
    index: HashMap<Arc<str>, usize>,
    /// Domains that lately had work, for direct takes, round-robin. A domain
    /// joins when the dispatcher stages its work and leaves when a take finds
    /// nothing, so a site with 10,000 domains and work in three of them looks
    /// at those three, not the 10,000. (Names of removed or inactive domains
    /// may linger; a take skips them.)
    active: VecDeque<Arc<str>>,
    /// Until when the site counts as down, and the error that put it down.
    dead: Option<(Instant, Reply)>,
    /// No new session before this (a connection was refused while others ran).
    hold: Option<Instant>,
    /// Addresses that failed while a later one worked, tried last until then.
    bad: HashMap<SocketAddr, Instant>,
}

/// A domain routed to the site, and whether it is in the active list.
#[derive(Debug)]
struct Slot {
    entry: DomainEntry,
    active: bool,
}

/// A domain routed to a site.
#[derive(Debug, Clone)]
pub(crate) struct DomainEntry {
    /// The domain.
    pub name: Arc<str>,
    /// Its recipients-per-transaction limit at this site.
    pub max_rcpts: usize,
    /// Its own TLS policy, when a rule sets one (the session's may be weaker).
    pub tls: Option<TlsPolicy>,
    /// Its route is fresh until then; afterwards only the dispatcher takes its
    /// work (and routes it again).
    pub fresh_until: Instant,
}

impl Site {
    /// A site for `route`, with its shaper state and session options.
    pub fn new(route: Arc<Route>, shaper: Arc<SiteShaper>, options: Arc<SessionOptions>) -> Site {
        Site {
            id: route.site.clone(),
            shaper,
            options,
            notify: Notify::new(),
            sessions: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            connected: AtomicUsize::new(0),
            opened: AtomicUsize::new(0),
            state: Mutex::new(State {
                route,
                staged: VecDeque::new(),
                domains: Vec::new(),
                index: HashMap::new(),
                active: VecDeque::new(),
                dead: None,
                hold: None,
                bad: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The site's configured limits.
    pub fn limits(&self) -> &Arc<Limits> {
        self.shaper.limits()
    }

    /// Registers (or refreshes) `domain` with its route; returns its entry.
    pub fn add_domain(
        &self,
        shaper: &Shaper,
        domain: &Arc<str>,
        route: &Arc<Route>,
        fresh_until: Instant,
    ) -> DomainEntry {
        let hosts: Vec<&str> = route.hosts.iter().map(|h| &*h.name).collect();
        let limits = shaper.limits_for(domain, self.id.as_str(), &hosts);
        let entry = DomainEntry {
            name: domain.clone(),
            max_rcpts: limits.max_recipients_per_transaction.max(1) as usize,
            tls: limits.tls.map(TlsPolicy::from),
            fresh_until,
        };
        let mut st = self.lock();
        if !Arc::ptr_eq(&st.route, route) && route.expires >= st.route.expires {
            st.route = route.clone();
        }
        match st.index.get(domain) {
            Some(&i) => st.domains[i].entry = entry.clone(),
            None => {
                let i = st.domains.len();
                st.domains.push(Slot {
                    entry: entry.clone(),
                    active: false,
                });
                st.index.insert(domain.clone(), i);
            }
        }
        entry
    }

    /// Forgets `domain` (it now routes elsewhere).
    pub fn remove_domain(&self, domain: &str) {
        let mut st = self.lock();
        let Some(i) = st.index.remove(domain) else {
            return;
        };
        st.domains.swap_remove(i);
        if let Some(moved) = st.domains.get(i).map(|d| d.entry.name.clone()) {
            st.index.insert(moved, i);
        }
    }

    /// The recipients-per-transaction limit of `domain` here, and the TLS policy
    /// its own rules require (if any).
    pub fn policy(&self, domain: &str) -> (usize, Option<TlsPolicy>) {
        let st = self.lock();
        match st.index.get(domain) {
            Some(&i) => {
                let d = &st.domains[i].entry;
                (d.max_rcpts.max(1), d.tls)
            }
            None => (
                (self.limits().max_recipients_per_transaction as usize).max(1),
                None,
            ),
        }
    }

    /// Where a new session connects: every address of every host, by preference,
    /// hosts of equal preference rotated from one session to the next (so a pool
    /// spreads over them); `port` unless the route names its own (smarthosts).
    pub fn endpoints(&self, port: u16) -> Vec<Endpoint> {
        let (route, bad) = {
            let mut st = self.lock();
            let now = Instant::now();
            st.bad.retain(|_, until| *until > now);
            let bad: Vec<SocketAddr> = st.bad.keys().copied().collect();
            (st.route.clone(), bad)
        };
        let port = route.port().unwrap_or(port);
        let turn = self.opened.fetch_add(1, Ordering::Relaxed);
        let mut hosts: Vec<_> = route.hosts.iter().collect();
        for group in hosts.chunk_by_mut(|a, b| a.preference == b.preference) {
            let n = group.len();
            group.rotate_left(turn % n);
        }
        let mut endpoints: Vec<Endpoint> = hosts
            .into_iter()
            .flat_map(|h| {
                h.addrs
                    .iter()
                    .map(move |ip| Endpoint::new(&*h.name, SocketAddr::new(*ip, port)))
            })
            .collect();
        // Stable: addresses that failed recently go last, in their order.
        endpoints.sort_by_key(|e| bad.contains(&e.addr));
        endpoints
    }

    /// Tries `addrs` last until `until` (they failed while a later one answered).
    pub fn demote(&self, addrs: impl IntoIterator<Item = SocketAddr>, until: Instant) {
        let mut st = self.lock();
        for a in addrs {
            st.bad.insert(a, until);
        }
    }

    /// Opens no new session before `until`.
    pub fn hold_until(&self, until: Instant) {
        self.lock().hold = Some(until);
    }

    /// Whether new sessions are held back now.
    pub fn held(&self, now: Instant) -> bool {
        self.lock().hold.is_some_and(|h| h > now)
    }

    /// Whether the site has no domains, sessions or staged work left (the
    /// dispatcher may forget it).
    pub fn is_unused(&self) -> bool {
        let st = self.lock();
        st.domains.is_empty() && st.staged.is_empty() && self.session_count() == 0
    }

    /// Hands a batch to the site's sessions; its domain becomes active.
    pub fn stage(&self, batch: Batch) {
        let mut st = self.lock();
        st.activate(&batch.domain);
        st.staged.push_back(batch);
        drop(st);
        self.notify.notify_one();
    }

    /// Marks `domain` as having ready work, for sessions' direct takes.
    pub fn activate(&self, domain: &Arc<str>) {
        self.lock().activate(domain);
    }

    /// Puts batches back at the front (a session that could not send them yet).
    pub fn unstage(&self, batches: Vec<Batch>) {
        let mut st = self.lock();
        for b in batches.into_iter().rev() {
            st.staged.push_front(b);
        }
        drop(st);
        self.notify.notify_one();
    }

    /// Batches staged and not taken yet.
    pub fn staged(&self) -> usize {
        self.lock().staged.len()
    }

    /// Takes every staged batch.
    pub fn drain_staged(&self) -> Vec<Batch> {
        self.lock().staged.drain(..).collect()
    }

    /// The most batches worth staging: enough to fill every session's window.
    pub fn stage_limit(&self) -> usize {
        let sessions = self.shaper.connections().max();
        (sessions * self.options.window.max_transactions).max(16)
    }

    /// The next batch for a session: staged work first, then ready work of the
    /// site's active domains with fresh routes, taken from the scheduler directly.
    pub fn next_batch(&self, scheduler: &Scheduler) -> Option<Batch> {
        let mut guard = self.lock();
        let st = &mut *guard;
        if let Some(b) = st.staged.pop_front() {
            return Some(b);
        }
        let now = Instant::now();
        for _ in 0..st.active.len().min(DIRECT_TRIES) {
            let Some(name) = st.active.pop_front() else {
                break;
            };
            let Some(&i) = st.index.get(&name) else {
                continue;
            };
            let slot = &mut st.domains[i];
            if !slot.active {
                continue;
            }
            if slot.entry.fresh_until > now {
                let max = slot.entry.max_rcpts;
                if let Some(b) = scheduler.take_batch_max(&name, max) {
                    st.active.push_back(name);
                    return Some(b);
                }
            }
            // Nothing ready, or the route went stale (then only the dispatcher
            // takes its work, and routes it again).
            st.domains[i].active = false;
        }
        None
    }

    /// Takes ready work of the site's domains directly, up to `max_recipients`
    /// (for failing a dead site's backlog at once).
    pub fn take_backlog(&self, scheduler: &Scheduler, max_recipients: usize) -> Vec<Batch> {
        let mut out = self.drain_staged();
        let mut n: usize = out.iter().map(|b| b.recipients.len()).sum();
        let domains: Vec<DomainEntry> = self
            .lock()
            .domains
            .iter()
            .map(|d| d.entry.clone())
            .collect();
        for d in domains {
            while n < max_recipients {
                let Some(b) = scheduler.take_batch_max(&d.name, d.max_rcpts) else {
                    break;
                };
                n += b.recipients.len();
                out.push(b);
            }
        }
        out
    }

    /// Marks the site down until `until` with `reply` as the reason.
    pub fn mark_dead(&self, until: Instant, reply: Reply) {
        self.lock().dead = Some((until, reply));
    }

    /// Why the site is down, if it is.
    pub fn dead(&self, now: Instant) -> Option<Reply> {
        let mut st = self.lock();
        match &st.dead {
            Some((until, reply)) if *until > now => Some(reply.clone()),
            Some(_) => {
                st.dead = None;
                None
            }
            None => None,
        }
    }

    /// Sessions running.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }
}

impl State {
    fn activate(&mut self, domain: &Arc<str>) {
        if let Some(&i) = self.index.get(domain) {
            let slot = &mut self.domains[i];
            if !slot.active {
                slot.active = true;
                self.active.push_back(domain.clone());
            }
        }
    }
}

/// The session options of `route`'s site: the engine's `template`, the site's
/// shaped TLS policy if any, and a smarthost's settings: `tls = true` makes
/// TLS required, and its username and password become AUTH credentials (the
/// session sends them over TLS only).
pub(crate) fn session_options(
    template: &SessionOptions,
    route: &Route,
    shaped_tls: Option<TlsPolicy>,
) -> SessionOptions {
    let mut options = template.clone();
    if let Some(policy) = shaped_tls {
        options.tls_policy = policy;
    }
    let smarthost = route.smarthost();
    if smarthost.is_some_and(|s| s.tls) && options.tls_policy.allows_plaintext() {
        options.tls_policy = TlsPolicy::Required;
    }
    options.auth = smarthost.and_then(|s| match (&s.username, &s.password) {
        (Some(user), Some(pass)) => Some(Credentials::new(user.clone(), pass.clone())),
        (Some(_), None) | (None, Some(_)) | (None, None) => None,
    });
    options
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{MxHost, RouteKind, RouteOverride};
    use crate::shaping::{ShapingConfig, TokioClock};

    fn site(hosts: &[(&str, u16, &str)]) -> Site {
        let route = Arc::new(Route {
            site: SiteId::new("s"),
            hosts: hosts
                .iter()
                .map(|(name, preference, ip)| MxHost {
                    name: Arc::from(*name),
                    preference: *preference,
                    addrs: vec![ip.parse().unwrap()],
                })
                .collect(),
            kind: RouteKind::Mx,
            expires: Instant::now() + std::time::Duration::from_secs(60),
        });
        let shaper = Shaper::new(&ShapingConfig::default(), Arc::new(TokioClock::new()));
        Site::new(
            route,
            shaper.site("s", &["a", "b", "c"]),
            Arc::new(SessionOptions::new("volley.test")),
        )
    }

    fn route(kind: RouteKind) -> Route {
        Route {
            site: SiteId::new("s"),
            hosts: Vec::new(),
            kind,
            expires: Instant::now() + std::time::Duration::from_secs(60),
        }
    }

    #[test]
    fn smarthost_credentials_and_tls_reach_the_session_options() {
        let template = SessionOptions::new("volley.test");
        let relay = RouteOverride {
            username: Some("volley".into()),
            password: Some("secret".into()),
            tls: true,
            ..RouteOverride::all("relay.test", 587)
        };
        let o = session_options(
            &template,
            &route(RouteKind::Smarthost(Arc::new(relay.clone()))),
            None,
        );
        assert_eq!(o.auth, Some(Credentials::new("volley", "secret")));
        assert_eq!(o.tls_policy, TlsPolicy::Required);

        // A stricter shaped policy stays; no password, no AUTH.
        let half = RouteOverride {
            password: None,
            ..relay
        };
        let o = session_options(
            &template,
            &route(RouteKind::Smarthost(Arc::new(half))),
            Some(TlsPolicy::RequiredVerified),
        );
        assert_eq!(o.auth, None);
        assert_eq!(o.tls_policy, TlsPolicy::RequiredVerified);

        // MX routes never authenticate.
        let o = session_options(&template, &route(RouteKind::Mx), None);
        assert_eq!(o.auth, None);
        assert_eq!(o.tls_policy, TlsPolicy::Opportunistic);
    }

    fn order(site: &Site) -> Vec<String> {
        site.endpoints(25).into_iter().map(|e| e.host).collect()
    }

    #[test]
    fn equal_preferences_take_turns_and_failed_addresses_go_last() {
        let s = site(&[
            ("a", 10, "192.0.2.1"),
            ("b", 10, "192.0.2.2"),
            ("c", 20, "192.0.2.3"),
        ]);
        assert_eq!(order(&s), ["a", "b", "c"]);
        assert_eq!(
            order(&s),
            ["b", "a", "c"],
            "next session starts at the other host"
        );
        let eps = s.endpoints(2525);
        assert!(eps.iter().all(|e| e.addr.port() == 2525));
        s.demote(
            ["192.0.2.1:25".parse().unwrap()],
            Instant::now() + std::time::Duration::from_secs(60),
        );
        assert_eq!(order(&s), ["b", "c", "a"]);
        assert_eq!(order(&s), ["b", "c", "a"]);
        s.demote(["192.0.2.2:25".parse().unwrap()], Instant::now());
        assert_eq!(order(&s)[2], "a", "an expired demotion no longer counts");
    }

    #[test]
    fn sessions_take_direct_work_only_from_active_domains() {
        use crate::model::message::tests::sample;
        use crate::model::{MessageId, Timestamp};
        use crate::queue::{Clock, ManualClock, SchedulerConfig};

        let s = site(&[("a", 10, "192.0.2.1")]);
        let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_700_000_000)));
        let scheduler = Scheduler::new(SchedulerConfig::default(), clock.clone());
        let shaper = Shaper::new(&ShapingConfig::default(), Arc::new(TokioClock::new()));
        let route = Arc::new(route(RouteKind::Mx));
        let fresh = Instant::now() + std::time::Duration::from_secs(60);
        let names: Vec<Arc<str>> = (0..1000).map(|i| Arc::from(format!("d{i}.test"))).collect();
        for d in &names {
            s.add_domain(&shaper, d, &route, fresh);
        }
        let queue = |id: u128, domain: &str| {
            let mut m = sample(MessageId(id), None, &[&format!("u@{domain}")]);
            m.created = clock.now();
            m.expires = scheduler.expiry_for(clock.now());
            assert_eq!(scheduler.enqueue(&m.pending()), 1);
        };
        // Work queued in the scheduler but never staged: no domain is active yet.
        queue(1, "d7.test");
        assert!(s.next_batch(&scheduler).is_none());
        // Staging one batch of d7 activates it: its next message is taken directly.
        queue(2, "d7.test");
        s.stage(scheduler.take_batch("d7.test").unwrap());
        let staged = s.next_batch(&scheduler).unwrap();
        assert_eq!(staged.id, MessageId(1));
        assert_eq!(s.next_batch(&scheduler).unwrap().id, MessageId(2));
        // Empty now: the take that finds nothing deactivates it, so new work there
        // waits for the dispatcher (or `activate`), and idle domains cost nothing.
        assert!(s.next_batch(&scheduler).is_none());
        assert!(s.lock().active.is_empty());
        queue(3, "d7.test");
        assert!(s.next_batch(&scheduler).is_none());
        s.activate(&names[7]);
        s.activate(&names[7]);
        assert_eq!(s.lock().active.len(), 1, "activated once");
        assert_eq!(s.next_batch(&scheduler).unwrap().id, MessageId(3));
        // A removed domain's lingering name is skipped.
        queue(4, "d9.test");
        s.activate(&names[9]);
        s.remove_domain("d9.test");
        assert!(s.next_batch(&scheduler).is_none());
        let _ = scheduler.take_batch("d9.test").unwrap();
    }
}
