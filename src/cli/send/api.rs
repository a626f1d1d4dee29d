//! The HTTP side of `volley send` (and of `volley demo`, which injects through the
//! same endpoint): a reqwest client, `POST /api/v1/campaigns` with a streamed
//! NDJSON body, and the server's answers and errors.

use std::sync::Arc;

use serde::Deserialize;

use crate::cli::CliError;

/// The campaign endpoint's 202 answer.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct CampaignResponse {
    /// The campaign, as the caller names it.
    pub campaign_id: String,
    /// Recipients accepted (stored durably).
    #[serde(default)]
    pub accepted: u64,
    /// Recipients refused (bad address, bad substitutions ...).
    #[serde(default)]
    pub rejected: u64,
    /// Messages stored (one per body).
    #[serde(default)]
    pub messages: u64,
    /// The first few refusals.
    #[serde(default)]
    pub rejected_samples: Vec<RejectedSample>,
}

/// One refused recipient.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct RejectedSample {
    /// The line of the request body (1 is the template, 2 the first recipient).
    #[serde(default)]
    pub line: u64,
    /// The address given.
    #[serde(default)]
    pub email: String,
    /// A stable error code.
    #[serde(default)]
    pub code: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// The API's error body.
#[derive(Debug, Clone, Default, Deserialize)]
struct ApiErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A Volley server's HTTP API.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    /// `http://host:port`, without a trailing slash.
    base: String,
    token: String,
}

impl Api {
    /// A client for `base` (e.g. `http://127.0.0.1:8025`) with a bearer token.
    pub fn new(base: &str, token: &str) -> Result<Api, CliError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::usage(format!(
                "--server {base}: expected a URL such as http://127.0.0.1:8025"
            )));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CliError::runtime(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::runtime(format!("HTTP client setup: {e}")))?;
        Ok(Api {
            client,
            base,
            token: token.to_string(),
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of a campaign's status.
    pub fn campaign_url(&self, id: &str) -> String {
        format!("{}/api/v1/campaigns/{}", self.base, encode_segment(id))
    }

    /// Checks that the server answers and takes the token, before a long upload:
    /// a `GET` of the campaign's status (404 for a new campaign is fine).
    pub async fn preflight(&self, campaign: &str) -> Result<(), CliError> {
        let resp = self
            .client
            .get(self.campaign_url(campaign))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(error_from(resp).await);
        }
        Ok(())
    }

    /// `POST /api/v1/campaigns` with `body` (NDJSON: the template line, then one
    /// recipient per line).
    pub async fn post_campaign(&self, body: reqwest::Body) -> Result<CampaignResponse, CliError> {
        let resp = self
            .client
            .post(format!("{}/api/v1/campaigns", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            return Err(error_from(resp).await);
        }
        let text = resp
            .text()
            .await
            .map_err(|e| CliError::runtime(format!("reading the server's answer: {e}")))?;
        serde_json::from_str(&text).map_err(|e| {
            CliError::runtime(format!(
                "the server's answer is not what was expected ({e}): {text}"
            ))
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> CliError {
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        let hint = if e.is_connect() {
            " (is `volley serve` running there?)"
        } else {
            ""
        };
        CliError::runtime(format!("cannot reach {}: {why}{hint}", self.base))
    }
}

/// An error answer as a [`CliError`]: 4xx (the request, the token) exit 2, 5xx
/// exit 1; the server's `code` and `message` are printed.
async fn error_from(resp: reqwest::Response) -> CliError {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body: ApiErrorBody = serde_json::from_str(&text).unwrap_or_default();
    let detail = if body.code.is_empty() && body.message.is_empty() {
        text.trim().chars().take(500).collect::<String>()
    } else {
        format!("{}: {}", body.code, body.message)
    };
    let message = match status.as_u16() {
        401 => format!("the server refused the token (401 Unauthorized): {detail}"),
        403 => format!("the token may not do this (403 Forbidden): {detail}"),
        _ => format!("the server answered {status}: {detail}"),
    };
    if status.is_client_error() {
        CliError::usage(message)
    } else {
        CliError::runtime(message)
    }
}

/// Percent-encodes a URL path segment (campaign ids may hold ':' and the like).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
