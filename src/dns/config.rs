//! Configuration for routing: the `[dns]` table and smarthost overrides.
//!
//! Both are plain serde structs that refuse unknown keys, so the config layer embeds
//! them as they are and a typo is an error naming the key, not a silent default.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The `[dns]` table: which resolver to ask and how long to trust its answers.
///
/// Every field has a default (shown in its doc), so an empty table is valid.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DnsConfig {
    /// Resolvers to ask, as `ip:port`, over UDP (and TCP for truncated answers).
    /// Default: empty, meaning the system resolver (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// How long to wait for one answer, e.g. `"5s"` or `"500ms"`. Default `"5s"`.
    #[serde(deserialize_with = "humantime_duration")]
    pub timeout: Duration,
    /// How many times to send a query before giving up on it. Default 2.
    pub attempts: usize,
    /// Shortest time an answer (positive, or permanent negative) is cached,
    /// whatever its TTL. Default `"30s"`.
    #[serde(deserialize_with = "humantime_duration")]
    pub min_ttl: Duration,
    /// Longest time any answer is cached, whatever its TTL; also bounds negative
    /// answers. Default `"1h"`.
    #[serde(deserialize_with = "humantime_duration")]
    pub max_ttl: Duration,
    /// How long a permanent failure (NXDOMAIN, null MX, no mail host) is cached when
    /// the answer carries no SOA to say so. Default `"5m"`.
    #[serde(deserialize_with = "humantime_duration")]
    pub negative_ttl: Duration,
    /// How long a transient failure (SERVFAIL, timeout, refused, no usable MX host)
    /// is cached, so a broken domain does not hammer DNS. Default `"10s"`.
    #[serde(deserialize_with = "humantime_duration")]
    pub failure_ttl: Duration,
    /// Most domains whose routes are cached; the resolver's own record cache has
    /// the same capacity in queries. Default 50000.
    pub cache_size: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(300),
            failure_ttl: Duration::from_secs(10),
            cache_size: 50_000,
        }
    }
}

impl DnsConfig {
    /// The defaults with `nameservers` replaced: the usual shape in tests and in
    /// `volley demo` (a local zone on loopback).
    pub fn with_nameservers(nameservers: Vec<SocketAddr>) -> Self {
        DnsConfig {
            nameservers,
            ..DnsConfig::default()
        }
    }

    /// Checks relations between fields; returns the offending key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.timeout.is_zero() {
            return Err(("timeout", "must be more than zero".into()));
        }
        if self.attempts == 0 {
            return Err(("attempts", "must be at least 1".into()));
        }
        if self.min_ttl > self.max_ttl {
            return Err(("min_ttl", "must not exceed max_ttl".into()));
        }
        if self.cache_size == 0 {
            return Err(("cache_size", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// A smarthost: send mail for some (or all) domains to one relay instead of their MX.
///
/// In config, one entry of a list, e.g.
/// `{ domains = ["*.example.org"], host = "relay.example.net", port = 587, tls = true }`.
/// Overrides are tried in order; the first whose `domains` match wins.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteOverride {
    /// Which recipient domains go to this relay: exact names (`example.com`) or
    /// `*.suffix` patterns (`*.example.com` matches `a.example.com` and deeper, not
    /// `example.com` itself). Default: empty, meaning every domain.
    #[serde(default)]
    pub domains: Vec<String>,
    /// The relay: a host name (resolved to A/AAAA) or an IP literal (`192.0.2.1`,
    /// `::1` or `[::1]`). Required.
    pub host: String,
    /// The relay's SMTP port. Default 25.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// AUTH username, if the relay wants authentication. Default: none.
    #[serde(default)]
    pub username: Option<String>,
    /// AUTH password; required when `username` is set. Default: none.
    #[serde(default)]
    pub password: Option<String>,
    /// Require TLS (STARTTLS) to the relay: never send in clear. Default false.
    #[serde(default)]
    pub tls: bool,
}

fn default_smtp_port() -> u16 {
    25
}

impl RouteOverride {
    /// A smarthost for every domain, without AUTH or required TLS.
    pub fn all(host: impl Into<String>, port: u16) -> Self {
        RouteOverride {
            domains: Vec::new(),
            host: host.into(),
            port,
            username: None,
            password: None,
            tls: false,
        }
    }

    /// Checks the entry; returns the offending key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.host.trim().is_empty() {
            return Err(("host", "must not be empty".into()));
        }
        if self.port == 0 {
            return Err(("port", "must not be 0".into()));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(("password", "username and password go together".into()));
        }
        for pattern in &self.domains {
            let bare = pattern.strip_prefix("*.").unwrap_or(pattern);
            if bare.is_empty() || bare.contains(['*', ':', ' ', '@']) {
                return Err((
                    "domains",
                    format!("{pattern:?} is not a domain or *.suffix"),
                ));
            }
        }
        Ok(())
    }

    /// The host as an IP address, if it is a literal (brackets allowed).
    pub fn host_ip(&self) -> Option<IpAddr> {
        let host = self.host.trim();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        host.parse().ok()
    }

    /// Does this override apply to `domain` (lowercase, no trailing dot)?
    /// Patterns compare case-insensitively.
    pub fn matches(&self, domain: &str) -> bool {
        if self.domains.is_empty() {
            return true;
        }
        self.domains.iter().any(|pattern| {
            let pattern = pattern.trim_end_matches('.');
            match pattern.strip_prefix("*.") {
                Some(suffix) => {
                    domain.len() > suffix.len() + 1
                        && domain.as_bytes()[domain.len() - suffix.len() - 1] == b'.'
                        && domain.as_bytes()[domain.len() - suffix.len()..]
                            .eq_ignore_ascii_case(suffix.as_bytes())
                }
                None => domain.eq_ignore_ascii_case(pattern),
            }
        })
    }

    /// The site key of routes through this relay: `smarthost:host:port`.
    pub fn site_key(&self) -> String {
        format!(
            "smarthost:{}:{}",
            self.host.trim().to_ascii_lowercase(),
            self.port
        )
    }
}

/// Deserializes a humantime string (`"5s"`, `"1h 30m"`, `"250ms"`).
fn humantime_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_patterns() {
        let mut o = RouteOverride::all("relay.example.net", 587);
        assert!(o.matches("anything.test"));
        o.domains = vec!["example.com".into(), "*.example.org".into()];
        assert!(o.matches("example.com"));
        assert!(o.matches("EXAMPLE.com") && o.matches("a.b.example.org"));
        assert!(!o.matches("example.org"));
        assert!(!o.matches("xexample.org"));
        assert!(!o.matches("sub.example.com"));
        assert_eq!(o.site_key(), "smarthost:relay.example.net:587");
        assert!(o.validate().is_ok());
        o.username = Some("u".into());
        assert_eq!(o.validate().unwrap_err().0, "password");
    }

    #[test]
    fn host_literals() {
        assert_eq!(
            RouteOverride::all("[::1]", 25).host_ip(),
            "::1".parse().ok()
        );
        assert_eq!(
            RouteOverride::all("10.0.0.1", 25).host_ip(),
            "10.0.0.1".parse().ok()
        );
        assert_eq!(RouteOverride::all("relay", 25).host_ip(), None);
    }

    #[test]
    fn defaults_are_valid() {
        assert!(DnsConfig::default().validate().is_ok());
    }
}
