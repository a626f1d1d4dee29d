//! Egress tests: a scripted in-process SMTP server over `tokio::io::duplex` (and
//! loopback TCP), driven by real sessions. The send tests run once per write
//! path ([`Via`]), over loopback TCP, through [`on_every_path!`].

/// Runs each named `async fn(Via)` test once per write path: vectored, io_uring
/// with SENDMSG only, and io_uring with SENDMSG_ZC for every write.
macro_rules! on_every_path {
    ($($name:ident),* $(,)?) => {
        mod vectored {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Via::Vectored).await
            })*
        }
        mod io_uring {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Via::IoUring).await
            })*
        }
        mod io_uring_zc {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Via::IoUringZc).await
            })*
        }
    };
}

mod auth_tests;
mod connect_tests;
mod engine_tests;
mod send_tests;
mod tls_tests;
mod uring_tests;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{duplex, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::smtp::address::{Domain, Mailbox, Path};
use crate::smtp::command::{MailFrom, RcptTo};
use crate::smtp::transaction::RecipientOutcome;

/// A byte stream the server can hold before and after STARTTLS.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    /// A command line, without CRLF.
    Line(String),
    /// A BDAT chunk's bytes.
    Chunk(Vec<u8>),
    /// A DATA section as on the wire, terminator included.
    Data(Vec<u8>),
}

/// How the server answers a line, instead of its default.
pub(super) enum Resp {
    /// This reply (CRLF added).
    Reply(String),
    /// This reply, then close.
    ReplyClose(String),
    /// This reply, read this many bytes more, then close (a drop mid-DATA).
    ReplyReadClose(String, usize),
    /// Close without a word.
    Close,
    /// Never answer; keep reading.
    Silent,
    /// For STARTTLS: 220, then bytes that are not TLS, then close.
    NotTls,
}

pub(super) type Hook = Box<dyn FnMut(&str) -> Option<Resp> + Send>;

/// The server's behaviour.
pub(super) struct Script {
    /// The 220 banner line(s), CRLF-terminated.
    pub banner: String,
    /// The EHLO reply, CRLF-terminated.
    pub ehlo: String,
    /// Accepts STARTTLS with this, when offered.
    pub tls: Option<TlsAcceptor>,
    /// Overrides, asked first for every line; `"."` stands for end of data.
    pub hook: Hook,
}

pub(super) const CAPS_ALL: &str =
    "250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n";
pub(super) const CAPS_PIPE: &str = "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n";

impl Script {
    pub fn new(ehlo: &str) -> Self {
        Script {
            banner: "220 mx.test ESMTP\r\n".into(),
            ehlo: ehlo.into(),
            tls: None,
            hook: Box::new(|_| None),
        }
    }

    pub fn hook(mut self, hook: impl FnMut(&str) -> Option<Resp> + Send + 'static) -> Self {
        self.hook = Box::new(hook);
        self
    }
}

struct Server {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    log: Arc<Mutex<Vec<Event>>>,
}

impl Server {
    async fn more(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.io.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                self.log.lock().unwrap().push(Event::Line(line.clone()));
                return Some(line);
            }
            if !self.more().await {
                return None;
            }
        }
    }

    async fn exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.more().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    async fn data(&mut self) -> Option<Vec<u8>> {
        loop {
            let end = if self.buf.starts_with(b".\r\n") {
                Some(3)
            } else {
                self.buf
                    .windows(5)
                    .position(|w| w == b"\r\n.\r\n")
                    .map(|i| i + 5)
            };
            if let Some(end) = end {
                return Some(self.buf.drain(..end).collect());
            }
            if !self.more().await {
                return None;
            }
        }
    }

    async fn say(&mut self, text: &str) -> bool {
        let mut wire = text.to_string();
        if !wire.ends_with('\n') {
            wire.push_str("\r\n");
        }
        self.io.write_all(wire.as_bytes()).await.is_ok()
    }
}

