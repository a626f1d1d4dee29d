//! The sink's wiring: settings, process-wide state, accept loops and shutdown.
//!
//! [`serve`] takes bound listeners and a shutdown future, so tests bind port 0 and
//! stop the server cleanly; `run` (in `mod.rs`) passes SIGINT/SIGTERM.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::smtp::data::{BareLineEndings, DataLimits};
use crate::smtp::ehlo::Capabilities;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::faults::{Faults, Latency};
use super::options::SinkOptions;
use super::record::Recorder;
use super::stats::{self, Stats, Summary};
use super::{conn, tls, SinkError};

/// Settings, fixed at start, with the replies that depend on them pre-rendered.
pub struct Config {
    /// Bytes of the 220 greeting.
    pub banner: Vec<u8>,
    /// Bytes of the EHLO reply without STARTTLS (plain listener, or after TLS).
    pub ehlo: Vec<u8>,
    /// Bytes of the EHLO reply offering STARTTLS.
    pub ehlo_starttls: Vec<u8>,
    /// Bytes of the HELO reply.
    pub helo: Vec<u8>,
    /// SIZE limit, advertised and enforced.
    pub max_size: u64,
    /// Limits handed to every `DataReader`.
    pub data_limits: DataLimits,
    /// RCPTs per transaction before `452 4.5.3`.
    pub max_rcpts: u32,
    /// Open connections at most; more wait in the listen backlog.
    pub max_conns: usize,
    /// Idle time before a connection is closed with 421.
    pub idle: Duration,
    /// What to break, and how often.
    pub faults: Faults,
    /// Seed for the per-connection random sources.
    pub seed: u64,
    /// `--record` is on: keep envelopes and hash content.
    pub record: bool,
    /// STARTTLS offered, with this acceptor.
    pub tls: Option<TlsAcceptor>,
    /// No periodic rates on stderr.
    pub quiet: bool,
}

impl Config {
    /// Builds the settings from the options (generates the TLS certificate).
    pub fn from_options(args: &SinkOptions) -> Result<Config, SinkError> {
        let host = &args.hostname;
        let mut caps = Capabilities {
            greeting: host.clone(),
            pipelining: true,
            chunking: true,
            size: Some(args.max_size),
            eight_bit_mime: true,
            smtputf8: true,
            enhanced_status_codes: true,
            dsn: true,
            ..Capabilities::default()
        };
        let ehlo = caps.to_ehlo_reply().to_bytes();
        caps.starttls = true;
        let ehlo_starttls = caps.to_ehlo_reply().to_bytes();
        let tls = if args.tls {
            Some(tls::acceptor(host)?)
        } else {
            None
        };
        Ok(Config {
            banner: format!("220 {host} ESMTP volley-load sink\r\n").into_bytes(),
            ehlo,
            ehlo_starttls,
            helo: format!("250 {host}\r\n").into_bytes(),
            max_size: args.max_size,
            data_limits: DataLimits {
                max_size: usize::try_from(args.max_size).unwrap_or(usize::MAX),
                max_line: None,
                bare_line_endings: BareLineEndings::Reject,
            },
            max_rcpts: args.max_rcpts,
            max_conns: args.max_conns.max(1),
            idle: args.idle_timeout.max(Duration::from_secs(1)),
            faults: Faults {
                latency: Latency::new(&args.latency),
                rcpt_tempfail: args.rcpt_tempfail,
                rcpt_permfail: args.rcpt_permfail,
                data_tempfail: args.data_tempfail,
                data_permfail: args.data_permfail,
                disconnect: args.disconnect,
            },
            seed: args.seed,
            record: args.record.is_some(),
            tls,
            quiet: args.quiet,
        })
    }
}

/// State shared by every connection.
pub struct Shared {
    /// Process totals.
    pub stats: Arc<Stats>,
    /// Addresses a `tempfail-once-...@` recipient has been seen with (lowercase).
    pub tempfail_seen: Mutex<HashSet<String>>,
    /// The `--record` file.
    pub recorder: Option<Recorder>,
    /// Woken once at shutdown: every connection sends 421 and closes.
    pub shutdown: Notify,
    /// Set at shutdown, for connections that start waiting after the wake-up.
    pub shutting_down: AtomicBool,
    /// Woken by [`Sink::stats`](super::Sink::stats): connections waiting for input
    /// add their local counts to the totals (busy ones do every 100 ms anyway).
    pub flush: Notify,
    /// Numbers connections (each gets its own random stream).
    next_conn: AtomicU64,
}

impl Shared {
    pub fn new(recorder: Option<Recorder>) -> Shared {
        Shared {
            stats: Arc::new(Stats::default()),
            tempfail_seen: Mutex::new(HashSet::new()),
            recorder,
            shutdown: Notify::new(),
            shutting_down: AtomicBool::new(false),
            flush: Notify::new(),
            next_conn: AtomicU64::new(0),
        }
    }
}

/// Binds a listener with a backlog deep enough for a connection storm.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Accepts on every listener until `shutdown` completes, then asks every
/// connection to close, waits (up to 2 s) for them to add their counts, and returns
/// the totals.
pub async fn serve(
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Summary {
    let start = Instant::now();
    let limit = Arc::new(Semaphore::new(cfg.max_conns));
    let clock = tokio::spawn(stats::clock(shared.stats.clone(), cfg.quiet));
    let accepts: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(l, cfg.clone(), shared.clone(), limit.clone())))
        .collect();
    shutdown.await;
    let elapsed = start.elapsed();
    for a in &accepts {
        a.abort();
    }
    shared.shutting_down.store(true, Relaxed);
    shared.shutdown.notify_waiters();
    let deadline = Instant::now() + Duration::from_secs(2);
    while shared.stats.open.load(Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    clock.abort();
    shared.stats.summary(elapsed)
}

async fn accept_loop(
    listener: TcpListener,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
) {
    let mut warned = false;
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if !warned {
                    eprintln!("sink: accept: {e}");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let listen = match tcp.local_addr() {
            Ok(a) => a,
            Err(_) => continue,
        };
        let n = shared.next_conn.fetch_add(1, Relaxed);
        shared.stats.connections.fetch_add(1, Relaxed);
        shared.stats.open.fetch_add(1, Relaxed);
        let (cfg, shared) = (cfg.clone(), shared.clone());
        tokio::spawn(async move {
            conn::handle(tcp, peer, listen, cfg, shared.clone(), n).await;
            shared.stats.open.fetch_sub(1, Relaxed);
            drop(permit);
        });
    }
}
