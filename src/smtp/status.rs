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
        Self {
            class,
            subject,
            detail,
        }
    }

    /// Parses `class.subject.detail` at the start of `text` (as found after the reply
    /// code). Returns the status and how many bytes it used (not counting the
    /// following space), or `None` if `text` does not start with one. Each of
    /// subject and detail is 1-3 digits without a sign.
    ///
    /// To count, the code must be followed by a space, CR, LF or the end of `text`:
    /// `2.0.0Ok` and `2.0.0.1` are text, not codes. Class must be 2, 4 or 5 (a single
    /// digit). Leading zeros in subject and detail are accepted (`2.01.0` reads as
    /// 2.1.0) although RFC 3463's grammar forbids them: refusing them would only turn
    /// a usable code into text.
    pub fn parse(text: &[u8]) -> Option<(Self, usize)> {
        let class = match text.first()? {
            b'2' => 2,
            b'4' => 4,
            b'5' => 5,
            _ => return None,
        };
        if text.get(1) != Some(&b'.') {
            return None;
        }
        let (subject, n) = number_1_to_3(&text[2..])?;
        let mut used = 2 + n;
        if text.get(used) != Some(&b'.') {
            return None;
        }
        used += 1;
        let (detail, n) = number_1_to_3(&text[used..])?;
        used += n;
        match text.get(used) {
            None | Some(b' ' | b'\r' | b'\n') => Some((
                Self {
                    class,
                    subject,
                    detail,
                },
                used,
            )),
            _ => None,
        }
    }

    /// Which part of a delivery the status is about (the subject sub-code, RFC 3463
    /// section 3), so a bulk sender knows how widely to apply a failure.
    pub fn scope(self) -> StatusScope {
        match (self.subject, self.detail) {
            // X.1.7 and X.1.8 are about the sender's address: every recipient of the
            // message gets the same answer.
            (1, 7 | 8) => StatusScope::Message,
            (1 | 2, _) => StatusScope::Recipient,
            // X.3.4 message too big for system; X.6.X media (content).
            (3, 4) | (6, _) => StatusScope::Message,
            (3..=5, _) => StatusScope::Session,
            (7, _) => StatusScope::Policy,
            _ => StatusScope::Unknown,
        }
    }

    /// A short description of the most used codes (see [`COMMON_STATUSES`]), for
    /// logs and generated replies; `None` for the rest.
    pub fn describe(self) -> Option<&'static str> {
        COMMON_STATUSES
            .iter()
            .find(|&&(subject, detail, _)| subject == self.subject && detail == self.detail)
            .map(|&(_, _, meaning)| meaning)
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
    /// 5.5.0 other or undefined protocol status.
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

/// Which part of a delivery attempt an enhanced status is about: how widely a bulk
/// sender should apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusScope {
    /// X.1.X (but X.1.7/X.1.8), X.2.X: this recipient's address or mailbox. Other
    /// recipients of the same message are not affected.
    Recipient,
    /// X.1.7, X.1.8 (sender address), X.3.4 (too big), X.6.X (content): this
    /// message, for every recipient; other messages may go through.
    Message,
    /// X.3.X, X.4.X, X.5.X: the receiving system, the route or the protocol
    /// exchange: the session (or the site) is the problem, not the message.
    Session,
    /// X.7.X: security or policy (relaying denied, reputation, authentication,
    /// TLS required): usually about the sender or the sending IP as a whole.
    Policy,
    /// X.0.X and unregistered subjects.
    Unknown,
}

/// The enhanced status codes a bulk sender meets most, as `(subject, detail,
/// meaning)`: RFC 3463, plus X.5.6 and X.7.8-10 from RFC 4954 and X.7.26 from RFC
/// 7372. The class is not part of the meaning: 4.2.2 and 5.2.2 both say "mailbox
/// full", once for now and once for good.
pub const COMMON_STATUSES: &[(u16, u16, &str)] = &[
    (0, 0, "other or undefined status"),
    (1, 0, "other address status"),
    (1, 1, "bad destination mailbox address"),
    (1, 2, "bad destination system address"),
    (1, 3, "bad destination mailbox address syntax"),
    (1, 5, "destination address valid"),
    (1, 7, "bad sender's mailbox address syntax"),
    (1, 8, "bad sender's system address"),
    (2, 0, "other or undefined mailbox status"),
    (2, 1, "mailbox disabled, not accepting messages"),
    (2, 2, "mailbox full"),
    (2, 3, "message length exceeds administrative limit"),
    (3, 0, "other or undefined mail system status"),
    (3, 1, "mail system full"),
    (3, 4, "message too big for system"),
    (4, 1, "no answer from host"),
    (4, 2, "bad connection"),
    (4, 3, "directory server failure"),
    (4, 4, "unable to route"),
    (4, 5, "mail system congestion"),
    (4, 7, "delivery time expired"),
    (5, 0, "other or undefined protocol status"),
    (5, 1, "invalid command"),
    (5, 2, "syntax error"),
    (5, 3, "too many recipients"),
    (5, 4, "invalid command arguments"),
    (5, 6, "authentication exchange line too long"),
    (6, 0, "other or undefined media error"),
    (7, 0, "other or undefined security status"),
    (7, 1, "delivery not authorized, message refused"),
    (7, 8, "authentication credentials invalid"),
    (7, 9, "authentication mechanism too weak"),
    (7, 10, "encryption needed"),
    (7, 26, "multiple authentication checks failed"),
];

