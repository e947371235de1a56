//! The OpenAI-compatible gateway (`--gateway.listen-address`): requests name
//! a route in `model`, go to the endpoint of the chain that admits traffic,
//! fail over while no byte has reached the client, and feed the breakers
//! with their outcomes, so that traffic trips an endpoint within a second or
//! two instead of at the next probe. Besides the OpenAI paths it serves
//! Hugging Face feature extraction at `/routes/{route}` (and `/` with
//! `model`), where `InferenceClient(base_url=...).feature_extraction` posts.
//!
//! One file per concern: `auth` (client keys), `body` (reading `model` and
//! rewriting it), `upstream` (paths per kind, embeddings ↔ feature extraction),
//! `table` (routes per topology), `failover` (attempts and breakers),
//! `cache` (answers kept for when no endpoint can give one),
//! `stream` (relaying a committed stream), `errors` (OpenAI-style answers).

mod auth;
mod body;
mod cache;
mod client;
mod errors;
mod failover;
mod stream;
mod table;
mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use tokio::net::TcpListener;

use crate::config::{Config, GatewayConfig, bounds};
use crate::daemon::Daemon;
use crate::http::server;
use crate::http::web_config::WebConfig;
use crate::metrics::LocalOperation;
pub use errors::GatewayError;
use failover::Call;
use table::{Table, Traffic};
use upstream::Op;
pub use upstream::carries_traffic;

/// Why the gateway does not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the gateway needs client keys: set gateway.client_keys_file, or gateway.allow_unauthenticated: true to let anyone who reaches the port spend the endpoints' tokens"
    )]
    NoClientKeys,
}

/// The gateway's state: the daemon it serves for and its routes.
pub struct Gateway {
    daemon: Arc<Daemon>,
    table: RwLock<Arc<Table>>,
    traffic: Mutex<HashMap<String, Arc<Traffic>>>,
    /// Each route's cache, kept across reloads that leave its settings alone.
    caches: Mutex<HashMap<String, Arc<cache::Cache>>>,
    /// Traffic has its own pool: a busy gateway does not queue probes.
    client: reqwest::Client,
    /// The listener's bound on receiving a request body (see [`serve`]).
    body_timeout: OnceLock<Duration>,
}

impl Gateway {
    /// Refuses to start an open relay (no keys and no explicit opt-in).
    pub fn new(daemon: Arc<Daemon>) -> Result<Arc<Gateway>, StartError> {
        let topo = daemon.topology();
        check_auth_config(&topo.config)?;
        for w in warnings(&topo.config) {
            tracing::warn!("{w}");
        }
        let client = crate::probe::client();
        let traffic = Mutex::new(HashMap::new());
        let caches = Mutex::new(HashMap::new());
        let table = Table::build(topo, &client, &daemon.metrics, &traffic, &caches);
        Ok(Arc::new(Gateway {
            daemon,
            table: RwLock::new(Arc::new(table)),
            traffic,
            caches,
            client,
            body_timeout: OnceLock::new(),
        }))
    }

    /// The routes of the daemon's current topology (rebuilt after a reload).
    fn table(&self) -> Arc<Table> {
        let topo = self.daemon.topology();
        let current = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
        if Arc::ptr_eq(&current.topology, &topo) {
            return current;
        }
        let mut slot = self.table.write().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&slot.topology, &topo) {
            *slot = Arc::new(Table::build(
                topo,
                &self.client,
                &self.daemon.metrics,
                &self.traffic,
                &self.caches,
            ));
        }
        slot.clone()
    }

    /// Sets the bound on receiving a request body: the listener's
    /// header-read timeout (the request's `timeout` bounds it as well).
    fn bound_body_reads(&self, limit: Duration) {
        let _ = self.body_timeout.set(limit);
    }

    async fn handle(
        self: Arc<Self>,
        op: Op,
        path_route: Option<String>,
        headers: HeaderMap,
        body: Body,
    ) -> Response {
        let started = Instant::now();
        let table = self.table();
        let cfg = &table.config().gateway;
        if !auth::authorized(&headers, cfg) {
            return GatewayError::Unauthorized.into_response();
        }
        let bytes = match self.read_body(cfg, &headers, body, started).await {
            Ok(b) => b,
            Err(e) => return e.into_response(),
        };
        let Resolved {
            route: model,
            span: model_span,
            stream,
        } = match resolve(op, &bytes, path_route) {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        let Some(route) = table.routes.get(&model).cloned() else {
            return GatewayError::UnknownRoute(errors::shown(&model)).into_response();
        };
        if !route.chain.iter().any(|h| h.target.for_op(op).is_some()) {
            return GatewayError::Unsupported {
                route: route.name.clone(),
                operation: op.as_str(),
            }
            .into_response();
        }
        let call = Call {
            op,
            route,
            body: bytes,
            model_span,
            model,
            stream: stream && op == Op::Chat,
            started,
            deadline: started + cfg.timeout,
            first_byte_timeout: cfg.first_byte_timeout,
        };
        self.run(call).await
    }

    /// The whole body, within `max_request_bytes` and before the body
    /// deadline: a client that trickles it does not hold a connection.
    async fn read_body(
        &self,
        cfg: &GatewayConfig,
        headers: &HeaderMap,
        body: Body,
        started: Instant,
    ) -> Result<Bytes, GatewayError> {
        let max = cfg.max_request_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(GatewayError::TooLarge(max));
        }
        let limit = self
            .body_timeout
            .get()
            .map_or(cfg.timeout, |t| cfg.timeout.min(*t));
        let read = tokio::time::timeout_at(
            (started + limit).into(),
            axum::body::to_bytes(body, max as usize),
        );
        match read.await {
            Err(_) => Err(GatewayError::BodyTimeout(limit.as_secs_f64().ceil() as u64)),
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) if too_large(&e) => Err(GatewayError::TooLarge(max)),
            Ok(Err(_)) => Err(GatewayError::UnreadableBody),
        }
    }
}

