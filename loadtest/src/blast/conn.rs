//! One SMTP connection's transport: TCP or TLS, a read buffer and the reply parser,
//! and the opening (greeting, EHLO, optional STARTTLS).
//!
//! Reply framing is `volley::smtp::reply::ReplyParser`; this module only moves
//! bytes. Reads are cancel-safe, so the session can wait on "a reply or the next
//! due time" with `select!`.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use volley::smtp::command::Command;
use volley::smtp::ehlo::Capabilities;
use volley::smtp::reply::{Reply, ReplyError, ReplyParser};

use rustls::pki_types::ServerName;

/// Largest read buffer (a 256-line EHLO reply of 512-byte lines fits).
const MAX_BUF: usize = 256 * 1024;
/// Most slices per `writev` (Linux IOV_MAX is 1024).
const MAX_IOV: usize = 1024;

/// Why a connection ended or could not be opened. The session decides from the
/// variant whether to reconnect or give up on the run.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed by the server")]
    Closed,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("bad reply: {0}")]
    Reply(#[from] ReplyError),
    #[error("server closing the connection (421)")]
    Closing,
    #[error("reply {0} with no command outstanding")]
    Unexpected(u16),
    #[error("greeting refused with {0}")]
    Greeting(u16),
    #[error("server does not offer STARTTLS")]
    NoStartTls,
    #[error("STARTTLS refused with {0}")]
    StartTlsRefused(u16),
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    #[error("drain timeout: replies still outstanding")]
    Drain,
}

impl ConnError {
    /// Errors that retrying cannot fix: the run stops.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ConnError::NoStartTls)
    }
}

/// TCP or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How to open a connection.
#[derive(Clone)]
pub struct OpenOptions {
    /// `EHLO` argument.
    pub ehlo: String,
    /// Per-reply (and connect) timeout.
    pub timeout: Duration,
    /// `Some` for `--starttls`: the connector and the name to present (SNI).
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// A connection: the stream, unparsed input and the reply parser.
pub struct Conn {
    /// The transport.
    io: Stream,
    /// Input; `buf[start..end]` is not yet consumed by the parser.
    buf: Vec<u8>,
    /// First unconsumed byte.
    start: usize,
    /// End of the bytes read.
    end: usize,
    /// Resumable parser over `buf[start..end]`.
    parser: ReplyParser,
}

impl Conn {
    fn new(io: Stream) -> Conn {
        Conn {
            io,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
            parser: ReplyParser::new(),
        }
    }

    /// Connects, reads the greeting, says EHLO (HELO if refused), and upgrades with
    /// STARTTLS when asked (saying EHLO again). Returns the server's capabilities.
    pub async fn open(
        addr: SocketAddr,
        opts: &OpenOptions,
    ) -> Result<(Conn, Capabilities), ConnError> {
        let tcp = match tokio::time::timeout(opts.timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnError::ConnectTimeout),
            Ok(Err(e)) => return Err(ConnError::Connect(e)),
            Ok(Ok(s)) => s,
        };
        tcp.set_nodelay(true)?;
        let mut conn = Conn::new(Stream::Plain(tcp));
        let greeting = conn.read_reply(opts.timeout).await?;
        if greeting.code.get() != 220 {
            return Err(ConnError::Greeting(greeting.code.get()));
        }
        let mut caps = conn.ehlo(opts).await?;
        if let Some((connector, name)) = &opts.tls {
            if !caps.starttls {
                return Err(ConnError::NoStartTls);
            }
            let mut line = Vec::new();
            Command::StartTls.write_to(&mut line);
            conn.io.write_all(&line).await?;
            let reply = conn.read_reply(opts.timeout).await?;
            if reply.code.get() != 220 {
                return Err(ConnError::StartTlsRefused(reply.code.get()));
            }
            let Stream::Plain(tcp) = conn.io else {
                unreachable!("TLS before STARTTLS")
            };
            // Bytes after the 220 would be injected plaintext: start clean.
            let handshake = connector.connect(name.clone(), tcp);
            let tls = match tokio::time::timeout(opts.timeout, handshake).await {
                Err(_) => return Err(ConnError::Timeout(opts.timeout)),
                Ok(Err(e)) => return Err(ConnError::Tls(e)),
                Ok(Ok(s)) => s,
            };
            conn = Conn::new(Stream::Tls(Box::new(tls)));
            caps = conn.ehlo(opts).await?;
        }
        Ok((conn, caps))
    }

    /// EHLO, falling back to HELO (no extensions) when EHLO is refused.
    async fn ehlo(&mut self, opts: &OpenOptions) -> Result<Capabilities, ConnError> {
        let mut line = Vec::new();
        Command::Ehlo(opts.ehlo.clone()).write_to(&mut line);
        self.io.write_all(&line).await?;
        let reply = self.read_reply(opts.timeout).await?;
        if reply.code.is_positive() {
            return Ok(Capabilities::from_ehlo_reply(&reply));
        }
        check_closing(&reply)?;
        line.clear();
        Command::Helo(opts.ehlo.clone()).write_to(&mut line);
        self.io.write_all(&line).await?;
        let reply = self.read_reply(opts.timeout).await?;
        if !reply.code.is_positive() {
            return Err(ConnError::Greeting(reply.code.get()));
        }
        Ok(Capabilities::default())
    }

    /// The next complete reply already in the buffer, if any.
    pub fn next_buffered(&mut self) -> Result<Option<Reply>, ConnError> {
        match self.parser.parse(&self.buf[self.start..self.end])? {
            None => Ok(None),
            Some((reply, n)) => {
                self.start += n;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                Ok(Some(reply))
            }
        }
    }

    /// Reads more input (one `read`). Cancel-safe: nothing is lost if the future
    /// is dropped before it completes.
    pub async fn fill(&mut self) -> Result<(), ConnError> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                // The parser's state is relative to `start`, so moving is safe.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_BUF {
                self.buf.resize(self.buf.len() * 2, 0);
            } else {
                return Err(ConnError::Reply(ReplyError::LineTooLong));
            }
        }
        let n = self.io.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(ConnError::Closed);
        }
        self.end += n;
        Ok(())
    }

    /// Reads one reply, waiting at most `timeout` for more input each time.
    pub async fn read_reply(&mut self, timeout: Duration) -> Result<Reply, ConnError> {
        loop {
            if let Some(reply) = self.next_buffered()? {
                return Ok(reply);
            }
            match tokio::time::timeout(timeout, self.fill()).await {
                Err(_) => return Err(ConnError::Timeout(timeout)),
                Ok(r) => r?,
            }
        }
    }

    /// Writes every slice (vectored; partial writes resumed), then flushes.
    pub async fn write_all_vectored(&mut self, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
        while !slices.is_empty() {
            let batch = slices.len().min(MAX_IOV);
            let n = self.io.write_vectored(&slices[..batch]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, n);
        }
        self.io.flush().await
    }

    /// Sends QUIT and waits briefly for its reply, then closes. Errors are ignored:
    /// the run's results are already counted.
    pub async fn quit(mut self, timeout: Duration) {
        let mut line = Vec::new();
        Command::Quit.write_to(&mut line);
        if self.io.write_all(&line).await.is_ok() {
            let _ = self.read_reply(timeout).await;
        }
        let _ = tokio::time::timeout(timeout, self.io.shutdown()).await;
    }
}

/// `Err(Closing)` for a 421 reply.
pub fn check_closing(reply: &Reply) -> Result<(), ConnError> {
    if reply.code.get() == 421 {
        Err(ConnError::Closing)
    } else {
        Ok(())
    }
}
