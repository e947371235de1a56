//! The real binary's gateway against a scripted upstream that records what
//! it received (`testkit::scripted`): the endpoint's own token goes
//! upstream and the client's key never does, and the token shows in no
//! answer, metric or log line; a client that leaves a non-streamed request
//! cancels the upstream request; an upstream reset in the middle of a
//! stream ends it with an SSE error event and counts as a failure; and
//! after these faults the process holds no more descriptors than before
//! and no request is in flight.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::scripted::{Gate, Received, Reply, Scripted};
use testkit::{Proc, client, scrape_url};

const KEY: &str = "sk-gw-client-key-3e8b51";
const TOKEN: &str = "hf_endpointToken7Qz4VwX2";
const COMPLETION: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;
const CHUNK: &str =
    r#"data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}"#;

/// The daemon (real binary, debug log) with its gateway; `endpoints` and
/// `routes` are YAML lists. Returns it with the gateway's and the web
/// listener's base URLs.
async fn start(dir: &std::path::Path, endpoints: &str, routes: &str) -> (Proc, String, String) {
    let keys = dir.join("keys");
    std::fs::write(&keys, format!("{KEY}\n")).unwrap();
    let yaml = format!(
        "global:
  interval: 20s
  timeout: 1s
  breaker: {{failure_threshold: 50}}
gateway:
  client_keys_file: {keys}
  timeout: 5s
  first_byte_timeout: 3s
endpoints:
{endpoints}routes:
{routes}",
        keys = keys.display()
    );
    tokio::task::spawn_blocking(move || {
        let p = testkit::binary!().daemon(
            &yaml,
            &["--gateway.listen-address=127.0.0.1:0", "--log.level=debug"],
            &[],
        );
        let gw = p.gateway_base(Duration::from_secs(20));
        let web = format!(
            "http://{}",
            p.log_address("msg=listening", Duration::from_secs(20))
        );
        (p, gw, web)
    })
    .await
    .unwrap()
}

fn chat(route: &str, marker: &str, stream: bool) -> Value {
    json!({"model": route, "messages": [{"role": "user", "content": marker}], "max_tokens": 3, "stream": stream})
}

