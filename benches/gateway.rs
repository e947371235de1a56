//! The same fast upstream (nginx answering a fixed chat completion) reached
//! directly, through HAProxy, through the LiteLLM proxy and through the
//! hfbreaker gateway: added latency on one keep-alive connection (mean, p99)
//! and, under wrk at 8 connections, requests/s and the proxy's own CPU per
//! request (from /proc). Non-streaming chat completions with a small body.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::bench::guard;
use testkit::procfs::cpu_seconds;
use testkit::{Proc, find_tool, free_port};

const KEY: &str = "sk-bench-gateway-0001";
/// Requests timed one after another on one connection (LiteLLM: `SLOW_N`).
const LATENCY_N: usize = 5_000;
const SLOW_N: usize = 300;
/// wrk at 8 connections for this long per path.
const LOAD: Duration = Duration::from_secs(10);
const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}}"#;

fn body() -> String {
    r#"{"model":"bench","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}"#
        .to_string()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Until `addr` accepts a connection (or `limit` passes, or `p` exits).
fn wait_listening(p: &mut Proc, addr: SocketAddr, limit: Duration, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(!p.exited(), "{what} exited:\n{}{}", p.stdout(), p.stderr());
        assert!(
            start.elapsed() < limit,
            "{what} did not listen:\n{}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// nginx with one process (no master) answering a fixed chat completion.
fn start_nginx(nginx: &Path) -> Proc {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display();
    let port = free_port();
    let conf = format!(
        "worker_processes 1; master_process off; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 100000000; keepalive_timeout 600s;
  client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
  server {{
    listen 127.0.0.1:{port};
    location = /v1/chat/completions {{ default_type application/json; return 200 '{COMPLETION}'; }}
    location / {{ default_type text/plain; return 200 'ok'; }}
  }}
}}
"
    );
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, conf).expect("nginx.conf written");
    let mut cmd = Command::new(nginx);
    cmd.arg("-p").arg(dir.path()).arg("-c").arg(&file);
    let mut p = Proc::external(&mut cmd, Some(dir), loopback(port)).expect("nginx starts");
    wait_listening(&mut p, loopback(port), Duration::from_secs(10), "nginx");
    p
}

/// HAProxy in http mode, keep-alive on both sides, in front of `upstream`.
fn start_haproxy(haproxy: &Path, upstream: SocketAddr) -> Proc {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let conf = format!(
        "global
  maxconn 1000
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  option http-keep-alive
  http-reuse always
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  server up {upstream}
"
    );
    let file = dir.path().join("haproxy.cfg");
    std::fs::write(&file, conf).expect("haproxy.cfg written");
    let mut cmd = Command::new(haproxy);
    cmd.arg("-db").arg("-f").arg(&file);
    let mut p = Proc::external(&mut cmd, Some(dir), loopback(port)).expect("haproxy starts");
    wait_listening(&mut p, loopback(port), Duration::from_secs(10), "haproxy");
    p
}

/// The daemon (`bin`) with its gateway: one key, one route to `upstream`,
/// probes once a day so that only requests run.
fn start_gateway(
    bin: &testkit::Binary,
    upstream: SocketAddr,
) -> (Proc, SocketAddr, tempfile::TempDir) {
    let keys = tempfile::tempdir().expect("temp dir");
    let key_file = keys.path().join("keys");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("keys written");
    let port = free_port();
    let yaml = format!(
        "global:\n  interval: 24h\ngateway:\n  client_keys_file: {}\nendpoints:\n  - {{name: up, kind: tgi, url: 'http://{upstream}', probe: health}}\nroutes:\n  - {{name: bench, endpoints: [up]}}\n",
        key_file.display()
    );
    let gw = format!("--gateway.listen-address=127.0.0.1:{port}");
    let mut p = bin.daemon(&yaml, &["--log.level=warn", &gw], &[]);
    wait_listening(&mut p, loopback(port), Duration::from_secs(20), "hfbreaker");
    (p, loopback(port), keys)
}

