//! One connection's work: claim due messages, write whole transactions, and match
//! replies to commands first-in first-out.
//!
//! Every command written pushes one [`Expect`] on a queue; every reply pops one.
//! Transactions complete in the order they were written, so the reply that ends a
//! transaction always belongs to the oldest one in flight.
//!
//! - CHUNKING (+ PIPELINING): `MAIL`, every `RCPT`, `BDAT n LAST` and the body go
//!   out as one vectored write per transaction, and up to `--window` transactions
//!   are in flight back to back: no round trip per message.
//! - PIPELINING with DATA: `MAIL`, `RCPT`s and `DATA` in one write; after the 354
//!   the stuffed body, the next transaction's `MAIL`..`DATA` go out in the same
//!   write (RFC 2920 allows commands after the end-of-data mark): one round trip
//!   per message.
//! - Neither: one command per round trip.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use volley::smtp::command::Command;
use volley::smtp::data::TERMINATOR;
use volley::smtp::ehlo::Capabilities;
use volley::smtp::reply::Reply;

use super::conn::{check_closing, Conn, ConnError};
use super::envelope::EnvelopeWriter;
use super::report::{Mode, Stats};
use super::schedule::Claim;
use super::worker::Shared;

/// What a reply in the queue answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mail,
    Rcpt,
    Data,
    /// End of data, or `BDAT ... LAST`.
    Final,
    Rset,
}

/// One reply we are owed.
#[derive(Debug, Clone, Copy)]
struct Expect {
    /// The transaction it belongs to (unused for RSET).
    seq: u64,
    kind: Kind,
}

/// A transaction in flight.
#[derive(Debug)]
struct Txn {
    /// Its number on this connection.
    seq: u64,
    /// Latency origin: due time (with `--rate`) or write time.
    t0: Instant,
    /// MAIL's reply code.
    mail: Option<u16>,
    /// RCPTs accepted.
    rcpt_ok: u32,
    /// First refused RCPT's code.
    rcpt_fail: Option<u16>,
    /// DATA's code when it was not 354.
    data_fail: Option<u16>,
    /// End-of-data / BDAT LAST code.
    final_code: Option<u16>,
    /// A 421 ended it early.
    closed: Option<u16>,
}

impl Txn {
    fn new(seq: u64, t0: Instant) -> Txn {
        Txn {
            seq,
            t0,
            mail: None,
            rcpt_ok: 0,
            rcpt_fail: None,
            data_fail: None,
            final_code: None,
            closed: None,
        }
    }

    fn mail_ok(&self) -> bool {
        self.mail.is_some_and(is_positive)
    }

    /// Whether the message itself should follow 354 (else only the terminator).
    fn sendable(&self) -> bool {
        self.mail_ok() && self.rcpt_ok > 0
    }

    /// The reply code that decided the transaction: the first failure that ended
    /// it, else the final reply. Refused RCPTs decide only when all were refused.
    fn outcome(&self) -> u16 {
        if let Some(c) = self.closed {
            return c;
        }
        if let Some(c) = self.mail.filter(|&c| !is_positive(c)) {
            return c;
        }
        if self.rcpt_ok == 0 {
            if let Some(c) = self.rcpt_fail {
                return c;
            }
        }
        self.data_fail.or(self.final_code).unwrap_or(451)
    }
}

fn is_positive(code: u16) -> bool {
    (200..300).contains(&code)
}

/// One piece of the next write.
#[derive(Debug, Clone)]
enum Seg {
    /// Bytes of `Session::cmd`.
    Cmd(Range<usize>),
    /// The raw message (after BDAT).
    Raw,
    /// The stuffed message and terminator (after 354).
    Stuffed,
    /// The terminator alone (354 with no recipient accepted).
    Terminator,
}

/// A session on an open connection.
pub struct Session<'a> {
    /// The connection.
    pub conn: Conn,
    /// How transactions are written.
    pub mode: Mode,
    /// Lockstep only: send BDAT (CHUNKING offered and asked for).
    lockstep_bdat: bool,
    /// Most transactions in flight.
    window: usize,
    /// Renders MAIL/RCPT/BDAT lines.
    env: EnvelopeWriter,
    /// Command bytes of the next write.
    cmd: Vec<u8>,
    /// The next write, in order.
    segs: Vec<Seg>,
    /// Replies owed, oldest first.
    expect: VecDeque<Expect>,
    /// Transactions in flight, oldest first.
    txns: VecDeque<Txn>,
    /// Next transaction number.
    next_seq: u64,
    /// DATA written, its reply not yet read: nothing may be written meanwhile.
    waiting_354: bool,
    /// The run's shared state.
    shared: &'a Shared,
}

