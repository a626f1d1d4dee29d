//! [`Engine::start`] and the [`EngineHandle`] it returns: the public face of the
//! delivery engine (see the module docs of [`crate::delivery`] for the contract).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle as ThreadHandle;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::log::LogHandle;
use super::prepare::MessageCache;
use super::results::{self, ResultsCtx, ResultsTx};
use super::site::Site;
use super::stats::{bump, get, Counters, EngineStats};
use crate::config::Config;
use crate::dns::{Router, RouterSetupError, SiteId};
use crate::egress::{PipelineWindow, SessionOptions, TlsConfigError, TlsContext, TlsMemory};
use crate::model::{
    CampaignId, DsnRequest, Envelope, IdGenerator, MessageId, MessageMeta, PendingMessage,
    Recipient, TenantId, Timestamp,
};
use crate::queue::{Clock, Scheduler, SchedulerConfig};
use crate::shaping::{Shaper, TokioClock};
use crate::smtp::command::BodyType;
use crate::spool::{Body, NewMessage, Spool, SpoolError};

/// Knobs that are not part of the configuration file (tests and embedders).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineOptions {
    /// TLS client configurations; `None` builds them from `delivery.ca_file` (or the
    /// bundled web PKI roots). Default: `None`.
    pub tls: Option<Arc<TlsContext>>,
    /// How often the dispatcher ticks the scheduler when nothing else wakes it
    /// (retries coming due, expiry). Default: 250 ms.
    pub tick_interval: Duration,
    /// How long [`EngineHandle::shutdown`] lets sessions finish before cutting
    /// them off. Default: 30 s.
    pub shutdown_grace: Duration,
    /// Body bytes cached for sending. Default: 256 MiB.
    pub body_cache_bytes: usize,
    /// Back-to-back transaction bounds of every session. Default:
    /// [`PipelineWindow::default`] (8 transactions).
    pub window: PipelineWindow,
    /// Seed of the retry jitter (fixed in tests). Default: random.
    pub jitter_seed: Option<u64>,
    /// How often completion records older than `[spool] status_retention` are
    /// pruned (also once at start). Default: 10 minutes.
    pub status_prune_interval: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            tls: None,
            tick_interval: Duration::from_millis(250),
            shutdown_grace: Duration::from_secs(30),
            body_cache_bytes: 256 << 20,
            window: PipelineWindow::default(),
            jitter_seed: None,
            status_prune_interval: Duration::from_secs(600),
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The `[dns]` section or a route override is unusable.
    #[error("routing: {0}")]
    Router(#[from] RouterSetupError),
    /// `delivery.ca_file` could not be loaded.
    #[error("delivery.ca_file: {0}")]
    Tls(#[from] TlsConfigError),
    /// The spool could not be scanned.
    #[error("recovering the spool: {0}")]
    Recover(SpoolError),
    /// The delivery log could not be opened.
    #[error("log.delivery: cannot open {path}: {source}")]
    Log {
        /// The configured path.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A worker thread could not be started.
    #[error("starting a worker thread: {0}")]
    Thread(std::io::Error),
}

/// [`EngineHandle::wait_idle`] or [`EngineHandle::wait_until`] ran out of time;
/// carries the last stats seen.
#[derive(Debug, Clone, Copy, Error)]
#[error("timed out waiting for the engine: {0:?}")]
pub struct WaitTimeout(pub EngineStats);

/// A message to inject: the envelope and the raw body, nothing else to fill in.
/// The engine assigns the id, the creation time and the expiry.
#[derive(Debug, Clone)]
pub struct Injection {
    /// The envelope sender (`local@domain`), empty for the null reverse-path `<>`.
    pub reverse_path: String,
    /// Recipient addresses (`local@domain`).
    pub recipients: Vec<String>,
    /// The RFC 5322 message with CRLF line endings, exactly as it will be sent.
    pub body: Body,
    /// The campaign, for suspend/resume/purge.
    pub campaign: Option<CampaignId>,
    /// The owner, for shaping and accounting.
    pub tenant: Option<TenantId>,
    /// Key/value metadata kept with the message.
    pub tags: Vec<(String, String)>,
}

impl Injection {
    /// A message from `from` to `recipients` with `body`.
    pub fn new<I, S>(from: impl Into<String>, recipients: I, body: impl Into<Vec<u8>>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Injection {
            reverse_path: from.into(),
            recipients: recipients.into_iter().map(Into::into).collect(),
            body: Arc::from(body.into()),
            campaign: None,
            tenant: None,
            tags: Vec::new(),
        }
    }

    /// The meta record for this message. `SMTPUTF8` is requested when an address
    /// has a non-ASCII local part, `BODY=8BITMIME` when the body has 8-bit bytes.
    pub fn into_message(
        self,
        id: MessageId,
        created: Timestamp,
        expires: Timestamp,
    ) -> Result<NewMessage, SpoolError> {
        let recipients = self
            .recipients
            .into_iter()
            .map(Recipient::new)
            .collect::<Result<Vec<_>, _>>()?;
        let non_ascii_local =
            |a: &str| !a.rsplit_once('@').map_or(a, |(local, _)| local).is_ascii();
        let smtputf8 = non_ascii_local(&self.reverse_path)
            || recipients.iter().any(|r| non_ascii_local(&r.address));
        let body_type = (!self.body.is_ascii()).then_some(BodyType::EightBitMime);
        let meta = MessageMeta {
            id,
            tenant: self.tenant,
            campaign: self.campaign,
            created,
            expires,
            envelope: Envelope {
                reverse_path: self.reverse_path,
                recipients,
                body_type,
                smtputf8,
                dsn: DsnRequest::default(),
            },
            body_len: self.body.len() as u64,
            tags: self.tags,
        };
        meta.validate()?;
        Ok(NewMessage {
            meta,
            body: self.body,
        })
    }
}

/// State shared by the handle, the dispatcher, the sessions and the results thread.
pub(crate) struct Shared {
    /// The queues.
    pub scheduler: Arc<Scheduler>,
    /// Durable storage.
    pub spool: Arc<dyn Spool>,
    /// Wall-clock time for the scheduler and the log.
    pub clock: Arc<dyn Clock>,
    /// Domain -> route, cached.
    pub router: Router,
    /// Limits and rate limiters.
    pub shaper: Arc<Shaper>,
    /// Prepared messages (meta, body, stuffing points).
    pub cache: Arc<MessageCache>,
    /// Ids for injected messages.
    pub ids: IdGenerator,
    /// `delivery.smtp_port`.
    pub smtp_port: u16,
    /// Session options every site starts from.
    pub session_template: SessionOptions,
    /// How long a site whose every MX failed to connect is left alone.
    pub dead_period: Duration,
    /// Dispatcher tick when nothing else happens.
    pub tick_interval: Duration,
    /// Wakes the dispatcher.
    pub wake: Arc<Notify>,
    /// Becomes true at shutdown.
    pub closing: watch::Sender<bool>,
    /// Results channel; taken at shutdown so the thread can end.
    pub results: Mutex<Option<ResultsTx>>,
    /// Delivery log; taken at shutdown so the writer can end.
    pub log: Mutex<Option<LogHandle>>,
    /// Counters.
    pub counters: Arc<Counters>,
    /// Session tasks.
    pub sessions: Mutex<JoinSet<()>>,
    /// The dispatcher's sites, mirrored for the queue listing (open sessions).
    pub sites: Mutex<HashMap<SiteId, Arc<Site>>>,
    /// Dispatcher passes completed (for `wait_idle`).
    pub passes: AtomicU64,
    /// Background tasks and threads, taken by shutdown.
    tasks: Mutex<Option<Tasks>>,
    /// Shutdown's grace period.
    grace: Duration,
}

struct Tasks {
    dispatcher: JoinHandle<()>,
    results: ThreadHandle<()>,
    log: Option<ThreadHandle<()>>,
}

/// Locks ignoring poisoning (every critical section leaves its data valid).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Hands work to the results thread (dropped after shutdown: the spool keeps
    /// the previous state).
    pub fn results(&self, work: results::Work) {
        let tx = lock(&self.results).clone();
        if let Some(tx) = tx {
            tx.send(work);
        }
    }

    /// Whether shutdown has begun.
    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }
}

