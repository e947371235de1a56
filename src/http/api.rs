//! `/api/v1`: breaker and route state as JSON, and guarded admin actions.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::json;

use super::{rfc3339, wall};
use crate::breaker::State;
use crate::classify::Verdict;
use crate::daemon::{AdminAction, AdminError, Daemon};
use crate::schedule::LastProbe;

#[derive(Serialize)]
pub struct BreakerView {
    pub name: String,
    pub kind: &'static str,
    pub probe: &'static str,
    pub host: String,
    pub model: Option<String>,
    pub state: State,
    pub since: String,
    pub enforced: bool,
    pub consecutive_failures: u32,
    pub failure_ratio: f64,
    pub open_until: Option<String>,
    pub open_duration_seconds: f64,
    /// The slow-call threshold in force (learned with `auto`).
    pub slow_call_duration_seconds: f64,
    /// Whether the threshold is learned (`slow_call_duration: auto`).
    pub slow_call_duration_auto: bool,
    /// The learned probe latency; null while warming up.
    pub latency_baseline_seconds: Option<f64>,
    pub counts: CountsView,
    pub last_probe: Option<LastProbeView>,
    pub next_probe_at: Option<String>,
}

#[derive(Serialize)]
pub struct CountsView {
    pub success: u64,
    pub failure: u64,
    pub ignored: u64,
    pub rejected: u64,
    pub trips: u64,
}

#[derive(Serialize)]
pub struct LastProbeView {
    pub at: String,
    pub result: &'static str,
    pub reason: Option<&'static str>,
    pub status_code: Option<u16>,
    pub duration_seconds: f64,
    pub detail: String,
}

impl From<&LastProbe> for LastProbeView {
    fn from(l: &LastProbe) -> Self {
        LastProbeView {
            at: rfc3339(l.at),
            result: match l.verdict {
                Verdict::Success => "success",
                Verdict::Failure(_) => "failure",
                Verdict::Ignored(_) => "ignored",
            },
            reason: l.verdict.reason().map(|r| r.as_str()),
            status_code: l.status,
            duration_seconds: l.duration.as_secs_f64(),
            detail: l.detail.clone(),
        }
    }
}

pub fn breaker_views(d: &Daemon) -> Vec<BreakerView> {
    let topo = d.topology();
    topo.endpoints
        .iter()
        .map(|ep| {
            let st = ep.lock();
            let cfg = &st.cfg;
            BreakerView {
                name: ep.name.clone(),
                kind: cfg.kind.as_str(),
                probe: cfg.probe.as_str(),
                host: cfg.host(),
                model: cfg.model.clone(),
                state: st.breaker.state(),
                since: rfc3339(st.since_wall),
                enforced: cfg.enforce,
                consecutive_failures: st.breaker.consecutive_failures(),
                failure_ratio: st.breaker.failure_ratio(),
                open_until: st.breaker.open_until().map(|t| rfc3339(wall(t))),
                open_duration_seconds: st.breaker.open_duration().as_secs_f64(),
                slow_call_duration_seconds: st.breaker.slow_call_threshold().as_secs_f64(),
                slow_call_duration_auto: cfg.breaker.adaptive.is_some(),
                latency_baseline_seconds: st.breaker.latency_baseline().map(|d| d.as_secs_f64()),
                counts: CountsView {
                    success: st.counts.success,
                    failure: st.counts.failure,
                    ignored: st.counts.ignored,
                    rejected: st.counts.rejected,
                    trips: st.counts.trips,
                },
                last_probe: st.last.as_ref().map(LastProbeView::from),
                next_probe_at: st.next_probe.map(|t| rfc3339(wall(t))),
            }
        })
        .collect()
}

pub async fn breakers(AxState(d): AxState<Arc<Daemon>>) -> Json<serde_json::Value> {
    Json(json!({ "breakers": breaker_views(&d) }))
}

pub async fn routes(AxState(d): AxState<Arc<Daemon>>) -> Json<serde_json::Value> {
    let routes: Vec<_> = d
        .routes()
        .into_iter()
        .map(|r| {
            let since = rfc3339(wall(r.since));
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["since"] = json!(since);
            v
        })
        .collect();
    Json(json!({ "routes": routes }))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

pub async fn admin(
    AxState(d): AxState<Arc<Daemon>>,
    Path((endpoint, action)): Path<(String, String)>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    // In-process callers (tests) have no socket.
    let client = peer.map_or_else(|| "in-process".to_string(), |p| p.0.0.to_string());
    let Some(token) = d.admin_token() else {
        return error(
            StatusCode::FORBIDDEN,
            "admin API disabled: start hfbreaker with --web.admin-token-file",
        );
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials);
    if !presented.is_some_and(|p| token.constant_time_eq(p)) {
        tracing::warn!(%client, endpoint, action, "admin request refused");
        let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
        return r;
    }
    let Some(action) = AdminAction::parse(&action) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown action; use force-open, force-closed or reset",
        );
    };
    // 200 only once the new state is on disk (with --storage.path).
    match d.admin_saved(&endpoint, action, &client).await {
        Ok(state) => Json(json!({ "endpoint": endpoint, "state": state })).into_response(),
        Err(e @ AdminError::NotSaved { .. }) => {
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(e) => error(StatusCode::NOT_FOUND, &e.to_string()),
    }
}

/// The credentials of `Bearer <token>`: the scheme in any case (RFC 9110,
/// section 11.1), one or more spaces, then the token exactly. Only the
/// field's own leading and trailing whitespace is not part of it.
fn bearer_credentials(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_start_matches(' '))
}