/// Runs the script on `io`; returns what the client sent.
pub(super) async fn serve(io: Box<dyn Io>, mut script: Script) -> Vec<Event> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut s = Server {
        io,
        buf: Vec::new(),
        log: log.clone(),
    };
    run(&mut s, &mut script).await;
    let _ = s.io.shutdown().await;
    let events = log.lock().unwrap().clone();
    events
}

async fn run(s: &mut Server, script: &mut Script) {
    if !s.say(&script.banner).await || !script.banner.starts_with('2') {
        return;
    }
    // Postfix-like transaction state.
    let (mut mail, mut rcpts) = (false, 0usize);
    while let Some(line) = s.line().await {
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let custom = (script.hook)(&line);
        let default = match verb.as_str() {
            "EHLO" => script.ehlo.clone(),
            "MAIL" if mail => "503 5.5.1 nested MAIL command".into(),
            "MAIL" => {
                mail = true;
                "250 2.1.0 ok".into()
            }
            "RCPT" if !mail => "503 5.5.1 need MAIL".into(),
            "RCPT" if line.contains("<rej") => "550 5.1.1 no such user".into(),
            "RCPT" if custom.is_none() => {
                rcpts += 1;
                "250 2.1.5 ok".into()
            }
            "RCPT" => String::new(),
            "RSET" => {
                (mail, rcpts) = (false, 0);
                "250 2.0.0 ok".into()
            }
            "QUIT" => {
                let _ = s.say("221 2.0.0 bye").await;
                return;
            }
            "STARTTLS" if script.tls.is_some() => {
                if let Some(Resp::NotTls) = custom {
                    let _ = s.say("220 go ahead\r\nthis is not TLS at all\r\n").await;
                    return;
                }
                s.say("220 2.0.0 go ahead").await;
                let acceptor = script.tls.clone().unwrap();
                let io = std::mem::replace(&mut s.io, Box::new(tokio::io::empty()));
                match acceptor.accept(io).await {
                    Ok(tls) => s.io = Box::new(tls),
                    Err(_) => return,
                }
                (mail, rcpts) = (false, 0);
                continue;
            }
            "BDAT" => {
                let size: usize = line
                    .split(' ')
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let Some(chunk) = s.exact(size).await else {
                    return;
                };
                s.log.lock().unwrap().push(Event::Chunk(chunk));
                if !mail {
                    "503 5.5.1 need MAIL".into()
                } else if rcpts == 0 {
                    // Postfix keeps the transaction open here.
                    "554 5.5.1 no valid recipients".into()
                } else {
                    (mail, rcpts) = (false, 0);
                    "250 2.0.0 queued".into()
                }
            }
            "DATA" if !mail || rcpts == 0 => "554 5.5.1 no valid recipients".into(),
            "DATA" if custom.is_some() => String::new(),
            "DATA" => {
                s.say("354 go ahead").await;
                let Some(data) = s.data().await else { return };
                s.log.lock().unwrap().push(Event::Data(data));
                (mail, rcpts) = (false, 0);
                match (script.hook)(".") {
                    Some(Resp::Reply(r)) => r,
                    Some(_) => return,
                    None => "250 2.0.0 queued".into(),
                }
            }
            _ => "250 2.0.0 ok".into(),
        };
        let ok = match custom {
            None => s.say(&default).await,
            Some(Resp::Reply(r)) => s.say(&r).await,
            Some(Resp::ReplyClose(r)) => {
                s.say(&r).await;
                return;
            }
            Some(Resp::ReplyReadClose(r, n)) => {
                s.say(&r).await;
                let _ = s.exact(n).await;
                return;
            }
            Some(Resp::Close) => return,
            Some(Resp::Silent) | Some(Resp::NotTls) => true,
        };
        if !ok {
            return;
        }
    }
}

/// A server on one end of a duplex pipe; the client's end and the server task.
pub(super) fn spawn(script: Script) -> (DuplexStream, JoinHandle<Vec<Event>>) {
    let (client, server) = duplex(1 << 20);
    (client, tokio::spawn(serve(Box::new(server), script)))
}

