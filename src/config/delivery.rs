//! `[delivery]`: how mail leaves: the port and name used towards receivers, TLS,
//! retries, lifetime, per-command timeouts and smarthost routes.

use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, duration_list, ByteSize, TlsPolicy};
use crate::dns::RouteOverride;
use crate::egress;
use crate::queue::RetryPolicy;

/// The `[delivery]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Port used to reach MX hosts. Default: 25.
    pub smtp_port: u16,
    /// Name sent in EHLO. Default: `smtp.hostname`.
    pub ehlo_name: Option<String>,
    /// STARTTLS policy towards receivers; shaping rules may override it per
    /// destination. Default: "opportunistic".
    pub tls: TlsPolicy,
    /// PEM file of CA certificates for "required-verified". Default: none (the
    /// bundled web PKI roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// Delay before each retry of a temporarily failed recipient: the n-th after
    /// the n-th failure, the last one repeating. Default:
    /// ["1m", "5m", "15m", "30m", "1h", "2h"].
    #[serde(with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// A message not delivered after this long is expired (bounced). Default: "5d".
    #[serde(with = "duration")]
    pub message_lifetime: Duration,
    /// Per-command reply timeouts. Default: see [`Timeouts`].
    pub timeouts: Timeouts,
    /// Smarthost routes (`[[delivery.route]]`): mail for matching domains goes to
    /// the relay instead of their MX hosts; the first match wins. Default: none.
    pub route: Vec<RouteOverride>,
    /// How plaintext sessions write to the socket (TLS sessions always go through
    /// rustls): "vectored", "auto" (io_uring where the kernel has and allows it,
    /// probed once at start, else vectored) or "io-uring". Default: "vectored",
    /// the cheaper path as measured (see [`crate::egress`]).
    pub send_path: SendPath,
    /// On the io_uring path, a write of at least this many bytes goes with
    /// SENDMSG_ZC (zero-copy), smaller ones with SENDMSG. Default: "1MiB".
    pub zerocopy_threshold: ByteSize,
}

/// `delivery.send_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SendPath {
    /// io_uring if the kernel probe at start succeeds, else vectored.
    Auto,
    /// io_uring; if the kernel refuses it, a warning naming this key is printed
    /// at start and the vectored path is used.
    IoUring,
    /// Vectored writes (writev/sendmsg) through tokio.
    #[default]
    Vectored,
}

impl From<SendPath> for egress::SendPathChoice {
    fn from(p: SendPath) -> Self {
        match p {
            SendPath::Auto => egress::SendPathChoice::Auto,
            SendPath::IoUring => egress::SendPathChoice::IoUring,
            SendPath::Vectored => egress::SendPathChoice::Vectored,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let m = |n: u64| Duration::from_secs(60 * n);
        DeliveryConfig {
            smtp_port: 25,
            ehlo_name: None,
            tls: TlsPolicy::Opportunistic,
            ca_file: None,
            retry_schedule: vec![m(1), m(5), m(15), m(30), m(60), m(120)],
            message_lifetime: Duration::from_secs(5 * 86_400),
            timeouts: Timeouts::default(),
            route: Vec::new(),
            send_path: SendPath::Vectored,
            zerocopy_threshold: ByteSize(1 << 20),
        }
    }
}

impl DeliveryConfig {
    /// The retry policy of `retry_schedule`, with the scheduler's default 10%
    /// jitter. Call on a validated config (the schedule is then non-empty).
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::new(self.retry_schedule.clone(), 0.1).unwrap_or_default()
    }

    /// The send path of `send_path` and `zerocopy_threshold`, probing the kernel
    /// (call once, at start). An explicit "io-uring" the kernel refuses is
    /// reported on stderr, naming the key, and falls back to vectored writes.
    pub fn send_path(&self) -> egress::SendPath {
        let choice = egress::SendPathChoice::from(self.send_path);
        let resolved = choice.resolve(self.zerocopy_threshold.as_usize());
        if let (egress::SendPathChoice::IoUring, Some(why)) = (choice, &resolved.fallback) {
            eprintln!(
                "volley: delivery.send_path = \"io-uring\": {why}; sending with vectored writes"
            );
        }
        resolved.path
    }
}

/// `[delivery.timeouts]`: how long the client waits for each step. Where RFC 5321
/// section 4.5.3.2 gives a minimum, the default is that minimum; the other steps
/// are marked "not in the RFC". The keys are those of
/// [`egress::Timeouts`], which [`Timeouts::to_egress`] fills.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect to one MX address (not in the RFC). Default: "30s".
    #[serde(with = "duration")]
    pub connect: Duration,
    /// The 220 greeting (RFC 4.5.3.2.1). Default: "5m".
    #[serde(with = "duration")]
    pub banner: Duration,
    /// EHLO, HELO, STARTTLS, RSET and other commands the RFC gives no figure for
    /// (as MAIL). Default: "5m".
    #[serde(with = "duration")]
    pub command: Duration,
    /// The TLS handshake after STARTTLS (not in the RFC). Default: "1m".
    #[serde(with = "duration")]
    pub tls_handshake: Duration,
    /// The MAIL FROM reply (RFC 4.5.3.2.2). Default: "5m".
    #[serde(with = "duration")]
    pub mail: Duration,
    /// Each RCPT TO reply (RFC 4.5.3.2.3). Default: "5m".
    #[serde(with = "duration")]
    pub rcpt: Duration,
    /// The 354 reply to DATA (RFC 4.5.3.2.4). Default: "2m".
    #[serde(with = "duration")]
    pub data_init: Duration,
    /// Each write of message data making progress (RFC 4.5.3.2.5). Default: "3m".
    #[serde(with = "duration")]
    pub data_block: Duration,
    /// The reply to the final "." or BDAT LAST (RFC 4.5.3.2.6). Default: "10m".
    #[serde(with = "duration")]
    pub data_end: Duration,
    /// The QUIT reply before closing (not in the RFC; best effort). Default: "5s".
    #[serde(with = "duration")]
    pub quit: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::from_egress(&egress::Timeouts::default())
    }
}

impl Timeouts {
    /// The config view of the session's timeouts.
    pub fn from_egress(t: &egress::Timeouts) -> Timeouts {
        Timeouts {
            connect: t.connect,
            banner: t.banner,
            command: t.command,
            tls_handshake: t.tls_handshake,
            mail: t.mail,
            rcpt: t.rcpt,
            data_init: t.data_init,
            data_block: t.data_block,
            data_end: t.data_end,
            quit: t.quit,
        }
    }

    /// The session's timeouts.
    pub fn to_egress(&self) -> egress::Timeouts {
        egress::Timeouts {
            connect: self.connect,
            banner: self.banner,
            command: self.command,
            tls_handshake: self.tls_handshake,
            mail: self.mail,
            rcpt: self.rcpt,
            data_init: self.data_init,
            data_block: self.data_block,
            data_end: self.data_end,
            quit: self.quit,
        }
    }

    /// Every timeout with its key, for validation.
    pub fn all(&self) -> [(&'static str, Duration); 10] {
        [
            ("connect", self.connect),
            ("banner", self.banner),
            ("command", self.command),
            ("tls_handshake", self.tls_handshake),
            ("mail", self.mail),
            ("rcpt", self.rcpt),
            ("data_init", self.data_init),
            ("data_block", self.data_block),
            ("data_end", self.data_end),
            ("quit", self.quit),
        ]
    }
}
