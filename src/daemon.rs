//! The running daemon: endpoints, routes, scheduler, reloads and admin actions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::breaker::State;
use crate::config::{self, Config, ConfigError};
use crate::metrics::Metrics;
use crate::route::{RouteStatus, RouteTracker};
use crate::schedule::{self, Endpoint, Host, Scheduler};
use crate::secret::Secret;

/// Endpoints and routes of one configuration.
pub struct Topology {
    pub endpoints: Vec<Arc<Endpoint>>,
    pub by_name: HashMap<String, usize>,
    pub routes: Mutex<RouteTracker>,
    pub config: Config,
}

impl Topology {
    pub fn endpoint(&self, name: &str) -> Option<&Arc<Endpoint>> {
        self.by_name.get(name).map(|&i| &self.endpoints[i])
    }

    fn admits(&self, name: &str) -> bool {
        self.endpoint(name).is_some_and(|e| e.admits_traffic())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminAction {
    ForceOpen,
    ForceClosed,
    Reset,
}

impl AdminAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "force-open" => Some(AdminAction::ForceOpen),
            "force-closed" => Some(AdminAction::ForceClosed),
            "reset" => Some(AdminAction::Reset),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no endpoint named {0:?}")]
    UnknownEndpoint(String),
}

/// State shared by the scheduler, probe tasks and the HTTP handlers.
pub struct Daemon {
    pub metrics: Metrics,
    client: reqwest::Client,
    topology: RwLock<Arc<Topology>>,
    wake_tx: Mutex<mpsc::UnboundedSender<usize>>,
    ready: AtomicBool,
    config_path: Option<PathBuf>,
    admin_token: Option<Secret>,
    /// Serializes reloads.
    reload_lock: tokio::sync::Mutex<()>,
    scheduler_stop: Mutex<Option<watch::Sender<bool>>>,
    pub started: Instant,
}

impl Host for Daemon {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }

    fn state_changed(&self) {
        let topo = self.topology();
        let now = Instant::now();
        let mut routes = topo.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.update(now, |n| topo.admits(n), &self.metrics);
    }

    fn lateness(&self, seconds: f64) {
        self.metrics.scheduler_lateness(seconds);
    }

    fn local_error(&self) {
        self.metrics
            .local_error(crate::metrics::LocalOperation::Probe);
    }

    fn wake(&self, slot: usize) {
        let _ = self
            .wake_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(slot);
    }
}

