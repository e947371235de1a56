//! The OpenAI-compatible gateway against the in-process simulator and
//! hostile test servers: chat, streams and embeddings; failover under load
//! with breakers fed by requests; the last level; bad input; hostile
//! upstreams; a client that leaves a stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hfbreaker::gateway::{Gateway, StartError};
use hfbreaker::sim::{Mode, Protocol, Sim, VirtualSpec};
use serde_json::{Value, json};
use testkit::{TestDaemon, client, sim};

const KEY: &str = "sk-gw-test-4f1c2b9e";

struct Setup {
    td: TestDaemon,
    gw: SocketAddr,
    sim: Sim,
    _keys: tempfile::TempDir,
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.gw, path)
    }

    async fn chat(&self, route: &str, stream: bool) -> reqwest::Response {
        client()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json").body(json!({"model": route, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": stream}).to_string())
            .send()
            .await
            .expect("gateway answers")
    }
}

fn endpoint_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-hfbreaker-endpoint")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The simulator with a TGI primary, a router fallback, TEI and hf-inference
/// embeddings; the daemon probing rarely (requests must do the tripping);
/// the gateway on its own port. `extra` replaces the primary's URL when set.
async fn setup(primary_url: Option<String>) -> Setup {
    setup_with(primary_url, "").await
}

