//! `GET /api/v1/status` and the status page at `/`, in process (`oneshot`)
//! where possible: the JSON's shape, the history and timeline it keeps,
//! the gateway rates, the page's self-containment, and the admin token
//! never leaving the daemon.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use hfbreaker::daemon::Daemon;
use hfbreaker::secret::Secret;
use hfbreaker::sim::{Protocol, Sim, VirtualSpec};
use serde_json::Value;
use tower::ServiceExt;

const TOKEN: &str = "adm-status-5d2a9c-s3cret";

fn parse(yaml: &str) -> hfbreaker::config::Config {
    hfbreaker::config::parse(yaml, "status_api.yml", &HashMap::<String, String>::new())
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
}

/// Two endpoints on a closed port, one route; long interval, not started.
fn daemon(token: Option<&str>) -> Arc<Daemon> {
    let port = testkit::free_port();
    let yaml = format!(
        "global:
  interval: 1h
endpoints:
  - {{name: a, kind: tgi, url: http://127.0.0.1:{port}, probe: health}}
  - {{name: b, kind: openai, url: http://127.0.0.1:{port}/v1, model: org/model-b}}
routes:
  - name: r
    endpoints: [a, b]
"
    );
    Daemon::new(parse(&yaml), None, token.map(Secret::new))
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    auth: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .expect("infallible");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 26)
        .await
        .unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn status(app: &Router) -> Value {
    let (code, headers, body) = call(app, Method::GET, "/api/v1/status", None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    serde_json::from_str(&body).unwrap()
}

fn endpoint<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no endpoint {name} in {v}"))
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[tokio::test]
async fn status_before_any_probe_has_every_route_and_endpoint() {
    let app = hfbreaker::http::app(daemon(None));
    let v = status(&app).await;
    assert_eq!(
        keys(&v),
        [
            "admin",
            "endpoints",
            "history_minutes",
            "now",
            "routes",
            "timeline"
        ]
    );
    assert_eq!(v["admin"], false);
    assert_eq!(v["history_minutes"], 60);
    let r = &v["routes"][0];
    assert_eq!(
        keys(r),
        [
            "chain",
            "name",
            "requests_per_second",
            "serving",
            "since",
            "switches",
            "tier"
        ]
    );
    assert_eq!(r["tier"], "primary");
    assert_eq!(r["serving"], "a");
    assert_eq!(
        r["chain"],
        serde_json::json!([
            {"endpoint": "a", "state": "closed", "serving": true},
            {"endpoint": "b", "state": "closed", "serving": false},
        ])
    );
    assert_eq!(r["requests_per_second"], Value::Null, "no gateway");
    let a = endpoint(&v, "a");
    assert_eq!(
        keys(a),
        [
            "enforced",
            "history",
            "host",
            "kind",
            "last_probe",
            "name",
            "open_until",
            "probe",
            "since",
            "state"
        ]
    );
    assert_eq!(
        (&a["state"], &a["kind"], &a["probe"]),
        (&"closed".into(), &"tgi".into(), &"health".into())
    );
    assert_eq!(a["history"], serde_json::json!([]));
    assert_eq!(a["last_probe"], Value::Null);
    assert_eq!(v["timeline"], serde_json::json!([]));
}

#[tokio::test]
async fn admin_actions_show_in_chains_history_and_timeline() {
    let d = daemon(Some(TOKEN));
    let app = hfbreaker::http::app(d.clone());
    let post = |action: &'static str| {
        let app = app.clone();
        async move {
            let path = format!("/api/v1/breakers/a/{action}");
            call(&app, Method::POST, &path, Some(TOKEN)).await.0
        }
    };
    assert_eq!(post("force-open").await, StatusCode::OK);
    let v = status(&app).await;
    assert_eq!(v["admin"], true, "the page may offer admin actions");
    let r = &v["routes"][0];
    assert_eq!(
        (&r["tier"], &r["serving"]),
        (&"fallback".into(), &"b".into())
    );
    assert_eq!(r["chain"][0]["state"], "forced_open");
    assert_eq!(r["chain"][1]["serving"], true);
    let a = endpoint(&v, "a");
    assert_eq!(a["state"], "forced_open");
    let marks = a["history"].as_array().unwrap();
    assert_eq!(marks.len(), 1, "the change opens this minute's mark: {a}");
    assert_eq!(marks[0]["state"], "forced_open");
    assert!(marks[0]["t"].as_u64().unwrap().is_multiple_of(60));

    assert_eq!(post("reset").await, StatusCode::OK);
    let v = status(&app).await;
    let t = v["timeline"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = t
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["to"].as_str().unwrap()))
        .collect();
    // Newest first; each action next to the transition it caused.
    assert_eq!(kinds.len(), 4, "{t:?}");
    assert!(kinds[..2].contains(&("action", "closed")), "{kinds:?}");
    assert!(kinds[..2].contains(&("transition", "closed")), "{kinds:?}");
    assert!(kinds[2..].contains(&("action", "forced_open")), "{kinds:?}");
    let trip = t
        .iter()
        .find(|e| e["kind"] == "transition" && e["to"] == "forced_open")
        .unwrap();
    assert_eq!(
        (&trip["from"], &trip["reason"]),
        (&"closed".into(), &"manual".into())
    );
    let act = t.iter().find(|e| e["kind"] == "action").unwrap();
    assert_eq!(act["action"], "reset");
    assert_eq!(act["endpoint"], "a");
    let ats: Vec<_> = t
        .iter()
        .map(|e| humantime::parse_rfc3339(e["at"].as_str().unwrap()).unwrap())
        .collect();
    assert!(
        ats.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {ats:?}"
    );
    let text = serde_json::to_string(&v).unwrap();
    assert!(!text.contains(TOKEN), "the token never appears");
}

/// Probed for real: `ok` against the simulator, `down` against a closed
/// port with a breaker that trips on the first failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_fill_the_history_and_trips_the_timeline() {
    let sim = Sim::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![("tgi".to_string(), VirtualSpec::new(Protocol::Tgi, "m"))],
    )
    .await
    .unwrap();
    let port = testkit::free_port();
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
",
        sim.url("tgi")
    );
    let d = Daemon::new(parse(&yaml), None, None);
    d.start();
    let app = hfbreaker::http::app(d.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        let v = status(&app).await;
        let ok_probes = endpoint(&v, "ok")["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["success"].as_u64().unwrap_or(0))
            .sum::<u64>();
        if ok_probes >= 3 && endpoint(&v, "down")["state"] == "open" {
            break v;
        }
        assert!(Instant::now() < deadline, "no probes recorded: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ok = endpoint(&v, "ok");
    assert_eq!(ok["last_probe"]["result"], "success");
    assert!(ok["last_probe"]["duration_seconds"].as_f64().unwrap() > 0.0);
    let m = ok["history"].as_array().unwrap().last().unwrap().clone();
    assert!(m["max_ms"].is_u64() && m["mean_ms"].is_u64(), "{m}");
    assert_eq!(m["state"], "closed");
    let down = endpoint(&v, "down");
    let m = &down["history"][0];
    assert_eq!(
        (&m["failure"], &m["reason"], &m["state"]),
        (&1.into(), &"connect".into(), &"open".into())
    );
    let trip = &v["timeline"][0];
    assert_eq!(
        (
            &trip["endpoint"],
            &trip["from"],
            &trip["to"],
            &trip["reason"]
        ),
        (
            &"down".into(),
            &"closed".into(),
            &"open".into(),
            &"consecutive_failures".into()
        )
    );
    let r = &v["routes"][0];
    assert_eq!(
        (&r["tier"], &r["serving"]),
        (&"fallback".into(), &"ok".into())
    );
    assert_eq!(r["chain"][0]["state"], "open");
    d.stop();
    sim.shutdown().await;
}

/// The page's frequent poll asks for the current minute only.
#[tokio::test]
async fn history_minutes_bounds_the_marks_served() {
    let d = daemon(Some(TOKEN));
    let app = hfbreaker::http::app(d.clone());
    let path = "/api/v1/breakers/a/force-open";
    assert_eq!(
        call(&app, Method::POST, path, Some(TOKEN)).await.0,
        StatusCode::OK
    );
    for (query, minutes, marks) in [
        ("", 60, 1),
        ("?history_minutes=1", 1, 1),
        ("?history_minutes=0", 0, 0),
        ("?history_minutes=999", 60, 1),
    ] {
        let (code, _, body) =
            call(&app, Method::GET, &format!("/api/v1/status{query}"), None).await;
        assert_eq!(code, StatusCode::OK, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["history_minutes"], minutes, "{query}");
        assert_eq!(
            endpoint(&v, "a")["history"].as_array().unwrap().len(),
            marks,
            "{query}"
        );
        assert_eq!(
            v["timeline"].as_array().unwrap().len(),
            2,
            "{query}: the timeline is whole"
        );
    }
    let (code, _, _) = call(
        &app,
        Method::GET,
        "/api/v1/status?history_minutes=lots",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

/// A reload that changes an exported threshold keeps the endpoint (its
/// series take the new value in place), its history and its state changes.
#[tokio::test]
async fn a_reload_keeps_the_history() {
    let d = daemon(Some(TOKEN));
    let app = hfbreaker::http::app(d.clone());
    let path = "/api/v1/breakers/a/force-open";
    assert_eq!(
        call(&app, Method::POST, path, Some(TOKEN)).await.0,
        StatusCode::OK
    );
    let mut cfg = d.topology().config.clone();
    cfg.endpoints[0].breaker.failure_threshold += 1;
    let before = Arc::as_ptr(d.topology().endpoint("a").unwrap());
    d.apply(cfg);
    let after = Arc::as_ptr(d.topology().endpoint("a").unwrap());
    assert_eq!(before, after, "the same endpoint carries on");
    let v = status(&app).await;
    let a = endpoint(&v, "a");
    assert_eq!(a["history"][0]["state"], "forced_open", "{a}");
    let t = v["timeline"].as_array().unwrap();
    assert!(
        t.iter()
            .any(|e| e["kind"] == "transition" && e["to"] == "forced_open"),
        "{t:?}"
    );
    d.stop();
}

#[tokio::test]
async fn gateway_requests_per_second_by_tier() {
    let d = daemon(None);
    let app = hfbreaker::http::app(d.clone());
    let g = d
        .metrics
        .gateway_route("r", &["a".to_string(), "b".to_string()]);
    assert_eq!(
        status(&app).await["routes"][0]["requests_per_second"],
        Value::Null,
        "no rate from one sample"
    );
    for _ in 0..30 {
        g.request(
            Some(0),
            hfbreaker::metrics::gateway::Tier::Primary,
            200,
            0.01,
        );
    }
    g.request(
        None,
        hfbreaker::metrics::gateway::Tier::Exhausted,
        503,
        0.01,
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rps = status(&app).await["routes"][0]["requests_per_second"].clone();
    assert_eq!(keys(&rps), ["cache", "exhausted", "fallback", "primary"]);
    let primary = rps["primary"].as_f64().unwrap();
    assert!(primary > 30.0 && primary < 30.0 / 0.2, "{rps}");
    assert!(rps["exhausted"].as_f64().unwrap() > 0.0);
    assert_eq!(rps["fallback"], 0.0);
}

#[tokio::test]
async fn the_page_is_one_self_contained_document() {
    let d = daemon(Some(TOKEN));
    let app = hfbreaker::http::app(d);
    let (code, headers, h) = call(&app, Method::GET, "/", None).await;
    assert_eq!(code, StatusCode::OK);
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    // Live: it polls the status JSON (relative, so a path prefix works) and says when it lost the daemon.
    assert!(
        h.contains("whole ? \"api/v1/status\" : \"api/v1/status?history_minutes=1\""),
        "polls the JSON"
    );
    assert!(h.contains("id=\"conn\" role=\"alert\""));
    assert!(h.contains("Lost connection to the daemon"));
    assert!(h.contains("prefers-color-scheme: dark"));
    // The strips' marks differ by shape too, and a legend says how.
    for (class, label) in [
        ("o-ok", "ok"),
        ("o-fail", "failed"),
        ("o-ign", "ignored"),
        ("o-rej", "rejected (circuit open)"),
        ("o-none", "no probe"),
    ] {
        let key =
            format!("<span class=\"swatch {class}\" aria-hidden=\"true\"></span>{label}</span>");
        assert!(h.contains(&key), "legend: {key}");
    }
    assert!(h.contains("name=\"viewport\""));
    // The no-JS fallback is filled in, and reloads itself only without JS.
    assert!(!h.contains("<!--FALLBACK-->"));
    assert!(h.contains("<noscript><meta http-equiv=\"refresh\""));
    // No external asset: no URL with a scheme or a protocol-relative one.
    for bad in [
        "http://",
        "https://",
        "src=\"//",
        "href=\"//",
        "@import",
        "url(",
    ] {
        assert!(!h.contains(bad), "{bad} in the page");
    }
    assert!(!h.contains("<script src"));
    assert_eq!(
        h.matches("<link").count(),
        1,
        "only the empty icon (no /favicon.ico request)"
    );
    assert!(h.contains("<link rel=\"icon\" href=\"data:,\">"));
    // Admin actions are offered by the JSON's `admin` flag; the token is only ever prompted for.
    assert!(h.contains("window.prompt("));
    assert!(!h.contains(TOKEN));
    assert!(
        !h.contains("localStorage")
            && !h.contains("sessionStorage")
            && !h.contains("document.cookie")
    );
}

/// The real binary with an admin token: after an action, neither the page,
/// the JSON nor the log holds the token.
#[test]
fn the_admin_token_stays_out_of_the_page_the_json_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let p = testkit::binary!().daemon(
        "endpoints:\n  - {name: a, kind: http, url: 'http://127.0.0.1:9/'}\n",
        &[
            &format!("--web.admin-token-file={}", token_file.display()),
            "--log.level=debug",
        ],
        &[],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = testkit::client();
    let bodies = rt.block_on(async {
        let r = c
            .post(format!("{}/api/v1/breakers/a/force-open", p.base()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut out = Vec::new();
        for path in ["/", "/api/v1/status"] {
            let r = c.get(format!("{}{path}", p.base())).send().await.unwrap();
            assert_eq!(r.status(), 200);
            out.push(r.text().await.unwrap());
        }
        out
    });
    assert!(bodies[1].contains("\"admin\":true"), "{}", bodies[1]);
    assert!(
        bodies[1].contains("\"action\":\"force-open\""),
        "{}",
        bodies[1]
    );
    p.wait_stderr("msg=\"admin action\"", Duration::from_secs(5));
    for (what, text) in [
        ("page", &bodies[0]),
        ("json", &bodies[1]),
        ("log", &p.stderr()),
        ("stdout", &p.stdout()),
    ] {
        assert!(!text.contains(TOKEN), "the token is in the {what}");
    }
}
