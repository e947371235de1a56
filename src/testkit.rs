//! Real Prometheus and Alertmanager around hfbreaker, for the end-to-end
//! tests and the time-to-page benchmark: find the binaries, start them on
//! ephemeral loopback ports, query them, and receive Alertmanager webhooks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;

/// A binary on PATH (the first of `names` found).
pub fn find_tool(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// The tool, or `None` with a message when it is missing outside CI.
/// Under `CI=true` a missing tool is a failure, never a silent skip.
pub fn require_tool(what: &str, names: &[&str]) -> Option<PathBuf> {
    match find_tool(names) {
        Some(p) => Some(p),
        None => {
            let msg = format!("{what} not found (looked for {names:?}); scripts/test installs it");
            assert!(std::env::var("CI").is_err(), "{msg}");
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("loopback has free ports")
}

/// The daemon in this process on a YAML config (no tokens), serving its
/// HTTP surface on an ephemeral loopback port until the runtime ends.
pub async fn serve_daemon(yaml: &str) -> (Arc<crate::daemon::Daemon>, SocketAddr) {
    let cfg = crate::config::parse(
        yaml,
        "testkit",
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap_or_else(|e| panic!("config:\n{e}"));
    let daemon = crate::daemon::Daemon::new(cfg, None, None);
    daemon.start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback binds");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(crate::http::serve(
        listener,
        daemon.clone(),
        std::future::pending(),
    ));
    (daemon, addr)
}

/// A child process killed on drop.
pub struct Proc {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn spawn(bin: &Path, args: &[String], dir: tempfile::TempDir, port: u16) -> std::io::Result<Proc> {
    let log = std::fs::File::create(dir.path().join("log"))?;
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    Ok(Proc {
        child,
        port,
        _dir: dir,
    })
}

/// Write `config` as `file` in a fresh folder, pick a port, and start `bin`
/// with `--config.file`, `--web.listen-address` and the `extra` flags
/// (given the folder, for storage paths).
fn start_configured(
    bin: &Path,
    file: &str,
    config: &str,
    extra: impl FnOnce(&Path) -> std::io::Result<Vec<String>>,
) -> std::io::Result<Proc> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join(file);
    std::fs::write(&cfg, config)?;
    let port = free_port();
    let mut args = vec![
        format!("--config.file={}", cfg.display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    args.extend(extra(dir.path())?);
    spawn(bin, &args, dir, port)
}

/// Start Prometheus with `config` (YAML); `rules` are copied beside it.
pub fn start_prometheus(bin: &Path, config: &str, rules: &[&Path]) -> std::io::Result<Proc> {
    start_configured(bin, "prometheus.yml", config, |dir| {
        for r in rules {
            std::fs::copy(r, dir.join(r.file_name().unwrap_or_default()))?;
        }
        Ok(vec![
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            "--web.enable-lifecycle".to_string(),
        ])
    })
}

/// Start Alertmanager with `config` (YAML), clustering off.
pub fn start_alertmanager(bin: &Path, config: &str) -> std::io::Result<Proc> {
    start_configured(bin, "alertmanager.yml", config, |dir| {
        Ok(vec![
            format!("--storage.path={}", dir.join("data").display()),
            "--cluster.listen-address=".to_string(),
        ])
    })
}

/// Start prometheus-blackbox-exporter with `config` (YAML).
pub fn start_blackbox(bin: &Path, config: &str) -> std::io::Result<Proc> {
    start_configured(bin, "blackbox.yml", config, |_| Ok(Vec::new()))
}

/// GET until 200 or the deadline.
pub async fn wait_http_ok(url: &str, limit: Duration) -> bool {
    let client = reqwest::Client::new();
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// An instant query; `Err` carries Prometheus' error text.
pub async fn query(prometheus: &str, expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let r = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    if let Some(w) = v.get("warnings") {
        return Err(format!("warnings: {w}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// One Alertmanager webhook notification and when it arrived.
#[derive(Clone, Debug)]
pub struct Notification {
    pub at: Instant,
    pub body: serde_json::Value,
}

impl Notification {
    /// (alertname, status) of every alert in the notification.
    pub fn alerts(&self) -> Vec<(String, String)> {
        self.body["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x["labels"]["alertname"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            x["status"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// An Alertmanager webhook receiver on loopback.
pub struct Webhook {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Notification>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Received = Arc<Mutex<Vec<Notification>>>;

async fn receive(State(r): State<Received>, body: axum::body::Bytes) -> &'static str {
    if let Ok(v) = serde_json::from_slice(&body) {
        r.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Notification {
                at: Instant::now(),
                body: v,
            });
    }
    "ok"
}

impl Webhook {
    pub async fn start() -> std::io::Result<Webhook> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received: Received = Arc::default();
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(received.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Webhook {
            addr,
            received,
            task,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// The first notification after `since` with `alertname` in `status`.
    pub async fn wait_for(
        &self,
        alertname: &str,
        status: &str,
        since: Instant,
        limit: Duration,
    ) -> Option<Notification> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let found = self
                .received
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|n| {
                    n.at >= since
                        && n.alerts()
                            .iter()
                            .any(|(a, s)| a == alertname && s == status)
                })
                .cloned();
            if found.is_some() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}