pub(super) fn endpoint(port: u16) -> Endpoint {
    Endpoint::new("mx.test", SocketAddr::from(([192, 0, 2, 1], port)))
}

pub(super) fn options(policy: TlsPolicy) -> SessionOptions {
    let mut o = SessionOptions::new("client.test");
    o.tls_policy = policy;
    o
}

pub(super) fn addr(local: &str) -> Path {
    Path::mailbox(Mailbox {
        local: local.into(),
        domain: Domain::Name("example.org".into()),
    })
}

pub(super) fn job(rcpts: &[&str], body: &'static [u8]) -> Job {
    job_bytes(rcpts, Bytes::from_static(body))
}

pub(super) fn job_bytes(rcpts: &[&str], body: Bytes) -> Job {
    Job {
        mail: MailFrom::new(Path::mailbox(Mailbox {
            local: "sender".into(),
            domain: Domain::Name("example.com".into()),
        })),
        rcpts: rcpts.iter().map(|r| RcptTo::new(addr(r))).collect(),
        body: MessageBody::new(body),
    }
}

/// The outcomes of an attempted job, as (kind, code) pairs.
pub(super) fn kinds(outcome: &JobOutcome) -> Vec<(&'static str, u16)> {
    let JobOutcome::Attempted(outcomes) = outcome else {
        return vec![("not-sent", 0)];
    };
    outcomes
        .iter()
        .map(|o| match o {
            RecipientOutcome::Delivered(r) => ("delivered", r.code.get()),
            RecipientOutcome::Transient(r) => ("transient", r.code.get()),
            RecipientOutcome::Permanent(r) => ("permanent", r.code.get()),
            RecipientOutcome::TooManyRecipients(r) => ("too-many", r.code.get()),
        })
        .collect()
}

/// The command lines the server received, in order.
pub(super) fn lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Line(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

/// The write path a parametrised test runs on (all over loopback TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// writev through tokio.
    Vectored,
    /// io_uring, SENDMSG for every write.
    IoUring,
    /// io_uring, SENDMSG_ZC for every write (threshold 0).
    IoUringZc,
}

impl Via {
    /// The session option for this path. The io_uring variants probe the kernel
    /// and fail the test if it refuses (this machine kind has io_uring).
    pub fn send_path(self) -> SendPath {
        let support = || send_path::probe().expect("io_uring available on this machine");
        match self {
            Via::Vectored => SendPath::Vectored,
            Via::IoUring => SendPath::IoUring(UringOptions::new(usize::MAX, support())),
            Via::IoUringZc => {
                let support = support();
                assert!(support.sendmsg_zc, "kernel without SENDMSG_ZC");
                SendPath::IoUring(UringOptions::new(0, support))
            }
        }
    }

    /// The path a plaintext session on it reports.
    pub fn active(self) -> ActivePath {
        match self {
            Via::Vectored => ActivePath::Vectored(None),
            Via::IoUring | Via::IoUringZc => ActivePath::IoUring,
        }
    }
}

/// A scripted server for one connection on a loopback TCP port.
pub(super) async fn spawn_tcp(script: Script) -> (SocketAddr, JoinHandle<Vec<Event>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(Box::new(stream), script).await
    });
    (addr, task)
}

/// A session (TLS disabled) on a scripted server over loopback TCP, writing
/// through `via`.
pub(super) async fn session_via(
    via: Via,
    script: Script,
) -> (ClientSession<TcpStream>, JoinHandle<Vec<Event>>) {
    session_with(via, script, options(TlsPolicy::Disabled)).await
}

/// [`session_via`] with other options (`o.send_path` is set from `via`).
pub(super) async fn session_with(
    via: Via,
    script: Script,
    mut o: SessionOptions,
) -> (ClientSession<TcpStream>, JoinHandle<Vec<Event>>) {
    o.send_path = via.send_path();
    let (addr, server) = spawn_tcp(script).await;
    let (s, _) = ClientSession::connect(&[Endpoint::new("mx.test", addr)], &o)
        .await
        .expect("connect");
    assert_eq!(s.active_path(), via.active());
    (s, server)
}