/// Makes never-tried recipients due at once. The scheduler keeps due times in
/// whole seconds rounded up, so "due at creation" (what [`MessageMeta::pending`]
/// and recovery say) would hold a fresh message back until the next second.
fn due_now(pending: &mut PendingMessage<'_>) {
    for r in &mut pending.recipients {
        if r.attempts == 0 {
            r.due = Timestamp::ZERO;
        }
    }
}

/// The delivery engine's constructor.
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// Starts the engine with default [`EngineOptions`]; see [`Engine::start_with`].
    pub async fn start(
        config: &Config,
        spool: Arc<dyn Spool>,
        clock: Arc<dyn Clock>,
    ) -> Result<EngineHandle, StartError> {
        Engine::start_with(config, spool, clock, EngineOptions::default()).await
    }

    /// Builds router, shaper and scheduler from `config`, queues everything the
    /// spool recovers, opens the delivery log, and starts the dispatcher and the
    /// results thread. Must run inside a tokio runtime.
    pub async fn start_with(
        config: &Config,
        spool: Arc<dyn Spool>,
        clock: Arc<dyn Clock>,
        options: EngineOptions,
    ) -> Result<EngineHandle, StartError> {
        let d = &config.delivery;
        let router = Router::new(&config.dns, d.route.clone())?;
        let tls = match (&options.tls, &d.ca_file) {
            (Some(t), _) => t.clone(),
            (None, Some(path)) => Arc::new(TlsContext::with_ca_file(path)?),
            (None, None) => Arc::new(TlsContext::webpki()),
        };
        let session_template = SessionOptions {
            ehlo_name: config.ehlo_name(),
            tls_policy: d.tls.into(),
            tls,
            tls_memory: Arc::new(TlsMemory::default()),
            timeouts: d.timeouts.to_egress(),
            window: options.window,
            plan: Default::default(),
            // Per smarthost: set by the dispatcher when it makes the site.
            auth: None,
            // `delivery.send_path`; probes io_uring (once, here) unless "vectored".
            send_path: d.send_path(),
        };
        let scheduler = Arc::new(Scheduler::new(
            SchedulerConfig {
                max_batch_recipients: config.shaping.default.max_recipients_per_transaction.max(1)
                    as usize,
                retry: d.retry_policy(),
                message_lifetime: d.message_lifetime,
                jitter_seed: options.jitter_seed,
                ..SchedulerConfig::default()
            },
            clock.clone(),
        ));
        let counters = Arc::new(Counters::default());
        let recovered = {
            let (spool, scheduler) = (spool.clone(), scheduler.clone());
            tokio::task::spawn_blocking(move || {
                spool.recover(&mut |mut pending| {
                    due_now(&mut pending);
                    scheduler.enqueue(&pending);
                })
            })
            .await
            .map_err(|e| StartError::Recover(SpoolError::Read(e.to_string())))?
            .map_err(StartError::Recover)?
        };
        bump(&counters.recovered, recovered.messages);
        let (log, log_thread) = match &config.log.delivery {
            Some(path) => {
                let (h, t) = LogHandle::open(path).map_err(|source| StartError::Log {
                    path: path.clone(),
                    source,
                })?;
                (h, Some(t))
            }
            None => (LogHandle::disabled(), None),
        };
        let cache = Arc::new(MessageCache::new(options.body_cache_bytes));
        let wake = Arc::new(Notify::new());
        let (results_tx, results_thread) = results::start(ResultsCtx {
            scheduler: scheduler.clone(),
            spool: spool.clone(),
            cache: cache.clone(),
            clock: clock.clone(),
            log: log.clone(),
            counters: counters.clone(),
            wake: wake.clone(),
            status_retention: config.spool.status_retention,
            prune_every: options.status_prune_interval,
        })
        .map_err(StartError::Thread)?;
        let first_retry = d
            .retry_schedule
            .first()
            .copied()
            .unwrap_or(Duration::from_secs(60));
        let shared = Arc::new(Shared {
            scheduler,
            spool,
            clock,
            router,
            shaper: Arc::new(Shaper::new(&config.shaping, Arc::new(TokioClock::new()))),
            cache,
            ids: IdGenerator::new(),
            smtp_port: d.smtp_port,
            session_template,
            dead_period: first_retry.min(Duration::from_secs(60)),
            tick_interval: options.tick_interval,
            wake,
            closing: watch::channel(false).0,
            results: Mutex::new(Some(results_tx)),
            log: Mutex::new(Some(log)),
            counters,
            sessions: Mutex::new(JoinSet::new()),
            sites: Mutex::new(HashMap::new()),
            passes: AtomicU64::new(0),
            tasks: Mutex::new(None),
            grace: options.shutdown_grace,
        });
        let dispatcher = tokio::spawn(super::dispatcher::run(shared.clone()));
        *lock(&shared.tasks) = Some(Tasks {
            dispatcher,
            results: results_thread,
            log: log_thread,
        });
        shared.wake.notify_one();
        Ok(EngineHandle { shared })
    }
}