/// `litellm` of the venv scripts/bench makes, with `upstream` as an
/// OpenAI-compatible model `bench`, one worker.
fn start_litellm(litellm: &Path, upstream: SocketAddr) -> Proc {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let conf = format!(
        "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/bench\n      api_base: http://{upstream}/v1\n      api_key: sk-none\nlitellm_settings:\n  telemetry: false\ngeneral_settings:\n  master_key: {KEY}\n"
    );
    let file = dir.path().join("litellm.yaml");
    std::fs::write(&file, conf).expect("litellm.yaml written");
    let mut cmd = Command::new(litellm);
    cmd.arg("--config")
        .arg(&file)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--num_workers", "1"])
        .env("LITELLM_LOG", "ERROR")
        .env("LITELLM_MODE", "PRODUCTION")
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("DISABLE_SCHEMA_UPDATE", "True");
    let mut p = Proc::external(&mut cmd, Some(dir), loopback(port)).expect("litellm starts");
    wait_listening(&mut p, loopback(port), Duration::from_secs(180), "litellm");
    p
}

/// One HTTP/1.1 keep-alive connection sending the same POST.
struct Conn {
    s: TcpStream,
    req: Vec<u8>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(addr: SocketAddr, auth: bool) -> Conn {
        let s = TcpStream::connect(addr).expect("connects");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let body = body();
        let auth = if auth {
            format!("Authorization: Bearer {KEY}\r\n")
        } else {
            String::new()
        };
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Conn {
            s,
            req: req.into_bytes(),
            buf: Vec::with_capacity(8192),
        }
    }

    /// One request; returns the status.
    fn round_trip(&mut self) -> u16 {
        self.s.write_all(&self.req).expect("request sent");
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        loop {
            let n = self.s.read(&mut chunk).expect("response read");
            assert!(n > 0, "connection closed mid-response");
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(status) = complete(&self.buf) {
                return status;
            }
        }
    }
}

/// The status once `buf` holds a whole response (Content-Length or chunked).
fn complete(buf: &[u8]) -> Option<u16> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?.to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    if let Some(v) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        let len: usize = v.trim().parse().ok()?;
        return (buf.len() >= end + len).then_some(status);
    }
    if head.contains("transfer-encoding: chunked") {
        return buf[end..].ends_with(b"0\r\n\r\n").then_some(status);
    }
    Some(status)
}

/// Latencies of `n` requests on one connection, after `n / 10` unmeasured ones.
fn latencies(addr: SocketAddr, auth: bool, n: usize) -> Vec<f64> {
    let mut c = Conn::new(addr, auth);
    for _ in 0..n / 10 {
        assert_eq!(c.round_trip(), 200, "warm-up request failed");
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let status = c.round_trip();
        out.push(t.elapsed().as_secs_f64());
        assert_eq!(status, 200);
    }
    out
}

fn mean_p99(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let p99 = v[((v.len() as f64 * 0.99).ceil() as usize).min(v.len()) - 1];
    (mean, p99)
}

/// CPU seconds of `pid` and every descendant.
fn tree_cpu(pid: u32) -> f64 {
    let mut total = cpu_seconds(pid);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return total;
    };
    for t in tasks.flatten() {
        let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
            total += tree_cpu(k);
        }
    }
    total
}

/// wrk at 8 connections for `LOAD`: requests/s, and CPU µs per request of
/// `pid` (and its children) over the run.
fn load(wrk: &Path, addr: SocketAddr, auth: bool, pid: u32) -> (f64, f64, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("post.lua");
    let auth = if auth {
        format!("wrk.headers[\"Authorization\"] = \"Bearer {KEY}\"\n")
    } else {
        String::new()
    };
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n{auth}",
            body()
        ),
    )
    .expect("script written");
    let c0 = tree_cpu(pid);
    let out = Command::new(wrk)
        .args(["-t1", "-c8", &format!("-d{}s", LOAD.as_secs())])
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{addr}/v1/chat/completions"))
        .output()
        .expect("wrk runs");
    let cpu = tree_cpu(pid) - c0;
    let text = String::from_utf8_lossy(&out.stdout);
    let requests: f64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no request count from wrk:\n{text}"));
    let bad: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (requests / LOAD.as_secs_f64(), cpu / requests * 1e6, bad)
}

/// One path's figures.
struct Row {
    name: String,
    mean: f64,
    p99: f64,
    n: usize,
    rps: f64,
    cpu_us: f64,
}

fn measure(name: &str, wrk: &Path, addr: SocketAddr, auth: bool, pid: u32, n: usize) -> Row {
    let (mean, p99) = mean_p99(latencies(addr, auth, n));
    let (rps, cpu_us, bad) = load(wrk, addr, auth, pid);
    assert_eq!(bad, 0, "{name}: non-2xx answers under load");
    eprintln!("{name}: mean {mean:.6} s, p99 {p99:.6} s, {rps:.0} req/s, {cpu_us:.1} µs CPU/req");
    Row {
        name: name.to_string(),
        mean,
        p99,
        n,
        rps,
        cpu_us,
    }
}

