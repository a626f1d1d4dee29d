//! Message data (RFC 5321 4.5.2 and 4.1.1.4): dot-stuffing as split points for
//! senders, end-of-data detection and unstuffing for receivers, line-length checks.
//!
//! Senders never rewrite a body: [`stuffing_points`] finds the offsets of the dots
//! that need doubling, and [`DataPieces`] yields slices of the original buffer that,
//! written in order, are the stuffed body and its terminator. Overlapping slices
//! repeat the dot, so no byte is copied.
//!
//! Receivers feed bytes to a [`DataReader`], which passes the unstuffed content to a
//! callback as slices of the input and finds `CRLF.CRLF`. End-of-data forms that
//! other servers might accept (`LF.LF`, `CR.CR`, `CRLF.LF`, `LF.CRLF`) are refused:
//! they are how SMTP smuggling hides a second message inside the first.

use thiserror::Error;

/// The data terminator a sender writes after the (stuffed) body.
pub const TERMINATOR: &[u8] = b".\r\n";

/// Offsets in `body` of every `.` that begins a line (at offset 0 or after `\n`);
/// each must be doubled on the wire. Cost: one memchr pass over the body.
pub fn stuffing_points(body: &[u8]) -> Vec<usize> {
    todo!("helper: data")
}

/// The slices of `body` to write, in order, for a DATA section: the body with its
/// dots doubled (at `points`, from [`stuffing_points`]), a CRLF if the body does not
/// end with one, and [`TERMINATOR`].
pub struct DataPieces<'a> {
    // helper: private state
    _body: &'a [u8],
}

impl<'a> DataPieces<'a> {
    pub fn new(body: &'a [u8], points: &'a [usize]) -> Self {
        todo!("helper: data")
    }

    /// How many bytes all pieces add up to (the DATA section's wire length).
    pub fn wire_len(body: &[u8], points: &[usize]) -> usize {
        todo!("helper: data")
    }
}

impl<'a> Iterator for DataPieces<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        todo!("helper: data")
    }
}

/// Length in bytes of the longest line of `body` (CRLF included), to check against
/// [`super::limits::MAX_TEXT_LINE`] before sending.
pub fn longest_line(body: &[u8]) -> usize {
    todo!("helper: data")
}

/// How a [`DataReader`] treats a bare CR or LF that is not part of an end-of-data
/// form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BareLineEndings {
    /// Refuse the message (the strict default: no ambiguity for later hops).
    #[default]
    Reject,
    /// Pass them through as content. The smuggling forms of end-of-data are
    /// still refused.
    Allow,
}

/// Limits and policy for one DATA section.
#[derive(Debug, Clone, Copy)]
pub struct DataLimits {
    /// Most content bytes (after unstuffing) before [`DataError::TooBig`].
    pub max_size: usize,
    /// Longest line, CRLF included, before [`DataError::LineTooLong`]; `None` to
    /// accept any length.
    pub max_line: Option<usize>,
    /// Bare CR / LF policy.
    pub bare_line_endings: BareLineEndings,
}

/// Why a DATA section was refused. After `TooBig` and `LineTooLong` the reader keeps
/// reading to the terminator (so the connection stays in sync) and reports the
/// error at the end; after a smuggling form or bare line ending it stops at once:
/// the caller replies 5xx and closes the connection, since where the client thinks
/// the data ends is unknowable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DataError {
    #[error("message exceeds the size limit")]
    TooBig,
    #[error("line longer than allowed")]
    LineTooLong,
    #[error("bare CR or LF in message data")]
    BareLineEnding,
    #[error("ambiguous end-of-data sequence (bare LF or CR around the dot)")]
    SmugglingTerminator,
}

/// What [`DataReader::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProgress {
    /// All of the input was content; feed more.
    NeedMore,
    /// The terminator ended at this many bytes into the input; what follows it is
    /// the next command (pipelining). `Err` holds a deferred `TooBig`/`LineTooLong`.
    Done { consumed: usize, result: Result<(), DataError> },
}

/// Streaming receiver for one DATA section.
#[derive(Debug)]
pub struct DataReader {
    // helper: private state (content size so far, current line length, the
    // partial line-ending/dot state carried across feeds, deferred error)
    _limits: DataLimits,
}

impl DataReader {
    pub fn new(limits: DataLimits) -> Self {
        todo!("helper: data")
    }

    /// Consumes `input`, passing unstuffed content to `content` as slices of
    /// `input` (the final CRLF before the dot is content, as RFC 5321 says). Input
    /// may be split at any byte. An `Err` is immediate and final (bare line endings,
    /// smuggling forms).
    pub fn feed(
        &mut self,
        input: &[u8],
        content: impl FnMut(&[u8]),
    ) -> Result<DataProgress, DataError> {
        todo!("helper: data")
    }

    /// Content bytes seen so far.
    pub fn size(&self) -> u64 {
        todo!("helper: data")
    }
}
