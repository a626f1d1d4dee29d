//! `POST /api/v1/messages` and `POST /api/inject/v1`: one KumoMTA-shaped request,
//! composed, stored concurrently (group commit lets the messages share syncs), and
//! answered only once every accepted message is durable.
//!
//! The answer has KumoMTA's fields (`success_count`, `fail_count`,
//! `failed_recipients`, `errors`), counted per recipient, plus Volley's
//! (`accepted` with message ids, `rejected` with codes, `campaign_id`). Status:
//! 202 when any recipient was accepted; 503 `spool_busy` (with `Retry-After`) when
//! none was because the spool stayed busy; 422 when every recipient was refused
//! for its own reasons. Those error answers carry `code` and `message` too.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use super::auth::Caller;
use super::body::read_json;
use super::error::{decorate, ApiError};
use super::store::{store, Owner, Stored, TRY_AGAIN};
use super::ApiState;
use crate::ingest::compose::{compose, InjectRequest, Rejection};

/// Messages of one request stored at once (each waits for a group commit).
pub const STORE_CONCURRENCY: usize = 256;

/// One accepted recipient.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    /// The address as stored (wire form).
    pub email: String,
    /// Its message (recipients with identical content share one).
    pub message_id: String,
}

/// One refused recipient.
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    /// The address as given.
    pub email: String,
    /// Its position in `recipients`.
    pub index: usize,
    /// Stable code, e.g. `invalid_recipient`, `try_again`.
    pub code: &'static str,
    /// Why.
    pub reason: String,
}

/// The answer to an inject request.
#[derive(Debug, Clone, Serialize)]
pub struct InjectResponse {
    /// On 422/503 only: the error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// On 422/503 only: what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// KumoMTA: recipients accepted.
    pub success_count: usize,
    /// KumoMTA: recipients refused.
    pub fail_count: usize,
    /// KumoMTA: the refused addresses.
    pub failed_recipients: Vec<String>,
    /// KumoMTA: one `address: reason` per refused recipient.
    pub errors: Vec<String>,
    /// Accepted recipients and their message ids, in request order.
    pub accepted: Vec<Accepted>,
    /// Refused recipients, in request order.
    pub rejected: Vec<Refused>,
    /// The campaign, as the caller names it.
    pub campaign_id: Option<String>,
}

/// The handler.
pub async fn inject(
    State(state): State<ApiState>,
    caller: Arc<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let inner = &state.inner;
    let req: InjectRequest = read_json(&headers, body, inner.max_body).await?;
    let campaign = req
        .campaign_id
        .as_deref()
        .map(|c| caller.campaign_for_inject(c))
        .transpose()?;
    let composed = compose(&req, &inner.limits).map_err(|e| {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        ApiError::new(status, e.code, e.message)
    })?;
    drop(req);
    let owner = Owner {
        tenant: caller.tenant_id(),
        campaign: campaign.clone(),
    };
    let engine = &inner.engine;
    let owner = &owner;
    let retry = inner.request_retry;
    let results: Vec<_> = stream::iter(composed.messages)
        .map(|m| async move {
            let outcome = store(engine, &m, owner, retry).await;
            (m, outcome)
        })
        .buffer_unordered(STORE_CONCURRENCY)
        .collect()
        .await;

    let mut accepted: Vec<(usize, Accepted)> = Vec::new();
    let mut rejected: Vec<Refused> = composed.rejected.into_iter().map(refused).collect();
    for (m, outcome) in results {
        match outcome {
            Stored::Ok(id) => accepted.extend(m.recipients.iter().map(|(i, a)| {
                (
                    *i,
                    Accepted {
                        email: a.clone(),
                        message_id: id.to_string(),
                    },
                )
            })),
            Stored::Refused { code, reason } => {
                rejected.extend(m.recipients.iter().map(|(i, a)| Refused {
                    email: a.clone(),
                    index: *i,
                    code,
                    reason: reason.clone(),
                }))
            }
        }
    }
    accepted.sort_by_key(|(i, _)| *i);
    rejected.sort_by_key(|r| r.index);

    let busy = rejected.iter().any(|r| r.code == TRY_AGAIN);
    let (status, code, message) = if !accepted.is_empty() {
        (StatusCode::ACCEPTED, None, None)
    } else if busy {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("spool_busy"),
            Some("the spool is busy: nothing was accepted; try again later".to_string()),
        )
    } else {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("rejected"),
            Some("every recipient was refused; see rejected".to_string()),
        )
    };
    let response = InjectResponse {
        code,
        message,
        success_count: accepted.len(),
        fail_count: rejected.len(),
        failed_recipients: rejected.iter().map(|r| r.email.clone()).collect(),
        errors: rejected
            .iter()
            .map(|r| format!("{}: {}", r.email, r.reason))
            .collect(),
        accepted: accepted.into_iter().map(|(_, a)| a).collect(),
        rejected,
        campaign_id: campaign.map(|c| caller.display_campaign(&c.0)),
    };
    let mut answer = (status, Json(response)).into_response();
    decorate(status, answer.headers_mut());
    Ok(answer)
}

fn refused(r: Rejection) -> Refused {
    Refused {
        email: r.email,
        index: r.index,
        code: r.code,
        reason: r.reason,
    }
}
