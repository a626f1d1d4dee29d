//! Server replies (RFC 5321 section 4.2): a resumable parser for single- and
//! multi-line replies, and rendering.
//!
//! The parser works over the caller's buffer: it returns `Ok(None)` until a whole
//! reply is there, remembering how far it has scanned, so bytes may arrive split at
//! any boundary and pipelined replies are taken one at a time.
//!
//! Choices for real-world servers, which are not all RFC-clean:
//! - A line may end in a bare LF as well as CRLF; a CR inside a line's text becomes a
//!   space, so no parsed text holds CR or LF.
//! - A line may be up to [`MAX_LINE`] bytes, four times RFC 5321's 512, because real
//!   servers exceed 512; beyond it the reply is refused so a hostile server cannot make
//!   us buffer without bound. The limit holds both for the line as received and as
//!   [`Reply::write_to`] would render it, so every parsed reply renders to bytes that
//!   parse again (the fuzz target checks this).
//! - Text that is not UTF-8 is read as Latin-1 (ISO 8859-1), the usual culprit (old
//!   localized servers): every byte maps to one character, so nothing is lost and logs
//!   stay readable (a lossy U+FFFD conversion would throw the letters away).
//!   [`ReplyError::BadText`] is therefore never returned; it is kept so a strict mode
//!   can be added without breaking callers' matches.
//! - An enhanced status code is recognised (and removed from the text) on every line;
//!   [`Reply::enhanced`] comes from the first line. It is kept even if its class
//!   disagrees with the reply code; the predicates ([`Reply::is_transient`], ...) go
//!   by the reply code, which RFC 5321 makes authoritative.

use memchr::{memchr, memchr2};
use thiserror::Error;

use super::limits::MAX_REPLY_LINES;
use super::status::{EnhancedStatus, ReplyCode, Severity};

/// Longest reply line accepted, in bytes including the CRLF, both as received and
/// as rendered again (so a line ending in a bare LF may have one byte less). RFC 5321
/// 4.5.3.1.5 says 512 ([`super::limits::MAX_REPLY_LINE`]); servers send longer ones,
/// so we accept four times that and refuse beyond ([`ReplyError::LineTooLong`]).
pub const MAX_LINE: usize = 2048;

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
        Reply {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    /// A reply of several lines (one line of empty text if `lines` is empty), e.g. an
    /// EHLO reply or a long rejection. The enhanced code, if any, goes on every line.
    pub fn multiline<I>(code: ReplyCode, enhanced: Option<EnhancedStatus>, lines: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let mut lines: Vec<String> = lines.into_iter().map(Into::into).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// `250 2.0.0 <text>`: the usual positive answer.
    pub fn ok(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::OK, Some(EnhancedStatus::OK), text)
    }

    /// The first digit's meaning.
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    /// 2yz: the command was accepted.
    pub fn is_positive(&self) -> bool {
        self.code.is_positive()
    }

    /// 3yz: go on (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        self.severity() == Severity::Intermediate
    }

    /// 4yz: failed for now; retry later.
    pub fn is_transient(&self) -> bool {
        self.code.is_transient()
    }

    /// 5yz: failed for good; do not retry unchanged.
    pub fn is_permanent(&self) -> bool {
        self.code.is_permanent()
    }

    /// All lines joined with a space, for logs (no enhanced code).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Appends the wire form (`250-...` lines then `250 ...`, each with the enhanced
    /// code when present, CRLF-terminated) to `out`.
    ///
    /// The output is always exactly one reply, whatever the fields hold: a CR or LF
    /// inside a line's text is written as a space, and no lines at all is written as
    /// one line of empty text. A last line with neither text nor enhanced code is the
    /// bare code (`250`), as RFC 5321's grammar has it.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code.get();
        let digits = [
            b'0' + (code / 100) as u8,
            b'0' + (code / 10 % 10) as u8,
            b'0' + (code % 10) as u8,
        ];
        let count = self.lines.len().max(1);
        for i in 0..count {
            let text = self.lines.get(i).map_or("", String::as_str).as_bytes();
            let last = i + 1 == count;
            out.extend_from_slice(&digits);
            if !last {
                out.push(b'-');
            } else if self.enhanced.is_some() || !text.is_empty() {
                out.push(b' ');
            }
            if let Some(e) = self.enhanced {
                write_enhanced(e, out);
                if !text.is_empty() {
                    out.push(b' ');
                }
            }
            write_text(text, out);
            out.extend_from_slice(b"\r\n");
        }
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

