//! The one message every transaction sends: built once to an exact size, shared by
//! every connection, with its DATA form (dot-stuffed) precomputed as pieces of the
//! same buffer so nothing is copied per send.

use std::ops::Range;
use std::sync::Arc;

use volley::smtp::data::{stuffing_points, DataPieces};

/// Text line length in the body, CRLF included (RFC 5322 recommends at most 78).
const LINE: usize = 78;

/// What goes into the headers.
#[derive(Debug, Clone)]
pub struct MessageSpec<'a> {
    /// Total size in bytes, headers included (grown to the smallest possible if
    /// smaller than the headers).
    pub size: usize,
    /// `From:` address.
    pub from: &'a str,
    /// `To:` address.
    pub to: &'a str,
    /// Seconds since the Unix epoch for `Date:`.
    pub unix_secs: u64,
    /// Makes the `Message-ID:` unique per run.
    pub id: u64,
}

/// One piece of the DATA section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A range of the message's own buffer.
    Body(Range<usize>),
    /// Bytes from outside it (the terminator, a CRLF): tiny, made once.
    Bytes(Box<[u8]>),
}

/// The shared message.
#[derive(Debug)]
pub struct Message {
    /// The raw message (what BDAT sends unchanged).
    pub bytes: Arc<[u8]>,
    /// The DATA section (stuffed body + terminator) as pieces, in order.
    pub stuffed: Vec<Piece>,
}

impl Message {
    /// Precomputes the DATA pieces of `bytes` (one stuffing scan, once per run).
    pub fn new(bytes: Vec<u8>) -> Message {
        let bytes: Arc<[u8]> = bytes.into();
        let points = stuffing_points(&bytes);
        let base = bytes.as_ptr() as usize;
        let end = base + bytes.len();
        let mut stuffed = Vec::new();
        for p in DataPieces::new(&bytes, &points) {
            if p.is_empty() {
                continue;
            }
            let at = p.as_ptr() as usize;
            if at >= base && at + p.len() <= end {
                stuffed.push(Piece::Body(at - base..at - base + p.len()));
            } else {
                stuffed.push(Piece::Bytes(p.into()));
            }
        }
        Message { bytes, stuffed }
    }

    /// The DATA pieces as byte slices.
    pub fn stuffed_slices(&self) -> impl Iterator<Item = &[u8]> {
        self.stuffed.iter().map(|p| match p {
            Piece::Body(r) => &self.bytes[r.clone()],
            Piece::Bytes(b) => &b[..],
        })
    }
}

/// Builds the message: headers, a blank line, then text lines filling it to exactly
/// `spec.size` bytes (or just the headers, if they are already larger). One body
/// line starts with a dot, so the dot-stuffing path is exercised on every DATA send.
pub fn build(spec: &MessageSpec<'_>) -> Vec<u8> {
    let from_domain = spec.from.rsplit_once('@').map_or("volley.test", |(_, d)| d);
    let mut subject = String::from("volley-load test message");
    let head = |subject: &str| {
        format!(
            "From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <volley-load.{:x}@{}>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
            spec.from,
            spec.to,
            subject,
            rfc5322_date(spec.unix_secs),
            spec.id,
            from_domain,
        )
    };
    let mut out = head(&subject).into_bytes();
    if spec.size == out.len() + 1 {
        // A CRLF-terminated body cannot be one byte long: lengthen the subject instead.
        subject.push('.');
        out = head(&subject).into_bytes();
    }
    out.reserve(spec.size.saturating_sub(out.len()));
    let mut line_no = 0usize;
    while out.len() < spec.size {
        let rem = spec.size - out.len();
        let mut len = rem.min(LINE);
        if rem - len == 1 {
            len -= 1; // leave 2 bytes for a last (empty) line, never 1
        }
        let text = len - 2;
        for k in 0..text {
            let c = if k == 0 && line_no == 1 {
                b'.'
            } else {
                b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    [(k + line_no) % 62]
            };
            out.push(if k > 0 && k % 9 == 0 { b' ' } else { c });
        }
        out.extend_from_slice(b"\r\n");
        line_no += 1;
    }
    out
}

/// `Date:` value (RFC 5322 3.3) in UTC, e.g. `Thu, 01 Jan 1970 00:00:00 +0000`.
pub fn rfc5322_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic Gregorian
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: usize) -> MessageSpec<'static> {
        MessageSpec {
            size,
            from: "load@volley.test",
            to: "u0@d0.example",
            unix_secs: 0,
            id: 7,
        }
    }

    fn header_len() -> usize {
        let b = build(&spec(0));
        b.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4
    }

    #[test]
    fn sizes_are_exact() {
        let h = header_len();
        for size in [
            h,
            h + 2,
            h + 3,
            h + 77,
            h + 78,
            h + 79,
            h + 80,
            1000,
            4096,
            4097,
            100_000,
        ] {
            let m = build(&spec(size));
            assert_eq!(m.len(), size, "size {size}");
            assert!(m.ends_with(b"\r\n"));
        }
        // One byte more than the headers cannot be a body: the headers grow instead.
        assert_eq!(build(&spec(h + 1)).len(), h + 1);
    }

    #[test]
    fn too_small_gives_headers_only() {
        assert_eq!(build(&spec(10)).len(), header_len());
    }

    #[test]
    fn lines_are_short_and_crlf_only() {
        let m = build(&spec(10_000));
        for line in m.split(|&b| b == b'\n') {
            assert!(line.len() < LINE, "line too long");
        }
        assert_eq!(
            m.iter().filter(|&&b| b == b'\r').count(),
            m.iter().filter(|&&b| b == b'\n').count()
        );
        assert!(m.windows(2).any(|w| w == b"\n."), "a dot-leading line");
    }

    /// Needs `volley::smtp::data` (stuffing points and pieces).
    #[test]
    fn data_pieces_are_the_stuffed_message() {
        let m = Message::new(build(&spec(5000)));
        let wire: Vec<u8> = m.stuffed_slices().flatten().copied().collect();
        let mut expect = Vec::new();
        for (i, &b) in m.bytes.iter().enumerate() {
            if b == b'.' && (i == 0 || m.bytes[i - 1] == b'\n') {
                expect.push(b'.');
            }
            expect.push(b);
        }
        expect.extend_from_slice(b".\r\n");
        assert_eq!(wire, expect);
        assert_eq!(
            wire.len(),
            DataPieces::wire_len(&m.bytes, &stuffing_points(&m.bytes))
        );
        assert!(
            m.stuffed
                .iter()
                .any(|p| matches!(p, Piece::Body(r) if r.len() > 1000)),
            "no copy"
        );
    }

    #[test]
    fn dates_render() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
    }
}
