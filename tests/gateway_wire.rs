//! What the gateway puts on the wire, seen by a scripted upstream
//! (`testkit::scripted`) that records every request: the path per kind and
//! `model` rewritten to the endpoint's; failover on 429 and on a loading
//! 503, and `Retry-After` holding the breaker open only on 429 and 503;
//! half-open admission (only the trial reaches the endpoint, concurrent
//! requests go to the next level); client keys reloaded with the config.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::scripted::{Gate, Received, Reply, Scripted};
use testkit::{TestDaemon, client, key_file};

const KEY: &str = "sk-gw-wire-5c07e2";
const COMPLETION: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
const EMBEDDINGS: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,0.25]},{"object":"embedding","index":1,"embedding":[1.0,2.0]}],"model":"m","usage":{"prompt_tokens":0,"total_tokens":0}}"#;

/// The daemon (probes every 20 s: requests do the work) with `body`
/// appended after `global` and `gateway`, and its gateway.
async fn daemon(keys: &std::path::Path, breaker: &str, body: &str) -> (TestDaemon, SocketAddr) {
    daemon_timeouts(keys, breaker, "3s", "1s", body).await
}

/// [`daemon`] with the gateway's `timeout` and `first_byte_timeout`.
async fn daemon_timeouts(
    keys: &std::path::Path,
    breaker: &str,
    timeout: &str,
    first_byte_timeout: &str,
    body: &str,
) -> (TestDaemon, SocketAddr) {
    let yaml = format!(
        "global:
  interval: 20s
  timeout: 1s
  breaker: {{{breaker}}}
gateway:
  client_keys_file: {keys}
  timeout: {timeout}
  first_byte_timeout: {first_byte_timeout}
{body}",
        keys = keys.display()
    );
    let td = TestDaemon::start(&yaml).await;
    let gw = td.start_gateway().await;
    (td, gw)
}