/// What a request names: its route, `model`'s place in the body (none
/// when the route came from the path) and `stream`.
struct Resolved {
    route: String,
    span: Option<(usize, usize)>,
    stream: bool,
}

/// The route: `model` in the body, else (feature extraction) the path's.
fn resolve(op: Op, bytes: &[u8], path_route: Option<String>) -> Result<Resolved, GatewayError> {
    if op != Op::FeatureExtraction {
        let p = body::peek(bytes)?;
        return Ok(Resolved {
            route: p.model,
            span: Some(p.model_span),
            stream: p.stream,
        });
    }
    let peeked = body::peek_optional(bytes)?;
    upstream::feature_inputs(bytes)?;
    match (peeked, path_route) {
        (Some(p), _) => Ok(Resolved {
            route: p.model,
            span: Some(p.model_span),
            stream: false,
        }),
        (None, Some(route)) => Ok(Resolved {
            route,
            span: None,
            stream: false,
        }),
        (None, None) => Err(GatewayError::MissingModel),
    }
}

/// The body was over the limit (not merely unreadable).
fn too_large(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = c.source();
    }
    false
}

fn check_auth_config(cfg: &Config) -> Result<(), StartError> {
    if cfg.gateway.client_keys.is_none() && !cfg.gateway.allow_unauthenticated {
        return Err(StartError::NoClientKeys);
    }
    Ok(())
}

/// What `check-config` warns about: routes the gateway could never serve
/// (only `endpoint-status` and `http` endpoints, which carry no traffic).
/// A warning, not an error: such routes still make sense for monitoring.
pub fn warnings(cfg: &Config) -> Vec<String> {
    cfg.routes
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            !r.endpoints.iter().any(|n| {
                cfg.endpoints
                    .iter()
                    .any(|e| &e.name == n && carries_traffic(e.kind))
            })
        })
        .map(|(i, r)| {
            format!(
                "routes[{i}] ({}): no endpoint can carry gateway traffic (endpoint-status and http endpoints are skipped); the gateway answers 503 for it",
                r.name
            )
        })
        .collect()
}

/// The gateway's routes, for a listener or for in-process tests.
pub fn app(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/", post(features).fallback(unknown))
        .route("/routes/{route}", post(route_features).fallback(unknown))
        .route("/routes/{route}/", post(route_features).fallback(unknown))
        .fallback(unknown)
        .with_state(gateway)
}

async fn chat(State(g): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    g.handle(Op::Chat, None, headers, body).await
}

async fn embeddings(State(g): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    g.handle(Op::Embeddings, None, headers, body).await
}

/// Feature extraction at the gateway's root, the route in `model`.
async fn features(State(g): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    g.handle(Op::FeatureExtraction, None, headers, body).await
}

/// Feature extraction at `/routes/{route}`: what `InferenceClient(base_url=...)`
/// posts to (it sends no `model`).
async fn route_features(
    State(g): State<Arc<Gateway>>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    g.handle(Op::FeatureExtraction, Some(route), headers, body)
        .await
}

async fn unknown() -> Response {
    GatewayError::UnknownPath.into_response()
}

/// The routes in OpenAI's list format.
async fn models(State(g): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let table = g.table();
    if !auth::authorized(&headers, &table.config().gateway) {
        return GatewayError::Unauthorized.into_response();
    }
    let data: Vec<serde_json::Value> = table
        .names
        .iter()
        .map(|n| serde_json::json!({"id": n, "object": "model", "created": 0, "owned_by": "hfbreaker"}))
        .collect();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

/// Serve the gateway on its own listener, hardened like the daemon's (same
/// connection limits, timeouts and `--web.config.file`), until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    limits: server::Limits,
    web: Option<Arc<WebConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let d = gateway.daemon.clone();
    gateway.bound_body_reads(limits.header_read_timeout);
    let settings = server::Settings {
        limits: server::Limits {
            // The configured (reloadable) bound is checked per request.
            max_body_bytes: bounds::GATEWAY_MAX_REQUEST_BYTES.max as usize,
            ..limits
        },
        web: web.unwrap_or_else(WebConfig::none),
        on_accept_error: Arc::new(move || d.metrics.local_error(LocalOperation::Accept)),
        auth_exempt: Some(auth::checks_own_auth),
    };
    server::serve(listener, app(gateway), settings, shutdown).await
}