/// `class.subject.detail` in decimal.
fn write_enhanced(e: EnhancedStatus, out: &mut Vec<u8>) {
    write_decimal(u16::from(e.class), out);
    out.push(b'.');
    write_decimal(e.subject, out);
    out.push(b'.');
    write_decimal(e.detail, out);
}

fn write_decimal(mut n: u16, out: &mut Vec<u8>) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Line text with any CR or LF written as a space, so it cannot end the line early.
fn write_text(text: &[u8], out: &mut Vec<u8>) {
    if memchr2(b'\r', b'\n', text).is_none() {
        out.extend_from_slice(text);
    } else {
        out.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    }
}

/// A line's text as a `String`: UTF-8 if it is, else Latin-1; CR becomes a space.
fn text_string(bytes: &[u8]) -> String {
    let mut text = match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    };
    if memchr(b'\r', text.as_bytes()).is_some() {
        text = text.replace('\r', " ");
    }
    text
}

/// Resumable reply parser. Keep one per connection; pass it the same buffer (with
/// new bytes appended) until it yields a reply, then drop the consumed bytes.
///
/// Each byte is looked at once: complete lines are checked and converted as they
/// arrive, and a partial line is searched for its LF only past where the last call
/// stopped. Cost per reply: one `String` per line and the `Vec` holding them.
#[derive(Debug, Default)]
pub struct ReplyParser {
    /// Offset in the caller's buffer where the line being read starts.
    line_start: usize,
    /// Offset up to which the current line has been searched for its LF.
    scanned: usize,
    /// The first line's code, once read: every later line must repeat it.
    code: Option<ReplyCode>,
    /// The first line's enhanced status code.
    enhanced: Option<EnhancedStatus>,
    /// Texts of the lines of the current reply read so far.
    lines: Vec<String>,
}