impl<'a> Session<'a> {
    pub fn new(conn: Conn, caps: &Capabilities, shared: &'a Shared) -> Session<'a> {
        let pipelining = shared.pipelining && caps.pipelining;
        let chunking = shared.chunking && caps.chunking;
        let mode = match (pipelining, chunking) {
            (true, true) => Mode::Chunking,
            (true, false) => Mode::Pipelining,
            (false, _) => Mode::Lockstep,
        };
        let body_len = shared.message.bytes.len() as u64;
        Session {
            conn,
            mode,
            lockstep_bdat: chunking,
            window: if mode == Mode::Lockstep {
                1
            } else {
                shared.window
            },
            env: EnvelopeWriter::new(&shared.envelope, caps, body_len),
            cmd: Vec::with_capacity(4096),
            segs: Vec::new(),
            expect: VecDeque::new(),
            txns: VecDeque::new(),
            next_seq: 0,
            waiting_354: false,
            shared,
        }
    }

    /// Transactions written whose replies have not all come (lost if the
    /// connection fails now).
    pub fn in_flight(&self) -> usize {
        self.txns.len()
    }

    /// Runs until the schedule is done and every reply is in (`Ok`), or the
    /// connection fails (`Err`; transactions still in `txns` are lost).
    pub async fn run(
        &mut self,
        pending: &mut Option<Claim>,
        drain: &mut Option<Instant>,
        stats: &mut Stats,
    ) -> Result<(), ConnError> {
        if self.mode == Mode::Lockstep {
            self.run_lockstep(pending, stats).await
        } else {
            self.run_pipelined(pending, drain, stats).await
        }
    }

    async fn run_pipelined(
        &mut self,
        pending: &mut Option<Claim>,
        drain: &mut Option<Instant>,
        stats: &mut Stats,
    ) -> Result<(), ConnError> {
        let timeout = self.shared.targets[0].1.timeout;
        let mut exhausted = false;
        let mut last_progress = Instant::now();
        loop {
            let now = Instant::now();
            if self.expect.is_empty() {
                // Nothing owed: the reply timer starts with the next write.
                last_progress = now;
            }
            let mut wake = None;
            while !self.waiting_354 && self.txns.len() < self.window {
                if pending.is_none() && !exhausted {
                    *pending = self.shared.schedule.claim();
                    if pending.is_none() {
                        exhausted = true;
                        drain.get_or_insert(now + self.shared.drain);
                    }
                }
                let Some(claim) = *pending else { break };
                if let Some(due) = claim.due.filter(|&d| d > now) {
                    wake = Some(due);
                    break;
                }
                *pending = None;
                self.start_txn(claim, claim.due.unwrap_or(now), stats);
            }
            if !self.segs.is_empty() {
                self.flush(timeout).await?;
            }
            if self.expect.is_empty() && exhausted {
                return Ok(());
            }
            let reply_deadline = (!self.expect.is_empty()).then(|| last_progress + timeout);
            let drain_deadline = if exhausted { *drain } else { None };
            let drain_deadline = match (drain_deadline, self.shared.schedule.deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let deadline = [reply_deadline, wake, drain_deadline]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                r = self.conn.fill() => {
                    r?;
                    last_progress = Instant::now();
                    self.take_replies(stats)?;
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    if drain_deadline.is_some_and(|d| now >= d) {
                        return Err(ConnError::Drain);
                    }
                    if reply_deadline.is_some_and(|d| now >= d) {
                        return Err(ConnError::Timeout(timeout));
                    }
                }
            }
        }
    }

    /// Renders one transaction into the next write.
    fn start_txn(&mut self, claim: Claim, t0: Instant, stats: &mut Stats) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let c0 = self.cmd.len();
        self.env.write_mail(&mut self.cmd);
        self.expect.push_back(Expect {
            seq,
            kind: Kind::Mail,
        });
        let n = self.env.rcpts_per_msg();
        for k in 0..n {
            self.env.write_rcpt(claim.index, k, &mut self.cmd);
            self.expect.push_back(Expect {
                seq,
                kind: Kind::Rcpt,
            });
        }
        stats.recipients += u64::from(n);
        if self.mode == Mode::Chunking {
            self.env.write_bdat(&mut self.cmd);
            self.push_cmd(c0);
            self.segs.push(Seg::Raw);
            self.expect.push_back(Expect {
                seq,
                kind: Kind::Final,
            });
        } else {
            Command::Data.write_to(&mut self.cmd);
            self.push_cmd(c0);
            self.expect.push_back(Expect {
                seq,
                kind: Kind::Data,
            });
            self.waiting_354 = true;
        }
        self.txns.push_back(Txn::new(seq, t0));
    }

