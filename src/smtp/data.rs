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

use memchr::{memchr2, memchr_iter, memmem};
use thiserror::Error;

/// The data terminator a sender writes after the (stuffed) body.
pub const TERMINATOR: &[u8] = b".\r\n";

/// Offsets in `body` of every `.` that begins a line (at offset 0 or after `\n`);
/// each must be doubled on the wire. Cost: one memchr pass over the body.
pub fn stuffing_points(body: &[u8]) -> Vec<usize> {
    let mut points = Vec::new();
    if body.first() == Some(&b'.') {
        points.push(0);
    }
    // Lines starting with a dot are rare, so searching for the pair skips most of
    // the body at SIMD speed instead of stopping at every line end.
    points.extend(memmem::find_iter(body, b"\n.").map(|at| at + 1));
    points
}

/// The slices of `body` to write, in order, for a DATA section: the body with its
/// dots doubled (at `points`, from [`stuffing_points`]), a CRLF if the body does not
/// end with one, and [`TERMINATOR`].
///
/// Points that are out of range or not strictly increasing are skipped (never a
/// panic); [`DataPieces::wire_len`] skips the same ones.
#[derive(Debug, Clone)]
pub struct DataPieces<'a> {
    /// The unstuffed body the slices are taken from.
    body: &'a [u8],
    /// Offsets of the dots to double, not yet reached.
    points: &'a [usize],
    /// Start of the next body slice; `body.len()` once the body is written.
    start: usize,
    /// Smallest offset still acceptable as a point (one past the last used point).
    min_point: usize,
    /// What comes after the body.
    tail: Tail,
}

/// The pieces after the body, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Still writing the body.
    Body,
    /// The CRLF that ends an unterminated last line, then the terminator.
    Crlf,
    /// The terminator.
    Terminator,
    /// Nothing left.
    End,
}

const CRLF: &[u8] = b"\r\n";

/// Whether `body` needs a CRLF before the terminator.
fn needs_crlf(body: &[u8]) -> bool {
    !body.is_empty() && !body.ends_with(CRLF)
}

/// Whether a point is usable, given the body length and the previous point.
fn valid_point(p: usize, min_point: usize, len: usize) -> bool {
    p >= min_point && p < len
}

impl<'a> DataPieces<'a> {
    pub fn new(body: &'a [u8], points: &'a [usize]) -> Self {
        DataPieces {
            body,
            points,
            start: 0,
            min_point: 0,
            tail: if body.is_empty() {
                Tail::Terminator
            } else {
                Tail::Body
            },
        }
    }

    /// How many bytes all pieces add up to (the DATA section's wire length).
    pub fn wire_len(body: &[u8], points: &[usize]) -> usize {
        let mut min_point = 0;
        let mut doubled = 0;
        for &p in points {
            if valid_point(p, min_point, body.len()) {
                doubled += 1;
                min_point = p + 1;
            }
        }
        body.len() + doubled + if needs_crlf(body) { CRLF.len() } else { 0 } + TERMINATOR.len()
    }
}

impl<'a> Iterator for DataPieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self.tail {
            Tail::Body => {
                while let Some((&p, rest)) = self.points.split_first() {
                    self.points = rest;
                    if valid_point(p, self.min_point, self.body.len()) {
                        // Up to and including the dot; the next slice starts at the
                        // same dot, which doubles it.
                        let piece = &self.body[self.start..=p];
                        self.start = p;
                        self.min_point = p + 1;
                        return Some(piece);
                    }
                }
                let piece = &self.body[self.start..];
                self.start = self.body.len();
                self.tail = if needs_crlf(self.body) {
                    Tail::Crlf
                } else {
                    Tail::Terminator
                };
                Some(piece)
            }
            Tail::Crlf => {
                self.tail = Tail::Terminator;
                Some(CRLF)
            }
            Tail::Terminator => {
                self.tail = Tail::End;
                Some(TERMINATOR)
            }
            Tail::End => None,
        }
    }
}

/// Length in bytes of the longest line of `body` (CRLF included), to check against
/// [`super::limits::MAX_TEXT_LINE`] before sending. Lines end at each LF.
pub fn longest_line(body: &[u8]) -> usize {
    let mut longest = 0;
    let mut start = 0;
    for lf in memchr_iter(b'\n', body) {
        longest = longest.max(lf + 1 - start);
        start = lf + 1;
    }
    longest.max(body.len() - start)
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
    Done {
        consumed: usize,
        result: Result<(), DataError>,
    },
}

