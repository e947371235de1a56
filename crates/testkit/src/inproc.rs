//! The simulator and the daemon in the test's own process, the daemon
//! serving its real HTTP surface on an ephemeral loopback port.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hfbreaker::daemon::Daemon;
use hfbreaker::secret::Secret;
use hfbreaker::sim::{Sim, VirtualSpec};
use tokio::sync::oneshot;

use crate::scrape::Scrape;

/// The simulator on an ephemeral loopback port with these endpoints.
pub async fn sim(endpoints: Vec<(&str, VirtualSpec)>) -> Sim {
    Sim::start(
        "127.0.0.1:0".parse().expect("an address"),
        endpoints
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect(),
    )
    .await
    .expect("simulator binds")
}

/// The daemon in this process, loaded from a config file (so reloads work)
/// and serving on an ephemeral port until [`TestDaemon::shutdown`] or the
/// end of the runtime.
pub struct TestDaemon {
    pub addr: SocketAddr,
    pub daemon: Arc<Daemon>,
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl TestDaemon {
    /// Write `yaml` to a config file, load it, serve on an ephemeral port.
    pub async fn start(yaml: &str) -> TestDaemon {
        Self::start_with_admin(yaml, None).await
    }

    /// Serve the OpenAI-compatible gateway for this daemon on an ephemeral
    /// loopback port (default listener limits, no web config) until the
    /// runtime ends; returns its address.
    pub async fn start_gateway(&self) -> SocketAddr {
        let gateway =
            hfbreaker::gateway::Gateway::new(self.daemon.clone()).expect("gateway starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback binds");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(hfbreaker::gateway::serve(
            listener,
            gateway,
            Default::default(),
            None,
            std::future::pending(),
        ));
        addr
    }

    pub async fn start_with_admin(yaml: &str, admin_token: Option<&str>) -> TestDaemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("hfbreaker.yml");
        std::fs::write(&config_path, yaml).expect("config written");
        let cfg = hfbreaker::config::load(&config_path)
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let daemon = Daemon::new(cfg, Some(config_path.clone()), admin_token.map(Secret::new));
        daemon.start();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback binds");
        let addr = listener.local_addr().expect("bound");
        let (tx, rx) = oneshot::channel();
        let d2 = daemon.clone();
        let server = tokio::spawn(async move {
            // Tests reload over HTTP: the lifecycle API is on.
            let options = hfbreaker::http::ServeOptions {
                app: hfbreaker::http::AppOptions {
                    enable_lifecycle: true,
                },
                ..Default::default()
            };
            hfbreaker::http::serve_with(listener, d2, options, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        TestDaemon {
            addr,
            daemon,
            config_path,
            dir,
            stop: Some(tx),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = client()
            .get(self.url(path))
            .send()
            .await
            .expect("daemon answers");
        let status = r.status().as_u16();
        (status, r.text().await.expect("a body"))
    }

    pub async fn post(&self, path: &str, bearer: Option<&str>) -> (u16, String) {
        let mut req = client().post(self.url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let r = req.send().await.expect("daemon answers");
        let status = r.status().as_u16();
        (status, r.text().await.expect("a body"))
    }

    pub async fn scrape(&self) -> Scrape {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200);
        Scrape(text)
    }

    /// Scrape until `cond` holds; panics with the last scrape after `limit`.
    pub async fn until(
        &self,
        limit: Duration,
        what: &str,
        cond: impl Fn(&Scrape) -> bool,
    ) -> Scrape {
        let start = Instant::now();
        loop {
            let s = self.scrape().await;
            if cond(&s) {
                return s;
            }
            if start.elapsed() > limit {
                panic!(
                    "timed out after {limit:?} waiting for: {what}\n--- last /metrics ---\n{}",
                    s.hfbreaker_lines()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stop probing and the server.
    pub async fn shutdown(mut self) {
        self.daemon.stop();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.server).await;
    }
}

/// An HTTP client with a 10 s timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client builds")
}

/// `GET {base}/metrics` of a daemon outside this runtime (a child process).
pub async fn scrape_url(base: &str) -> Scrape {
    let r = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("/metrics answers");
    Scrape(r.text().await.expect("/metrics body"))
}

/// [`scrape_url`] from blocking test code.
pub fn scrape_blocking(rt: &tokio::runtime::Runtime, base: &str) -> Scrape {
    rt.block_on(scrape_url(base))
}

/// A gateway client-key file holding `lines`, in a folder the caller
/// keeps alive.
pub fn key_file(lines: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = dir.path().join("keys");
    std::fs::write(&f, format!("{lines}\n")).expect("key file written");
    (dir, f)
}

/// Fast timings so a whole breaker cycle takes about a second.
pub const FAST_GLOBAL: &str = "global:
  interval: 150ms
  timeout: 400ms
  confirm_interval: 40ms
  breaker:
    failure_threshold: 3
    open_duration: 800ms
    max_open_duration: 3s
    success_threshold: 2
";

/// `f`, which must finish within `limit`.
pub async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .expect("finished in time")
}