    /// Adds `cmd[from..]` to the next write, merging with a preceding command run.
    fn push_cmd(&mut self, from: usize) {
        let to = self.cmd.len();
        if let Some(Seg::Cmd(r)) = self.segs.last_mut() {
            if r.end == from {
                r.end = to;
                return;
            }
        }
        self.segs.push(Seg::Cmd(from..to));
    }

    /// Queues RSET (after a transaction the server may have left open).
    fn push_rset(&mut self) {
        let c0 = self.cmd.len();
        Command::Rset.write_to(&mut self.cmd);
        self.push_cmd(c0);
        self.expect.push_back(Expect {
            seq: u64::MAX,
            kind: Kind::Rset,
        });
    }

    /// Writes the queued pieces as one vectored write (commands and the shared
    /// message buffer, nothing copied).
    async fn flush(&mut self, timeout: Duration) -> Result<(), ConnError> {
        let msg = &self.shared.message;
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.segs.len() + msg.stuffed.len());
        for seg in &self.segs {
            match seg {
                Seg::Cmd(r) => slices.push(IoSlice::new(&self.cmd[r.clone()])),
                Seg::Raw => slices.push(IoSlice::new(&msg.bytes)),
                Seg::Stuffed => slices.extend(msg.stuffed_slices().map(IoSlice::new)),
                Seg::Terminator => slices.push(IoSlice::new(TERMINATOR)),
            }
        }
        let written =
            tokio::time::timeout(timeout, self.conn.write_all_vectored(&mut slices)).await;
        drop(slices);
        self.segs.clear();
        self.cmd.clear();
        match written {
            Err(_) => Err(ConnError::Timeout(timeout)),
            Ok(r) => Ok(r?),
        }
    }

    /// Handles every complete reply in the buffer.
    fn take_replies(&mut self, stats: &mut Stats) -> Result<(), ConnError> {
        let now = Instant::now();
        while let Some(reply) = self.conn.next_buffered()? {
            self.on_reply(&reply, now, stats)?;
        }
        Ok(())
    }

    /// Matches one reply to the oldest outstanding command.
    fn on_reply(
        &mut self,
        reply: &Reply,
        now: Instant,
        stats: &mut Stats,
    ) -> Result<(), ConnError> {
        let code = reply.code.get();
        let Some(exp) = self.expect.pop_front() else {
            check_closing(reply)?;
            return Err(ConnError::Unexpected(code));
        };
        if exp.kind == Kind::Rset {
            return check_closing(reply);
        }
        let Some(txn) = self.txns.front_mut() else {
            return Err(ConnError::Unexpected(code));
        };
        debug_assert_eq!(txn.seq, exp.seq, "replies out of step with transactions");
        let mut finished = false;
        match exp.kind {
            Kind::Mail => txn.mail = Some(code),
            Kind::Rcpt if is_positive(code) => txn.rcpt_ok += 1,
            Kind::Rcpt => {
                txn.rcpt_fail.get_or_insert(code);
            }
            Kind::Data => {
                self.waiting_354 = false;
                if code == 354 {
                    self.segs.push(if txn.sendable() {
                        Seg::Stuffed
                    } else {
                        Seg::Terminator
                    });
                    self.expect.push_back(Expect {
                        seq: exp.seq,
                        kind: Kind::Final,
                    });
                } else {
                    txn.data_fail = Some(code);
                    finished = true;
                    if txn.mail_ok() && code != 421 {
                        // The server may keep the transaction open: reset it before
                        // the next MAIL (nothing has been written after DATA).
                        self.push_rset();
                    }
                }
            }
            Kind::Final => {
                txn.final_code = Some(code);
                finished = true;
                if self.mode == Mode::Chunking && !is_positive(code) && txn.mail_ok() && code != 421
                {
                    self.push_rset();
                }
            }
            Kind::Rset => unreachable!("handled above"),
        }
        if code == 421 {
            if let Some(txn) = self.txns.front_mut() {
                txn.closed = Some(code);
            }
            self.finish_front(now, stats);
            return Err(ConnError::Closing);
        }
        if finished {
            self.finish_front(now, stats);
        }
        Ok(())
    }

    /// Records the oldest transaction as complete.
    fn finish_front(&mut self, now: Instant, stats: &mut Stats) {
        let Some(txn) = self.txns.pop_front() else {
            return;
        };
        while self.expect.front().is_some_and(|e| e.seq == txn.seq) {
            self.expect.pop_front();
        }
        stats.record(
            txn.outcome(),
            u64::from(txn.rcpt_ok),
            now.saturating_duration_since(txn.t0),
            now,
        );
        self.shared.completed.fetch_add(1, Ordering::Relaxed);
    }

    /// Without PIPELINING: each command waits for its reply.
    async fn run_lockstep(
        &mut self,
        pending: &mut Option<Claim>,
        stats: &mut Stats,
    ) -> Result<(), ConnError> {
        loop {
            if pending.is_none() {
                *pending = self.shared.schedule.claim();
            }
            let Some(claim) = *pending else { return Ok(()) };
            if let Some(due) = claim.due {
                tokio::time::sleep_until(due.into()).await;
            }
            *pending = None;
            match self.shared.schedule.deadline() {
                Some(end) => tokio::time::timeout_at(end.into(), self.lockstep_txn(claim, stats))
                    .await
                    .map_err(|_| ConnError::Drain)??,
                None => self.lockstep_txn(claim, stats).await?,
            }
        }
    }

    /// One transaction, one command per round trip.
    async fn lockstep_txn(&mut self, claim: Claim, stats: &mut Stats) -> Result<(), ConnError> {
        let timeout = self.shared.targets[0].1.timeout;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.txns
            .push_back(Txn::new(seq, claim.due.unwrap_or_else(Instant::now)));

        self.env.write_mail(&mut self.cmd);
        let code = self.exchange(timeout, stats).await?;
        self.txns[0].mail = Some(code);
        if !is_positive(code) {
            self.finish_front(Instant::now(), stats);
            return Ok(());
        }
        for k in 0..self.env.rcpts_per_msg() {
            self.env.write_rcpt(claim.index, k, &mut self.cmd);
            stats.recipients += 1;
            let code = self.exchange(timeout, stats).await?;
            if is_positive(code) {
                self.txns[0].rcpt_ok += 1;
            } else {
                self.txns[0].rcpt_fail.get_or_insert(code);
            }
        }
        if self.txns[0].rcpt_ok == 0 {
            self.finish_front(Instant::now(), stats);
            return self.rset(timeout, stats).await;
        }
        if self.lockstep_bdat {
            self.env.write_bdat(&mut self.cmd);
            self.segs.push(Seg::Raw);
        } else {
            Command::Data.write_to(&mut self.cmd);
            let code = self.exchange(timeout, stats).await?;
            if code != 354 {
                self.txns[0].data_fail = Some(code);
                self.finish_front(Instant::now(), stats);
                return self.rset(timeout, stats).await;
            }
            self.segs.push(Seg::Stuffed);
        }
        let code = self.exchange(timeout, stats).await?;
        self.txns[0].final_code = Some(code);
        self.finish_front(Instant::now(), stats);
        if self.lockstep_bdat && !is_positive(code) {
            self.rset(timeout, stats).await?;
        }
        Ok(())
    }

    /// Lockstep: writes `cmd` (then any queued pieces) and reads one reply; a 421
    /// ends the transaction in flight and the session.
    async fn exchange(&mut self, timeout: Duration, stats: &mut Stats) -> Result<u16, ConnError> {
        let c0 = 0;
        if !self.cmd.is_empty() {
            let body = std::mem::take(&mut self.segs);
            self.push_cmd(c0);
            self.segs.extend(body);
        }
        self.flush(timeout).await?;
        let reply = self.conn.read_reply(timeout).await?;
        let code = reply.code.get();
        if code == 421 {
            if let Some(txn) = self.txns.front_mut() {
                txn.closed = Some(code);
                self.finish_front(Instant::now(), stats);
            }
            return Err(ConnError::Closing);
        }
        Ok(code)
    }

    /// Lockstep RSET.
    async fn rset(&mut self, timeout: Duration, stats: &mut Stats) -> Result<(), ConnError> {
        Command::Rset.write_to(&mut self.cmd);
        self.exchange(timeout, stats).await.map(drop)
    }
}
