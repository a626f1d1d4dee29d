//! The delivery log: one JSON object per line per recipient outcome, written by a
//! thread of its own through a buffered writer, flushed whenever it has nothing
//! more to write (so a quiet engine's log is complete within milliseconds).
//!
//! Fields (every event has every key; absent values are `null`):
//!
//! | key | meaning |
//! |-----|---------|
//! | `ts` | RFC 3339 UTC time with milliseconds |
//! | `event` | `delivered`, `deferred`, `bounced`, `expired`, `purged` |
//! | `message_id` | 32 hex digits |
//! | `recipient`, `domain` | the address as sent in RCPT TO, its domain |
//! | `site` | the site key (MX set) the attempt went to; null for DNS failures, expiry and purges |
//! | `mx_host`, `mx_ip` | the host and address connected to |
//! | `tls` | negotiated TLS version (`TLSv1_3`), or null for plaintext |
//! | `code`, `enhanced`, `reply` | the reply (the server's, or a local one for connection/DNS failures); for `expired` and `purged`, the last attempt's, if known |
//! | `attempt` | this attempt's number (1 for the first); for `expired` and `purged`, attempts made |
//! | `queue_time_ms` | since the message was accepted |
//! | `delivery_time_ms` | the SMTP exchange that produced the outcome |
//! | `next_retry` | for `deferred`: when it will be tried again (RFC 3339) |

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::oneshot;

use crate::model::Timestamp;

/// What happened to a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// 2xx at end of data: final.
    Delivered,
    /// Failed for now; will be retried at `next_retry`.
    Deferred,
    /// Failed for good: final.
    Bounced,
    /// Reached the message lifetime undelivered: final.
    Expired,
    /// Removed from the queue by an operator purge (of its domain or campaign):
    /// final.
    Purged,
}

/// One line of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEvent {
    /// When the outcome was known (RFC 3339, UTC, milliseconds).
    pub ts: String,
    /// What happened.
    pub event: EventKind,
    /// The message id.
    pub message_id: String,
    /// The recipient address.
    pub recipient: String,
    /// Its domain.
    pub domain: String,
    /// The site attempted.
    pub site: Option<String>,
    /// The MX host connected to.
    pub mx_host: Option<String>,
    /// Its address.
    pub mx_ip: Option<IpAddr>,
    /// The TLS version, if the session was encrypted.
    pub tls: Option<String>,
    /// The reply code.
    pub code: Option<u16>,
    /// The enhanced status code (`5.1.1`).
    pub enhanced: Option<String>,
    /// The reply text (lines joined by spaces, without the enhanced code).
    pub reply: Option<String>,
    /// The attempt's number, from 1.
    pub attempt: u16,
    /// Time since the message was accepted.
    pub queue_time_ms: u64,
    /// Time the SMTP exchange took.
    pub delivery_time_ms: Option<u64>,
    /// For deferrals: when the next attempt is due.
    pub next_retry: Option<String>,
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: Timestamp) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(t.as_millis());
    humantime::format_rfc3339_millis(at).to_string()
}

/// What the writer thread receives.
enum LogMsg {
    Event(Box<LogEvent>),
    Flush(oneshot::Sender<()>),
}

/// The sending side of the log; events sent to a disabled log are dropped.
#[derive(Debug, Clone)]
pub(crate) struct LogHandle {
    /// `None` when no log file is configured.
    tx: Option<mpsc::Sender<LogMsg>>,
}

impl std::fmt::Debug for LogMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogMsg")
    }
}

impl LogHandle {
    /// A log that writes nothing.
    pub fn disabled() -> LogHandle {
        LogHandle { tx: None }
    }

    /// Opens (appends to, creating) `path` and starts the writer thread. Returns
    /// the handle and the thread to join after the last handle is dropped.
    pub fn open(path: &Path) -> std::io::Result<(LogHandle, std::thread::JoinHandle<()>)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("volley-delivery-log".into())
            .spawn(move || write_loop(rx, BufWriter::with_capacity(64 << 10, file)))?;
        Ok((LogHandle { tx: Some(tx) }, thread))
    }

    /// Queues one event.
    pub fn send(&self, event: LogEvent) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(LogMsg::Event(Box::new(event)));
        }
    }

    /// Resolves once every event sent before is written and flushed.
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(LogMsg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// The writer thread: write everything queued, flush when the queue is empty.
fn write_loop(rx: mpsc::Receiver<LogMsg>, mut out: BufWriter<File>) {
    let mut failed = false;
    let mut line = Vec::with_capacity(512);
    loop {
        let msg = match rx.try_recv() {
            Ok(msg) => msg,
            Err(mpsc::TryRecvError::Empty) => {
                report(&mut failed, out.flush());
                match rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => break,
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        match msg {
            LogMsg::Event(event) => {
                line.clear();
                if serde_json::to_writer(&mut line, &*event).is_ok() {
                    line.push(b'\n');
                    report(&mut failed, out.write_all(&line));
                }
            }
            LogMsg::Flush(done) => {
                report(&mut failed, out.flush());
                let _ = done.send(());
            }
        }
    }
    report(&mut failed, out.flush());
}

/// Reports the first write error on stderr (the engine goes on: the log is
/// informational, the spool holds the truth).
fn report(failed: &mut bool, r: std::io::Result<()>) {
    if let Err(e) = r {
        if !*failed {
            eprintln!("volley: delivery log write failed: {e}");
            *failed = true;
        }
    }
}
