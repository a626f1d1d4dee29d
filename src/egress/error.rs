//! Session errors. Each knows whether it is the connection's fault (retry the
//! same work on a new connection, perhaps to the next MX) and renders itself as a
//! reply for the delivery log.
//!
//! Message-level results are not errors here: a refused MAIL, RCPT or body ends as
//! a [`crate::smtp::transaction::RecipientOutcome`] per recipient.

use std::net::SocketAddr;

use crate::smtp::reply::{Reply, ReplyError};
use crate::smtp::status::{EnhancedStatus, ReplyCode, Severity};

/// Why a session could not be set up, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No endpoint to try.
    #[error("no address to connect to")]
    NoAddresses,
    /// TCP connect failed (refused, unreachable).
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A step took longer than its timeout.
    #[error("timeout {0}")]
    Timeout(&'static str),
    /// The socket failed (reset, broken pipe) during a step.
    #[error("I/O error {phase}: {source}")]
    Io {
        phase: &'static str,
        source: std::io::Error,
    },
    /// The server closed the connection during a step.
    #[error("connection closed by server {0}")]
    Closed(&'static str),
    /// The server's reply was not SMTP.
    #[error("bad reply {phase}: {source}")]
    Protocol {
        phase: &'static str,
        source: ReplyError,
    },
    /// The server refused a connection-level step: banner 4xx/5xx, EHLO and HELO
    /// refused, 421 at any time, STARTTLS refused when TLS is required.
    #[error("server refused {phase}: {reply}")]
    Rejected { phase: &'static str, reply: Reply },
    /// TLS is required and the server does not offer STARTTLS.
    #[error("TLS required but STARTTLS not offered")]
    TlsNotOffered,
    /// The TLS handshake failed (including certificate verification).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// The MX host name cannot be a TLS server name.
    #[error("invalid TLS server name {0:?}")]
    BadServerName(String),
    /// Credentials are set and the connection is in plaintext: they are never
    /// sent in clear.
    #[error("AUTH credentials not sent: the connection is not encrypted")]
    AuthNeedsTls,
    /// Credentials are set and the server offers neither PLAIN nor LOGIN.
    #[error("AUTH credentials not sent: no supported mechanism offered")]
    AuthUnsupported,
    /// The server refused AUTH (e.g. `535 5.7.8`). Transient on purpose, even for
    /// a 5xx: wrong credentials are an operator's mistake on our side, and mail
    /// should wait for the fix rather than bounce.
    #[error("authentication failed: {0}")]
    AuthFailed(Reply),
}

impl SessionError {
    /// Whether this is about the connection rather than any message: the work goes
    /// again on another connection (or to the next address) without counting an
    /// attempt against the message. Every variant today is (message-level results
    /// are recipient outcomes); the match has no `_` arm so a new variant decides.
    pub fn is_connection_level(&self) -> bool {
        match self {
            SessionError::NoAddresses
            | SessionError::Connect { .. }
            | SessionError::Timeout(_)
            | SessionError::Io { .. }
            | SessionError::Closed(_)
            | SessionError::Protocol { .. }
            | SessionError::Rejected { .. }
            | SessionError::TlsNotOffered
            | SessionError::Tls(_)
            | SessionError::BadServerName(_)
            | SessionError::AuthNeedsTls
            | SessionError::AuthUnsupported
            | SessionError::AuthFailed(_) => true,
        }
    }

    /// Whether trying again later may work: everything but a 5xx refusal and a
    /// host name that can never be a TLS server name. AUTH failures are transient
    /// whatever the server's code (see [`SessionError::AuthFailed`]).
    pub fn is_transient(&self) -> bool {
        !self.is_permanent()
    }

    /// A 5xx refusal (e.g. a `554` banner: "no SMTP service here"), or an
    /// unusable server name. The caller still tries the other MX hosts first.
    pub fn is_permanent(&self) -> bool {
        match self {
            SessionError::Rejected { reply, .. } => reply.severity() == Severity::Permanent,
            SessionError::BadServerName(_) => true,
            SessionError::NoAddresses
            | SessionError::Connect { .. }
            | SessionError::Timeout(_)
            | SessionError::Io { .. }
            | SessionError::Closed(_)
            | SessionError::Protocol { .. }
            | SessionError::TlsNotOffered
            | SessionError::Tls(_)
            | SessionError::AuthNeedsTls
            | SessionError::AuthUnsupported
            | SessionError::AuthFailed(_) => false,
        }
    }

    /// Whether the error is a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SessionError::Timeout(_))
    }

    /// The error as a reply for the delivery log and for recipient outcomes: the
    /// server's own reply when it refused, else a synthetic one (RFC 3463 codes:
    /// 4.4.1 no answer, 4.4.2 bad connection, 4.5.0 protocol, 4.7.5 TLS failure,
    /// 4.7.10 TLS needed, 4.4.4 no route; 4.7.4 no usable AUTH mechanism and
    /// 454 4.7.0 for a refused AUTH, whose server reply is kept in the text only,
    /// so a 535 does not read as permanent).
    pub fn reply(&self) -> Reply {
        let (code, status) = match self {
            SessionError::Rejected { reply, .. } => return reply.clone(),
            SessionError::NoAddresses => (451, EnhancedStatus::new(4, 4, 4)),
            SessionError::Connect { .. } => (451, EnhancedStatus::new(4, 4, 1)),
            SessionError::Timeout(_) => (451, EnhancedStatus::new(4, 4, 2)),
            SessionError::Io { .. } | SessionError::Closed(_) => {
                (451, EnhancedStatus::CONNECTION_DROPPED)
            }
            SessionError::Protocol { .. } => (451, EnhancedStatus::new(4, 5, 0)),
            SessionError::TlsNotOffered => (451, EnhancedStatus::new(4, 7, 10)),
            SessionError::Tls(_) => (451, EnhancedStatus::new(4, 7, 5)),
            SessionError::BadServerName(_) => (554, EnhancedStatus::new(5, 7, 5)),
            SessionError::AuthNeedsTls => (451, EnhancedStatus::new(4, 7, 10)),
            SessionError::AuthUnsupported => (451, EnhancedStatus::new(4, 7, 4)),
            SessionError::AuthFailed(_) => (454, EnhancedStatus::new(4, 7, 0)),
        };
        let code = ReplyCode::new(code).expect("valid code");
        Reply::new(code, Some(status), self.to_string())
    }
}

/// Maps a read/write failure to an error for `phase`.
pub(crate) fn io_error(phase: &'static str, e: std::io::Error) -> SessionError {
    SessionError::Io { phase, source: e }
}
