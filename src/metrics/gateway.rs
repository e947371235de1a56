//! Request-weighted series of the gateway, next to the probe series: plain
//! atomics per route, indexed by the position of the endpoint in the chain
//! and by label enums, so that the request path allocates no label string.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::families as f;
use super::text::TextWriter;
use super::{AtomicHistogram, Metrics};
use crate::classify::Reason;
use crate::label::label_enum;

label_enum! {
    /// `tier` label of the gateway's request series and its
    /// `X-Hfbreaker-Tier` header: who answered one request. The route
    /// series keep [`crate::tier::Tier`], which has no `cache`: a route is
    /// never *served* from the cache, only single requests are answered.
    pub enum Tier {
        /// The first endpoint of the chain.
        Primary = "primary",
        /// Any later endpoint.
        Fallback = "fallback",
        /// No endpoint could answer; the route's cache did.
        Cache = "cache",
        /// No endpoint could answer, nor the cache: 503.
        Exhausted = "exhausted",
    }
}

label_enum! {
    /// `code` label of `hfbreaker_gateway_requests_total`: the exact status
    /// for the usual ones, else its class, so the set stays bounded.
    pub enum Code {
        S200 = "200",
        S400 = "400",
        S401 = "401",
        S403 = "403",
        S404 = "404",
        S408 = "408",
        S413 = "413",
        S422 = "422",
        S424 = "424",
        S429 = "429",
        S500 = "500",
        S502 = "502",
        S503 = "503",
        S504 = "504",
        Other2xx = "2xx",
        Other4xx = "4xx",
        Other5xx = "5xx",
        Other = "other",
    }
}

impl Code {
    pub fn of(status: u16) -> Code {
        let exact = Code::LABELS
            .iter()
            .position(|l| l.parse::<u16>().ok() == Some(status));
        match (exact, status) {
            (Some(i), _) => Code::ALL[i],
            (None, 200..=299) => Code::Other2xx,
            (None, 400..=499) => Code::Other4xx,
            (None, 500..=599) => Code::Other5xx,
            _ => Code::Other,
        }
    }
}

label_enum! {
    /// `result` label of `hfbreaker_gateway_attempts_total`.
    pub enum AttemptResult {
        /// Counted as a success by the breaker.
        Success = "success",
        /// Counted as a failure by the breaker (and failed over when no byte was sent).
        Failure = "failure",
        /// An answer the breaker ignores (4xx, or a reason in `ignore`): returned to the client.
        Ignored = "ignored",
        /// Not sent, or not finished, for a reason of this process; never counted.
        LocalError = "local_error",
        /// Not sent: the endpoint carried `max_in_flight` requests already.
        Shed = "shed",
    }
}

/// Seconds; requests range from a cached embedding to a long generation.
pub const GATEWAY_DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const NB: usize = GATEWAY_DURATION_BUCKETS.len() + 1;
/// The `reason` label of attempts: every [`Reason`], then `none`.
const REASONS: usize = Reason::ALL.len() + 1;

/// Every gateway series of one route.
pub(super) struct GatewaySeries {
    chain: Vec<String>,
    /// [endpoint (chain, then `none`)][tier][code]
    requests: Box<[AtomicU64]>,
    /// [endpoint][result][reason]
    attempts: Box<[AtomicU64]>,
    /// [from][to]
    failovers: Box<[AtomicU64]>,
    duration: [AtomicHistogram<NB>; Tier::ALL.len()],
    first_token: AtomicHistogram<NB>,
    in_flight: AtomicI64,
    cache_hits: AtomicU64,
}

/// Handle to one route's gateway series.
#[derive(Clone)]
pub struct GatewayRoute(Arc<GatewaySeries>);

