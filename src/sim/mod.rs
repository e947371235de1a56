//! A simulated Hugging Face deployment on one port.
//!
//! Virtual endpoints live under path prefixes (`/{name}/...`), each speaking
//! one protocol with the real wire formats (see `tgi`, `tei`, `router`,
//! `hf_inference`, `endpoints_api`), and each in a fault [`Mode`] that can be
//! switched at run time. The accept loop is our own so that `reset` and `down`
//! can abort a connection with a TCP RST, as a crashed server would.

mod control;
mod endpoints_api;
mod hf_inference;
pub mod latency;
mod router;
pub mod scenario;
mod tei;
mod tgi;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::HumanDuration;
use latency::Latency;

/// The server software a virtual endpoint imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// text-generation-inference.
    Tgi,
    /// text-embeddings-inference.
    Tei,
    /// The OpenAI-compatible serverless router (`/v1/...`).
    Router,
    /// The hf-inference provider (`/models/{model}`).
    HfInference,
    /// The Inference Endpoints management API (`/v2/endpoint/{ns}/{name}`).
    EndpointsApi,
}

/// What a virtual endpoint does with the next request. In YAML and JSON a
/// mode is a bare name (`ok`, `hang`) or a one-key map (`{status: 503}`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Mode {
    /// Healthy: real answers.
    Ok,
    /// Answer every request with this HTTP status and the protocol's error body.
    Status(u16),
    /// Accept the request and never answer.
    Hang,
    /// Read the request, then abort the connection with a TCP RST.
    Reset,
    /// The server is gone: connections are aborted (RST) before any answer.
    Down,
    /// Answer correctly after this delay.
    Slow(HumanDuration),
    /// Answer correctly after a delay drawn from a latency model (jitter,
    /// drift, a brownout, outliers: see [`latency::Latency`]) whose clock
    /// starts when the mode is set (a timeline step, the control API).
    Latency(Latency),
    /// 200 with a body that is not what the protocol promises.
    Garbage,
    /// 200 with an 8 MiB body.
    HugeBody,
    /// 503 "Model ... is currently loading" with `estimated_time`
    /// (management API: state `initializing`).
    Loading { estimated_time: f64 },
    /// 429 with `Retry-After`.
    RateLimited { retry_after: u64 },
    /// 401: the token was rejected.
    AuthFailure,
    /// Inference routes: 503 while a replica starts; management API: `scaledToZero`.
    ScaledToZero,
    /// Inference routes: 400 "Invalid state"; management API: `paused`.
    Paused,
    /// Management API: `failed`; inference routes: 500.
    Failed,
    /// Streaming routes answer 200 and then an error event inside the SSE
    /// stream, as TGI does; other routes answer normally.
    StreamError,
    /// Alternates: healthy for half a period, then `fault` for the other half.
    Flapping {
        period: HumanDuration,
        fault: Box<Mode>,
    },
}

impl Mode {
    /// The mode in force `elapsed` after the simulator started.
    pub fn at(&self, elapsed: Duration) -> &Mode {
        match self {
            Mode::Flapping { period, fault } => {
                let half = (period.0 / 2).max(Duration::from_millis(1));
                if (elapsed.as_nanos() / half.as_nanos()).is_multiple_of(2) {
                    &Mode::Ok
                } else {
                    fault.at(elapsed)
                }
            }
            other => other,
        }
    }

