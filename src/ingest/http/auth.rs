//! Bearer-token authentication (RFC 6750) and tenant namespaces.
//!
//! The configuration holds only SHA-256 hashes of tokens (`[[tenant]] api_tokens`);
//! a request's token is hashed and looked up. Tokens are long random strings, so a
//! fast hash suffices, and looking up a hash leaks nothing useful through timing.
//!
//! Campaign ids are namespaced: tenant `acme`'s campaign `spring` is stored as
//! `acme:spring`. Tenants name their campaigns without the prefix and see them so;
//! admins name and see the stored form (they address every tenant's campaigns).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::ApiState;
use crate::config::TenantConfig;
use crate::model::{CampaignId, TenantId};

/// Longest campaign name accepted (bytes).
pub const MAX_CAMPAIGN_LEN: usize = 200;

/// Who is calling: the tenant a valid token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant's name.
    pub tenant: String,
    /// Whether it may see and control everything.
    pub admin: bool,
}

/// Token hash -> tenant, built once from the configuration.
#[derive(Debug, Default)]
pub struct Tokens {
    /// Lowercase hex SHA-256 of a token -> its tenant.
    by_hash: HashMap<String, Arc<Caller>>,
}

impl Tokens {
    /// Every token of every tenant.
    pub fn new(tenants: &[TenantConfig]) -> Tokens {
        let mut by_hash = HashMap::new();
        for t in tenants {
            let caller = Arc::new(Caller {
                tenant: t.name.clone(),
                admin: t.admin,
            });
            for h in &t.api_tokens {
                by_hash.insert(h.to_ascii_lowercase(), caller.clone());
            }
        }
        Tokens { by_hash }
    }

    /// The caller whose token this is.
    pub fn lookup(&self, token: &str) -> Option<Arc<Caller>> {
        self.by_hash.get(&hash_token(token)).cloned()
    }

    /// The caller named by an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Arc<Caller>, ApiError> {
        let Some(value) = header else {
            return Err(ApiError::unauthorized(
                "missing Authorization: Bearer TOKEN header",
            ));
        };
        let value = std::str::from_utf8(value)
            .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let token = match value.trim().split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(ApiError::unauthorized(
                    "expected Authorization: Bearer TOKEN",
                ))
            }
        };
        if token.is_empty() {
            return Err(ApiError::unauthorized("empty bearer token"));
        }
        self.lookup(token)
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))
    }
}

/// Lowercase hex SHA-256 of `token`, the form `[[tenant]] api_tokens` holds.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl FromRequestParts<ApiState> for Arc<Caller> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        state.inner.tokens.authenticate(header)
    }
}

/// An authenticated caller that is an admin (else 403 `forbidden`).
#[derive(Debug, Clone)]
pub struct Admin(pub Arc<Caller>);

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = Arc::<Caller>::from_request_parts(parts, state).await?;
        if caller.admin {
            Ok(Admin(caller))
        } else {
            Err(ApiError::forbidden())
        }
    }
}

impl Caller {
    /// The tenant id stored with this caller's messages.
    pub fn tenant_id(&self) -> TenantId {
        TenantId(self.tenant.clone())
    }

    /// The stored campaign a caller's id names, for reading and controlling:
    /// a tenant's `spring` is `TENANT:spring`; an admin's id is used as given.
    pub fn resolve_campaign(&self, given: &str) -> Result<CampaignId, ApiError> {
        check_campaign(given)?;
        Ok(if self.admin {
            CampaignId(given.to_string())
        } else {
            CampaignId(format!("{}:{given}", self.tenant))
        })
    }

    /// The stored campaign for new messages: in the caller's namespace, except
    /// that an admin may name any namespace explicitly (`other:spring`).
    pub fn campaign_for_inject(&self, given: &str) -> Result<CampaignId, ApiError> {
        check_campaign(given)?;
        Ok(if self.admin && given.contains(':') {
            CampaignId(given.to_string())
        } else {
            CampaignId(format!("{}:{given}", self.tenant))
        })
    }

    /// How this caller sees a stored campaign id: tenants without their prefix.
    pub fn display_campaign(&self, stored: &str) -> String {
        if self.admin {
            return stored.to_string();
        }
        match stored.split_once(':') {
            Some((tenant, name)) if tenant == self.tenant => name.to_string(),
            _ => stored.to_string(),
        }
    }

    /// Whether this caller may see an object owned by `tenant`.
    pub fn may_see(&self, tenant: Option<&str>) -> bool {
        self.admin || tenant == Some(self.tenant.as_str())
    }
}

/// Refuses empty, over-long and unprintable campaign names.
fn check_campaign(given: &str) -> Result<(), ApiError> {
    let ok = !given.is_empty()
        && given.len() <= MAX_CAMPAIGN_LEN
        && !given
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '/');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "bad_campaign_id",
            format!(
                "a campaign id is 1-{MAX_CAMPAIGN_LEN} bytes without spaces, control characters or '/'"
            ),
        ))
    }
}

/// A fresh campaign name for a campaign stream that did not name one.
pub fn generate_campaign_name() -> String {
    format!("c-{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants() -> Vec<TenantConfig> {
        vec![
            TenantConfig {
                name: "acme".into(),
                api_tokens: vec![hash_token("acme-token").to_ascii_uppercase()],
                admin: false,
            },
            TenantConfig {
                name: "ops".into(),
                api_tokens: vec![hash_token("ops-token")],
                admin: true,
            },
        ]
    }

    #[test]
    fn tokens_are_looked_up_by_hash() {
        let t = Tokens::new(&tenants());
        let acme = t.authenticate(Some(b"Bearer acme-token")).unwrap();
        assert_eq!((acme.tenant.as_str(), acme.admin), ("acme", false));
        let ops = t.authenticate(Some(b"bearer   ops-token ")).unwrap();
        assert!(ops.admin);
        for bad in [
            None,
            Some(&b"Bearer nope"[..]),
            Some(b"Basic YWNtZS10b2tlbg=="),
            Some(b"Bearer "),
            Some(b"acme-token"),
            Some(b"Bearer \xff"),
        ] {
            let e = t.authenticate(bad).unwrap_err();
            assert_eq!(e.code, "unauthorized", "{bad:?}");
        }
    }

    #[test]
    fn campaigns_are_namespaced_per_tenant() {
        let acme = Caller {
            tenant: "acme".into(),
            admin: false,
        };
        let ops = Caller {
            tenant: "ops".into(),
            admin: true,
        };
        assert_eq!(acme.resolve_campaign("spring").unwrap().0, "acme:spring");
        assert_eq!(acme.resolve_campaign("ops:x").unwrap().0, "acme:ops:x");
        assert_eq!(acme.display_campaign("acme:spring"), "spring");
        assert_eq!(
            ops.resolve_campaign("acme:spring").unwrap().0,
            "acme:spring"
        );
        assert_eq!(ops.display_campaign("acme:spring"), "acme:spring");
        assert_eq!(ops.campaign_for_inject("fall").unwrap().0, "ops:fall");
        assert_eq!(ops.campaign_for_inject("acme:fall").unwrap().0, "acme:fall");
        assert_eq!(acme.campaign_for_inject("fall").unwrap().0, "acme:fall");
        for bad in ["", "a b", "a/b", "x\ny", &"x".repeat(MAX_CAMPAIGN_LEN + 1)] {
            assert_eq!(
                acme.resolve_campaign(bad).unwrap_err().code,
                "bad_campaign_id"
            );
        }
        assert!(acme.may_see(Some("acme")));
        assert!(!acme.may_see(Some("other")));
        assert!(!acme.may_see(None));
        assert!(ops.may_see(None));
    }
}
