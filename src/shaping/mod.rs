//! Shaping: how much each destination may receive, and how fast.
//!
//! - [`limits`]: the `[shaping]` configuration: [`Limits`] (the default), [`Rule`]s
//!   selected by `domain`, `site` or `mx_suffix`, [`AdaptiveConfig`].
//! - [`table`]: [`ShapingTable`], limits resolved per site (and per site and domain
//!   for domains with rules of their own) and cached.
//! - [`rate`]: [`Rate`], "1000/s".
//! - [`gcra`]: [`Gcra`], a pure rate limiter over caller-supplied time.
//! - [`connection`]: [`ConnectionLimiter`], concurrent connections and connection
//!   rate of one site, awaitable.
//! - [`shaper`]: [`Shaper`], the live state: per site a [`SiteShaper`] (connections,
//!   message rate, adaptive slow-down on "rate limited" replies).
//! - [`clock`]: the [`Clock`] trait, tokio's clock and a manual one for tests.
//!
//! # Scope of each limit
//!
//! Connections are per site (a site is a set of MX hosts shared by many domains),
//! so `max_connections`, `connections_per_minute`, `max_messages_per_connection`
//! and `idle_timeout` come from the default and `site`/`mx_suffix` rules only.
//! `max_recipients_per_transaction` and `tls` apply per transaction and may also
//! come from `domain` rules. `max_message_rate` from the default or a site rule is
//! the site's total; from a domain rule it is that domain's own, enforced on top.
//!
//! # How egress uses it
//!
//! ```ignore
//! let site = shaper.site(site_name, &mx_hosts);          // once per pool
//! let permit = site.acquire_connection().await;           // before connecting
//! let limits = shaper.limits_for(domain, site_name, &mx_hosts);
//! // take up to limits.max_recipients_per_transaction recipients, then:
//! match shaper.try_send(&site, domain, n_recipients) {
//!     Ok(()) => { /* send the transaction */ }
//!     Err(wait) => { /* hand the batch back, try again after `wait` */ }
//! }
//! shaper.on_smtp_reply(site_name, &reply);                // every 4xx reply
//! drop(permit);                                            // on disconnect
//! ```
//!
//! Not yet: per source IP and per tenant limits, and limits shared by a cluster
//! through Redis (DESIGN step 7); they would be further [`Gcra`]s keyed by IP or
//! tenant, checked in [`Shaper::try_send`] alongside the site's.

pub mod clock;
pub mod connection;
pub mod gcra;
pub mod limits;
pub mod rate;
pub mod shaper;
pub mod table;

#[cfg(test)]
mod tests;

pub use clock::{Clock, ManualClock, TokioClock};
pub use connection::{ConnectionLimiter, ConnectionPermit, Refused};
pub use gcra::Gcra;
pub use limits::{AdaptiveConfig, Limits, Rule, Selector, ShapingConfig};
pub use rate::Rate;
pub use shaper::{Shaper, SiteShaper};
pub use table::ShapingTable;