/// What ended the previous line, as seen from the start of the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineEnd {
    /// Nothing: the start of the data.
    DataStart,
    /// CRLF.
    Crlf,
    /// LF without CR before it.
    BareLf,
    /// CR without LF after it.
    BareCr,
}

impl LineEnd {
    /// Whether a dot-line here may be the terminator (`CRLF.CRLF`, or `.CRLF` first).
    fn proper(self) -> bool {
        matches!(self, LineEnd::DataStart | LineEnd::Crlf)
    }
}

/// Where a [`DataReader`] is between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// Inside a line.
    Text,
    /// Just after a CR inside a line: CRLF or a bare CR, depending on the next byte.
    Cr,
    /// At the start of a line. After a bare ending, the verdict on it waits for
    /// the line's first bytes: a dot-line there is smuggling, not a bare ending.
    LineStart(LineEnd),
    /// A line began with a dot, which has not been passed on: it is dropped
    /// (stuffing or terminator) or, after a bare CR, content.
    Dot(LineEnd),
    /// `CRLF .` then CR (or `.` CR at the start): only LF completes the terminator.
    DotCr,
    /// The terminator was read.
    Finished,
    /// An immediate error was returned; it is returned again.
    Failed(DataError),
}

/// Streaming receiver for one DATA section.
///
/// The hot loop finds CR and LF with `memchr2` and passes runs of content on as
/// single slices, so lines cost one search each and only line starts are looked
/// at byte by byte.
#[derive(Debug)]
pub struct DataReader {
    /// Limits and bare line ending policy.
    limits: DataLimits,
    /// Where the reader is, carried across feeds.
    state: ReadState,
    /// Content bytes so far (after unstuffing).
    size: u64,
    /// Content bytes of the current line so far.
    line_len: usize,
    /// `TooBig` / `LineTooLong`, reported with the terminator.
    deferred: Option<DataError>,
}

impl DataReader {
    pub fn new(limits: DataLimits) -> Self {
        DataReader {
            limits,
            state: ReadState::LineStart(LineEnd::DataStart),
            size: 0,
            line_len: 0,
            deferred: None,
        }
    }