/// A running engine. Clones share it; see the module docs for the contract.
#[derive(Clone)]
pub struct EngineHandle {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl EngineHandle {
    /// Stores the message durably, then queues it; returns its id. Errors: an
    /// address without a domain or no recipients ([`SpoolError::Invalid`]), spool
    /// backpressure or failure, [`SpoolError::Closed`] after shutdown began.
    pub async fn inject(&self, msg: Injection) -> Result<MessageId, SpoolError> {
        let now = self.shared.clock.now();
        let id = self.shared.ids.generate(now);
        let expires = self.shared.scheduler.expiry_for(now);
        self.inject_message(msg.into_message(id, now, expires)?)
            .await
    }

    /// A fresh message id with its creation time and expiry (creation + message
    /// lifetime), for ingest building its own meta record (DSN parameters,
    /// tenant, campaign) before [`EngineHandle::inject_message`].
    pub fn new_message_id(&self) -> (MessageId, Timestamp, Timestamp) {
        let now = self.shared.clock.now();
        let id = self.shared.ids.generate(now);
        (id, now, self.shared.scheduler.expiry_for(now))
    }

    /// Stores and queues a message whose meta the caller built (id, times,
    /// envelope): ingest's path. The id must be new.
    pub async fn inject_message(&self, msg: NewMessage) -> Result<MessageId, SpoolError> {
        if self.shared.is_closing() {
            return Err(SpoolError::Closed);
        }
        msg.meta.validate()?;
        let meta = Arc::new(msg.meta.clone());
        let body = msg.body.clone();
        self.shared.spool.store(msg).await?;
        // Before the enqueue, so the first take finds it: delivery sends the
        // buffer ingest stored, never reading it back.
        self.shared.cache.prime(meta.clone(), body);
        let mut pending = meta.pending();
        due_now(&mut pending);
        self.shared.scheduler.enqueue(&pending);
        bump(&self.shared.counters.injected, 1);
        self.shared.wake.notify_one();
        Ok(meta.id)
    }

