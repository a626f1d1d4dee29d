//! Server replies (RFC 5321 section 4.2): a resumable parser for single- and
//! multi-line replies, and rendering.
//!
//! The parser works over the caller's buffer: it returns `Ok(None)` until a whole
//! reply is there, remembering how far it has scanned, so bytes may arrive split at
//! any boundary and pipelined replies are taken one at a time.

use thiserror::Error;

use super::status::{EnhancedStatus, ReplyCode, Severity};

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code shared by every line.
    pub code: ReplyCode,
    /// The enhanced status code from the first line, if the server sent one.
    pub enhanced: Option<EnhancedStatus>,
    /// The text of each line after `code` and separator, with the enhanced status
    /// code (and the space after it) removed where it was present; no CRLF.
    pub lines: Vec<String>,
}

/// Why bytes could not be a reply. Any of these means the peer is broken or
/// hostile: the client drops the connection (a connection-level transient error).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    #[error("reply line longer than allowed")]
    LineTooLong,
    #[error("reply line does not start with a valid three-digit code")]
    BadCode,
    #[error("reply code changed between lines of one reply")]
    InconsistentCode,
    #[error("invalid separator after reply code")]
    BadSeparator,
    #[error("too many lines in one reply")]
    TooManyLines,
    #[error("reply text is not valid UTF-8")]
    BadText,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: ReplyCode, enhanced: Option<EnhancedStatus>, text: impl Into<String>) -> Self {
        Reply { code, enhanced, lines: vec![text.into()] }
    }

    /// The first digit's meaning.
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    /// All lines joined with a space, for logs (no enhanced code).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Appends the wire form (`250-...` lines then `250 ...`, each with the enhanced
    /// code when present, CRLF-terminated) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        todo!("helper: reply")
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.enhanced {
            Some(e) => write!(f, "{} {} {}", self.code, e, self.text()),
            None => write!(f, "{} {}", self.code, self.text()),
        }
    }
}

/// Resumable reply parser. Keep one per connection; pass it the same buffer (with
/// new bytes appended) until it yields a reply, then drop the consumed bytes.
#[derive(Debug, Default)]
pub struct ReplyParser {
    // helper: private state (bytes already scanned, lines so far, ...)
}

impl ReplyParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the first complete reply at the front of `buf`. `Ok(None)`: not
    /// complete yet; call again with the same bytes and more appended. `Ok(Some((r,
    /// n)))`: a reply of `n` bytes; the caller removes them from the front of the
    /// buffer before the next call. Lines may end in CRLF or (leniently) a bare LF.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
        todo!("helper: reply")
    }
}
