//! The shaping section of the configuration: [`Limits`] (`[shaping.default]`),
//! [`Rule`]s (`[[shaping.rule]]`) that override them for a domain, a site or the
//! sites whose MX hosts share a suffix, and the adaptive slow-down
//! ([`AdaptiveConfig`], `[shaping.adaptive]`).

use std::time::Duration;

use serde::Deserialize;

use super::Rate;
use crate::config::values::duration;
use crate::config::{ConfigError, TlsPolicy};

/// The `[shaping]` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShapingConfig {
    /// Limits of every site and domain no rule changes. Default: [`Limits::default`].
    pub default: Limits,
    /// Overrides, applied in file order over the default; a later rule overrides an
    /// earlier one for the fields it sets. Default: none.
    pub rule: Vec<Rule>,
    /// How receivers' "slow down" replies reduce the rate. Default: enabled.
    pub adaptive: AdaptiveConfig,
}

/// What a site (or, for the per-transaction fields, a domain) may receive.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent connections to the site (all its MX hosts together). Default: 32.
    pub max_connections: u32,
    /// New connections to the site per minute, evenly spaced. Default: no limit.
    pub connections_per_minute: Option<u32>,
    /// Transactions on one connection before it is closed and replaced. Default: 1000.
    pub max_messages_per_connection: u32,
    /// An unused connection is closed (QUIT) after this long. Default: 30s.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// RCPT TO commands in one transaction (one message body on the wire).
    /// Default: 100 (the minimum RFC 5321 4.5.3.1.8 requires servers to accept).
    pub max_recipients_per_transaction: u32,
    /// Messages per period, counted per recipient (a transaction to 40 recipients
    /// counts 40). Set by the default or a site/mx_suffix rule it is the site's
    /// total; set by a domain rule it is that domain's own. Default: no limit.
    pub max_message_rate: Option<Rate>,
    /// Recipients that may go at once after a pause before `max_message_rate`
    /// spacing applies. Default: 1 (strictly spaced; one transaction larger than
    /// the burst still goes when the limiter is rested, and pays for all of it).
    pub message_rate_burst: u32,
    /// Overrides `delivery.tls` for these destinations. Default: not set.
    pub tls: Option<TlsPolicy>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            connections_per_minute: None,
            max_messages_per_connection: 1000,
            idle_timeout: Duration::from_secs(30),
            max_recipients_per_transaction: 100,
            max_message_rate: None,
            message_rate_burst: 1,
            tls: None,
        }
    }
}

/// One `[[shaping.rule]]`: exactly one selector, then any of the [`Limits`] fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rule {
    /// Selector: a recipient domain, exactly ("gmail.com"). A domain rule may set
    /// only the per-transaction fields (`max_recipients_per_transaction`,
    /// `max_message_rate`, `message_rate_burst`, `tls`): connections are shared by
    /// every domain of a site.
    pub domain: Option<String>,
    /// Selector: a site name as the router names it (the MX set).
    pub site: Option<String>,
    /// Selector: any site with an MX host ending with this suffix (".google.com"
    /// matches "aspmx.l.google.com"; without the leading dot, "google.com" matches
    /// "google.com" and "*.google.com" but not "notgoogle.com").
    pub mx_suffix: Option<String>,
    /// See [`Limits::max_connections`].
    pub max_connections: Option<u32>,
    /// See [`Limits::connections_per_minute`].
    pub connections_per_minute: Option<u32>,
    /// See [`Limits::max_messages_per_connection`].
    pub max_messages_per_connection: Option<u32>,
    /// See [`Limits::idle_timeout`].
    #[serde(default, deserialize_with = "opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// See [`Limits::max_recipients_per_transaction`].
    pub max_recipients_per_transaction: Option<u32>,
    /// See [`Limits::max_message_rate`].
    pub max_message_rate: Option<Rate>,
    /// See [`Limits::message_rate_burst`].
    pub message_rate_burst: Option<u32>,
    /// See [`Limits::tls`].
    pub tls: Option<TlsPolicy>,
}

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::deserialize(d).map(Some)
}

/// What a rule selects, normalised (lower case, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// One recipient domain.
    Domain(String),
    /// One site.
    Site(String),
    /// Sites with an MX host ending with the suffix.
    MxSuffix(String),
}