/// [`setup`], with `assistant` extra keys of the `assistant` route (`, cache: {...}`).
async fn setup_with(primary_url: Option<String>, assistant: &str) -> Setup {
    let mut hf = VirtualSpec::new(Protocol::HfInference, "org/bge");
    hf.embedding = true;
    let sim = sim(vec![
        ("primary", VirtualSpec::new(Protocol::Tgi, "org/zephyr")),
        ("backup", VirtualSpec::new(Protocol::Router, "org/backup")),
        ("emb", VirtualSpec::new(Protocol::Tei, "org/bge")),
        ("hfemb", hf),
    ])
    .await;
    let (keys, key_file) = testkit::key_file(&format!("# clients\nsk-other\n{KEY}"));
    let primary = primary_url.unwrap_or_else(|| sim.url("primary"));
    let yaml = format!(
        "global:
  interval: 20s
  timeout: 400ms
  confirm_interval: 40ms
  breaker:
    failure_threshold: 3
    open_duration: 800ms
    max_open_duration: 2s
    success_threshold: 2
gateway:
  client_keys_file: {keys}
  timeout: 3s
  first_byte_timeout: 400ms
  max_request_bytes: 2048
endpoints:
  - {{name: primary, kind: tgi, url: '{primary}', probe: health}}
  - {{name: backup, kind: openai, url: '{backup}/v1', model: org/backup, probe: models}}
  - {{name: emb, kind: tei, url: '{emb}'}}
  - {{name: hfemb, kind: hf-inference, url: '{hfemb}', model: org/bge, probe: embed}}
  - {{name: status, kind: http, url: '{emb}/health'}}
  - {{name: oaemb, kind: openai, url: '{emb}/v1', model: org/bge}}
routes:
  - {{name: assistant, endpoints: [primary, backup]{assistant}}}
  - {{name: embeddings, endpoints: [emb, hfemb]}}
  - {{name: hf-embeddings, endpoints: [status, hfemb]}}
  - {{name: oa-embeddings, endpoints: [oaemb]}}
",
        keys = key_file.display(),
        backup = sim.url("backup"),
        emb = sim.url("emb"),
        hfemb = sim.url("hfemb"),
    );
    let td = TestDaemon::start(&yaml).await;
    let gw = td.start_gateway().await;
    Setup {
        td,
        gw,
        sim,
        _keys: keys,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streaming_chat_and_embeddings_through_the_gateway() {
    let s = setup(None).await;
    let r = s.chat("assistant", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-hfbreaker-route"], "assistant");
    assert_eq!(r.headers()["x-hfbreaker-endpoint"], "primary");
    assert_eq!(r.headers()["x-hfbreaker-tier"], "primary");
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["content"].is_string());

    let r = s.chat("assistant", true).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    assert!(text.contains("chat.completion.chunk"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    let r = client()
        .post(s.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(json!({"model": "embeddings", "input": ["a", "b"]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(endpoint_of(&r), "emb");
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);

    // hf-inference: feature extraction translated, base64 as the openai client asks.
    let r = client()
        .post(s.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(
            json!({"model": "hf-embeddings", "input": "a", "encoding_format": "base64"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(endpoint_of(&r), "hfemb");
    assert_eq!(r.headers()["x-hfbreaker-tier"], "fallback");
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(v["data"][0]["embedding"].is_string(), "{v}");

    let r = client()
        .get(s.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["assistant", "embeddings", "hf-embeddings", "oa-embeddings"]
    );

    let m = s.td.scrape().await;
    let req = |ep: &str, tier: &str| {
        m.val(
            "hfbreaker_gateway_requests_total",
            &[
                ("route", "assistant"),
                ("endpoint", ep),
                ("tier", tier),
                ("code", "200"),
            ],
        )
    };
    assert_eq!(req("primary", "primary"), 2.0);
    assert_eq!(
        m.val(
            "hfbreaker_gateway_time_to_first_token_seconds_count",
            &[("route", "assistant")]
        ),
        1.0
    );
    assert_eq!(
        m.val(
            "hfbreaker_gateway_cache_hits_total",
            &[("route", "assistant")]
        ),
        0.0
    );
    assert_eq!(
        m.val(
            "hfbreaker_gateway_in_flight_requests",
            &[("route", "assistant")]
        ),
        0.0
    );
}

impl Setup {
    /// A feature-extraction request (`InferenceClient.feature_extraction`).
    async fn features(&self, path: &str, body: Value) -> (u16, String, Value) {
        let r = client()
            .post(self.url(path))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let endpoint = endpoint_of(&r);
        let v = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        (status, endpoint, v)
    }
}

fn vector(v: &Value) -> Vec<f64> {
    let a = v.as_array().unwrap_or_else(|| panic!("not a vector: {v}"));
    a.iter().map(|x| x.as_f64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_extraction_through_the_gateway_on_every_kind() {
    let s = setup(None).await;
    // TEI's /embed: one string, one vector (as hf-inference answers it).
    let (status, ep, v) = s
        .features("/routes/embeddings", json!({"inputs": "a"}))
        .await;
    assert_eq!((status, ep.as_str()), (200, "emb"), "{v}");
    let one = vector(&v);
    assert_eq!(one.len(), 8);
    // A list: one vector per input, in order.
    let (status, _, v) = s
        .features("/routes/embeddings", json!({"inputs": ["a", "bc"]}))
        .await;
    assert_eq!(status, 200, "{v}");
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(vector(&rows[0]), one);
    assert_ne!(vector(&rows[1]), one);
    // hf-inference (native), OpenAI embeddings (translated), and `model` in
    // the body at the root: the same shapes and values.
    for (path, body, endpoint) in [
        (
            "/routes/hf-embeddings",
            json!({"inputs": ["a", "bc"]}),
            "hfemb",
        ),
        (
            "/routes/oa-embeddings",
            json!({"inputs": ["a", "bc"]}),
            "oaemb",
        ),
        (
            "/",
            json!({"model": "oa-embeddings", "inputs": ["a", "bc"]}),
            "oaemb",
        ),
        (
            "/routes/assistant",
            json!({"model": "embeddings", "inputs": ["a", "bc"]}),
            "emb",
        ),
    ] {
        let (status, ep, w) = s.features(path, body).await;
        assert_eq!((status, ep.as_str()), (200, endpoint), "{path}: {w}");
        assert_eq!(w, v, "{path}");
    }
    let (_, _, w) = s
        .features("/routes/oa-embeddings", json!({"inputs": "a"}))
        .await;
    assert_eq!(vector(&w), one);
    // Failover keeps the shape: TEI down, hf-inference answers.
    s.sim.set_mode("emb", Mode::Down);
    let (status, ep, w) = s
        .features("/routes/embeddings", json!({"inputs": "a"}))
        .await;
    assert_eq!((status, ep.as_str()), (200, "hfemb"), "{w}");
    assert_eq!(vector(&w), one);
    s.sim.set_mode("emb", Mode::Ok);
    // Errors, OpenAI-style; none reaches a breaker.
    for (path, body, status, code) in [
        (
            "/routes/no-such-route",
            json!({"inputs": "a"}),
            404,
            "model_not_found",
        ),
        ("/", json!({"inputs": "a"}), 400, "missing_model"),
        (
            "/routes/embeddings",
            json!({"input": "a"}),
            400,
            "invalid_request",
        ),
        (
            "/routes/embeddings",
            json!({"inputs": [1]}),
            400,
            "invalid_request",
        ),
    ] {
        let (got, _, v) = s.features(path, body).await;
        assert_eq!(got, status, "{path}: {v}");
        assert_eq!(v["error"]["code"], code, "{path}: {v}");
    }
    let r = client()
        .post(s.url("/routes/embeddings"))
        .body(r#"{"inputs":"a"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let m = s.td.scrape().await;
    let served = |route: &str, ep: &str, tier: &str| {
        m.val(
            "hfbreaker_gateway_requests_total",
            &[
                ("route", route),
                ("endpoint", ep),
                ("tier", tier),
                ("code", "200"),
            ],
        )
    };
    assert_eq!(served("embeddings", "emb", "primary"), 3.0);
    assert_eq!(served("embeddings", "hfemb", "fallback"), 1.0);
    assert_eq!(served("oa-embeddings", "oaemb", "primary"), 3.0);
    assert!(
        m.sum(
            "hfbreaker_gateway_attempts_total",
            &[
                ("route", "embeddings"),
                ("endpoint", "emb"),
                ("result", "failure")
            ]
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_failure_under_load_fails_over_trips_and_recovers() {
    let s = Arc::new(setup(None).await);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let onset = Instant::now() + Duration::from_millis(500);
    let late_primary = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (s, stop, errors, late) = (
            s.clone(),
            stop.clone(),
            errors.clone(),
            late_primary.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = s.chat("assistant", false).await;
                if r.status() != 200 {
                    errors.fetch_add(1, Ordering::Relaxed);
                } else if endpoint_of(&r) == "primary"
                    && Instant::now() > onset + Duration::from_secs(2)
                {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            n
        }));
    }
    tokio::time::sleep_until(onset.into()).await;
    assert!(s.sim.set_mode("primary", Mode::Status(503)));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The breaker opened from requests (probes run every 20 s). With an
    // 800 ms open period it may be between trials (half_open, reachable
    // only from open) when the scrape comes.
    let m = s.td.scrape().await;
    assert!(
        matches!(m.state("primary"), Some("open" | "half_open")),
        "{}",
        m.hfbreaker_lines()
    );
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for l in load {
        sent += l.await.unwrap();
    }
    assert!(sent as f64 / 3.0 >= 10.0, "load of {sent} requests in 3 s");
    assert_eq!(errors.load(Ordering::Relaxed), 0, "client-visible errors");
    assert_eq!(
        late_primary.load(Ordering::Relaxed),
        0,
        "primary served after onset + 2 s"
    );
    let m = s.td.scrape().await;
    assert!(
        m.val(
            "hfbreaker_gateway_failovers_total",
            &[
                ("route", "assistant"),
                ("from", "primary"),
                ("to", "backup")
            ]
        ) >= 1.0
    );
    assert!(
        m.val(
            "hfbreaker_gateway_attempts_total",
            &[
                ("route", "assistant"),
                ("endpoint", "primary"),
                ("result", "failure"),
                ("reason", "http_5xx")
            ]
        ) >= 3.0
    );
    assert!(
        m.val(
            "hfbreaker_gateway_requests_total",
            &[
                ("route", "assistant"),
                ("endpoint", "backup"),
                ("tier", "fallback"),
                ("code", "200")
            ]
        ) >= 10.0
    );

    // The whole route down: 503, OpenAI-style, with Retry-After.
    assert!(s.sim.set_mode("backup", Mode::Down));
    let mut last = None;
    for _ in 0..10 {
        let r = s.chat("assistant", false).await;
        last = Some((
            r.status(),
            r.headers().get("retry-after").cloned(),
            r.text().await.unwrap(),
        ));
    }
    let (status, retry, body) = last.unwrap();
    assert_eq!(status, 503);
    let retry: u64 = retry
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("primary: open") && msg.contains("backup: open"),
        "{msg}"
    );
    assert_eq!(v["error"]["code"], "route_exhausted");
    let m = s.td.scrape().await;
    assert!(
        m.val(
            "hfbreaker_gateway_requests_total",
            &[
                ("route", "assistant"),
                ("endpoint", "none"),
                ("tier", "exhausted"),
                ("code", "503")
            ]
        ) >= 1.0
    );

    // Back: after the half-open trials, traffic returns to the primary.
    s.sim.set_mode("primary", Mode::Ok);
    s.sim.set_mode("backup", Mode::Ok);
    let start = Instant::now();
    loop {
        let r = s.chat("assistant", false).await;
        if r.status() == 200 && endpoint_of(&r) == "primary" {
            let m = s.td.scrape().await;
            if m.state("primary") == Some("closed") {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "primary never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Send a raw chat body to the gateway.
async fn chat_body(s: &Setup, body: &str) -> reqwest::Response {
    client()
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("gateway answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_answers_only_when_no_endpoint_can() {
    let s = setup_with(
        None,
        ", cache: {ttl: 1m, max_entries: 100, max_bytes: 1048576}",
    )
    .await;
    let asked =
        r#"{"model":"assistant","messages":[{"role":"user","content":"cache me"}],"max_tokens":3}"#;
    let streamed = r#"{"model":"assistant","messages":[{"role":"user","content":"cache me"}],"max_tokens":3,"stream":true}"#;
    let r = chat_body(&s, asked).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-hfbreaker-tier"], "primary");
    assert!(r.headers().get("age").is_none());
    let fresh = r.text().await.unwrap();
    let r = chat_body(&s, streamed).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("data: [DONE]"));

    // Every endpoint of the route down.
    assert!(s.sim.set_mode("primary", Mode::Down));
    assert!(s.sim.set_mode("backup", Mode::Down));
    // The same request, keys reordered and spaced: from the cache.
    let reordered = r#"{ "max_tokens": 3, "messages": [ {"content": "cache me", "role": "user"} ],
        "model": "assistant" }"#;
    let r = chat_body(&s, reordered).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-hfbreaker-tier"], "cache");
    assert_eq!(r.headers()["x-hfbreaker-route"], "assistant");
    assert_eq!(r.headers()["x-hfbreaker-endpoint"], "primary");
    assert_eq!(r.headers()["content-type"], "application/json");
    let age: u64 = r.headers()["age"].to_str().unwrap().parse().unwrap();
    assert!(age <= 60, "{age}");
    assert_eq!(r.text().await.unwrap(), fresh);
    // Another request: the 503 of an exhausted route.
    let other = r#"{"model":"assistant","messages":[{"role":"user","content":"not cached"}],"max_tokens":3}"#;
    let r = chat_body(&s, other).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-hfbreaker-tier"], "exhausted");
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "route_exhausted");
    // Streams are neither stored nor served from the cache.
    let r = chat_body(&s, streamed).await;
    assert_eq!(r.status(), 503);

    let m = s.td.scrape().await;
    assert_eq!(
        m.val(
            "hfbreaker_gateway_cache_hits_total",
            &[("route", "assistant")]
        ),
        1.0
    );
    assert_eq!(
        m.val(
            "hfbreaker_gateway_requests_total",
            &[
                ("route", "assistant"),
                ("endpoint", "primary"),
                ("tier", "cache"),
                ("code", "200")
            ]
        ),
        1.0
    );
    assert_eq!(
        m.val(
            "hfbreaker_gateway_requests_total",
            &[
                ("route", "assistant"),
                ("endpoint", "none"),
                ("tier", "exhausted"),
                ("code", "503")
            ]
        ),
        2.0
    );
    assert_eq!(
        m.val(
            "hfbreaker_gateway_request_duration_seconds_count",
            &[("route", "assistant"), ("tier", "cache")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_openai_errors_and_touches_no_breaker() {
    let s = setup(None).await;
    let post = |body: Vec<u8>, key: Option<&str>| {
        let mut r = client()
            .post(s.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let ok_body = br#"{"model":"assistant","messages":[{"role":"user","content":"x"}]}"#.to_vec();
    let cases: Vec<(Vec<u8>, Option<&str>, u16, &str)> = vec![
        (ok_body.clone(), None, 401, "invalid_api_key"),
        (
            ok_body.clone(),
            Some("sk-wrong-key-123"),
            401,
            "invalid_api_key",
        ),
        (b"{not json".to_vec(), Some(KEY), 400, "invalid_json"),
        (b"[1,2]".to_vec(), Some(KEY), 400, "invalid_json"),
        (
            br#"{"messages":[]}"#.to_vec(),
            Some(KEY),
            400,
            "missing_model",
        ),
        (
            br#"{"model":"nope"}"#.to_vec(),
            Some(KEY),
            404,
            "model_not_found",
        ),
        (vec![b' '; 4096], Some(KEY), 413, "request_too_large"),
    ];
    for (body, key, status, code) in cases {
        let r = post(body, key).await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        let text = r.text().await.unwrap();
        assert!(
            !text.contains("sk-wrong-key-123") && !text.contains(KEY),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], code, "{text}");
    }
    let r = client().get(s.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(s.url("/v1/other"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let m = s.td.scrape().await;
    let text = m.0.clone();
    assert!(!text.contains(KEY) && !text.contains("sk-wrong"));
    assert_eq!(m.sum("hfbreaker_gateway_attempts_total", &[]), 0.0);
    assert_eq!(m.state("primary"), Some("closed"));
    let r = client()
        .post(s.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(json!({"model": "assistant", "input": "x"}).to_string())
        .send()
        .await
        .unwrap();
    // TGI carries no embeddings; the openai fallback's 404 goes back as it is.
    assert_eq!(r.status(), 404);
    assert_eq!(endpoint_of(&r), "backup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_resetting_and_garbage_primaries_fail_over() {
    let s = setup(None).await;
    for (mode, reason) in [
        (Mode::Hang, "timeout"),
        (Mode::Reset, "connect"),
        (Mode::Garbage, "bad_response"),
        (Mode::HugeBody, "bad_response"),
    ] {
        s.sim.set_mode("primary", mode.clone());
        let labels = [
            ("endpoint", "primary"),
            ("result", "failure"),
            ("reason", reason),
        ];
        // A probe of the previous mode still in flight can open the
        // breaker again just after the reset; the request then skips the
        // primary without an attempt. Up to three tries for an attempt.
        let mut m = s.td.scrape().await;
        for _ in 0..3 {
            s.td.daemon
                .admin("primary", hfbreaker::daemon::AdminAction::Reset)
                .unwrap();
            let r = s.chat("assistant", false).await;
            assert_eq!(r.status(), 200, "{mode:?}");
            assert_eq!(endpoint_of(&r), "backup", "{mode:?}");
            m = s.td.scrape().await;
            if m.get("hfbreaker_gateway_attempts_total", &labels).is_some() {
                break;
            }
        }
        assert!(
            m.val("hfbreaker_gateway_attempts_total", &labels) >= 1.0,
            "{mode:?}: {}",
            m.hfbreaker_lines()
        );
    }
    // A 4xx the breaker ignores goes back unchanged and is not retried.
    s.td.daemon
        .admin("primary", hfbreaker::daemon::AdminAction::Reset)
        .unwrap();
    s.sim.set_mode("primary", Mode::Status(422));
    let r = s.chat("assistant", false).await;
    assert_eq!(r.status(), 422);
    assert_eq!(endpoint_of(&r), "primary");
}

/// A test upstream speaking TGI's chat stream: one event, then `gap`
/// between events forever; `cancelled` turns true when its body is dropped.
async fn slow_stream_server(gap: Duration) -> (String, Arc<AtomicBool>) {
    use axum::body::Body;
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let cancelled = Arc::new(AtomicBool::new(false));
    let c = cancelled.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let flag = Flag(c.clone());
            async move {
                let events = futures_util::stream::unfold((0u32, flag), move |(i, flag)| async move {
                    if i > 0 {
                        tokio::time::sleep(gap).await;
                    }
                    let chunk = format!("data: {{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i}\"}}}}]}}\n\n");
                    Some((Ok::<_, std::io::Error>(chunk), (i + 1, flag)))
                });
                axum::response::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(events))
                    .unwrap()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}"), cancelled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_a_stream_cancels_the_upstream_request() {
    let (url, cancelled) = slow_stream_server(Duration::from_millis(50)).await;
    let s = setup(Some(url)).await;
    let mut r = s.chat("assistant", true).await;
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data:"));
    let _ = r.chunk().await;
    drop(r);
    let start = Instant::now();
    while !cancelled.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "upstream never cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = s.td.scrape().await;
    assert_eq!(
        m.val(
            "hfbreaker_gateway_in_flight_requests",
            &[("route", "assistant")]
        ),
        0.0
    );
    assert_eq!(
        m.state("primary"),
        Some("closed"),
        "a client leaving is no failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stalls_ends_with_an_error_event_and_counts() {
    // One event, then nothing for longer than first_byte_timeout (400 ms).
    let (url, _) = slow_stream_server(Duration::from_secs(30)).await;
    let s = setup(Some(url)).await;
    let r = s.chat("assistant", true).await;
    assert_eq!(r.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(5), r.text())
        .await
        .unwrap()
        .unwrap();
    assert!(
        text.contains("\"error\"") && text.contains("upstream_error"),
        "{text}"
    );
    let m = s.td.scrape().await;
    assert_eq!(
        m.val(
            "hfbreaker_gateway_attempts_total",
            &[
                ("endpoint", "primary"),
                ("result", "failure"),
                ("reason", "timeout")
            ]
        ),
        1.0
    );
}

#[tokio::test]
async fn no_key_file_and_no_opt_in_refuses_to_start() {
    let sim = sim(vec![("primary", VirtualSpec::new(Protocol::Tgi, "m"))]).await;
    let yaml = format!(
        "endpoints:\n  - {{name: p, kind: tgi, url: '{}'}}\nroutes:\n  - {{name: r, endpoints: [p]}}\n",
        sim.url("primary")
    );
    let td = TestDaemon::start(&yaml).await;
    assert!(matches!(
        Gateway::new(td.daemon.clone()),
        Err(StartError::NoClientKeys)
    ));
}
