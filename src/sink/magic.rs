//! Magic recipients: the local part of a RCPT address tells the sink how to
//! misbehave for that recipient or its transaction (list in the module doc of
//! `sink`, and in `volley-load sink --help`).

use crate::smtp::status::{EnhancedStatus, ReplyCode};

/// What a recipient's local part asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    /// An ordinary recipient.
    None,
    /// `NNN@`: answer this RCPT with 4xx/5xx code NNN (421 also closes).
    Code(u16),
    /// `421-disconnect@`: `421 4.4.2` at RCPT, then close.
    Disconnect421,
    /// `delay-MS@`: accept after MS milliseconds.
    Delay(u32),
    /// `data-NNN@`: accept; the end-of-data reply is NNN (2xx/4xx/5xx).
    DataCode(u16),
    /// `data-delay-MS@`: accept; delay the end-of-data reply by MS.
    DataDelay(u32),
    /// `disconnect-data@`: accept; drop the connection once the body arrived.
    DisconnectData,
    /// `tempfail-once-<tag>@`: `451 4.3.0` the first time this address is seen by
    /// the process, accepted afterwards.
    TempfailOnce,
    /// `disconnect-rcpt@`: drop the connection at this RCPT without a reply.
    DisconnectRcpt,
}

impl Magic {
    /// Reads a local part (as on the wire; quoted local parts are never magic).
    /// Cost: a few byte compares for ordinary addresses; no allocation.
    pub fn parse(local: &str) -> Magic {
        let l = local.as_bytes();
        if l.is_empty() || l[0] == b'"' {
            return Magic::None;
        }
        if let Some(code) = code(l) {
            if (400..600).contains(&code) {
                return Magic::Code(code);
            }
            return Magic::None;
        }
        if l.eq_ignore_ascii_case(b"421-disconnect") {
            return Magic::Disconnect421;
        }
        if l.eq_ignore_ascii_case(b"disconnect-data") {
            return Magic::DisconnectData;
        }
        if l.eq_ignore_ascii_case(b"disconnect-rcpt") {
            return Magic::DisconnectRcpt;
        }
        if let Some(rest) = strip_prefix(l, b"data-delay-") {
            return millis(rest).map_or(Magic::None, Magic::DataDelay);
        }
        if let Some(rest) = strip_prefix(l, b"data-") {
            return match code(rest) {
                Some(c) if matches!(c / 100, 2 | 4 | 5) => Magic::DataCode(c),
                _ => Magic::None,
            };
        }
        if let Some(rest) = strip_prefix(l, b"delay-") {
            return millis(rest).map_or(Magic::None, Magic::Delay);
        }
        if let Some(rest) = strip_prefix(l, b"tempfail-once") {
            if rest.is_empty() || rest[0] == b'-' {
                return Magic::TempfailOnce;
            }
        }
        Magic::None
    }
}

/// A valid three-digit reply code making up all of `s`.
fn code(s: &[u8]) -> Option<u16> {
    if s.len() != 3 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = s.iter().fold(0u16, |n, d| n * 10 + (d - b'0') as u16);
    ReplyCode::new(n).map(ReplyCode::get)
}

/// Milliseconds: 1 to 9 digits (under 1,000,000,000 ms).
fn millis(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |n, d| n * 10 + (d - b'0') as u32))
}

fn strip_prefix<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// The enhanced status code that fits a reply code chosen by a magic recipient.
pub fn enhanced_for(code: u16) -> EnhancedStatus {
    match code {
        421 => EnhancedStatus::CONNECTION_DROPPED,
        450 => EnhancedStatus::new(4, 2, 0),
        451 => EnhancedStatus::TEMP_SYSTEM,
        452 => EnhancedStatus::TOO_MANY_RECIPIENTS,
        550 => EnhancedStatus::BAD_MAILBOX,
        551 => EnhancedStatus::new(5, 1, 6),
        552 => EnhancedStatus::new(5, 2, 2),
        553 => EnhancedStatus::BAD_ADDRESS_SYNTAX,
        554 => EnhancedStatus::NOT_AUTHORIZED,
        250 => EnhancedStatus::MESSAGE_ACCEPTED,
        c => EnhancedStatus::new((c / 100) as u8, 0, 0),
    }
}

/// Appends the one-line reply `code` with its fitting enhanced status to `out`.
pub fn write_reply(code: u16, what: &str, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(
        out,
        "{code} {} {what} (magic recipient)\r\n",
        enhanced_for(code)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_local_parts() {
        let cases: &[(&str, Magic)] = &[
            ("user", Magic::None),
            ("452", Magic::Code(452)),
            ("550", Magic::Code(550)),
            ("450", Magic::Code(450)),
            ("421", Magic::Code(421)),
            ("250", Magic::None),
            ("459", Magic::Code(459)),
            ("499", Magic::None),
            ("461", Magic::None), // second digit > 5: not a reply code
            ("4521", Magic::None),
            ("421-disconnect", Magic::Disconnect421),
            ("421-DISCONNECT", Magic::Disconnect421),
            ("delay-250", Magic::Delay(250)),
            ("delay-", Magic::None),
            ("delay-x", Magic::None),
            ("data-451", Magic::DataCode(451)),
            ("data-250", Magic::DataCode(250)),
            ("data-354", Magic::None),
            ("data-delay-30", Magic::DataDelay(30)),
            ("disconnect-data", Magic::DisconnectData),
            ("disconnect-rcpt", Magic::DisconnectRcpt),
            ("tempfail-once", Magic::TempfailOnce),
            ("tempfail-once-abc", Magic::TempfailOnce),
            ("tempfail-onceabc", Magic::None),
            ("\"550\"", Magic::None),
            ("", Magic::None),
        ];
        for (local, want) in cases {
            assert_eq!(Magic::parse(local), *want, "{local}");
        }
    }

    #[test]
    fn enhanced_codes_fit() {
        assert_eq!(enhanced_for(452).to_string(), "4.5.3");
        assert_eq!(enhanced_for(421).to_string(), "4.4.2");
        assert_eq!(enhanced_for(550).to_string(), "5.1.1");
        assert_eq!(enhanced_for(503).to_string(), "5.0.0");
        assert_eq!(enhanced_for(471).to_string(), "4.0.0");
    }
}
