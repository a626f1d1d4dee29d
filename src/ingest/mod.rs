//! Ingest: how work gets in. The HTTP API ([`http`]: messages, streamed
//! campaigns, status and queue controls), the message composer it uses
//! ([`compose`]: KumoMTA-shaped requests, templates, MIME) and the SMTP listeners
//! ([`smtp`]: submission with AUTH after STARTTLS, relay for allowed networks).
//!
//! Every path acknowledges (HTTP 202, SMTP 250) only after
//! [`EngineHandle::inject_message`](crate::delivery::EngineHandle::inject_message)
//! returned, which is after the spool's WAL sync.

pub mod compose;
pub mod http;
pub mod smtp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use thiserror::Error;

/// Whether every listener is up: `GET /health` answers 200 once it is set, 503
/// before (load balancers and tests wait on it). Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<AtomicBool>);

impl Health {
    /// A flag that starts unset.
    pub fn new() -> Health {
        Health::default()
    }

    /// Marks every listener as up (or, with `false`, as going away).
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::Release);
    }

    /// Whether every listener is up.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Why a listener could not start. Each names the configuration key at fault.
#[derive(Debug, Error)]
pub enum ListenerError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        /// The config key holding the address, e.g. `smtp.relay.listen`.
        key: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded or used.
    #[error("{key}: {message}")]
    Tls {
        /// The config key, e.g. `smtp.submission.tls_cert`.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// Some other setting cannot be used as given.
    #[error("{key}: {message}")]
    Config {
        /// The config key.
        key: String,
        /// What was wrong.
        message: String,
    },
}
