//! The send path: jobs in, per-recipient outcomes out, with as few writes and
//! round trips as the server allows.
//!
//! Each [`Job`] is planned by [`Transaction`]; what it asks to write goes into a
//! batch that is written with vectored writes: command bytes, then the body
//! straight from its shared [`Bytes`] (with DATA, as [`DataPieces`] slices of it,
//! so dot-stuffing copies nothing). On a plain socket the body is never copied in
//! user space, on either write path (`writev` through tokio, or one SENDMSG /
//! SENDMSG_ZC through the session's io_uring, [`super::uring`]); through TLS
//! rustls copies it into records, which [`SendStats::body_bytes_copied`] counts.
//!
//! # Back-to-back transactions
//!
//! With PIPELINING and CHUNKING a whole transaction is one write (`MAIL`,
//! `RCPT`s, `BDAT n LAST`, body), so the session writes the next ones before
//! reading any reply, within a [`PipelineWindow`], and hands replies to each
//! transaction in the order their commands went out. Whatever replies are already
//! buffered are handled before the next write, so follow-ups and refills of the
//! window leave in one write.
//!
//! A transaction whose MAIL is accepted but every RCPT refused leaves the server's
//! transaction open (the planner RSETs it afterwards). Anything pipelined behind it
//! would then meet an open transaction: MAIL gets 503, and worse, its RCPTs may be
//! accepted *into the old transaction* and its body delivered with the wrong
//! sender while the planner records a failure (a duplicate on retry). So every
//! transaction written while an earlier one is unanswered starts with `RSET`: six
//! bytes and one reply, no round trip, and the server is in a clean state whatever
//! happened before. A transaction written with nothing in flight needs none.
//!
//! Without CHUNKING (or PIPELINING) one transaction runs at a time: with
//! PIPELINING, `MAIL`, `RCPT`s and `DATA` in one write, the body after the 354.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::smtp::command::{MailFrom, RcptTo};
use crate::smtp::data::{stuffing_points, DataPieces};
use crate::smtp::reply::Reply;
use crate::smtp::status::{EnhancedStatus, ReplyCode};
use crate::smtp::transaction::{
    Action, BodyEncoding, PlanError, RecipientOutcome, Segment, Transaction,
};

use super::error::{io_error, SessionError};
use super::options::{PipelineWindow, Timeouts};
use super::session::{ClientSession, ConnectInfo};
use super::stream::{write_all_vectored, WriteError};
use super::uring::{Outgoing, UringCounts};

/// A message body: the spool's buffer, shared, and where its dots need doubling.
/// Cloning is cheap (two reference counts).
#[derive(Debug, Clone)]
pub struct MessageBody {
    /// The raw body (RFC 5322 message, CRLF line endings).
    bytes: Bytes,
    /// Offsets of the dots to double for DATA ([`stuffing_points`]).
    stuffing: Arc<[usize]>,
}

impl MessageBody {
    /// A body, with its stuffing points found now (one memchr pass).
    pub fn new(bytes: Bytes) -> Self {
        let stuffing = stuffing_points(&bytes).into();
        MessageBody { bytes, stuffing }
    }

