//! The simulator's control API, beside the virtual endpoints on the same port:
//!
//! - `GET /_sim/endpoints`: every endpoint with its protocol, mode and request counts
//! - `PUT /_sim/endpoints/{name}/mode` with a JSON mode (`"hang"`, `{"status": 503}`):
//!   override the timeline
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
                "mode": over.as_ref().unwrap_or(&spec.mode),
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
    let mode: Mode = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("invalid mode: {e}")})),
            )
                .into_response();
        }
    };
    let Some(v) = find(&st, &name) else {
        return unknown(&name);
    };
    *v.override_mode.write().unwrap_or_else(|p| p.into_inner()) = Some(mode.clone());
    Json(json!({"name": name, "mode": mode, "overridden": true})).into_response()
}

async fn clear(State(st): State<Arc<SimState>>, Path(name): Path<String>) -> Response {
    let Some(v) = find(&st, &name) else {
        return unknown(&name);
    };
    *v.override_mode.write().unwrap_or_else(|p| p.into_inner()) = None;
    Json(json!({"name": name, "overridden": false})).into_response()
}
