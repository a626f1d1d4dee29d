//! A small in-process SMTP receiver for engine tests: PIPELINING, CHUNKING (BDAT)
//! or DATA, and magic local parts that make it misbehave.
//!
//! - `bounce...@`: RCPT gets `550 5.1.1`.
//! - `defer...@`: RCPT gets `450 4.2.0 mailbox busy`.
//! - `tempfail-once...@`: `450 4.2.0` the first time the address is seen, then 250.
//! - `data-fail...@`: accepted; the end-of-data reply is `554 5.6.0`.
//! - `disconnect-data...@`: accepted; the connection is dropped once the body arrived.
//! - `slow...@`: accepted; the replies written with it come 300 ms late.
//!
//! With `max_rcpts`, RCPTs beyond that many in one transaction get `452 4.5.3`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The reverse-path, without brackets.
    pub from: String,
    /// Accepted recipients.
    pub rcpts: Vec<String>,
    /// The body as received (unstuffed for DATA).
    pub body: Vec<u8>,
    /// Whether it came with BDAT.
    pub bdat: bool,
}

/// How the sink behaves.
#[derive(Debug, Clone, Copy)]
pub struct SinkOptions {
    /// Offer CHUNKING.
    pub chunking: bool,
    /// Most RCPTs per transaction before 452.
    pub max_rcpts: usize,
    /// Most connections open at once; more get a `421` banner and are closed.
    pub max_conns: usize,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            chunking: true,
            max_rcpts: usize::MAX,
            max_conns: usize::MAX,
        }
    }
}

/// What the sink saw.
#[derive(Debug, Default)]
pub struct SinkState {
    /// Accepted messages.
    pub messages: Mutex<Vec<Received>>,
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Connections open now.
    pub open: AtomicUsize,
    /// Most connections open at once.
    pub max_open: AtomicUsize,
    /// Connections refused with a 421 banner.
    pub refused: AtomicUsize,
    /// RCPT commands received.
    pub rcpts_seen: AtomicUsize,
    /// Addresses seen by `tempfail-once`.
    seen: Mutex<HashSet<String>>,
}

impl SinkState {
    /// Recipients accepted with an accepted message.
    pub fn recipients(&self) -> usize {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.rcpts.len())
            .sum()
    }
}

