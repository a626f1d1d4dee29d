//! Byte-level checks and fixes shared by raw and built messages: line endings,
//! line length, header names, Message-IDs.

use sha2::{Digest, Sha256};

/// RFC 5322 2.1.1: a line is at most 998 octets, CRLF excluded.
pub(super) const MAX_LINE: usize = 998;

/// Longest header name accepted. RFC 5322 sets none; ours keeps `Name: ` within
/// the first 78 columns, where mail-builder's folding assumes it is.
pub(super) const MAX_HEADER_NAME: usize = 64;

/// Why content was refused; the composer turns it into a [`ComposeError`](super::ComposeError)
/// (request-level) or a [`Rejection`](super::Rejection) (one recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fault {
    pub code: &'static str,
    pub message: String,
}

impl Fault {
    pub fn new(code: &'static str, message: impl Into<String>) -> Fault {
        Fault {
            code,
            message: message.into(),
        }
    }
}

/// Rewrites every line ending (CRLF, lone LF, lone CR) as CRLF.
pub(super) fn normalize_crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 32 + 2);
    let mut rest = input;
    while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(b"\r\n");
        let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[i + skip..];
    }
    out.extend_from_slice(rest);
    out
}

/// Whether `input` is already CRLF-only (no lone CR or LF).
#[cfg(test)]
pub(super) fn is_crlf_only(input: &[u8]) -> bool {
    let mut rest = input;
    while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
        if rest[i] == b'\n' || rest.get(i + 1) != Some(&b'\n') {
            return false;
        }
        rest = &rest[i + 2..];
    }
    true
}

/// Rewrites every line ending as a lone LF: the form template sources are split
/// and compiled in.
pub(super) fn normalize_lf(input: &str) -> String {
    if !input.contains('\r') {
        return input.to_owned();
    }
    input.replace("\r\n", "\n").replace('\r', "\n")
}

/// The 1-based number of the first line of CRLF text longer than [`MAX_LINE`].
pub(super) fn long_line(crlf: &[u8]) -> Option<usize> {
    let mut start = 0;
    let mut line = 1;
    for i in memchr::memchr_iter(b'\n', crlf) {
        // i - 1 is the CR (the text is CRLF-only).
        if i.saturating_sub(1) - start > MAX_LINE {
            return Some(line);
        }
        start = i + 1;
        line += 1;
    }
    (crlf.len() - start > MAX_LINE).then_some(line)
}

/// The fault for a line over [`MAX_LINE`] octets in `what`.
pub(super) fn line_fault(what: &str, line: usize) -> Fault {
    Fault::new(
        "line_too_long",
        format!("{what}: line {line} is longer than {MAX_LINE} octets (RFC 5322 2.1.1)"),
    )
}

/// RFC 5322 2.2 field name: printable US-ASCII except `:`.
pub(super) fn is_ftext_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Checks a header name given by the client.
pub(super) fn check_header_name(name: &str, what: &str) -> Result<(), Fault> {
    if name.contains(['\r', '\n']) {
        return Err(Fault::new(
            "header_injection",
            format!("{what}: header name contains a line break"),
        ));
    }
    if !is_ftext_name(name) {
        return Err(Fault::new(
            "bad_header",
            format!(
                "{what}: header name {name:?} is not printable ASCII without ':' (RFC 5322 2.2)"
            ),
        ));
    }
    if name.len() > MAX_HEADER_NAME {
        return Err(Fault::new(
            "bad_header",
            format!("{what}: header name longer than {MAX_HEADER_NAME} characters"),
        ));
    }
    Ok(())
}

/// Checks a rendered single-line header value (or a name, address, file name).
pub(super) fn check_single_line(value: &str, what: &str) -> Result<(), Fault> {
    if value.contains(['\r', '\n']) {
        return Err(Fault::new(
            "header_injection",
            format!("{what}: a header value may not contain CR or LF"),
        ));
    }
    if value.contains('\0') {
        return Err(Fault::new(
            "bad_header",
            format!("{what}: contains a NUL byte"),
        ));
    }
    Ok(())
}

/// The Message-ID `<hash@hostname>` of a message: a digest of the message's
/// bytes (without its Message-ID) and the composer's secret, so identical renders
/// share one and nobody can predict or collide with another request's.
pub(super) fn message_id(secret: &[u8; 16], parts: &[&[u8]], hostname: &str) -> String {
    let mut h = Sha256::new();
    h.update(secret);
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let digest = h.finalize();
    format!("<{}@{hostname}>", hex(&digest[..16]))
}

/// Lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}
