//! The configuration file: TOML, every key documented in `config/volley.toml` with
//! its default, unknown keys refused, errors naming the key.
//!
//! - [`Config`]: the whole file, [`Config::load`] / [`Config::from_toml_str`].
//! - [`sections`]: `[spool]`, `[http]`, `[smtp]`, `[log]`.
//! - [`delivery`]: `[delivery]`, its timeouts and smarthost routes.
//! - [`values`]: durations, sizes, TLS policy, CIDR ranges.
//! - [`error`]: [`ConfigError`] and the key-path tracking deserializer.
//!
//! `[shaping]` is [`ShapingConfig`] and `[dns]` is [`DnsConfig`] (smarthosts:
//! [`RouteOverride`](crate::dns::RouteOverride)), each defined with the code that
//! uses it. Config is plain data: it is parsed and validated once, then handed to
//! each subsystem; nothing reads it through a global.

pub mod delivery;
pub mod error;
pub mod sections;
pub mod values;

#[cfg(test)]
mod tests;

use std::path::Path;

use serde::Deserialize;

pub use delivery::{DeliveryConfig, Timeouts};
pub use error::ConfigError;
pub use sections::{
    HttpConfig, LogConfig, RelayConfig, SmtpConfig, SpoolConfig, SubmissionConfig, TenantConfig,
    User,
};
pub use values::{ByteSize, Cidr, TlsPolicy};

use crate::dns::DnsConfig;
use crate::shaping::ShapingConfig;

/// The whole configuration. Every section may be omitted (its defaults apply),
/// so an empty file is a valid configuration.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Message storage. Default: see [`SpoolConfig`].
    pub spool: SpoolConfig,
    /// HTTP API listener. Default: see [`HttpConfig`].
    pub http: HttpConfig,
    /// SMTP identity and listeners. Default: no SMTP listener.
    pub smtp: SmtpConfig,
    /// DNS resolution. Default: the system resolver.
    pub dns: DnsConfig,
    /// Outbound delivery. Default: see [`DeliveryConfig`].
    pub delivery: DeliveryConfig,
    /// Per-destination limits. Default: see [`ShapingConfig`].
    pub shaping: ShapingConfig,
    /// Event logs. Default: none written.
    pub log: LogConfig,
    /// `[[tenant]]`: customers and their API tokens. Default: none (then the HTTP
    /// API refuses every request but `/health`).
    pub tenant: Vec<TenantConfig>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text)
    }

    /// Parses and validates configuration text.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = error::from_toml(text)?;
        config.validate()?;
        Ok(config)
    }

    /// The EHLO name: `delivery.ehlo_name`, else `smtp.hostname`, else the machine's.
    pub fn ehlo_name(&self) -> String {
        self.delivery
            .ehlo_name
            .clone()
            .unwrap_or_else(|| self.smtp.hostname())
    }

    /// Checks what the types cannot; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.spool.path.as_os_str().is_empty() {
            return Err(bad("spool.path", "must not be empty"));
        }
        if self.spool.max_queued_messages == 0 {
            return Err(bad("spool.max_queued_messages", "must be at least 1"));
        }
        if let Some(h) = &self.smtp.hostname {
            check_hostname("smtp.hostname", h)?;
        }
        self.validate_ingest()?;
        if let Some(h) = &self.delivery.ehlo_name {
            check_hostname("delivery.ehlo_name", h)?;
        }
        if let Some(s) = &self.smtp.submission {
            check_pair("smtp.submission", &s.tls_cert, &s.tls_key)?;
            for (i, u) in s.users.iter().enumerate() {
                if let Some(t) = &u.tenant {
                    self.check_tenant(&format!("smtp.submission.users[{i}].tenant"), t)?;
                }
                if u.username.is_empty() {
                    return Err(bad(format!("smtp.submission.users[{i}].username"), "empty"));
                }
                if !u.password_hash.starts_with('$') {
                    return Err(bad(
                        format!("smtp.submission.users[{i}].password_hash"),
                        "expected a PHC hash string (\"$argon2id$...\"), never a plain password",
                    ));
                }
            }
        }
        if let Some(r) = &self.smtp.relay {
            check_pair("smtp.relay", &r.tls_cert, &r.tls_key)?;
            if let Some(t) = &r.tenant {
                self.check_tenant("smtp.relay.tenant", t)?;
            }
        }
        self.dns
            .validate()
            .map_err(|(key, why)| bad(format!("dns.{key}"), why))?;
        let d = &self.delivery;
        if d.smtp_port == 0 {
            return Err(bad("delivery.smtp_port", "must be a port number (1-65535)"));
        }
        if d.retry_schedule.is_empty() {
            return Err(bad("delivery.retry_schedule", "needs at least one delay"));
        }
        if let Some(i) = d.retry_schedule.iter().position(|t| t.is_zero()) {
            return Err(bad(
                format!("delivery.retry_schedule[{i}]"),
                "must be positive",
            ));
        }
        if d.message_lifetime.is_zero() {
            return Err(bad("delivery.message_lifetime", "must be positive"));
        }
        for (key, t) in d.timeouts.all() {
            if t.is_zero() {
                return Err(bad(format!("delivery.timeouts.{key}"), "must be positive"));
            }
        }
        for (i, r) in d.route.iter().enumerate() {
            r.validate()
                .map_err(|(key, why)| bad(format!("delivery.route[{i}].{key}"), why))?;
        }
        self.shaping.validate()
    }
}

