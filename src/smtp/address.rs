//! RFC 5321 paths and mailboxes (section 4.1.2), with IDN domains stored as A-labels.
//!
//! Policy code needs to see the tricks that turn a recipient into a relay request
//! (source routes, `%` hacks, bang paths, `@` inside a quoted local part), so the
//! parser records them instead of silently accepting or rewriting them.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use super::limits::{MAX_DOMAIN, MAX_LOCAL_PART, MAX_PATH};

/// The domain part of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A DNS name, ASCII lowercase, IDN labels converted to A-labels (`xn--...`).
    Name(String),
    /// `[192.0.2.1]`
    V4(Ipv4Addr),
    /// `[IPv6:2001:db8::1]`
    V6(Ipv6Addr),
    /// `[tag:content]` with a tag other than IPv6 (RFC 5321 General-address-literal).
    General { tag: String, content: String },
}

/// A mailbox: `local-part@domain`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// The local part exactly as it goes on the wire: a dot-string, or a
    /// quoted-string including its quotes. Case is kept (RFC 5321 2.4: only the
    /// receiving host may interpret it).
    pub local: String,
    /// The domain, normalised (lowercase A-labels, or an address literal).
    pub domain: Domain,
}

/// A reverse-path or forward-path: `<>` (only valid as a reverse-path) or a mailbox,
/// possibly behind an obsolete source route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    /// `None` for the null path `<>`.
    pub mailbox: Option<Mailbox>,
    /// The hosts of an obsolete source route (`<@a,@b:user@c>`), which RFC 5321
    /// C says to ignore but which policy may refuse; empty when there was none.
    pub source_route: Vec<String>,
}

/// A way of asking a server to relay hidden inside an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayTrick {
    /// `<@relay:user@dest>`
    SourceRoute,
    /// `user%dest@relay`
    PercentHack,
    /// `dest!user@relay`
    BangPath,
    /// `"user@dest"@relay`
    QuotedAt,
}

/// Why an address was refused. Each maps to a 501/553 reply with an enhanced code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("address must be enclosed in <>")]
    MissingBrackets,
    #[error("empty address")]
    Empty,
    #[error("invalid character in local part")]
    BadLocalPart,
    #[error("local part longer than 64 octets")]
    LocalPartTooLong,
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    #[error("missing @domain")]
    MissingDomain,
    #[error("invalid domain")]
    BadDomain,
    #[error("domain longer than 255 octets")]
    DomainTooLong,
    #[error("invalid address literal")]
    BadAddressLiteral,
    #[error("path longer than 256 octets")]
    PathTooLong,
    #[error("invalid source route")]
    BadSourceRoute,
    #[error("non-ASCII address without SMTPUTF8")]
    NeedsSmtpUtf8,
}

/// Byte classes for the hot-path scanners, one table lookup per byte.
const ATEXT: u8 = 1 << 0;
/// Letter, digit or hyphen (domain labels, address-literal tags).
const LDH: u8 = 1 << 1;
/// RFC 5321 dcontent: printable ASCII except `[`, `\`, `]`.
const DCONTENT: u8 = 1 << 2;

const fn byte_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        if c.is_ascii_alphanumeric() {
            class |= ATEXT | LDH;
        }
        if c == b'-' {
            class |= LDH;
        }
        if matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'/'
                | b'='
                | b'?'
                | b'^'
                | b'_'
                | b'`'
                | b'{'
                | b'|'
                | b'}'
                | b'~'
        ) {
            class |= ATEXT;
        }
        if (c >= 33 && c <= 90) || (c >= 94 && c <= 126) {
            class |= DCONTENT;
        }
        t[b] = class;
        b += 1;
    }
    t
}

static CLASSES: [u8; 256] = byte_classes();

#[inline]
fn is(b: u8, class: u8) -> bool {
    CLASSES[b as usize] & class != 0
}

/// Where a mailbox ends: at the `>` of a path, or at the end of a bare input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Path,
    Bare,
}

/// The error for running out of bytes at `limit` while scanning a path: the path
/// is too long if the input goes on, otherwise the closing `>` is missing.
fn exhausted(input: &[u8], limit: usize, ctx: Context) -> AddressError {
    match ctx {
        Context::Path if input.len() > limit => AddressError::PathTooLong,
        Context::Path => AddressError::MissingBrackets,
        Context::Bare => AddressError::MissingDomain,
    }
}

