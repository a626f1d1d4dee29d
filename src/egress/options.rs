//! What a session needs to know before it connects: where, as whom, how patient,
//! how much to pipeline, and how much TLS to insist on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::smtp::transaction::PlanOptions;

use super::send_path::SendPath;
use super::tls::{TlsContext, TlsMemory, TlsPolicy};

/// One address of one MX host, in the order the session should try it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The MX host name: SNI and certificate name for TLS, and the delivery log.
    pub host: String,
    /// Its address, with the SMTP port already set.
    pub addr: SocketAddr,
}

impl Endpoint {
    /// An endpoint of `host` at `addr`.
    pub fn new(host: impl Into<String>, addr: SocketAddr) -> Self {
        Endpoint {
            host: host.into(),
            addr,
        }
    }
}

/// How long to wait for each step (RFC 5321 4.5.3.2). Each reply has its own
/// clock, started when the session begins waiting for it; a write's clock restarts
/// whenever the socket takes some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect. Default 30 s.
    pub connect: Duration,
    /// The 220 banner ("initial 220 message"). Default 5 min.
    pub banner: Duration,
    /// EHLO, HELO, STARTTLS, RSET and anything else without an RFC figure. Default 5 min.
    pub command: Duration,
    /// The TLS handshake after STARTTLS. Default 1 min.
    pub tls_handshake: Duration,
    /// The reply to MAIL. Default 5 min.
    pub mail: Duration,
    /// The reply to each RCPT. Default 5 min.
    pub rcpt: Duration,
    /// The 354 after DATA. Default 2 min.
    pub data_init: Duration,
    /// Each write of the body making progress ("data block"). Default 3 min.
    pub data_block: Duration,
    /// The reply after the terminator or `BDAT LAST` ("DATA termination"). Default 10 min.
    pub data_end: Duration,
    /// QUIT's reply when closing; best effort, so short. Default 5 s.
    pub quit: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        const MIN: u64 = 60;
        Timeouts {
            connect: Duration::from_secs(30),
            banner: Duration::from_secs(5 * MIN),
            command: Duration::from_secs(5 * MIN),
            tls_handshake: Duration::from_secs(MIN),
            mail: Duration::from_secs(5 * MIN),
            rcpt: Duration::from_secs(5 * MIN),
            data_init: Duration::from_secs(2 * MIN),
            data_block: Duration::from_secs(3 * MIN),
            data_end: Duration::from_secs(10 * MIN),
            quit: Duration::from_secs(5),
        }
    }
}

/// How much a session writes ahead of the replies when transactions go back to
/// back (PIPELINING + CHUNKING). The bounds keep unread replies small enough to
/// sit in the socket buffers: the session does not read while it writes, and a
/// server blocked on writing replies stops reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineWindow {
    /// Most transactions written and not yet answered. Default 8; 1 disables
    /// back-to-back transactions.
    pub max_transactions: usize,
    /// Most replies outstanding. Default 512 (about 20 KiB of replies).
    pub max_replies: usize,
    /// Most bytes written and not yet answered; a transaction bigger than this
    /// still goes, alone. Default 4 MiB.
    pub max_bytes: usize,
}

impl Default for PipelineWindow {
    fn default() -> Self {
        PipelineWindow {
            max_transactions: 8,
            max_replies: 512,
            max_bytes: 4 << 20,
        }
    }
}

/// Everything a session is configured with; the pool keeps one per site (or per
/// policy) and shares it.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The name we give in EHLO/HELO.
    pub ehlo_name: String,
    /// What to do about STARTTLS.
    pub tls_policy: TlsPolicy,
    /// TLS client configurations (built once: root store, provider).
    pub tls: Arc<TlsContext>,
    /// Hosts whose TLS failed recently; shared by every session of the process.
    pub tls_memory: Arc<TlsMemory>,
    /// Per-step timeouts.
    pub timeouts: Timeouts,
    /// Back-to-back transaction bounds.
    pub window: PipelineWindow,
    /// Whether to use PIPELINING and CHUNKING when offered.
    pub plan: PlanOptions,
    /// AUTH after the last EHLO (smarthosts), over TLS only; `None`: no AUTH.
    pub auth: Option<Credentials>,
    /// How plaintext TCP sessions write (io_uring or vectored); TLS sessions
    /// always write through rustls and tokio. Default: vectored.
    pub send_path: SendPath,
}

/// A username and password for SMTP AUTH (RFC 4954), PLAIN or LOGIN.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication identity.
    pub username: String,
    /// The password; never printed (see the `Debug` impl).
    pub password: String,
}

impl Credentials {
    /// Credentials for `username` with `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl SessionOptions {
    /// Options with defaults: opportunistic TLS, webpki roots, RFC timeouts.
    pub fn new(ehlo_name: impl Into<String>) -> Self {
        SessionOptions {
            ehlo_name: ehlo_name.into(),
            tls_policy: TlsPolicy::Opportunistic,
            tls: Arc::new(TlsContext::webpki()),
            tls_memory: Arc::new(TlsMemory::default()),
            timeouts: Timeouts::default(),
            window: PipelineWindow::default(),
            plan: PlanOptions::default(),
            auth: None,
            send_path: SendPath::Vectored,
        }
    }
}
