//! The dispatcher: one task that moves ready work from the scheduler to sites.
//!
//! Each pass (on a wake-up: injection, requeue, session end, route answer, or the
//! tick interval) it ticks the scheduler (retries come due; expired recipients go
//! to the results thread), then takes ready batches round-robin over domains
//! (`take_next`) and:
//!
//! - parks the batch if its domain is being routed; starts routing an unknown or
//!   stale domain in a task of its own (a slow DNS answer holds up nothing else);
//! - fails the batch (defer, or bounce for a 5xx) if the site is down;
//! - hands it back to the scheduler, unattempted, if the site already has a full
//!   stage (the domain is marked active there, so its sessions take the domain's
//!   work directly once the stage drains); when the same
//!   domain comes back in one pass every ready domain has had its turn, so the
//!   pass ends;
//! - else stages it on the site.
//!
//! Then every site with staged work gets sessions, up to its connection limit, one
//! per window's worth of staged batches beyond the idle ones.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::engine::{lock, Shared};
use super::pool;
use super::results::{Attempt, RcptResult, Settlement, Work};
use super::site::{session_options, Site};
use crate::dns::{Route, RouteError, SiteId};
use crate::egress::{Endpoint, TlsPolicy};
use crate::queue::Batch;
use crate::shaping::Refused;
use crate::smtp::reply::Reply;

/// Most batches taken per pass (then the pass ends; the next one follows at once).
const MAX_TAKES: usize = 4096;
/// Most batches parked per domain while it is routed.
const MAX_PARKED: usize = 64;
/// A route is used at least this long, whatever its TTL.
const MIN_FRESH: Duration = Duration::from_secs(1);
/// How often stale domains and unused sites are forgotten (memory stays bounded
/// by the destinations in use, not every one ever seen).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// A route answer coming back from a routing task.
type Routed = (Arc<str>, Result<Arc<Route>, RouteError>);

/// The dispatcher's own state (only its task touches it).
struct State {
    /// Sites by key.
    sites: HashMap<SiteId, Arc<Site>>,
    /// Domain -> its site and until when that is fresh.
    domains: HashMap<Arc<str>, (Arc<Site>, Instant)>,
    /// Batches of domains being routed.
    parked: HashMap<Arc<str>, Vec<Batch>>,
    /// Routing tasks.
    routing: JoinSet<()>,
    /// Where routing tasks send their answers.
    routed_tx: mpsc::UnboundedSender<Routed>,
    /// A wake-up asked for (connection rate limits).
    wake_at: Option<Instant>,
    /// When stale domains and unused sites are next forgotten.
    next_sweep: Instant,
}

/// Runs until shutdown begins.
pub(crate) async fn run(shared: Arc<Shared>) {
    let (routed_tx, mut routed_rx) = mpsc::unbounded_channel::<Routed>();
    let mut st = State {
        sites: HashMap::new(),
        domains: HashMap::new(),
        parked: HashMap::new(),
        routing: JoinSet::new(),
        routed_tx,
        wake_at: None,
        next_sweep: Instant::now() + SWEEP_EVERY,
    };
    let mut closing = shared.closing.subscribe();
    let mut ticker = tokio::time::interval(shared.tick_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake_at = st.wake_at;
        let timer = async move {
            match wake_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = closing.wait_for(|c| *c) => break,
            _ = shared.wake.notified() => {}
            _ = ticker.tick() => {}
            Some((domain, result)) = routed_rx.recv() => routed(&shared, &mut st, domain, result),
            _ = timer => st.wake_at = None,
        }
        pass(&shared, &mut st);
        while st.routing.try_join_next().is_some() {}
        {
            let mut sessions = lock(&shared.sessions);
            while sessions.try_join_next().is_some() {}
        }
        shared.passes.fetch_add(1, Ordering::AcqRel);
    }
    // Staged and parked batches stay unsettled: the spool still has them.
    st.routing.shutdown().await;
}

fn pass(shared: &Arc<Shared>, st: &mut State) {
    let tick = shared.scheduler.tick();
    if !tick.expired.is_empty() {
        shared.results(Work::Expired(tick.expired));
    }
    let now = Instant::now();
    let mut handed_back: HashSet<Arc<str>> = HashSet::new();
    for _ in 0..MAX_TAKES {
        if shared.is_closing() {
            return;
        }
        let Some(batch) = shared.scheduler.take_next() else {
            break;
        };
        let domain = batch.domain.clone();
        if let Some(parked) = st.parked.get_mut(&domain) {
            if parked.len() < MAX_PARKED {
                parked.push(batch);
            } else {
                hand_back(shared, batch);
                if !handed_back.insert(domain) {
                    break;
                }
            }
            continue;
        }
        let site = match st.domains.get(&domain) {
            Some((site, fresh)) if *fresh > now => site.clone(),
            _ => {
                start_routing(shared, st, domain, batch);
                continue;
            }
        };
        if let Some(reply) = site.dead(now.into_std()) {
            fail(shared, batch, &reply, Some(&site.id));
            continue;
        }
        if site.staged() >= site.stage_limit() {
            // Its sessions take the domain's work directly once the stage drains.
            site.activate(&domain);
            hand_back(shared, batch);
            if !handed_back.insert(domain) {
                break;
            }
            continue;
        }
        site.stage(batch);
    }
    let sites: Vec<Arc<Site>> = st.sites.values().cloned().collect();
    for site in sites {
        ensure_sessions(shared, st, &site, now);
    }
    if now >= st.next_sweep {
        st.next_sweep = now + SWEEP_EVERY;
        sweep(shared, st, now);
    }
}

