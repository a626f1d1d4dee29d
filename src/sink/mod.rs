//! The sink: an ESMTP server that accepts and discards mail as fast as the machine
//! allows, with fault injection and an optional record of what arrived. It runs as
//! `volley-load sink` ([`cli`]) and in process ([`Sink`]: `volley demo`, tests):
//!
//! ```ignore
//! use volley::sink::{Sink, SinkOptions};
//! let sink = Sink::start(SinkOptions { listen: vec!["127.0.0.2:0".parse()?], ..Default::default() })?;
//! let addr = sink.local_addrs()[0];
//! // ... deliver to it ...
//! let live = sink.stats();          // messages, recipients, bytes, connections
//! let summary = sink.shutdown();    // exact totals, replies by code
//! ```
//!
//! Layout:
//! - [`cli`]: the `volley-load sink` command line. [`options`]: [`SinkOptions`].
//!   [`handle`]: [`Sink`], a sink on its own thread.
//! - [`server`]: settings, shared state, accept loops, shutdown.
//! - [`conn`]: one connection's I/O loop (one write per read batch, timeouts, TLS).
//! - [`session`]: the SMTP state machine over byte buffers (no I/O); [`replies`]:
//!   its static reply bytes; [`inbuf`]: the reused input buffer.
//! - [`magic`]: magic recipient addresses. [`faults`]: latency, failure rates, RNG.
//! - [`record`]: `--record` JSON lines. [`stats`]: counters and the final summary.
//! - [`tls`]: the self-signed STARTTLS certificate.
//!
//! Speaks EHLO/HELO, MAIL, RCPT, DATA, BDAT (CHUNKING), RSET, NOOP, QUIT, VRFY (252),
//! HELP and STARTTLS (with `--tls`), advertising PIPELINING, CHUNKING, 8BITMIME,
//! SIZE, ENHANCEDSTATUSCODES, SMTPUTF8 and DSN. Bare CR/LF or a smuggling-shaped
//! end of data gets `554 5.6.0` and the connection is closed.
//!
//! Magic recipients (the local part decides; any domain):
//! - `NNN@` (a 4xx/5xx reply code, e.g. `452@`, `450@`, `550@`): that RCPT is
//!   answered NNN with a fitting enhanced status (452 -> 4.5.3, 450 -> 4.2.0,
//!   451 -> 4.3.0, 550 -> 5.1.1, 551 -> 5.1.6, 552 -> 5.2.2, 553 -> 5.1.3,
//!   554 -> 5.7.1, others X.0.0); `421@` also closes the connection.
//! - `421-disconnect@`: `421 4.4.2` at RCPT, then the connection is closed.
//! - `disconnect-rcpt@`: the connection is dropped at that RCPT without a reply.
//! - `delay-MS@`: that RCPT's reply comes MS milliseconds late (other connections
//!   are not held up).
//! - `data-NNN@`: accepted, but the transaction's end-of-data reply is NNN
//!   (2xx/4xx/5xx; with several, the highest code wins; 421 also closes).
//! - `data-delay-MS@`: accepted; the end-of-data reply comes MS milliseconds late.
//! - `disconnect-data@`: accepted; once the body has arrived the connection is
//!   dropped without a reply.
//! - `tempfail-once-TAG@`: `451 4.3.0` the first time the process sees this address
//!   (case-insensitive), accepted every time after: for retry tests.
//!
//! Magic recipients skip the random `--rcpt-*fail` rolls. On SIGINT/SIGTERM
//! `volley-load sink` prints one JSON object to stdout (`messages`, `recipients`, `bytes`,
//! `connections`, `elapsed_s`, `replies` by code) and exits 0.

use std::path::PathBuf;

use thiserror::Error;

pub mod cli;
mod conn;
pub mod faults;
pub mod handle;
mod inbuf;
mod magic;
pub mod options;
mod record;
mod replies;
mod server;
mod session;
mod stats;
#[cfg(test)]
mod tests;
mod tls;

pub use faults::{LatencySpec, Percent};
pub use handle::{Sink, SinkStats};
pub use options::SinkOptions;
pub use stats::Summary;

/// Why a sink could not start.
#[derive(Debug, Error)]
pub enum SinkError {
    /// A listen address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The `record` file could not be created.
    #[error("creating {}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The self-signed STARTTLS certificate could not be made.
    #[error("{0}")]
    Tls(String),
    /// The runtime or its thread could not be started.
    #[error("starting the sink: {0}")]
    Runtime(std::io::Error),
}