    /// What is wrong with this mode's values, as (field below the mode,
    /// message) pairs; empty when it is valid.
    pub fn problems(&self) -> Vec<(String, String)> {
        match self {
            Mode::Latency(l) => l
                .problems()
                .into_iter()
                .map(|(f, m)| (format!("latency.{f}"), m))
                .collect(),
            Mode::Flapping { fault, .. } => fault
                .problems()
                .into_iter()
                .map(|(f, m)| (format!("flapping.fault.{f}"), m))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// How a virtual endpoint is set up.
#[derive(Clone, Debug)]
pub struct VirtualSpec {
    pub protocol: Protocol,
    pub model: String,
    /// When set, inference routes need `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// hf-inference: answer as a feature-extraction model instead of text generation.
    pub embedding: bool,
    pub mode: Mode,
}

impl VirtualSpec {
    pub fn new(protocol: Protocol, model: &str) -> Self {
        VirtualSpec {
            protocol,
            model: model.to_string(),
            api_key: None,
            embedding: protocol == Protocol::Tei,
            mode: Mode::Ok,
        }
    }
}

struct Virtual {
    spec: RwLock<VirtualSpec>,
    /// When the spec's mode was set: the clock of a latency model.
    spec_since: RwLock<Instant>,
    /// Set through the control API, with when; wins over the spec's
    /// (timeline's) mode.
    override_mode: RwLock<Option<(Mode, Instant)>>,
    /// Every request that reached this endpoint.
    requests: AtomicU64,
    /// Requests that would wake a scaled-to-zero replica (anything but the management API).
    inference_requests: AtomicU64,
}

impl Virtual {
    fn new(spec: VirtualSpec) -> Self {
        Virtual {
            spec: RwLock::new(spec),
            spec_since: RwLock::new(Instant::now()),
            override_mode: RwLock::new(None),
            requests: AtomicU64::new(0),
            inference_requests: AtomicU64::new(0),
        }
    }

    /// Set the spec's (timeline's) mode; a latency model's clock restarts.
    fn set_mode(&self, mode: Mode) {
        self.spec.write().unwrap_or_else(|p| p.into_inner()).mode = mode;
        *self.spec_since.write().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Override the timeline's mode (None: back to it).
    fn set_override(&self, mode: Option<Mode>) {
        *self
            .override_mode
            .write()
            .unwrap_or_else(|p| p.into_inner()) = mode.map(|m| (m, Instant::now()));
    }

    /// The spec with the mode in force, and since when that mode is set.
    fn current(&self) -> (VirtualSpec, Instant) {
        let mut spec = self.spec.read().unwrap_or_else(|p| p.into_inner()).clone();
        let over = self
            .override_mode
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match over {
            Some((m, since)) => {
                spec.mode = m;
                (spec, since)
            }
            None => (
                spec,
                *self.spec_since.read().unwrap_or_else(|p| p.into_inner()),
            ),
        }
    }
}

struct SimState {
    endpoints: RwLock<HashMap<String, Arc<Virtual>>>,
    started: std::time::Instant,
}

/// Per-connection handle a handler uses to abort its connection.
#[derive(Clone)]
struct ConnKill(Arc<Notify>);

/// A running simulator.
pub struct Sim {
    addr: SocketAddr,
    state: Arc<SimState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    timelines: Vec<JoinHandle<()>>,
}

impl Sim {
    /// Bind `addr` (port 0 for an ephemeral one) and serve the given endpoints.
    pub async fn start(
        addr: SocketAddr,
        endpoints: Vec<(String, VirtualSpec)>,
    ) -> std::io::Result<Sim> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState {
            endpoints: RwLock::new(HashMap::new()),
            started: std::time::Instant::now(),
        });
        for (name, spec) in endpoints {
            add(&state, name, spec);
        }
        let (stop, stop_rx) = watch::channel(false);
        let router = control::routes()
            .route("/{ep}", any(handle_root))
            .route("/{ep}/", any(handle_root))
            .route("/{ep}/{*rest}", any(handle))
            .with_state(state.clone());
        let task = tokio::spawn(accept_loop(listener, router, stop_rx));
        Ok(Sim {
            addr,
            state,
            stop,
            task,
            timelines: Vec::new(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of a virtual endpoint.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{}", self.addr, name)
    }

    pub fn add(&self, name: &str, spec: VirtualSpec) {
        add(&self.state, name.to_string(), spec);
    }

    /// Switch a virtual endpoint's mode; false if there is no such endpoint.
    pub fn set_mode(&self, name: &str, mode: Mode) -> bool {
        match self.virt(name) {
            Some(v) => {
                v.set_mode(mode);
                true
            }
            None => false,
        }
    }

    pub fn mode(&self, name: &str) -> Option<Mode> {
        self.virt(name).map(|v| {
            v.spec
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .mode
                .clone()
        })
    }

    /// Requests that reached the endpoint.
    pub fn requests(&self, name: &str) -> u64 {
        self.virt(name)
            .map_or(0, |v| v.requests.load(Ordering::Relaxed))
    }

    /// Requests that would have woken a scaled-to-zero endpoint.
    pub fn inference_requests(&self, name: &str) -> u64 {
        self.virt(name)
            .map_or(0, |v| v.inference_requests.load(Ordering::Relaxed))
    }

    fn virt(&self, name: &str) -> Option<Arc<Virtual>> {
        self.state
            .endpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Stop accepting and abort every open connection.
    pub async fn shutdown(self) {
        for t in &self.timelines {
            t.abort();
        }
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn add(state: &SimState, name: String, spec: VirtualSpec) {
    state
        .endpoints
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name, Arc::new(Virtual::new(spec)));
}

async fn accept_loop(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                conns.spawn(serve_conn(stream, router.clone(), stop.clone()));
            }
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

async fn serve_conn(
    mut stream: tokio::net::TcpStream,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let kill = Arc::new(Notify::new());
    let svc = TowerToHyperService::new(router.layer(Extension(ConnKill(kill.clone()))));
    {
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(&mut stream), svc);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = kill.notified() => {}
            _ = stop.changed() => {}
        }
    }
    // Linger 0 makes close() send RST: the peer sees "connection reset".
    // (Deprecated because a non-zero linger blocks on drop; zero does not.)
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

async fn handle_root(
    State(st): State<Arc<SimState>>,
    Path(ep): Path<String>,
    Extension(kill): Extension<ConnKill>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dispatch(st, ep, String::new(), kill, method, headers, body).await
}

async fn handle(
    State(st): State<Arc<SimState>>,
    Path((ep, rest)): Path<(String, String)>,
    Extension(kill): Extension<ConnKill>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dispatch(st, ep, rest, kill, method, headers, body).await
}

/// A request as protocol modules see it.
pub(crate) struct Req<'a> {
    pub method: &'a Method,
    /// Path below the endpoint prefix, without a leading slash.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub spec: &'a VirtualSpec,
}

impl Req<'_> {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(self.body).ok()
    }

    pub fn authorized(&self) -> bool {
        match &self.spec.api_key {
            None => true,
            Some(key) => self
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|v| v == key),
        }
    }
}

async fn dispatch(
    st: Arc<SimState>,
    ep: String,
    rest: String,
    kill: ConnKill,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(v) = st
        .endpoints
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&ep)
        .cloned()
    else {
        return (StatusCode::NOT_FOUND, "no such simulated endpoint\n").into_response();
    };
    v.requests.fetch_add(1, Ordering::Relaxed);
    let (mut spec, since) = v.current();
    spec.mode = spec.mode.at(st.started.elapsed()).clone();
    if spec.protocol != Protocol::EndpointsApi {
        v.inference_requests.fetch_add(1, Ordering::Relaxed);
    }
    match &spec.mode {
        Mode::Reset | Mode::Down => {
            kill.0.notify_one();
            return std::future::pending().await;
        }
        Mode::Hang => return std::future::pending().await,
        Mode::Slow(d) => tokio::time::sleep(d.0).await,
        Mode::Latency(m) => {
            let delay = m.sample(since.elapsed(), &mut fastrand::Rng::new());
            tokio::time::sleep(delay).await
        }
        _ => {}
    }
    let req = Req {
        method: &method,
        path: rest.trim_start_matches('/'),
        headers: &headers,
        body: &body,
        spec: &spec,
    };
    match spec.protocol {
        Protocol::Tgi => tgi::handle(&req),
        Protocol::Tei => tei::handle(&req),
        Protocol::Router => router::handle(&req),
        Protocol::HfInference => hf_inference::handle(&req),
        Protocol::EndpointsApi => endpoints_api::handle(&req),
    }
}

// ------------------------------------------------------------ shared pieces

pub(crate) fn json_response(status: StatusCode, v: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// The modes every inference protocol answers the same way, or `None` for
/// `Ok`/`Slow`/`Latency`.
/// `error` builds the protocol's own error body for a status.
pub(crate) fn common_fault(
    req: &Req,
    error: impl Fn(StatusCode, &str) -> Response,
) -> Option<Response> {
    let s = |c: u16| StatusCode::from_u16(c).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(match &req.spec.mode {
        Mode::Ok
        | Mode::Slow(_)
        | Mode::Latency(_)
        | Mode::Hang
        | Mode::Reset
        | Mode::Down
        | Mode::StreamError
        | Mode::Flapping { .. } => {
            return None;
        }
        Mode::Status(code) => error(s(*code), "simulated failure"),
        Mode::Garbage => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "<html><body>502 Bad Gateway</body></html>\u{0}\u{1}{{{",
        )
            .into_response(),
        Mode::HugeBody => huge_body(),
        Mode::Loading { estimated_time } => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": format!("Model {} is currently loading", req.spec.model), "estimated_time": estimated_time}),
        ),
        Mode::RateLimited { retry_after } => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Model is overloaded");
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Mode::AuthFailure => StatusCode::UNAUTHORIZED.into_response(),
        Mode::ScaledToZero => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "Service Unavailable: the endpoint is scaled to zero and a replica is starting"}),
        ),
        Mode::Paused => json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "Invalid state"}),
        ),
        Mode::Failed => error(StatusCode::INTERNAL_SERVER_ERROR, "endpoint failed"),
    })
}

