//! The client transaction planner: what to write for one message to N recipients,
//! given what the server offers, and how the replies map back to each recipient.
//!
//! The planner does no I/O. The session asks it for the next [`Action`]: bytes to
//! write (commands, and a marker where the body goes so the send path can write the
//! spool's buffer itself), or how many replies to wait for; it hands each reply back
//! with [`Transaction::on_reply`] and finally reads one [`RecipientOutcome`] per
//! recipient.
//!
//! With PIPELINING and CHUNKING the whole transaction is one write (`MAIL`, every
//! `RCPT`, `BDAT n LAST`, body) and its replies are awaited afterwards, so a session
//! may write several transactions back to back before reading any reply (RFC 3030
//! section 4.2, RFC 2920 3.1). With PIPELINING alone, `MAIL`, `RCPT`s and `DATA` are
//! one write and the body a second one after the 354. Without PIPELINING each
//! command waits for its reply.

use std::collections::VecDeque;

use super::address::{Mailbox, Path};
use super::command::{BodyType, Command, MailFrom, RcptTo};
use super::data::TERMINATOR;
use super::ehlo::Capabilities;
use super::reply::Reply;
use super::status::{EnhancedStatus, ReplyCode, Severity};

/// What one recipient's attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// The server took responsibility (2xx at end of data for an accepted RCPT).
    Delivered(Reply),
    /// 4xx (at MAIL, RCPT, DATA or end of data), or the connection was lost: retry
    /// later per the retry policy.
    Transient(Reply),
    /// 5xx: bounce.
    Permanent(Reply),
    /// Not attempted in this transaction: the server said 452 "too many
    /// recipients" (enhanced 4.5.3, or 452 whose text says so); send again at once
    /// in a new transaction, without counting an attempt (RFC 5321 4.5.3.1.10).
    TooManyRecipients(Reply),
}

/// Where the body goes in a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// After DATA's 354: the body dot-stuffed (see [`super::data::DataPieces`]),
    /// ending with CRLF and the terminator.
    DotStuffed,
    /// After `BDAT n LAST`: the body's bytes unchanged, exactly `n` of them.
    Raw,
}

/// One piece of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Command bytes, CRLF included (possibly several commands).
    Commands(Vec<u8>),
    /// The message body, written by the send path from its own buffer.
    Body(BodyEncoding),
}

/// What the session does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these segments in order (one vectored write where possible), then ask
    /// again.
    Write(Vec<Segment>),
    /// Read this many replies, passing each to [`Transaction::on_reply`], then ask
    /// again.
    AwaitReplies(usize),
    /// The transaction is over; [`Transaction::outcomes`] is final. The connection
    /// is ready for the next transaction (no RSET needed after a completed one; the
    /// planner has already written RSET where the server left the transaction
    /// open, e.g. MAIL accepted but every RCPT refused).
    Done,
}

/// Options the caller chooses per transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Use BDAT when the server offers CHUNKING.
    pub use_chunking: bool,
    /// Use PIPELINING when the server offers it.
    pub use_pipelining: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            use_chunking: true,
            use_pipelining: true,
        }
    }
}

/// Why the planner will not start a transaction; every recipient gets the
/// corresponding permanent outcome without anything being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("message larger than the server's SIZE limit")]
    TooBig,
    #[error("message needs SMTPUTF8, which the server does not offer")]
    NeedsSmtpUtf8,
    #[error("no recipients")]
    NoRecipients,
}

/// One message to N recipients on one connection.
#[derive(Debug)]
pub struct Transaction {
    /// MAIL then each RCPT, rendered once with the server-specific parameters.
    rendered: Vec<u8>,
    /// End offset in `rendered` of MAIL, then of each RCPT (`n + 1` entries).
    ends: Vec<usize>,
    /// The raw body size (BDAT's `n`).
    body_len: u64,
    /// Which conversation shape this transaction takes.
    mode: Mode,
    /// What was last written; the decision after its replies depends on it.
    step: Step,
    /// Replies awaited, in the order their commands were written.
    expected: VecDeque<Expect>,
    /// One outcome per recipient; `None` while undecided.
    outcomes: Vec<Option<RecipientOutcome>>,
    /// Which recipients the server accepted at RCPT (their outcome comes at end of data).
    accepted: Vec<bool>,
    /// MAIL got 2xx: the server holds an open transaction until end of data or RSET.
    mail_accepted: bool,
    /// The reply to DATA was 3xx (go ahead).
    data_go_ahead: bool,
    /// A 421 arrived, or the connection was lost.
    closing: bool,
}

