//! Routing: from a recipient domain to the hosts and addresses to deliver to.
//!
//! - [`router`]: [`Router::route`], the cached, coalescing entry point, and smarthost
//!   overrides.
//! - [`resolve`]: one uncached decision: MX lookup, null MX (RFC 7505), implicit MX
//!   (RFC 5321 5.1), host addresses, failure classification, answer lifetimes.
//! - [`route`]: what comes out: [`Route`] (site, hosts by preference, addresses)
//!   or a self-classifying [`RouteError`].
//! - [`config`]: [`DnsConfig`] (the `[dns]` table) and [`RouteOverride`] (smarthosts).
//! - [`testserver`]: [`TestDnsServer`], a loopback DNS server fed zone-file text, for
//!   tests and `volley demo`.
//!
//! # Decisions
//!
//! | DNS answer for the domain                  | Outcome                                  |
//! |--------------------------------------------|------------------------------------------|
//! | MX records                                 | hosts by preference, each resolved A+AAAA |
//! | single MX `.` (null MX)                    | permanent, 556 5.1.10                     |
//! | no MX (NODATA), A/AAAA present             | implicit MX: the domain, preference 0     |
//! | no MX, no A/AAAA                           | permanent, 550 5.1.2                      |
//! | NXDOMAIN                                   | permanent, 550 5.1.2                      |
//! | SERVFAIL, REFUSED, timeout                 | transient, 451 4.4.3                      |
//! | MX hosts, none with an address             | transient, 451 4.4.4                      |
//!
//! Positive answers live for their smallest record TTL clamped to
//! `[min_ttl, max_ttl]`; NXDOMAIN and other permanent answers for the SOA's negative
//! TTL (or `negative_ttl`), clamped likewise; transient failures for `failure_ttl`.
//!
//! # Sites
//!
//! Domains whose MX host sets are equal share a [`SiteId`] (e.g. every domain hosted
//! by one provider), and so share connections and limits; see [`SiteId`] for keys.

pub mod config;
pub mod resolve;
pub mod route;
pub mod router;
pub mod testserver;

#[cfg(test)]
mod tests;

pub use config::{DnsConfig, RouteOverride};
pub use route::{MxHost, Route, RouteError, RouteKind, SiteId};
pub use router::{Router, RouterSetupError};
pub use testserver::{TestDnsError, TestDnsServer};
