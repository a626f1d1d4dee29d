//! One SMTP client connection: connect (walking the addresses), banner, EHLO,
//! STARTTLS per policy, reply reading with per-step timeouts, QUIT. Sending
//! transactions is in [`super::send`].

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::smtp::command::Command;
use crate::smtp::ehlo::Capabilities;
use crate::smtp::reply::{Reply, ReplyParser};
use crate::smtp::status::ReplyCode;
use crate::smtp::transaction::PlanOptions;

use super::error::{io_error, SessionError};
use super::options::{Endpoint, PipelineWindow, SessionOptions, Timeouts};
use super::send::SendStats;
use super::send_path::SendPath;
use super::stream::{Transport, WriteError};
use super::tls::{TlsInfo, TlsPolicy};
use super::uring::{Outgoing, UringCounts, UringWriter};

/// Facts about an established connection, for the delivery log.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    /// The MX host name connected to.
    pub host: String,
    /// The address connected to.
    pub addr: SocketAddr,
    /// The server's 220 banner.
    pub banner: Reply,
    /// What the server offered in its (last) EHLO reply; only the greeting after
    /// a HELO fallback.
    pub capabilities: Capabilities,
    /// The negotiated TLS, if any.
    pub tls: Option<TlsInfo>,
    /// Why the session is in plaintext although the policy is opportunistic and
    /// TLS was wanted (not offered, refused, handshake failed, failed recently).
    pub tls_fallback: Option<String>,
    /// Endpoints tried before this one, with why each failed.
    pub skipped: Vec<(Endpoint, Reply)>,
}

/// One SMTP client connection, generic over its byte stream (a `TcpStream` in
/// production, `tokio::io::duplex` in tests). The pool owns it: [`connect`] it,
/// [`send`] batches of jobs while [`is_reusable`], and [`quit`] it.
///
/// [`connect`]: ClientSession::connect
/// [`send`]: ClientSession::send
/// [`is_reusable`]: ClientSession::is_reusable
/// [`quit`]: ClientSession::quit
#[derive(Debug)]
pub struct ClientSession<S = TcpStream> {
    /// The io_uring writer of a plaintext TCP session ([`SendPath::IoUring`]).
    /// Declared before `transport` so it drops first: it holds the socket's fd.
    pub(super) uring: Option<UringWriter>,
    /// The connection, plain or TLS.
    pub(super) transport: Transport<S>,
    /// Bytes read and not yet parsed; replies are taken from `rpos` on.
    pub(super) rbuf: Vec<u8>,
    /// Start of the unparsed bytes in `rbuf`.
    pub(super) rpos: usize,
    /// Resumable reply parser over `rbuf[rpos..]`.
    pub(super) parser: ReplyParser,
    /// Connection facts, shared with every send report.
    pub(super) info: Arc<ConnectInfo>,
    /// Per-step timeouts.
    pub(super) timeouts: Timeouts,
    /// Back-to-back transaction bounds.
    pub(super) window: PipelineWindow,
    /// PIPELINING / CHUNKING use.
    pub(super) plan: PlanOptions,
    /// False once the connection failed, the server said 421, or it was closed.
    pub(super) usable: bool,
    /// Transactions run on this connection (for messages-per-connection limits).
    pub(super) transactions: u64,
    /// Send-path counters since the connection opened.
    pub(super) stats: SendStats,
    /// Why io_uring was chosen and this session could not set up its ring.
    pub(super) uring_fallback: Option<String>,
}

impl ClientSession<TcpStream> {
    /// Connects over TCP to the first endpoint (in order) that answers with a 2xx
    /// banner and EHLO/HELO, with STARTTLS per `options.tls_policy`. Each failed
    /// endpoint is listed in [`ConnectInfo::skipped`]; if all fail, the last error
    /// is returned. Sets `TCP_NODELAY` (the session batches its own writes).
    pub async fn connect(
        endpoints: &[Endpoint],
        options: &SessionOptions,
    ) -> Result<(Self, Arc<ConnectInfo>), SessionError> {
        Self::connect_reporting(endpoints, options)
            .await
            .map_err(|failure| failure.error)
    }

