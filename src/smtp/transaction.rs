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

use super::command::{MailFrom, RcptTo};
use super::ehlo::Capabilities;
use super::reply::Reply;

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
        PlanOptions { use_chunking: true, use_pipelining: true }
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
    // helper: private state
    _private: (),
}

impl Transaction {
    /// Plans a transaction. `mail` and `rcpts` are rendered as given except that
    /// `SIZE=` is set to `body_len` when the server offers SIZE, `BODY=8BITMIME`
    /// and `SMTPUTF8` are dropped where the server does not offer them (the latter
    /// only if no address needs it, else [`PlanError::NeedsSmtpUtf8`]), and DSN
    /// parameters are dropped when the server lacks DSN. `body_len` is the raw body
    /// size (BDAT's `n`).
    pub fn new(
        caps: &Capabilities,
        mail: &MailFrom,
        rcpts: &[RcptTo],
        body_len: u64,
        options: PlanOptions,
    ) -> Result<Transaction, PlanError> {
        todo!("helper: transaction")
    }

    /// The next thing to do.
    pub fn next_action(&mut self) -> Action {
        todo!("helper: transaction")
    }

    /// Feeds the next reply, in the order the commands were written.
    pub fn on_reply(&mut self, reply: Reply) {
        todo!("helper: transaction")
    }

    /// The connection broke (or a reply was unparseable, or a timeout): every
    /// recipient without a final outcome becomes `Transient` with a synthetic
    /// `451 4.4.2` reply naming `why`. The connection must not be reused.
    pub fn on_connection_lost(&mut self, why: &str) {
        todo!("helper: transaction")
    }

    /// Whether the server's last replies mean the connection should be closed
    /// (421 at any point).
    pub fn connection_closing(&self) -> bool {
        todo!("helper: transaction")
    }

    /// One outcome per recipient, in the order given to [`Transaction::new`]; `None`
    /// for recipients still waiting.
    pub fn outcomes(&self) -> &[Option<RecipientOutcome>] {
        todo!("helper: transaction")
    }
}