    /// A body whose stuffing points were computed earlier (e.g. stored in the spool).
    pub fn with_stuffing(bytes: Bytes, stuffing: Arc<[usize]>) -> Self {
        MessageBody { bytes, stuffing }
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Raw length (BDAT's size).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes on the wire for `encoding`.
    fn wire_len(&self, encoding: BodyEncoding) -> usize {
        match encoding {
            BodyEncoding::Raw => self.bytes.len(),
            BodyEncoding::DotStuffed => DataPieces::wire_len(&self.bytes, &self.stuffing),
        }
    }
}

/// One message to some recipients of one site: one SMTP transaction.
#[derive(Debug, Clone)]
pub struct Job {
    /// The envelope sender and its parameters.
    pub mail: MailFrom,
    /// The recipients (at most the site's recipients-per-transaction limit).
    pub rcpts: Vec<RcptTo>,
    /// The body.
    pub body: MessageBody,
}

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// The transaction ran, to its end or until the connection failed: one outcome
    /// per recipient, in order. A lost connection gives `Transient` (never
    /// delivered, never lost).
    Attempted(Vec<RecipientOutcome>),
    /// Nothing of it was written (the connection failed first): send it on
    /// another connection without counting an attempt.
    NotSent,
}

/// Send-path counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Transactions finished (attempted jobs).
    pub transactions: u64,
    /// Write calls that took bytes: syscalls on a plain socket, record
    /// encryptions through TLS.
    pub writes: u64,
    /// Read calls that returned bytes.
    pub reads: u64,
    /// Replies parsed.
    pub replies: u64,
    /// Bytes written (commands and bodies, before TLS).
    pub bytes_written: u64,
    /// Body bytes written (stuffed size for DATA).
    pub body_bytes: u64,
    /// Body bytes copied in user space: 0 on a plain socket (either path), every
    /// body byte through TLS (rustls copies into records).
    pub body_bytes_copied: u64,
    /// System calls made to write: on the vectored path one per write call
    /// (`writes`); on the io_uring path each `io_uring_enter` and each read of the
    /// completion eventfd (waits in epoll are tokio's, on both paths).
    pub syscalls: u64,
    /// Bytes handed to the kernel with SENDMSG_ZC (pinned, not copied by the
    /// kernel on a real NIC; on loopback the kernel copies them later anyway).
    pub zerocopy_bytes: u64,
}

impl SendStats {
    /// Writes per finished transaction.
    pub fn writes_per_transaction(&self) -> f64 {
        self.writes as f64 / self.transactions.max(1) as f64
    }

    /// The counts since `before` was taken.
    fn since(&self, before: &SendStats) -> SendStats {
        SendStats {
            transactions: self.transactions - before.transactions,
            writes: self.writes - before.writes,
            reads: self.reads - before.reads,
            replies: self.replies - before.replies,
            bytes_written: self.bytes_written - before.bytes_written,
            body_bytes: self.body_bytes - before.body_bytes,
            body_bytes_copied: self.body_bytes_copied - before.body_bytes_copied,
            syscalls: self.syscalls - before.syscalls,
            zerocopy_bytes: self.zerocopy_bytes - before.zerocopy_bytes,
        }
    }
}

/// What one [`ClientSession::send`] did.
#[derive(Debug)]
pub struct SendReport {
    /// One per job, in order.
    pub jobs: Vec<JobOutcome>,
    /// The connection-level error that ended the session, if any (the session is
    /// then not reusable). Transactions in progress when it struck count as
    /// attempted (`Transient`), even if a failed write never carried their bytes:
    /// where the bytes stopped is not known.
    pub error: Option<SessionError>,
    /// Counters for this call.
    pub stats: SendStats,
    /// Connection facts for the delivery log.
    pub connection: Arc<ConnectInfo>,
}

/// Who consumes a reply.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// This job's transaction.
    Job(usize),
    /// The RSET written ahead of a back-to-back transaction.
    Prefix,
}

/// A reply on its way, and how long it may take.
#[derive(Debug, Clone, Copy)]
struct Pending {
    owner: Owner,
    timeout: Duration,
}

/// A transaction in progress.
#[derive(Debug)]
struct InFlight {
    tx: Transaction,
    /// Its replies still to come.
    pending: usize,
    /// Bytes it has written (counted against the window).
    bytes: usize,
}

/// One piece of a write.
#[derive(Debug)]
enum Part {
    Owned(Vec<u8>),
    Body(usize, BodyEncoding),
}

const RSET: &[u8] = b"RSET\r\n";