/// Scans a dot-string or quoted-string local part starting at `start`; returns
/// the index of the `@` that ends it. Reads no byte at or past `limit`.
fn scan_local(
    input: &[u8],
    start: usize,
    limit: usize,
    utf8: bool,
    ctx: Context,
) -> Result<usize, AddressError> {
    if input.get(start) == Some(&b'"') {
        return scan_quoted_local(input, start, limit, utf8, ctx);
    }
    let mut i = start;
    let mut after_dot = true; // at the start, a dot is as bad as after a dot
    let mut non_ascii = false;
    loop {
        if i - start > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong);
        }
        let b = match input.get(i) {
            Some(&b) if i < limit => b,
            _ => return Err(exhausted(input, limit, ctx)),
        };
        match b {
            b'@' => break,
            b'.' if after_dot => return Err(AddressError::BadLocalPart),
            b'.' => after_dot = true,
            0x80.. if !utf8 => return Err(AddressError::NeedsSmtpUtf8),
            0x80.. => {
                non_ascii = true;
                after_dot = false;
            }
            b'>' if ctx == Context::Path && i > start => return Err(AddressError::MissingDomain),
            _ if is(b, ATEXT) => after_dot = false,
            _ => return Err(AddressError::BadLocalPart),
        }
        i += 1;
    }
    // Empty, or ending in a dot.
    if after_dot {
        return Err(AddressError::BadLocalPart);
    }
    if non_ascii && std::str::from_utf8(&input[start..i]).is_err() {
        return Err(AddressError::BadLocalPart);
    }
    Ok(i)
}

/// [`scan_local`] for a quoted-string (RFC 5321 Quoted-string, RFC 6531 UTF-8).
fn scan_quoted_local(
    input: &[u8],
    start: usize,
    limit: usize,
    utf8: bool,
    ctx: Context,
) -> Result<usize, AddressError> {
    let byte_at = |i: usize| input.get(i).copied().filter(|_| i < limit);
    let unterminated = || match ctx {
        Context::Path if input.len() > limit => AddressError::PathTooLong,
        Context::Path | Context::Bare => AddressError::UnterminatedQuote,
    };
    let mut i = start + 1;
    let mut non_ascii = false;
    loop {
        if i - start > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong);
        }
        let b = byte_at(i).ok_or_else(unterminated)?;
        match b {
            b'"' => {
                i += 1;
                break;
            }
            b'\\' => match byte_at(i + 1) {
                Some(32..=126) => i += 2,
                Some(_) => return Err(AddressError::BadLocalPart),
                None => return Err(unterminated()),
            },
            32..=126 => i += 1,
            0x80.. if !utf8 => return Err(AddressError::NeedsSmtpUtf8),
            0x80.. => {
                non_ascii = true;
                i += 1;
            }
            _ => return Err(AddressError::BadLocalPart),
        }
    }
    if i - start > MAX_LOCAL_PART {
        return Err(AddressError::LocalPartTooLong);
    }
    if non_ascii && std::str::from_utf8(&input[start..i]).is_err() {
        return Err(AddressError::BadLocalPart);
    }
    match byte_at(i) {
        Some(b'@') => Ok(i),
        Some(b'>') if ctx == Context::Path => Err(AddressError::MissingDomain),
        Some(_) => Err(AddressError::BadLocalPart),
        None => Err(exhausted(input, limit, ctx)),
    }
}

/// The local part as a string; `scan_local` has checked the bytes.
fn local_string(bytes: &[u8]) -> Result<String, AddressError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| AddressError::BadLocalPart)
}

/// Parses the domain bytes of a mailbox (non-empty, after the `@`).
fn parse_domain_bytes(bytes: &[u8]) -> Result<Domain, AddressError> {
    if bytes.is_empty() {
        return Err(AddressError::MissingDomain);
    }
    let s = std::str::from_utf8(bytes).map_err(|_| AddressError::BadDomain)?;
    Domain::parse(s)
}

