//! The byte stream under a session: plaintext, or TLS after STARTTLS, over any
//! `AsyncRead + AsyncWrite` (a `TcpStream` in production, `tokio::io::duplex` in
//! tests). Vectored writes pass through to the socket (`writev`) or to rustls.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::client::TlsStream;

/// The transport of one session.
#[derive(Debug)]
pub enum Transport<S> {
    /// Before STARTTLS, or without it.
    Plain(S),
    /// After a successful STARTTLS.
    Tls(Box<TlsStream<S>>),
    /// Only while STARTTLS takes the plain stream to wrap it; a failed handshake
    /// leaves it here (the connection is gone).
    Gone,
}

impl<S> Transport<S> {
    /// Whether the bytes go through TLS (and so are copied into records).
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection lost during STARTTLS",
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Transport<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Transport<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
            Transport::Gone => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s).poll_flush(cx),
            Transport::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// Most slices handed to one `writev` (Linux `IOV_MAX`).
const MAX_IOV: usize = 1024;

/// Writes every byte of `bufs` with vectored writes, resuming after partial
/// writes without copying; `on_write` is called once per write call that took
/// bytes (a syscall on a plain socket). Each call gets `per_write` to make
/// progress. `bufs` is consumed (advanced) as it goes.
pub(crate) async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut bufs: &mut [IoSlice<'_>],
    per_write: std::time::Duration,
    mut on_write: impl FnMut(usize),
) -> Result<(), WriteError> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let window = bufs.len().min(MAX_IOV);
        let n = tokio::time::timeout(
            per_write,
            std::future::poll_fn(|cx| Pin::new(&mut *w).poll_write_vectored(cx, &bufs[..window])),
        )
        .await
        .map_err(|_| WriteError::Timeout)?
        .map_err(WriteError::Io)?;
        if n == 0 {
            return Err(WriteError::Io(io::ErrorKind::WriteZero.into()));
        }
        on_write(n);
        IoSlice::advance_slices(&mut bufs, n);
    }
    // TLS buffers records until flushed; a socket's flush is free.
    tokio::time::timeout(
        per_write,
        std::future::poll_fn(|cx| Pin::new(&mut *w).poll_flush(cx)),
    )
    .await
    .map_err(|_| WriteError::Timeout)?
    .map_err(WriteError::Io)
}

/// Why a write did not complete.
#[derive(Debug)]
pub(crate) enum WriteError {
    Timeout,
    Io(io::Error),
}
