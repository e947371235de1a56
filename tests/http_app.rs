//! The whole HTTP surface in process: `hfbreaker::http::app(..)` driven with
//! `tower::ServiceExt::oneshot`, no sockets for the daemon's own API. Probes
//! (where a test starts the scheduler) go to a closed loopback port or to the
//! in-process simulator, never anywhere else.
//!
//! The end-to-end behaviour over real sockets lives in `reload_admin.rs` and
//! friends; this file pins status codes, headers, JSON shapes and the state an
//! admin action leaves behind in the API and in `/metrics`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use hfbreaker::daemon::Daemon;
use hfbreaker::secret::Secret;
use hfbreaker::sim::{Protocol, Sim, VirtualSpec};
use serde_json::Value;
use tower::ServiceExt;

const TOKEN: &str = "adm-7f3c9e1b-s3cret";
const PROM_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";
const STATES: [&str; 5] = [
    "closed",
    "open",
    "half_open",
    "forced_open",
    "forced_closed",
];

// ------------------------------------------------------------------ harness

/// A loopback port with nothing listening on it (bound, then released).
fn closed_port() -> u16 {
    testkit::free_port()
}

/// Two endpoints on a closed loopback port and one route over them. The
/// interval is long: where the scheduler runs, nothing is probed for minutes.
fn config_yaml(port: u16, extra_endpoint: Option<&str>) -> String {
    let mut y = format!(
        "global:
  interval: 1h
endpoints:
  - {{name: a, kind: tgi, url: http://127.0.0.1:{port}, probe: health}}
  - {{name: b, kind: openai, url: http://127.0.0.1:{port}/v1, model: org/model-b}}
"
    );
    if let Some(name) = extra_endpoint {
        y.push_str(&format!(
            "  - {{name: {name}, kind: http, url: http://127.0.0.1:{port}/ping}}\n"
        ));
    }
    y.push_str("routes:\n  - name: r\n    endpoints: [a, b]\n");
    y
}

fn parse(yaml: &str) -> hfbreaker::config::Config {
    hfbreaker::config::parse(yaml, "http_app.yml", &HashMap::<String, String>::new())
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
}

/// A daemon that is built but not started: no scheduler, no probes.
fn daemon(token: Option<&str>) -> Arc<Daemon> {
    Daemon::new(
        parse(&config_yaml(closed_port(), None)),
        None,
        token.map(Secret::new),
    )
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        assert_eq!(self.content_type(), JSON, "{}", self.body);
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn call(app: &Router, method: Method, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, HeaderValue::from_bytes(v.as_bytes()).unwrap());
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    Resp {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).expect("utf-8 body"),
    }
}

async fn get(app: &Router, path: &str) -> Resp {
    call(app, Method::GET, path, &[]).await
}

async fn post(app: &Router, path: &str) -> Resp {
    call(app, Method::POST, path, &[]).await
}

async fn admin(app: &Router, endpoint: &str, action: &str, token: Option<&str>) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    call(
        app,
        Method::POST,
        &format!("/api/v1/breakers/{endpoint}/{action}"),
        &headers,
    )
    .await
}

/// One sample of the exposition text.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("line {l:?}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{l:?}"));
                    let mut labels = BTreeMap::new();
                    // Label values here never hold `",` (names are [a-z0-9_-]).
                    for pair in body.split("\",").filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{l:?}"));
                        labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                    }
                    (name.to_string(), labels)
                }
            };
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value in {l:?}")),
            };
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// The value of the one sample named `name` whose labels are exactly `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let found: Vec<f64> = samples(text)
        .into_iter()
        .filter(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{name}{labels:?} appears {found:?}");
    found.first().copied()
}

/// The one-hot `hfbreaker_circuit_state` of `endpoint`, checked to be one-hot.
fn metric_state(text: &str, endpoint: &str) -> &'static str {
    let mut hot = Vec::new();
    for s in STATES {
        let v = value(
            text,
            "hfbreaker_circuit_state",
            &[("endpoint", endpoint), ("state", s)],
        )
        .unwrap_or_else(|| panic!("no circuit_state {endpoint}/{s}"));
        assert!(v == 0.0 || v == 1.0, "{endpoint}/{s} = {v}");
        if v == 1.0 {
            hot.push(s);
        }
    }
    assert_eq!(hot.len(), 1, "{endpoint}: {hot:?}");
    hot[0]
}

async fn metrics_text(app: &Router) -> String {
    let r = get(app, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), PROM_TEXT);
    r.body
}

async fn breakers(app: &Router) -> Vec<Value> {
    let r = get(app, "/api/v1/breakers").await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()["breakers"]
        .as_array()
        .expect("breakers array")
        .clone()
}

async fn api_state(app: &Router, endpoint: &str) -> String {
    breakers(app)
        .await
        .into_iter()
        .find(|b| b["name"] == endpoint)
        .unwrap_or_else(|| panic!("{endpoint} not in /api/v1/breakers"))["state"]
        .as_str()
        .expect("state string")
        .to_string()
}