    /// [`ClientSession::connect`], and on failure also the last endpoint that
    /// answered at the TCP level (whose reply the error is), for the delivery log.
    pub async fn connect_reporting(
        endpoints: &[Endpoint],
        options: &SessionOptions,
    ) -> Result<(Self, Arc<ConnectInfo>), ConnectFailure> {
        let (mut session, info) = Self::connect_inner(endpoints, options, |addr| async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
        .await?;
        session.attach_send_path(&options.send_path);
        Ok((session, info))
    }

    /// Moves a plaintext session's writes to io_uring when `path` says so. A ring
    /// that cannot be set up (descriptor or memory limits) leaves the session on
    /// the vectored path; [`ClientSession::active_path`] tells which it is on.
    pub fn attach_send_path(&mut self, path: &SendPath) {
        let (SendPath::IoUring(options), Transport::Plain(stream), None) =
            (path, &self.transport, &self.uring)
        else {
            return;
        };
        match UringWriter::new(stream.as_raw_fd(), options) {
            Ok(writer) => self.uring = Some(writer),
            Err(e) => self.uring_fallback = Some(e.to_string()),
        }
    }
}

/// Which path a session writes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivePath {
    /// Vectored writes through tokio, on a plaintext connection; with the ring
    /// set-up error if io_uring was chosen and failed for this session.
    Vectored(Option<String>),
    /// SENDMSG / SENDMSG_ZC through the session's ring.
    IoUring,
    /// Through rustls (records are copied; io_uring is not used).
    Tls,
}

