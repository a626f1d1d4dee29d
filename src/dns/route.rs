//! What routing produces: a [`Route`] (where to connect) or a [`RouteError`]
//! (why not, classified permanent or transient).

use std::borrow::Borrow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;

use super::config::RouteOverride;
use crate::smtp::reply::Reply;
use crate::smtp::status::{EnhancedStatus, ReplyCode};

/// The key of a *site*: the set of hosts a domain's mail goes to. Domains with
/// equal keys share connections and limits.
///
/// - MX routes: the sorted, lowercased MX host names joined by `,`
///   (`mx1.example.net,mx2.example.net`), whatever their preferences.
/// - Implicit MX (no MX records): the domain itself.
/// - Address literal domains (`[192.0.2.1]`): the literal.
/// - Smarthost overrides: `smarthost:host:port`.
///
/// Cloning is a reference-count increment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId(Arc<str>);

impl SiteId {
    /// Wraps a key (callers outside routing use this only in tests and fixtures).
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        SiteId(key.into())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared string, for callers that intern sites themselves.
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SiteId({:?})", &*self.0)
    }
}

impl Borrow<str> for SiteId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// One host to connect to, with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// Host name, lowercase without trailing dot (for logs, TLS SNI and
    /// certificate checks); for IP-literal hosts, the literal.
    pub name: Arc<str>,
    /// MX preference: lower is tried first. 0 for implicit MX and smarthosts.
    pub preference: u16,
    /// Addresses to try in order: IPv4 first, then IPv6, each in DNS answer order.
    /// Never empty: hosts without addresses are left out of the route.
    pub addrs: Vec<IpAddr>,
}

/// How a route was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKind {
    /// From the domain's MX records.
    Mx,
    /// The domain has no MX records: its own A/AAAA (RFC 5321 5.1).
    ImplicitMx,
    /// The domain is an address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
    AddressLiteral,
    /// A configured smarthost: connect to its port, with its AUTH and TLS policy.
    Smarthost(Arc<RouteOverride>),
}

/// Where to deliver a domain's mail. Shared (`Arc`) between every caller that
/// routes the domain while the answer is fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The site this route belongs to (see [`SiteId`]).
    pub site: SiteId,
    /// Hosts in the order to try them: by preference, ascending. Among hosts of
    /// equal preference the order is stable (by name), not shuffled: the egress
    /// pool spreads connections across equal-preference hosts itself, and a stable
    /// order keeps site keys, logs and tests deterministic. Never empty.
    pub hosts: Vec<MxHost>,
    /// How the route was found; carries the smarthost settings for overrides.
    pub kind: RouteKind,
    /// When the answer stops being fresh (record TTLs clamped to the configured
    /// bounds); the router asks DNS again after this.
    pub expires: Instant,
}

impl Route {
    /// The port to connect to when the route says so (smarthosts); `None` means the
    /// delivery config's SMTP port.
    pub fn port(&self) -> Option<u16> {
        match &self.kind {
            RouteKind::Smarthost(smarthost) => Some(smarthost.port),
            RouteKind::Mx | RouteKind::ImplicitMx | RouteKind::AddressLiteral => None,
        }
    }

    /// The smarthost settings (AUTH, required TLS), if this route is an override.
    pub fn smarthost(&self) -> Option<&RouteOverride> {
        match &self.kind {
            RouteKind::Smarthost(smarthost) => Some(smarthost),
            RouteKind::Mx | RouteKind::ImplicitMx | RouteKind::AddressLiteral => None,
        }
    }

    /// Every (host, address) pair in the order to try them.
    pub fn addrs(&self) -> impl Iterator<Item = (&MxHost, IpAddr)> + '_ {
        self.hosts
            .iter()
            .flat_map(|host| host.addrs.iter().map(move |addr| (host, *addr)))
    }
}