/// The shape of the conversation, from the capabilities and options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One write: MAIL, RCPTs, `BDAT n LAST`, body.
    PipelinedChunking,
    /// MAIL, RCPTs and DATA in one write; the body after the 354.
    PipelinedData,
    /// One command per round trip; the body with `BDAT n LAST` or after DATA's 354.
    Serial { chunking: bool },
}

/// What was last written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing yet.
    Start,
    /// Serial: MAIL.
    Mail,
    /// Serial: the RCPT for this recipient.
    Rcpt(usize),
    /// DATA (alone, or at the end of the pipelined batch).
    Data,
    /// The whole pipelined BDAT transaction.
    Batch,
    /// The body (or a lone terminator), or `BDAT n LAST` and the body when serial.
    Body,
    /// RSET.
    Rset,
    /// Nothing more to write.
    Done,
}

/// Which command a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Mail,
    Rcpt(usize),
    Data,
    /// End of data: the reply after the terminator or to `BDAT n LAST`.
    EndOfData,
    /// RSET, or a terminator written only to leave DATA mode: no outcome.
    Ignored,
}

impl Transaction {
    /// Plans a transaction. `mail` and `rcpts` are rendered as given except that
    /// `SIZE=` is set to `body_len` when the server offers SIZE, `BODY=8BITMIME`
    /// and `SMTPUTF8` are dropped where the server does not offer them (the latter
    /// only if no address needs it, else [`PlanError::NeedsSmtpUtf8`]), and DSN
    /// parameters are dropped when the server lacks DSN. `body_len` is the raw body
    /// size (BDAT's `n`).
    ///
    /// Also: `SMTPUTF8` is added when an address needs it and the server offers
    /// it; `BODY=` goes only to servers offering 8BITMIME (`BINARYMIME` only with
    /// BINARYMIME and BDAT in use); `AUTH=` only to servers offering AUTH.
    pub fn new(
        caps: &Capabilities,
        mail: &MailFrom,
        rcpts: &[RcptTo],
        body_len: u64,
        options: PlanOptions,
    ) -> Result<Transaction, PlanError> {
        if rcpts.is_empty() {
            return Err(PlanError::NoRecipients);
        }
        if !caps.accepts_size(body_len) {
            return Err(PlanError::TooBig);
        }
        let needs_utf8 = |path: &Path| path.mailbox.as_ref().is_some_and(Mailbox::needs_smtputf8);
        let addresses_need_utf8 =
            needs_utf8(&mail.path) || rcpts.iter().any(|r| needs_utf8(&r.path));
        if addresses_need_utf8 && !caps.smtputf8 {
            return Err(PlanError::NeedsSmtpUtf8);
        }
        let chunking = options.use_chunking && caps.chunking;
        let pipelining = options.use_pipelining && caps.pipelining;
        let mode = match (pipelining, chunking) {
            (true, true) => Mode::PipelinedChunking,
            (true, false) => Mode::PipelinedData,
            (false, chunking) => Mode::Serial { chunking },
        };

        let mut mail = mail.clone();
        mail.size = caps.size.map(|_| body_len);
        mail.smtputf8 = caps.smtputf8 && (mail.smtputf8 || addresses_need_utf8);
        mail.body = mail.body.filter(|body| match body {
            BodyType::SevenBit | BodyType::EightBitMime => caps.eight_bit_mime,
            BodyType::BinaryMime => caps.binary_mime && chunking,
        });
        if !caps.dsn {
            mail.ret = None;
            mail.envid = None;
        }
        if caps.auth.is_empty() {
            mail.auth = None;
        }
        let mut rendered = Vec::with_capacity(64 * (rcpts.len() + 1));
        let mut ends = Vec::with_capacity(rcpts.len() + 1);
        Command::Mail(mail).write_to(&mut rendered);
        ends.push(rendered.len());
        for rcpt in rcpts {
            let mut rcpt = rcpt.clone();
            if !caps.dsn {
                rcpt.notify = None;
                rcpt.orcpt = None;
            }
            Command::Rcpt(rcpt).write_to(&mut rendered);
            ends.push(rendered.len());
        }

        Ok(Transaction {
            rendered,
            ends,
            body_len,
            mode,
            step: Step::Start,
            expected: VecDeque::with_capacity(rcpts.len() + 2),
            outcomes: vec![None; rcpts.len()],
            accepted: vec![false; rcpts.len()],
            mail_accepted: false,
            data_go_ahead: false,
            closing: false,
        })
    }

    /// How many replies this transaction's first write asks for when that write is
    /// the whole transaction (PIPELINING and CHUNKING: `2 + recipients`), so a
    /// session may write the next transaction before reading them; `None` when the
    /// planner needs replies before it can write the rest.
    ///
    /// If the server accepts MAIL but refuses every RCPT, the planner asks for an
    /// RSET after the replies; a transaction written behind it will see its MAIL
    /// refused with 503 (a transient outcome for its recipients).
    pub fn single_write_replies(&self) -> Option<usize> {
        (self.mode == Mode::PipelinedChunking).then(|| self.outcomes.len() + 2)
    }