/// Checks an ASCII domain name: labels of letters, digits and hyphens, 1..=63
/// octets, no hyphen first or last, no empty label, no trailing dot.
fn check_ascii_name(name: &[u8]) -> Result<(), AddressError> {
    if name.len() > MAX_DOMAIN {
        return Err(AddressError::DomainTooLong);
    }
    let mut label_len = 0usize;
    let mut prev = b'.';
    for &b in name {
        if b == b'.' {
            if label_len == 0 || prev == b'-' {
                return Err(AddressError::BadDomain);
            }
            label_len = 0;
        } else if is(b, LDH) {
            if label_len == 0 && b == b'-' {
                return Err(AddressError::BadDomain);
            }
            label_len += 1;
            if label_len > 63 {
                return Err(AddressError::BadDomain);
            }
        } else {
            return Err(AddressError::BadDomain);
        }
        prev = b;
    }
    if label_len == 0 || prev == b'-' {
        return Err(AddressError::BadDomain);
    }
    Ok(())
}

/// A name with U-labels: UTS 46 to A-labels, then the same checks as ASCII.
fn idn_to_ascii(name: &str) -> Result<String, AddressError> {
    // ASCII inside an IDN must already be LDH or a dot: UTS 46 would otherwise let
    // through characters that mean something else in a path.
    if name
        .bytes()
        .any(|b| b.is_ascii() && !is(b, LDH) && b != b'.')
    {
        return Err(AddressError::BadDomain);
    }
    let ascii = idna::uts46::Uts46::new()
        .to_ascii(
            name.as_bytes(),
            idna::uts46::AsciiDenyList::STD3,
            idna::uts46::Hyphens::CheckFirstLast,
            idna::uts46::DnsLength::Ignore,
        )
        .map_err(|_| AddressError::BadDomain)?;
    check_ascii_name(ascii.as_bytes())?;
    Ok(ascii.to_ascii_lowercase())
}

/// Strict dotted quad: four decimal numbers of 1-3 digits, each at most 255.
fn parse_v4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
        *octet = u8::try_from(n).ok()?;
    }
    match parts.next() {
        Some(_) => None,
        None => Some(Ipv4Addr::from(octets)),
    }
}

/// `[...]`: IPv4, `IPv6:` or a general `tag:content` literal.
fn parse_literal(s: &str) -> Result<Domain, AddressError> {
    let inner = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or(AddressError::BadAddressLiteral)?;
    let Some((tag, content)) = inner.split_once(':') else {
        return parse_v4(inner.as_bytes())
            .map(Domain::V4)
            .ok_or(AddressError::BadAddressLiteral);
    };
    if tag.eq_ignore_ascii_case("IPv6") {
        return content
            .parse()
            .map(Domain::V6)
            .map_err(|_| AddressError::BadAddressLiteral);
    }
    // Standardized-tag = Ldh-str (ends in a letter or digit); 1*dcontent.
    let tag_ok = !tag.is_empty()
        && tag.bytes().all(|b| is(b, LDH))
        && !tag.starts_with('-')
        && !tag.ends_with('-');
    let content_ok = !content.is_empty() && content.bytes().all(|b| is(b, DCONTENT));
    if !tag_ok || !content_ok {
        return Err(AddressError::BadAddressLiteral);
    }
    Ok(Domain::General {
        tag: tag.to_owned(),
        content: content.to_owned(),
    })
}

/// Counts the bytes a `Display` impl writes, without allocating.
struct Counter(usize);

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

impl Domain {
    /// Length of the wire form, in octets.
    pub fn wire_len(&self) -> usize {
        match self {
            Domain::Name(name) => name.len(),
            Domain::V4(_) | Domain::V6(_) | Domain::General { .. } => {
                let mut c = Counter(0);
                // Counter never fails; Display of these variants does not either.
                let _ = fmt::write(&mut c, format_args!("{self}"));
                c.0
            }
        }
    }
}

impl Mailbox {
    /// The `<local@domain>` length of this mailbox, in octets.
    fn path_len(&self) -> usize {
        self.local.len() + 1 + self.domain.wire_len() + 2
    }
}

