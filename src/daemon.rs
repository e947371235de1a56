//! The running daemon: endpoints, routes, scheduler, reloads and admin actions.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::breaker::State;
use crate::config::{self, Config, ConfigError, EndpointConfig};
use crate::history::{self, Board};
use crate::metrics::{LocalOperation, Metrics};
use crate::route::{RouteStatus, RouteTracker};
use crate::schedule::{self, Endpoint, Host, Scheduler};
use crate::secret::Secret;
use crate::storage::{self, Entry, Store};

/// How long an admin action waits for its state to reach the disk before
/// it is answered as not saved.
pub const ADMIN_SAVE_LIMIT: Duration = Duration::from_secs(5);
/// How long the shutdown waits for the last write.
const SHUTDOWN_SAVE_LIMIT: Duration = Duration::from_secs(2);

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
    /// The action's name in the admin API's path.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::ForceOpen => "force-open",
            AdminAction::ForceClosed => "force-closed",
            AdminAction::Reset => "reset",
        }
    }

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
    /// Applied, but not on disk: a restart now would lose it.
    #[error("the breaker is now {state} but its state was not saved: {error}")]
    NotSaved { state: State, error: String },
}

/// What one look of the config auto-reload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoReload {
    /// Same config as running (or the same load error as last time).
    Unchanged,
    /// A different config was applied, or the file returned to the running one.
    Reloaded,
    /// The file does not load; the running config is kept.
    Failed,
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
    /// `--storage.path`; None when persistence is off.
    storage: Option<Store>,
    pub started: Instant,
    /// Operator actions and gateway rates for the status page.
    pub board: Board,
}

