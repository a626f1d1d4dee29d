//! EHLO capabilities (RFC 5321 4.1.1.1 and the extensions' RFCs): parsed from a
//! server's EHLO reply by clients, rendered into one by servers.

use super::command::AuthMechanism;
use super::reply::Reply;

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
    pub fn from_ehlo_reply(reply: &Reply) -> Capabilities {
        todo!("helper: reply")
    }

    /// The 250 EHLO reply a server sends advertising these capabilities, first line
    /// `greeting` (e.g. `"mx.example.com Hello client.example.org"`).
    pub fn to_ehlo_reply(&self) -> Reply {
        todo!("helper: reply")
    }

    /// Whether a message of `size` bytes fits the advertised SIZE limit.
    pub fn accepts_size(&self, size: u64) -> bool {
        match self.size {
            Some(limit) if limit > 0 => size <= limit,
            _ => true,
        }
    }
}
