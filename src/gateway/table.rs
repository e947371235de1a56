//! The routes as the gateway serves them, rebuilt whenever a reload
//! swaps the daemon's topology: per route its chain, per endpoint where
//! each operation goes and with which headers and client.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU8, AtomicU32};
use std::sync::{Arc, Mutex};

use axum::http::HeaderValue;
use reqwest::header::{CONTENT_TYPE, HeaderMap};

use super::cache::{self, Cache};
use super::client::Origin;
use super::upstream::Target;
use crate::classify::Reason;
use crate::config::Config;
use crate::daemon::Topology;
use crate::metrics::Metrics;
use crate::metrics::gateway::GatewayRoute;
use crate::schedule::Endpoint;

/// Gateway state of one endpoint that outlives reloads.
#[derive(Default)]
pub struct Traffic {
    pub in_flight: AtomicU32,
    /// Last failure reason of a gateway attempt: `Reason::index() + 1`, 0 = none.
    pub last_failure: AtomicU8,
}

/// One endpoint of a route's chain.
pub struct Hop {
    /// Position in the chain (0 = primary).
    pub pos: usize,
    pub ep: Arc<Endpoint>,
    pub name: HeaderValue,
    pub target: Target,
    pub headers: HeaderMap,
    pub client: Result<reqwest::Client, String>,
    /// The gateway's own connections, for a plain-HTTP endpoint without
    /// upstream options (`client.rs`); None: `client` sends.
    pub direct: Option<Arc<Origin>>,
    pub ignore: BTreeSet<Reason>,
    pub max_in_flight: Option<u32>,
    pub traffic: Arc<Traffic>,
}

pub struct RouteEntry {
    pub name: String,
    pub header: HeaderValue,
    pub metrics: GatewayRoute,
    pub chain: Vec<Hop>,
    /// `routes[].cache`, when set.
    pub cache: Option<Arc<Cache>>,
}

/// Everything a request needs, for one topology.
pub struct Table {
    pub topology: Arc<Topology>,
    pub routes: HashMap<String, Arc<RouteEntry>>,
    /// Route names in config order, for `/v1/models`.
    pub names: Vec<String>,
}

impl Table {
    pub fn config(&self) -> &Config {
        &self.topology.config
    }

    pub fn build(
        topology: Arc<Topology>,
        shared: &reqwest::Client,
        metrics: &Metrics,
        traffic: &Mutex<HashMap<String, Arc<Traffic>>>,
        caches: &Mutex<HashMap<String, Arc<Cache>>>,
    ) -> Table {
        let mut traffic = traffic.lock().unwrap_or_else(|p| p.into_inner());
        traffic.retain(|name, _| topology.by_name.contains_key(name));
        let mut caches = caches.lock().unwrap_or_else(|p| p.into_inner());
        caches.retain(|name, _| topology.config.routes.iter().any(|r| &r.name == name));
        let mut routes = HashMap::new();
        for r in &topology.config.routes {
            let chain = r
                .endpoints
                .iter()
                .enumerate()
                .filter_map(|(pos, name)| {
                    let ep = topology.endpoint(name)?.clone();
                    let t = traffic.entry(name.clone()).or_default().clone();
                    Some(hop(pos, ep, shared, t))
                })
                .collect();
            let entry = RouteEntry {
                name: r.name.clone(),
                // Names are [a-z0-9_-]: always a valid header value.
                header: HeaderValue::from_str(&r.name).unwrap_or(HeaderValue::from_static("")),
                metrics: metrics.gateway_route(&r.name, &r.endpoints),
                chain,
                cache: cache::for_route(&mut caches, r),
            };
            routes.insert(r.name.clone(), Arc::new(entry));
        }
        metrics.retain_gateway_routes(|n| routes.contains_key(n));
        Table {
            names: topology
                .config
                .routes
                .iter()
                .map(|r| r.name.clone())
                .collect(),
            topology,
            routes,
        }
    }
}

fn hop(pos: usize, ep: Arc<Endpoint>, shared: &reqwest::Client, traffic: Arc<Traffic>) -> Hop {
    let st = ep.lock();
    let mut headers = st.prepared.headers().clone();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let client = st
        .prepared
        .http_client(shared)
        .cloned()
        .map_err(|e| e.detail);
    let direct = st
        .cfg
        .request
        .upstream
        .is_default()
        .then(|| Origin::for_url(&st.cfg.url))
        .flatten();
    let h = Hop {
        pos,
        direct,
        name: HeaderValue::from_str(&ep.name).unwrap_or(HeaderValue::from_static("")),
        target: Target::of(&st.cfg),
        headers,
        client,
        ignore: st.cfg.ignore.clone(),
        max_in_flight: st.cfg.max_in_flight,
        traffic,
        ep: ep.clone(),
    };
    drop(st);
    h
}