/// Lower case without a trailing dot: how names are compared.
pub(crate) fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` ends with `suffix` (both normalised) at a label boundary.
pub(crate) fn host_matches_suffix(host: &str, suffix: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() < suffix.len() {
        return false;
    }
    let (head, tail) = host.split_at(host.len() - suffix.len());
    if !tail.eq_ignore_ascii_case(suffix) {
        return false;
    }
    suffix.starts_with('.') || head.is_empty() || head.ends_with('.')
}

impl Rule {
    /// The rule's selector, if it has exactly one.
    pub fn selector(&self) -> Option<Selector> {
        match (&self.domain, &self.site, &self.mx_suffix) {
            (Some(d), None, None) => Some(Selector::Domain(normalise(d))),
            (None, Some(s), None) => Some(Selector::Site(s.trim().to_string())),
            (None, None, Some(m)) => Some(Selector::MxSuffix(normalise(m))),
            _ => None,
        }
    }

    /// Copies the fields this rule sets onto `limits`.
    pub fn apply(&self, limits: &mut Limits) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut limits.max_connections, &self.max_connections);
        if self.connections_per_minute.is_some() {
            limits.connections_per_minute = self.connections_per_minute;
        }
        set(
            &mut limits.max_messages_per_connection,
            &self.max_messages_per_connection,
        );
        set(&mut limits.idle_timeout, &self.idle_timeout);
        set(
            &mut limits.max_recipients_per_transaction,
            &self.max_recipients_per_transaction,
        );
        if self.max_message_rate.is_some() {
            limits.max_message_rate = self.max_message_rate;
        }
        set(&mut limits.message_rate_burst, &self.message_rate_burst);
        if self.tls.is_some() {
            limits.tls = self.tls;
        }
    }

    /// The names of the per-site fields this rule sets (refused in domain rules).
    fn site_fields_set(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.max_connections.is_some() {
            v.push("max_connections");
        }
        if self.connections_per_minute.is_some() {
            v.push("connections_per_minute");
        }
        if self.max_messages_per_connection.is_some() {
            v.push("max_messages_per_connection");
        }
        if self.idle_timeout.is_some() {
            v.push("idle_timeout");
        }
        v
    }
}

/// The `[shaping.adaptive]` section: a receiver that answers with one of `codes`
/// and a text containing one of `patterns` (case-insensitive) halves the site's
/// message rate (or, with no rate set, its connection limit) until `cool_off` has
/// passed without another such reply; each further reply halves again, down to
/// 1 message per minute (or 1 connection).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConfig {
    /// Whether replies adapt limits at all. Default: true.
    pub enabled: bool,
    /// Reply codes that may mean "slow down". Default: [421, 451].
    pub codes: Vec<u16>,
    /// Substrings of the reply text (case-insensitive) that mean "slow down".
    /// Default: ["rate limit", "too many", "try again later"].
    pub patterns: Vec<String>,
    /// How long the reduced limit lasts after the last such reply. Default: 10m.
    #[serde(with = "duration")]
    pub cool_off: Duration,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            enabled: true,
            codes: vec![421, 451],
            patterns: ["rate limit", "too many", "try again later"]
                .map(String::from)
                .to_vec(),
            cool_off: Duration::from_secs(600),
        }
    }
}

impl ShapingConfig {
    /// Checks what the types cannot: positive limits, one selector per rule,
    /// per-site fields only in site rules. Errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_limits("shaping.default", &self.default)?;
        for (i, rule) in self.rule.iter().enumerate() {
            let key = format!("shaping.rule[{i}]");
            let selector = rule.selector().ok_or_else(|| {
                ConfigError::invalid(
                    &key,
                    "a rule needs exactly one of `domain`, `site`, `mx_suffix`",
                )
            })?;
            let empty = match &selector {
                Selector::Domain(s) | Selector::Site(s) | Selector::MxSuffix(s) => {
                    s.trim_start_matches('.').is_empty()
                }
            };
            if empty {
                return Err(ConfigError::invalid(&key, "the selector is empty"));
            }
            if let Selector::Domain(_) = selector {
                if let Some(field) = rule.site_fields_set().first() {
                    return Err(ConfigError::invalid(
                        format!("{key}.{field}"),
                        "connections are shared by every domain of a site, so a `domain` rule \
                         cannot set a per-connection limit; select the site with `site` or \
                         `mx_suffix`",
                    ));
                }
            }
            let mut merged = self.default.clone();
            rule.apply(&mut merged);
            check_limits(&key, &merged)?;
        }
        if self.adaptive.cool_off.is_zero() {
            return Err(ConfigError::invalid(
                "shaping.adaptive.cool_off",
                "must be positive",
            ));
        }
        Ok(())
    }
}

fn check_limits(key: &str, l: &Limits) -> Result<(), ConfigError> {
    let positive = [
        ("max_connections", l.max_connections),
        (
            "connections_per_minute",
            l.connections_per_minute.unwrap_or(1),
        ),
        ("max_messages_per_connection", l.max_messages_per_connection),
        (
            "max_recipients_per_transaction",
            l.max_recipients_per_transaction,
        ),
        ("message_rate_burst", l.message_rate_burst),
    ];
    for (field, v) in positive {
        if v == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.{field}"),
                "must be at least 1",
            ));
        }
    }
    if l.idle_timeout.is_zero() {
        return Err(ConfigError::invalid(
            format!("{key}.idle_timeout"),
            "must be positive",
        ));
    }
    Ok(())
}
