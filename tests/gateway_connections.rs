//! The gateway's own HTTP/1 connections to plain-HTTP upstreams
//! (`src/gateway/client.rs`) against a scripted upstream that counts its
//! connections: keep-alive reuse, an upstream that closes after an answer
//! (with `Connection: close` or silently while idle), and the faults
//! (hang, reset before and in the middle of the body, garbage, a body that
//! trickles past the request's timeout). Each fault fails over to the
//! simulator's backup and is counted with the same reason as through reqwest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hfbreaker::sim::{Protocol, Sim, VirtualSpec};
use serde_json::json;
use testkit::{Scrape, TestDaemon, client, sim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "sk-gw-conn-8a1d3f";
const COMPLETION: &str = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;

/// What the scripted upstream does with each request.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// Answer and keep the connection.
    KeepAlive,
    /// Answer with `Connection: close`, then close.
    CloseHeader,
    /// Answer (keep-alive by its headers), then close 50 ms later.
    CloseWhenIdle,
    /// Read the request, never answer.
    Hang,
    /// Read the request, then reset the connection.
    Reset,
    /// Head and part of the body, then reset.
    ResetMidBody,
    /// Not HTTP.
    Garbage,
    /// Head at once, then the body one byte every 100 ms.
    Trickle,
}

struct Upstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

async fn upstream(script: Script) -> Upstream {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s, script, c.clone(), r.clone()));
        }
    });
    Upstream {
        addr,
        connections,
        requests,
    }
}

/// One request's head and body from `s`: its request line, or `None` when
/// the peer closed.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let line = head.lines().next().unwrap_or("").to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return Some(line);
            }
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn answer(extra: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{COMPLETION}",
        COMPLETION.len()
    )
}