async fn route(app: &Router, name: &str) -> Value {
    let r = get(app, "/api/v1/routes").await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()["routes"]
        .as_array()
        .expect("routes array")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("route {name} missing"))
        .clone()
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| humantime::parse_rfc3339(s).is_ok())
}

fn is_nonneg_f64(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| x >= 0.0 && x.is_finite())
}

async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- the pages

/// The status page's no-JS fallback: plain tables, filled in by the server
/// (the live board itself is in `status_api.rs` and `status_page.rs`).
#[tokio::test]
async fn landing_page_lists_routes_endpoints_and_states() {
    let d = daemon(Some(TOKEN));
    let app = hfbreaker::http::app(d.clone());
    let r = get(&app, "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), HTML);
    let h = &r.body;
    assert!(h.starts_with("<!doctype html>"), "{h}");
    assert!(h.ends_with("</html>"));
    for link in ["/metrics", "/api/v1/breakers", "/api/v1/routes", "/-/ready"] {
        assert!(h.contains(&format!("href=\"{link}\"")), "link {link}");
    }
    // The route row: name, chain, serving endpoint, tier, switches.
    assert!(
        h.contains("<tr><td>r</td><td>a → b</td><td>a</td><td>primary</td><td>0</td></tr>"),
        "{h}"
    );
    // One row per endpoint with kind / probe, host and state; nothing probed yet.
    assert!(h.contains("<tr><td>a</td><td>tgi / health</td>"), "{h}");
    assert!(h.contains("<tr><td>b</td><td>openai / chat</td>"), "{h}");
    assert_eq!(h.matches("<td class=\"closed\">closed</td>").count(), 2);

    assert_eq!(
        admin(&app, "a", "force-open", Some(TOKEN)).await.status,
        200
    );
    let h = get(&app, "/").await.body;
    assert!(
        h.contains("<td class=\"forced_open\">forced_open</td>"),
        "{h}"
    );
    assert_eq!(h.matches("<td class=\"closed\">closed</td>").count(), 1);
    assert!(
        h.contains("<tr><td>r</td><td>a → b</td><td>b</td><td>fallback</td><td>1</td></tr>"),
        "{h}"
    );
}

#[tokio::test]
async fn metrics_is_prometheus_text_with_every_endpoint_and_route() {
    let port = closed_port();
    let d = Daemon::new(parse(&config_yaml(port, None)), None, None);
    let app = hfbreaker::http::app(d);
    let m = metrics_text(&app).await;
    for e in ["a", "b"] {
        assert_eq!(metric_state(&m, e), "closed");
        assert_eq!(
            value(&m, "hfbreaker_circuit_enforced", &[("endpoint", e)]),
            Some(1.0)
        );
    }
    assert!(m.contains("# TYPE hfbreaker_circuit_state gauge\n"));
    assert!(m.contains("# TYPE hfbreaker_probes_total counter\n"));
    assert!(m.contains("hfbreaker_circuit_state{endpoint=\"a\",state=\"closed\"} 1\n"));
    // The info series: kind, probe, host (with the port), model; no path.
    let host = format!("127.0.0.1:{port}");
    assert_eq!(
        value(
            &m,
            "hfbreaker_endpoint_info",
            &[
                ("endpoint", "b"),
                ("kind", "openai"),
                ("probe", "chat"),
                ("host", &host),
                ("model", "org/model-b"),
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "hfbreaker_route_level", &[("route", "r")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "hfbreaker_route_serving",
            &[("route", "r"), ("endpoint", "a")]
        ),
        Some(1.0)
    );
    for (pos, e) in [("0", "a"), ("1", "b")] {
        assert_eq!(
            value(
                &m,
                "hfbreaker_route_endpoint_info",
                &[("route", "r"), ("endpoint", e), ("position", pos)]
            ),
            Some(1.0)
        );
    }
    // Counters exist from the start at 0.
    for result in hfbreaker::metrics::ProbeResult::ALL {
        assert_eq!(
            value(
                &m,
                "hfbreaker_probes_total",
                &[("endpoint", "a"), ("result", result.as_str())]
            ),
            Some(0.0),
            "{result}"
        );
    }
    assert_eq!(
        value(&m, "hfbreaker_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(
        value(
            &m,
            "hfbreaker_config_last_reload_success_timestamp_seconds",
            &[]
        )
        .is_some_and(|t| t > 1.7e9)
    );
    assert!(
        samples(&m)
            .iter()
            .any(|s| s.name == "hfbreaker_build_info" && s.value == 1.0)
    );
}

#[tokio::test]
async fn healthy_answers_200_in_plain_text() {
    let app = hfbreaker::http::app(daemon(None));
    let r = get(&app, "/-/healthy").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), PLAIN_TEXT);
    assert_eq!(r.body, "Healthy.\n");
}

#[tokio::test]
async fn ready_is_503_until_the_scheduler_starts_then_200() {
    let d = daemon(None);
    let app = hfbreaker::http::app(d.clone());
    let r = get(&app, "/-/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.content_type(), PLAIN_TEXT);
    assert_eq!(r.body, "Not ready.\n");
    // Healthy does not wait for readiness.
    assert_eq!(get(&app, "/-/healthy").await.status, StatusCode::OK);

    d.start(); // probes a closed loopback port, at most once an hour
    let r = get(&app, "/-/ready").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), PLAIN_TEXT);
    assert_eq!(r.body, "Ready.\n");
    d.stop();
}

// ------------------------------------------------------------------ reloads

struct FileDaemon {
    _dir: tempfile::TempDir,
    path: PathBuf,
    port: u16,
    daemon: Arc<Daemon>,
    app: Router,
}

fn file_daemon() -> FileDaemon {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hfbreaker.yml");
    let port = closed_port();
    std::fs::write(&path, config_yaml(port, None)).unwrap();
    let cfg = hfbreaker::config::load(&path).unwrap();
    let daemon = Daemon::new(cfg, Some(path.clone()), Some(Secret::new(TOKEN)));
    let app = lifecycle_app(daemon.clone());
    FileDaemon {
        _dir: dir,
        path,
        port,
        daemon,
        app,
    }
}

/// The routes with `--web.enable-lifecycle`, for the tests that reload.
fn lifecycle_app(d: Arc<Daemon>) -> Router {
    hfbreaker::http::app_with(
        d,
        hfbreaker::http::AppOptions {
            enable_lifecycle: true,
        },
    )
}

fn names(bs: &[Value]) -> Vec<&str> {
    bs.iter().map(|b| b["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn reload_with_a_good_file_applies_it_and_keeps_unchanged_breakers() {
    let f = file_daemon();
    let app = &f.app;
    assert_eq!(admin(app, "a", "force-open", Some(TOKEN)).await.status, 200);
    std::fs::write(&f.path, config_yaml(f.port, Some("c"))).unwrap();

    let r = post(app, "/-/reload").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.content_type(), PLAIN_TEXT);
    assert_eq!(r.body, "Config reloaded.\n");

    let bs = breakers(app).await;
    assert_eq!(names(&bs), ["a", "b", "c"]);
    assert_eq!(
        bs[0]["state"], "forced_open",
        "unchanged endpoint keeps its breaker"
    );
    assert_eq!(bs[2]["kind"], "http");
    assert_eq!(bs[2]["probe"], "get");
    let m = metrics_text(app).await;
    assert_eq!(metric_state(&m, "a"), "forced_open");
    assert_eq!(metric_state(&m, "c"), "closed");
    assert_eq!(
        value(&m, "hfbreaker_config_last_reload_successful", &[]),
        Some(1.0)
    );
    // A reload starts the scheduler (on closed loopback ports, hourly).
    assert_eq!(get(app, "/-/ready").await.status, StatusCode::OK);
    f.daemon.stop();
}

#[tokio::test]
async fn reload_with_a_bad_file_is_500_with_the_error_and_keeps_the_config() {
    let f = file_daemon();
    let app = &f.app;
    let m = metrics_text(app).await;
    let ts = value(
        &m,
        "hfbreaker_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();
    std::fs::write(&f.path, "global:\n  interval: 1s\n  bogus: 1\n").unwrap();

    let r = post(app, "/-/reload").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.content_type(), PLAIN_TEXT);
    assert!(
        r.body
            .starts_with("Config reload failed; the running config is kept.\n"),
        "{}",
        r.body
    );
    let at = format!("{}:3:", f.path.display());
    assert!(
        r.body.contains(&at) && r.body.contains("bogus"),
        "{}",
        r.body
    );

    assert_eq!(names(&breakers(app).await), ["a", "b"]);
    assert_eq!(
        route(app, "r").await["endpoints"],
        serde_json::json!(["a", "b"])
    );
    let m = metrics_text(app).await;
    assert_eq!(
        value(&m, "hfbreaker_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "hfbreaker_config_last_reload_success_timestamp_seconds",
            &[]
        ),
        Some(ts)
    );
    assert_eq!(metric_state(&m, "a"), "closed");
    // A failed reload does not start probing.
    assert_eq!(
        get(app, "/-/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // A file that is gone is a failed reload too, naming the path.
    std::fs::remove_file(&f.path).unwrap();
    let r = post(app, "/-/reload").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.body.contains(&f.path.display().to_string()), "{}", r.body);
    assert_eq!(names(&breakers(app).await), ["a", "b"]);
}

#[tokio::test]
async fn reload_without_a_config_file_is_a_200_no_op() {
    // `hfbreaker demo` runs without a file: there is nothing to re-read.
    let d = daemon(Some(TOKEN));
    let app = lifecycle_app(d.clone());
    let before = metrics_text(&app).await;
    let r = post(&app, "/-/reload").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), PLAIN_TEXT);
    assert_eq!(r.body, "Config reloaded.\n");
    assert_eq!(names(&breakers(&app).await), ["a", "b"]);
    let after = metrics_text(&app).await;
    let ts = |m: &str| {
        value(
            m,
            "hfbreaker_config_last_reload_success_timestamp_seconds",
            &[],
        )
    };
    assert_eq!(ts(&after), ts(&before), "nothing was loaded");
    assert_eq!(
        get(&app, "/-/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "nothing was started"
    );
}

// --------------------------------------------------------------- JSON shapes

const BREAKER_FIELDS: [&str; 18] = [
    "name",
    "kind",
    "probe",
    "host",
    "model",
    "state",
    "since",
    "enforced",
    "consecutive_failures",
    "failure_ratio",
    "open_until",
    "open_duration_seconds",
    "slow_call_duration_seconds",
    "slow_call_duration_auto",
    "latency_baseline_seconds",
    "counts",
    "last_probe",
    "next_probe_at",
];

/// Field names and types every breaker object has, whatever its state.
fn check_breaker_shape(b: &Value) {
    assert_eq!(keys(b), set(&BREAKER_FIELDS), "{b}");
    for f in ["name", "kind", "probe", "host"] {
        assert!(b[f].is_string(), "{f}: {b}");
    }
    assert!(b["model"].is_string() || b["model"].is_null(), "{b}");
    assert!(STATES.contains(&b["state"].as_str().unwrap()), "{b}");
    assert!(is_rfc3339(&b["since"]), "{b}");
    assert!(b["enforced"].is_boolean(), "{b}");
    assert!(b["consecutive_failures"].is_u64(), "{b}");
    assert!(
        b["failure_ratio"]
            .as_f64()
            .is_some_and(|r| (0.0..=1.0).contains(&r)),
        "{b}"
    );
    assert!(
        b["open_until"].is_null() || is_rfc3339(&b["open_until"]),
        "{b}"
    );
    assert!(is_nonneg_f64(&b["open_duration_seconds"]), "{b}");
    assert!(is_nonneg_f64(&b["slow_call_duration_seconds"]), "{b}");
    assert!(b["slow_call_duration_auto"].is_boolean(), "{b}");
    assert!(
        b["latency_baseline_seconds"].is_null() || is_nonneg_f64(&b["latency_baseline_seconds"]),
        "{b}"
    );
    let c = &b["counts"];
    assert_eq!(
        keys(c),
        set(&["success", "failure", "ignored", "rejected", "trips"]),
        "{b}"
    );
    for (k, v) in c.as_object().unwrap() {
        assert!(v.is_u64(), "counts.{k}: {b}");
    }
    let l = &b["last_probe"];
    if !l.is_null() {
        assert_eq!(
            keys(l),
            set(&[
                "at",
                "result",
                "reason",
                "status_code",
                "duration_seconds",
                "detail"
            ]),
            "{b}"
        );
        assert!(is_rfc3339(&l["at"]), "{b}");
        assert!(
            ["success", "failure", "ignored"].contains(&l["result"].as_str().unwrap()),
            "{b}"
        );
        assert!(l["reason"].is_null() || l["reason"].is_string(), "{b}");
        assert!(
            l["status_code"].is_null()
                || l["status_code"]
                    .as_u64()
                    .is_some_and(|c| (100..600).contains(&c)),
            "{b}"
        );
        assert!(is_nonneg_f64(&l["duration_seconds"]), "{b}");
        assert!(l["detail"].is_string(), "{b}");
    }
    assert!(
        b["next_probe_at"].is_null() || is_rfc3339(&b["next_probe_at"]),
        "{b}"
    );
}

const ROUTE_FIELDS: [&str; 7] = [
    "name",
    "endpoints",
    "level",
    "tier",
    "serving",
    "since",
    "switches",
];

fn check_route_shape(r: &Value) {
    assert_eq!(keys(r), set(&ROUTE_FIELDS), "{r}");
    assert!(r["name"].is_string(), "{r}");
    let chain = r["endpoints"].as_array().expect("endpoints array");
    assert!(
        !chain.is_empty() && chain.iter().all(Value::is_string),
        "{r}"
    );
    let level = r["level"].as_i64().expect("level integer");
    assert!((-1..chain.len() as i64).contains(&level), "{r}");
    let tier = r["tier"].as_str().expect("tier string");
    let expected_tier = match level {
        -1 => "exhausted",
        0 => "primary",
        _ => "fallback",
    };
    assert_eq!(tier, expected_tier, "{r}");
    if level < 0 {
        assert!(r["serving"].is_null(), "{r}");
    } else {
        assert_eq!(r["serving"], chain[level as usize], "{r}");
    }
    assert!(is_rfc3339(&r["since"]), "{r}");
    assert!(r["switches"].is_u64(), "{r}");
}

#[tokio::test]
async fn breakers_json_before_any_probe() {
    let app = hfbreaker::http::app(daemon(None));
    let r = get(&app, "/api/v1/breakers").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(keys(&v), set(&["breakers"]));
    let bs = v["breakers"].as_array().unwrap();
    assert_eq!(names(bs), ["a", "b"]);
    for b in bs {
        check_breaker_shape(b);
        assert_eq!(b["state"], "closed");
        assert_eq!(b["enforced"], true);
        assert_eq!(b["consecutive_failures"], 0);
        assert_eq!(b["failure_ratio"], 0.0);
        assert_eq!(b["open_until"], Value::Null);
        assert_eq!(b["last_probe"], Value::Null);
        assert_eq!(
            b["next_probe_at"],
            Value::Null,
            "no scheduler, no next probe"
        );
        assert_eq!(
            b["counts"],
            serde_json::json!({"success": 0, "failure": 0, "ignored": 0, "rejected": 0, "trips": 0})
        );
        assert!(b["host"].as_str().unwrap().starts_with("127.0.0.1:"), "{b}");
    }
    assert_eq!(bs[0]["kind"], "tgi");
    assert_eq!(bs[0]["probe"], "health");
    assert_eq!(bs[0]["model"], Value::Null);
    assert_eq!(bs[1]["kind"], "openai");
    assert_eq!(bs[1]["probe"], "chat");
    assert_eq!(bs[1]["model"], "org/model-b");
}

/// Probed for real: `ok` against the in-process simulator, `down` against a
/// closed loopback port with a breaker that trips on the first failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakers_and_routes_json_after_probes() {
    let sim = Sim::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![("tgi".to_string(), VirtualSpec::new(Protocol::Tgi, "m"))],
    )
    .await
    .unwrap();
    let port = closed_port();
    let yaml = format!(
        "global:
  interval: 100ms
  timeout: 2s
  breaker:
    failure_threshold: 1
    open_duration: 1h
    max_open_duration: 1h
endpoints:
  - {{name: ok, kind: tgi, url: {}, probe: health}}
  - {{name: down, kind: tgi, url: http://127.0.0.1:{port}, probe: health}}
routes:
  - name: main
    endpoints: [down, ok]
  - name: solo
    endpoints: [down]
",
        sim.url("tgi")
    );
    let d = Daemon::new(parse(&yaml), None, None);
    d.start();
    let app = hfbreaker::http::app(d.clone());

    let bs = until("both endpoints probed and `down` open", async || {
        let bs = breakers(&app).await;
        let probed = bs.iter().all(|b| !b["last_probe"].is_null());
        (probed && bs[1]["state"] == "open").then_some(bs)
    })
    .await;
    assert_eq!(names(&bs), ["ok", "down"]);
    for b in &bs {
        check_breaker_shape(b);
        assert!(is_rfc3339(&b["next_probe_at"]), "scheduled: {b}");
    }
    let ok = &bs[0];
    assert_eq!(ok["state"], "closed");
    assert_eq!(ok["open_until"], Value::Null);
    assert!(ok["counts"]["success"].as_u64().unwrap() >= 1, "{ok}");
    assert_eq!(ok["counts"]["failure"], 0);
    assert_eq!(ok["last_probe"]["result"], "success");
    assert_eq!(ok["last_probe"]["reason"], Value::Null);
    assert_eq!(ok["last_probe"]["status_code"], 200);

    let down = &bs[1];
    // 1h open period with its ±10% jitter (capped at 1h), ending at open_until.
    let open_s = down["open_duration_seconds"].as_f64().unwrap();
    assert!((3240.0..=3600.0).contains(&open_s), "{down}");
    let until = humantime::parse_rfc3339(down["open_until"].as_str().unwrap()).unwrap();
    let since = humantime::parse_rfc3339(down["since"].as_str().unwrap()).unwrap();
    let period = until.duration_since(since).unwrap().as_secs_f64();
    assert!((period - open_s).abs() < 0.01, "{down}");
    assert_eq!(down["consecutive_failures"], 1);
    assert_eq!(down["counts"]["failure"], 1);
    assert_eq!(down["counts"]["trips"], 1);
    assert_eq!(down["last_probe"]["result"], "failure");
    assert!(down["last_probe"]["reason"].is_string(), "{down}");
    assert_eq!(down["last_probe"]["status_code"], Value::Null, "no answer");

    let r = get(&app, "/api/v1/routes").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(keys(&v), set(&["routes"]));
    let routes = v["routes"].as_array().unwrap();
    for r in routes {
        check_route_shape(r);
    }
    let main = routes.iter().find(|r| r["name"] == "main").unwrap();
    assert_eq!(main["endpoints"], serde_json::json!(["down", "ok"]));
    assert_eq!(main["level"], 1);
    assert_eq!(main["tier"], "fallback");
    assert_eq!(main["serving"], "ok");
    assert_eq!(main["switches"], 1);
    let solo = routes.iter().find(|r| r["name"] == "solo").unwrap();
    assert_eq!(solo["level"], -1);
    assert_eq!(solo["tier"], "exhausted");
    assert_eq!(solo["serving"], Value::Null);

    let m = metrics_text(&app).await;
    assert_eq!(metric_state(&m, "down"), "open");
    assert_eq!(
        value(&m, "hfbreaker_route_level", &[("route", "solo")]),
        Some(-1.0)
    );
    assert_eq!(
        value(
            &m,
            "hfbreaker_route_serving",
            &[("route", "solo"), ("endpoint", "none")]
        ),
        Some(1.0)
    );
    d.stop();
    sim.shutdown().await;
}

#[tokio::test]
async fn routes_json_follows_admin_actions() {
    let d = daemon(Some(TOKEN));
    let app = hfbreaker::http::app(d);
    let r = route(&app, "r").await;
    check_route_shape(&r);
    assert_eq!(r["endpoints"], serde_json::json!(["a", "b"]));
    assert_eq!(
        (&r["level"], &r["tier"], &r["serving"], &r["switches"]),
        (&0.into(), &"primary".into(), &"a".into(), &0.into())
    );

    admin(&app, "a", "force-open", Some(TOKEN)).await;
    let r = route(&app, "r").await;
    check_route_shape(&r);
    assert_eq!(
        (&r["level"], &r["tier"], &r["serving"], &r["switches"]),
        (&1.into(), &"fallback".into(), &"b".into(), &1.into())
    );

    admin(&app, "b", "force-open", Some(TOKEN)).await;
    let r = route(&app, "r").await;
    check_route_shape(&r);
    assert_eq!(
        (&r["level"], &r["tier"], &r["serving"], &r["switches"]),
        (&(-1).into(), &"exhausted".into(), &Value::Null, &2.into())
    );

    admin(&app, "a", "reset", Some(TOKEN)).await;
    let r = route(&app, "r").await;
    assert_eq!(
        (&r["level"], &r["tier"], &r["serving"], &r["switches"]),
        (&0.into(), &"primary".into(), &"a".into(), &3.into())
    );
}

// -------------------------------------------------------------------- admin

#[tokio::test]
async fn admin_actions_change_the_api_and_the_metrics() {
    let d = daemon(Some(TOKEN));
    let app = hfbreaker::http::app(d);
    let m = metrics_text(&app).await;
    assert_eq!(metric_state(&m, "a"), "closed");

    // (action, resulting state, trips{manual}, transition from)
    let steps = [
        ("force-open", "forced_open", 1.0, "closed"),
        ("force-closed", "forced_closed", 1.0, "forced_open"),
        ("reset", "closed", 1.0, "forced_closed"),
        ("force-open", "forced_open", 2.0, "closed"),
        ("reset", "closed", 2.0, "forced_open"),
    ];
    for (action, state, trips, from) in steps {
        let r = admin(&app, "a", action, Some(TOKEN)).await;
        assert_eq!(r.status, StatusCode::OK, "{action}: {}", r.body);
        assert_eq!(
            r.json(),
            serde_json::json!({"endpoint": "a", "state": state}),
            "{action}"
        );
        assert_eq!(api_state(&app, "a").await, state, "{action}");
        assert_eq!(api_state(&app, "b").await, "closed", "{action} leaves b");
        let m = metrics_text(&app).await;
        assert_eq!(metric_state(&m, "a"), state, "{action}");
        assert_eq!(metric_state(&m, "b"), "closed", "{action}");
        assert!(
            m.contains(&format!(
                "hfbreaker_circuit_state{{endpoint=\"a\",state=\"{state}\"}} 1\n"
            )),
            "{action}"
        );
        assert_eq!(
            value(
                &m,
                "hfbreaker_circuit_trips_total",
                &[("endpoint", "a"), ("reason", "manual")]
            ),
            Some(trips),
            "{action}"
        );
        assert!(
            value(
                &m,
                "hfbreaker_circuit_transitions_total",
                &[("endpoint", "a"), ("from", from), ("to", state)]
            )
            .is_some_and(|n| n >= 1.0),
            "{action}: transition {from} -> {state}"
        );
        let serving = if state == "forced_open" { "b" } else { "a" };
        assert_eq!(
            value(
                &m,
                "hfbreaker_route_serving",
                &[("route", "r"), ("endpoint", serving)]
            ),
            Some(1.0),
            "{action}"
        );
    }
    let m = metrics_text(&app).await;
    assert_eq!(
        value(
            &m,
            "hfbreaker_circuit_transitions_total",
            &[("endpoint", "a"), ("from", "closed"), ("to", "forced_open")]
        ),
        Some(2.0)
    );
    // The counts in the API agree with the metric.
    let a = breakers(&app).await.into_iter().next().unwrap();
    assert_eq!(a["counts"]["trips"], 2);
}

#[tokio::test]
async fn admin_is_403_for_everything_without_a_configured_token() {
    let d = daemon(None);
    let app = hfbreaker::http::app(d);
    for (endpoint, action) in [
        ("a", "force-open"),
        ("a", "force-closed"),
        ("a", "reset"),
        ("nope", "reset"),
        ("a", "explode"),
    ] {
        for token in [None, Some("anything"), Some("")] {
            let r = admin(&app, endpoint, action, token).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{endpoint}/{action}");
            assert_eq!(
                r.json(),
                serde_json::json!({"error": "admin API disabled: start hfbreaker with --web.admin-token-file"})
            );
        }
    }
    assert_eq!(api_state(&app, "a").await, "closed");
    let m = metrics_text(&app).await;
    assert_eq!(metric_state(&m, "a"), "closed");
    assert_eq!(
        value(
            &m,
            "hfbreaker_circuit_trips_total",
            &[("endpoint", "a"), ("reason", "manual")]
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn admin_refuses_missing_wrong_and_malformed_credentials_with_401() {
    let d = daemon(Some(TOKEN));
    let app = hfbreaker::http::app(d);
    let bearer_right = format!("Bearer {TOKEN}");
    let basic = format!("Basic {TOKEN}");
    let no_space = format!("Bearer{TOKEN}");
    let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let longer = format!("Bearer {TOKEN}x");
    let twice = format!("Bearer Bearer {TOKEN}");
    let non_ascii = format!("Bearer {TOKEN}\u{e9}");
    // Whitespace inside the credentials is part of them, not padding.
    let tab_separated = format!("Bearer\t{TOKEN}");
    let tab_inside = format!("Bearer \t{TOKEN}");
    let split_token = format!("Bearer {} {}", &TOKEN[..4], &TOKEN[4..]);
    let refused: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", "Bearer ")],
        vec![("authorization", "Bearer")],
        vec![("authorization", TOKEN)],
        vec![("authorization", &basic)],
        vec![("authorization", &no_space)],
        vec![("authorization", &prefix)],
        vec![("authorization", &longer)],
        vec![("authorization", &twice)],
        vec![("authorization", &non_ascii)],
        vec![("authorization", &tab_separated)],
        vec![("authorization", &tab_inside)],
        vec![("authorization", &split_token)],
        // The token in the wrong header.
        vec![("x-admin-token", TOKEN)],
        vec![("proxy-authorization", &bearer_right)],
    ];
    for headers in &refused {
        // Authentication comes first: an unknown endpoint or action is not
        // revealed to an unauthenticated caller.
        for (endpoint, action) in [("a", "force-open"), ("nope", "reset"), ("a", "explode")] {
            let r = call(
                &app,
                Method::POST,
                &format!("/api/v1/breakers/{endpoint}/{action}"),
                headers,
            )
            .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{headers:?}");
            assert_eq!(
                r.headers.get(header::WWW_AUTHENTICATE).unwrap(),
                "Bearer",
                "{headers:?}"
            );
            assert_eq!(
                r.json(),
                serde_json::json!({"error": "missing or wrong bearer token"})
            );
        }
    }
    assert_eq!(
        api_state(&app, "a").await,
        "closed",
        "refused calls change nothing"
    );
    let m = metrics_text(&app).await;
    assert_eq!(metric_state(&m, "a"), "closed");

    // The right token is accepted, also with stray whitespace after it.
    let padded = format!("Bearer {TOKEN}  ");
    let r = call(
        &app,
        Method::POST,
        "/api/v1/breakers/a/force-open",
        &[("authorization", &padded)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(api_state(&app, "a").await, "forced_open");
}

/// RFC 9110 §11.1: the authentication scheme is case-insensitive, so
/// `bearer <token>` is the same credential as `Bearer <token>`.
#[tokio::test]
async fn admin_accepts_the_bearer_scheme_in_any_case() {
    let app = hfbreaker::http::app(daemon(Some(TOKEN)));
    for scheme in ["bearer", "BEARER"] {
        let auth = format!("{scheme} {TOKEN}");
        let r = call(
            &app,
            Method::POST,
            "/api/v1/breakers/a/reset",
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{scheme}: {}", r.body);
    }
}

#[tokio::test]
async fn admin_unknown_endpoint_or_action_is_404_json_and_changes_nothing() {
    let d = daemon(Some(TOKEN));
    let app = hfbreaker::http::app(d);
    for action in ["force-open", "force-closed", "reset"] {
        let r = admin(&app, "nope", action, Some(TOKEN)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{action}");
        assert_eq!(
            r.json(),
            serde_json::json!({"error": "no endpoint named \"nope\""})
        );
    }
    for action in ["explode", "force_open", "Force-Open", "open", "close"] {
        for endpoint in ["a", "nope"] {
            let r = admin(&app, endpoint, action, Some(TOKEN)).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{endpoint}/{action}");
            assert_eq!(
                r.json(),
                serde_json::json!({"error": "unknown action; use force-open, force-closed or reset"})
            );
        }
    }
    assert_eq!(api_state(&app, "a").await, "closed");
    let m = metrics_text(&app).await;
    assert_eq!(metric_state(&m, "a"), "closed");
    assert_eq!(
        value(
            &m,
            "hfbreaker_circuit_trips_total",
            &[("endpoint", "a"), ("reason", "manual")]
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn the_admin_token_never_appears_in_any_response() {
    let f = file_daemon();
    let app = &f.app;
    let mut seen = Vec::new();
    let auth = format!("Bearer {TOKEN}");
    let good = [("authorization", auth.as_str())];
    let wrong = format!("Bearer {TOKEN}-not");
    let bad = [("authorization", wrong.as_str())];
    let paths = [
        (Method::POST, "/api/v1/breakers/a/force-open"),
        (Method::POST, "/api/v1/breakers/a/force-closed"),
        (Method::POST, "/api/v1/breakers/nope/reset"),
        (Method::POST, "/api/v1/breakers/a/explode"),
        (Method::POST, "/api/v1/breakers/a/reset"),
        (Method::GET, "/"),
        (Method::GET, "/metrics"),
        (Method::GET, "/-/healthy"),
        (Method::GET, "/-/ready"),
        (Method::GET, "/api/v1/breakers"),
        (Method::GET, "/api/v1/routes"),
        (Method::GET, "/api/v1/status"),
        (Method::GET, "/api/v1/breakers/a/reset"),
        (Method::GET, "/nope"),
    ];
    for (method, path) in &paths {
        for headers in [&good[..], &bad[..], &[]] {
            seen.push(call(app, method.clone(), path, headers).await);
        }
    }
    // Reloads, failed and good.
    std::fs::write(&f.path, "global:\n  bogus: 1\n").unwrap();
    let r = post(app, "/-/reload").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    seen.push(r);
    std::fs::write(&f.path, config_yaml(f.port, None)).unwrap();
    let r = post(app, "/-/reload").await;
    assert_eq!(r.status, StatusCode::OK);
    seen.push(r);
    f.daemon.stop();

    // The first admin call did succeed, so the token was in play.
    assert_eq!(seen[0].status, StatusCode::OK);
    assert_eq!(seen.len(), paths.len() * 3 + 2);
    for (i, r) in seen.iter().enumerate() {
        assert!(!r.body.contains(TOKEN), "response {i} body: {}", r.body);
        for (k, v) in &r.headers {
            assert!(
                !String::from_utf8_lossy(v.as_bytes()).contains(TOKEN),
                "response {i} header {k}"
            );
        }
    }
}

// ------------------------------------------------- unknown paths and methods

#[tokio::test]
async fn unknown_paths_are_404() {
    let app = hfbreaker::http::app(daemon(Some(TOKEN)));
    for path in [
        "/nope",
        "/metrics/",
        "/metrics/extra",
        "/-/",
        "/-/health",
        "/api",
        "/api/v1",
        "/api/v1/",
        "/api/v2/breakers",
        "/api/v1/breakers/",
        "/api/v1/breakers/a",
        "/api/v1/breakers/a/reset/extra",
        "/api/v1/route",
        "/index.html",
    ] {
        for method in [Method::GET, Method::POST] {
            let r = call(&app, method.clone(), path, &[]).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}");
            assert!(r.body.is_empty(), "{method} {path}: {}", r.body);
        }
    }
    // Even with a valid token, a path that is not a route stays 404.
    let auth = format!("Bearer {TOKEN}");
    let r = call(
        &app,
        Method::POST,
        "/api/v1/breakers/a",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn wrong_methods_are_405_and_name_the_allowed_ones() {
    let d = daemon(Some(TOKEN));
    let app = hfbreaker::http::app(d);
    let gets = [
        "/",
        "/metrics",
        "/-/healthy",
        "/-/ready",
        "/api/v1/breakers",
        "/api/v1/routes",
        "/api/v1/status",
    ];
    for path in gets {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let r = call(&app, method.clone(), path, &[]).await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(
                r.headers.get(header::ALLOW).map(|v| v.to_str().unwrap()),
                Some("GET,HEAD"),
                "{method} {path}"
            );
        }
    }
    let auth = format!("Bearer {TOKEN}");
    for path in ["/-/reload", "/api/v1/breakers/a/force-open"] {
        for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            let r = call(&app, method.clone(), path, &[("authorization", &auth)]).await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(
                r.headers.get(header::ALLOW).map(|v| v.to_str().unwrap()),
                Some("POST"),
                "{method} {path}"
            );
        }
    }
    // None of that touched the breaker.
    assert_eq!(api_state(&app, "a").await, "closed");
}

#[tokio::test]
async fn head_on_get_routes_answers_headers_without_a_body() {
    let app = hfbreaker::http::app(daemon(None));
    for (path, ct) in [
        ("/", HTML),
        ("/metrics", PROM_TEXT),
        ("/-/healthy", PLAIN_TEXT),
        ("/api/v1/breakers", JSON),
        ("/api/v1/routes", JSON),
        ("/api/v1/status", JSON),
    ] {
        let r = call(&app, Method::HEAD, path, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.content_type(), ct, "{path}");
        assert!(r.body.is_empty(), "{path}");
    }
}
