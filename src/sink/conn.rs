//! One connection's I/O: read into a reused buffer, let the [`Session`] handle the
//! whole batch, write every reply of the batch in one write, then read again. Also
//! the idle timeout, shutdown, injected delays and the STARTTLS upgrade.
//!
//! Generic over the stream, so the same loop runs over TCP and over TLS.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::faults::Rng;
use super::inbuf::InBuf;
use super::replies::{IDLE_TIMEOUT, SHUTTING_DOWN};
use super::server::{Config, Shared};
use super::session::{Next, Session, Step};

/// First read buffer size; grows (doubling) while reads fill it, up to [`MAX_BUF`].
/// Small to start so 10,000 idle connections stay cheap.
const INITIAL_BUF: usize = 16 * 1024;
/// Largest read buffer: big reads of message bodies, few syscalls.
const MAX_BUF: usize = 256 * 1024;
/// Least free space offered to a read.
const MIN_READ: usize = 4 * 1024;
/// Time allowed for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a pass over one stream ended.
enum End {
    Closed,
    StartTls,
}

/// Buffers kept for the connection's life.
struct Buffers {
    input: InBuf,
    /// Replies of the current batch, written in one go.
    out: Vec<u8>,
}

/// Serves one accepted connection to the end.
pub async fn handle(
    mut tcp: TcpStream,
    peer: SocketAddr,
    listen: SocketAddr,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    conn_no: u64,
) {
    let _ = tcp.set_nodelay(true);
    let rng = Rng::new(cfg.seed, conn_no);
    let mut session = Session::new(cfg.clone(), shared.clone(), rng, peer, listen);
    let mut bufs = Buffers {
        input: InBuf::with_capacity(INITIAL_BUF),
        out: Vec::with_capacity(512),
    };
    let first = session.banner(&mut bufs.out);
    let end = drive(&mut tcp, &mut session, &mut bufs, first, &cfg, &shared).await;
    if let (Ok(End::StartTls), Some(acceptor)) = (end, &cfg.tls) {
        bufs.input.clear();
        if let Ok(Ok(mut tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
        {
            session.tls_started();
            let _ = drive(&mut tls, &mut session, &mut bufs, Step::MORE, &cfg, &shared).await;
        }
    }
    if !session.records.is_empty() {
        if let Some(r) = &shared.recorder {
            r.append(&session.records);
        }
    }
    session.counts.flush(&shared.stats);
}

/// Runs the session over `io` until it closes, fails or asks for TLS.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    session: &mut Session,
    bufs: &mut Buffers,
    mut step: Step,
    cfg: &Config,
    shared: &Shared,
) -> io::Result<End> {
    let idle = cfg.idle;
    let mut last_read = Instant::now();
    // One timer for the connection, moved forward lazily: it fires at most once per
    // idle period instead of being re-armed on every read.
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let shutdown = shared.shutdown.notified();
    tokio::pin!(shutdown);
    shutdown.as_mut().enable();
    let flush = shared.flush.notified();
    tokio::pin!(flush);
    flush.as_mut().enable();

    loop {
        if let Some((at, delay)) = step.delay {
            write_out(io, &bufs.out[..at], session, shared, idle).await?;
            bufs.out.drain(..at);
            tokio::time::sleep(delay).await;
        }
        match step.next {
            Next::More => {}
            Next::Close => {
                write_out(io, &bufs.out, session, shared, idle).await?;
                let _ = io.shutdown().await;
                return Ok(End::Closed);
            }
            Next::Drop => {
                write_out(io, &bufs.out, session, shared, idle).await?;
                return Ok(End::Closed);
            }
            Next::StartTls => {
                write_out(io, &bufs.out, session, shared, idle).await?;
                bufs.out.clear();
                return Ok(End::StartTls);
            }
        }
        step = session.process(&mut bufs.input, &mut bufs.out);
        if !step.is_more() {
            continue;
        }

        // The input is used up: one write for the whole batch, then read.
        if !bufs.out.is_empty() {
            write_out(io, &bufs.out, session, shared, idle).await?;
            bufs.out.clear();
        }
        session.counts.maybe_flush(&shared.stats);
        if shared.shutting_down.load(Relaxed) {
            return close_with(io, session, bufs, SHUTTING_DOWN, shared, idle).await;
        }
        bufs.input.prepare(MIN_READ);
        let spare = bufs.input.data.capacity() - bufs.input.data.len();
        let n = loop {
            tokio::select! {
                biased;
                r = io.read_buf(&mut bufs.input.data) => break r?,
                _ = &mut timer => {
                    let deadline = last_read + idle;
                    if Instant::now() >= deadline {
                        return close_with(io, session, bufs, IDLE_TIMEOUT, shared, idle).await;
                    }
                    timer.as_mut().reset(deadline);
                }
                _ = &mut shutdown => {
                    return close_with(io, session, bufs, SHUTTING_DOWN, shared, idle).await;
                }
                _ = &mut flush => {
                    session.counts.flush(&shared.stats);
                    flush.set(shared.flush.notified());
                    flush.as_mut().enable();
                }
            }
        };
        if n == 0 {
            return Ok(End::Closed);
        }
        last_read = Instant::now();
        let cap = bufs.input.data.capacity();
        if n == spare && cap < MAX_BUF {
            bufs.input.data.reserve(cap);
        }
    }
}

/// Sends a last 421 and closes.
async fn close_with<S: AsyncWrite + Unpin>(
    io: &mut S,
    session: &mut Session,
    bufs: &mut Buffers,
    reply: &'static [u8],
    shared: &Shared,
    idle: Duration,
) -> io::Result<End> {
    session.closing(&mut bufs.out, reply);
    let short = idle.min(Duration::from_secs(1));
    write_out(io, &bufs.out, session, shared, short).await?;
    let _ = io.shutdown().await;
    Ok(End::Closed)
}

/// Appends pending record lines to the record file, then writes `out` (so a client
/// that has read a 250 finds its line in the file). A client that does not read
/// for `limit` is dropped.
async fn write_out<S: AsyncWrite + Unpin>(
    io: &mut S,
    out: &[u8],
    session: &mut Session,
    shared: &Shared,
    limit: Duration,
) -> io::Result<()> {
    if !session.records.is_empty() {
        if let Some(r) = &shared.recorder {
            r.append(&session.records);
        }
        session.records.clear();
    }
    if out.is_empty() {
        return Ok(());
    }
    let write = async {
        io.write_all(out).await?;
        io.flush().await
    };
    match tokio::time::timeout(limit, write).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client is not reading",
        )),
    }
}
