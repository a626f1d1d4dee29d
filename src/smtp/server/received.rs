//! The `Received:` trace header a relay prepends (RFC 5321 4.4), with the
//! protocol names of RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA) and RFC 6531
//! (UTF8SMTP...), the TLS version and cipher in a comment.

use std::fmt::Write as _;
use std::net::IpAddr;

/// What a `Received:` header says.
#[derive(Debug, Clone)]
pub struct ReceivedInfo<'a> {
    /// The client's EHLO/HELO argument.
    pub helo: &'a str,
    /// The client's address.
    pub peer: IpAddr,
    /// Our host name.
    pub hostname: &'a str,
    /// `ESMTPSA` and friends ([`protocol`]).
    pub protocol: &'a str,
    /// TLS version and cipher suite, when the session used TLS.
    pub tls: Option<(&'a str, &'a str)>,
    /// Our id for the message.
    pub id: &'a str,
    /// The recipient, when the message has exactly one (RFC 5321 4.4 `for`).
    pub rcpt: Option<&'a str>,
    /// When the message was received, Unix seconds.
    pub unix_secs: u64,
}

/// The protocol name: `SMTP` after HELO; after EHLO `ESMTP`, or `UTF8SMTP` when
/// the transaction used SMTPUTF8, with `S` for TLS and `A` for AUTH appended.
pub fn protocol(ehlo: bool, smtputf8: bool, tls: bool, auth: bool) -> &'static str {
    match (ehlo, smtputf8, tls, auth) {
        (false, ..) => "SMTP",
        (true, false, false, false) => "ESMTP",
        (true, false, true, false) => "ESMTPS",
        (true, false, false, true) => "ESMTPA",
        (true, false, true, true) => "ESMTPSA",
        (true, true, false, false) => "UTF8SMTP",
        (true, true, true, false) => "UTF8SMTPS",
        (true, true, false, true) => "UTF8SMTPA",
        (true, true, true, true) => "UTF8SMTPSA",
    }
}

/// The header, folded over several lines, ending in CRLF.
pub fn render(info: &ReceivedInfo<'_>) -> String {
    let mut h = String::with_capacity(256);
    let _ = write!(h, "Received: from {} (", header_safe(info.helo));
    match info.peer {
        IpAddr::V4(ip) => {
            let _ = write!(h, "[{ip}]");
        }
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => {
                let _ = write!(h, "[{v4}]");
            }
            None => {
                let _ = write!(h, "[IPv6:{ip}]");
            }
        },
    }
    let _ = write!(
        h,
        ")\r\n\tby {} (Volley) with {}",
        header_safe(info.hostname),
        info.protocol
    );
    if let Some((version, cipher)) = info.tls {
        let _ = write!(
            h,
            "\r\n\t(version={} cipher={})",
            header_safe(version),
            header_safe(cipher)
        );
    }
    let _ = write!(h, "\r\n\tid {}", header_safe(info.id));
    if let Some(rcpt) = info.rcpt {
        let _ = write!(h, "\r\n\tfor <{}>", rcpt.replace(['\r', '\n'], " "));
    }
    let _ = write!(h, "; {}\r\n", rfc5322_date(info.unix_secs));
    h
}

/// `s` with anything that could end a token, a comment or the header replaced by
/// `_` (EHLO arguments are checked by the parser, but an address literal may hold
/// `(`, `)` or `;`).
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A date-time as RFC 5322 3.3 writes it, in UTC: `Tue, 14 Nov 2023 22:13:20 +0000`.
pub fn rfc5322_date(unix_secs: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[((days + 4) % 7) as usize];
    let (year, month, day) = date_of(days);
    format!(
        "{weekday}, {day:02} {} {year:04} {:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The Gregorian (year, month 1-12, day 1-31) of a day number since 1970-01-01.
///
/// Counts in 400-year cycles of 146,097 days from a year that starts on 1 March,
/// so the leap day is the last day of the counted year and month lengths repeat
/// in a five-month pattern (153 days).
fn date_of(days: u64) -> (u64, u64, u64) {
    // Days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let cycle = z / 146_097;
    let day_of_cycle = z % 146_097;
    let year_of_cycle =
        (day_of_cycle - day_of_cycle / 1460 + day_of_cycle / 36_524 - day_of_cycle / 146_096) / 365;
    let day_of_year =
        day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_cycle + cycle * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_868_800), "Wed, 01 Mar 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
        assert_eq!(
            rfc5322_date(1_709_164_799),
            "Wed, 28 Feb 2024 23:59:59 +0000"
        );
        assert_eq!(
            rfc5322_date(4_107_542_400),
            "Mon, 01 Mar 2100 00:00:00 +0000"
        );
    }

    #[test]
    fn header_shape() {
        let info = ReceivedInfo {
            helo: "client.example",
            peer: "192.0.2.7".parse().unwrap(),
            hostname: "mta.example.com",
            protocol: protocol(true, false, true, true),
            tls: Some(("TLSv1.3", "TLS13_AES_256_GCM_SHA384")),
            id: "0123",
            rcpt: Some("rcpt@example.org"),
            unix_secs: 1_700_000_000,
        };
        assert_eq!(
            render(&info),
            "Received: from client.example ([192.0.2.7])\r\n\
             \tby mta.example.com (Volley) with ESMTPSA\r\n\
             \t(version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384)\r\n\
             \tid 0123\r\n\
             \tfor <rcpt@example.org>; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        );
        let plain = ReceivedInfo {
            helo: "[tag:a(b);c]",
            peer: "2001:db8::1".parse().unwrap(),
            protocol: protocol(true, false, false, false),
            tls: None,
            rcpt: None,
            ..info
        };
        let h = render(&plain);
        assert!(
            h.starts_with("Received: from [tag:a_b__c] ([IPv6:2001:db8::1])\r\n"),
            "{h}"
        );
        assert!(h.contains("with ESMTP\r\n\tid 0123; Tue,"), "{h}");
        assert_eq!(protocol(false, true, true, true), "SMTP");
        assert_eq!(protocol(true, true, false, true), "UTF8SMTPA");
    }
}
