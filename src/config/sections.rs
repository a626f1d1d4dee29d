//! The sections of the configuration other than `[delivery]` and `[shaping]`:
//! `[spool]`, `[http]`, `[smtp]` (with `[smtp.submission]` and `[smtp.relay]`)
//! and `[log]`. `[dns]` is [`DnsConfig`](crate::dns::DnsConfig), defined by the
//! router.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, ByteSize, Cidr};
use crate::spool::SpoolOptions;

/// `[spool]`: where and how messages are stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// The RocksDB directory (created if missing). Default: "/var/spool/volley".
    pub path: PathBuf,
    /// Acknowledge a message only once the write-ahead log holding it is fsynced.
    /// `false` survives a process crash but not a power loss. Default: true.
    pub sync: bool,
    /// Messages waiting for the spool writer before new ones are refused as busy.
    /// Default: 8192.
    pub max_queued_messages: usize,
    /// Bytes waiting for the spool writer before new messages are refused as busy;
    /// keep it above the largest accepted message. Default: "128MiB".
    pub max_queued_bytes: ByteSize,
    /// RocksDB block cache shared by all column families. Default: "256MiB".
    pub block_cache: ByteSize,
    /// How long a finished message's completion record (its status after it left
    /// the spool, for `GET /api/v1/messages/{id}`) is kept, counted from the
    /// message's creation; keep it above `delivery.message_lifetime` so every
    /// message's final status stays visible for a while. Default: "7d".
    #[serde(with = "duration")]
    pub status_retention: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        let o = SpoolOptions::default();
        SpoolConfig {
            path: PathBuf::from("/var/spool/volley"),
            sync: o.sync,
            max_queued_messages: o.max_queued_messages,
            max_queued_bytes: ByteSize(o.max_queued_bytes as u64),
            block_cache: ByteSize(o.block_cache_bytes as u64),
            status_retention: Duration::from_secs(7 * 86_400),
        }
    }
}

impl SpoolConfig {
    /// The spool's options with this section applied (the rest at their defaults).
    pub fn options(&self) -> SpoolOptions {
        SpoolOptions {
            sync: self.sync,
            max_queued_messages: self.max_queued_messages,
            max_queued_bytes: self.max_queued_bytes.as_usize(),
            block_cache_bytes: self.block_cache.as_usize(),
            ..SpoolOptions::default()
        }
    }
}

/// `[http]`: the HTTP API, metrics and health check.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on ("ip:port"; port 0 picks a free port). Default:
    /// "127.0.0.1:8025".
    pub listen: SocketAddr,
    /// Largest accepted request body for `POST /api/v1/messages` (a streamed
    /// campaign's recipient list is not limited by it, only each of its lines).
    /// Default: "50MiB".
    pub max_body: ByteSize,
    /// Most recipients in one `POST /api/v1/messages` request; larger sends go to
    /// `POST /api/v1/campaigns` (streamed). Default: 10000.
    pub max_recipients: usize,
    /// Recipients stored together as one message (one body) when a streamed
    /// campaign's content is the same for each of them. Default: 1000.
    pub campaign_message_recipients: usize,
    /// Open connections; more are closed at once (clients retry). Default: 1000.
    pub max_connections: usize,
    /// Time allowed for a request's head (request line and headers) to arrive, so
    /// a client dribbling bytes cannot hold a connection (slowloris); also the idle
    /// limit of a kept-alive connection between requests. Default: "30s".
    #[serde(with = "duration")]
    pub header_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: ([127, 0, 0, 1], 8025).into(),
            max_body: ByteSize::mib(50),
            max_recipients: 10_000,
            campaign_message_recipients: 1000,
            max_connections: 1000,
            header_timeout: Duration::from_secs(30),
        }
    }
}