/// `target/litellm-venv/bin/litellm` when scripts/bench made it.
fn litellm_bin() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/litellm-venv/bin/litellm");
    p.is_file().then_some(p)
}

fn litellm_version(bin: &Path) -> String {
    let py = bin.with_file_name("python");
    Command::new(py)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn print_table(rows: &[Row]) {
    let direct = &rows[0];
    let haproxy_cpu = rows
        .iter()
        .find(|r| r.name.starts_with("HAProxy"))
        .map(|r| r.cpu_us);
    println!(
        "\nGateway: added latency (1 connection) and CPU per request (wrk, 8 connections, {} s), same nginx upstream",
        LOAD.as_secs()
    );
    println!(
        "| path | added mean | added p99 | requests/s at 8 conns | CPU µs/request | CPU vs HAProxy |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        let ratio = haproxy_cpu.map_or("–".to_string(), |h| format!("{:.2}x", r.cpu_us / h));
        if std::ptr::eq(r, direct) {
            println!(
                "| {} ({} requests; latency {:.3} ms mean, {:.3} ms p99) | – | – | {:.0} | {:.1} (nginx) | – |",
                r.name,
                r.n,
                r.mean * 1e3,
                r.p99 * 1e3,
                r.rps,
                r.cpu_us
            );
        } else {
            println!(
                "| {} ({} requests) | {:.3} ms | {:.3} ms | {:.0} | {:.1} | {ratio} |",
                r.name,
                r.n,
                (r.mean - direct.mean) * 1e3,
                (r.p99 - direct.p99) * 1e3,
                r.rps,
                r.cpu_us
            );
        }
    }
}

fn main() {
    if !guard("gateway", "see scripts/bench gateway") {
        return;
    }
    let nginx =
        find_tool(&["nginx"]).expect("nginx (Debian package nginx; scripts/bench installs it)");
    let haproxy = find_tool(&["haproxy"]).expect("haproxy (scripts/bench installs it)");
    let wrk = find_tool(&["wrk"]).expect("wrk (scripts/bench installs it)");
    let up = start_nginx(&nginx);
    let mut rows = vec![measure("direct", &wrk, up.addr, false, up.pid(), LATENCY_N)];
    {
        let h = start_haproxy(&haproxy, up.addr);
        rows.push(measure("HAProxy", &wrk, h.addr, false, h.pid(), LATENCY_N));
    }
    {
        let (d, gw, _keys) = start_gateway(&testkit::binary!(), up.addr);
        rows.push(measure(
            "hfbreaker gateway",
            &wrk,
            gw,
            true,
            d.pid(),
            LATENCY_N,
        ));
    }
    // Another build of hfbreaker in the same run (before/after a change):
    // HFBREAKER_BENCH_BASELINE_BIN=path/to/hfbreaker.
    if let Some(old) = std::env::var_os("HFBREAKER_BENCH_BASELINE_BIN") {
        let (d, gw, _keys) = start_gateway(&testkit::Binary::new(old), up.addr);
        rows.push(measure(
            "hfbreaker gateway, baseline build",
            &wrk,
            gw,
            true,
            d.pid(),
            LATENCY_N,
        ));
    }
    match litellm_bin() {
        Some(bin) => {
            let name = format!("LiteLLM {}", litellm_version(&bin));
            let l = start_litellm(&bin, up.addr);
            rows.push(measure(&name, &wrk, l.addr, true, l.pid(), SLOW_N));
        }
        None => {
            eprintln!("LiteLLM: no target/litellm-venv (scripts/bench gateway makes it); skipped")
        }
    }
    print_table(&rows);
    let gw = &rows[2];
    let h = &rows[1];
    println!(
        "targets: added mean {:.3} ms (≤ 0.1), added p99 {:.3} ms (≤ 1), CPU {:.2}x HAProxy (≤ 2), {:.0} requests/s (≥ 10,000)",
        (gw.mean - rows[0].mean) * 1e3,
        (gw.p99 - rows[0].p99) * 1e3,
        gw.cpu_us / h.cpu_us,
        gw.rps
    );
}
