//! Real Prometheus, Alertmanager and blackbox_exporter around hfbreaker:
//! start them on loopback ports, query them, and receive Alertmanager
//! webhooks.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;

use crate::proc::Proc;
use crate::tools::free_port;

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
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra(dir.path())?);
    let mut p = Proc::spawn(&mut cmd, Some(dir), Some(cfg))?;
    p.set_addr(SocketAddr::from(([127, 0, 0, 1], port)));
    Ok(p)
}

/// Start Prometheus with `config` (YAML); `rules` are copied beside it.
/// Wait for `{base}/-/ready` before use.
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
/// Wait for `{base}/-/ready` before use.
pub fn start_alertmanager(bin: &Path, config: &str) -> std::io::Result<Proc> {
    start_configured(bin, "alertmanager.yml", config, |dir| {
        Ok(vec![
            format!("--storage.path={}", dir.join("data").display()),
            "--cluster.listen-address=".to_string(),
        ])
    })
}

/// Start prometheus-blackbox-exporter with `config` (YAML).
/// Wait for `{base}/-/healthy` before use.
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

/// A Prometheus instant query; `Err` carries Prometheus' error text.
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

type Received = Arc<Mutex<Vec<Notification>>>;

/// An Alertmanager webhook receiver on loopback.
pub struct Webhook {
    pub addr: SocketAddr,
    pub received: Received,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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