/// Close with a TCP RST. (Deprecated because a non-zero linger blocks on
/// drop; zero does not.)
#[allow(deprecated)]
async fn reset(s: TcpStream) {
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Serves one connection. Only the gateway's connections and requests are
/// counted: the daemon's own probe (`GET /health`, whenever its randomised
/// first run falls inside the test) would otherwise add one.
async fn serve(
    mut s: TcpStream,
    script: Script,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    let mut first = true;
    while let Some(line) = read_request(&mut s, &mut buf).await {
        if line.starts_with("get /health") {
            // A probe: answer it like any request, uncounted.
        } else {
            if first {
                connections.fetch_add(1, Ordering::SeqCst);
            }
            requests.fetch_add(1, Ordering::SeqCst);
        }
        first = false;
        match script {
            Script::KeepAlive => {
                if s.write_all(answer("").as_bytes()).await.is_err() {
                    return;
                }
            }
            Script::CloseHeader => {
                let _ = s
                    .write_all(answer("connection: close\r\n").as_bytes())
                    .await;
                return;
            }
            Script::CloseWhenIdle => {
                let _ = s.write_all(answer("").as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            Script::Hang => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            Script::Reset => return reset(s).await,
            Script::ResetMidBody => {
                let a = answer("");
                let _ = s.write_all(&a.as_bytes()[..a.len() - 20]).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                return reset(s).await;
            }
            Script::Garbage => {
                let _ = s.write_all(b"\x00\x01garbage, not HTTP\r\n\r\n").await;
                return;
            }
            Script::Trickle => {
                let a = answer("");
                let head = a.find("\r\n\r\n").unwrap() + 4;
                if s.write_all(&a.as_bytes()[..head]).await.is_err() {
                    return;
                }
                for b in a.as_bytes()[head..].iter() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if s.write_all(&[*b]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

struct Setup {
    td: TestDaemon,
    gw: SocketAddr,
    _sim: Sim,
    _keys: tempfile::TempDir,
}

/// The daemon with route `r` = the scripted `primary`, then the simulator's
/// `backup`; probes every 20 s so that only requests count.
async fn setup(primary: SocketAddr) -> Setup {
    let sim = sim(vec![("backup", VirtualSpec::new(Protocol::Tgi, "m"))]).await;
    let (keys, key_file) = testkit::key_file(KEY);
    let yaml = format!(
        "global:
  interval: 20s
  timeout: 400ms
  breaker: {{failure_threshold: 50}}
gateway:
  client_keys_file: {keys}
  timeout: 2s
  first_byte_timeout: 1s
endpoints:
  - {{name: primary, kind: tgi, url: 'http://{primary}', probe: health}}
  - {{name: backup, kind: tgi, url: '{backup}', probe: health}}
routes:
  - {{name: r, endpoints: [primary, backup]}}
",
        keys = key_file.display(),
        backup = sim.url("backup"),
    );
    let td = TestDaemon::start(&yaml).await;
    let gw = td.start_gateway().await;
    Setup {
        td,
        gw,
        _sim: sim,
        _keys: keys,
    }
}

impl Setup {
    /// One chat completion: the status and the endpoint that answered.
    async fn chat(&self) -> (u16, String) {
        let r = client()
            .post(format!("http://{}/v1/chat/completions", self.gw))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(
                json!({"model": "r", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
            )
            .send()
            .await
            .expect("gateway answers");
        let status = r.status().as_u16();
        let ep = r
            .headers()
            .get("x-hfbreaker-endpoint")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = r.text().await.unwrap();
        if status == 200 {
            assert!(body.contains("chat.completion"), "{body}");
        }
        (status, ep)
    }

    async fn primary_failures(&self, reason: &str) -> f64 {
        let m: Scrape = self.td.scrape().await;
        m.val(
            "hfbreaker_gateway_attempts_total",
            &[
                ("endpoint", "primary"),
                ("result", "failure"),
                ("reason", reason),
            ],
        )
    }

    async fn primary_failures_total(&self) -> f64 {
        let m: Scrape = self.td.scrape().await;
        m.sum(
            "hfbreaker_gateway_attempts_total",
            &[("endpoint", "primary"), ("result", "failure")],
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_are_reused() {
    let up = upstream(Script::KeepAlive).await;
    let s = setup(up.addr).await;
    for _ in 0..20 {
        assert_eq!(s.chat().await, (200, "primary".to_string()));
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 20);
    assert_eq!(up.connections.load(Ordering::SeqCst), 1, "one connection");
    // Concurrent requests open what they need, and reuse it afterwards.
    let s = Arc::new(s);
    let burst = |s: Arc<Setup>| async move {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.chat().await })
            })
            .collect();
        for t in tasks {
            // A slow machine's timeout would fail over and open another.
            assert_eq!(t.await.unwrap(), (200, "primary".to_string()));
        }
    };
    burst(s.clone()).await;
    let after_first = up.connections.load(Ordering::SeqCst);
    assert!((1..=4).contains(&after_first), "{after_first}");
    for _ in 0..5 {
        burst(s.clone()).await;
    }
    let n = up.connections.load(Ordering::SeqCst);
    assert!(
        n <= 4,
        "{n} connections for 4 concurrent requests (first burst: {after_first})"
    );
    assert_eq!(s.primary_failures_total().await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_closing_its_connections_costs_no_failure() {
    for script in [Script::CloseHeader, Script::CloseWhenIdle] {
        let up = upstream(script).await;
        let s = setup(up.addr).await;
        for _ in 0..5 {
            assert_eq!(s.chat().await, (200, "primary".to_string()), "{script:?}");
            // Long enough for the close to arrive.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        assert_eq!(up.connections.load(Ordering::SeqCst), 5, "{script:?}");
        assert_eq!(s.primary_failures_total().await, 0.0, "{script:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_fail_over_with_their_reason() {
    for (script, reason) in [
        (Script::Hang, "timeout"),
        (Script::Reset, "connect"),
        (Script::ResetMidBody, "connect"),
        (Script::Garbage, "bad_response"),
    ] {
        let up = upstream(script).await;
        let s = setup(up.addr).await;
        assert_eq!(s.chat().await, (200, "backup".to_string()), "{script:?}");
        assert_eq!(s.primary_failures(reason).await, 1.0, "{script:?}");
        // The broken connection is not reused: the next attempt opens another.
        assert_eq!(s.chat().await, (200, "backup".to_string()), "{script:?}");
        assert_eq!(up.connections.load(Ordering::SeqCst), 2, "{script:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_past_the_timeout_counts_as_one() {
    let up = upstream(Script::Trickle).await;
    let s = setup(up.addr).await;
    let start = std::time::Instant::now();
    let (status, _) = s.chat().await;
    // The 2 s request timeout went by while the body trickled: no time is
    // left for the backup.
    assert_eq!(status, 503);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(s.primary_failures("timeout").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_a_connect_failure() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let s = setup(addr).await;
    assert_eq!(s.chat().await, (200, "backup".to_string()));
    assert_eq!(s.primary_failures("connect").await, 1.0);
}