/// Why [`ClientSession::connect_reporting`] found no usable endpoint.
#[derive(Debug)]
pub struct ConnectFailure {
    /// The last endpoint's error.
    pub error: SessionError,
    /// The endpoint `error` came from when it got past the TCP connect (a 421
    /// banner, a refused EHLO, TLS); `None` when that endpoint could not be
    /// reached at all.
    pub answered: Option<Endpoint>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientSession<S> {
    /// [`ClientSession::connect`] with any dialer (tests dial in-process servers).
    /// With opportunistic TLS a failed handshake records the host in the
    /// [`super::TlsMemory`] and the same endpoint is dialled again for plaintext.
    pub async fn connect_with<F, Fut>(
        endpoints: &[Endpoint],
        options: &SessionOptions,
        dial: F,
    ) -> Result<(Self, Arc<ConnectInfo>), SessionError>
    where
        F: FnMut(SocketAddr) -> Fut,
        Fut: Future<Output = std::io::Result<S>>,
    {
        Self::connect_inner(endpoints, options, dial)
            .await
            .map_err(|failure| failure.error)
    }

    async fn connect_inner<F, Fut>(
        endpoints: &[Endpoint],
        options: &SessionOptions,
        mut dial: F,
    ) -> Result<(Self, Arc<ConnectInfo>), ConnectFailure>
    where
        F: FnMut(SocketAddr) -> Fut,
        Fut: Future<Output = std::io::Result<S>>,
    {
        let mut skipped = Vec::new();
        let mut last = SessionError::NoAddresses;
        let mut answered = None;
        for endpoint in endpoints {
            let mut try_tls = true;
            loop {
                let attempt = async {
                    let stream =
                        tokio::time::timeout(options.timeouts.connect, dial(endpoint.addr))
                            .await
                            .map_err(|_| SessionError::Timeout("connecting"))?
                            .map_err(|source| SessionError::Connect {
                                addr: endpoint.addr,
                                source,
                            })?;
                    Self::open(stream, endpoint, options, try_tls).await
                };
                match attempt.await {
                    Ok(mut session) => {
                        Arc::get_mut(&mut session.info)
                            .expect("not shared yet")
                            .skipped = skipped;
                        let info = session.info.clone();
                        return Ok((session, info));
                    }
                    Err(SessionError::Tls(e))
                        if try_tls && options.tls_policy == TlsPolicy::Opportunistic =>
                    {
                        options.tls_memory.record_failure(&endpoint.host);
                        skipped.push((endpoint.clone(), SessionError::Tls(e).reply()));
                        try_tls = false;
                    }
                    Err(e) => {
                        let reached = !matches!(
                            e,
                            SessionError::Connect { .. } | SessionError::Timeout("connecting")
                        );
                        // Keep `answered` in step with `last`: the endpoint whose reply
                        // the returned error is, if it got that far.
                        answered = reached.then(|| endpoint.clone());
                        skipped.push((endpoint.clone(), e.reply()));
                        last = e;
                        break;
                    }
                }
            }
        }
        Err(ConnectFailure {
            error: last,
            answered,
        })
    }

    /// Runs the SMTP opening on an already connected stream: banner, EHLO (HELO
    /// if EHLO gets a 5xx), STARTTLS per policy and EHLO again, then AUTH if
    /// `options.auth` is set (see [`super::auth`]).
    pub async fn handshake(
        stream: S,
        endpoint: &Endpoint,
        options: &SessionOptions,
    ) -> Result<Self, SessionError> {
        Self::open(stream, endpoint, options, true).await
    }

    async fn open(
        stream: S,
        endpoint: &Endpoint,
        options: &SessionOptions,
        try_tls: bool,
    ) -> Result<Self, SessionError> {
        let t = options.timeouts;
        let mut session = ClientSession {
            uring: None,
            transport: Transport::Plain(stream),
            rbuf: Vec::with_capacity(4096),
            rpos: 0,
            parser: ReplyParser::new(),
            info: Arc::new(ConnectInfo {
                host: endpoint.host.clone(),
                addr: endpoint.addr,
                banner: Reply::ok(""),
                capabilities: Capabilities::default(),
                tls: None,
                tls_fallback: None,
                skipped: Vec::new(),
            }),
            timeouts: t,
            window: options.window,
            plan: options.plan,
            usable: true,
            transactions: 0,
            stats: SendStats::default(),
            uring_fallback: None,
        };
        let banner = session
            .read_reply(t.banner, "waiting for the banner")
            .await?;
        if !banner.is_positive() {
            return Err(SessionError::Rejected {
                phase: "at the banner",
                reply: banner,
            });
        }
        let mut caps = session.ehlo(&options.ehlo_name).await?;
        let mut tls = None;
        let mut fallback = None;
        let policy = options.tls_policy;
        let wanted = match policy {
            TlsPolicy::Disabled => false,
            TlsPolicy::Opportunistic if !try_tls => {
                fallback = Some("TLS handshake failed; reconnected in plaintext".into());
                false
            }
            TlsPolicy::Opportunistic if options.tls_memory.recently_failed(&endpoint.host) => {
                fallback = Some("TLS failed recently with this host".into());
                false
            }
            TlsPolicy::Opportunistic if !caps.starttls => {
                fallback = Some("STARTTLS not offered".into());
                false
            }
            TlsPolicy::Opportunistic => true,
            TlsPolicy::Required | TlsPolicy::RequiredVerified if !caps.starttls => {
                return Err(SessionError::TlsNotOffered)
            }
            TlsPolicy::Required | TlsPolicy::RequiredVerified => true,
        };
        // SNI and the certificate name: the MX host name, without a root dot.
        let name = ServerName::try_from(endpoint.host.trim_end_matches('.').to_string()).ok();
        let wanted = match (wanted, &name) {
            (true, None) if policy.allows_plaintext() => {
                fallback = Some("host name unusable as a TLS server name".into());
                false
            }
            (true, None) => return Err(SessionError::BadServerName(endpoint.host.clone())),
            (wanted, _) => wanted,
        };
        if let (true, Some(name)) = (wanted, name) {
            session
                .write_command(Command::StartTls, "sending STARTTLS")
                .await?;
            let reply = session.read_reply(t.command, "after STARTTLS").await?;
            if reply.is_positive() {
                tls = Some(session.start_tls(name, options).await?);
                caps = session.ehlo(&options.ehlo_name).await?;
            } else if reply.code == ReplyCode::SERVICE_UNAVAILABLE || !policy.allows_plaintext() {
                return Err(SessionError::Rejected {
                    phase: "at STARTTLS",
                    reply,
                });
            } else {
                fallback = Some(format!("STARTTLS refused: {reply}"));
            }
        }
        if let Some(credentials) = &options.auth {
            session
                .authenticate(credentials, &caps, tls.is_some())
                .await?;
        }
        let info = Arc::get_mut(&mut session.info).expect("not shared yet");
        info.banner = banner;
        info.capabilities = caps;
        info.tls = tls;
        info.tls_fallback = fallback;
        Ok(session)
    }

    /// EHLO, or HELO when EHLO gets a 5xx (a server from before ESMTP).
    async fn ehlo(&mut self, name: &str) -> Result<Capabilities, SessionError> {
        let t = self.timeouts.command;
        self.write_command(Command::Ehlo(name.into()), "sending EHLO")
            .await?;
        let reply = self.read_reply(t, "after EHLO").await?;
        if reply.is_positive() {
            return Ok(Capabilities::from_ehlo_reply(&reply));
        }
        if !reply.is_permanent() {
            return Err(SessionError::Rejected {
                phase: "at EHLO",
                reply,
            });
        }
        self.write_command(Command::Helo(name.into()), "sending HELO")
            .await?;
        let reply = self.read_reply(t, "after HELO").await?;
        if !reply.is_positive() {
            return Err(SessionError::Rejected {
                phase: "at HELO",
                reply,
            });
        }
        Ok(Capabilities {
            greeting: reply.lines.first().cloned().unwrap_or_default(),
            ..Capabilities::default()
        })
    }

    /// The TLS handshake after the server's 220 to STARTTLS.
    async fn start_tls(
        &mut self,
        name: ServerName<'static>,
        options: &SessionOptions,
    ) -> Result<TlsInfo, SessionError> {
        // Anything the server sent after its 220 came before TLS: a man in the
        // middle could have injected it (CVE-2011-0411), so it is dropped.
        self.rbuf.clear();
        self.rpos = 0;
        self.parser.reset();
        let policy = options.tls_policy;
        let connector = tokio_rustls::TlsConnector::from(options.tls.config(policy));
        let Transport::Plain(plain) = std::mem::replace(&mut self.transport, Transport::Gone)
        else {
            unreachable!("STARTTLS only once, on a plain stream")
        };
        self.usable = false;
        let stream = tokio::time::timeout(
            options.timeouts.tls_handshake,
            connector.connect(name, plain),
        )
        .await
        .map_err(|_| {
            SessionError::Tls(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "handshake timed out",
            ))
        })?
        .map_err(SessionError::Tls)?;
        let info = TlsInfo::from_connection(stream.get_ref().1, policy.verifies());
        self.transport = Transport::Tls(Box::new(stream));
        self.usable = true;
        Ok(info)
    }

