//! EHLO capabilities (RFC 5321 4.1.1.1 and the extensions' RFCs): parsed from a
//! server's EHLO reply by clients, rendered into one by servers.

use super::command::AuthMechanism;
use super::reply::Reply;
use super::status::ReplyCode;

/// What a server advertised in its EHLO reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// The domain the server greeted with (first line of the reply).
    pub greeting: String,
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// CHUNKING (RFC 3030): BDAT.
    pub chunking: bool,
    /// BINARYMIME (RFC 3030).
    pub binary_mime: bool,
    /// SIZE (RFC 1870): `Some(0)` means advertised without a limit; `None` not
    /// advertised.
    pub size: Option<u64>,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// AUTH mechanisms (RFC 4954), in the order offered; also from the obsolete
    /// `AUTH=` form.
    pub auth: Vec<AuthMechanism>,
}

impl Capabilities {
    /// Reads the capabilities from a 250 EHLO reply. Keywords are case-insensitive;
    /// unknown keywords are ignored; a malformed SIZE value counts as SIZE without a
    /// limit being known (`Some(0)`).
    ///
    /// `greeting` is the whole first line. A reply that is not 2yz (a server refusing
    /// EHLO) advertises nothing: only `greeting` is filled in. AUTH mechanisms from
    /// both `AUTH` and the obsolete `AUTH=` lines are merged, first offer first, without
    /// duplicates.
    pub fn from_ehlo_reply(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        let mut lines = reply.lines.iter();
        if let Some(first) = lines.next() {
            caps.greeting.clone_from(first);
        }
        if !reply.is_positive() {
            return caps;
        }
        for line in lines {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let is = |name: &str| keyword.eq_ignore_ascii_case(name);
            if is("PIPELINING") {
                caps.pipelining = true;
            } else if is("CHUNKING") {
                caps.chunking = true;
            } else if is("BINARYMIME") {
                caps.binary_mime = true;
            } else if is("SIZE") {
                caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
            } else if is("8BITMIME") {
                caps.eight_bit_mime = true;
            } else if is("SMTPUTF8") {
                caps.smtputf8 = true;
            } else if is("STARTTLS") {
                caps.starttls = true;
            } else if is("ENHANCEDSTATUSCODES") {
                caps.enhanced_status_codes = true;
            } else if is("DSN") {
                caps.dsn = true;
            } else if is("AUTH") {
                caps.add_auth(words);
            } else if let Some(first) = strip_prefix_ignore_case(keyword, "AUTH=") {
                caps.add_auth(std::iter::once(first).chain(words));
            }
        }
        caps
    }

    /// Adds mechanism names, skipping empty ones and ones already offered.
    fn add_auth<'a>(&mut self, names: impl Iterator<Item = &'a str>) {
        for name in names.filter(|n| !n.is_empty()) {
            let mechanism = parse_mechanism(name);
            if !self.auth.contains(&mechanism) {
                self.auth.push(mechanism);
            }
        }
    }

    /// The 250 EHLO reply a server sends advertising these capabilities, first line
    /// `greeting` (e.g. `"mx.example.com Hello client.example.org"`).
    ///
    /// One line per capability, in Postfix's order; `AUTH` only when there are
    /// mechanisms; `SIZE` bare for `Some(0)`. No enhanced status code (RFC 2034 puts
    /// none on the EHLO reply). [`Capabilities::from_ehlo_reply`] reads it back equal.
    pub fn to_ehlo_reply(&self) -> Reply {
        let mut lines = vec![self.greeting.clone()];
        if self.pipelining {
            lines.push("PIPELINING".into());
        }
        match self.size {
            Some(0) => lines.push("SIZE".into()),
            Some(limit) => lines.push(format!("SIZE {limit}")),
            None => {}
        }
        if self.starttls {
            lines.push("STARTTLS".into());
        }
        if !self.auth.is_empty() {
            let mut line = String::from("AUTH");
            for mechanism in &self.auth {
                line.push(' ');
                line.push_str(mechanism_name(mechanism));
            }
            lines.push(line);
        }
        if self.enhanced_status_codes {
            lines.push("ENHANCEDSTATUSCODES".into());
        }
        if self.eight_bit_mime {
            lines.push("8BITMIME".into());
        }
        if self.binary_mime {
            lines.push("BINARYMIME".into());
        }
        if self.dsn {
            lines.push("DSN".into());
        }
        if self.smtputf8 {
            lines.push("SMTPUTF8".into());
        }
        if self.chunking {
            lines.push("CHUNKING".into());
        }
        Reply::multiline(ReplyCode::OK, None, lines)
    }

    /// The domain the server named itself: the first word of the greeting line.
    pub fn greeting_domain(&self) -> &str {
        self.greeting.split_ascii_whitespace().next().unwrap_or("")
    }

    /// Whether a message of `size` bytes fits the advertised SIZE limit.
    pub fn accepts_size(&self, size: u64) -> bool {
        match self.size {
            Some(limit) if limit > 0 => size <= limit,
            _ => true,
        }
    }
}

