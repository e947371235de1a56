//! The HTTP surface: `/metrics`, health and readiness, reload, the JSON API
//! and the landing page.

pub mod api;
mod landing;

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::extract::State as AxState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::daemon::Daemon;

/// All routes, for a real listener or for in-process tests.
pub fn app(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/", get(landing::page))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/api/v1/breakers", get(api::breakers))
        .route("/api/v1/routes", get(api::routes))
        .route("/api/v1/breakers/{endpoint}/{action}", post(api::admin))
        .with_state(daemon)
}

/// Serve until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: TcpListener,
    daemon: Arc<Daemon>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(daemon))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The text exposition format 0.0.4, which is UTF-8: `prometheus::TEXT_FORMAT`
/// leaves the charset out, and `text/plain` without one means US-ASCII.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(AxState(d): AxState<Arc<Daemon>>) -> Response {
    // Rendering 10k endpoints is CPU work: keep it off the async workers' hot path.
    let body = tokio::task::spawn_blocking(move || d.render_metrics())
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response()
}

async fn healthy() -> &'static str {
    "Healthy.\n"
}

async fn ready(AxState(d): AxState<Arc<Daemon>>) -> Response {
    if d.is_ready() {
        (StatusCode::OK, "Ready.\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Not ready.\n").into_response()
    }
}

async fn reload(AxState(d): AxState<Arc<Daemon>>) -> Response {
    match d.reload().await {
        Ok(()) => (StatusCode::OK, "Config reloaded.\n").into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Config reload failed; the running config is kept.\n{e}\n"),
        )
            .into_response(),
    }
}

/// Wall-clock time of a monotonic instant (past or future).
pub(crate) fn wall(t: Instant) -> SystemTime {
    let now_i = Instant::now();
    let now_w = SystemTime::now();
    if t <= now_i {
        now_w - (now_i - t)
    } else {
        now_w + (t - now_i)
    }
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