    /// A snapshot of the queues and counters.
    pub fn stats(&self) -> EngineStats {
        let q = self.shared.scheduler.stats();
        let c = &self.shared.counters;
        EngineStats {
            queued: (q.ready + q.deferred + q.held) as u64,
            ready: q.ready as u64,
            waiting_retry: q.deferred as u64,
            in_flight: q.in_flight as u64,
            messages: q.messages as u64,
            sessions: get(&c.sessions),
            delivered: get(&c.delivered),
            deferred: get(&c.deferred),
            bounced: get(&c.bounced),
            expired: get(&c.expired),
            purged: get(&c.purged),
            requeued: get(&c.requeued),
            connections: get(&c.connections),
            injected: get(&c.injected),
            recovered: get(&c.recovered),
        }
    }

    fn idle_now(&self) -> bool {
        let q = self.shared.scheduler.stats();
        // Ready recipients of suspended domains wait for an operator, like held ones.
        q.ready == q.suspended && q.in_flight == 0 && !results::busy(&self.shared.counters)
    }

    /// Waits until nothing is ready, taken or being settled (recipients waiting for
    /// a retry, held by a suspended campaign or queued for a suspended domain do
    /// not count), then flushes the delivery log. Polls every few ms: for
    /// tests and tools, not hot paths.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<EngineStats, WaitTimeout> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.idle_now() {
                // One more dispatcher pass (it ticks the scheduler: expiries found
                // while taking are reported there), and its results written.
                let pass = self.shared.passes.load(Ordering::Acquire);
                self.shared.wake.notify_one();
                while self.shared.passes.load(Ordering::Acquire) == pass
                    && Instant::now() < deadline
                    && !self.shared.is_closing()
                {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                while results::busy(&self.shared.counters) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                if self.idle_now() {
                    self.flush_log().await;
                    return Ok(self.stats());
                }
            }
            if Instant::now() >= deadline {
                return Err(WaitTimeout(self.stats()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `done(stats)` holds (polling every few ms), then flushes the log.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&EngineStats) -> bool,
    ) -> Result<EngineStats, WaitTimeout> {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if done(&stats) {
                self.flush_log().await;
                return Ok(self.stats());
            }
            if Instant::now() >= deadline {
                return Err(WaitTimeout(stats));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Flushes the delivery log (everything logged so far is on disk after this;
    /// results still being written are not).
    pub async fn flush_log(&self) {
        let log = lock(&self.shared.log).clone();
        if let Some(log) = log {
            log.flush().await;
        }
    }

    /// The scheduler, for metrics and tools. Operator controls go through the
    /// handle ([`EngineHandle::purge_domain`] and the rest, in [`super::admin`]):
    /// a purge straight on the scheduler leaves the purged recipients in the spool.
    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.shared.scheduler
    }

    /// Graceful stop: no new work is taken or accepted, sessions finish what they
    /// sent within the grace period (then are cut off; their recipients stay
    /// unsettled in the spool and go again after a restart), QUIT, the last results
    /// are written and the log flushed. Returns the final stats. Idempotent.
    pub async fn shutdown(&self) -> EngineStats {
        // `send_replace`, not `send`: `send` drops the value when no receiver
        // exists yet, and the dispatcher may not have subscribed when shutdown
        // comes right after start (it then never saw the flag and ran forever).
        self.shared.closing.send_replace(true);
        let tasks = lock(&self.shared.tasks).take();
        let Some(tasks) = tasks else {
            return self.stats();
        };
        self.shared.wake.notify_one();
        let _ = tasks.dispatcher.await;
        let mut sessions = std::mem::take(&mut *lock(&self.shared.sessions));
        let drained = tokio::time::timeout(self.shared.grace, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            sessions.shutdown().await;
        }
        // The results thread ends once every sender is gone (the sessions' went
        // with them); the log writer once the results thread dropped its handle.
        drop(lock(&self.shared.results).take());
        let _ = tokio::task::spawn_blocking(move || tasks.results.join()).await;
        drop(lock(&self.shared.log).take());
        if let Some(log) = tasks.log {
            let _ = tokio::task::spawn_blocking(move || log.join()).await;
        }
        self.stats()
    }
}
