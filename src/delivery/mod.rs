//! The delivery engine: from the scheduler's queues, through routing and per-site
//! connection pools, to results in the spool and the delivery log (DESIGN.md steps
//! 3 to 8, wired together).
//!
//! # API (stable: the end-to-end tests in `loadtest/tests/it/` use exactly this)
//!
//! ```ignore
//! use volley::delivery::{Engine, EngineHandle, Injection};
//! let config = volley::config::Config::from_toml_str(toml)?;      // [dns], [delivery], [shaping], [log]
//! let spool: Arc<dyn Spool> = Arc::new(MemorySpool::default());  // or RocksSpool::open(..)
//! let engine: EngineHandle =
//!     Engine::start(&config, spool, Arc::new(SystemClock)).await?; // recovers the spool first
//! let id = engine.inject(Injection::new("from@a.test", ["x@b.test"], body)).await?; // durable, then queued
//! engine.wait_idle(Duration::from_secs(10)).await?;               // nothing ready or in flight; log flushed
//! let stats = engine.stats();                                     // stats.delivered, .deferred, .bounced ...
//! engine.shutdown().await;                                        // graceful; QUITs sessions, flushes the log
//! ```
//!
//! - [`Engine::start`]`(&Config, Arc<dyn Spool>, Arc<dyn queue::Clock>) -> Result<EngineHandle, StartError>`
//!   (async, inside a tokio runtime): builds the router, shaper and scheduler from the
//!   config, queues every unfinished recipient the spool recovers, opens the delivery
//!   log and starts the dispatcher. [`Engine::start_with`] takes [`EngineOptions`]
//!   too (TLS roots, tick interval, shutdown grace, cache size).
//! - [`EngineHandle`] is cheap to clone; every method takes `&self`.
//!   - [`EngineHandle::inject`]`(Injection) -> Result<MessageId, SpoolError>`: stores
//!     the message durably, then queues it. [`EngineHandle::inject_message`] takes a
//!     ready [`NewMessage`](crate::spool::NewMessage) (ingest's path).
//!   - [`EngineHandle::stats`]`() -> EngineStats`: gauges (`queued`, `ready`,
//!     `in_flight`, `waiting_retry`, `messages`, `sessions`) and cumulative
//!     per-recipient event counters (`delivered`, `deferred`, `bounced`, `expired`,
//!     `purged`),
//!     plus `connections` opened.
//!   - [`EngineHandle::wait_idle`]`(timeout) -> Result<EngineStats, WaitTimeout>`:
//!     resolves once no recipient is ready, taken or being settled (recipients waiting
//!     for a retry or held by a suspension do not count) and the delivery log is
//!     flushed.
//!     [`EngineHandle::wait_until`] waits for any condition on the stats.
//!   - [`EngineHandle::shutdown`]`() -> EngineStats`: stops taking work, lets
//!     sessions finish what they sent (up to the grace period; unsettled recipients
//!     stay in the spool and go again after a restart), QUITs them, writes the last
//!     results and flushes the log. Idempotent (a second call returns at once).
//!     `inject` answers [`SpoolError::Closed`](crate::spool::SpoolError::Closed) once
//!     shutdown began.
//!   - Status and operator controls ([`admin`]; the HTTP API's message, campaign
//!     and queue endpoints; every type is `serde::Serialize` with the JSON names):
//!     - [`EngineHandle::message_status`]`(MessageId) -> Result<Option<MessageStatus>, SpoolError>`
//!       (async): tenant, campaign, created/expires (RFC 3339 like the log),
//!       `state` (`queued` while any recipient is unfinished, else `completed`),
//!       [`StateCounts`] and one [`RecipientView`] per recipient (`queued`,
//!       `deferred`, `in_flight`, `delivered`, `bounced`, `expired`, `purged`).
//!       Works while queued (spool records + scheduler) and after removal (the
//!       completion record, kept `[spool] status_retention` from creation); `None`
//!       for an unknown or aged-out id.
//!     - [`EngineHandle::campaign_status`]`(&CampaignId) -> Result<Option<CampaignStatus>, SpoolError>`
//!       (async): persisted counters (messages and recipients injected; delivered,
//!       bounced, expired, purged: they survive restarts) plus the scheduler's
//!       live queued/deferred/in-flight and suspension; `None` if unknown.
//!     - [`EngineHandle::queue_listing`]`(prefix, limit) -> QueueListing`: domains
//!       largest first with ready/deferred/held/in-flight, suspension and cached
//!       site; per-site totals and open sessions.
//!     - [`EngineHandle::suspend_domain`] / [`EngineHandle::resume_domain`]` -> bool`,
//!       [`EngineHandle::suspend_campaign`] / [`EngineHandle::resume_campaign`]` -> usize`
//!       (held recipients released): in memory, a restart resumes everything.
//!     - [`EngineHandle::purge_domain`]`(&str)` / [`EngineHandle::purge_campaign`]`(&CampaignId)
//!       -> Result<PurgeSummary, SpoolError>` (async): queued recipients leave the
//!       scheduler and are written `Purged` in the spool (messages left with
//!       nothing unfinished are removed, keeping a completion record), counted in
//!       campaign counters and logged (`purged` events); in-flight recipients settle
//!       normally. Returns once written; [`SpoolError::Closed`](crate::spool::SpoolError::Closed)
//!       after shutdown began. A restart does not bring purged recipients back.
//!   - Also: [`EngineHandle::flush_log`], and [`EngineHandle::scheduler`] for
//!     metrics (its own purge would leave the spool untouched: use the handle's).
//!
//! Every outcome is also one line of the delivery log (`[log] delivery`); the
//! fields are listed in [`log`].
//!
//! # Data flow
//!
//! ```text
//! inject ─> spool.store (durable) ─> Scheduler.enqueue ─┐
//!                                                       v
//! dispatcher (one task): tick() ─ expired ──────────────────────────> results
//!   take_next() ─> route domain (Router; unknown domains park while a task resolves)
//!     ├─ route error: permanent ─> bounce, transient ─> defer ──────> results
//!     └─ site (routes with equal MX sets share one) ─> staged batches
//!                                                       v
//! site pool: up to max_connections sessions; each takes staged batches or takes
//!   directly from the site's domains, loads meta + body (MessageCache), waits for
//!   the rate limits, sends several jobs per `send` (back-to-back with CHUNKING) ──> results
//! results (one thread): Scheduler.settle, spool.update_counted in batches (states +
//!   campaign counter deltas), spool.remove of finished messages (+ completion
//!   record), operator purges, pruning of old completion records, counters,
//!   delivery-log events ──> log writer (one thread)
//! ```
//!
//! - [`engine`]: [`Engine`], [`EngineHandle`], [`Injection`], [`EngineOptions`].
//! - [`admin`]: message/campaign status, queue listing, suspend/resume/purge.
//! - [`dispatcher`]: the loop that ticks the scheduler, routes domains, stages batches
//!   on sites and opens sessions.
//! - [`site`]: one site's staged work, domains, sessions and "dead" state.
//! - [`pool`]: one session's life: connect, take, send, hand over results.
//! - [`prepare`]: meta and bodies (with dot-stuffing points) cached per message, and
//!   jobs built from batches.
//! - [`results`]: outcomes to scheduler decisions, spool updates and log events.
//! - [`log`]: the JSON-lines delivery log writer.
//! - [`stats`]: counters and [`EngineStats`].

pub mod admin;
pub mod dispatcher;
pub mod engine;
pub mod log;
pub mod pool;
pub mod prepare;
pub mod results;
pub mod site;
pub mod stats;

#[cfg(test)]
mod tests;

pub use admin::{
    CampaignStatus, DomainQueue, MessageStatus, PurgeSummary, QueueListing, RecipientView,
    SiteQueue, StateCounts,
};
pub use engine::{Engine, EngineHandle, EngineOptions, Injection, StartError, WaitTimeout};
pub use log::{EventKind, LogEvent};
pub use stats::EngineStats;
