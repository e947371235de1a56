//! The hf-inference provider: task payloads at `/models/{model}`, chat at
//! `/models/{model}/v1/chat/completions`.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Req, common_fault, embedding, json_response, not_found};

pub(super) fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({"error": message}))
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
    let Some(model_path) = req.path.strip_prefix("models/") else {
        return not_found();
    };
    if req.method != Method::POST {
        return not_found();
    }
    if model_path.ends_with("/v1/chat/completions") {
        return super::tgi::chat(req, "");
    }
    let Some(v) = req.json() else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let Some(inputs) = v.get("inputs") else {
        return error(StatusCode::BAD_REQUEST, "Missing inputs");
    };
    if req.spec.embedding {
        return feature_extraction(inputs);
    }
    let prompt = inputs.as_str().unwrap_or_default();
    let max = v
        .pointer("/parameters/max_new_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(20);
    let full = v
        .pointer("/parameters/return_full_text")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let generated: String = super::tokens(max).concat();
    let text = if full {
        format!("{prompt}{generated}")
    } else {
        generated
    };
    json_response(StatusCode::OK, &json!([{"generated_text": text}]))
}

/// Sentence-transformers feature extraction: one vector for a string, one
/// per input for a list.
fn feature_extraction(inputs: &Value) -> Response {
    match inputs {
        Value::String(s) => json_response(StatusCode::OK, &json!(embedding(s, 8))),
        Value::Array(list) if list.iter().all(Value::is_string) => {
            let vectors: Vec<Vec<f32>> = list
                .iter()
                .map(|s| embedding(s.as_str().unwrap_or_default(), 8))
                .collect();
            json_response(StatusCode::OK, &json!(vectors))
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "inputs must be a string or a list of strings",
        ),
    }
}
