//! Read and control: `/health`, message and campaign status, campaign and domain
//! suspend / resume / purge, the queue listing.

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Admin, Caller};
use super::error::{path_rejection, query_rejection, ApiError};
use super::ApiState;
use crate::model::MessageId;

/// Default and largest `limit` of `GET /api/v1/queue`.
pub const QUEUE_LIMIT_DEFAULT: usize = 100;
/// See [`QUEUE_LIMIT_DEFAULT`].
pub const QUEUE_LIMIT_MAX: usize = 10_000;

/// `GET /health`.
pub async fn health(State(state): State<ApiState>) -> Response {
    if state.inner.health.is_up() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "listeners are not all up yet",
        )
        .into_response()
    }
}

/// `GET /api/v1/messages/{id}`.
pub async fn message_status(
    State(state): State<ApiState>,
    caller: Arc<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = path.map_err(path_rejection)?;
    let id: MessageId = id
        .parse()
        .map_err(|_| ApiError::bad_request("bad_id", "a message id is 32 hexadecimal digits"))?;
    let not_found = || ApiError::not_found(format!("no message {id}"));
    let status = state
        .inner
        .engine
        .message_status(id)
        .await
        .map_err(|e| ApiError::spool(&e))?
        .ok_or_else(not_found)?;
    if !caller.may_see(status.tenant.as_deref()) {
        return Err(not_found());
    }
    let campaign = status
        .campaign
        .as_deref()
        .map(|c| caller.display_campaign(c));
    let mut value = serde_json::to_value(&status).map_err(internal)?;
    value["campaign"] = json!(campaign);
    Ok(Json(value))
}

/// `GET /api/v1/campaigns/{id}`: the engine's view merged with the ingest
/// progress of a stream that may still be running.
pub async fn campaign_status(
    State(state): State<ApiState>,
    caller: Arc<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(given) = path.map_err(path_rejection)?;
    let campaign = caller.resolve_campaign(&given)?;
    let not_found = || ApiError::not_found(format!("no campaign {given}"));
    let status = state
        .inner
        .engine
        .campaign_status(&campaign)
        .await
        .map_err(|e| ApiError::spool(&e))?;
    let ingest = state.inner.progress.get(&campaign.0);
    // No owner check needed: a tenant's id always resolves inside its namespace.
    let mut value = match (&status, &ingest) {
        (None, None) => return Err(not_found()),
        (Some(s), _) => serde_json::to_value(s).map_err(internal)?,
        (None, Some(_)) => json!({
            "tenant": campaign.0.split_once(':').map(|(t, _)| t),
            "suspended": false,
            "messages": 0,
            "recipients": 0,
            "counts": crate::delivery::StateCounts::default(),
        }),
    };
    if let Value::Object(map) = &mut value {
        map.remove("campaign");
        map.insert(
            "campaign_id".into(),
            json!(caller.display_campaign(&campaign.0)),
        );
        map.insert("ingest".into(), json!(ingest));
    }
    Ok(Json(value))
}

/// `POST /api/v1/campaigns/{id}/suspend`.
pub async fn campaign_suspend(
    State(state): State<ApiState>,
    caller: Arc<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(given) = path.map_err(path_rejection)?;
    let campaign = caller.resolve_campaign(&given)?;
    state.inner.engine.suspend_campaign(&campaign);
    Ok(Json(json!({
        "campaign_id": caller.display_campaign(&campaign.0),
        "suspended": true,
    })))
}

/// `POST /api/v1/campaigns/{id}/resume`.
pub async fn campaign_resume(
    State(state): State<ApiState>,
    caller: Arc<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(given) = path.map_err(path_rejection)?;
    let campaign = caller.resolve_campaign(&given)?;
    let released = state.inner.engine.resume_campaign(&campaign);
    Ok(Json(json!({
        "campaign_id": caller.display_campaign(&campaign.0),
        "suspended": false,
        "released": released,
    })))
}

/// `POST /api/v1/campaigns/{id}/purge`.
pub async fn campaign_purge(
    State(state): State<ApiState>,
    caller: Arc<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(given) = path.map_err(path_rejection)?;
    let campaign = caller.resolve_campaign(&given)?;
    let summary = state
        .inner
        .engine
        .purge_campaign(&campaign)
        .await
        .map_err(|e| ApiError::spool(&e))?;
    Ok(Json(json!({
        "campaign_id": caller.display_campaign(&campaign.0),
        "purged": summary,
    })))
}

/// Query of `GET /api/v1/queue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    /// Only domains starting with this.
    pub domain: Option<String>,
    /// Most domains listed.
    pub limit: Option<usize>,
}

/// `GET /api/v1/queue` (admin).
pub async fn queue(
    State(state): State<ApiState>,
    _admin: Admin,
    query: Result<Query<QueueQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(query_rejection)?;
    let limit = q.limit.unwrap_or(QUEUE_LIMIT_DEFAULT);
    if limit == 0 || limit > QUEUE_LIMIT_MAX {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit must be 1-{QUEUE_LIMIT_MAX}"),
        ));
    }
    let prefix = q.domain.map(|d| d.to_ascii_lowercase());
    let listing = state
        .inner
        .engine
        .queue_listing(prefix.as_deref().filter(|p| !p.is_empty()), limit);
    Ok(Json(serde_json::to_value(&listing).map_err(internal)?))
}

/// `POST /api/v1/domains/{domain}/suspend` (admin).
pub async fn domain_suspend(
    State(state): State<ApiState>,
    _admin: Admin,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let domain = domain_param(path)?;
    state.inner.engine.suspend_domain(&domain);
    Ok(Json(json!({"domain": domain, "suspended": true})))
}

/// `POST /api/v1/domains/{domain}/resume` (admin).
pub async fn domain_resume(
    State(state): State<ApiState>,
    _admin: Admin,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let domain = domain_param(path)?;
    let was = state.inner.engine.resume_domain(&domain);
    Ok(Json(
        json!({"domain": domain, "suspended": false, "was_suspended": was}),
    ))
}

/// `POST /api/v1/domains/{domain}/purge` (admin).
pub async fn domain_purge(
    State(state): State<ApiState>,
    _admin: Admin,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let domain = domain_param(path)?;
    let summary = state
        .inner
        .engine
        .purge_domain(&domain)
        .await
        .map_err(|e| ApiError::spool(&e))?;
    Ok(Json(json!({"domain": domain, "purged": summary})))
}

/// A domain from the path: a host name (or address literal), lowercased, as the
/// scheduler keys its queues.
fn domain_param(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(domain) = path.map_err(path_rejection)?;
    let ok = !domain.is_empty()
        && domain.len() <= 255
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':'))
        || (!domain.is_ascii()
            && domain.len() <= 255
            && !domain.chars().any(|c| c.is_control() || c.is_whitespace()));
    if !ok {
        return Err(ApiError::bad_request(
            "bad_domain",
            format!("{domain:?} is not a domain name"),
        ));
    }
    Ok(domain.to_lowercase())
}

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}