    /// Consumes `input`, passing unstuffed content to `content` as slices of
    /// `input` (the final CRLF before the dot is content, as RFC 5321 says). Input
    /// may be split at any byte. An `Err` is immediate and final (bare line endings,
    /// smuggling forms).
    ///
    /// A line that starts with a dot loses that dot (RFC 5321 4.5.2: senders
    /// double such dots). With [`BareLineEndings::Allow`] a line also starts after
    /// a bare LF (which is where [`stuffing_points`] doubles dots too), but not
    /// after a bare CR. Once content passes `max_size`, it is counted but no
    /// longer passed to `content`. After `Done` or `Err`, further calls return
    /// the same result and consume nothing.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut content: impl FnMut(&[u8]),
    ) -> Result<DataProgress, DataError> {
        match self.state {
            ReadState::Finished => {
                return Ok(DataProgress::Done {
                    consumed: 0,
                    result: self.result(),
                })
            }
            ReadState::Failed(e) => return Err(e),
            _ => {}
        }
        let reject = self.limits.bare_line_endings == BareLineEndings::Reject;
        let len = input.len();
        // Next byte to look at.
        let mut i = 0;
        // Start of the content not yet passed on.
        let mut from = 0;
        while i < len {
            match self.state {
                ReadState::Text => match memchr2(b'\r', b'\n', &input[i..]) {
                    None => {
                        self.line_len += len - i;
                        i = len;
                    }
                    Some(k) => {
                        let at = i + k;
                        if input[at] == b'\n' {
                            self.line_len += k + 1;
                            self.end_line();
                            self.state = ReadState::LineStart(LineEnd::BareLf);
                            i = at + 1;
                        } else if input.get(at + 1) == Some(&b'\n')
                            && !matches!(input.get(at + 2), None | Some(b'.'))
                        {
                            // Fast path: CRLF and an ordinary next line.
                            self.line_len += k + 2;
                            self.end_line();
                            i = at + 2;
                        } else {
                            self.line_len += k + 1;
                            self.state = ReadState::Cr;
                            i = at + 1;
                        }
                    }
                },
                ReadState::Cr => {
                    if input[i] == b'\n' {
                        self.line_len += 1;
                        self.end_line();
                        self.state = ReadState::LineStart(LineEnd::Crlf);
                        i += 1;
                    } else {
                        // A bare CR; this byte starts the next line.
                        self.state = ReadState::LineStart(LineEnd::BareCr);
                    }
                }
                ReadState::LineStart(end) => {
                    if input[i] == b'.' {
                        self.emit(&input[from..i], &mut content);
                        from = i + 1;
                        self.state = ReadState::Dot(end);
                        i += 1;
                    } else {
                        if reject && !end.proper() {
                            return Err(self.fail(DataError::BareLineEnding));
                        }
                        self.state = ReadState::Text;
                    }
                }
                ReadState::Dot(end) => match input[i] {
                    b'\n' => return Err(self.fail(DataError::SmugglingTerminator)),
                    b'\r' if end.proper() => {
                        self.state = ReadState::DotCr;
                        i += 1;
                    }
                    b'\r' => return Err(self.fail(DataError::SmugglingTerminator)),
                    _ => {
                        if reject && !end.proper() {
                            return Err(self.fail(DataError::BareLineEnding));
                        }
                        if end == LineEnd::BareCr {
                            // Not a line start for stuffing: the dot is content.
                            self.line_len += 1;
                            self.emit(b".", &mut content);
                        }
                        self.state = ReadState::Text;
                    }
                },
                ReadState::DotCr => {
                    if input[i] != b'\n' {
                        return Err(self.fail(DataError::SmugglingTerminator));
                    }
                    // Everything before the dot was passed on when the dot was seen.
                    self.state = ReadState::Finished;
                    return Ok(DataProgress::Done {
                        consumed: i + 1,
                        result: self.result(),
                    });
                }
                ReadState::Finished | ReadState::Failed(_) => unreachable!("returned above"),
            }
        }
        // A pending CR after a dot (in this input) is not content.
        if self.state != ReadState::DotCr {
            self.emit(&input[from..], &mut content);
        }
        Ok(DataProgress::NeedMore)
    }

    /// Content bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Counts `bytes` as content and passes them on while under the size limit.
    fn emit(&mut self, bytes: &[u8], content: &mut impl FnMut(&[u8])) {
        if bytes.is_empty() {
            return;
        }
        self.size += bytes.len() as u64;
        if self.size > self.limits.max_size as u64 {
            self.deferred = Some(DataError::TooBig);
        } else {
            content(bytes);
        }
    }

    /// Checks the line that just ended against `max_line`.
    fn end_line(&mut self) {
        if let Some(max) = self.limits.max_line {
            if self.line_len > max && self.deferred.is_none() {
                self.deferred = Some(DataError::LineTooLong);
            }
        }
        self.line_len = 0;
    }

    fn fail(&mut self, e: DataError) -> DataError {
        self.state = ReadState::Failed(e);
        e
    }

    fn result(&self) -> Result<(), DataError> {
        self.deferred.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: DataLimits = DataLimits {
        max_size: usize::MAX,
        max_line: None,
        bare_line_endings: BareLineEndings::Reject,
    };
    const LAX: DataLimits = DataLimits {
        bare_line_endings: BareLineEndings::Allow,
        ..STRICT
    };

    /// Dot-stuffing the obvious way, byte by byte, with CRLF and terminator.
    fn naive_wire(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &b) in body.iter().enumerate() {
            if b == b'.' && (i == 0 || body[i - 1] == b'\n') {
                out.push(b'.');
            }
            out.push(b);
        }
        if !body.is_empty() && !body.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    fn pieces_wire(body: &[u8]) -> Vec<u8> {
        let points = stuffing_points(body);
        let wire: Vec<u8> = DataPieces::new(body, &points).flatten().copied().collect();
        assert_eq!(wire.len(), DataPieces::wire_len(body, &points));
        wire
    }

    /// The reader's verdict on `wire` fed in pieces ending at `cuts` (then the
    /// rest): `None` if it wants more, else the content, the offset in `wire`
    /// where the terminator ended and the deferred result.
    type Read = Option<(Vec<u8>, usize, Result<(), DataError>)>;

    fn read(wire: &[u8], cuts: &[usize], limits: DataLimits) -> Result<Read, DataError> {
        let mut reader = DataReader::new(limits);
        let mut got = Vec::new();
        let mut offset = 0;
        for &end in cuts.iter().chain([&wire.len()]) {
            match reader.feed(&wire[offset..end], |c| got.extend_from_slice(c))? {
                DataProgress::NeedMore => offset = end,
                DataProgress::Done { consumed, result } => {
                    if result != Err(DataError::TooBig) {
                        assert_eq!(reader.size(), got.len() as u64);
                    }
                    return Ok(Some((got, offset + consumed, result)));
                }
            }
        }
        Ok(None)
    }

    /// `read` on every two-piece split of `wire`, and one byte at a time; all must
    /// agree, and that verdict is returned.
    fn read_all_splits(wire: &[u8], limits: DataLimits) -> Result<Read, DataError> {
        let whole = read(wire, &[], limits);
        for cut in 0..=wire.len() {
            assert_eq!(
                read(wire, &[cut], limits),
                whole,
                "split at {cut} of {wire:?}"
            );
        }
        let bytes: Vec<usize> = (1..wire.len()).collect();
        assert_eq!(read(wire, &bytes, limits), whole, "byte by byte: {wire:?}");
        whole
    }

    /// A small deterministic generator (xorshift64*), so tests need no crate.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
        /// A body made of pieces that stress stuffing and line ends.
        fn body(&mut self, tokens: &[&[u8]]) -> Vec<u8> {
            let n = self.below(24);
            (0..n)
                .flat_map(|_| tokens[self.below(tokens.len())].to_vec())
                .collect()
        }
    }

    #[test]
    fn stuffing_points_table() {
        let cases: &[(&[u8], &[usize])] = &[
            (b"", &[]),
            (b".", &[0]),
            (b"..", &[0]),
            (b"abc", &[]),
            (b"a.b\r\n", &[]),
            (b".\r\n.\r\n", &[0, 3]),
            (b"a\r\n.b\r\n..c\r\n", &[3, 7]),
            (b"\n.", &[1]),
            (b"\n\n.\n.", &[2, 4]),
            (b"\r.", &[]),
        ];
        for (body, want) in cases {
            assert_eq!(stuffing_points(body), *want, "{body:?}");
        }
    }

    #[test]
    fn pieces_table() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"", &[b".\r\n"]),
            (b"abc", &[b"abc", b"\r\n", b".\r\n"]),
            (b"abc\r\n", &[b"abc\r\n", b".\r\n"]),
            (b".a\r\n", &[b".", b".a\r\n", b".\r\n"]),
            (b"a\r\n.\r\n", &[b"a\r\n.", b".\r\n", b".\r\n"]),
            (b"x\n.", &[b"x\n.", b".", b"\r\n", b".\r\n"]),
        ];
        for (body, want) in cases {
            let points = stuffing_points(body);
            let got: Vec<&[u8]> = DataPieces::new(body, &points).collect();
            assert_eq!(got, *want, "{body:?}");
        }
    }

    #[test]
    fn pieces_borrow_the_body() {
        let body = b"one\r\n.two\r\n..three\r\n".to_vec();
        let points = stuffing_points(&body);
        let range = body.as_ptr_range();
        let pieces: Vec<&[u8]> = DataPieces::new(&body, &points).collect();
        let (last, from_body) = pieces.split_last().unwrap();
        assert_eq!(*last, TERMINATOR);
        for p in from_body {
            assert!(range.contains(&p.as_ptr()), "piece {p:?} was copied");
        }
    }

    #[test]
    fn pieces_match_naive_stuffing() {
        let tokens: &[&[u8]] = &[b"a", b"text ", b".", b"..", b"\r\n", b"\r", b"\n", b"\r\n."];
        let mut rng = Rng(0x5eed);
        for _ in 0..20_000 {
            let body = rng.body(tokens);
            assert_eq!(pieces_wire(&body), naive_wire(&body), "{body:?}");
        }
    }

    #[test]
    fn bad_points_do_not_panic() {
        let body = b".a\n.b\n.c";
        for points in [&[5, 3, 3, 0, 100][..], &[usize::MAX], &[0, 0, 0], &[8, 2]] {
            let wire: Vec<u8> = DataPieces::new(body, points).flatten().copied().collect();
            assert_eq!(wire.len(), DataPieces::wire_len(body, points), "{points:?}");
        }
    }

    #[test]
    fn longest_line_table() {
        let cases: &[(&[u8], usize)] = &[
            (b"", 0),
            (b"abc", 3),
            (b"abc\r\n", 5),
            (b"a\r\nbcdef\r\ngh", 7),
            (b"a\r\nbc\r\ndefgh", 5),
            (b"\n\n", 1),
        ];
        for (body, want) in cases {
            assert_eq!(longest_line(body), *want, "{body:?}");
        }
    }

    #[test]
    fn reader_round_trips_tricky_bodies_at_every_split() {
        let bodies: &[&[u8]] = &[
            b"",
            b"hello\r\n",
            b"no final crlf",
            b".\r\n",
            b"..\r\n",
            b".leading dot\r\n",
            b"a\r\n.\r\nb\r\n",
            b"a\r\n..\r\n...\r\n",
            b"\r\n\r\n",
            b"\r\n.",
            b"ends with dot.",
            b"x\r\n.y",
        ];
        for body in bodies {
            let wire = pieces_wire(body);
            let mut want = body.to_vec();
            if !body.is_empty() && !body.ends_with(b"\r\n") {
                want.extend_from_slice(b"\r\n");
            }
            for limits in [STRICT, LAX] {
                let got = read_all_splits(&wire, limits);
                assert_eq!(
                    got,
                    Ok(Some((want.clone(), wire.len(), Ok(())))),
                    "{body:?}"
                );
            }
        }
    }

    #[test]
    fn reader_round_trips_generated_bodies() {
        let mut rng = Rng(42);
        let crlf_tokens: &[&[u8]] = &[b"a", b"word ", b".", b"..", b"\r\n", b"\r\n."];
        let any_tokens: &[&[u8]] = &[b"a", b".", b"\r\n", b"\r", b"\n", b"\n."];
        for _ in 0..5_000 {
            for (tokens, limits) in [(crlf_tokens, STRICT), (any_tokens, LAX)] {
                let body = rng.body(tokens);
                let wire = pieces_wire(&body);
                let cuts = [rng.below(wire.len() + 1)];
                let got = read(&wire, &cuts, limits);
                // A bare CR then a dot-line cannot be stuffed away: it is refused.
                if wire.windows(3).any(|w| w == b"\r.\r" || w == b"\r.\n") {
                    assert_eq!(got, Err(DataError::SmugglingTerminator), "{body:?}");
                    continue;
                }
                let mut want = body.clone();
                if !body.is_empty() && !body.ends_with(b"\r\n") {
                    want.extend_from_slice(b"\r\n");
                }
                assert_eq!(got, Ok(Some((want, wire.len(), Ok(())))), "{body:?}");
            }
        }
    }

    #[test]
    fn reader_refuses_every_smuggling_form_at_every_split() {
        let forms: &[&[u8]] = &[
            b"a\n.\nb\r\n.\r\n",
            b"a\r.\rb\r\n.\r\n",
            b"a\r\n.\nb\r\n.\r\n",
            b"a\n.\r\nb\r\n.\r\n",
            b"a\r.\r\nb\r\n.\r\n",
            b"a\r\n.\rb\r\n.\r\n",
            b"a\r.\nb\r\n.\r\n",
            b"a\n.\rb\r\n.\r\n",
            b".\nb\r\n.\r\n",
            b".\rb\r\n.\r\n",
            b"\n.\nb\r\n.\r\n",
            b"\r.\rb\r\n.\r\n",
        ];
        for wire in forms {
            for limits in [STRICT, LAX] {
                let got = read_all_splits(wire, limits);
                assert_eq!(got, Err(DataError::SmugglingTerminator), "{wire:?}");
            }
        }
    }

    #[test]
    fn bare_line_endings_follow_policy() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\nb\r\n.\r\n", b"a\nb\r\n"),
            (b"a\rb\r\n.\r\n", b"a\rb\r\n"),
            (b"a\r\r\n.\r\n", b"a\r\r\n"),
            (b"\nb\r\n.\r\n", b"\nb\r\n"),
            (b"a\n\r\n.\r\n", b"a\n\r\n"),
            // A line starts after a bare LF (stuffed there too), not after a bare CR.
            (b"a\n..b\r\n.\r\n", b"a\n.b\r\n"),
            (b"a\r.b\r\n.\r\n", b"a\r.b\r\n"),
            (b"a\r..\r\n.\r\n", b"a\r..\r\n"),
        ];
        for (wire, content) in cases {
            let got = read_all_splits(wire, STRICT);
            assert_eq!(got, Err(DataError::BareLineEnding), "{wire:?}");
            let got = read_all_splits(wire, LAX);
            assert_eq!(
                got,
                Ok(Some((content.to_vec(), wire.len(), Ok(())))),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn size_limit_is_reported_at_the_end() {
        let wire = b"12345678\r\n.\r\nQUIT\r\n";
        let fits = DataLimits {
            max_size: 10,
            ..STRICT
        };
        let done = Some((b"12345678\r\n".to_vec(), 13, Ok(())));
        assert_eq!(read_all_splits(wire, fits), Ok(done));
        let over = DataLimits {
            max_size: 9,
            ..STRICT
        };
        let Ok(Some((got, 13, Err(DataError::TooBig)))) = read(wire, &[], over) else {
            panic!("expected TooBig at the terminator");
        };
        assert!(got.len() <= 9, "content past the limit was passed on");
        // The verdict does not depend on where the input was split.
        for cut in 0..=wire.len() {
            let verdict = read(wire, &[cut], over).map(|r| r.map(|(_, at, res)| (at, res)));
            assert_eq!(
                verdict,
                Ok(Some((13, Err(DataError::TooBig)))),
                "split at {cut}"
            );
        }
    }

    #[test]
    fn line_limit_is_reported_at_the_end() {
        let limits = DataLimits {
            max_line: Some(5),
            ..STRICT
        };
        // "abc\r\n" is 5; a stuffing dot does not count.
        let ok = b"abc\r\n..ab\r\n.\r\n";
        let done = Some((b"abc\r\n.ab\r\n".to_vec(), ok.len(), Ok(())));
        assert_eq!(read_all_splits(ok, limits), Ok(done));
        let long = b"abcd\r\nx\r\n.\r\n";
        let done = Some((
            b"abcd\r\nx\r\n".to_vec(),
            long.len(),
            Err(DataError::LineTooLong),
        ));
        assert_eq!(read_all_splits(long, limits), Ok(done));
        let lax = DataLimits {
            max_line: Some(5),
            ..LAX
        };
        let bare = b"abc\nabcde\n\r\n.\r\n";
        assert_eq!(
            read_all_splits(bare, lax).unwrap().unwrap().2,
            Err(DataError::LineTooLong)
        );
    }

    #[test]
    fn consumed_stops_at_the_terminator() {
        let wire = b"Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@b>\r\n.\r\n";
        let end = wire.len() - b"MAIL FROM:<a@b>\r\n.\r\n".len();
        let got = read_all_splits(wire, STRICT);
        assert_eq!(
            got,
            Ok(Some((b"Subject: x\r\n\r\nbody\r\n".to_vec(), end, Ok(()))))
        );
        // Empty body with a pipelined command after it.
        assert_eq!(
            read_all_splits(b".\r\nQUIT\r\n", STRICT),
            Ok(Some((vec![], 3, Ok(()))))
        );
    }

    #[test]
    fn finished_and_failed_readers_stay_put() {
        let mut reader = DataReader::new(STRICT);
        assert_eq!(
            reader.feed(b"a\r\n.\r\nrest", |_| {}),
            Ok(DataProgress::Done {
                consumed: 6,
                result: Ok(())
            })
        );
        let again = reader.feed(b"more\r\n.\r\n", |_| panic!("content after the end"));
        assert_eq!(
            again,
            Ok(DataProgress::Done {
                consumed: 0,
                result: Ok(())
            })
        );

        let mut reader = DataReader::new(STRICT);
        assert_eq!(reader.feed(b"a\nb", |_| {}), Err(DataError::BareLineEnding));
        assert_eq!(
            reader.feed(b"\r\n.\r\n", |_| {}),
            Err(DataError::BareLineEnding)
        );
    }

    #[test]
    fn content_comes_in_large_slices() {
        let body: Vec<u8> =
            b"A line of text that is about as long as most lines are.\r\n".repeat(1000);
        let wire = pieces_wire(&body);
        let mut calls = 0;
        let mut reader = DataReader::new(STRICT);
        let progress = reader.feed(&wire, |_| calls += 1);
        assert_eq!(
            progress,
            Ok(DataProgress::Done {
                consumed: wire.len(),
                result: Ok(())
            })
        );
        assert_eq!(calls, 1);
        assert_eq!(reader.size(), body.len() as u64);
    }
}
