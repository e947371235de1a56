//! The gateway against slow peers, through its real port: an upstream that
//! trickles its answer, a client that trickles its request body, and
//! `max_in_flight` shedding to the fallback. Each ends within the
//! configured bounds, leaks nothing and leaves the gateway serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hfbreaker::config::HumanDuration;
use hfbreaker::sim::{Mode, Protocol, Sim, VirtualSpec};
use serde_json::{Value, json};
use testkit::{TestDaemon, client, sim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "sk-gw-faults-81d3a7";
/// gateway.timeout in these tests.
const TIMEOUT: Duration = Duration::from_secs(2);
/// One byte every GAP: slower than any deadline allows, faster than
/// first_byte_timeout (400 ms), so only the overall timeout stops it.
const GAP: Duration = Duration::from_millis(200);

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

    async fn chat(&self, stream: bool) -> reqwest::Response {
        client()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(
                json!({"model": "assistant", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 3, "stream": stream})
                .to_string(),
            )
            .send()
            .await
            .expect("gateway answers")
    }

    async fn in_flight(&self) -> f64 {
        self.td.scrape().await.val(
            "hfbreaker_gateway_in_flight_requests",
            &[("route", "assistant")],
        )
    }
}

fn endpoint_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-hfbreaker-endpoint")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Route `assistant`: [primary, backup], both TGI unless `primary_url` is
/// given; `primary_extra` is added to the primary's YAML map.
async fn setup(primary_url: Option<String>, primary_extra: &str) -> Setup {
    let sim = sim(vec![
        ("primary", VirtualSpec::new(Protocol::Tgi, "org/zephyr")),
        ("backup", VirtualSpec::new(Protocol::Tgi, "org/zephyr")),
    ])
    .await;
    let (keys, key_file) = testkit::key_file(KEY);
    let primary = primary_url.unwrap_or_else(|| sim.url("primary"));
    let yaml = format!(
        "global:
  interval: 20s
  timeout: 400ms
  breaker:
    failure_threshold: 3
    open_duration: 800ms
    max_open_duration: 2s
gateway:
  client_keys_file: {keys}
  timeout: {timeout}ms
  first_byte_timeout: 400ms
endpoints:
  - {{name: primary, kind: tgi, url: '{primary}', probe: health{primary_extra}}}
  - {{name: backup, kind: tgi, url: '{backup}', probe: health}}
routes:
  - {{name: assistant, endpoints: [primary, backup]}}
",
        keys = key_file.display(),
        timeout = TIMEOUT.as_millis(),
        backup = sim.url("backup"),
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

/// Read one HTTP request (head and `Content-Length` body).
async fn read_request(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return true;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An upstream that answers every request with `head` at once, then
/// `body` one byte every [`GAP`]. `hung_up` turns true once a write fails:
/// the gateway closed the connection.
async fn trickler(head: &'static str, body: &'static str) -> (String, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let hung_up = Arc::new(AtomicBool::new(false));
    let flag = hung_up.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let flag = flag.clone();
            tokio::spawn(async move {
                if !read_request(&mut s).await || s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for b in body.as_bytes() {
                    let sent = s.write_all(&[*b]).await.and(s.flush().await);
                    if sent.is_err() {
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    tokio::time::sleep(GAP).await;
                }
            });
        }
    });
    (url, hung_up)
}

async fn wait_for(what: &str, flag: &AtomicBool, within: Duration) {
    let start = Instant::now();
    while !flag.load(Ordering::SeqCst) {
        assert!(start.elapsed() < within, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const PADDING: &str = "                                                                ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_trickling_its_head_fails_over_at_first_byte_timeout() {
    let (url, hung_up) = trickler(
        "",
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    )
    .await;
    let s = setup(Some(url), "").await;
    let start = Instant::now();
    let r = s.chat(false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(endpoint_of(&r), "backup");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    wait_for(
        "the gateway kept the trickling connection",
        &hung_up,
        Duration::from_secs(2),
    )
    .await;
    let m = s.td.scrape().await;
    assert_eq!(
        m.val(
            "hfbreaker_gateway_attempts_total",
            &[
                ("route", "assistant"),
                ("endpoint", "primary"),
                ("result", "failure"),
                ("reason", "timeout")
            ]
        ),
        1.0
    );
    assert_eq!(s.in_flight().await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_trickling_its_body_ends_within_the_timeout() {
    // Headers at once, then a body far slower than the request's timeout.
    let (url, hung_up) = trickler(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 70\r\n\r\n",
        "{\"object\":\"chat.completion\",\"choices\":[]                             }",
    )
    .await;
    let s = setup(Some(url), "").await;
    let start = Instant::now();
    let r = s.chat(false).await;
    let took = start.elapsed();
    let status = r.status().as_u16();
    let endpoint = endpoint_of(&r);
    let text = r.text().await.unwrap();
    assert!(took < TIMEOUT + Duration::from_millis(500), "{took:?}");
    // The attempt used the whole deadline: a clear 503 naming the timeout.
    assert_eq!((status, endpoint.as_str()), (503, "none"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "route_exhausted");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("primary: closed, last failure timeout"),
        "{text}"
    );
    wait_for(
        "the gateway kept the trickling connection",
        &hung_up,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(s.in_flight().await, 0.0);
    // And the gateway still serves.
    s.td.daemon
        .admin("primary", hfbreaker::daemon::AdminAction::ForceOpen)
        .unwrap();
    let r = s.chat(false).await;
    assert_eq!(
        (r.status().as_u16(), endpoint_of(&r).as_str()),
        (200, "backup")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_trickling_its_stream_ends_within_the_timeout() {
    // A close-delimited SSE stream, one byte at a time: never a gap over
    // first_byte_timeout, never done before the request's timeout.
    let (url, hung_up) = trickler(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
        concat!(
            ":\n\n",
            "data: {\"object\":\"chat.completion.chunk\",\"choices\":[]}\n\n",
            "data: {\"object\":\"chat.completion.chunk\",\"choices\":[]}\n\n",
            "data: [DONE]\n\n"
        ),
    )
    .await;
    let s = setup(Some(url), "").await;
    let start = Instant::now();
    let r = s.chat(true).await;
    let status = r.status().as_u16();
    let endpoint = endpoint_of(&r);
    let text = tokio::time::timeout(Duration::from_secs(5), r.text())
        .await
        .expect("the stream ends")
        .unwrap_or_default();
    let took = start.elapsed();
    assert!(took < TIMEOUT + Duration::from_millis(500), "{took:?}");
    assert_eq!((status, endpoint.as_str()), (200, "primary"), "{text}");
    // Committed at its first line (a comment); ended at the deadline with
    // an error event, not inside the event that was arriving.
    assert!(text.starts_with(":\n\ndata: {\"error\":"), "{text}");
    assert!(text.contains("upstream_error"), "{text}");
    assert!(!text.contains("chat.completion.chunk"), "{text}");
    wait_for(
        "the gateway kept the trickling connection",
        &hung_up,
        Duration::from_secs(2),
    )
    .await;
    let m = s.td.scrape().await;
    assert_eq!(
        m.val(
            "hfbreaker_gateway_attempts_total",
            &[
                ("route", "assistant"),
                ("endpoint", "primary"),
                ("result", "failure"),
                ("reason", "timeout")
            ]
        ),
        1.0,
        "{}",
        m.hfbreaker_lines()
    );
    assert_eq!(s.in_flight().await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_body_is_cut_off() {
    let s = setup(None, "").await;
    let body = format!(
        "{{\"model\":\"assistant\",\"messages\":[{{\"role\":\"user\",\"content\":\"{PADDING}\"}}]}}"
    );
    let mut c = TcpStream::connect(s.gw).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let (mut rd, mut wr) = c.into_split();
    let writer = tokio::spawn(async move {
        for b in body.as_bytes() {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(GAP).await;
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        TIMEOUT + Duration::from_secs(2),
        rd.read_to_end(&mut answer),
    )
    .await;
    let took = start.elapsed();
    writer.abort();
    assert!(read.is_ok(), "the connection was still open after {took:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(took < TIMEOUT + Duration::from_millis(500), "{took:?}");
    // Nothing was attempted, and the gateway still serves.
    let m = s.td.scrape().await;
    assert_eq!(m.sum("hfbreaker_gateway_attempts_total", &[]), 0.0);
    let r = s.chat(false).await;
    assert_eq!(
        (r.status().as_u16(), endpoint_of(&r).as_str()),
        (200, "primary")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_sheds_to_the_fallback_without_queueing() {
    let s = Arc::new(setup(None, ", max_in_flight: 1").await);
    s.sim.set_mode(
        "primary",
        Mode::Slow(HumanDuration(Duration::from_millis(350))),
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            // The first takes the primary's only slot; the rest arrive while it is held.
            tokio::time::sleep(Duration::from_millis(if i == 0 { 0 } else { 100 })).await;
            let t = Instant::now();
            let r = s.chat(false).await;
            (r.status().as_u16(), endpoint_of(&r), t.elapsed())
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let primary: Vec<_> = results.iter().filter(|r| r.1 == "primary").collect();
    let backup: Vec<_> = results.iter().filter(|r| r.1 == "backup").collect();
    assert!(results.iter().all(|r| r.0 == 200), "{results:?}");
    assert_eq!((primary.len(), backup.len()), (1, 3), "{results:?}");
    // Shed at once, not queued behind the slow primary.
    for r in &backup {
        assert!(r.2 < Duration::from_millis(250), "{results:?}");
    }
    assert!(primary[0].2 >= Duration::from_millis(350), "{results:?}");
    assert!(start.elapsed() < Duration::from_millis(1000));
    let m = s.td.scrape().await;
    assert_eq!(
        m.val(
            "hfbreaker_gateway_attempts_total",
            &[
                ("route", "assistant"),
                ("endpoint", "primary"),
                ("result", "shed")
            ]
        ),
        3.0,
        "{}",
        m.hfbreaker_lines()
    );
    assert_eq!(
        m.val(
            "hfbreaker_gateway_requests_total",
            &[
                ("route", "assistant"),
                ("endpoint", "backup"),
                ("tier", "fallback"),
                ("code", "200")
            ]
        ),
        3.0
    );
    // Shedding is no failure: the primary's breaker saw one success.
    assert_eq!(m.state("primary"), Some("closed"));
    assert_eq!(s.in_flight().await, 0.0);
    // The slot is back: the next request goes to the primary.
    let r = s.chat(false).await;
    assert_eq!(endpoint_of(&r), "primary");
}
