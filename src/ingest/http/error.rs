//! Every error the API answers: a status, a stable `code` and a human `message`,
//! always as JSON `{"code": "...", "message": "..."}`. axum's own rejections (bad
//! JSON, wrong content type, unknown route, wrong method, body too large) are
//! mapped here too, so a client never sees a plain-text error.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::spool::SpoolError;

/// Seconds a client is told to wait (`Retry-After`) when the spool is busy.
pub const RETRY_AFTER_SECS: u32 = 5;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (documented in `docs/openapi.yaml`).
    pub code: &'static str,
    /// What went wrong, for a human.
    pub message: String,
}

/// The JSON body of every error.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// Stable code.
    pub code: &'a str,
    /// Human text.
    pub message: &'a str,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 `unauthorized` (answered with `WWW-Authenticate: Bearer`).
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`: authenticated, but not an admin.
    pub fn forbidden() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this operation needs an admin tenant's token",
        )
    }

    /// 404 `not_found`: also what a tenant gets for another tenant's objects, so
    /// their existence does not leak.
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 413 `payload_too_large`.
    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than http.max_body ({limit} bytes)"),
        )
    }

    /// 415 `unsupported_media_type`.
    pub fn media_type(want: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected Content-Type: {want}"),
        )
    }

    /// 503 `spool_busy` (answered with `Retry-After`).
    pub fn spool_busy(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "spool_busy", message)
    }

    /// A spool failure while reading status or purging: transient ones are 503
    /// `spool_busy`, others 500 `internal`.
    pub fn spool(e: &SpoolError) -> ApiError {
        if e.is_transient() {
            ApiError::spool_busy(e.to_string())
        } else {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: &self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        decorate(self.status, response.headers_mut());
        response
    }
}

/// Adds the headers a status calls for: `WWW-Authenticate` on 401 (RFC 6750),
/// `Retry-After` on 503.
pub fn decorate(status: StatusCode, headers: &mut axum::http::HeaderMap) {
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
}

/// The router's fallback: no such route.
pub async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

/// The router's fallback for a known path with another method.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Maps a path-parameter rejection (undecodable percent-encoding, ...).
pub fn path_rejection(e: axum::extract::rejection::PathRejection) -> ApiError {
    ApiError::bad_request("bad_path", e.body_text())
}

/// Maps a query-string rejection.
pub fn query_rejection(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request("bad_query", e.body_text())
}