fn zeroed(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl GatewaySeries {
    fn new(chain: &[String]) -> Self {
        let n = chain.len();
        GatewaySeries {
            chain: chain.to_vec(),
            requests: zeroed((n + 1) * Tier::ALL.len() * Code::ALL.len()),
            attempts: zeroed(n * AttemptResult::ALL.len() * REASONS),
            failovers: zeroed(n * n),
            duration: std::array::from_fn(|_| AtomicHistogram::new(&GATEWAY_DURATION_BUCKETS)),
            first_token: AtomicHistogram::new(&GATEWAY_DURATION_BUCKETS),
            in_flight: AtomicI64::new(0),
            cache_hits: AtomicU64::new(0),
        }
    }

    fn request_index(&self, endpoint: Option<usize>, tier: Tier, code: Code) -> usize {
        let e = endpoint.unwrap_or(self.chain.len()).min(self.chain.len());
        (e * Tier::ALL.len() + tier.index()) * Code::ALL.len() + code.index()
    }

    fn attempt_index(
        &self,
        endpoint: usize,
        result: AttemptResult,
        reason: Option<Reason>,
    ) -> usize {
        let r = reason.map_or(Reason::ALL.len(), Reason::index);
        (endpoint * AttemptResult::ALL.len() + result.index()) * REASONS + r
    }
}

impl GatewayRoute {
    /// One answered request: `endpoint` is the position in the chain of
    /// the endpoint that answered, None when none did.
    pub fn request(&self, endpoint: Option<usize>, tier: Tier, status: u16, seconds: f64) {
        let s = &self.0;
        if let Some(c) = s
            .requests
            .get(s.request_index(endpoint, tier, Code::of(status)))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        s.duration[tier.index()].observe(seconds);
    }

    pub fn attempt(&self, endpoint: usize, result: AttemptResult, reason: Option<Reason>) {
        let s = &self.0;
        if endpoint < s.chain.len() {
            s.attempts[s.attempt_index(endpoint, result, reason)].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn failover(&self, from: usize, to: usize) {
        let n = self.0.chain.len();
        if from < n && to < n {
            self.0.failovers[from * n + to].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn first_token(&self, seconds: f64) {
        self.0.first_token.observe(seconds);
    }

    pub fn in_flight(&self, delta: i64) {
        self.0.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// One request answered from the route's cache (its request is counted
    /// apart, with tier `cache`).
    pub fn cache_hit(&self) {
        self.0.cache_hits.fetch_add(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// The gateway series of a route, kept while its chain stays the same.
    pub fn gateway_route(&self, route: &str, chain: &[String]) -> GatewayRoute {
        let mut g = self.gateway.write().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = g.get(route).filter(|s| s.chain == chain) {
            return GatewayRoute(s.clone());
        }
        let s = Arc::new(GatewaySeries::new(chain));
        g.insert(route.to_string(), s.clone());
        GatewayRoute(s)
    }

    /// Drop the gateway series of routes no longer configured.
    pub fn retain_gateway_routes(&self, keep: impl Fn(&str) -> bool) {
        self.gateway
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep(k));
    }

    /// Per gateway route, its requests so far by tier (in [`Tier::ALL`]
    /// order), for the status page's requests per second.
    pub fn gateway_requests_by_tier(&self) -> Vec<(String, Vec<u64>)> {
        let per_tier = Tier::ALL.len() * Code::ALL.len();
        self.gateway_series()
            .into_iter()
            .map(|(name, s)| {
                let mut by_tier = vec![0; Tier::ALL.len()];
                for (i, c) in s.requests.iter().enumerate() {
                    by_tier[(i % per_tier) / Code::ALL.len()] += c.load(Ordering::Relaxed);
                }
                (name, by_tier)
            })
            .collect()
    }

    pub(super) fn gateway_series(&self) -> Vec<(String, Arc<GatewaySeries>)> {
        self.gateway
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Registry of the gateway series, inside [`Metrics`].
pub(super) type Registry = std::sync::RwLock<BTreeMap<String, Arc<GatewaySeries>>>;

/// The gateway families; nothing while the gateway is off.
pub(super) fn write(w: &mut TextWriter, routes: &[(String, Arc<GatewaySeries>)]) {
    if routes.is_empty() {
        return;
    }
    let r = Ordering::Relaxed;
    w.family(&f::GATEWAY_REQUESTS);
    for (name, s) in routes {
        let endpoints = s.chain.iter().map(String::as_str).chain(["none"]);
        for (e, ep) in endpoints.enumerate() {
            // The usual series exist from the start, the rest on first use.
            let natural = match e {
                0 => Tier::Primary,
                _ if e == s.chain.len() => Tier::Exhausted,
                _ => Tier::Fallback,
            };
            let natural_code = if natural == Tier::Exhausted {
                Code::S503
            } else {
                Code::S200
            };
            for tier in Tier::ALL {
                for code in Code::ALL {
                    let n = s.requests[s.request_index(Some(e), tier, code)].load(r);
                    if n > 0 || (tier == natural && code == natural_code) {
                        w.sample(
                            &f::GATEWAY_REQUESTS,
                            &[code.as_str(), ep, name, tier.as_str()],
                            n,
                        );
                    }
                }
            }
        }
    }
    w.family(&f::GATEWAY_ATTEMPTS);
    for (name, s) in routes {
        for (e, ep) in s.chain.iter().enumerate() {
            for result in AttemptResult::ALL {
                for reason in 0..REASONS {
                    let rsn = Reason::ALL.get(reason).copied();
                    let n = s.attempts[s.attempt_index(e, result, rsn)].load(r);
                    if n > 0 || (result == AttemptResult::Success && rsn.is_none()) {
                        let label = rsn.map_or("none", Reason::as_str);
                        w.sample(&f::GATEWAY_ATTEMPTS, &[ep, label, result.as_str(), name], n);
                    }
                }
            }
        }
    }
    w.family(&f::GATEWAY_FAILOVERS);
    for (name, s) in routes {
        let n = s.chain.len();
        for (i, from) in s.chain.iter().enumerate() {
            for (j, to) in s.chain.iter().enumerate() {
                let v = s.failovers[i * n + j].load(r);
                if i < j || v > 0 {
                    w.sample(&f::GATEWAY_FAILOVERS, &[from, name, to], v);
                }
            }
        }
    }
    w.family(&f::GATEWAY_DURATION);
    for (name, s) in routes {
        for t in Tier::ALL {
            // The cache's series appear with its first hit (most routes have none).
            let h = &s.duration[t.index()];
            if t != Tier::Cache || h.count() > 0 {
                h.write(w, &f::GATEWAY_DURATION, &[name, t.as_str()]);
            }
        }
    }
    w.family(&f::GATEWAY_FIRST_TOKEN);
    for (name, s) in routes {
        s.first_token.write(w, &f::GATEWAY_FIRST_TOKEN, &[name]);
    }
    w.family(&f::GATEWAY_IN_FLIGHT);
    for (name, s) in routes {
        w.sample(&f::GATEWAY_IN_FLIGHT, &[name], s.in_flight.load(r));
    }
    w.family(&f::GATEWAY_CACHE_HITS);
    for (name, s) in routes {
        w.sample(&f::GATEWAY_CACHE_HITS, &[name], s.cache_hits.load(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_by_tier_add_up_every_endpoint_and_code() {
        let m = Metrics::new();
        let g = m.gateway_route("r", &["a".to_string(), "b".to_string()]);
        g.request(Some(0), Tier::Primary, 200, 0.01);
        g.request(Some(0), Tier::Primary, 500, 0.01);
        g.request(Some(1), Tier::Fallback, 200, 0.01);
        g.request(Some(1), Tier::Cache, 200, 0.01);
        g.request(None, Tier::Exhausted, 503, 0.01);
        g.request(None, Tier::Exhausted, 503, 0.01);
        assert_eq!(
            m.gateway_requests_by_tier(),
            [("r".to_string(), vec![2, 1, 1, 2])]
        );
    }

    #[test]
    fn codes_are_exact_or_bucketed() {
        assert_eq!(Code::of(200), Code::S200);
        assert_eq!(Code::of(503), Code::S503);
        assert_eq!(Code::of(201), Code::Other2xx);
        assert_eq!(Code::of(418), Code::Other4xx);
        assert_eq!(Code::of(599), Code::Other5xx);
        assert_eq!(Code::of(0), Code::Other);
    }

    #[test]
    fn cache_series_appear_with_the_first_hit() {
        let m = Metrics::new();
        let g = m.gateway_route("r", &["a".to_string()]);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains("tier=\"cache\""), "{text}");
        assert!(text.contains("hfbreaker_gateway_cache_hits_total{route=\"r\"} 0"));
        g.cache_hit();
        g.request(Some(0), Tier::Cache, 200, 0.001);
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            "hfbreaker_gateway_cache_hits_total{route=\"r\"} 1",
            "hfbreaker_gateway_requests_total{code=\"200\",endpoint=\"a\",route=\"r\",tier=\"cache\"} 1",
            "hfbreaker_gateway_request_duration_seconds_count{route=\"r\",tier=\"cache\"} 1",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn series_render_with_route_endpoint_and_tier() {
        let m = Metrics::new();
        let chain = vec!["a".to_string(), "b".to_string()];
        let g = m.gateway_route("r", &chain);
        g.attempt(0, AttemptResult::Failure, Some(Reason::Http5xx));
        g.failover(0, 1);
        g.request(Some(1), Tier::Fallback, 200, 0.01);
        g.request(None, Tier::Exhausted, 503, 0.001);
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            "hfbreaker_gateway_requests_total{code=\"200\",endpoint=\"b\",route=\"r\",tier=\"fallback\"} 1",
            "hfbreaker_gateway_requests_total{code=\"503\",endpoint=\"none\",route=\"r\",tier=\"exhausted\"} 1",
            "hfbreaker_gateway_attempts_total{endpoint=\"a\",reason=\"http_5xx\",result=\"failure\",route=\"r\"} 1",
            "hfbreaker_gateway_attempts_total{endpoint=\"b\",reason=\"none\",result=\"success\",route=\"r\"} 0",
            "hfbreaker_gateway_failovers_total{from=\"a\",route=\"r\",to=\"b\"} 1",
            "hfbreaker_gateway_cache_hits_total{route=\"r\"} 0",
            "hfbreaker_gateway_in_flight_requests{route=\"r\"} 0",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        // The same chain keeps its counters; a new one starts again.
        assert!(Arc::ptr_eq(&m.gateway_route("r", &chain).0, &g.0));
        m.retain_gateway_routes(|_| false);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains("hfbreaker_gateway_"));
    }
}
