//! The SMTP ingest listeners: submission (MSA, RFC 6409: AUTH PLAIN/LOGIN after
//! STARTTLS) and relay (clients in `smtp.relay.allowed_cidrs` may relay; everyone
//! else may only send to `smtp.relay_domains`). Never an open relay.
//!
//! ```ignore
//! let listener = SmtpListener::start(ListenerKind::Submission, &config, engine.clone()).await?;
//! println!("submission on {}", listener.local_addr());
//! listener.shutdown().await; // 421 4.3.2 to open sessions at their next command
//! ```
//!
//! The protocol is [`crate::smtp::server`] (sans-IO); this module owns the
//! sockets, TLS, timers, password checks and the spool:
//! - [`conn`]: one connection's loop (timeouts, STARTTLS, the session's actions).
//! - [`auth`]: argon2 verification, its cache, the per-address failure window.
//! - [`limits`]: connections in all and per client address.
//! - [`store`]: the `Received:` header, the meta record, the durable store.
//! - [`tls`]: the rustls configuration from the PEM files.
//!
//! A message is answered `250 2.0.0 Ok: queued as ID` only after
//! [`EngineHandle::inject_message`] returned, i.e. after the spool's WAL sync.
//! Listener state (connection counts, AUTH failures, the verification cache)
//! belongs to one listener: nothing is process-global.

pub mod auth;
pub mod conn;
pub mod limits;
pub mod store;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use self::auth::Authenticator;
use self::limits::ConnectionLimits;
use crate::config::{Cidr, Config};
use crate::delivery::EngineHandle;
use crate::ingest::ListenerError;
use crate::smtp::server::{RelayDomains, Role, SessionConfig};

/// How long [`SmtpListener::shutdown`] waits for open sessions before it cuts
/// them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Which listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// `[smtp.submission]`: authenticated submission.
    Submission,
    /// `[smtp.relay]`: relay for allowed networks.
    Relay,
}

impl ListenerKind {
    /// `"submission"` or `"relay"` (also the config section's last part, and the
    /// `listener` tag of stored messages).
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Submission => "submission",
            ListenerKind::Relay => "relay",
        }
    }

    fn section(self) -> String {
        format!("smtp.{}", self.name())
    }
}

/// What every connection of one listener shares.
pub struct Shared {
    /// Which listener.
    kind: ListenerKind,
    /// The sessions' settings.
    session: Arc<SessionConfig>,
    /// STARTTLS, when a certificate is configured.
    tls: Option<TlsAcceptor>,
    /// Accounts, verification cache and failure window (submission).
    auth: Authenticator,
    /// Networks that may relay (relay listener).
    allowed: Vec<Cidr>,
    /// Where messages go.
    engine: EngineHandle,
    /// `smtp.command_timeout`.
    command_timeout: Duration,
    /// `smtp.data_timeout`.
    data_timeout: Duration,
    /// Open connections.
    limits: Arc<ConnectionLimits>,
}

impl Shared {
    /// Whether a client at `ip` may relay without AUTH.
    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|c| c.contains(ip))
    }
}

/// A running SMTP listener. Dropping it stops accepting too, without waiting.
pub struct SmtpListener {
    /// The bound address.
    local_addr: SocketAddr,
    /// Set to true to stop.
    stop: watch::Sender<bool>,
    /// The accept loop; it drains the sessions when stopped.
    task: JoinHandle<()>,
}

impl SmtpListener {
    /// Binds the kind's `listen` address (port 0 = any) and serves on the current
    /// tokio runtime. Errors name the config key (e.g. an unreadable
    /// `smtp.submission.tls_cert`, a section that is missing).
    pub async fn start(
        kind: ListenerKind,
        config: &Config,
        engine: EngineHandle,
    ) -> Result<SmtpListener, ListenerError> {
        let section = kind.section();
        let s = &config.smtp;
        let missing = || ListenerError::Config {
            key: section.clone(),
            message: "not configured".into(),
        };
        let (listen, cert, key, role, allowed, relay_tenant, users) = match kind {
            ListenerKind::Submission => {
                let c = s.submission.as_ref().ok_or_else(missing)?;
                let role = Role::Submission {
                    allow_plaintext_auth: c.allow_plaintext_auth,
                };
                (
                    c.listen,
                    &c.tls_cert,
                    &c.tls_key,
                    role,
                    Vec::new(),
                    None,
                    &c.users[..],
                )
            }
            ListenerKind::Relay => {
                let c = s.relay.as_ref().ok_or_else(missing)?;
                let allowed = c.allowed_cidrs.clone();
                (
                    c.listen,
                    &c.tls_cert,
                    &c.tls_key,
                    Role::Relay,
                    allowed,
                    c.tenant.clone(),
                    &[][..],
                )
            }
        };
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(&section, cert, key)?),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ListenerError::Tls {
                    key: format!("{section}.tls_key"),
                    message: "tls_cert is set without tls_key".into(),
                })
            }
            (None, Some(_)) => {
                return Err(ListenerError::Tls {
                    key: format!("{section}.tls_cert"),
                    message: "tls_key is set without tls_cert".into(),
                })
            }
        };
        let relay_domains =
            RelayDomains::new(&s.relay_domains).map_err(|(i, d)| ListenerError::Config {
                key: format!("smtp.relay_domains[{i}]"),
                message: format!("{d:?} is not a domain name"),
            })?;
        let auth = Authenticator::new(users, s.max_auth_failures_per_ip, s.auth_failure_window)?;
        let session = SessionConfig {
            role,
            hostname: s.hostname(),
            max_message_size: s.max_message_size.as_usize(),
            max_recipients: s.max_recipients,
            max_line_length: s.max_line_length,
            max_auth_failures: s.max_auth_failures.max(1),
            starttls: tls.is_some(),
            relay_domains,
            relay_tenant,
        };
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ListenerError::Bind {
                key: format!("{section}.listen"),
                addr: listen,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ListenerError::Bind {
                key: format!("{section}.listen"),
                addr: listen,
                source,
            })?;
        let shared = Arc::new(Shared {
            kind,
            session: Arc::new(session),
            tls,
            auth,
            allowed,
            engine,
            command_timeout: s.command_timeout,
            data_timeout: s.data_timeout,
            limits: Arc::new(ConnectionLimits::new(
                s.max_connections,
                s.max_connections_per_ip,
            )),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared, stopped));
        Ok(SmtpListener {
            local_addr,
            stop,
            task,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting; open sessions get `421 4.3.2` at their next command (a
    /// message being received or stored is finished and answered first); waits
    /// for them up to a few seconds, then cuts off the rest.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// Accepts until stopped, then drains the sessions.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => match shared.limits.admit(peer.ip()) {
                    Ok(slot) => {
                        let stop = stopped.clone();
                        sessions.spawn(conn::serve(tcp, peer, Arc::clone(&shared), stop, slot));
                    }
                    Err(reply) => {
                        sessions.spawn(conn::refuse(tcp, reply));
                    }
                },
                // Out of file descriptors and the like: wait for some to free up.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            // Reap finished sessions so the set does not grow.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            // A stop, or the listener handle dropped.
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        sessions.shutdown().await;
    }
}
