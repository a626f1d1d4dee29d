//! What a listener decides once and every session of it shares.

use std::collections::HashSet;

use crate::smtp::address::Domain;

/// Which listener a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Message submission (RFC 6409): MAIL needs AUTH, AUTH needs TLS (unless
    /// `allow_plaintext_auth`).
    Submission {
        /// Offer AUTH without TLS too.
        allow_plaintext_auth: bool,
    },
    /// Relay for listed client networks; everyone else may only send to the relay
    /// domains. No AUTH.
    Relay,
}

/// Settings shared by the sessions of one listener.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Submission or relay.
    pub role: Role,
    /// Our name: banner, EHLO reply, `Received: by`.
    pub hostname: String,
    /// Largest message accepted (SIZE), in bytes of content.
    pub max_message_size: usize,
    /// Most recipients in one transaction.
    pub max_recipients: usize,
    /// Longest line of message data, CRLF included.
    pub max_line_length: usize,
    /// Failed AUTH attempts allowed on one connection.
    pub max_auth_failures: u32,
    /// STARTTLS can be offered (a certificate is configured).
    pub starttls: bool,
    /// Domains anyone may send to.
    pub relay_domains: RelayDomains,
    /// The tenant of mail from trusted relay networks.
    pub relay_tenant: Option<String>,
}

impl SessionConfig {
    /// Defaults matching `[smtp]`'s, for tests and tools.
    pub fn new(role: Role, hostname: impl Into<String>) -> SessionConfig {
        SessionConfig {
            role,
            hostname: hostname.into(),
            max_message_size: 50 << 20,
            max_recipients: 1000,
            max_line_length: 8192,
            max_auth_failures: 3,
            starttls: false,
            relay_domains: RelayDomains::default(),
            relay_tenant: None,
        }
    }
}

/// The domains any client may send to (`smtp.relay_domains`), normalised as the
/// address parser normalises a recipient's domain: lowercase A-labels, no trailing
/// dot. A domain matches exactly: subdomains are not included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayDomains(HashSet<String>);

impl RelayDomains {
    /// Normalises `domains`; the error is the index and text of one that is not a
    /// domain name.
    pub fn new<I, S>(domains: I) -> Result<RelayDomains, (usize, String)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = HashSet::new();
        for (i, d) in domains.into_iter().enumerate() {
            let text = d.as_ref();
            let trimmed = text.strip_suffix('.').unwrap_or(text);
            match Domain::parse(trimmed) {
                Ok(Domain::Name(name)) => {
                    set.insert(name);
                }
                _ => return Err((i, text.to_string())),
            }
        }
        Ok(RelayDomains(set))
    }

    /// Whether `domain` (as parsed from an address) is one of them. Address literals
    /// never are.
    pub fn contains(&self, domain: &Domain) -> bool {
        match domain {
            Domain::Name(name) => self.0.contains(name),
            _ => false,
        }
    }

    /// How many domains there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
