//! One client connection: the socket (plain, then maybe TLS), the timers, and
//! the outside-world half of every [`Action`] the session asks for.
//!
//! Timers: while the session reads commands, one deadline of `command_timeout`
//! runs from the end of the last complete command line, so a line must arrive
//! whole within it however slowly its bytes come (slowloris), and an idle client
//! is dropped after it too. While message data arrives, `data_timeout` is the
//! longest silence. Writes are bounded by `command_timeout`: a client that does
//! not read its replies cannot hold the connection either.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::server::TlsStream;

use super::limits::Slot;
use super::{store, tls, Shared};
use crate::smtp::server::{Action, AuthOutcome, Phase, Session};

/// How long a closing connection keeps reading (and discarding) what the client
/// still sends, so that our last reply is not destroyed by a TCP reset.
const LINGER: Duration = Duration::from_secs(1);
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// The client's byte stream, before and after STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between the two, during the handshake.
    Gone,
}

impl Stream {
    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read_buf(buf).await,
            Stream::Tls(s) => s.read_buf(buf).await,
            Stream::Gone => Ok(0),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => write_flush(s, bytes).await,
            Stream::Tls(s) => write_flush(s.as_mut(), bytes).await,
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Gone => Ok(()),
        };
    }
}

async fn write_flush<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

/// Serves one admitted client until it quits, times out, misbehaves or the
/// listener stops.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    _slot: Slot,
) {
    let _ = tcp.set_nodelay(true);
    let trusted = shared.is_trusted(peer.ip());
    let session = Session::new(Arc::clone(&shared.session), peer.ip(), trusted);
    let mut conn = Conn {
        stream: Stream::Plain(tcp),
        buf: Vec::with_capacity(4096),
        out: Vec::with_capacity(1024),
        session,
        shared,
        peer,
        stop,
        stopping: false,
    };
    conn.run().await;
}

struct Conn {
    stream: Stream,
    /// Bytes read and not yet consumed by the session.
    buf: Vec<u8>,
    /// Replies not yet written.
    out: Vec<u8>,
    session: Session,
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Becomes true when the listener stops.
    stop: watch::Receiver<bool>,
    /// The session was told the listener is stopping.
    stopping: bool,
}

impl Conn {
    async fn run(&mut self) {
        self.session.banner(&mut self.out);
        let command_timeout = self.shared.command_timeout;
        let data_timeout = self.shared.data_timeout;
        let mut deadline = Instant::now() + command_timeout;
        let mut seen = self.session.progress();
        loop {
            if !self.stopping && *self.stop.borrow() {
                self.stopping = true;
                self.session.shutdown();
            }
            let (n, action) = self.session.feed(&self.buf, &mut self.out);
            self.buf.drain(..n);
            match action {
                Action::Read => {
                    if !self.flush().await {
                        return;
                    }
                    let phase = self.session.phase();
                    match phase {
                        Phase::Data => deadline = Instant::now() + data_timeout,
                        Phase::Command if self.session.progress() != seen => {
                            seen = self.session.progress();
                            deadline = Instant::now() + command_timeout;
                        }
                        Phase::Command => {}
                    }
                    if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
                        self.buf.reserve(READ_CHUNK);
                    }
                    // A stop interrupts a wait for a command, not message data.
                    let watch_stop = phase == Phase::Command && !self.stopping;
                    let read = tokio::select! {
                        r = timeout_at(deadline, self.stream.read_buf(&mut self.buf)) => r,
                        _ = self.stop.changed(), if watch_stop => {
                            self.stopping = true;
                            self.session.shutdown();
                            continue;
                        }
                    };
                    match read {
                        Ok(Ok(0)) | Ok(Err(_)) => return,
                        Ok(Ok(_)) => {}
                        Err(_elapsed) => {
                            self.session.timed_out(&mut self.out);
                            return self.close().await;
                        }
                    }
                }
                Action::Close => return self.close().await,
                Action::StartTls => {
                    if !self.flush().await {
                        return;
                    }
                    // RFC 3207 5: anything sent in clear after STARTTLS is dropped.
                    self.buf.clear();
                    let Some(info) = self.start_tls(command_timeout).await else {
                        return;
                    };
                    self.session.tls_started(info);
                    seen = self.session.progress();
                    deadline = Instant::now() + command_timeout;
                }
                Action::AuthGate => {
                    let locked = self.shared.auth.is_locked(self.peer.ip());
                    self.session.auth_gate(locked, &mut self.out);
                }
                Action::Verify(credentials) => {
                    let ip = self.peer.ip();
                    let outcome = if self.shared.auth.is_locked(ip) {
                        AuthOutcome::Locked
                    } else {
                        self.shared.auth.verify(credentials).await
                    };
                    if outcome == AuthOutcome::Rejected {
                        self.shared.auth.record_failure(ip);
                    }
                    self.session.auth_verified(outcome, &mut self.out);
                }
                Action::Store(transaction) => {
                    let outcome = store::store(
                        &self.shared.engine,
                        &self.shared.session.hostname,
                        self.shared.kind.name(),
                        *transaction,
                    )
                    .await;
                    self.session.stored(outcome, &mut self.out);
                }
            }
        }
    }

    /// Writes pending replies; false if the client is gone or does not read.
    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let ok = matches!(
            timeout(
                self.shared.command_timeout,
                self.stream.write_all(&self.out)
            )
            .await,
            Ok(Ok(()))
        );
        self.out.clear();
        ok
    }

    /// Writes the last replies, then closes without losing them.
    async fn close(&mut self) {
        if self.flush().await {
            self.stream.shutdown().await;
            linger(&mut self.stream).await;
        }
    }

    async fn start_tls(&mut self, limit: Duration) -> Option<crate::smtp::server::TlsInfo> {
        let acceptor = self.shared.tls.clone()?;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return None;
        };
        let tls = timeout(limit, acceptor.accept(tcp)).await.ok()?.ok()?;
        let info = tls::info(&tls);
        self.stream = Stream::Tls(Box::new(tls));
        Some(info)
    }
}

/// Reads and discards until the client closes or [`LINGER`] passes.
async fn linger(stream: &mut Stream) {
    let deadline = Instant::now() + LINGER;
    let mut sink = Vec::with_capacity(4096);
    loop {
        sink.clear();
        match timeout_at(deadline, stream.read_buf(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => continue,
            _ => return,
        }
    }
}

/// Answers a client over the connection limits with `reply` and closes.
pub async fn refuse(tcp: TcpStream, reply: &'static [u8]) {
    let mut stream = Stream::Plain(tcp);
    if matches!(timeout(LINGER, stream.write_all(reply)).await, Ok(Ok(()))) {
        stream.shutdown().await;
        linger(&mut stream).await;
    }
}