/// The state of one `send` call.
struct Run<'j> {
    /// The jobs, indexed by everything below.
    jobs: &'j [Job],
    /// Each job's outcome once settled; `None` at the end means not sent.
    results: Vec<Option<JobOutcome>>,
    /// Each job's transaction while it is in progress.
    flights: Vec<Option<InFlight>>,
    /// Replies awaited, in the order their commands were written.
    queue: VecDeque<Pending>,
    /// What the next write holds.
    batch: Vec<Part>,
    /// Whether it holds a body (the data-block timeout applies).
    batch_has_body: bool,
    /// Transactions in progress.
    active: usize,
    /// Bytes written by them (window accounting).
    bytes_in_flight: usize,
    /// Transactions finished in this run.
    finished: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientSession<S> {
    /// Runs one transaction per job on this connection and returns every job's
    /// outcome. Never fails as a whole: a connection failure settles in-flight
    /// transactions as `Transient`, leaves unstarted jobs `NotSent`, and is
    /// reported in [`SendReport::error`]. Jobs the server cannot take (too big,
    /// needs SMTPUTF8) get `Permanent` outcomes without being written.
    pub async fn send(&mut self, jobs: &[Job]) -> SendReport {
        let before = self.stats;
        let mut run = Run {
            jobs,
            results: vec![None; jobs.len()],
            flights: (0..jobs.len()).map(|_| None).collect(),
            queue: VecDeque::new(),
            batch: Vec::new(),
            batch_has_body: false,
            active: 0,
            bytes_in_flight: 0,
            finished: 0,
        };
        let error = if self.usable {
            self.run(&mut run).await.err()
        } else {
            Some(SessionError::Closed(
                "before sending (session not reusable)",
            ))
        };
        if let Some(e) = &error {
            self.usable = false;
            let why = e.to_string();
            for j in 0..jobs.len() {
                if let Some(f) = run.flights[j].as_mut() {
                    f.tx.on_connection_lost(&why);
                    run.finish(j);
                }
            }
        }
        self.transactions += run.finished;
        self.stats.transactions += run.finished;
        SendReport {
            jobs: run
                .results
                .into_iter()
                .map(|r| r.unwrap_or(JobOutcome::NotSent))
                .collect(),
            error,
            stats: self.stats.since(&before),
            connection: self.info.clone(),
        }
    }

    async fn run(&mut self, run: &mut Run<'_>) -> Result<(), SessionError> {
        let mut next_job = 0;
        let mut planned: Option<Transaction> = None;
        let mut head_since = Instant::now();
        let t = self.timeouts;
        loop {
            // Everything already buffered first: follow-ups join the next write.
            while !run.queue.is_empty() {
                let Some(reply) = self.buffered_reply("reading a reply")? else {
                    break;
                };
                head_since = Instant::now();
                if reply.code == ReplyCode::SERVICE_UNAVAILABLE {
                    return Err(self.closing(run, reply));
                }
                run.dispatch(reply, &t);
            }
            // Refill the window.
            while next_job < run.jobs.len() {
                let tx = match planned.take() {
                    Some(tx) => tx,
                    None => match self.plan(&run.jobs[next_job]) {
                        Ok(tx) => tx,
                        Err(e) => {
                            run.results[next_job] = Some(refused(&run.jobs[next_job], e));
                            next_job += 1;
                            continue;
                        }
                    },
                };
                if !run.can_start(&tx, &run.jobs[next_job], self.window) {
                    planned = Some(tx);
                    break;
                }
                run.start(next_job, tx, &t);
                next_job += 1;
            }
            if !run.batch.is_empty() {
                self.write_batch(run).await?;
                head_since = Instant::now();
            }
            let Some(head) = run.queue.front() else {
                debug_assert_eq!(run.active, 0);
                return Ok(());
            };
            self.fill(head_since + head.timeout, "waiting for a reply")
                .await?;
        }
    }

    fn plan(&self, job: &Job) -> Result<Transaction, PlanError> {
        Transaction::new(
            &self.info.capabilities,
            &job.mail,
            &job.rcpts,
            job.body.len() as u64,
            self.plan,
        )
    }

    /// A 421: the server is closing. Every transaction in flight gets it as a
    /// `Transient` outcome.
    fn closing(&mut self, run: &mut Run<'_>, reply: Reply) -> SessionError {
        for j in 0..run.jobs.len() {
            if let Some(f) = run.flights[j].as_mut() {
                f.tx.on_reply(reply.clone());
                run.finish(j);
            }
        }
        self.broken(SessionError::Rejected {
            phase: "during a transaction",
            reply,
        })
    }

    /// Writes the batch: through the session's ring when it has one, else in
    /// vectored writes.
    async fn write_batch(&mut self, run: &mut Run<'_>) -> Result<(), SessionError> {
        let per_write = if run.batch_has_body {
            self.timeouts.data_block
        } else {
            self.timeouts.command
        };
        let (result, body_bytes) = if self.uring.is_some() && !self.transport.is_tls() {
            self.write_batch_uring(run, per_write).await
        } else {
            self.write_batch_vectored(run, per_write).await
        };
        run.batch.clear();
        run.batch_has_body = false;
        self.stats.body_bytes += body_bytes;
        if self.transport.is_tls() {
            self.stats.body_bytes_copied += body_bytes;
        }
        match result {
            Ok(()) => Ok(()),
            Err(WriteError::Timeout) => Err(self.broken(SessionError::Timeout("writing"))),
            Err(WriteError::Io(e)) => Err(self.broken(io_error("writing", e))),
        }
    }

    /// The batch as `IoSlice`s borrowed from the jobs, in `writev` calls.
    async fn write_batch_vectored(
        &mut self,
        run: &mut Run<'_>,
        per_write: Duration,
    ) -> (Result<(), WriteError>, u64) {
        let jobs = run.jobs;
        let mut slices = Vec::with_capacity(run.batch.len() + 4);
        let mut body_bytes = 0u64;
        for part in &run.batch {
            match part {
                Part::Owned(v) => slices.push(IoSlice::new(v)),
                Part::Body(j, encoding) => {
                    let body = &jobs[*j].body;
                    body_bytes += body.wire_len(*encoding) as u64;
                    match encoding {
                        BodyEncoding::Raw => slices.push(IoSlice::new(&body.bytes)),
                        BodyEncoding::DotStuffed => slices.extend(
                            DataPieces::new(&body.bytes, &body.stuffing)
                                .filter(|p| !p.is_empty())
                                .map(IoSlice::new),
                        ),
                    }
                }
            }
        }
        let stats = &mut self.stats;
        let result = write_all_vectored(&mut self.transport, &mut slices, per_write, |n| {
            stats.writes += 1;
            stats.syscalls += 1;
            stats.bytes_written += n as u64;
        })
        .await;
        (result, body_bytes)
    }

    /// The batch as one SENDMSG(_ZC) through the session's ring: the command
    /// buffers move into it, the bodies go in as reference counts.
    async fn write_batch_uring(
        &mut self,
        run: &mut Run<'_>,
        per_write: Duration,
    ) -> (Result<(), WriteError>, u64) {
        let jobs = run.jobs;
        let mut out = Outgoing::new();
        let mut body_bytes = 0u64;
        for part in run.batch.drain(..) {
            match part {
                Part::Owned(v) => out.push_all(Bytes::from(v)),
                Part::Body(j, encoding) => {
                    let body = &jobs[j].body;
                    body_bytes += body.wire_len(encoding) as u64;
                    match encoding {
                        BodyEncoding::Raw => out.push(&body.bytes, [&body.bytes[..]]),
                        BodyEncoding::DotStuffed => {
                            out.push(&body.bytes, DataPieces::new(&body.bytes, &body.stuffing))
                        }
                    }
                }
            }
        }
        let uring = self.uring.as_mut().expect("checked by the caller");
        let stats = &mut self.stats;
        let mut counts = UringCounts::default();
        let result = uring
            .write_all(out, per_write, &mut counts, |n| {
                stats.writes += 1;
                stats.bytes_written += n as u64;
            })
            .await;
        self.stats.syscalls += counts.syscalls;
        self.stats.zerocopy_bytes += counts.zerocopy_bytes;
        (result, body_bytes)
    }
}

