//! text-embeddings-inference wire format (router/src/http/server.rs).
//! Error types are PascalCase; auth failure is a bare 401.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Req, common_fault, embedding, json_response, not_found};

const DIM: usize = 8;

pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let error_type = match status.as_u16() {
        503 => "Unhealthy",
        424 => "Backend",
        429 => "Overloaded",
        422 => "Validation",
        400 => "Empty",
        413 => "Validation",
        _ => "Backend",
    };
    let message = if status == StatusCode::SERVICE_UNAVAILABLE {
        "unhealthy"
    } else {
        message
    };
    json_response(status, &json!({"error": message, "error_type": error_type}))
}

pub(super) fn handle(req: &Req) -> Response {
    if let Some(r) = common_fault(req, error) {
        return r;
    }
    let open_route = req.method == Method::GET && matches!(req.path, "health" | "info" | "metrics");
    if !open_route && !req.authorized() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match (req.method.clone(), req.path) {
        (Method::GET, "health") => StatusCode::OK.into_response(),
        (Method::GET, "info") => json_response(
            StatusCode::OK,
            &json!({"model_id": req.spec.model, "model_sha": null, "model_dtype": "float16",
                    "model_type": {"embedding": {"pooling": "cls"}}, "max_concurrent_requests": 512,
                    "max_input_length": 512, "max_batch_tokens": 16384, "max_client_batch_size": 32,
                    "tokenization_workers": 2, "version": "1.8.0"}),
        ),
        (Method::POST, "embed" | "") => embed(req),
        (Method::POST, "v1/embeddings") => openai_embeddings(req),
        _ => not_found(),
    }
}

/// Inputs as a list; `Err` is the TEI error response.
// The error is the finished HTTP answer; boxing it buys nothing in a simulator.
#[allow(clippy::result_large_err)]
fn inputs(v: Option<&Value>) -> Result<Vec<String>, Response> {
    let list = match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Failed to deserialize the JSON body into the target type: missing field `inputs`",
            ));
        }
    };
    if list.is_empty() || list.iter().any(String::is_empty) {
        return Err(error(StatusCode::BAD_REQUEST, "`inputs` cannot be empty"));
    }
    Ok(list)
}

fn embed(req: &Req) -> Response {
    let v = req.json();
    match inputs(v.as_ref().and_then(|v| v.get("inputs"))) {
        Ok(list) => {
            let vectors: Vec<Vec<f32>> = list.iter().map(|s| embedding(s, DIM)).collect();
            json_response(StatusCode::OK, &json!(vectors))
        }
        Err(r) => r,
    }
}

/// OpenAI's embeddings API; `encoding_format: "base64"` answers each vector
/// as base64 of its little-endian float32 values, as TEI and OpenAI do.
fn openai_embeddings(req: &Req) -> Response {
    let v = req.json();
    let base64 = match v.as_ref().and_then(|v| v.get("encoding_format")) {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Failed to deserialize the JSON body into the target type: encoding_format: unknown variant, expected `float` or `base64`",
            );
        }
    };
    match inputs(v.as_ref().and_then(|v| v.get("input"))) {
        Ok(list) => {
            let data: Vec<Value> = list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let e = embedding(s, DIM);
                    let e = if base64 { json!(encode(&e)) } else { json!(e) };
                    json!({"object": "embedding", "embedding": e, "index": i})
                })
                .collect();
            let n = list.len() * 2;
            json_response(
                StatusCode::OK,
                &json!({"object": "list", "data": data, "model": req.spec.model, "usage": {"prompt_tokens": n, "total_tokens": n}}),
            )
        }
        Err(r) => r,
    }
}

fn encode(v: &[f32]) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