async fn post(c: &reqwest::Client, gw: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
    c.post(format!("{gw}/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
}

/// A whole answer as text: status line, headers and body.
async fn whole(r: reqwest::Response) -> String {
    let mut s = format!("{}\n", r.status());
    for (k, v) in r.headers() {
        s.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
    }
    s + &r.text().await.unwrap()
}

fn sent_by_route(up: &Scripted, prefix: &str) -> Vec<Received> {
    up.posts()
        .into_iter()
        .filter(|r| r.path.starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_token_goes_upstream_and_the_client_key_never_does() {
    let up = Scripted::start(|r| {
        if r.method != "POST" {
            Reply::empty()
        } else if String::from_utf8_lossy(&r.body).contains("fail") {
            Reply::json(500, r#"{"error":"simulated failure"}"#)
        } else {
            Reply::json(200, COMPLETION)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let u = up.url();
    let (p, gw, web) = start(
        dir.path(),
        &format!(
            "  - {{name: withtoken, kind: tgi, url: '{u}/tok', probe: health, token_file: {}}}
  - {{name: notoken, kind: tgi, url: '{u}/open', probe: health}}
",
            token_file.display()
        ),
        "  - {name: r, endpoints: [withtoken]}\n  - {name: r2, endpoints: [notoken]}\n",
    )
    .await;
    let c = client();
    let mut answers = String::new();
    for (route, marker, want) in [
        ("r", "hello", 200),
        ("r", "fail", 503),
        ("r2", "hello", 200),
    ] {
        let r = post(&c, &gw, &chat(route, marker, false)).await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{route} {marker}");
        answers += &whole(r).await;
    }
    // Wrong key, bad body: answers that echo what they can.
    let r = c
        .post(format!("{gw}/v1/chat/completions"))
        .bearer_auth("sk-wrong")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    answers += &whole(r).await;

    let with = sent_by_route(&up, "/tok/");
    assert_eq!(with.len(), 2, "{with:?}");
    for r in &with {
        assert_eq!(r.header("authorization"), Some(&*format!("Bearer {TOKEN}")));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(k, _)| k == "authorization")
                .count(),
            1
        );
    }
    let without = sent_by_route(&up, "/open/");
    assert_eq!(without.len(), 1);
    assert_eq!(
        without[0].header("authorization"),
        None,
        "{}",
        without[0].head
    );
    for r in up.received() {
        assert!(
            !r.text().contains(KEY),
            "the client key went upstream: {}",
            r.text()
        );
    }
    assert!(!answers.contains(TOKEN), "{answers}");
    let m = scrape_url(&web).await;
    assert!(m.0.contains("hfbreaker_gateway_requests_total"));
    assert!(!m.0.contains(TOKEN) && !m.0.contains(KEY));
    for path in ["/api/v1/breakers", "/api/v1/routes"] {
        let body = c.get(format!("{web}{path}")).send().await.unwrap();
        let body = body.text().await.unwrap();
        assert!(!body.contains(TOKEN), "{path}: {body}");
    }
    let log = p.stderr();
    assert!(log.contains("gateway attempt failed"), "{log}");
    assert!(!log.contains(TOKEN) && !log.contains(KEY), "{log}");
}

/// Descriptors the process holds now.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The daemon with route `r` = [primary (`/p`), backup (`/b`)] on one
/// scripted upstream; the primary answers what `primary` holds.
async fn faults_setup(
    dir: &std::path::Path,
    primary: Arc<Mutex<Reply>>,
) -> (Scripted, Proc, String, String) {
    let up = Scripted::primary_and_backup(primary, Reply::json(200, COMPLETION)).await;
    let u = up.url();
    let (p, gw, web) = start(
        dir,
        &format!(
            "  - {{name: primary, kind: tgi, url: '{u}/p', probe: health}}
  - {{name: backup, kind: tgi, url: '{u}/b', probe: health}}
"
        ),
        "  - {name: r, endpoints: [primary, backup]}\n",
    )
    .await;
    (up, p, gw, web)
}

async fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnects_and_mid_stream_resets_end_cleanly_and_leak_nothing() {
    let reply = Arc::new(Mutex::new(Reply::json(200, COMPLETION)));
    let dir = tempfile::tempdir().unwrap();
    let (up, p, gw, web) = faults_setup(dir.path(), reply.clone()).await;
    let pid = p.pid();
    // Warm up: both endpoints' connections made, one scrape served.
    let c = client();
    let r = post(&c, &gw, &chat("r", "warm", false)).await.unwrap();
    assert_eq!(r.headers()["x-hfbreaker-endpoint"], "primary");
    drop((r, c));
    let _ = scrape_url(&web).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = fds(pid);
    const ROUNDS: usize = 3;

    // 1. A non-streaming client that gives up: the upstream request goes too.
    *reply.lock().unwrap() = Reply::Held(Gate::new(), Box::new(Reply::json(200, COMPLETION)));
    for i in 0..ROUNDS {
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let marker = format!("leave-{i}");
        let err = post(&impatient, &gw, &chat("r", &marker, false)).await;
        assert!(err.is_err_and(|e| e.is_timeout()));
        wait_until(
            "the gateway kept the upstream request of a client that left",
            Duration::from_secs(5),
            || up.dropped() == i + 1,
        )
        .await;
        assert_eq!(
            sent_by_route(&up, "/p/")
                .iter()
                .filter(|r| r.text().contains(&marker))
                .count(),
            1
        );
    }
    // Nothing was retried on the backup for them, and nothing counted.
    assert_eq!(sent_by_route(&up, "/b/").len(), 0);

    // 2. An upstream reset in the middle of a stream: an SSE error event.
    let events = vec![format!("{CHUNK}\n\n"), format!("{CHUNK}\n\n")];
    let relayed_len = 2 * (CHUNK.len() + 2);
    for _ in 0..ROUNDS {
        // The upstream resets once the events reached the client.
        let gate = Gate::new();
        *reply.lock().unwrap() = Reply::SseThenReset(events.clone(), gate.clone());
        let mut r = post(&client(), &gw, &chat("r", "stream", true))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-hfbreaker-endpoint"], "primary");
        let read = async {
            let mut got = Vec::new();
            while let Some(chunk) = r.chunk().await.unwrap() {
                got.extend_from_slice(&chunk);
                if got.len() >= relayed_len {
                    gate.open();
                }
            }
            String::from_utf8(got).unwrap()
        };
        let text = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("the stream ends");
        let (relayed, rest) = text.split_at(relayed_len);
        assert_eq!(relayed, format!("{CHUNK}\n\n{CHUNK}\n\n"), "{text}");
        assert!(rest.starts_with("data: {\"error\":"), "{text}");
        assert!(
            rest.contains("upstream_error") && !rest.contains("[DONE]"),
            "{text}"
        );
    }
    let m = scrape_url(&web).await;
    let failures = [
        ("route", "r"),
        ("endpoint", "primary"),
        ("result", "failure"),
    ];
    assert_eq!(
        m.sum("hfbreaker_gateway_attempts_total", &failures),
        ROUNDS as f64,
        "{}",
        m.hfbreaker_lines()
    );
    assert_eq!(m.sum("hfbreaker_gateway_in_flight_requests", &[]), 0.0);

    // 3. Reset before any answer: the backup serves.
    *reply.lock().unwrap() = Reply::Reset;
    for _ in 0..ROUNDS {
        let r = post(&client(), &gw, &chat("r", "reset", false))
            .await
            .unwrap();
        assert_eq!(r.headers()["x-hfbreaker-endpoint"], "backup");
    }

    // Back to where it started: descriptors, and nothing in flight.
    let start = Instant::now();
    let after = loop {
        let n = fds(pid);
        if n <= before + 2 || start.elapsed() > Duration::from_secs(5) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("descriptors: {before} before the faults, {after} after");
    assert!(
        after <= before + 2,
        "descriptors: {before} before, {after} after"
    );
    let m = scrape_url(&web).await;
    assert_eq!(m.sum("hfbreaker_gateway_in_flight_requests", &[]), 0.0);
    assert_eq!(
        m.sum("hfbreaker_gateway_attempts_total", &failures),
        (2 * ROUNDS) as f64,
        "{}",
        m.hfbreaker_lines()
    );
}
