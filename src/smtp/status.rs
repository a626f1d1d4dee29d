//! Reply codes and enhanced status codes, and how they classify.
//!
//! A reply code (RFC 5321 section 4.2) is three digits: the first says whether the
//! command succeeded (2), needs more input (3), failed for now (4) or for good (5).
//! An enhanced status code (RFC 3463) `class.subject.detail` refines it.

use std::fmt;

/// What a reply means for the command it answers (RFC 5321 4.2.1, first digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// 2yz: the command was accepted.
    Positive,
    /// 3yz: accepted, send the rest (354 after DATA, 334 during AUTH).
    Intermediate,
    /// 4yz: not accepted for now; the same command may succeed later.
    Transient,
    /// 5yz: not accepted, and retrying it unchanged will not help.
    Permanent,
}

/// A three-digit reply code, checked to be in 200..=599.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyCode(u16);

impl ReplyCode {
    /// Checks a numeric code; `None` outside 200..=599 or with a second digit > 5
    /// (RFC 5321 4.2.1 defines 0-5 for it).
    pub fn new(code: u16) -> Option<Self> {
        if !(200..=599).contains(&code) || (code / 10) % 10 > 5 {
            return None;
        }
        Some(Self(code))
    }

    /// The code as a number.
    pub fn get(self) -> u16 {
        self.0
    }

    /// The first digit's meaning.
    pub fn severity(self) -> Severity {
        match self.0 / 100 {
            2 => Severity::Positive,
            3 => Severity::Intermediate,
            4 => Severity::Transient,
            _ => Severity::Permanent,
        }
    }

    /// 2yz.
    pub fn is_positive(self) -> bool {
        self.severity() == Severity::Positive
    }
    /// 4yz.
    pub fn is_transient(self) -> bool {
        self.severity() == Severity::Transient
    }
    /// 5yz.
    pub fn is_permanent(self) -> bool {
        self.severity() == Severity::Permanent
    }

    pub const OK: Self = Self(250);
    pub const READY: Self = Self(220);
    pub const CLOSING: Self = Self(221);
    pub const AUTH_OK: Self = Self(235);
    pub const START_INPUT: Self = Self(354);
    pub const AUTH_CONTINUE: Self = Self(334);
    pub const SERVICE_UNAVAILABLE: Self = Self(421);
    pub const MAILBOX_BUSY: Self = Self(450);
    pub const LOCAL_ERROR: Self = Self(451);
    pub const INSUFFICIENT_STORAGE: Self = Self(452);
    pub const SYNTAX_ERROR: Self = Self(500);
    pub const PARAM_SYNTAX_ERROR: Self = Self(501);
    pub const NOT_IMPLEMENTED: Self = Self(502);
    pub const BAD_SEQUENCE: Self = Self(503);
    pub const PARAM_NOT_IMPLEMENTED: Self = Self(504);
    pub const MAILBOX_UNAVAILABLE: Self = Self(550);
    pub const EXCEEDED_STORAGE: Self = Self(552);
    pub const MAILBOX_NAME_INVALID: Self = Self(553);
    pub const TRANSACTION_FAILED: Self = Self(554);
    pub const PARAMS_NOT_RECOGNIZED: Self = Self(555);
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An RFC 3463 enhanced status code: `class.subject.detail`, class in {2, 4, 5},
/// subject 0..=999, detail 0..=999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    /// 2 success, 4 persistent transient failure, 5 permanent failure.
    pub class: u8,
    /// What the status is about (0 other, 1 address, 2 mailbox, 3 mail system,
    /// 4 network/routing, 5 protocol, 6 content, 7 security/policy).
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl EnhancedStatus {
    /// Builds a code; no range checks (use [`EnhancedStatus::parse`] for input).
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self { class, subject, detail }
    }

    /// Parses `class.subject.detail` at the start of `text` (as found after the reply
    /// code). Returns the status and how many bytes it used (not counting the
    /// following space), or `None` if `text` does not start with one. Each of
    /// subject and detail is 1-3 digits without a sign.
    pub fn parse(text: &[u8]) -> Option<(Self, usize)> {
        todo!("helper: reply/status")
    }

    /// The class's meaning.
    pub fn severity(self) -> Severity {
        match self.class {
            2 => Severity::Positive,
            4 => Severity::Transient,
            _ => Severity::Permanent,
        }
    }

    pub const OK: Self = Self::new(2, 0, 0);
    /// 2.1.0 sender ok.
    pub const SENDER_OK: Self = Self::new(2, 1, 0);
    /// 2.1.5 destination address valid.
    pub const RECIPIENT_OK: Self = Self::new(2, 1, 5);
    /// 2.6.0 message accepted.
    pub const MESSAGE_ACCEPTED: Self = Self::new(2, 6, 0);
    /// 4.3.0 / 5.3.0 mail system error.
    pub const TEMP_SYSTEM: Self = Self::new(4, 3, 0);
    /// 4.4.2 bad connection (dropped).
    pub const CONNECTION_DROPPED: Self = Self::new(4, 4, 2);
    /// 4.5.3 too many recipients (RFC 5321 4.5.3.1.10: answered with 452).
    pub const TOO_MANY_RECIPIENTS: Self = Self::new(4, 5, 3);
    /// 5.5.1 invalid command.
    pub const INVALID_COMMAND: Self = Self::new(5, 5, 1);
    /// 5.5.2 syntax error.
    pub const SYNTAX_ERROR: Self = Self::new(5, 5, 2);
    /// 5.5.4 invalid command arguments.
    pub const INVALID_ARGUMENTS: Self = Self::new(5, 5, 4);
    /// 5.5.6 authentication exchange line too long / protocol error.
    pub const PROTOCOL_ERROR: Self = Self::new(5, 5, 0);
    /// 5.1.1 bad destination mailbox.
    pub const BAD_MAILBOX: Self = Self::new(5, 1, 1);
    /// 5.1.3 bad destination mailbox address syntax.
    pub const BAD_ADDRESS_SYNTAX: Self = Self::new(5, 1, 3);
    /// 5.1.7 bad sender mailbox address syntax.
    pub const BAD_SENDER_SYNTAX: Self = Self::new(5, 1, 7);
    /// 5.3.4 message too big for system.
    pub const MESSAGE_TOO_BIG: Self = Self::new(5, 3, 4);
    /// 5.6.0 other or undefined media error (e.g. bare LF in data).
    pub const BAD_CONTENT: Self = Self::new(5, 6, 0);
    /// 5.7.1 delivery not authorized (relay refused).
    pub const NOT_AUTHORIZED: Self = Self::new(5, 7, 1);
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}
