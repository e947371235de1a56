//! The HTTP surface: `/metrics`, health and readiness, reload, the JSON API
//! and the landing page.

pub mod api;
mod landing;
pub mod server;
pub mod status;
pub mod web_config;

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use tokio::net::TcpListener;

use crate::daemon::Daemon;
use crate::metrics::LocalOperation;

/// Switches of the routes themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppOptions {
    /// `POST /-/reload` works only with `--web.enable-lifecycle`, as in
    /// Prometheus: otherwise anyone who reaches the port could make the
    /// daemon re-read its config at will. SIGHUP always works.
    pub enable_lifecycle: bool,
}

/// Everything a daemon listener needs besides the socket.
#[derive(Clone, Default)]
pub struct ServeOptions {
    pub app: AppOptions,
    pub limits: server::Limits,
    pub web: Option<Arc<web_config::WebConfig>>,
}

/// All routes with the default options (lifecycle API off).
pub fn app(daemon: Arc<Daemon>) -> Router {
    app_with(daemon, AppOptions::default())
}

/// All routes, for a real listener or for in-process tests.
pub fn app_with(daemon: Arc<Daemon>, options: AppOptions) -> Router {
    Router::new()
        .route("/", get(landing::page))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/api/v1/breakers", get(api::breakers))
        .route("/api/v1/routes", get(api::routes))
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/breakers/{endpoint}/{action}", post(api::admin))
        .layer(Extension(options))
        .with_state(daemon)
}

/// Serve with the default options until `shutdown` resolves, then drain.
pub async fn serve(
    listener: TcpListener,
    daemon: Arc<Daemon>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, daemon, ServeOptions::default(), shutdown).await
}

/// Serve the daemon's routes on the hardened listener (see [`server`])
/// until `shutdown` resolves, then drain within the shutdown timeout.
pub async fn serve_with(
    listener: TcpListener,
    daemon: Arc<Daemon>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let d = daemon.clone();
    let settings = server::Settings {
        limits: options.limits,
        web: options.web.unwrap_or_else(web_config::WebConfig::none),
        on_accept_error: Arc::new(move || d.metrics.local_error(LocalOperation::Accept)),
        auth_exempt: Some(admin_write_with_bearer),
    };
    server::serve(listener, app_with(daemon, options.app), settings, shutdown).await
}

/// Admin writes carry their own bearer token in `Authorization`, which
/// leaves no room for basic auth; their handler checks that token (and
/// refuses every write without `--web.admin-token-file`).
fn admin_write_with_bearer(method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
    method == Method::POST
        && uri.path().starts_with("/api/v1/breakers/")
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "))
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

async fn reload(AxState(d): AxState<Arc<Daemon>>, Extension(o): Extension<AppOptions>) -> Response {
    if !o.enable_lifecycle {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n").into_response();
    }
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
