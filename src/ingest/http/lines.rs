//! Splitting a streamed body into lines (NDJSON), chunk by chunk, without ever
//! holding more than one line: a line longer than the cap is skipped to its end
//! and reported as too long, so one huge line cannot exhaust memory.

use bytes::{Bytes, BytesMut};

/// One line of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its `\n` (nor a `\r` before it).
    Text(Bytes),
    /// A line longer than the cap: its content was dropped.
    TooLong,
}

/// Resumable splitter: feed chunks, take lines, then [`Splitter::finish`].
#[derive(Debug)]
pub struct Splitter {
    /// Longest line kept, in bytes.
    cap: usize,
    /// The start of the current line (at most `cap` bytes).
    partial: BytesMut,
    /// The current line passed the cap: drop bytes to the next `\n`.
    skipping: bool,
}

impl Splitter {
    /// A splitter refusing lines longer than `cap` bytes.
    pub fn new(cap: usize) -> Splitter {
        Splitter {
            cap,
            partial: BytesMut::new(),
            skipping: false,
        }
    }

    /// Splits `chunk`, calling `out` for each line it completes.
    pub fn feed(&mut self, chunk: &[u8], mut out: impl FnMut(Line)) {
        let mut rest = chunk;
        while !rest.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    let (head, tail) = (&rest[..i], &rest[i + 1..]);
                    rest = tail;
                    if self.skipping || self.partial.len() + head.len() > self.cap + 1 {
                        self.skipping = false;
                        self.partial.clear();
                        out(Line::TooLong);
                        continue;
                    }
                    self.partial.extend_from_slice(head);
                    out(self.take());
                }
                None => {
                    if !self.skipping {
                        if self.partial.len() + rest.len() > self.cap + 1 {
                            self.skipping = true;
                            self.partial = BytesMut::new();
                        } else {
                            self.partial.extend_from_slice(rest);
                        }
                    }
                    rest = &[];
                }
            }
        }
    }

    /// The last line, when the stream did not end with `\n`.
    pub fn finish(&mut self, mut out: impl FnMut(Line)) {
        if self.skipping {
            self.skipping = false;
            out(Line::TooLong);
        } else if !self.partial.is_empty() {
            out(self.take());
        }
    }

    /// The buffered line, minus a trailing `\r`, checked against the cap (the
    /// buffer may hold one byte more, for that `\r`).
    fn take(&mut self) -> Line {
        let mut line = self.partial.split().freeze();
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.cap {
            Line::TooLong
        } else {
            Line::Text(line)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(cap: usize, chunks: &[&[u8]]) -> Vec<Line> {
        let mut s = Splitter::new(cap);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| out.push(l));
        }
        s.finish(|l| out.push(l));
        out
    }

    fn text(s: &str) -> Line {
        Line::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn splits_across_chunks_and_strips_cr() {
        let whole = b"one\r\ntwo\n\nthree";
        let want = vec![text("one"), text("two"), text(""), text("three")];
        assert_eq!(split(100, &[whole]), want);
        // Every way of cutting the input in two gives the same lines.
        for i in 0..whole.len() {
            assert_eq!(split(100, &[&whole[..i], &whole[i..]]), want, "cut at {i}");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(split(100, &bytes), want);
    }

    #[test]
    fn long_lines_are_skipped_and_reported() {
        let long = "x".repeat(20);
        let input = format!("ok\n{long}\nafter\n{long}");
        let want = vec![text("ok"), Line::TooLong, text("after"), Line::TooLong];
        assert_eq!(split(10, &[input.as_bytes()]), want);
        let bytes: Vec<&[u8]> = input.as_bytes().chunks(3).collect();
        assert_eq!(split(10, &bytes), want);
        // Exactly at the cap is fine, with or without CR.
        assert_eq!(
            split(3, &[b"abc\nabc\r\nabcd\n"]),
            vec![text("abc"), text("abc"), Line::TooLong]
        );
    }

    #[test]
    fn memory_stays_within_the_cap() {
        let mut s = Splitter::new(16);
        let chunk = [b'y'; 4096];
        for _ in 0..100 {
            s.feed(&chunk, |_| panic!("no line ends here"));
            assert!(s.partial.len() <= 17);
        }
        let mut out = Vec::new();
        s.feed(b"\nz\n", |l| out.push(l));
        assert_eq!(out, vec![Line::TooLong, text("z")]);
    }
}
