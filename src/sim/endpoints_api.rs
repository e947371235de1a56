//! The Inference Endpoints management API: `GET /v2/endpoint/{namespace}/{name}`.
//! The mode maps to `status.state`; answering never wakes anything.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::{Mode, Req, json_response, not_found};

pub(super) fn handle(req: &Req) -> Response {
    let state = match &req.spec.mode {
        Mode::Ok | Mode::Slow(_) | Mode::Latency(_) => "running",
        Mode::ScaledToZero => "scaledToZero",
        Mode::Paused => "paused",
        Mode::Loading { .. } => "initializing",
        Mode::Failed => "failed",
        Mode::AuthFailure => {
            return json_response(StatusCode::UNAUTHORIZED, &json!({"error": "Unauthorized"}));
        }
        _ => {
            let error = |status: StatusCode, message: &str| {
                json_response(status, &json!({"error": message}))
            };
            return super::common_fault(req, error).unwrap_or_else(not_found);
        }
    };
    // The real API always wants a token; the simulator only when it was given one.
    if !req.authorized() {
        return json_response(StatusCode::UNAUTHORIZED, &json!({"error": "Unauthorized"}));
    }
    let parts: Vec<&str> = req.path.split('/').collect();
    let (ns, name) = match (req.method.clone(), parts.as_slice()) {
        (Method::GET, ["v2", "endpoint", ns, name]) => (*ns, *name),
        _ => return not_found(),
    };
    let ready = u32::from(state == "running");
    let url = (state == "running")
        .then(|| format!("https://{name}.us-east-1.aws.endpoints.huggingface.cloud"));
    json_response(
        StatusCode::OK,
        &json!({
            "name": name,
            "type": "protected",
            "accountId": null,
            "compute": {"accelerator": "gpu", "instanceType": "nvidia-a10g", "instanceSize": "x1",
                        "scaling": {"minReplica": 0, "maxReplica": 1, "scaleToZeroTimeout": 60}},
            "model": {"repository": req.spec.model, "framework": "pytorch", "task": "text-generation",
                      "image": {"tgi": {"url": "ghcr.io/huggingface/text-generation-inference:3.3.6"}}},
            "provider": {"vendor": "aws", "region": "us-east-1"},
            "status": {"state": state, "message": format!("Endpoint is {state}"), "url": url,
                       "readyReplica": ready, "targetReplica": ready,
                       "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
                       "createdBy": {"id": "0", "name": ns}, "updatedBy": {"id": "0", "name": ns}}
        }),
    )
}