impl Daemon {
    /// Build the daemon for a validated config. Call [`Daemon::start`] to probe.
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        admin_token: Option<Secret>,
    ) -> Arc<Self> {
        let metrics = Metrics::new();
        let (tx, _) = mpsc::unbounded_channel();
        let topology = build_topology(config, None, &metrics);
        metrics.reload(true, schedule::unix(SystemTime::now()));
        Arc::new(Daemon {
            metrics,
            client: crate::probe::client(),
            topology: RwLock::new(Arc::new(topology)),
            wake_tx: Mutex::new(tx),
            ready: AtomicBool::new(false),
            config_path,
            admin_token,
            reload_lock: tokio::sync::Mutex::new(()),
            scheduler_stop: Mutex::new(None),
            started: Instant::now(),
        })
    }

    pub fn topology(&self) -> Arc<Topology> {
        self.topology
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
    }

    /// Start (or restart, after a reload) the scheduler on the current topology.
    pub fn start(self: &Arc<Self>) {
        let topo = self.topology();
        self.state_changed();
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let scheduler = Scheduler::new(topo.endpoints.clone(), Instant::now());
        *self.wake_tx.lock().unwrap_or_else(|p| p.into_inner()) = tx;
        if let Some(old) = self
            .scheduler_stop
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(stop_tx)
        {
            let _ = old.send(true);
        }
        tokio::spawn(scheduler.run(self.clone(), rx, stop_rx));
        self.ready.store(true, Ordering::Release);
    }

    /// Stop probing (in-flight probes finish on their own, bounded by their timeout).
    pub fn stop(&self) {
        if let Some(stop) = self
            .scheduler_stop
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = stop.send(true);
        }
    }

    /// Re-read the config file. A bad file changes nothing but the reload metrics.
    pub async fn reload(self: &Arc<Self>) -> Result<(), ConfigError> {
        let _guard = self.reload_lock.lock().await;
        let Some(path) = self.config_path.clone() else {
            return Ok(());
        };
        let loaded = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .unwrap_or_else(|e| panic!("config loader panicked: {e}"));
        match loaded {
            Err(e) => {
                self.metrics.reload(false, 0.0);
                tracing::error!(error = %e, "config reload failed; keeping the running config");
                Err(e)
            }
            Ok(cfg) => {
                self.apply(cfg);
                self.metrics.reload(true, schedule::unix(SystemTime::now()));
                tracing::info!("config reloaded");
                Ok(())
            }
        }
    }

    /// Swap in a new configuration, keeping the breakers of unchanged endpoints.
    pub fn apply(self: &Arc<Self>, cfg: Config) {
        let old = self.topology();
        old.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .account(Instant::now(), &self.metrics);
        for r in old
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .configs()
        {
            // A route that stays is re-exported with its new chain by the new
            // tracker, its counters kept; one that goes loses its series.
            if !cfg.routes.iter().any(|n| n.name == r.name) {
                self.metrics.remove_route(&r.name);
            }
        }
        let new = build_topology(cfg, Some(&old), &self.metrics);
        *self.topology.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        self.start();
    }

    /// Apply an admin action to one breaker; returns the new state.
    pub fn admin(&self, endpoint: &str, action: AdminAction) -> Result<State, AdminError> {
        let topo = self.topology();
        let ep = topo
            .endpoint(endpoint)
            .ok_or_else(|| AdminError::UnknownEndpoint(endpoint.to_string()))?;
        let now = Instant::now();
        let state = {
            let mut st = ep.lock();
            let t = match action {
                AdminAction::ForceOpen => st.breaker.force_open(now),
                AdminAction::ForceClosed => st.breaker.force_closed(now),
                AdminAction::Reset => st.breaker.reset(now),
            };
            if let Some(t) = t {
                ep.apply(&mut st, t);
            }
            ep.refresh_stats(&st);
            st.breaker.state()
        };
        tracing::warn!(endpoint, action = ?action, state = state.as_str(), "admin action");
        self.state_changed();
        self.wake(topo.by_name[endpoint]);
        Ok(state)
    }

    pub fn routes(&self) -> Vec<RouteStatus> {
        let topo = self.topology();
        let routes = topo.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.status()
    }

    /// The exposition text; accounts route time up to now first.
    pub fn render_metrics(&self) -> Vec<u8> {
        let topo = self.topology();
        topo.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .account(Instant::now(), &self.metrics);
        self.metrics.render()
    }
}

fn build_topology(cfg: Config, old: Option<&Topology>, metrics: &Metrics) -> Topology {
    let now = Instant::now();
    let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
    let mut by_name = HashMap::with_capacity(cfg.endpoints.len());
    for (i, ec) in cfg.endpoints.iter().enumerate() {
        let kept = old.and_then(|o| o.endpoint(&ec.name)).and_then(|ep| {
            let same = ep.lock().cfg.same_probe_and_breaker(ec);
            same.then(|| ep.clone())
        });
        let ep = match kept {
            Some(ep) => {
                if *ep.lock().cfg != *ec {
                    ep.replace_config(ec.clone());
                }
                ep
            }
            None => {
                if let Some(prev) = old.and_then(|o| o.endpoint(&ec.name)) {
                    metrics.remove_endpoint(&prev.lock().cfg);
                }
                Arc::new(Endpoint::new(
                    ec.clone(),
                    metrics.endpoint(ec),
                    now,
                    fastrand::u64(..),
                ))
            }
        };
        by_name.insert(ec.name.clone(), i);
        endpoints.push(ep);
    }
    if let Some(o) = old {
        for ep in &o.endpoints {
            if !by_name.contains_key(&ep.name) {
                metrics.remove_endpoint(&ep.lock().cfg);
            }
        }
    }
    let admits = |n: &str| {
        by_name
            .get(n)
            .is_some_and(|&i: &usize| endpoints[i].admits_traffic())
    };
    let routes = Mutex::new(RouteTracker::new(&cfg.routes, now, admits, metrics));
    Topology {
        endpoints,
        by_name,
        routes,
        config: cfg,
    }
}

/// Parse `:9799`, `0.0.0.0:9799`, `[::]:9799` or `localhost:9799`.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.replace("localhost:", "127.0.0.1:")
    };
    full.parse()
        .map_err(|_| format!("invalid listen address {s:?}; use host:port, e.g. :9799"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_address(":9799").unwrap().to_string(),
            "0.0.0.0:9799"
        );
        assert_eq!(parse_listen_address("127.0.0.1:0").unwrap().port(), 0);
        assert_eq!(
            parse_listen_address("localhost:80").unwrap().to_string(),
            "127.0.0.1:80"
        );
        assert!(parse_listen_address("nope").is_err());
    }
}