    /// The next thing to do.
    pub fn next_action(&mut self) -> Action {
        if self.closing {
            self.step = Step::Done;
            return Action::Done;
        }
        if !self.expected.is_empty() {
            return Action::AwaitReplies(self.expected.len());
        }
        let n = self.outcomes.len();
        match self.step {
            Step::Start => match self.mode {
                Mode::PipelinedChunking => {
                    let mut commands = std::mem::take(&mut self.rendered);
                    Command::Bdat {
                        size: self.body_len,
                        last: true,
                    }
                    .write_to(&mut commands);
                    self.expect_batch();
                    self.expected.push_back(Expect::EndOfData);
                    self.write(
                        Step::Batch,
                        vec![
                            Segment::Commands(commands),
                            Segment::Body(BodyEncoding::Raw),
                        ],
                    )
                }
                Mode::PipelinedData => {
                    let mut commands = std::mem::take(&mut self.rendered);
                    Command::Data.write_to(&mut commands);
                    self.expect_batch();
                    self.expected.push_back(Expect::Data);
                    self.write(Step::Data, vec![Segment::Commands(commands)])
                }
                Mode::Serial { .. } => {
                    self.expected.push_back(Expect::Mail);
                    let mail = self.rendered[..self.ends[0]].to_vec();
                    self.write(Step::Mail, vec![Segment::Commands(mail)])
                }
            },
            Step::Mail if !self.mail_accepted => self.finish(),
            Step::Mail => self.write_rcpt(0),
            // After a 452 "too many recipients" the rest would get the same answer.
            Step::Rcpt(i) if i + 1 < n && self.outcomes[i + 1].is_none() => self.write_rcpt(i + 1),
            Step::Rcpt(_) if !self.accepted.contains(&true) => self.write_rset(),
            Step::Rcpt(_) => match self.mode {
                Mode::Serial { chunking: true } => {
                    let mut bdat = Vec::new();
                    Command::Bdat {
                        size: self.body_len,
                        last: true,
                    }
                    .write_to(&mut bdat);
                    self.expected.push_back(Expect::EndOfData);
                    self.write(
                        Step::Body,
                        vec![Segment::Commands(bdat), Segment::Body(BodyEncoding::Raw)],
                    )
                }
                _ => {
                    self.expected.push_back(Expect::Data);
                    self.write(
                        Step::Data,
                        vec![Segment::Commands(command_bytes(Command::Data))],
                    )
                }
            },
            Step::Data if self.data_go_ahead && self.accepted.contains(&true) => {
                self.expected.push_back(Expect::EndOfData);
                self.write(Step::Body, vec![Segment::Body(BodyEncoding::DotStuffed)])
            }
            Step::Data if self.data_go_ahead => {
                // No recipient to deliver to, but the server waits for data: end it.
                self.expected.push_back(Expect::Ignored);
                self.write(Step::Body, vec![Segment::Commands(TERMINATOR.to_vec())])
            }
            Step::Data if self.mail_accepted => self.write_rset(),
            Step::Batch if self.mail_accepted && !self.accepted.contains(&true) => {
                self.write_rset()
            }
            Step::Data | Step::Batch | Step::Body | Step::Rset | Step::Done => self.finish(),
        }
    }

    /// Feeds the next reply, in the order the commands were written.
    pub fn on_reply(&mut self, reply: Reply) {
        if reply.code == ReplyCode::SERVICE_UNAVAILABLE {
            self.close_with(&reply);
            return;
        }
        let Some(expect) = self.expected.pop_front() else {
            return;
        };
        match expect {
            Expect::Mail if reply.code.is_positive() => self.mail_accepted = true,
            Expect::Mail => self.settle_undecided(&failure(&reply)),
            Expect::Rcpt(i) => {
                if self.outcomes[i].is_some() {
                    // Already settled by a refused MAIL.
                } else if reply.code.is_positive() {
                    self.accepted[i] = true;
                } else if too_many_recipients(&reply) {
                    self.outcomes[i] = Some(RecipientOutcome::TooManyRecipients(reply.clone()));
                    if matches!(self.mode, Mode::Serial { .. }) {
                        // Not worth a round trip each: the rest will not fit either.
                        for o in &mut self.outcomes[i + 1..] {
                            *o = Some(RecipientOutcome::TooManyRecipients(reply.clone()));
                        }
                    }
                } else {
                    self.outcomes[i] = Some(failure(&reply));
                }
            }
            Expect::Data => {
                self.data_go_ahead = reply.severity() == Severity::Intermediate;
                if !self.data_go_ahead {
                    self.settle_accepted(&failure(&reply));
                }
            }
            Expect::EndOfData => {
                let outcome = match reply.severity() {
                    Severity::Positive => RecipientOutcome::Delivered(reply),
                    _ => failure(&reply),
                };
                self.settle_accepted(&outcome);
            }
            Expect::Ignored => {}
        }
    }