impl Run<'_> {
    /// Whether `tx` may be written now.
    fn can_start(&self, tx: &Transaction, job: &Job, window: PipelineWindow) -> bool {
        if self.active == 0 {
            return true;
        }
        let Some(replies) = tx.single_write_replies() else {
            return false;
        };
        self.active < window.max_transactions
            && self.queue.len() + replies < window.max_replies
            && self.bytes_in_flight + job.body.len() <= window.max_bytes
    }

    /// Starts `tx` for job `j`, RSET first if another transaction is unanswered.
    fn start(&mut self, j: usize, tx: Transaction, t: &Timeouts) {
        let mut bytes = 0;
        if self.active > 0 {
            self.batch.push(Part::Owned(RSET.to_vec()));
            self.queue.push_back(Pending {
                owner: Owner::Prefix,
                timeout: t.command,
            });
            bytes += RSET.len();
        }
        self.flights[j] = Some(InFlight {
            tx,
            pending: 0,
            bytes,
        });
        self.active += 1;
        self.bytes_in_flight += bytes;
        self.advance(j, t);
    }

    /// Hands a reply to its owner; a transaction whose replies are all in moves on.
    fn dispatch(&mut self, reply: Reply, t: &Timeouts) {
        let Some(pending) = self.queue.pop_front() else {
            return; // Unsolicited (and not 421): nothing waits for it.
        };
        let Owner::Job(j) = pending.owner else {
            return; // The prefix RSET: its answer does not matter.
        };
        let f = self.flights[j]
            .as_mut()
            .expect("a reply's owner is in flight");
        f.tx.on_reply(reply);
        f.pending -= 1;
        if f.pending == 0 {
            self.advance(j, t);
        }
    }

    /// Takes job `j`'s planner as far as it goes without replies.
    fn advance(&mut self, j: usize, t: &Timeouts) {
        let mut timeouts = Vec::new();
        loop {
            let f = self.flights[j].as_mut().expect("in flight");
            match f.tx.next_action() {
                Action::Write(segments) => {
                    for segment in segments {
                        match segment {
                            Segment::Commands(bytes) => {
                                reply_timeouts(&bytes, t, &mut timeouts);
                                f.bytes += bytes.len();
                                self.bytes_in_flight += bytes.len();
                                self.batch.push(Part::Owned(bytes));
                            }
                            Segment::Body(encoding) => {
                                if encoding == BodyEncoding::DotStuffed {
                                    timeouts.push(t.data_end);
                                }
                                let len = self.jobs[j].body.wire_len(encoding);
                                f.bytes += len;
                                self.bytes_in_flight += len;
                                self.batch_has_body = true;
                                self.batch.push(Part::Body(j, encoding));
                            }
                        }
                    }
                }
                Action::AwaitReplies(n) => {
                    f.pending = n;
                    if timeouts.len() != n {
                        // Not one reply per line (never expected): be patient.
                        timeouts = vec![t.data_end; n];
                    }
                    self.queue
                        .extend(timeouts.into_iter().map(|timeout| Pending {
                            owner: Owner::Job(j),
                            timeout,
                        }));
                    return;
                }
                Action::Done => {
                    self.finish(j);
                    return;
                }
            }
        }
    }

    /// Records job `j`'s outcomes and frees its window space.
    fn finish(&mut self, j: usize) {
        let f = self.flights[j].take().expect("in flight");
        let outcomes =
            f.tx.outcomes()
                .iter()
                .map(|o| {
                    o.clone().unwrap_or_else(|| {
                        RecipientOutcome::Transient(Reply::new(
                            ReplyCode::LOCAL_ERROR,
                            Some(EnhancedStatus::TEMP_SYSTEM),
                            "transaction ended without an outcome",
                        ))
                    })
                })
                .collect();
        self.results[j] = Some(JobOutcome::Attempted(outcomes));
        self.active -= 1;
        self.bytes_in_flight -= f.bytes;
        self.finished += 1;
    }
}

/// One timeout per command line in `commands` (RFC 5321 4.5.3.2).
fn reply_timeouts(commands: &[u8], t: &Timeouts, out: &mut Vec<Duration>) {
    for line in commands.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let verb = line.get(..4).unwrap_or(line).to_ascii_uppercase();
        out.push(match verb.as_slice() {
            b"MAIL" => t.mail,
            b"RCPT" => t.rcpt,
            b"DATA" => t.data_init,
            b"BDAT" | b".\r" => t.data_end,
            _ => t.command,
        });
    }
}

/// The outcomes of a job the planner refused to start.
fn refused(job: &Job, e: PlanError) -> JobOutcome {
    let (code, status) = match e {
        PlanError::TooBig => (552, EnhancedStatus::MESSAGE_TOO_BIG),
        PlanError::NeedsSmtpUtf8 => (553, EnhancedStatus::new(5, 6, 7)),
        PlanError::NoRecipients => return JobOutcome::Attempted(Vec::new()),
    };
    let code = ReplyCode::new(code).expect("valid code");
    let reply = Reply::new(code, Some(status), e.to_string());
    JobOutcome::Attempted(vec![RecipientOutcome::Permanent(reply); job.rcpts.len()])
}