/// Reads 1-3 ASCII digits at the front of `s`; `None` for none or more than three.
fn number_1_to_3(s: &[u8]) -> Option<(u16, usize)> {
    let mut value = 0u16;
    let mut n = 0;
    while let Some(&b) = s.get(n) {
        if !b.is_ascii_digit() {
            break;
        }
        if n == 3 {
            return None;
        }
        value = value * 10 + u16::from(b - b'0');
        n += 1;
    }
    (n > 0).then_some((value, n))
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_status_parse_table() {
        let es = |c, s, d, n| Some((EnhancedStatus::new(c, s, d), n));
        type Row = (&'static [u8], Option<(EnhancedStatus, usize)>);
        let table: &[Row] = &[
            (b"2.0.0", es(2, 0, 0, 5)),
            (b"2.0.0 Ok", es(2, 0, 0, 5)),
            (b"2.1.5 Ok", es(2, 1, 5, 5)),
            (b"4.7.28 rate", es(4, 7, 28, 6)),
            (b"5.7.26 dmarc", es(5, 7, 26, 6)),
            (b"5.999.999 x", es(5, 999, 999, 9)),
            (b"5.01.001 x", es(5, 1, 1, 8)),
            (b"4.4.2\r\n", es(4, 4, 2, 5)),
            (b"4.4.2\n", es(4, 4, 2, 5)),
            (b"5.1.1  two spaces", es(5, 1, 1, 5)),
            // Not codes.
            (b"", None),
            (b"2", None),
            (b"2.", None),
            (b"2.0", None),
            (b"2.0.", None),
            (b"3.0.0 x", None),
            (b"1.0.0 x", None),
            (b"0.0.0", None),
            (b"6.0.0", None),
            (b"22.0.0", None),
            (b"2.1000.0", None),
            (b"2.0.1000", None),
            (b"2..0", None),
            (b"2.0..0", None),
            (b"2.0.0Ok", None),
            (b"2.0.0.1", None),
            (b"2.0.0\tOk", None),
            (b"2.0.0-", None),
            (b" 2.0.0", None),
            (b"2,0,0", None),
            (b"2.+1.0", None),
            (b"Ok 2.0.0", None),
        ];
        for (text, expected) in table {
            assert_eq!(
                EnhancedStatus::parse(text),
                *expected,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for code in [
            EnhancedStatus::OK,
            EnhancedStatus::new(4, 7, 28),
            EnhancedStatus::new(5, 999, 0),
        ] {
            let text = code.to_string();
            assert_eq!(
                EnhancedStatus::parse(text.as_bytes()),
                Some((code, text.len()))
            );
        }
    }

    #[test]
    fn scope_and_description() {
        let table = [
            (EnhancedStatus::BAD_MAILBOX, StatusScope::Recipient),
            (EnhancedStatus::new(4, 2, 2), StatusScope::Recipient),
            (EnhancedStatus::RECIPIENT_OK, StatusScope::Recipient),
            (EnhancedStatus::BAD_SENDER_SYNTAX, StatusScope::Message),
            (EnhancedStatus::MESSAGE_TOO_BIG, StatusScope::Message),
            (EnhancedStatus::BAD_CONTENT, StatusScope::Message),
            (EnhancedStatus::TEMP_SYSTEM, StatusScope::Session),
            (EnhancedStatus::CONNECTION_DROPPED, StatusScope::Session),
            (EnhancedStatus::TOO_MANY_RECIPIENTS, StatusScope::Session),
            (EnhancedStatus::NOT_AUTHORIZED, StatusScope::Policy),
            (EnhancedStatus::OK, StatusScope::Unknown),
            (EnhancedStatus::new(5, 9, 9), StatusScope::Unknown),
        ];
        for (code, scope) in table {
            assert_eq!(code.scope(), scope, "{code}");
        }
        assert_eq!(
            EnhancedStatus::new(4, 2, 2).describe(),
            Some("mailbox full")
        );
        assert_eq!(
            EnhancedStatus::new(5, 2, 2).describe(),
            Some("mailbox full")
        );
        assert_eq!(
            EnhancedStatus::TOO_MANY_RECIPIENTS.describe(),
            Some("too many recipients")
        );
        assert_eq!(EnhancedStatus::new(5, 9, 9).describe(), None);
    }

    #[test]
    fn reply_code_checks() {
        assert_eq!(ReplyCode::new(250).map(ReplyCode::get), Some(250));
        for bad in [0, 199, 260, 600, 999] {
            assert_eq!(ReplyCode::new(bad), None, "{bad}");
        }
        assert!(ReplyCode::INSUFFICIENT_STORAGE.is_transient());
        assert!(ReplyCode::MAILBOX_UNAVAILABLE.is_permanent());
        assert_eq!(ReplyCode::START_INPUT.severity(), Severity::Intermediate);
    }
}
