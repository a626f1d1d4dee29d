//! A minimal HTTP/1.1 client for the injector: one keep-alive connection per
//! task, `POST` with a `Content-Length` body, the answer read by its
//! `Content-Length` (or chunked). It shares two cores with the transmitter and the
//! sinks, so it does no more than that: no pooling, redirects or TLS.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest response head accepted.
const MAX_HEAD: usize = 64 << 10;

/// An answer.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// One connection to one server, reconnected when the server closes it.
pub struct Client {
    addr: SocketAddr,
    /// `Host` and `Authorization` header lines, rendered once.
    fixed_headers: String,
    conn: Option<TcpStream>,
    /// Bytes read past the previous answer (none in practice: no pipelining).
    buf: Vec<u8>,
    timeout: Duration,
}

impl Client {
    /// A client for `addr` with a bearer token.
    pub fn new(addr: SocketAddr, token: &str, timeout: Duration) -> Client {
        Client {
            addr,
            fixed_headers: format!("Host: {addr}\r\nAuthorization: Bearer {token}\r\n"),
            conn: None,
            buf: Vec::with_capacity(8 << 10),
            timeout,
        }
    }

    /// `POST path` with `body`; one retry on a fresh connection when a reused one
    /// turns out to be closed before anything was answered.
    pub async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Response> {
        let reused = self.conn.is_some();
        match tokio::time::timeout(self.timeout, self.exchange(path, content_type, body)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) if reused && is_closed(&e) => {
                self.conn = None;
                tokio::time::timeout(self.timeout, self.exchange(path, content_type, body))
                    .await
                    .context("HTTP request timed out")?
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                bail!(
                    "HTTP request to {} timed out after {:?}",
                    self.addr,
                    self.timeout
                )
            }
        }
    }

    async fn exchange(
        &mut self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Response> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            s.set_nodelay(true)?;
            self.conn = Some(s);
            self.buf.clear();
        }
        let head = format!(
            "POST {path} HTTP/1.1\r\n{}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.fixed_headers,
            body.len()
        );
        let conn = self.conn.as_mut().context("no connection")?;
        if body.len() < 64 << 10 {
            let mut all = Vec::with_capacity(head.len() + body.len());
            all.extend_from_slice(head.as_bytes());
            all.extend_from_slice(body);
            conn.write_all(&all).await?;
        } else {
            conn.write_all(head.as_bytes()).await?;
            conn.write_all(body).await?;
        }
        let resp = read_response(conn, &mut self.buf).await?;
        if resp.1 {
            self.conn = None;
        }
        Ok(resp.0)
    }
}

/// Whether an error means "the server had closed the kept-alive connection".
fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::UnexpectedEof
            )
        })
    })
}

/// Reads one answer; the flag says the server will close the connection.
async fn read_response(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<(Response, bool)> {
    let head_end = loop {
        if let Some(i) = memchr::memmem::find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            bail!("response head longer than {MAX_HEAD} bytes");
        }
        fill(conn, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    buf.drain(..head_end);
    let body = if chunked {
        read_chunked(conn, buf).await?
    } else if let Some(n) = length {
        while buf.len() < n {
            fill(conn, buf).await?;
        }
        buf.drain(..n).collect()
    } else {
        // No length: the body runs to the end of the connection.
        loop {
            match conn.read_buf(buf).await? {
                0 => break,
                _ => continue,
            }
        }
        close = true;
        std::mem::take(buf)
    };
    Ok((Response { status, body }, close))
}

async fn read_chunked(conn: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = memchr::memmem::find(buf, b"\r\n") {
                break i;
            }
            fill(conn, buf).await?;
        };
        let size_text = std::str::from_utf8(&buf[..line_end]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            fill(conn, buf).await?;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
        if size == 0 {
            // Trailers are not used by the server; the last chunk ends with CRLF.
            return Ok(body);
        }
    }
}

async fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    buf.reserve(16 << 10);
    if conn.read_buf(buf).await? == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
            .context("server closed the connection");
    }
    Ok(())
}