impl Config {
    /// `[http]`, the limits of `[smtp]` and `[[tenant]]`.
    fn validate_ingest(&self) -> Result<(), ConfigError> {
        let h = &self.http;
        if h.max_recipients == 0 {
            return Err(bad("http.max_recipients", "must be at least 1"));
        }
        if h.campaign_message_recipients == 0 {
            return Err(bad(
                "http.campaign_message_recipients",
                "must be at least 1",
            ));
        }
        if h.max_connections == 0 {
            return Err(bad("http.max_connections", "must be at least 1"));
        }
        if h.header_timeout.is_zero() {
            return Err(bad("http.header_timeout", "must be positive"));
        }
        let s = &self.smtp;
        for (key, n) in [
            ("max_recipients", s.max_recipients),
            ("max_connections", s.max_connections),
            ("max_connections_per_ip", s.max_connections_per_ip),
        ] {
            if n == 0 {
                return Err(bad(format!("smtp.{key}"), "must be at least 1"));
            }
        }
        if s.max_line_length < 1000 {
            return Err(bad(
                "smtp.max_line_length",
                "must be at least 1000 (RFC 5321 4.5.3.1.6)",
            ));
        }
        for (key, t) in [
            ("command_timeout", s.command_timeout),
            ("data_timeout", s.data_timeout),
            ("auth_failure_window", s.auth_failure_window),
        ] {
            if t.is_zero() {
                return Err(bad(format!("smtp.{key}"), "must be positive"));
            }
        }
        for (i, d) in s.relay_domains.iter().enumerate() {
            check_hostname(&format!("smtp.relay_domains[{i}]"), d)?;
        }
        for (i, t) in self.tenant.iter().enumerate() {
            let ok = !t.name.is_empty()
                && t.name.len() <= 64
                && t.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !ok {
                return Err(bad(
                    format!("tenant[{i}].name"),
                    format!("{:?}: use 1-64 letters, digits, '-', '_' or '.'", t.name),
                ));
            }
            if self.tenant[..i].iter().any(|o| o.name == t.name) {
                return Err(bad(
                    format!("tenant[{i}].name"),
                    format!("{:?} is defined twice", t.name),
                ));
            }
            for (j, h) in t.api_tokens.iter().enumerate() {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(
                        format!("tenant[{i}].api_tokens[{j}]"),
                        "expected the token's SHA-256 as 64 hex digits (`volley hash-token`), \
                         never the token itself",
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_tenant(&self, key: &str, name: &str) -> Result<(), ConfigError> {
        if self.tenant.iter().any(|t| t.name == name) {
            Ok(())
        } else {
            Err(bad(key, format!("no [[tenant]] is named {name:?}")))
        }
    }
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, message)
}

fn check_hostname(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{name:?} is not a host name"),
        ))
    }
}

fn check_pair<T>(section: &str, cert: &Option<T>, key: &Option<T>) -> Result<(), ConfigError> {
    match (cert, key) {
        (Some(_), None) => Err(ConfigError::invalid(
            format!("{section}.tls_key"),
            "required when tls_cert is set",
        )),
        (None, Some(_)) => Err(ConfigError::invalid(
            format!("{section}.tls_cert"),
            "required when tls_key is set",
        )),
        _ => Ok(()),
    }
}