impl Host for Daemon {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }

    fn state_changed(&self) {
        self.update_routes();
        self.persist(true);
    }

    fn counters_changed(&self) {
        self.persist(false);
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
    /// Build the daemon for a validated config, without persistence. Call
    /// [`Daemon::start`] to probe.
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        admin_token: Option<Secret>,
    ) -> Arc<Self> {
        Self::with_storage(config, config_path, admin_token, None)
    }

    /// [`Daemon::new`] with breaker state restored from and saved to the
    /// directory `storage` (see [`crate::storage`]).
    pub fn with_storage(
        config: Config,
        config_path: Option<PathBuf>,
        admin_token: Option<Secret>,
        storage: Option<PathBuf>,
    ) -> Arc<Self> {
        let metrics = Metrics::new();
        let (tx, _) = mpsc::unbounded_channel();
        let saved = storage.as_deref().map(load_saved).unwrap_or_default();
        let topology = build_topology(config, None, saved, &metrics);
        metrics.reload(true, schedule::unix(SystemTime::now()));
        Arc::new_cyclic(|me: &Weak<Daemon>| Daemon {
            metrics,
            client: crate::probe::client(),
            topology: RwLock::new(Arc::new(topology)),
            wake_tx: Mutex::new(tx),
            ready: AtomicBool::new(false),
            config_path,
            admin_token,
            reload_lock: tokio::sync::Mutex::new(()),
            scheduler_stop: Mutex::new(None),
            storage: storage.map(|dir| start_store(dir, me)),
            started: Instant::now(),
            board: Board::default(),
        })
    }

    /// Every breaker as the storage file holds it.
    fn entries(&self) -> BTreeMap<String, Entry> {
        let topo = self.topology();
        let (now, wall) = (Instant::now(), SystemTime::now());
        topo.endpoints
            .iter()
            .map(|ep| {
                let st = ep.lock();
                let e = Entry::capture(&st.cfg, &st.breaker, st.since_wall, now, wall);
                (ep.name.clone(), e)
            })
            .collect()
    }

    /// Ask for the breakers to be saved; returns the generation to wait for.
    fn persist(&self, urgent: bool) -> u64 {
        self.storage.as_ref().map_or(0, |s| s.mark(urgent))
    }

    fn update_routes(&self) {
        let topo = self.topology();
        let now = Instant::now();
        let mut routes = topo.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.update(now, |n| topo.admits(n), &self.metrics);
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

    /// Stop probing (in-flight probes finish on their own, bounded by their
    /// timeout) and save the breakers one last time.
    pub fn stop(&self) {
        if let Some(stop) = self
            .scheduler_stop
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = stop.send(true);
        }
        if let Some(Err(e)) = self.storage.as_ref().map(|s| s.flush(SHUTDOWN_SAVE_LIMIT)) {
            tracing::error!(error = %e, "breaker state not saved at shutdown");
        }
    }

    /// The config file as it loads now (tokens and key files read again);
    /// None when the daemon runs without a file.
    async fn load_config_file(&self) -> Option<Result<Config, ConfigError>> {
        let path = self.config_path.clone()?;
        let shown = path.display().to_string();
        Some(
            tokio::task::spawn_blocking(move || config::load(&path))
                .await
                .unwrap_or_else(|e| {
                    Err(ConfigError::Loader {
                        path: shown,
                        detail: e.to_string(),
                    })
                }),
        )
    }

    /// Re-read the config file. A bad file changes nothing but the reload metrics.
    pub async fn reload(self: &Arc<Self>) -> Result<(), ConfigError> {
        let _guard = self.reload_lock.lock().await;
        let Some(loaded) = self.load_config_file().await else {
            return Ok(());
        };
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

    /// One look of `--config.auto-reload-interval`: loads the config file
    /// (and the token and key files it names) and applies it when it differs
    /// from the running config. A file that fails to load is reported once
    /// per distinct error (`failure` remembers it), not at every look; a
    /// file that returns to the running config clears the failure.
    pub async fn reload_if_changed(self: &Arc<Self>, failure: &mut Option<String>) -> AutoReload {
        let _guard = self.reload_lock.lock().await;
        let Some(loaded) = self.load_config_file().await else {
            return AutoReload::Unchanged;
        };
        match loaded {
            Err(e) => {
                let shown = e.to_string();
                if failure.as_deref() == Some(shown.as_str()) {
                    return AutoReload::Unchanged;
                }
                *failure = Some(shown);
                self.metrics.reload(false, 0.0);
                tracing::error!(error = %e, "config file changed but does not load; keeping the running config");
                AutoReload::Failed
            }
            Ok(cfg) => {
                let same = cfg == self.topology().config;
                if same && failure.is_none() {
                    return AutoReload::Unchanged;
                }
                *failure = None;
                if !same {
                    self.apply(cfg);
                }
                self.metrics.reload(true, schedule::unix(SystemTime::now()));
                tracing::info!("config file changed: reloaded");
                AutoReload::Reloaded
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
        let new = build_topology(cfg, Some(&old), HashMap::new(), &self.metrics);
        *self.topology.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        self.start();
    }

    /// Apply an admin action to one breaker; returns the new state. Does not
    /// wait for the disk: see [`Daemon::admin_saved`].
    pub fn admin(&self, endpoint: &str, action: AdminAction) -> Result<State, AdminError> {
        self.apply_admin(endpoint, action, "in-process")
            .map(|(state, _)| state)
    }

    /// [`Daemon::admin`], returning only once the new state is on disk (when
    /// storage is on), so that an acknowledged action survives a crash.
    pub async fn admin_saved(
        &self,
        endpoint: &str,
        action: AdminAction,
        client: &str,
    ) -> Result<State, AdminError> {
        // Not while a reload swaps endpoints: the action must land on the
        // endpoint that stays.
        let (state, generation) = {
            let _guard = self.reload_lock.lock().await;
            self.apply_admin(endpoint, action, client)?
        };
        if let Some(store) = &self.storage {
            let saved = store.durable(generation, ADMIN_SAVE_LIMIT).await;
            saved.map_err(|e| AdminError::NotSaved {
                state,
                error: e.to_string(),
            })?;
        }
        Ok(state)
    }

    /// `client` names who asked, for the audit line.
    fn apply_admin(
        &self,
        endpoint: &str,
        action: AdminAction,
        client: &str,
    ) -> Result<(State, u64), AdminError> {
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
        tracing::warn!(endpoint, action = ?action, state = state.as_str(), client, "admin action");
        self.board.action(history::Action {
            at: SystemTime::now(),
            endpoint: endpoint.to_string(),
            action: action.as_str(),
            state,
        });
        self.update_routes();
        let generation = self.persist(true);
        self.wake(topo.by_name[endpoint]);
        Ok((state, generation))
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

/// `--config.auto-reload-interval`: looks at the config file (and the files
/// it names) every `every` and reloads when what they say changed, so that
/// an edited ConfigMap or a rotated Secret applies without a signal. Runs
/// until the runtime stops.
pub async fn auto_reload(daemon: Arc<Daemon>, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failure: Option<String> = None;
    loop {
        ticks.tick().await;
        // In a task of its own, as for SIGHUP: should a look ever panic,
        // the next one still happens.
        let d = daemon.clone();
        let mut seen = failure.clone();
        match tokio::spawn(async move {
            d.reload_if_changed(&mut seen).await;
            seen
        })
        .await
        {
            Ok(seen) => failure = seen,
            Err(e) => tracing::error!(error = %e, "config auto-reload task failed"),
        }
    }
}

/// The saved breakers in `dir`; a bad file is a warning and a clean start.
fn load_saved(dir: &std::path::Path) -> HashMap<String, Entry> {
    match storage::load(dir) {
        Ok(saved) => {
            tracing::info!(path = %dir.join(storage::FILE_NAME).display(), endpoints = saved.len(), "saved breaker state loaded");
            saved
        }
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the saved breaker state; every breaker starts closed");
            HashMap::new()
        }
    }
}

fn start_store(dir: PathBuf, daemon: &Weak<Daemon>) -> Store {
    let (collect, failed) = (daemon.clone(), daemon.clone());
    Store::start(
        dir,
        move || collect.upgrade().map(|d| d.entries()),
        move || {
            if let Some(d) = failed.upgrade() {
                d.metrics.local_error(LocalOperation::Storage);
            }
        },
    )
}

/// The endpoint for `ec` in a new topology: the old one if its identity is
/// unchanged (its breaker taking the new thresholds), else a fresh one,
/// restored from `saved` when that was written for the same identity.
fn endpoint_for(
    ec: &EndpointConfig,
    old: Option<&Arc<Endpoint>>,
    saved: &mut HashMap<String, Entry>,
    metrics: &Metrics,
    now: Instant,
) -> Arc<Endpoint> {
    if let Some(prev) = old {
        let prev_cfg = prev.lock().cfg.clone();
        if storage::identity(&prev_cfg) == storage::identity(ec) {
            if *prev_cfg != *ec {
                prev.replace_config(ec.clone());
            }
            return prev.clone();
        }
        tracing::info!(endpoint = %ec.name, "endpoint changed what it probes; its breaker starts closed");
        metrics.remove_endpoint(&prev_cfg);
    }
    let ep = Arc::new(Endpoint::new(
        ec.clone(),
        metrics.endpoint(ec),
        now,
        fastrand::u64(..),
    ));
    match saved.remove(&ec.name) {
        Some(entry) if entry.matches(ec) => {
            let (breaker, since) = entry.restore(ec, now, SystemTime::now());
            tracing::info!(endpoint = %ec.name, state = breaker.state().as_str(), "breaker state restored");
            ep.adopt(breaker, since);
        }
        Some(_) => {
            tracing::info!(endpoint = %ec.name, "saved breaker state dropped: the endpoint now probes something else");
        }
        None => {}
    }
    ep
}

fn build_topology(
    cfg: Config,
    old: Option<&Topology>,
    mut saved: HashMap<String, Entry>,
    metrics: &Metrics,
) -> Topology {
    let now = Instant::now();
    let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
    let mut by_name = HashMap::with_capacity(cfg.endpoints.len());
    for (i, ec) in cfg.endpoints.iter().enumerate() {
        let prev = old.and_then(|o| o.endpoint(&ec.name));
        endpoints.push(endpoint_for(ec, prev, &mut saved, metrics, now));
        by_name.insert(ec.name.clone(), i);
    }
    for name in saved.keys() {
        tracing::info!(endpoint = %name, "saved breaker state dropped: no such endpoint in the config");
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
    let mut routes = RouteTracker::new(&cfg.routes, now, admits, metrics);
    if let Some(o) = old {
        routes.carry_over(&o.routes.lock().unwrap_or_else(|p| p.into_inner()));
    }
    Topology {
        endpoints,
        by_name,
        routes: Mutex::new(routes),
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
