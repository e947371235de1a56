//! text-generation-inference wire format (router/src/server.rs).

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Mode, Req, common_fault, json_response, not_found, sse, tokens, unix_now};

/// TGI error body: `{"error": str, "error_type": str}`.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let (error, error_type) = match status.as_u16() {
        422 => (message, "validation"),
        424 => (message, "generation"),
        429 => ("Model is overloaded", "overloaded"),
        500 => (message, "incomplete_generation"),
        503 => ("unhealthy", "healthcheck"),
        _ => (message, "error"),
    };
    json_response(status, &json!({"error": error, "error_type": error_type}))
}

pub(super) fn handle(req: &Req) -> Response {
    let open_route = req.method == Method::GET
        && matches!(req.path, "health" | "info" | "ping" | "" | "metrics");
    if let Some(r) = common_fault(req, error) {
        return r;
    }
    if !open_route && !req.authorized() {
        // TGI with --api-key: a bare 401, no JSON body.
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match (req.method.clone(), req.path) {
        (Method::GET, "health" | "ping" | "") => StatusCode::OK.into_response(),
        (Method::GET, "info") => json_response(StatusCode::OK, &info(req)),
        (Method::GET, "v1/models") => json_response(
            StatusCode::OK,
            &json!({"object": "list", "data": [{"id": req.spec.model, "object": "model", "created": 0, "owned_by": req.spec.model}]}),
        ),
        (Method::POST, "generate") => generate(req, false),
        (Method::POST, "generate_stream") => generate_stream(req),
        (Method::POST, "") => {
            // Compat route: a list, or a stream when asked.
            if req
                .json()
                .and_then(|v| v.get("stream").and_then(Value::as_bool))
                .unwrap_or(false)
            {
                generate_stream(req)
            } else {
                generate(req, true)
            }
        }
        (Method::POST, "v1/chat/completions") => chat(req, ""),
        _ => not_found(),
    }
}

fn info(req: &Req) -> Value {
    json!({
        "model_id": req.spec.model,
        "model_sha": null,
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": 128,
        "max_best_of": 2,
        "max_stop_sequences": 4,
        "max_input_tokens": 4095,
        "max_total_tokens": 4096,
        "validation_workers": 2,
        "max_client_batch_size": 4,
        "router": "text-generation-router",
        "version": "3.3.6",
        "sha": null,
        "docker_label": null
    })
}

struct GenParams {
    max_new_tokens: u64,
    details: bool,
}

// The error is the finished HTTP answer; boxing it buys nothing in a simulator.
#[allow(clippy::result_large_err)]
fn params(req: &Req) -> Result<(String, GenParams), Response> {
    let v = req.json().ok_or_else(|| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Failed to deserialize the JSON body into the target type",
        )
    })?;
    let inputs = v.get("inputs").and_then(Value::as_str).ok_or_else(|| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Failed to deserialize the JSON body into the target type: missing field `inputs`",
        )
    })?;
    if inputs.is_empty() {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Input validation error: `inputs` cannot be empty",
        ));
    }
    let p = v.get("parameters");
    let max_new_tokens = p
        .and_then(|p| p.get("max_new_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(20);
    if max_new_tokens == 0 {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Input validation error: `max_new_tokens` must be strictly positive",
        ));
    }
    let details = p
        .and_then(|p| p.get("details"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((
        inputs.to_string(),
        GenParams {
            max_new_tokens,
            details,
        },
    ))
}

fn token_json(i: usize, text: &str) -> Value {
    json!({"id": 1000 + i, "text": text, "logprob": -0.25, "special": false})
}

fn details(toks: &[&str]) -> Value {
    json!({
        "finish_reason": "length",
        "generated_tokens": toks.len(),
        "seed": null,
        "prefill": [],
        "tokens": toks.iter().enumerate().map(|(i, t)| token_json(i, t)).collect::<Vec<_>>(),
    })
}

fn with_compute_headers(mut r: Response, prompt_tokens: usize, generated: usize) -> Response {
    let h = r.headers_mut();
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put("x-compute-type", "gpu+optimized".into());
    put("x-compute-time", "0.012".into());
    put("x-compute-characters", (prompt_tokens * 4).to_string());
    put("x-total-time", "12".into());
    put("x-validation-time", "0".into());
    put("x-queue-time", "1".into());
    put("x-inference-time", "11".into());
    put("x-time-per-token", "11".into());
    put("x-prompt-tokens", prompt_tokens.to_string());
    put("x-generated-tokens", generated.to_string());
    r
}

fn generate(req: &Req, as_list: bool) -> Response {
    let (inputs, p) = match params(req) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let toks = tokens(p.max_new_tokens);
    let text: String = toks.concat();
    let mut one = json!({"generated_text": text});
    if p.details {
        one["details"] = details(&toks);
    }
    let body = if as_list { json!([one]) } else { one };
    let prompt_tokens = inputs.split_whitespace().count().max(1);
    with_compute_headers(
        json_response(StatusCode::OK, &body),
        prompt_tokens,
        toks.len(),
    )
}

/// `StreamResponse` events; no `[DONE]`: the stream just ends.
fn generate_stream(req: &Req) -> Response {
    let (_, p) = match params(req) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if req.spec.mode == Mode::StreamError {
        // Errors after the stream started arrive inside the 200 stream.
        return sse(vec![
            json!({"error": "Model is overloaded", "error_type": "overloaded"}).to_string(),
        ]);
    }
    let toks = tokens(p.max_new_tokens);
    let last = toks.len() - 1;
    let events = toks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let done = i == last;
            json!({
                "index": i + 1,
                "token": token_json(i, t),
                "top_tokens": null,
                "generated_text": if done { Value::String(toks.concat()) } else { Value::Null },
                "details": if done { json!({"finish_reason": "length", "generated_tokens": toks.len(), "seed": null}) } else { Value::Null },
            })
            .to_string()
        })
        .collect();
    sse(events)
}

/// OpenAI-shaped chat completion; TGI's `id` is always the empty string.
pub(super) fn chat(req: &Req, id: &str) -> Response {
    let Some(v) = req.json() else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Failed to deserialize the JSON body into the target type",
        );
    };
    let Some(messages) = v.get("messages").and_then(Value::as_array) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Failed to deserialize the JSON body into the target type: missing field `messages`",
        );
    };
    if messages.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Input validation error: `messages` cannot be empty",
        );
    }
    let max = v
        .get("max_tokens")
        .or(v.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(16);
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(&req.spec.model)
        .to_string();
    let toks = tokens(max);
    let created = unix_now();
    let usage = json!({"prompt_tokens": 8, "completion_tokens": toks.len(), "total_tokens": 8 + toks.len()});
    if v.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        if req.spec.mode == Mode::StreamError {
            return sse(vec![
                json!({"error": {"message": "Input validation error: simulated stream failure", "http_status_code": 422}}).to_string(),
                "[DONE]".to_string(),
            ]);
        }
        let last = toks.len() - 1;
        let mut events: Vec<String> = toks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                json!({
                    "object": "chat.completion.chunk", "id": id, "created": created, "model": model,
                    "system_fingerprint": "3.3.6-native",
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": t}, "logprobs": null,
                                 "finish_reason": if i == last { Value::from("length") } else { Value::Null }}],
                    "usage": null
                })
                .to_string()
            })
            .collect();
        events.push("[DONE]".to_string());
        return sse(events);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "object": "chat.completion", "id": id, "created": created, "model": model,
            "system_fingerprint": "3.3.6-native",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": toks.concat()}, "logprobs": null, "finish_reason": "length"}],
            "usage": usage
        }),
    )
}
