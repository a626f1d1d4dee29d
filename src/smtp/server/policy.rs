//! Who may send where: the guard that keeps Volley from being an open relay.
//!
//! A client that may relay (authenticated on the submission listener, or
//! connecting from an allowed network to the relay listener) may send anywhere.
//! Everyone else may send only to the relay domains, and only with a plain
//! recipient: a `%` hack, bang path, quoted `@` or source route inside an address
//! for a relay domain is a request to relay onwards (some next hop may honour it),
//! so it is refused like a foreign domain.

use super::config::RelayDomains;
use super::replies;
use crate::smtp::address::{Domain, Path};

/// Why a recipient was refused: the reply to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub &'static [u8]);

/// Decides whether a RCPT path is acceptable. `may_relay`: the client may send to
/// any domain.
pub fn check_recipient(
    path: &Path,
    may_relay: bool,
    relay_domains: &RelayDomains,
) -> Result<(), Refusal> {
    // `<Postmaster>` without a domain: we keep no mailboxes of our own.
    let Some(mailbox) = &path.mailbox else {
        return Err(Refusal(replies::NO_LOCAL_MAILBOX));
    };
    if may_relay {
        // RFC 5321 appendix C: a source route is ignored; the mailbox is the
        // destination. Literal domains route to the literal.
        return match mailbox.domain {
            Domain::General { .. } => Err(Refusal(replies::BAD_LITERAL)),
            _ => Ok(()),
        };
    }
    if path.relay_trick().is_some() || !relay_domains.contains(&mailbox.domain) {
        return Err(Refusal(replies::RELAY_DENIED));
    }
    Ok(())
}