/// A running sink; stops when dropped.
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub state: Arc<SinkState>,
    task: JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// A sink on `ip` (any port when `port` is 0).
    pub async fn start(ip: &str, port: u16, options: SinkOptions) -> std::io::Result<Sink> {
        let listener = TcpListener::bind((ip, port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SinkState::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                let now = st.open.fetch_add(1, Ordering::SeqCst) + 1;
                st.max_open.fetch_max(now, Ordering::SeqCst);
                let st = st.clone();
                let refuse = now > options.max_conns;
                tokio::spawn(async move {
                    let _ = serve(stream, &st, options, refuse).await;
                    st.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(Sink { addr, state, task })
    }
}

#[derive(Default)]
struct Tx {
    from: Option<String>,
    rcpts: Vec<String>,
    body: Vec<u8>,
    fail_data: bool,
    drop_data: bool,
}

fn angle(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].to_string()
}

async fn serve(
    mut stream: TcpStream,
    st: &SinkState,
    opt: SinkOptions,
    refuse: bool,
) -> std::io::Result<()> {
    if refuse {
        st.refused.fetch_add(1, Ordering::SeqCst);
        stream
            .write_all(b"421 4.7.0 too many connections\r\n")
            .await?;
        return Ok(());
    }
    stream.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut buf: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut tx = Tx::default();
    let mut in_data = false;
    let mut bdat: Option<(usize, bool)> = None;
    let mut chunk = vec![0u8; 64 << 10];
    let mut slow = false;
    loop {
        loop {
            if let Some((n, last)) = bdat {
                if buf.len() < n {
                    break;
                }
                tx.body.extend(buf.drain(..n));
                bdat = None;
                if last {
                    if tx.drop_data {
                        stream.write_all(&out).await?;
                        return Ok(());
                    }
                    finish(st, &mut tx, true, &mut out);
                } else {
                    out.extend_from_slice(b"250 2.0.0 chunk ok\r\n");
                }
                continue;
            }
            if in_data {
                let Some(end) = find(&buf, b"\r\n.\r\n") else {
                    break;
                };
                let raw: Vec<u8> = buf.drain(..end + 5).collect();
                in_data = false;
                tx.body = unstuff(&raw[..end + 2]);
                if tx.drop_data {
                    stream.write_all(&out).await?;
                    return Ok(());
                }
                finish(st, &mut tx, false, &mut out);
                continue;
            }
            let Some(nl) = find(&buf, b"\r\n") else { break };
            let line: Vec<u8> = buf.drain(..nl + 2).collect();
            let line = String::from_utf8_lossy(&line[..nl]).to_string();
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                out.extend_from_slice(b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n");
                if opt.chunking {
                    out.extend_from_slice(b"250-CHUNKING\r\n");
                }
                out.extend_from_slice(b"250 ENHANCEDSTATUSCODES\r\n");
            } else if upper.starts_with("MAIL FROM:") {
                tx = Tx {
                    from: Some(angle(&line[10..])),
                    ..Tx::default()
                };
                out.extend_from_slice(b"250 2.1.0 ok\r\n");
            } else if upper.starts_with("RCPT TO:") {
                let rcpt = angle(&line[8..]);
                st.rcpts_seen.fetch_add(1, Ordering::SeqCst);
                let local = rcpt.split('@').next().unwrap_or("").to_ascii_lowercase();
                let first_time = st.seen.lock().unwrap().insert(rcpt.to_ascii_lowercase());
                let reply: &[u8] = if tx.from.is_none() {
                    b"503 5.5.1 MAIL first\r\n"
                } else if tx.rcpts.len() >= opt.max_rcpts {
                    b"452 4.5.3 too many recipients\r\n"
                } else if local.starts_with("bounce") {
                    b"550 5.1.1 no such user\r\n"
                } else if local.starts_with("defer")
                    || (local.starts_with("tempfail-once") && first_time)
                {
                    b"450 4.2.0 mailbox busy\r\n"
                } else {
                    slow |= local.starts_with("slow");
                    tx.fail_data |= local.starts_with("data-fail");
                    tx.drop_data |= local.starts_with("disconnect-data");
                    tx.rcpts.push(rcpt);
                    b"250 2.1.5 ok\r\n"
                };
                out.extend_from_slice(reply);
            } else if upper.starts_with("BDAT") {
                let mut parts = upper.split_whitespace().skip(1);
                let n = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let last = parts.next() == Some("LAST");
                bdat = Some((n, last));
            } else if upper == "DATA" {
                if tx.rcpts.is_empty() {
                    out.extend_from_slice(b"554 5.5.1 no valid recipients\r\n");
                } else {
                    in_data = true;
                    out.extend_from_slice(b"354 go ahead\r\n");
                }
            } else if upper == "RSET" {
                tx = Tx::default();
                out.extend_from_slice(b"250 2.0.0 ok\r\n");
            } else if upper == "QUIT" {
                out.extend_from_slice(b"221 2.0.0 bye\r\n");
                stream.write_all(&out).await?;
                return Ok(());
            } else {
                out.extend_from_slice(b"250 2.0.0 ok\r\n");
            }
        }
        if !out.is_empty() {
            if std::mem::take(&mut slow) {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            stream.write_all(&out).await?;
            out.clear();
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn finish(st: &SinkState, tx: &mut Tx, bdat: bool, out: &mut Vec<u8>) {
    let t = std::mem::take(tx);
    if t.rcpts.is_empty() {
        out.extend_from_slice(b"554 5.5.1 no valid recipients\r\n");
    } else if t.fail_data {
        out.extend_from_slice(b"554 5.6.0 content refused\r\n");
    } else {
        st.messages.lock().unwrap().push(Received {
            from: t.from.unwrap_or_default(),
            rcpts: t.rcpts,
            body: t.body,
            bdat,
        });
        out.extend_from_slice(b"250 2.0.0 queued\r\n");
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Undoes dot-stuffing of a DATA section (ending with CRLF).
fn unstuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut at_line_start = true;
    let mut i = 0;
    while i < data.len() {
        if at_line_start && data[i] == b'.' {
            i += 1;
            if i >= data.len() {
                break;
            }
        }
        out.push(data[i]);
        at_line_start = data[i] == b'\n';
        i += 1;
    }
    out
}
