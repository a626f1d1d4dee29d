//! The whole transmitter in one call: the spool, the delivery engine, the HTTP API
//! and the SMTP listeners, started in that order and stopped in the reverse one.
//! Used by `volley serve` and `volley demo`.
//!
//! ```ignore
//! let server = volley::server::Server::start(config).await?; // every listener is up
//! let http = server.http_addr();                             // port 0 resolved
//! let stats = server.shutdown().await;                       // listeners, engine, spool
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::config::Config;
use crate::delivery::{Engine, EngineHandle, EngineStats, StartError};
use crate::ingest::http::HttpServer;
use crate::ingest::smtp::{ListenerKind, SmtpListener};
use crate::ingest::{Health, ListenerError};
use crate::queue::SystemClock;
use crate::spool::{RocksSpool, Spool, SpoolError};

/// Why the transmitter could not start. [`ServerError::exit_code`] says whether
/// the configuration is at fault (2) or the machine (1).
#[derive(Debug, Error)]
pub enum ServerError {
    /// The spool could not be opened (permissions, disk, another process holds it).
    #[error("spool.path: cannot open {}: {source}", path.display())]
    Spool {
        /// The configured directory.
        path: PathBuf,
        /// Why.
        source: SpoolError,
    },
    /// The delivery engine could not start.
    #[error("{0}")]
    Engine(#[from] StartError),
    /// A listener could not start; the message names its key.
    #[error("{0}")]
    Listener(#[from] ListenerError),
}

impl ServerError {
    /// Whether the configuration is at fault (fix the file) rather than the
    /// machine or the moment (retry, look at the system).
    pub fn is_config(&self) -> bool {
        match self {
            ServerError::Spool { .. } => false,
            ServerError::Engine(e) => match e {
                StartError::Router(_) | StartError::Tls(_) => true,
                StartError::Recover(_) | StartError::Log { .. } | StartError::Thread(_) => false,
            },
            ServerError::Listener(_) => true,
        }
    }

    /// The process exit code: 2 for configuration (or a listen address that
    /// cannot be used), 1 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        if self.is_config() {
            2
        } else {
            1
        }
    }
}

/// How long a start that failed half-way waits for what it started to stop.
const FAILED_START_GRACE: Duration = Duration::from_secs(10);

/// Binds each configured listen address once and lets it go, so an address that
/// cannot be used (taken, not local, privileged) is reported, naming its key,
/// before the spool is opened.
fn check_listen_addresses(config: &Config) -> Result<(), ListenerError> {
    let mut addrs = vec![("http.listen", config.http.listen)];
    if let Some(s) = &config.smtp.submission {
        addrs.push(("smtp.submission.listen", s.listen));
    }
    if let Some(r) = &config.smtp.relay {
        addrs.push(("smtp.relay.listen", r.listen));
    }
    for (key, addr) in addrs {
        std::net::TcpListener::bind(addr).map_err(|source| ListenerError::Bind {
            key: key.to_string(),
            addr,
            source,
        })?;
    }
    Ok(())
}

/// Starts the transmitter: see [`Server::start`].
pub struct Server;

/// A running transmitter. Stop it with [`ServerHandle::shutdown`]: dropping it
/// skips the graceful stop (listener tasks end with their runtime; the spool's
/// at-least-once recovery covers what was in flight).
pub struct ServerHandle {
    /// The delivery engine (inject, stats, wait_idle).
    engine: EngineHandle,
    /// The spool, closed and synced last.
    spool: Arc<RocksSpool>,
    /// `GET /health`'s flag: cleared first at shutdown.
    health: Health,
    /// The HTTP API.
    http: Option<HttpServer>,
    /// The submission listener, when configured.
    submission: Option<SmtpListener>,
    /// The relay listener, when configured.
    relay: Option<SmtpListener>,
    /// Bound addresses, kept so they can be read after the listeners are taken.
    http_addr: SocketAddr,
    submission_addr: Option<SocketAddr>,
    relay_addr: Option<SocketAddr>,
}

impl Server {
    /// Opens the RocksDB spool at `spool.path`, starts the engine (which recovers
    /// the spool), the HTTP API and each configured SMTP listener, then marks the
    /// server healthy. On failure, whatever had started is stopped again.
    pub async fn start(config: Config) -> Result<ServerHandle, ServerError> {
        check_listen_addresses(&config)?;
        let spool = RocksSpool::open(&config.spool.path, config.spool.options())
            .map(Arc::new)
            .map_err(|source| ServerError::Spool {
                path: config.spool.path.clone(),
                source,
            })?;
        let dyn_spool: Arc<dyn Spool> = spool.clone();
        let engine = match Engine::start(&config, dyn_spool, Arc::new(SystemClock)).await {
            Ok(e) => e,
            Err(e) => {
                close_spool(&spool);
                return Err(e.into());
            }
        };
        let health = Health::new();
        let mut handle = ServerHandle {
            engine: engine.clone(),
            spool,
            health: health.clone(),
            http: None,
            submission: None,
            relay: None,
            http_addr: config.http.listen,
            submission_addr: None,
            relay_addr: None,
        };
        if let Err(e) = handle.start_listeners(&config).await {
            // Bounded: the error matters more than a tidy stop of an engine that
            // never took work.
            let _ = tokio::time::timeout(FAILED_START_GRACE, handle.shutdown()).await;
            return Err(e.into());
        }
        health.set(true);
        Ok(handle)
    }
}

impl ServerHandle {
    /// The HTTP API, then submission, then relay.
    async fn start_listeners(&mut self, config: &Config) -> Result<(), ListenerError> {
        let http = HttpServer::start(config, self.engine.clone(), self.health.clone()).await?;
        self.http_addr = http.local_addr();
        self.http = Some(http);
        if config.smtp.submission.is_some() {
            let l =
                SmtpListener::start(ListenerKind::Submission, config, self.engine.clone()).await?;
            self.submission_addr = Some(l.local_addr());
            self.submission = Some(l);
        }
        if config.smtp.relay.is_some() {
            let l = SmtpListener::start(ListenerKind::Relay, config, self.engine.clone()).await?;
            self.relay_addr = Some(l.local_addr());
            self.relay = Some(l);
        }
        Ok(())
    }

    /// The delivery engine.
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    /// Where the HTTP API listens (the port chosen when the config said 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the submission listener listens, if configured.
    pub fn submission_addr(&self) -> Option<SocketAddr> {
        self.submission_addr
    }

    /// Where the relay listener listens, if configured.
    pub fn relay_addr(&self) -> Option<SocketAddr> {
        self.relay_addr
    }

    /// Stops taking work (health off, then the listeners, each finishing the
    /// requests and transactions in progress), then the engine (sessions finish
    /// what they sent; the delivery log is flushed), then closes and syncs the
    /// spool. Returns the engine's final counters.
    pub async fn shutdown(mut self) -> EngineStats {
        self.health.set(false);
        if let Some(l) = self.submission.take() {
            l.shutdown().await;
        }
        if let Some(l) = self.relay.take() {
            l.shutdown().await;
        }
        if let Some(h) = self.http.take() {
            h.shutdown().await;
        }
        let stats = self.engine.shutdown().await;
        close_spool(&self.spool);
        stats
    }
}

/// Refuses new writes and syncs the WAL, so the last results survive a power loss.
fn close_spool(spool: &RocksSpool) {
    spool.close();
    if let Err(e) = spool.sync_wal() {
        eprintln!("volley: syncing the spool at shutdown: {e}");
    }
}
