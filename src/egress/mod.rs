//! Egress: SMTP client sessions and the send path (DESIGN.md steps 5 and 6).
//!
//! The pool of a site owns [`ClientSession`]s. It opens one with
//! [`ClientSession::connect`] (the site's MX endpoints in preference order and the
//! site's [`SessionOptions`]), hands it batches of [`Job`]s with
//! [`ClientSession::send`] while [`ClientSession::is_reusable`], and ends it with
//! [`ClientSession::quit`]. Every recipient of every job comes back with an
//! outcome (or the job as `NotSent`), and errors say whether they are the
//! connection's fault.
//!
//! - [`options`]: endpoints, timeouts, the pipelining window, session options.
//! - [`session`]: connecting, banner, EHLO/HELO, STARTTLS, reading replies, QUIT.
//! - [`auth`]: AUTH PLAIN / LOGIN to smarthosts, and the base64 it needs.
//! - [`send`]: transactions, back-to-back pipelining, vectored writes, stats.
//! - [`tls`]: TLS policy, rustls configurations, memory of TLS failures.
//! - [`stream`]: the plain-or-TLS transport and the vectored write loop.
//! - [`error`]: [`SessionError`], classified.

pub mod auth;
pub mod error;
pub mod options;
pub mod send;
pub mod session;
pub mod stream;
pub mod tls;

pub use error::SessionError;
pub use options::{Credentials, Endpoint, PipelineWindow, SessionOptions, Timeouts};
pub use send::{Job, JobOutcome, MessageBody, SendReport, SendStats};
pub use session::{ClientSession, ConnectFailure, ConnectInfo};
pub use stream::Transport;
pub use tls::{any_certificate_config, TlsConfigError, TlsContext, TlsInfo, TlsMemory, TlsPolicy};

#[cfg(test)]
mod tests;