    /// Writes one command (outside transactions: EHLO, STARTTLS, AUTH, QUIT).
    pub(super) async fn write_command(
        &mut self,
        command: Command,
        phase: &'static str,
    ) -> Result<(), SessionError> {
        let mut bytes = Vec::with_capacity(64);
        command.write_to(&mut bytes);
        self.write_line(&bytes, phase).await
    }

    /// Writes bytes already framed as a line (a SASL response, CRLF included).
    pub(super) async fn write_line(
        &mut self,
        bytes: &[u8],
        phase: &'static str,
    ) -> Result<(), SessionError> {
        if let (Some(uring), false) = (self.uring.as_mut(), self.transport.is_tls()) {
            // Once attached, every write goes through the ring, one at a time.
            let mut out = Outgoing::new();
            out.push_all(Bytes::copy_from_slice(bytes));
            let mut counts = UringCounts::default();
            let result = uring
                .write_all(out, self.timeouts.command, &mut counts, |_| {})
                .await;
            self.stats.syscalls += counts.syscalls;
            return match result {
                Ok(()) => Ok(()),
                Err(WriteError::Timeout) => Err(self.broken(SessionError::Timeout(phase))),
                Err(WriteError::Io(e)) => Err(self.broken(io_error(phase, e))),
            };
        }
        let write = async {
            self.transport.write_all(bytes).await?;
            self.transport.flush().await
        };
        match tokio::time::timeout(self.timeouts.command, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.broken(io_error(phase, e))),
            Err(_) => Err(self.broken(SessionError::Timeout(phase))),
        }
    }

    /// Which path this session writes with.
    pub fn active_path(&self) -> ActivePath {
        if self.transport.is_tls() {
            ActivePath::Tls
        } else if self.uring.is_some() {
            ActivePath::IoUring
        } else {
            ActivePath::Vectored(self.uring_fallback.clone())
        }
    }

    /// Reads the next reply, waiting at most `timeout` for it.
    pub(super) async fn read_reply(
        &mut self,
        timeout: Duration,
        phase: &'static str,
    ) -> Result<Reply, SessionError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(reply) = self.buffered_reply(phase)? {
                return Ok(reply);
            }
            self.fill(deadline, phase).await?;
        }
    }

    /// The next reply if it is already in the buffer.
    pub(super) fn buffered_reply(
        &mut self,
        phase: &'static str,
    ) -> Result<Option<Reply>, SessionError> {
        match self.parser.parse(&self.rbuf[self.rpos..]) {
            Ok(Some((reply, n))) => {
                self.rpos += n;
                if self.rpos == self.rbuf.len() {
                    self.rbuf.clear();
                    self.rpos = 0;
                }
                self.stats.replies += 1;
                Ok(Some(reply))
            }
            Ok(None) => Ok(None),
            Err(source) => Err(self.broken(SessionError::Protocol { phase, source })),
        }
    }

    /// Reads more bytes into the buffer, by `deadline`.
    pub(super) async fn fill(
        &mut self,
        deadline: Instant,
        phase: &'static str,
    ) -> Result<(), SessionError> {
        if self.rpos > 0 {
            // Keep the unparsed tail only; the parser's offsets are relative to it.
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        self.rbuf.reserve(4096);
        match tokio::time::timeout_at(deadline, self.transport.read_buf(&mut self.rbuf)).await {
            Ok(Ok(0)) => Err(self.broken(SessionError::Closed(phase))),
            Ok(Ok(_)) => {
                self.stats.reads += 1;
                Ok(())
            }
            Ok(Err(e)) => Err(self.broken(io_error(phase, e))),
            Err(_) => Err(self.broken(SessionError::Timeout(phase))),
        }
    }

    /// Marks the connection unusable and passes `e` on.
    pub(super) fn broken(&mut self, e: SessionError) -> SessionError {
        self.usable = false;
        e
    }

    /// Whether another [`ClientSession::send`] may use this connection: false after
    /// any connection-level error, a 421, or a timeout.
    pub fn is_reusable(&self) -> bool {
        self.usable
    }

    /// What the server offered.
    pub fn capabilities(&self) -> &Capabilities {
        &self.info.capabilities
    }

    /// Connection facts for the delivery log.
    pub fn info(&self) -> &Arc<ConnectInfo> {
        &self.info
    }

    /// Transactions run on this connection so far.
    pub fn transactions(&self) -> u64 {
        self.transactions
    }

    /// Send-path counters since the connection opened.
    pub fn stats(&self) -> SendStats {
        self.stats
    }

    /// Says QUIT and closes, best effort within the QUIT timeout: errors are
    /// ignored (the work is already settled).
    pub async fn quit(mut self) {
        let t = self.timeouts.quit;
        if self.usable {
            self.timeouts.command = t;
            if self
                .write_command(Command::Quit, "sending QUIT")
                .await
                .is_ok()
            {
                let _ = self.read_reply(t, "after QUIT").await;
            }
        }
        let _ = tokio::time::timeout(t, self.transport.shutdown()).await;
    }
}
