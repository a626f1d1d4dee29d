//! The HTTP API (axum on hyper): message injection (KumoMTA-shaped), streamed
//! campaigns, message and campaign status, queue controls, `/health`. Documented
//! endpoint by endpoint in `docs/openapi.yaml` (a test checks that the document
//! and [`routes::ROUTES`] list the same routes).
//!
//! ```ignore
//! let server = HttpServer::start(&config, engine.clone(), health.clone()).await?;
//! println!("HTTP API on {}", server.local_addr());
//! server.shutdown().await;   // stop accepting, let requests finish (bounded)
//! ```
//!
//! - [`routes`]: the route table and the router built from it.
//! - [`auth`]: bearer tokens (SHA-256 hashes in `[[tenant]] api_tokens`), tenant
//!   namespaces for campaign ids.
//! - [`error`]: the JSON error answer (`code`, `message`) and rejection mapping.
//! - [`body`]: content types, the body limit, JSON decoding.
//! - [`inject`]: `POST /api/v1/messages` (and KumoMTA's `/api/inject/v1`).
//! - [`campaign`]: `POST /api/v1/campaigns`, NDJSON streamed with bounded memory;
//!   [`lines`] splits the stream, [`progress`] shows it while it runs.
//! - [`store`]: composed message -> injection, with retry on a busy spool.
//! - [`status`]: status, suspend / resume / purge, the queue listing, `/health`.
//!
//! Every acknowledgement (202) comes after the spool's WAL sync of each message it
//! reports accepted.

pub mod auth;
pub mod body;
pub mod campaign;
pub mod error;
pub mod inject;
pub mod lines;
pub mod progress;
pub mod routes;
pub mod serve;
pub mod status;
pub mod store;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::delivery::EngineHandle;
use crate::ingest::compose::ComposeLimits;
use crate::ingest::{Health, ListenerError};

pub use error::ApiError;
pub use routes::{Access, Endpoint, Route, ROUTES};

/// How long [`HttpServer::shutdown`] lets in-flight requests run before it
/// cuts them off.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// The shared part.
    inner: Arc<Inner>,
}

/// The state behind [`ApiState`].
struct Inner {
    /// Where messages go and status comes from.
    engine: EngineHandle,
    /// Whether every listener is up (`/health`).
    health: Health,
    /// Bearer token hashes -> tenants.
    tokens: auth::Tokens,
    /// `http.max_recipients`, `smtp.max_message_size`, `smtp.hostname`.
    limits: ComposeLimits,
    /// `http.max_body`.
    max_body: u64,
    /// `http.campaign_message_recipients`.
    campaign_message_recipients: usize,
    /// Campaign streams' progress.
    progress: progress::ProgressTable,
    /// How long `/messages` retries a busy spool.
    request_retry: store::Retry,
    /// How long a campaign stream retries a busy spool.
    stream_retry: store::Retry,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("limits", &self.inner.limits)
            .field("max_body", &self.inner.max_body)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// The state for `config`'s `[http]`, `[smtp]` limits and `[[tenant]]`s.
    pub fn new(config: &Config, engine: EngineHandle, health: Health) -> ApiState {
        ApiState::with_retry(
            config,
            engine,
            health,
            store::Retry::REQUEST,
            store::Retry::STREAM,
        )
    }

    /// [`ApiState::new`] with other retry budgets for a busy spool (tests use
    /// short ones).
    pub fn with_retry(
        config: &Config,
        engine: EngineHandle,
        health: Health,
        request_retry: store::Retry,
        stream_retry: store::Retry,
    ) -> ApiState {
        let limits = ComposeLimits {
            max_recipients: config.http.max_recipients,
            max_message_size: usize::try_from(config.smtp.max_message_size.0).unwrap_or(usize::MAX),
            hostname: config.smtp.hostname(),
        };
        ApiState {
            inner: Arc::new(Inner {
                engine,
                health,
                tokens: auth::Tokens::new(&config.tenant),
                limits,
                max_body: config.http.max_body.0,
                campaign_message_recipients: config.http.campaign_message_recipients,
                progress: progress::ProgressTable::default(),
                request_retry,
                stream_retry,
            }),
        }
    }
}

/// The axum Router, for in-process tests.
pub fn router(state: ApiState) -> axum::Router {
    routes::build(state)
}

/// A running HTTP API listener.
#[derive(Debug)]
pub struct HttpServer {
    /// The bound address (the real port when `http.listen` asked for port 0).
    addr: SocketAddr,
    /// Tells the server to stop accepting and drain.
    stop: oneshot::Sender<()>,
    /// The serving task.
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `config.http.listen` (port 0 = any) and serves on the current tokio runtime.
    pub async fn start(
        config: &Config,
        engine: EngineHandle,
        health: Health,
    ) -> Result<HttpServer, ListenerError> {
        let want = config.http.listen;
        let bind_error = |source| ListenerError::Bind {
            key: "http.listen".into(),
            addr: want,
            source,
        };
        let listener = tokio::net::TcpListener::bind(want)
            .await
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let app = router(ApiState::new(config, engine, health));
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = serve::ServeLimits {
            max_connections: config.http.max_connections,
            header_timeout: config.http.header_timeout,
            grace: SHUTDOWN_GRACE.saturating_sub(Duration::from_secs(1)),
        };
        let task = tokio::spawn(serve::run(listener, app, limits, stopped));
        Ok(HttpServer { addr, stop, task })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Graceful: stop accepting, let in-flight requests finish (bounded wait).
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }
}