/// Parses the mailbox at `input[start..]`: bare (to the end of `input`) or in a
/// path (to the `>`, whose index is returned with the mailbox).
fn parse_mailbox(
    input: &[u8],
    start: usize,
    limit: usize,
    utf8: bool,
    ctx: Context,
) -> Result<(Mailbox, usize), AddressError> {
    let at = scan_local(input, start, limit, utf8, ctx)?;
    let d0 = at + 1;
    let window = input.get(d0..limit).unwrap_or_default();
    let end = match ctx {
        Context::Bare => input.len(),
        Context::Path if window.first() == Some(&b'[') => {
            // dcontent may contain '>', so find the ']' first.
            let close = memchr::memchr(b']', window).ok_or_else(|| exhausted(input, limit, ctx))?;
            match window.get(close + 1) {
                Some(b'>') => d0 + close + 1,
                Some(_) => return Err(AddressError::BadAddressLiteral),
                None => return Err(exhausted(input, limit, ctx)),
            }
        }
        Context::Path => {
            d0 + memchr::memchr(b'>', window).ok_or_else(|| exhausted(input, limit, ctx))?
        }
    };
    let domain = parse_domain_bytes(input.get(d0..end).unwrap_or_default())?;
    let local = local_string(input.get(start..at).unwrap_or_default())?;
    Ok((Mailbox { local, domain }, end))
}

/// Parses an obsolete source route `@a,@b:` starting at the first `@`; returns the
/// hosts and the index just past the `:`.
fn parse_source_route(
    input: &[u8],
    start: usize,
    limit: usize,
) -> Result<(Vec<String>, usize), AddressError> {
    let mut hosts = Vec::new();
    let mut i = start;
    loop {
        // input[i] is '@'
        let s = i + 1;
        let window = input.get(s..limit).unwrap_or_default();
        let len = window
            .iter()
            .position(|&b| matches!(b, b',' | b':' | b'>'))
            .ok_or_else(|| exhausted(input, limit, Context::Path))?;
        let host = std::str::from_utf8(&window[..len]).map_err(|_| AddressError::BadSourceRoute)?;
        match Domain::parse(host) {
            Ok(Domain::Name(name)) => hosts.push(name),
            _ => return Err(AddressError::BadSourceRoute),
        }
        i = s + len;
        match (window.get(len), window.get(len + 1)) {
            (Some(b','), Some(b'@')) => i += 1,
            (Some(b':'), _) => return Ok((hosts, i + 1)),
            // `<@domain>`: a mailbox with an empty local part.
            (Some(b'>'), _) if hosts.len() == 1 => return Err(AddressError::BadLocalPart),
            _ => return Err(AddressError::BadSourceRoute),
        }
    }
}

impl Domain {
    /// Parses a domain or address literal as written in a path or an EHLO argument;
    /// converts U-labels to A-labels and lowercases.
    ///
    /// Names: labels of letters, digits and hyphens, 1..=63 octets each, no hyphen
    /// first or last, no empty label, no trailing dot, at most 255 octets both as
    /// given and as A-labels. Non-ASCII names go through UTS 46 (non-transitional),
    /// so they are accepted whatever the SMTPUTF8 state: the result is plain ASCII.
    /// Literals: `[192.0.2.1]` (strict dotted quad), `[IPv6:...]` (tag
    /// case-insensitive), `[tag:content]` (RFC 5321 General-address-literal, kept as
    /// given).
    pub fn parse(input: &str) -> Result<Domain, AddressError> {
        if input.len() > MAX_DOMAIN {
            return Err(AddressError::DomainTooLong);
        }
        if input.starts_with('[') {
            return parse_literal(input);
        }
        if input.is_ascii() {
            check_ascii_name(input.as_bytes())?;
            return Ok(Domain::Name(input.to_ascii_lowercase()));
        }
        idn_to_ascii(input).map(Domain::Name)
    }
}

impl fmt::Display for Domain {
    /// Renders as on the wire: the name, or the bracketed literal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Name(name) => f.write_str(name),
            Domain::V4(ip) => write!(f, "[{ip}]"),
            Domain::V6(ip) => write!(f, "[IPv6:{ip}]"),
            Domain::General { tag, content } => write!(f, "[{tag}:{content}]"),
        }
    }
}