/// Why a domain cannot be routed. Cheap to clone (negative answers are cached and
/// shared like routes).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The domain does not exist (NXDOMAIN). Permanent.
    #[error("domain {domain} does not exist (NXDOMAIN)")]
    NxDomain {
        /// The domain routed.
        domain: Arc<str>,
    },
    /// The domain publishes a null MX (RFC 7505): it accepts no mail. Permanent.
    #[error("domain {domain} accepts no mail (null MX)")]
    NullMx {
        /// The domain routed.
        domain: Arc<str>,
    },
    /// The domain exists but has neither MX nor A/AAAA records. Permanent.
    #[error("domain {domain} has no MX and no address records")]
    NoMailHost {
        /// The domain routed.
        domain: Arc<str>,
    },
    /// The name is not a valid domain. Permanent.
    #[error("invalid domain {domain:?}")]
    InvalidDomain {
        /// The text given, as given.
        domain: Arc<str>,
    },
    /// DNS could not answer for now: SERVFAIL, REFUSED, timeout, no nameserver
    /// reachable. Transient.
    #[error("DNS lookup for {domain} failed: {detail}")]
    DnsFailure {
        /// The domain routed.
        domain: Arc<str>,
        /// What failed (the name queried and the error), for the log.
        detail: Arc<str>,
    },
    /// The domain has MX records but none of its hosts has an address (or the
    /// smarthost's name does not resolve). Transient: usually a DNS change in
    /// progress or a misconfiguration the receiver will fix.
    #[error("no MX host of {domain} has an address")]
    NoAddresses {
        /// The domain routed.
        domain: Arc<str>,
    },
}

impl RouteError {
    /// Retrying will not help: bounce.
    pub fn is_permanent(&self) -> bool {
        match self {
            RouteError::NxDomain { .. }
            | RouteError::NullMx { .. }
            | RouteError::NoMailHost { .. }
            | RouteError::InvalidDomain { .. } => true,
            RouteError::DnsFailure { .. } | RouteError::NoAddresses { .. } => false,
        }
    }

    /// Retrying later may help: defer.
    pub fn is_transient(&self) -> bool {
        !self.is_permanent()
    }

    /// The domain (or text) that failed to route.
    pub fn domain(&self) -> &str {
        match self {
            RouteError::NxDomain { domain }
            | RouteError::NullMx { domain }
            | RouteError::NoMailHost { domain }
            | RouteError::InvalidDomain { domain }
            | RouteError::DnsFailure { domain, .. }
            | RouteError::NoAddresses { domain } => domain,
        }
    }

    /// The RFC 3463 enhanced status for the delivery log and DSNs:
    /// 5.1.2 (bad destination system: NXDOMAIN, no mail host, invalid domain),
    /// 5.1.10 (null MX, RFC 7505 section 4.2), 4.4.3 (directory server failure:
    /// DNS failures), 4.4.4 (unable to route: no host has an address).
    pub fn enhanced_status(&self) -> EnhancedStatus {
        match self {
            RouteError::NxDomain { .. }
            | RouteError::NoMailHost { .. }
            | RouteError::InvalidDomain { .. } => EnhancedStatus::new(5, 1, 2),
            RouteError::NullMx { .. } => EnhancedStatus::new(5, 1, 10),
            RouteError::DnsFailure { .. } => EnhancedStatus::new(4, 4, 3),
            RouteError::NoAddresses { .. } => EnhancedStatus::new(4, 4, 4),
        }
    }

    /// The reply code a server would give: 556 for null MX (RFC 7505 section 4.2),
    /// 550 for other permanent failures, 451 for transient ones.
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            RouteError::NullMx { .. } => {
                ReplyCode::new(556).unwrap_or(ReplyCode::MAILBOX_UNAVAILABLE)
            }
            _ if self.is_permanent() => ReplyCode::MAILBOX_UNAVAILABLE,
            _ => ReplyCode::LOCAL_ERROR,
        }
    }

    /// A reply-like rendering for the delivery log and DSNs, e.g.
    /// `556 5.1.10 domain example.com accepts no mail (null MX)`.
    pub fn reply(&self) -> Reply {
        Reply::new(
            self.reply_code(),
            Some(self.enhanced_status()),
            self.to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let d: Arc<str> = Arc::from("example.com");
        let nx = RouteError::NxDomain { domain: d.clone() };
        assert!(nx.is_permanent() && !nx.is_transient());
        assert_eq!(nx.enhanced_status(), EnhancedStatus::new(5, 1, 2));
        assert_eq!(nx.reply_code().get(), 550);
        let null = RouteError::NullMx { domain: d.clone() };
        assert_eq!(null.reply_code().get(), 556);
        assert_eq!(null.enhanced_status(), EnhancedStatus::new(5, 1, 10));
        let fail = RouteError::DnsFailure {
            domain: d.clone(),
            detail: "SERVFAIL".into(),
        };
        assert!(fail.is_transient());
        assert_eq!(fail.reply().code.get(), 451);
        assert_eq!(fail.enhanced_status(), EnhancedStatus::new(4, 4, 3));
        assert!(RouteError::NoAddresses { domain: d }.is_transient());
    }
}
