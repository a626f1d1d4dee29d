//! Line checks for BDAT content (RFC 3030). BDAT frames by size, so there is no
//! terminator to find and nothing to unstuff; but without BINARYMIME the content
//! is still CRLF-terminated lines, and we hold it to the same rules as DATA: no
//! bare CR or LF (a later hop relaying it with DATA could read them as line ends)
//! and no line over `max_line_length`.

use memchr::memchr2;

/// What was wrong with BDAT content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A line longer than allowed.
    LineTooLong,
    /// A CR not followed by LF, or an LF not preceded by CR.
    BareLineEnding,
}

/// Checks content fed in pieces split anywhere; the first error sticks.
#[derive(Debug, Clone)]
pub struct ChunkCheck {
    /// Longest line, CRLF included.
    max_line: usize,
    /// Bytes of the current line so far.
    line_len: usize,
    /// The last byte fed was a CR (its LF may start the next piece).
    pending_cr: bool,
    /// The first problem found.
    error: Option<ChunkError>,
}

impl ChunkCheck {
    /// A check for lines of at most `max_line` bytes, CRLF included.
    pub fn new(max_line: usize) -> ChunkCheck {
        ChunkCheck {
            max_line,
            line_len: 0,
            pending_cr: false,
            error: None,
        }
    }

    /// Checks the next piece of content.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.error.is_some() || bytes.is_empty() {
            return;
        }
        let mut i = 0;
        if self.pending_cr {
            self.pending_cr = false;
            if bytes[0] != b'\n' {
                return self.fail(ChunkError::BareLineEnding);
            }
            self.line_len += 1;
            if !self.end_line() {
                return;
            }
            i = 1;
        }
        while i < bytes.len() {
            let Some(k) = memchr2(b'\r', b'\n', &bytes[i..]) else {
                self.line_len += bytes.len() - i;
                self.check_len();
                return;
            };
            let at = i + k;
            self.line_len += k;
            if bytes[at] == b'\n' {
                return self.fail(ChunkError::BareLineEnding);
            }
            match bytes.get(at + 1) {
                Some(b'\n') => {
                    self.line_len += 2;
                    if !self.end_line() {
                        return;
                    }
                    i = at + 2;
                }
                Some(_) => return self.fail(ChunkError::BareLineEnding),
                None => {
                    self.line_len += 1;
                    self.pending_cr = true;
                    self.check_len();
                    return;
                }
            }
        }
    }

    /// The verdict on everything fed (a CR at the very end is bare).
    pub fn finish(&self) -> Result<(), ChunkError> {
        match self.error {
            Some(e) => Err(e),
            None if self.pending_cr => Err(ChunkError::BareLineEnding),
            None => Ok(()),
        }
    }

    /// A line ended: checks it and starts the next; false once failed.
    fn end_line(&mut self) -> bool {
        self.check_len();
        self.line_len = 0;
        self.error.is_none()
    }

    fn check_len(&mut self) {
        if self.line_len > self.max_line {
            self.fail(ChunkError::LineTooLong);
        }
    }

    fn fail(&mut self, e: ChunkError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `content` split at every position into two pieces, and in single
    /// bytes; all must agree with feeding it whole.
    fn verdict(max: usize, content: &[u8]) -> Result<(), ChunkError> {
        let mut whole = ChunkCheck::new(max);
        whole.feed(content);
        let want = whole.finish();
        for cut in 0..=content.len() {
            let mut c = ChunkCheck::new(max);
            c.feed(&content[..cut]);
            c.feed(&content[cut..]);
            assert_eq!(c.finish(), want, "cut at {cut} of {content:?}");
        }
        let mut bytes = ChunkCheck::new(max);
        for b in content {
            bytes.feed(std::slice::from_ref(b));
        }
        assert_eq!(bytes.finish(), want, "byte by byte {content:?}");
        want
    }

    #[test]
    fn lines_and_endings() {
        assert_eq!(verdict(10, b"ab\r\ncd\r\n"), Ok(()));
        assert_eq!(verdict(10, b"no final crlf"), Err(ChunkError::LineTooLong));
        assert_eq!(verdict(20, b"no final crlf"), Ok(()));
        assert_eq!(verdict(10, b"ab\ncd\r\n"), Err(ChunkError::BareLineEnding));
        assert_eq!(verdict(10, b"ab\rcd\r\n"), Err(ChunkError::BareLineEnding));
        assert_eq!(verdict(10, b"ab\r\n.\n"), Err(ChunkError::BareLineEnding));
        assert_eq!(verdict(10, b"ab\r"), Err(ChunkError::BareLineEnding));
        assert_eq!(verdict(6, b"abcd\r\n"), Ok(()));
        assert_eq!(verdict(5, b"abcd\r\n"), Err(ChunkError::LineTooLong));
        assert_eq!(verdict(5, b""), Ok(()));
    }
}
