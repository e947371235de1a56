//! The serverless router's OpenAI-compatible API (`/v1/chat/completions`, `/v1/models`).

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::{Req, common_fault, json_response, not_found};

/// OpenAI-style error object.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    json_response(
        status,
        &json!({"error": {"message": message, "type": kind, "code": status.as_u16()}}),
    )
}

pub(super) fn handle(req: &Req) -> Response {
    if let Some(r) = common_fault(req, error) {
        return r;
    }
    if !req.authorized() {
        return error(
            StatusCode::UNAUTHORIZED,
            "Invalid credentials in Authorization header",
        );
    }
    match (req.method.clone(), req.path) {
        (Method::GET, "v1/models") => json_response(
            StatusCode::OK,
            &json!({"object": "list", "data": [{"id": req.spec.model, "object": "model", "created": 1_700_000_000, "owned_by": req.spec.model.split('/').next().unwrap_or("")}]}),
        ),
        (Method::POST, "v1/chat/completions") => {
            let id = format!("chatcmpl-{:016x}", fastrand::u64(..));
            super::tgi::chat(req, &id)
        }
        _ => not_found(),
    }
}
