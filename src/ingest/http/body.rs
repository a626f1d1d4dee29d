//! Request bodies: content-type checks, the size limit, JSON decoding, each with
//! its own error code (`unsupported_media_type`, `payload_too_large`, `bad_json`,
//! `bad_body`).

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Whether the request's media type (parameters ignored) is one of `accepted`.
pub fn has_media_type(headers: &HeaderMap, accepted: &[&str]) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    accepted.iter().any(|a| essence.eq_ignore_ascii_case(a))
}

/// Reads the whole body, at most `limit` bytes, and decodes it as JSON.
pub async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<T, ApiError> {
    if !has_media_type(headers, &["application/json"]) {
        return Err(ApiError::media_type("application/json"));
    }
    // Refuse a declared oversize body before reading any of it.
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let bytes = match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(ApiError::too_large(limit))
        }
        Err(e) => {
            return Err(ApiError::bad_request(
                "bad_body",
                format!("could not read the request body: {e}"),
            ))
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request("bad_json", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn media_types_ignore_parameters_and_case() {
        let mut h = HeaderMap::new();
        assert!(!has_media_type(&h, &["application/json"]));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(has_media_type(&h, &["application/json"]));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!has_media_type(&h, &["application/json"]));
    }
}