/// `s` without `prefix`, compared ASCII case-insensitively.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A SASL mechanism name as offered in EHLO, any case.
fn parse_mechanism(name: &str) -> AuthMechanism {
    let is = |known: &str| name.eq_ignore_ascii_case(known);
    if is("PLAIN") {
        AuthMechanism::Plain
    } else if is("LOGIN") {
        AuthMechanism::Login
    } else if is("CRAM-MD5") {
        AuthMechanism::CramMd5
    } else if is("XOAUTH2") {
        AuthMechanism::XOAuth2
    } else {
        AuthMechanism::Other(name.to_ascii_uppercase())
    }
}

/// The name a mechanism is offered under.
fn mechanism_name(mechanism: &AuthMechanism) -> &str {
    match mechanism {
        AuthMechanism::Plain => "PLAIN",
        AuthMechanism::Login => "LOGIN",
        AuthMechanism::CramMd5 => "CRAM-MD5",
        AuthMechanism::XOAuth2 => "XOAUTH2",
        AuthMechanism::Other(name) => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::ReplyParser;

    fn parse(wire: &[u8]) -> Reply {
        ReplyParser::new().parse(wire).unwrap().unwrap().0
    }

    fn caps(wire: &[u8]) -> Capabilities {
        Capabilities::from_ehlo_reply(&parse(wire))
    }

    #[test]
    fn postfix() {
        let c = caps(
            b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
              250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n\
              250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n\
              250 CHUNKING\r\n",
        );
        let expected = Capabilities {
            greeting: "mx.example.com".into(),
            pipelining: true,
            chunking: true,
            binary_mime: false,
            size: Some(10_240_000),
            eight_bit_mime: true,
            smtputf8: true,
            starttls: true,
            enhanced_status_codes: true,
            dsn: true,
            auth: vec![AuthMechanism::Plain, AuthMechanism::Login],
        };
        assert_eq!(c, expected);
        assert_eq!(c.greeting_domain(), "mx.example.com");
    }

    #[test]
    fn gmail() {
        let c = caps(
            b"250-mx.google.com at your service, [203.0.113.7]\r\n250-SIZE 157286400\r\n\
              250-8BITMIME\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n\
              250-CHUNKING\r\n250 SMTPUTF8\r\n",
        );
        assert_eq!(c.greeting, "mx.google.com at your service, [203.0.113.7]");
        assert_eq!(c.greeting_domain(), "mx.google.com");
        assert_eq!(c.size, Some(157_286_400));
        assert!(c.pipelining && c.chunking && c.smtputf8 && c.starttls && c.eight_bit_mime);
        assert!(!c.dsn && !c.binary_mime && c.auth.is_empty());
        assert!(c.accepts_size(157_286_400) && !c.accepts_size(157_286_401));
    }

    #[test]
    fn exchange_with_obsolete_auth_and_lowercase() {
        let c = caps(
            b"250-EX01.contoso.local Hello [198.51.100.4]\r\n250-size 37748736\r\n\
              250-Pipelining\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n\
              250-AUTH GSSAPI NTLM login\r\n250-AUTH=LOGIN xoauth2 cram-md5\r\n250-8BITMIME\r\n\
              250-BINARYMIME\r\n250-XRDST\r\n250 CHUNKING\r\n",
        );
        assert_eq!(c.size, Some(37_748_736));
        assert!(c.pipelining && c.dsn && c.binary_mime && c.chunking && c.enhanced_status_codes);
        assert_eq!(
            c.auth,
            vec![
                AuthMechanism::Other("GSSAPI".into()),
                AuthMechanism::Other("NTLM".into()),
                AuthMechanism::Login,
                AuthMechanism::XOAuth2,
                AuthMechanism::CramMd5,
            ]
        );
    }

    #[test]
    fn size_variants() {
        assert_eq!(caps(b"250-mx\r\n250 SIZE\r\n").size, Some(0));
        assert_eq!(caps(b"250-mx\r\n250 SIZE abc\r\n").size, Some(0));
        assert_eq!(caps(b"250-mx\r\n250 SIZE -5\r\n").size, Some(0));
        assert_eq!(caps(b"250-mx\r\n250 SIZE 0\r\n").size, Some(0));
        assert_eq!(caps(b"250 mx\r\n").size, None);
        assert!(caps(b"250-mx\r\n250 SIZE\r\n").accepts_size(u64::MAX));
    }

    #[test]
    fn odd_replies() {
        // Greeting only.
        assert_eq!(
            caps(b"250 mx.example.com\r\n"),
            Capabilities {
                greeting: "mx.example.com".into(),
                ..Default::default()
            }
        );
        // A refusal advertises nothing, even if a line looks like a keyword.
        let c = caps(b"550-mx.example.com no\r\n550 PIPELINING\r\n");
        assert_eq!(
            c,
            Capabilities {
                greeting: "mx.example.com no".into(),
                ..Default::default()
            }
        );
        // Empty lines, a keyword prefix, bare AUTH and AUTH= are ignored.
        let c = caps(
            b"250-mx\r\n250-\r\n250-PIPELININGX\r\n250-AUTH\r\n250-AUTH=\r\n250 STARTTLSX\r\n",
        );
        assert_eq!(
            c,
            Capabilities {
                greeting: "mx".into(),
                ..Default::default()
            }
        );
        assert_eq!(
            Capabilities::from_ehlo_reply(&Reply::multiline(
                ReplyCode::OK,
                None,
                Vec::<String>::new()
            ))
            .greeting,
            ""
        );
    }

    fn everything() -> Capabilities {
        Capabilities {
            greeting: "mx.example.com Hello client.example.org".into(),
            pipelining: true,
            chunking: true,
            binary_mime: true,
            size: Some(52_428_800),
            eight_bit_mime: true,
            smtputf8: true,
            starttls: true,
            enhanced_status_codes: true,
            dsn: true,
            auth: vec![
                AuthMechanism::Plain,
                AuthMechanism::Login,
                AuthMechanism::CramMd5,
                AuthMechanism::XOAuth2,
                AuthMechanism::Other("SCRAM-SHA-256".into()),
            ],
        }
    }

    #[test]
    fn to_ehlo_reply_renders() {
        let wire = everything().to_ehlo_reply().to_bytes();
        assert_eq!(
            String::from_utf8(wire).unwrap(),
            "250-mx.example.com Hello client.example.org\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n\
             250-STARTTLS\r\n250-AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2 SCRAM-SHA-256\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250-DSN\r\n\
             250-SMTPUTF8\r\n250 CHUNKING\r\n"
        );
        let bare = Capabilities {
            greeting: "mx".into(),
            size: Some(0),
            ..Default::default()
        };
        assert_eq!(bare.to_ehlo_reply().to_bytes(), b"250-mx\r\n250 SIZE\r\n");
        let greeting_only = Capabilities {
            greeting: "mx".into(),
            ..Default::default()
        };
        assert_eq!(greeting_only.to_ehlo_reply().to_bytes(), b"250 mx\r\n");
    }

    #[test]
    fn round_trip() {
        let all = everything();
        let cases = [
            all.clone(),
            Capabilities {
                greeting: "mx".into(),
                ..Default::default()
            },
            Capabilities {
                greeting: "mx".into(),
                size: Some(0),
                ..Default::default()
            },
            Capabilities {
                auth: vec![AuthMechanism::Login],
                size: None,
                pipelining: false,
                ..all.clone()
            },
            Capabilities {
                auth: vec![],
                size: Some(1),
                chunking: false,
                dsn: false,
                ..all
            },
        ];
        for caps in cases {
            let reply = caps.to_ehlo_reply();
            assert_eq!(Capabilities::from_ehlo_reply(&reply), caps);
            // And through the wire.
            assert_eq!(
                Capabilities::from_ehlo_reply(&parse(&reply.to_bytes())),
                caps
            );
        }
    }
}