/// `[smtp]`: identity and the SMTP listeners.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Name in the 220 banner and in `Received:` lines. Default: the machine's host
    /// name ([`SmtpConfig::hostname`]).
    pub hostname: Option<String>,
    /// Largest accepted message (SIZE extension, RFC 1870). Default: "50MiB".
    pub max_message_size: ByteSize,
    /// Domains accepted from any client, authenticated or not (as Postfix's
    /// `relay_domains`): e.g. a bounce domain routed by a `[[delivery.route]]`.
    /// Every other destination needs AUTH or an allowed relay address. Default: [].
    pub relay_domains: Vec<String>,
    /// Most recipients in one transaction; more get 452 4.5.3. Default: 1000.
    pub max_recipients: usize,
    /// Longest line of message data, CRLF included; longer lines fail the message
    /// with 552 5.3.4 (RFC 5321 asks for 1000, real mail is sloppier). Default: 8192.
    pub max_line_length: usize,
    /// Open connections per listener; more are answered 421 4.3.2 and closed.
    /// Default: 1000.
    pub max_connections: usize,
    /// Open connections from one client IP per listener; more get 421 4.7.0.
    /// Default: 50.
    pub max_connections_per_ip: usize,
    /// Time allowed for a whole command line to arrive (so a client dribbling bytes
    /// cannot hold a connection: slowloris), and idle time between commands
    /// (RFC 5321 4.5.3.2.7). Default: "5m".
    #[serde(with = "duration")]
    pub command_timeout: Duration,
    /// Longest silence while message data is arriving (RFC 5321 4.5.3.2.6 asks
    /// clients for 3 minutes per block). Default: "3m".
    #[serde(with = "duration")]
    pub data_timeout: Duration,
    /// Failed AUTH attempts allowed on one connection before 421 4.7.0 closes it.
    /// Default: 3.
    pub max_auth_failures: u32,
    /// Failed AUTH attempts from one client IP within `auth_failure_window` after
    /// which that IP gets 454 4.7.0 for every AUTH until the window passes.
    /// Default: 10.
    pub max_auth_failures_per_ip: u32,
    /// The window of `max_auth_failures_per_ip`. Default: "10m".
    #[serde(with = "duration")]
    pub auth_failure_window: Duration,
    /// The submission listener (MSA: AUTH after STARTTLS). Default: not listening.
    pub submission: Option<SubmissionConfig>,
    /// The relay listener (for clients at allowed addresses). Default: not listening.
    pub relay: Option<RelayConfig>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: None,
            max_message_size: ByteSize::mib(50),
            relay_domains: Vec::new(),
            max_recipients: 1000,
            max_line_length: 8192,
            max_connections: 1000,
            max_connections_per_ip: 50,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            max_auth_failures: 3,
            max_auth_failures_per_ip: 10,
            auth_failure_window: Duration::from_secs(600),
            submission: None,
            relay: None,
        }
    }
}

impl SmtpConfig {
    /// `hostname`, or the machine's host name, or "localhost".
    pub fn hostname(&self) -> String {
        if let Some(h) = &self.hostname {
            return h.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    }
}

/// `[smtp.submission]`: authenticated submission (RFC 6409), AUTH only after
/// STARTTLS (RFC 4954, RFC 3207).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubmissionConfig {
    /// Address to listen on. Default: "0.0.0.0:587".
    pub listen: SocketAddr,
    /// PEM certificate chain for STARTTLS. Default: none (then no STARTTLS, and so
    /// no AUTH: only for tests). Set both `tls_cert` and `tls_key` or neither.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for STARTTLS. Default: none.
    pub tls_key: Option<PathBuf>,
    /// Offer AUTH on connections without TLS too. Only for clients on a trusted
    /// network that cannot do STARTTLS: the password crosses the wire in clear.
    /// Default: false (AUTH only after STARTTLS, RFC 4954 section 4).
    pub allow_plaintext_auth: bool,
    /// Accounts allowed to submit. Default: none.
    pub users: Vec<User>,
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        SubmissionConfig {
            listen: ([0, 0, 0, 0], 587).into(),
            tls_cert: None,
            tls_key: None,
            allow_plaintext_auth: false,
            users: Vec::new(),
        }
    }
}

/// One submission account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The AUTH user name. Required.
    pub username: String,
    /// PHC-format password hash ("$argon2id$..."); never the password (`volley
    /// hash-password` makes one). Required.
    pub password_hash: String,
    /// The `[[tenant]]` whose mail this account sends. Default: none.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// `[smtp.relay]`: unauthenticated relay for clients at allowed addresses (other
/// MTAs, applications). Everyone else may deliver only to local domains.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Address to listen on. Default: "0.0.0.0:2525".
    pub listen: SocketAddr,
    /// Client networks allowed to relay ("10.0.0.0/8", "::1/128"). Default: none.
    pub allowed_cidrs: Vec<Cidr>,
    /// PEM certificate chain to offer STARTTLS. Default: none (no STARTTLS).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for STARTTLS. Default: none.
    pub tls_key: Option<PathBuf>,
    /// The `[[tenant]]` that mail relayed from the allowed networks belongs to.
    /// Default: none.
    pub tenant: Option<String>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: ([0, 0, 0, 0], 2525).into(),
            allowed_cidrs: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tenant: None,
        }
    }
}

/// `[[tenant]]`: a customer of this transmitter (an ESP relaying through it, an
/// application). Its name is stored with each of its messages; its API tokens
/// authenticate HTTP requests (`Authorization: Bearer TOKEN`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Unique name: letters, digits, `-`, `_`, `.`. Required.
    pub name: String,
    /// SHA-256 of each accepted bearer token, as 64 hex digits (`volley
    /// hash-token` makes a token and its hash). Tokens are long random strings, so
    /// a fast hash is enough; the plain token is never stored. Default: [].
    #[serde(default)]
    pub api_tokens: Vec<String>,
    /// May read and control every tenant's messages, campaigns and the queues
    /// (list, suspend, resume, purge domains). Default: false (own campaigns and
    /// messages only).
    #[serde(default)]
    pub admin: bool,
}

/// `[log]`: where events go.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// File receiving the delivery log: one JSON object per line per recipient
    /// outcome (delivered, deferred, bounced, expired). Default: none (not written).
    pub delivery: Option<PathBuf>,
}
