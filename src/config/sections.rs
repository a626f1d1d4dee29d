//! The sections of the configuration other than `[delivery]` and `[shaping]`:
//! `[spool]`, `[http]`, `[smtp]` (with `[smtp.submission]` and `[smtp.relay]`)
//! and `[log]`. `[dns]` is [`DnsConfig`](crate::dns::DnsConfig), defined by the
//! router.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::values::{ByteSize, Cidr};
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
    /// Largest accepted request body. Default: "50MiB".
    pub max_body: ByteSize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: ([127, 0, 0, 1], 8025).into(),
            max_body: ByteSize::mib(50),
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
    /// Accounts allowed to submit. Default: none.
    pub users: Vec<User>,
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        SubmissionConfig {
            listen: ([0, 0, 0, 0], 587).into(),
            tls_cert: None,
            tls_key: None,
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
    /// PHC-format password hash ("$argon2id$..."); never the password. Required.
    pub password_hash: String,
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
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: ([0, 0, 0, 0], 2525).into(),
            allowed_cidrs: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[log]`: where events go.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// File receiving the delivery log: one JSON object per line per recipient
    /// outcome (delivered, deferred, bounced, expired). Default: none (not written).
    pub delivery: Option<PathBuf>,
}