impl Mailbox {
    /// Parses a bare `local@domain` (no angle brackets), as found in HTTP requests,
    /// CSV lists and header fields. `utf8` allows non-ASCII local parts (SMTPUTF8).
    ///
    /// Nothing is trimmed: surrounding spaces are an error. The mailbox must also
    /// fit in a path (`<local@domain>` of at most 256 octets, else
    /// [`AddressError::PathTooLong`]), since it is no use if it cannot be sent.
    pub fn parse(input: &str, utf8: bool) -> Result<Mailbox, AddressError> {
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        let bytes = input.as_bytes();
        let (mailbox, _) = parse_mailbox(bytes, 0, bytes.len(), utf8, Context::Bare)?;
        if mailbox.path_len() > MAX_PATH {
            return Err(AddressError::PathTooLong);
        }
        Ok(mailbox)
    }

    /// The first relay trick the local part hides, if any, by position: `%`
    /// ([`RelayTrick::PercentHack`]), `!` ([`RelayTrick::BangPath`]) or `@`, which
    /// only a quoted local part can hold ([`RelayTrick::QuotedAt`]). Quoted and
    /// escaped characters count like any other.
    pub fn relay_trick(&self) -> Option<RelayTrick> {
        self.local.bytes().find_map(|b| match b {
            b'%' => Some(RelayTrick::PercentHack),
            b'!' => Some(RelayTrick::BangPath),
            b'@' => Some(RelayTrick::QuotedAt),
            _ => None,
        })
    }

    /// Whether this mailbox needs SMTPUTF8 to be transmitted (non-ASCII local part).
    pub fn needs_smtputf8(&self) -> bool {
        !self.local.is_ascii()
    }
}

impl fmt::Display for Mailbox {
    /// `local@domain` as on the wire.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl Path {
    /// The null reverse-path `<>`.
    pub const NULL: Path = Path {
        mailbox: None,
        source_route: Vec::new(),
    };

    /// A path to or from a mailbox, without a source route.
    pub fn mailbox(mailbox: Mailbox) -> Path {
        Path {
            mailbox: Some(mailbox),
            source_route: Vec::new(),
        }
    }

    /// Parses `<...>` at the start of `input` (as after `MAIL FROM:` / `RCPT TO:`).
    /// Returns the path and the number of bytes consumed (through the `>`), so the
    /// caller can go on to ESMTP parameters. `utf8` allows SMTPUTF8 addresses.
    /// `<>` parses to the null path; callers refuse it where it is not allowed.
    ///
    /// Limits: local part 64 octets, domain 255, and the whole path (source route
    /// included) 256, both as given and once domains are normalised to A-labels, so
    /// what parses can be rendered and parsed again. `utf8` governs the local part
    /// only: U-label domains become A-labels either way (see [`Domain::parse`]).
    pub fn parse(input: &[u8], utf8: bool) -> Result<(Path, usize), AddressError> {
        match input.first() {
            None => return Err(AddressError::Empty),
            Some(b'<') => {}
            Some(_) => return Err(AddressError::MissingBrackets),
        }
        let limit = input.len().min(MAX_PATH);
        let (source_route, start) = match input.get(1) {
            Some(b'>') => return Ok((Path::NULL, 2)),
            Some(b'@') => parse_source_route(input, 1, limit)?,
            Some(_) => (Vec::new(), 1),
            None => return Err(AddressError::MissingBrackets),
        };
        let (mailbox, gt) = parse_mailbox(input, start, limit, utf8, Context::Path)?;
        // `@host` plus `,` or `:` for each host of the route.
        let route_len: usize = source_route.iter().map(|h| h.len() + 2).sum();
        if mailbox.path_len() + route_len > MAX_PATH {
            return Err(AddressError::PathTooLong);
        }
        Ok((
            Path {
                mailbox: Some(mailbox),
                source_route,
            },
            gt + 1,
        ))
    }

    /// The first relay trick in the path, if any (source route first).
    pub fn relay_trick(&self) -> Option<RelayTrick> {
        if !self.source_route.is_empty() {
            return Some(RelayTrick::SourceRoute);
        }
        self.mailbox.as_ref().and_then(Mailbox::relay_trick)
    }
}

impl fmt::Display for Path {
    /// `<local@domain>` or `<>`; a source route is not rendered (RFC 5321 C: never
    /// generate one).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mailbox {
            Some(m) => write!(f, "<{m}>"),
            None => f.write_str("<>"),
        }
    }
}

#[cfg(test)]
mod tests;