async fn post(gw: SocketAddr, key: &str, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("http://{gw}{path}"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("gateway answers")
}

fn chat(route: &str, marker: &str) -> Value {
    json!({"model": route, "messages": [{"role": "user", "content": marker}], "max_tokens": 3})
}

async fn json_of(r: reqwest::Response) -> Value {
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The one request upstream whose body carries `marker`.
fn the_one(up: &Scripted, marker: &str) -> Received {
    the_one_at(up, "/", marker)
}

/// The one request under path `prefix` whose body carries `marker`.
fn the_one_at(up: &Scripted, prefix: &str, marker: &str) -> Received {
    let hits: Vec<Received> = up
        .posts()
        .into_iter()
        .filter(|r| r.path.starts_with(prefix))
        .filter(|r| String::from_utf8_lossy(&r.body).contains(marker))
        .collect();
    assert_eq!(hits.len(), 1, "{marker}: {hits:?}");
    hits.into_iter().next().unwrap()
}

/// Answers as each kind's server would, by path; probes get a bare 200.
fn by_path(r: &Received) -> Reply {
    if r.method != "POST" {
        return Reply::empty();
    }
    if r.path.ends_with("/chat/completions") {
        Reply::json(200, COMPLETION)
    } else if r.path.ends_with("/embeddings") {
        Reply::json(200, EMBEDDINGS)
    } else if r.path == "/hf/models/org/bge" {
        Reply::json(200, "[[0.5,0.25],[1.0,2.0]]")
    } else {
        Reply::json(404, r#"{"error":"no such path"}"#)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_gets_its_path_and_the_endpoints_model() {
    let up = Scripted::start(by_path).await;
    let (_k, keys) = key_file(KEY);
    let u = up.url();
    let (td, gw) = daemon(
        &keys,
        "failure_threshold: 5",
        &format!(
            "endpoints:
  - {{name: tgi, kind: tgi, url: '{u}/tgi', model: org/zephyr, probe: health}}
  - {{name: tei, kind: tei, url: '{u}/tei/', model: org/bge-tei, probe: health}}
  - {{name: oa, kind: openai, url: '{u}/oa/v1', model: gpt-4o-mini, probe: models}}
  - {{name: hfchat, kind: hf-inference, url: '{u}/hf', model: org/llama}}
  - {{name: hfemb, kind: hf-inference, url: '{u}/hf', model: org/bge, probe: embed}}
routes:
  - {{name: r-tgi, endpoints: [tgi]}}
  - {{name: r-tei, endpoints: [tei]}}
  - {{name: r-oa, endpoints: [oa]}}
  - {{name: r-hf, endpoints: [hfchat]}}
  - {{name: r-hfemb, endpoints: [hfemb]}}
"
        ),
    )
    .await;
    // (route, operation, marker, endpoint, path upstream, model upstream)
    let cases = [
        (
            "r-tgi",
            "chat",
            "m-tgi",
            "tgi",
            "/tgi/v1/chat/completions",
            "org/zephyr",
        ),
        (
            "r-tei",
            "emb",
            "m-tei",
            "tei",
            "/tei/v1/embeddings",
            "org/bge-tei",
        ),
        (
            "r-oa",
            "chat",
            "m-oa-chat",
            "oa",
            "/oa/v1/chat/completions",
            "gpt-4o-mini",
        ),
        (
            "r-oa",
            "emb",
            "m-oa-emb",
            "oa",
            "/oa/v1/embeddings",
            "gpt-4o-mini",
        ),
        (
            "r-hf",
            "chat",
            "m-hf-chat",
            "hfchat",
            "/hf/models/org/llama/v1/chat/completions",
            "org/llama",
        ),
    ];
    for (route, op, marker, endpoint, path, model) in cases {
        let (url, body) = match op {
            "chat" => ("/v1/chat/completions", chat(route, marker)),
            _ => (
                "/v1/embeddings",
                json!({"model": route, "input": [marker, "b"], "encoding_format": "float"}),
            ),
        };
        let r = post(gw, KEY, url, &body).await;
        assert_eq!(r.status(), 200, "{route} {op}");
        assert_eq!(header(&r, "x-hfbreaker-endpoint"), endpoint);
        assert_eq!(header(&r, "x-hfbreaker-route"), route);
        let got = the_one(&up, marker);
        assert_eq!(got.path, path, "{route} {op}");
        let sent = got.json();
        assert_eq!(sent["model"], model, "{route} {op}: {sent}");
        // The rest of the body goes as the client sent it.
        let mut want = body.clone();
        want["model"] = json!(model);
        assert_eq!(sent, want, "{route} {op}");
        assert_eq!(got.header("content-type"), Some("application/json"));
    }
    // hf-inference embeddings: feature extraction at the model's task
    // path, `inputs` only; the vectors come back as OpenAI embeddings.
    let body = json!({"model": "r-hfemb", "input": ["m-hfemb", "b"], "encoding_format": "float"});
    let r = post(gw, KEY, "/v1/embeddings", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-hfbreaker-endpoint"), "hfemb");
    let v = json_of(r).await;
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["embedding"], json!([0.5, 0.25]));
    assert_eq!(v["data"][1]["embedding"], json!([1.0, 2.0]));
    assert_eq!(v["data"][1]["index"], 1);
    let got = the_one(&up, "m-hfemb");
    assert_eq!(got.path, "/hf/models/org/bge");
    assert_eq!(got.json(), json!({"inputs": ["m-hfemb", "b"]}));

    let m = td.scrape().await;
    for (route, endpoint, n) in [
        ("r-tgi", "tgi", 1.0),
        ("r-tei", "tei", 1.0),
        ("r-oa", "oa", 2.0),
        ("r-hf", "hfchat", 1.0),
        ("r-hfemb", "hfemb", 1.0),
    ] {
        let labels = [
            ("route", route),
            ("endpoint", endpoint),
            ("tier", "primary"),
            ("code", "200"),
        ];
        assert_eq!(
            m.val("hfbreaker_gateway_requests_total", &labels),
            n,
            "{}",
            m.hfbreaker_lines()
        );
    }
}

fn route_config(u: &str) -> String {
    format!(
        "endpoints:
  - {{name: primary, kind: tgi, url: '{u}/p', probe: health}}
  - {{name: backup, kind: tgi, url: '{u}/b', probe: health}}
routes:
  - {{name: r, endpoints: [primary, backup]}}
"
    )
}

/// The primary's breaker in /api/v1/breakers.
async fn breaker(td: &TestDaemon) -> Value {
    let (code, body) = td.get("/api/v1/breakers").await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    v["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "primary")
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_loading_fail_over_and_retry_after_holds_only_on_429_and_503() {
    let reply = Arc::new(Mutex::new(Reply::json(200, COMPLETION)));
    let up = Scripted::primary_and_backup(reply.clone(), Reply::json(200, COMPLETION)).await;
    let (_k, keys) = key_file(KEY);
    let (td, gw) = daemon(
        &keys,
        // Open periods (5 s, 10 s held) far longer than the test: each case
        // reads the breaker while it is still open, and resets it after.
        "failure_threshold: 1, open_duration: 5s, max_open_duration: 20s",
        &route_config(&up.url()),
    )
    .await;
    let loading = r#"{"error":"Model org/zephyr is currently loading","estimated_time":20.0}"#;
    // (answer, reason counted, open period at least / below)
    let cases = [
        (
            Reply::json(429, r#"{"error":"Model is overloaded"}"#).header("retry-after", "10"),
            "rate_limited",
            true,
        ),
        (Reply::json(503, loading), "model_loading", false),
        (
            Reply::json(503, r#"{"error":"busy"}"#).header("retry-after", "10"),
            "http_5xx",
            true,
        ),
        // Retry-After on other statuses asks for nothing (RFC 9110: 3xx, 429, 503).
        (
            Reply::json(500, r#"{"error":"boom"}"#).header("retry-after", "10"),
            "http_5xx",
            false,
        ),
    ];
    for (i, (answer, reason, held)) in cases.into_iter().enumerate() {
        td.daemon
            .admin("primary", hfbreaker::daemon::AdminAction::Reset)
            .unwrap();
        *reply.lock().unwrap() = answer;
        let marker = format!("case-{i}");
        let r = post(gw, KEY, "/v1/chat/completions", &chat("r", &marker)).await;
        // No client-visible error: the backup served.
        assert_eq!(r.status(), 200, "{reason}");
        assert_eq!(header(&r, "x-hfbreaker-endpoint"), "backup", "{reason}");
        assert_eq!(header(&r, "x-hfbreaker-tier"), "fallback", "{reason}");
        assert_eq!(json_of(r).await["object"], "chat.completion");
        assert_eq!(
            the_one_at(&up, "/p/", &marker).path,
            "/p/v1/chat/completions"
        );
        the_one_at(&up, "/b/", &marker);
        let b = breaker(&td).await;
        assert_eq!(b["state"], "open", "{reason}: {b}");
        let open = b["open_duration_seconds"].as_f64().unwrap();
        if held {
            assert!((9.9..=10.1).contains(&open), "{reason}: {b}");
        } else {
            // The configured 5 s, ±10% jitter.
            assert!(open <= 5.6, "{reason}: held open {open} s: {b}");
        }
        let m = td.scrape().await;
        let labels = [
            ("route", "r"),
            ("endpoint", "primary"),
            ("result", "failure"),
            ("reason", reason),
        ];
        assert!(
            m.val("hfbreaker_gateway_attempts_total", &labels) >= 1.0,
            "{}",
            m.hfbreaker_lines()
        );
    }
    let m = td.scrape().await;
    let failovers = [("route", "r"), ("from", "primary"), ("to", "backup")];
    assert_eq!(m.val("hfbreaker_gateway_failovers_total", &failovers), 4.0);
    let served = [
        ("route", "r"),
        ("endpoint", "backup"),
        ("tier", "fallback"),
        ("code", "200"),
    ];
    assert_eq!(m.val("hfbreaker_gateway_requests_total", &served), 4.0);
    assert_eq!(
        m.sum(
            "hfbreaker_gateway_requests_total",
            &[("route", "r"), ("code", "503")]
        ),
        0.0
    );
}

/// Send a request that must become the primary's half-open trial and be
/// held there; one that finds the trial taken (a probe's, in the instant
/// the open period ended) comes back from the backup and is sent again.
/// Returns the held request and how many went to the backup meanwhile.
async fn send_trial(
    gw: SocketAddr,
    up: &Scripted,
) -> (tokio::task::JoinHandle<reqwest::Response>, usize) {
    let start = Instant::now();
    for i in 0.. {
        assert!(start.elapsed() < Duration::from_secs(3), "no trial held");
        let marker = format!("trial-{i}");
        let body = chat("r", &marker);
        let t = tokio::spawn(async move { post(gw, KEY, "/v1/chat/completions", &body).await });
        loop {
            let held = up
                .posts()
                .iter()
                .any(|r| r.path.starts_with("/p/") && r.json().to_string().contains(&marker));
            if held {
                return (t, i);
            }
            if t.is_finished() {
                let r = t.await.unwrap();
                assert_eq!(header(&r, "x-hfbreaker-endpoint"), "backup");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_lets_only_the_trial_through_and_the_rest_fall_back() {
    let reply = Arc::new(Mutex::new(Reply::json(500, r#"{"error":"boom"}"#)));
    let up = Scripted::primary_and_backup(reply.clone(), Reply::json(200, COMPLETION)).await;
    let (_k, keys) = key_file(KEY);
    // The trial is held at the gate until the concurrent requests are back:
    // the gateway waits for its first byte longer (8 s) than they may take
    // (5 s), so requests queued behind the trial would fail that bound.
    let (td, gw) = daemon_timeouts(
        &keys,
        "failure_threshold: 1, open_duration: 300ms, success_threshold: 2",
        "9s",
        "8s",
        &route_config(&up.url()),
    )
    .await;
    let to_primary = || {
        up.posts()
            .iter()
            .filter(|r| r.path.starts_with("/p/"))
            .count()
    };
    let r = post(gw, KEY, "/v1/chat/completions", &chat("r", "trip")).await;
    assert_eq!(header(&r, "x-hfbreaker-endpoint"), "backup");
    // It tripped (the short open period may already be over: count the
    // trip, not the live state).
    let m = td.scrape().await;
    let trips = [("endpoint", "primary"), ("reason", "consecutive_failures")];
    assert_eq!(
        m.val("hfbreaker_circuit_trips_total", &trips),
        1.0,
        "{}",
        m.hfbreaker_lines()
    );
    assert_ne!(m.state("primary"), Some("closed"));
    assert_eq!(to_primary(), 1);

    // The primary recovers, but holds its answers until the gate opens.
    let gate = Gate::new();
    *reply.lock().unwrap() = Reply::Held(gate.clone(), Box::new(Reply::json(200, COMPLETION)));
    tokio::time::sleep(Duration::from_millis(340)).await;
    let (trial, sent_back) = send_trial(gw, &up).await;
    assert_eq!(breaker(&td).await["state"], "half_open");
    assert_eq!(to_primary(), 2);

    // While the trial is out, every request goes to the next level at once.
    const N: usize = 6;
    let started = Instant::now();
    let others: Vec<_> = (0..N)
        .map(|i| {
            let body = chat("r", &format!("concurrent-{i}"));
            tokio::spawn(async move { post(gw, KEY, "/v1/chat/completions", &body).await })
        })
        .collect();
    for o in others {
        let r = o.await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-hfbreaker-endpoint"), "backup");
        assert_eq!(header(&r, "x-hfbreaker-tier"), "fallback");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        to_primary(),
        2,
        "only the permitted trial reached the primary"
    );
    assert_eq!(up.dropped(), 0);

    gate.open();
    let r = trial.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-hfbreaker-endpoint"), "primary");
    assert_eq!(header(&r, "x-hfbreaker-tier"), "primary");
    let m = td.scrape().await;
    let success = [
        ("route", "r"),
        ("endpoint", "primary"),
        ("result", "success"),
    ];
    assert_eq!(m.val("hfbreaker_gateway_attempts_total", &success), 1.0);
    let fallback = [
        ("route", "r"),
        ("endpoint", "backup"),
        ("tier", "fallback"),
        ("code", "200"),
    ];
    assert_eq!(
        m.val("hfbreaker_gateway_requests_total", &fallback),
        (1 + sent_back + N) as f64,
        "{}",
        m.hfbreaker_lines()
    );
    // The next trial (a request's or a probe's) closes it; traffic returns.
    // A request that finds that trial taken (a confirmation probe's) goes to
    // the backup: send again until the primary answers.
    let start = Instant::now();
    for i in 0.. {
        let r = post(
            gw,
            KEY,
            "/v1/chat/completions",
            &chat("r", &format!("after-{i}")),
        )
        .await;
        assert_eq!(r.status(), 200);
        if header(&r, "x-hfbreaker-endpoint") == "primary" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "traffic never returned to the primary: {}",
            breaker(&td).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    td.until(Duration::from_secs(3), "primary closed", |m| {
        m.state("primary") == Some("closed")
    })
    .await;
    assert_eq!(
        td.scrape()
            .await
            .val("hfbreaker_gateway_in_flight_requests", &[("route", "r")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_keys_are_reloaded_with_the_config() {
    const OLD: &str = "sk-gw-old-71c2";
    const NEW: &str = "sk-gw-new-0a9d";
    let up = Scripted::start(by_path).await;
    let (_k, keys) = key_file(OLD);
    let (td, gw) = daemon(
        &keys,
        "failure_threshold: 5",
        &format!(
            "endpoints:\n  - {{name: p, kind: tgi, url: '{}/tgi', probe: health}}\nroutes:\n  - {{name: r, endpoints: [p]}}\n",
            up.url()
        ),
    )
    .await;
    let status = |key: &'static str| async move {
        let r = post(gw, key, "/v1/chat/completions", &chat("r", "k")).await;
        let code = r.status().as_u16();
        let v = json_of(r).await;
        (code, v)
    };
    assert_eq!(status(OLD).await.0, 200);
    assert_eq!(status(NEW).await.0, 401);

    std::fs::write(&keys, format!("# rotated\n{NEW}\n")).unwrap();
    let (code, body) = td.post("/-/reload", None).await;
    assert_eq!(code, 200, "{body}");
    let m = td.scrape().await;
    assert_eq!(m.val("hfbreaker_config_last_reload_successful", &[]), 1.0);

    let (code, v) = status(OLD).await;
    assert_eq!(code, 401, "{v}");
    assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
    let (code, v) = status(NEW).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    let r = client()
        .get(format!("http://{gw}/v1/models"))
        .bearer_auth(NEW)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Only the two accepted requests reached the endpoint.
    assert_eq!(up.posts().len(), 2);
    let m = td.scrape().await;
    let ok = [
        ("route", "r"),
        ("endpoint", "p"),
        ("tier", "primary"),
        ("code", "200"),
    ];
    assert_eq!(m.val("hfbreaker_gateway_requests_total", &ok), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_during_its_half_open_trial_gives_the_trial_back() {
    let reply = Arc::new(Mutex::new(Reply::json(500, r#"{"error":"boom"}"#)));
    let up = Scripted::primary_and_backup(reply.clone(), Reply::json(200, COMPLETION)).await;
    let (_k, keys) = key_file(KEY);
    let (td, gw) = daemon(
        &keys,
        "failure_threshold: 1, open_duration: 300ms, success_threshold: 2",
        &route_config(&up.url()),
    )
    .await;
    let r = post(gw, KEY, "/v1/chat/completions", &chat("r", "trip")).await;
    assert_eq!(header(&r, "x-hfbreaker-endpoint"), "backup");
    // Held answers: the trial request's client gives up waiting.
    *reply.lock().unwrap() = Reply::Held(Gate::new(), Box::new(Reply::json(200, COMPLETION)));
    tokio::time::sleep(Duration::from_millis(340)).await;
    let (trial, _) = send_trial(gw, &up).await;
    assert_eq!(breaker(&td).await["state"], "half_open");
    trial.abort();
    let start = Instant::now();
    while up.dropped() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "upstream request kept"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The primary answers again: the next requests (or probes) get the
    // trials and close the breaker; traffic returns to the primary.
    *reply.lock().unwrap() = Reply::json(200, COMPLETION);
    let start = Instant::now();
    loop {
        let r = post(gw, KEY, "/v1/chat/completions", &chat("r", "next")).await;
        assert_eq!(r.status(), 200);
        if header(&r, "x-hfbreaker-endpoint") == "primary"
            && breaker(&td).await["state"] == "closed"
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the trial never came back: {}",
            breaker(&td).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = td.scrape().await;
    assert_eq!(
        m.state("primary"),
        Some("closed"),
        "{}",
        m.hfbreaker_lines()
    );
    assert_eq!(
        m.val("hfbreaker_gateway_in_flight_requests", &[("route", "r")]),
        0.0
    );
}