fn huge_body() -> Response {
    let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
    let stream =
        futures_util::stream::iter((0..128).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// An SSE response; each event is written as `data: {payload}\n\n`.
pub(crate) fn sse(events: Vec<String>) -> Response {
    let mut body = String::new();
    for e in events {
        body.push_str("data: ");
        body.push_str(&e);
        body.push_str("\n\n");
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Deterministic text for `n` new tokens.
pub(crate) fn tokens(n: u64) -> Vec<&'static str> {
    const WORDS: [&str; 4] = [" pong", " and", " more", " words"];
    (0..n.clamp(1, 64) as usize)
        .map(|i| WORDS[i % WORDS.len()])
        .collect()
}

/// Deterministic unit vector for an input.
pub(crate) fn embedding(input: &str, dim: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            ((h >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "").into_response()
}

#[cfg(test)]
mod tests {
    use super::latency::{Brownout, Latency};
    use super::*;

    async fn timed_get(client: &reqwest::Client, url: &str) -> (u16, Duration) {
        let t = std::time::Instant::now();
        let r = client.get(url).send().await.unwrap();
        let code = r.status().as_u16();
        let _ = r.bytes().await;
        (code, t.elapsed())
    }

    /// A latency mode delays answers as its model says, from a timeline or
    /// the control API (whose model's clock starts when it is set), and the
    /// control API refuses bad values.
    #[tokio::test]
    async fn latency_mode_delays_answers_as_configured() {
        let mut spec = VirtualSpec::new(Protocol::Tgi, "m");
        spec.mode = Mode::Latency(Latency::constant(Duration::from_millis(300)));
        let sim = Sim::start(
            "127.0.0.1:0".parse().unwrap(),
            vec![("a".to_string(), spec)],
        )
        .await
        .unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let info = format!("{}/info", sim.url("a"));
        let (code, took) = timed_get(&client, &info).await;
        assert_eq!(code, 200);
        assert!(
            (Duration::from_millis(300)..Duration::from_millis(900)).contains(&took),
            "{took:?}"
        );
        // a brownout at 4x from the moment it is set: 100 ms -> 400 ms
        let mut m = Latency::constant(Duration::from_millis(100));
        m.brownout = Some(Brownout {
            start: HumanDuration(Duration::ZERO),
            ramp: HumanDuration(Duration::ZERO),
            peak: 4.0,
            hold: None,
        });
        let control = format!("http://{}/_sim/endpoints/a/mode", sim.addr());
        let body = serde_json::to_string(&Mode::Latency(m)).unwrap();
        let r = client.put(&control).body(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let (code, took) = timed_get(&client, &info).await;
        assert_eq!(code, 200);
        assert!(
            (Duration::from_millis(400)..Duration::from_millis(1000)).contains(&took),
            "{took:?}"
        );
        let r = client
            .put(&control)
            .body(r#"{"latency": {"median": "100ms", "jitter": 9}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let text = r.text().await.unwrap();
        assert!(
            text.contains("latency.jitter: 9 is out of range 0 - 3"),
            "{text}"
        );
        // back to the 300 ms constant
        client.delete(&control).send().await.unwrap();
        let (_, took) = timed_get(&client, &info).await;
        assert!(took >= Duration::from_millis(300), "{took:?}");
        sim.shutdown().await;
    }
}