/// Forgets domains whose route went stale (they are routed again when they have
/// work) and sites left with no domain, session or staged batch.
fn sweep(shared: &Shared, st: &mut State, now: Instant) {
    st.domains.retain(|domain, (site, fresh)| {
        let keep = *fresh > now;
        if !keep {
            site.remove_domain(domain);
        }
        keep
    });
    st.sites.retain(|_, site| !site.is_unused());
    let mut mirror = lock(&shared.sites);
    mirror.retain(|id, _| st.sites.contains_key(id));
}

/// Starts a routing task for `domain`, parking `batch` until it answers.
fn start_routing(shared: &Arc<Shared>, st: &mut State, domain: Arc<str>, batch: Batch) {
    st.parked.insert(domain.clone(), vec![batch]);
    let router = shared.router.clone();
    let tx = st.routed_tx.clone();
    st.routing.spawn(async move {
        let result = router.route(&domain).await;
        let _ = tx.send((domain, result));
    });
}

/// A routing answer: stage the parked batches on the domain's site, or fail them.
fn routed(
    shared: &Arc<Shared>,
    st: &mut State,
    domain: Arc<str>,
    result: Result<Arc<Route>, RouteError>,
) {
    let parked = st.parked.remove(&domain).unwrap_or_default();
    match result {
        Ok(route) => {
            let site = site_for(shared, st, &route);
            if let Some((old, _)) = st.domains.get(&domain) {
                if old.id != site.id {
                    old.remove_domain(&domain);
                }
            }
            let now = Instant::now();
            let fresh = Instant::from_std(route.expires).max(now + MIN_FRESH);
            site.add_domain(&shared.shaper, &domain, &route, fresh.into_std());
            st.domains.insert(domain, (site.clone(), fresh));
            for batch in parked {
                match site.dead(now.into_std()) {
                    Some(reply) => fail(shared, batch, &reply, Some(&site.id)),
                    None => site.stage(batch),
                }
            }
        }
        Err(e) => {
            // Permanent (NXDOMAIN, null MX, no mail host): bounce with 5.1.2 /
            // 5.1.10; transient (SERVFAIL, timeout, no address): defer.
            let reply = e.reply();
            for batch in parked {
                fail(shared, batch, &reply, None);
            }
        }
    }
}

/// The site of `route`, made on first sight.
fn site_for(shared: &Arc<Shared>, st: &mut State, route: &Arc<Route>) -> Arc<Site> {
    if let Some(site) = st.sites.get(&route.site) {
        return site.clone();
    }
    let hosts: Vec<&str> = route.hosts.iter().map(|h| &*h.name).collect();
    let shaper = shared.shaper.site(route.site.as_str(), &hosts);
    let shaped_tls = shaper.limits().tls.map(TlsPolicy::from);
    let options = session_options(&shared.session_template, route, shaped_tls);
    let site = Arc::new(Site::new(route.clone(), shaper, Arc::new(options)));
    st.sites.insert(route.site.clone(), site.clone());
    lock(&shared.sites).insert(route.site.clone(), site.clone());
    site
}

/// Opens sessions for `site`'s staged work, within its connection limit.
fn ensure_sessions(shared: &Arc<Shared>, st: &mut State, site: &Arc<Site>, now: Instant) {
    let staged = site.staged();
    if staged == 0 || shared.is_closing() {
        return;
    }
    if let Some(reply) = site.dead(now.into_std()) {
        for batch in site.drain_staged() {
            fail(shared, batch, &reply, Some(&site.id));
        }
        return;
    }
    if site.held(now.into_std()) {
        return;
    }
    let window = site.options.window.max_transactions.max(1);
    let idle = site.idle.load(Ordering::Acquire);
    let running = site.session_count();
    let limiter = site.shaper.connections();
    let needed = staged.div_ceil(window).saturating_sub(idle);
    let room = limiter.max().saturating_sub(running);
    let mut to_open = needed.min(room);
    if running == 0 && to_open == 0 && room > 0 {
        to_open = 1;
    }
    for _ in 0..to_open {
        match limiter.try_acquire() {
            Ok(permit) => {
                let guard = pool::SessionGuard::new(shared, site);
                let task = pool::run(shared.clone(), site.clone(), permit, guard);
                lock(&shared.sessions).spawn(task);
            }
            Err(Refused::AtCapacity) => break,
            Err(Refused::RateLimited(wait)) => {
                let at = now + wait;
                st.wake_at = Some(st.wake_at.map_or(at, |w| w.min(at)));
                break;
            }
        }
    }
}

/// Gives a batch back to the scheduler, unattempted (front of its queue).
fn hand_back(shared: &Shared, batch: Batch) {
    let results = vec![RcptResult::requeue(); batch.recipients.len()];
    shared.results(Work::Settle(Settlement {
        batch,
        results,
        meta: None,
        attempt: Arc::new(Attempt::default()),
        wake: false,
    }));
}

/// Fails every recipient of `batch` with `reply` (bounce if 5xx, else defer).
pub(crate) fn fail(shared: &Shared, batch: Batch, reply: &Reply, site: Option<&SiteId>) {
    fail_at(shared, batch, reply, site, None);
}

/// [`fail`], naming the MX that gave `reply` in the log when one answered.
pub(crate) fn fail_at(
    shared: &Shared,
    batch: Batch,
    reply: &Reply,
    site: Option<&SiteId>,
    mx: Option<&Endpoint>,
) {
    let results = vec![RcptResult::failed(reply); batch.recipients.len()];
    shared.results(Work::Settle(Settlement {
        batch,
        results,
        meta: None,
        attempt: Arc::new(Attempt {
            site: site.cloned(),
            mx_host: mx.map(|e| e.host.clone()),
            mx_ip: mx.map(|e| e.addr.ip()),
            ..Attempt::default()
        }),
        wake: false,
    }));
}
