//! One connection task: open a session, run it, reconnect after a 421 or a drop,
//! until the schedule is done and the replies are in; and the state all tasks share.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::conn::{Conn, ConnError, OpenOptions};
use super::envelope::EnvelopeSpec;
use super::message::Message;
use super::report::Stats;
use super::schedule::{Claim, Schedule};
use super::session::Session;

/// First pause before reconnecting after a failed attempt or an idle session.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What all connection tasks share. Read-only except the counters.
pub struct Shared {
    /// Hands out messages and their due times.
    pub schedule: Schedule,
    /// The one message every transaction sends.
    pub message: Message,
    /// Sender and recipient generation.
    pub envelope: EnvelopeSpec,
    /// Target addresses and how to open each (SNI differs per target).
    pub targets: Vec<(SocketAddr, OpenOptions)>,
    /// Most transactions in flight per connection when pipelining.
    pub window: usize,
    /// `--no-pipelining` not given.
    pub pipelining: bool,
    /// `--chunking` given (used only where offered).
    pub chunking: bool,
    /// How long to wait for outstanding replies once no more messages are due.
    pub drain: Duration,
    /// Number of connection tasks.
    pub connections: usize,
    /// Completed transactions, for the progress bar.
    pub completed: AtomicU64,
    /// Whether any session was ever established.
    pub connected_once: AtomicBool,
    /// Connection tasks whose first attempt failed.
    pub first_failures: AtomicUsize,
    /// Why the run must fail (exit 1), if it must.
    pub fatal: Mutex<Option<String>>,
    /// Every task makes its first connection attempt before any message is claimed,
    /// so connection set-up is not charged to the first messages' latency.
    pub ready: tokio::sync::Barrier,
}

impl Shared {
    fn fail(&self, why: String) {
        self.fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.schedule.stop();
    }
}

/// One connection task: opens a session to target `t`, runs it, reconnects after a
/// 421 or a drop, until the schedule is done and its replies are in.
pub async fn connection(shared: Arc<Shared>, t: usize) -> Stats {
    let (addr, opts) = &shared.targets[t];
    let mut stats = Stats::default();
    let mut pending: Option<Claim> = None;
    let mut drain: Option<Instant> = None;
    let mut backoff = MIN_BACKOFF;
    let mut first = true;
    loop {
        let opened = Conn::open(*addr, opts).await;
        if std::mem::take(&mut first) {
            if let Err(e) = &opened {
                let failed = shared.first_failures.fetch_add(1, Ordering::SeqCst) + 1;
                if failed == shared.connections && !shared.connected_once.load(Ordering::SeqCst) {
                    shared.fail(format!("cannot reach {addr}: {e}"));
                }
            } else {
                shared.connected_once.store(true, Ordering::SeqCst);
            }
            shared.ready.wait().await;
        }
        match opened {
            Ok((conn, caps)) => {
                shared.connected_once.store(true, Ordering::SeqCst);
                backoff = MIN_BACKOFF;
                let mut session = Session::new(conn, &caps, &shared);
                stats.session(session.mode);
                let done_before = stats.messages;
                let result = session.run(&mut pending, &mut drain, &mut stats).await;
                if stats.messages > done_before {
                    // The session did work: a drop is a fault to count, not a
                    // server to back off from. Reconnect at once.
                    backoff = Duration::ZERO;
                }
                match result {
                    Ok(()) => {
                        session
                            .conn
                            .quit(opts.timeout.min(Duration::from_secs(2)))
                            .await;
                        break;
                    }
                    Err(e) => {
                        stats.lost += session.in_flight() as u64;
                        if matches!(e, ConnError::Drain) {
                            // Our deadline, not the server's doing.
                            break;
                        }
                        stats.disconnects += 1;
                    }
                }
            }
            Err(e) => {
                stats.connect_errors += 1;
                if e.is_fatal() {
                    shared.fail(format!("{addr}: {e}"));
                    break;
                }
            }
        }
        let now = Instant::now();
        if shared.schedule.is_done() {
            if pending.is_none() {
                break;
            }
            drain.get_or_insert(now + shared.drain);
        }
        if drain.is_some_and(|d| now >= d) || shared.schedule.deadline().is_some_and(|d| now >= d) {
            break;
        }
        if !backoff.is_zero() {
            tokio::time::sleep(backoff).await;
        }
        backoff = (backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
    }
    if pending.is_some() {
        stats.unsent += 1;
    }
    stats
}
