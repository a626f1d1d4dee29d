//! RFC 5321 paths and mailboxes (section 4.1.2), with IDN domains stored as A-labels.
//!
//! Policy code needs to see the tricks that turn a recipient into a relay request
//! (source routes, `%` hacks, bang paths, `@` inside a quoted local part), so the
//! parser records them instead of silently accepting or rewriting them.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

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

impl Domain {
    /// Parses a domain or address literal as written in a path or an EHLO argument;
    /// converts U-labels to A-labels and lowercases.
    pub fn parse(input: &str) -> Result<Domain, AddressError> {
        todo!("helper: address")
    }
}

impl fmt::Display for Domain {
    /// Renders as on the wire: the name, or the bracketed literal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!("helper: address")
    }
}

impl Mailbox {
    /// Parses a bare `local@domain` (no angle brackets), as found in HTTP requests,
    /// CSV lists and header fields. `utf8` allows non-ASCII local parts (SMTPUTF8).
    pub fn parse(input: &str, utf8: bool) -> Result<Mailbox, AddressError> {
        todo!("helper: address")
    }

    /// The first relay trick the local part hides, if any.
    pub fn relay_trick(&self) -> Option<RelayTrick> {
        todo!("helper: address")
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
    pub const NULL: Path = Path { mailbox: None, source_route: Vec::new() };

    /// A path to or from a mailbox, without a source route.
    pub fn mailbox(mailbox: Mailbox) -> Path {
        Path { mailbox: Some(mailbox), source_route: Vec::new() }
    }

    /// Parses `<...>` at the start of `input` (as after `MAIL FROM:` / `RCPT TO:`).
    /// Returns the path and the number of bytes consumed (through the `>`), so the
    /// caller can go on to ESMTP parameters. `utf8` allows SMTPUTF8 addresses.
    /// `<>` parses to the null path; callers refuse it where it is not allowed.
    pub fn parse(input: &[u8], utf8: bool) -> Result<(Path, usize), AddressError> {
        todo!("helper: address")
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
