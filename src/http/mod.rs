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

async fn metrics(AxState(d): AxState<Arc<Daemon>>) -> Response {
    // Rendering 10k endpoints is CPU work: keep it off the async workers' hot path.
    metrics_response(tokio::task::spawn_blocking(move || d.render_metrics()).await)
}

/// A failed render is a 500, never an empty 200: an empty exposition keeps
/// `up` at 1 and hides that the exporter is broken.
fn metrics_response(rendered: Result<Vec<u8>, tokio::task::JoinError>) -> Response {
    match rendered {
        Ok(body) => (
            [(header::CONTENT_TYPE, crate::metrics::text::CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering /metrics failed");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the metrics failed; see the log\n",
            )
                .into_response()
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_render_is_a_500_not_an_empty_200() {
        let panicked = tokio::task::spawn_blocking(|| -> Vec<u8> { panic!("render bug") }).await;
        let r = metrics_response(panicked);
        assert_eq!(r.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let ok = metrics_response(Ok(b"x 1\n".to_vec()));
        assert_eq!(ok.status(), axum::http::StatusCode::OK);
        assert_eq!(
            ok.headers()[header::CONTENT_TYPE],
            crate::metrics::text::CONTENT_TYPE
        );
    }
}