    /// The connection broke (or a reply was unparseable, or a timeout): every
    /// recipient without a final outcome becomes `Transient` with a synthetic
    /// `451 4.4.2` reply naming `why`. The connection must not be reused
    /// ([`Transaction::connection_closing`] says so from now on).
    pub fn on_connection_lost(&mut self, why: &str) {
        let reply = Reply::new(
            ReplyCode::LOCAL_ERROR,
            Some(EnhancedStatus::CONNECTION_DROPPED),
            format!("connection lost: {why}"),
        );
        self.close_with(&reply);
    }

    /// Whether the server's last replies mean the connection should be closed
    /// (421 at any point, or [`Transaction::on_connection_lost`]).
    pub fn connection_closing(&self) -> bool {
        self.closing
    }

    /// One outcome per recipient, in the order given to [`Transaction::new`]; `None`
    /// for recipients still waiting.
    pub fn outcomes(&self) -> &[Option<RecipientOutcome>] {
        &self.outcomes
    }

    /// Expects the replies to MAIL and every RCPT.
    fn expect_batch(&mut self) {
        self.expected.push_back(Expect::Mail);
        self.expected
            .extend((0..self.outcomes.len()).map(Expect::Rcpt));
    }

    fn write(&mut self, step: Step, segments: Vec<Segment>) -> Action {
        self.step = step;
        Action::Write(segments)
    }

    fn write_rcpt(&mut self, i: usize) -> Action {
        self.expected.push_back(Expect::Rcpt(i));
        let rcpt = self.rendered[self.ends[i]..self.ends[i + 1]].to_vec();
        self.write(Step::Rcpt(i), vec![Segment::Commands(rcpt)])
    }

    /// Closes the server's open transaction; the reply does not matter.
    fn write_rset(&mut self) -> Action {
        self.expected.push_back(Expect::Ignored);
        self.write(
            Step::Rset,
            vec![Segment::Commands(command_bytes(Command::Rset))],
        )
    }

    fn finish(&mut self) -> Action {
        self.step = Step::Done;
        Action::Done
    }

    /// Every recipient still undecided gets `outcome`.
    fn settle_undecided(&mut self, outcome: &RecipientOutcome) {
        for o in self.outcomes.iter_mut().filter(|o| o.is_none()) {
            *o = Some(outcome.clone());
        }
    }

    /// Every recipient accepted at RCPT and still undecided gets `outcome`.
    fn settle_accepted(&mut self, outcome: &RecipientOutcome) {
        for (o, _) in self
            .outcomes
            .iter_mut()
            .zip(&self.accepted)
            .filter(|(o, &a)| a && o.is_none())
        {
            *o = Some(outcome.clone());
        }
    }

    /// The connection is going away: nothing more to write or read.
    fn close_with(&mut self, reply: &Reply) {
        self.closing = true;
        self.expected.clear();
        self.step = Step::Done;
        self.settle_undecided(&RecipientOutcome::Transient(reply.clone()));
    }
}

/// The outcome of a refusal: 5xx permanent, anything else (4xx, or a reply that
/// makes no sense there) transient.
fn failure(reply: &Reply) -> RecipientOutcome {
    match reply.severity() {
        Severity::Permanent => RecipientOutcome::Permanent(reply.clone()),
        Severity::Positive | Severity::Intermediate | Severity::Transient => {
            RecipientOutcome::Transient(reply.clone())
        }
    }
}

/// RFC 5321 4.5.3.1.10: 452 (or the 552 that RFC 821 wrongly listed, which
/// clients treat as temporary) with enhanced `x.5.3`, or without an enhanced code
/// but saying "too many recipients".
fn too_many_recipients(reply: &Reply) -> bool {
    if !matches!(reply.code.get(), 452 | 552) {
        return false;
    }
    match reply.enhanced {
        Some(e) => e.subject == 5 && e.detail == 3,
        None => reply
            .lines
            .iter()
            .any(|l| l.to_ascii_lowercase().contains("too many recipients")),
    }
}

fn command_bytes(command: Command) -> Vec<u8> {
    let mut out = Vec::new();
    command.write_to(&mut out);
    out
}

#[cfg(test)]
#[path = "transaction_tests.rs"]
mod tests;