impl ReplyParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets a partly read reply (e.g. after the connection was reset). `parse`
    /// does this itself after each reply and each error.
    pub fn reset(&mut self) {
        self.line_start = 0;
        self.scanned = 0;
        self.code = None;
        self.enhanced = None;
        self.lines.clear();
    }

    /// Parses the first complete reply at the front of `buf`. `Ok(None)`: not
    /// complete yet; call again with the same bytes and more appended. `Ok(Some((r,
    /// n)))`: a reply of `n` bytes; the caller removes them from the front of the
    /// buffer before the next call. Lines may end in CRLF or (leniently) a bare LF.
    ///
    /// After an error the parser starts afresh, so calling again with the same bytes
    /// returns the same error. A buffer shorter than what was already scanned (the
    /// caller broke the contract) also makes it start afresh rather than panic.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
        if self.scanned > buf.len() {
            self.reset();
        }
        loop {
            let start = self.line_start;
            let window_end = buf.len().min(start + MAX_LINE);
            let Some(found) = memchr(b'\n', &buf[self.scanned..window_end]) else {
                if window_end - start >= MAX_LINE {
                    // MAX_LINE bytes and no LF: with it, the line would be longer.
                    self.reset();
                    return Err(ReplyError::LineTooLong);
                }
                self.scanned = window_end;
                return Ok(None);
            };
            let lf = self.scanned + found;
            let line = &buf[start..lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match self.take_line(line) {
                Err(e) => {
                    self.reset();
                    return Err(e);
                }
                Ok(Some(code)) => {
                    self.code = None;
                    let reply = Reply {
                        code,
                        enhanced: self.enhanced.take(),
                        lines: std::mem::take(&mut self.lines),
                    };
                    self.line_start = 0;
                    self.scanned = 0;
                    return Ok(Some((reply, lf + 1)));
                }
                Ok(None) => {
                    self.line_start = lf + 1;
                    self.scanned = lf + 1;
                }
            }
        }
    }

    /// Checks one line (without its line ending) and adds its text; `Ok(Some(code))`
    /// if it was the reply's last line.
    fn take_line(&mut self, line: &[u8]) -> Result<Option<ReplyCode>, ReplyError> {
        let code = match *line {
            [a, b, c, ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
                let n = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
                ReplyCode::new(n).ok_or(ReplyError::BadCode)?
            }
            _ => return Err(ReplyError::BadCode),
        };
        let (last, text) = match line.get(3) {
            None => (true, &line[3..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(ReplyError::BadSeparator),
        };
        match self.code {
            None => self.code = Some(code),
            Some(first) if first != code => return Err(ReplyError::InconsistentCode),
            Some(_) => {}
        }
        // A continuation line means at least one more line follows.
        if !last && self.lines.len() + 1 >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let (status, text) = match EnhancedStatus::parse(text) {
            Some((status, used)) => {
                let rest = &text[used..];
                (Some(status), rest.strip_prefix(b" ").unwrap_or(rest))
            }
            None => (None, text),
        };
        if self.lines.is_empty() {
            self.enhanced = status;
        }
        let text = text_string(text);
        // The line as `write_to` renders it (UTF-8 text, the first line's enhanced
        // code, CRLF) may be longer than as received: refuse it too, so that a parsed
        // reply always renders to bytes this parser accepts.
        if rendered_line_len(self.enhanced, text.len(), last) > MAX_LINE {
            return Err(ReplyError::LineTooLong);
        }
        self.lines.push(text);
        Ok(last.then_some(code))
    }
}

/// Length of one line as [`Reply::write_to`] renders it, CRLF included.
fn rendered_line_len(enhanced: Option<EnhancedStatus>, text_len: usize, last: bool) -> usize {
    // Code and CRLF; the separator unless this is a bare last line.
    let mut len = 3 + 2 + usize::from(!last || enhanced.is_some() || text_len > 0);
    if let Some(e) = enhanced {
        // class, two dots, the numbers; a space before any text.
        len += 3 + decimal_len(e.subject) + decimal_len(e.detail) + usize::from(text_len > 0);
    }
    len + text_len
}

fn decimal_len(n: u16) -> usize {
    match n {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(n: u16) -> ReplyCode {
        ReplyCode::new(n).unwrap()
    }

    fn es(class: u8, subject: u16, detail: u16) -> Option<EnhancedStatus> {
        Some(EnhancedStatus::new(class, subject, detail))
    }

    fn reply(n: u16, enhanced: Option<EnhancedStatus>, lines: &[&str]) -> Reply {
        Reply::multiline(code(n), enhanced, lines.iter().copied())
    }

    /// Realistic replies as sent on the wire, and what they parse to.
    fn fixtures() -> Vec<(&'static [u8], Reply)> {
        vec![
            (
                b"220 mx.example.com ESMTP Postfix (Debian/GNU)\r\n",
                reply(220, None, &["mx.example.com ESMTP Postfix (Debian/GNU)"]),
            ),
            (
                b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
                  250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n\
                  250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n",
                reply(
                    250,
                    None,
                    &[
                        "mx.example.com",
                        "PIPELINING",
                        "SIZE 10240000",
                        "VRFY",
                        "ETRN",
                        "STARTTLS",
                        "ENHANCEDSTATUSCODES",
                        "8BITMIME",
                        "DSN",
                        "SMTPUTF8",
                        "CHUNKING",
                    ],
                ),
            ),
            (
                b"250-mx.google.com at your service, [203.0.113.7]\r\n250-SIZE 157286400\r\n\
                  250-8BITMIME\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n\
                  250-CHUNKING\r\n250 SMTPUTF8\r\n",
                reply(
                    250,
                    None,
                    &[
                        "mx.google.com at your service, [203.0.113.7]",
                        "SIZE 157286400",
                        "8BITMIME",
                        "STARTTLS",
                        "ENHANCEDSTATUSCODES",
                        "PIPELINING",
                        "CHUNKING",
                        "SMTPUTF8",
                    ],
                ),
            ),
            (
                b"250-EX01.contoso.local Hello [198.51.100.4]\r\n250-SIZE 37748736\r\n\
                  250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n\
                  250-AUTH GSSAPI NTLM LOGIN\r\n250-AUTH=LOGIN\r\n250-8BITMIME\r\n\
                  250-BINARYMIME\r\n250 CHUNKING\r\n",
                reply(
                    250,
                    None,
                    &[
                        "EX01.contoso.local Hello [198.51.100.4]",
                        "SIZE 37748736",
                        "PIPELINING",
                        "DSN",
                        "ENHANCEDSTATUSCODES",
                        "STARTTLS",
                        "AUTH GSSAPI NTLM LOGIN",
                        "AUTH=LOGIN",
                        "8BITMIME",
                        "BINARYMIME",
                        "CHUNKING",
                    ],
                ),
            ),
            (b"250 2.1.0 Ok\r\n", reply(250, es(2, 1, 0), &["Ok"])),
            (b"250 2.1.5 Ok\r\n", reply(250, es(2, 1, 5), &["Ok"])),
            (
                b"354 End data with <CR><LF>.<CR><LF>\r\n",
                reply(354, None, &["End data with <CR><LF>.<CR><LF>"]),
            ),
            (
                b"250 2.0.0 Ok: queued as 4BxJ2l6Q9Kz9sWd\r\n",
                reply(250, es(2, 0, 0), &["Ok: queued as 4BxJ2l6Q9Kz9sWd"]),
            ),
            (b"250\r\n", reply(250, None, &[""])),
            (b"250 2.0.0\r\n", reply(250, es(2, 0, 0), &[""])),
            (b"250-\r\n250\r\n", reply(250, None, &["", ""])),
            (
                b"421 4.7.0 mx.google.com Service unavailable, closing transmission channel\r\n",
                reply(
                    421,
                    es(4, 7, 0),
                    &["mx.google.com Service unavailable, closing transmission channel"],
                ),
            ),
            (
                b"421-4.7.28 [203.0.113.7] Our system has detected an unusual rate of\r\n\
                  421-4.7.28 unsolicited mail originating from your IP address.\r\n\
                  421 4.7.28 Please visit https://support.google.com/mail/?p=RateLimitError\r\n",
                reply(
                    421,
                    es(4, 7, 28),
                    &[
                        "[203.0.113.7] Our system has detected an unusual rate of",
                        "unsolicited mail originating from your IP address.",
                        "Please visit https://support.google.com/mail/?p=RateLimitError",
                    ],
                ),
            ),
            (
                b"452 4.5.3 Too many recipients\r\n",
                reply(452, es(4, 5, 3), &["Too many recipients"]),
            ),
            (
                b"452 Insufficient system storage\r\n",
                reply(452, None, &["Insufficient system storage"]),
            ),
            (
                b"550-5.1.1 The email account that you tried to reach does not exist. Please \
                  try\r\n\
                  550-5.1.1 double-checking the recipient's email address for typos or\r\n\
                  550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1si123 - gsmtp\r\n",
                reply(
                    550,
                    es(5, 1, 1),
                    &[
                        "The email account that you tried to reach does not exist. Please try",
                        "double-checking the recipient's email address for typos or",
                        " https://support.google.com/mail/?p=NoSuchUser a1si123 - gsmtp",
                    ],
                ),
            ),
            // Bare LF, leniently.
            (
                b"550 5.7.1 <spam@example.net>: Relay access denied\n",
                reply(
                    550,
                    es(5, 7, 1),
                    &["<spam@example.net>: Relay access denied"],
                ),
            ),
            (
                b"550 Requested action not taken: mailbox unavailable\r\n",
                reply(
                    550,
                    None,
                    &["Requested action not taken: mailbox unavailable"],
                ),
            ),
            // Latin-1 text from an old localized server.
            (
                b"552 5.2.2 Bo\xeete pleine\r\n",
                reply(552, es(5, 2, 2), &["Bo\u{ee}te pleine"]),
            ),
            // Not an enhanced code: no space after it, or class 3.
            (b"250 2.0.0Ok\r\n", reply(250, None, &["2.0.0Ok"])),
            (b"354 3.0.0 go\r\n", reply(354, None, &["3.0.0 go"])),
            (b"334 VXNlcm5hbWU6\r\n", reply(334, None, &["VXNlcm5hbWU6"])),
            // A stray CR inside the text becomes a space.
            (b"250 a\rb\r\r\n", reply(250, None, &["a b "])),
            (b"221 2.0.0 Bye\r\n", reply(221, es(2, 0, 0), &["Bye"])),
        ]
    }

    /// Feeds `wire` in chunks of `size`, as a connection would: append, parse until
    /// `Ok(None)`, drain what was consumed.
    fn parse_chunked(wire: &[u8], size: usize) -> Result<Vec<(Reply, usize)>, ReplyError> {
        let mut parser = ReplyParser::new();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(size) {
            buf.extend_from_slice(chunk);
            while let Some((reply, n)) = parser.parse(&buf)? {
                buf.drain(..n);
                out.push((reply, n));
            }
        }
        assert!(
            buf.is_empty(),
            "left over: {:?}",
            String::from_utf8_lossy(&buf)
        );
        Ok(out)
    }

    fn parse_one(wire: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
        ReplyParser::new().parse(wire)
    }

    #[test]
    fn each_fixture_parses_alone() {
        for (wire, expected) in fixtures() {
            let (reply, n) = parse_one(wire).unwrap().unwrap();
            assert_eq!(reply, expected, "{:?}", String::from_utf8_lossy(wire));
            assert_eq!(n, wire.len());
        }
    }

    #[test]
    fn all_fixtures_joined_in_chunks() {
        let fixtures = fixtures();
        let wire: Vec<u8> = fixtures
            .iter()
            .flat_map(|(w, _)| w.iter().copied())
            .collect();
        for size in [1, 2, 3, 5, 7, 64, wire.len()] {
            let got = parse_chunked(&wire, size).unwrap();
            assert_eq!(got.len(), fixtures.len(), "chunk size {size}");
            for ((reply, n), (fwire, expected)) in got.iter().zip(&fixtures) {
                assert_eq!(reply, expected, "chunk size {size}");
                assert_eq!(*n, fwire.len(), "chunk size {size}");
            }
        }
    }

    #[test]
    fn incomplete_is_none_and_not_rescanned() {
        let mut parser = ReplyParser::new();
        let wire = b"250-first\r\n250 second";
        assert_eq!(parser.parse(wire), Ok(None));
        assert_eq!(parser.lines, vec!["first".to_string()]);
        assert_eq!(parser.line_start, 11);
        assert_eq!(parser.scanned, wire.len());
        let mut more = wire.to_vec();
        more.extend_from_slice(b"\r\n250 next\r\n");
        let (reply, n) = parser.parse(&more).unwrap().unwrap();
        assert_eq!(reply.lines, ["first", "second"]);
        assert_eq!(n, wire.len() + 2);
        // Fresh state for the next reply.
        assert_eq!(
            (parser.line_start, parser.scanned, parser.code),
            (0, 0, None)
        );
        assert!(parser.lines.is_empty());
        assert_eq!(parser.parse(&more[n..]).unwrap().unwrap().0.lines, ["next"]);
    }

    #[test]
    fn empty_and_partial_code() {
        for wire in [&b""[..], b"2", b"25", b"250", b"250-", b"250 2.0.0 Ok\r"] {
            assert_eq!(parse_one(wire), Ok(None), "{wire:?}");
        }
    }

    #[test]
    fn shorter_buffer_than_scanned_restarts() {
        let mut parser = ReplyParser::new();
        assert_eq!(parser.parse(b"250-a\r\n250 partial"), Ok(None));
        let (reply, n) = parser.parse(b"250 x\r\n").unwrap().unwrap();
        assert_eq!((reply.lines, n), (vec!["x".to_string()], 7));
    }

    #[test]
    fn bad_code() {
        for wire in [
            &b"\r\n"[..],
            b"\n",
            b"25\r\n",
            b"2x0 Ok\r\n",
            b"abc\r\n",
            b" 250 Ok\r\n",
            b"199 Ok\r\n",
            b"600 Ok\r\n",
            b"260 Ok\r\n",
            b"000\r\n",
            b"250-Ok\r\nxyz\r\n",
        ] {
            assert_eq!(parse_one(wire), Err(ReplyError::BadCode), "{wire:?}");
        }
    }

    #[test]
    fn bad_separator() {
        for wire in [
            &b"250x\r\n"[..],
            b"250\tOk\r\n",
            b"2500 Ok\r\n",
            b"250\rx\n",
            b"250-a\r\n250_b\r\n",
        ] {
            assert_eq!(parse_one(wire), Err(ReplyError::BadSeparator), "{wire:?}");
        }
    }

    #[test]
    fn inconsistent_code() {
        for wire in [&b"250-a\r\n251 b\r\n"[..], b"250-a\r\n250-b\r\n550 c\r\n"] {
            assert_eq!(
                parse_one(wire),
                Err(ReplyError::InconsistentCode),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn line_length_limit() {
        // Exactly MAX_LINE bytes including CRLF is accepted; with a bare LF, one less,
        // as the line renders with CRLF.
        for (ending, len) in [(&b"\r\n"[..], MAX_LINE), (b"\n", MAX_LINE - 1)] {
            let mut wire = b"250 ".to_vec();
            wire.resize(len - ending.len(), b'x');
            wire.extend_from_slice(ending);
            let (reply, n) = parse_one(&wire).unwrap().unwrap();
            assert_eq!((reply.lines[0].len(), n), (MAX_LINE - 6, len));
            assert_eq!(reply.to_bytes().len(), MAX_LINE);
            wire.insert(4, b'x');
            assert_eq!(parse_one(&wire), Err(ReplyError::LineTooLong));
        }
        // One more is refused, whether the LF is there or not yet.
        let mut wire = b"250 ".to_vec();
        wire.resize(MAX_LINE - 1, b'x');
        wire.extend_from_slice(b"\r\n");
        assert_eq!(parse_one(&wire), Err(ReplyError::LineTooLong));
        assert_eq!(parse_one(&wire[..MAX_LINE]), Err(ReplyError::LineTooLong));
        assert_eq!(parse_one(&wire[..MAX_LINE - 1]), Ok(None));
        // Fed a byte at a time, the same.
        assert_eq!(parse_chunked(&wire, 1), Err(ReplyError::LineTooLong));
        // A long second line too.
        let mut wire = b"250-ok\r\n250 ".to_vec();
        wire.resize(8 + MAX_LINE, b'x');
        assert_eq!(parse_one(&wire), Err(ReplyError::LineTooLong));
    }

    #[test]
    fn line_length_limit_applies_to_rendered_form() {
        // Latin-1 text doubles in UTF-8.
        let mut wire = b"550 ".to_vec();
        wire.resize(1100, 0xe9);
        wire.extend_from_slice(b"\r\n");
        assert_eq!(parse_one(&wire), Err(ReplyError::LineTooLong));
        // A later line without the first line's enhanced code gains it when rendered.
        let mut wire = b"550-5.1.1 a\r\n550 ".to_vec();
        let start = wire.len();
        wire.resize(start + MAX_LINE - 6, b'x');
        wire.extend_from_slice(b"\r\n");
        assert_eq!(parse_one(&wire), Err(ReplyError::LineTooLong));
        // What is accepted renders to what parses again.
        let mut wire = b"550-5.1.1 a\r\n550 ".to_vec();
        wire.resize(start + MAX_LINE - 6 - "5.1.1 ".len(), b'x');
        wire.extend_from_slice(b"\r\n");
        let (reply, _) = parse_one(&wire).unwrap().unwrap();
        assert_eq!(parse_one(&reply.to_bytes()).unwrap().unwrap().0, reply);
    }

    fn many_lines(count: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        for _ in 1..count {
            wire.extend_from_slice(b"250-x\r\n");
        }
        wire.extend_from_slice(b"250 x\r\n");
        wire
    }

    #[test]
    fn line_count_limit() {
        let (reply, _) = parse_one(&many_lines(MAX_REPLY_LINES)).unwrap().unwrap();
        assert_eq!(reply.lines.len(), MAX_REPLY_LINES);
        assert_eq!(
            parse_one(&many_lines(MAX_REPLY_LINES + 1)),
            Err(ReplyError::TooManyLines)
        );
        // Refused as soon as a line says more follow, before the rest arrives.
        let wire = many_lines(MAX_REPLY_LINES + 1);
        assert_eq!(
            parse_one(&wire[..MAX_REPLY_LINES * 7]),
            Err(ReplyError::TooManyLines)
        );
        assert_eq!(parse_chunked(&wire, 3), Err(ReplyError::TooManyLines));
    }

    #[test]
    fn text_not_utf8_is_latin1_never_bad_text() {
        let (reply, _) = parse_one(b"550 \xff\xfe caf\xc3\xa9\r\n").unwrap().unwrap();
        // Not valid UTF-8 as a whole (0xff): the line is read as Latin-1.
        assert_eq!(reply.lines, ["\u{ff}\u{fe} caf\u{c3}\u{a9}"]);
        let (reply, _) = parse_one("550 café\r\n".as_bytes()).unwrap().unwrap();
        assert_eq!(reply.lines, ["café"]);
    }

    #[test]
    fn error_resets_state() {
        let mut parser = ReplyParser::new();
        let wire = b"250-a\r\n251 b\r\n";
        assert_eq!(parser.parse(wire), Err(ReplyError::InconsistentCode));
        assert_eq!(parser.parse(wire), Err(ReplyError::InconsistentCode));
        assert_eq!(
            parser.parse(b"250 ok\r\n").unwrap().unwrap().0.lines,
            ["ok"]
        );
    }

    #[test]
    fn enhanced_code_on_every_line_is_stripped_first_line_wins() {
        let (got, _) = parse_one(b"250-2.0.0 a\r\n250-b\r\n250 2.1.0 c\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(got, reply(250, es(2, 0, 0), &["a", "b", "c"]));
        let (got, _) = parse_one(b"250-a\r\n250 2.1.0 b\r\n").unwrap().unwrap();
        assert_eq!(got, reply(250, None, &["a", "b"]));
    }

    #[test]
    fn write_to_canonical_form() {
        let cases: Vec<(Reply, &[u8])> = vec![
            (Reply::ok("Ok"), b"250 2.0.0 Ok\r\n"),
            (
                Reply::new(ReplyCode::READY, None, "mx ESMTP"),
                b"220 mx ESMTP\r\n",
            ),
            (reply(250, None, &[""]), b"250\r\n"),
            (reply(250, es(2, 0, 0), &[""]), b"250 2.0.0\r\n"),
            (reply(250, None, &["", ""]), b"250-\r\n250\r\n"),
            (
                reply(550, es(5, 1, 1), &["no such", "user"]),
                b"550-5.1.1 no such\r\n550 5.1.1 user\r\n",
            ),
            (
                reply(250, None, &["mx", "PIPELINING", "SIZE 10"]),
                b"250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n",
            ),
            (
                reply(421, es(4, 7, 28), &["slow down"]),
                b"421 4.7.28 slow down\r\n",
            ),
            (
                Reply {
                    code: code(250),
                    enhanced: None,
                    lines: vec![],
                },
                b"250\r\n",
            ),
            (
                reply(250, None, &["a\r\n250 b", "c\nd"]),
                b"250-a  250 b\r\n250 c d\r\n",
            ),
            (
                Reply::new(code(554), Some(EnhancedStatus::new(5, 999, 999)), "x"),
                b"554 5.999.999 x\r\n",
            ),
        ];
        for (reply, wire) in cases {
            assert_eq!(
                String::from_utf8_lossy(&reply.to_bytes()),
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn parse_render_parse_is_identity() {
        for (wire, expected) in fixtures() {
            let rendered = expected.to_bytes();
            let (again, n) = parse_one(&rendered).unwrap().unwrap();
            assert_eq!(again, expected, "{:?}", String::from_utf8_lossy(wire));
            assert_eq!(n, rendered.len());
        }
    }

    #[test]
    fn predicates_and_display() {
        let ok = Reply::ok("Ok");
        assert!(
            ok.is_positive() && !ok.is_transient() && !ok.is_permanent() && !ok.is_intermediate()
        );
        let go = Reply::new(ReplyCode::START_INPUT, None, "go ahead");
        assert!(go.is_intermediate());
        let busy = Reply::new(ReplyCode::SERVICE_UNAVAILABLE, es(4, 7, 0), "later");
        assert!(busy.is_transient() && busy.severity() == Severity::Transient);
        // The reply code decides, even if the enhanced class disagrees.
        let odd = Reply::new(ReplyCode::MAILBOX_UNAVAILABLE, es(4, 2, 2), "full");
        assert!(odd.is_permanent());
        assert_eq!(odd.to_string(), "550 4.2.2 full");
        assert_eq!(reply(250, None, &["a", "b"]).to_string(), "250 a b");
        assert_eq!(
            Reply::multiline(code(250), None, Vec::<String>::new()).lines,
            [""]
        );
    }
}
