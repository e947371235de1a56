//! The simulator's control API, beside the virtual endpoints on the same port:
//!
//! - `GET /_sim/endpoints`: every endpoint with its protocol, mode and request counts
//! - `PUT /_sim/endpoints/{name}/mode` with a JSON mode (`"hang"`, `{"status": 503}`,
//!   `{"latency": {"median": "100ms", "brownout": {"start": "0s", "ramp": "2m", "peak": 5}}}`):
//!   override the timeline (a latency model's clock starts now); 400 for a bad mode
//! - `DELETE /_sim/endpoints/{name}/mode`: back to the timeline

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::json;

use super::{Mode, SimState};

pub(super) fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/_sim/endpoints", get(list))
        .route("/_sim/endpoints/{name}/mode", put(set).delete(clear))
}

async fn list(State(st): State<Arc<SimState>>) -> Json<serde_json::Value> {
    let eps = st.endpoints.read().unwrap_or_else(|p| p.into_inner());
    let mut names: Vec<&String> = eps.keys().collect();
    names.sort();
    let list: Vec<_> = names
        .into_iter()
        .map(|n| {
            let v = &eps[n];
            let spec = v.spec.read().unwrap_or_else(|p| p.into_inner());
            let over = v.override_mode.read().unwrap_or_else(|p| p.into_inner());
            json!({
                "name": n,
                "protocol": spec.protocol,
                "model": spec.model,
                "mode": over.as_ref().map_or(&spec.mode, |(m, _)| m),
                "overridden": over.is_some(),
                "requests": v.requests.load(Ordering::Relaxed),
                "inference_requests": v.inference_requests.load(Ordering::Relaxed),
            })
        })
        .collect();
    Json(json!({ "endpoints": list }))
}

fn find(st: &SimState, name: &str) -> Option<Arc<super::Virtual>> {
    st.endpoints
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
        .cloned()
}

fn unknown(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("no simulated endpoint {name:?}")})),
    )
        .into_response()
}

async fn set(
    State(st): State<Arc<SimState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let invalid = |e: String| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("invalid mode: {e}")})),
        )
            .into_response()
    };
    let mode: Mode = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return invalid(e.to_string()),
    };
    let problems: Vec<String> = mode
        .problems()
        .into_iter()
        .map(|(field, msg)| format!("{field}: {msg}"))
        .collect();
    if !problems.is_empty() {
        return invalid(problems.join("; "));
    }
    let Some(v) = find(&st, &name) else {
        return unknown(&name);
    };
    v.set_override(Some(mode.clone()));
    Json(json!({"name": name, "mode": mode, "overridden": true})).into_response()
}

async fn clear(State(st): State<Arc<SimState>>, Path(name): Path<String>) -> Response {
    let Some(v) = find(&st, &name) else {
        return unknown(&name);
    };
    v.set_override(None);
    Json(json!({"name": name, "overridden": false})).into_response()
}
