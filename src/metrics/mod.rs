//! Prometheus metrics.
//!
//! Every family is described once, as data, in [`families`]; every sample is
//! written through one escaping writer, [`text::TextWriter`]. Per-endpoint
//! and per-route series are plain atomics in one struct per endpoint or
//! route, written straight to the exposition text: with 10,000 endpoints
//! (about 550,000 series) a label-map registry needed 450 MiB and a second
//! per scrape.

pub mod families;
pub mod gateway;
mod process;
pub mod text;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::breaker::{State, TripReason};
use crate::classify::Reason;
use crate::config::EndpointConfig;
use crate::label::label_enum;
use crate::tier::Tier;
use families as f;
use text::{Family, TextWriter};

label_enum! {
    /// `result` label of `hfbreaker_probes_total`.
    pub enum ProbeResult {
        Success = "success",
        Failure = "failure",
        Ignored = "ignored",
        /// Not sent: the circuit was open.
        Rejected = "rejected",
    }
}

label_enum! {
    /// `operation` label of `hfbreaker_local_errors_total`: what this
    /// process failed to do for a reason of its own.
    pub enum LocalOperation {
        /// Accepting a connection on a listener.
        Accept = "accept",
        /// Opening a connection for a probe.
        Probe = "probe",
        /// Saving breaker state to `--storage.path`.
        Storage = "storage",
        /// Sending a gateway request upstream.
        Gateway = "gateway",
    }
}

pub const PROBE_DURATION_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
];

pub const LATENESS_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// An f64 in an atomic, for gauges and float counters.
#[derive(Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    fn add(&self, v: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + v).to_bits())
            });
    }
}

/// A histogram over fixed bounds; `N` counts the `+Inf` bucket too.
struct AtomicHistogram<const N: usize> {
    bounds: &'static [f64],
    /// Non-cumulative counts per bucket, the last one +Inf.
    counts: [AtomicU64; N],
    sum: AtomicF64,
}

impl<const N: usize> AtomicHistogram<N> {
    fn new(bounds: &'static [f64]) -> Self {
        debug_assert_eq!(bounds.len() + 1, N);
        AtomicHistogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicF64::default(),
        }
    }

    fn observe(&self, v: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|le| v <= *le)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.add(v);
    }

    /// Observations so far.
    fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn write(&self, w: &mut TextWriter, family: &Family, values: &[&str]) {
        let counts = self.counts.each_ref().map(|c| c.load(Ordering::Relaxed));
        w.histogram(family, values, self.bounds, &counts, self.sum.get());
    }
}

/// Every series of one endpoint.
struct EndpointSeries {
    name: String,
    host: String,
    kind: &'static str,
    model: String,
    probe: &'static str,
    // Settable: a reload that changes them keeps the series and counters.
    enforced: AtomicU64,
    failure_threshold: AtomicU64,
    failure_rate_threshold: AtomicF64,
    slow_call_duration: AtomicF64,
    latency_baseline: AtomicF64,
    state: AtomicU64,
    state_change: AtomicF64,
    transitions: [[AtomicU64; State::ALL.len()]; State::ALL.len()],
    trips: [AtomicU64; TripReason::ALL.len()],
    consecutive_failures: AtomicU64,
    failure_ratio: AtomicF64,
    open_duration: AtomicF64,
    probes: [AtomicU64; ProbeResult::ALL.len()],
    failures: [AtomicU64; Reason::ALL.len()],
    duration: AtomicHistogram<{ PROBE_DURATION_BUCKETS.len() + 1 }>,
    success: AtomicU64,
    status: AtomicU64,
    loading: AtomicF64,
}

/// Handle to one endpoint's series, held by the endpoint.
#[derive(Clone)]
pub struct EndpointMetrics(Arc<EndpointSeries>);

/// Every series of one route.
struct RouteSeries {
    chain: Vec<String>,
    /// -1 exhausted, else the index in the chain.
    level: AtomicI64,
    seconds: [AtomicF64; Tier::ALL.len()],
    switches: Mutex<BTreeMap<(String, String), u64>>,
}

pub struct Metrics {
    lateness: AtomicHistogram<{ LATENESS_BUCKETS.len() + 1 }>,
    reload_ok: AtomicI64,
    reload_time: AtomicF64,
    local_errors: [AtomicU64; LocalOperation::ALL.len()],
    endpoints: RwLock<BTreeMap<String, Arc<EndpointSeries>>>,
    routes: RwLock<BTreeMap<String, Arc<RouteSeries>>>,
    gateway: gateway::Registry,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            lateness: AtomicHistogram::new(&LATENESS_BUCKETS),
            reload_ok: AtomicI64::new(0),
            reload_time: AtomicF64::default(),
            local_errors: Default::default(),
            endpoints: RwLock::new(BTreeMap::new()),
            routes: RwLock::new(BTreeMap::new()),
            gateway: Default::default(),
        }
    }

    /// Create (or re-create) every series of an endpoint, zeroed, so that
    /// `rate()` and `increase()` see counters from their first value.
    pub fn endpoint(&self, cfg: &EndpointConfig) -> EndpointMetrics {
        let s = Arc::new(EndpointSeries {
            name: cfg.name.clone(),
            host: cfg.host(),
            kind: cfg.kind.as_str(),
            model: cfg.model.clone().unwrap_or_default(),
            probe: cfg.probe.as_str(),
            enforced: AtomicU64::new(u64::from(cfg.enforce)),
            failure_threshold: AtomicU64::new(u64::from(cfg.breaker.failure_threshold)),
            failure_rate_threshold: AtomicF64(AtomicU64::new(
                cfg.breaker.failure_rate_threshold.to_bits(),
            )),
            slow_call_duration: AtomicF64(AtomicU64::new(
                cfg.breaker.slow_call_duration.as_secs_f64().to_bits(),
            )),
            latency_baseline: AtomicF64(AtomicU64::new(f64::NAN.to_bits())),
            state: AtomicU64::new(State::Closed as u64),
            state_change: AtomicF64::default(),
            transitions: Default::default(),
            trips: Default::default(),
            consecutive_failures: AtomicU64::new(0),
            failure_ratio: AtomicF64::default(),
            open_duration: AtomicF64::default(),
            probes: Default::default(),
            failures: Default::default(),
            duration: AtomicHistogram::new(&PROBE_DURATION_BUCKETS),
            success: AtomicU64::new(0),
            status: AtomicU64::new(0),
            loading: AtomicF64::default(),
        });
        self.endpoints
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cfg.name.clone(), s.clone());
        EndpointMetrics(s)
    }

    /// Drop every series of an endpoint (removed or replaced by a reload).
    pub fn remove_endpoint(&self, cfg: &EndpointConfig) {
        self.endpoints
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&cfg.name);
    }

    fn route(&self, route: &str) -> Option<Arc<RouteSeries>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
            .cloned()
    }

    /// Create a route's series (tier counters at 0, so that the fallback
    /// ratio has all its terms) and export its chain.
    pub fn route_init(&self, route: &str, chain: &[String]) {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let keep = routes.get(route).map(|r| {
            (
                r.seconds.each_ref().map(|s| s.get()),
                r.switches.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            )
        });
        let (seconds, switches) = keep.unwrap_or_default();
        let series = RouteSeries {
            chain: chain.to_vec(),
            level: AtomicI64::new(0),
            // Counters survive a reload that keeps the route.
            seconds: seconds.map(|s| {
                let a = AtomicF64::default();
                a.set(s);
                a
            }),
            switches: Mutex::new(switches),
        };
        routes.insert(route.to_string(), Arc::new(series));
    }

    /// The serving level: the index in the chain, `None` when exhausted.
    pub fn route_level(&self, route: &str, level: Option<usize>) {
        if let Some(r) = self.route(route) {
            r.level
                .store(level.map_or(-1, |l| l as i64), Ordering::Relaxed);
        }
    }

    pub fn route_time(&self, route: &str, tier: Tier, seconds: f64) {
        if let Some(r) = self.route(route) {
            r.seconds[tier.index()].add(seconds);
        }
    }

    pub fn route_switch(&self, route: &str, from: &str, to: &str) {
        if let Some(r) = self.route(route) {
            *r.switches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry((from.to_string(), to.to_string()))
                .or_default() += 1;
        }
    }

    pub fn remove_route(&self, route: &str) {
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(route);
    }

    /// A failure of this process itself; never an endpoint's fault.
    pub fn local_error(&self, operation: LocalOperation) {
        self.local_errors[operation.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn scheduler_lateness(&self, seconds: f64) {
        self.lateness.observe(seconds);
    }

    pub fn reload(&self, ok: bool, unix_now: f64) {
        self.reload_ok.store(i64::from(ok), Ordering::Relaxed);
        if ok {
            self.reload_time.set(unix_now);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let eps: Vec<Arc<EndpointSeries>> = self
            .endpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let routes: Vec<(String, Arc<RouteSeries>)> = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut w = TextWriter::with_capacity(8192 + eps.len() * 4400 + routes.len() * 600);
        write_endpoints(&mut w, &eps);
        write_routes(&mut w, &routes);
        gateway::write(&mut w, &self.gateway_series());
        self.write_daemon(&mut w);
        process::write(&mut w);
        w.finish().into_bytes()
    }

    fn write_daemon(&self, w: &mut TextWriter) {
        w.family(&f::BUILD_INFO);
        w.sample(
            &f::BUILD_INFO,
            &[env!("HFBREAKER_REVISION"), env!("CARGO_PKG_VERSION")],
            1u64,
        );
        w.family(&f::CONFIG_RELOAD_SUCCESSFUL);
        w.sample(
            &f::CONFIG_RELOAD_SUCCESSFUL,
            &[],
            self.reload_ok.load(Ordering::Relaxed),
        );
        w.family(&f::CONFIG_RELOAD_TIMESTAMP);
        w.sample(&f::CONFIG_RELOAD_TIMESTAMP, &[], self.reload_time.get());
        w.family(&f::LOCAL_ERRORS);
        for op in LocalOperation::ALL {
            let n = self.local_errors[op.index()].load(Ordering::Relaxed);
            w.sample(&f::LOCAL_ERRORS, &[op.as_str()], n);
        }
        // Only inside a runtime (the daemon renders from its blocking pool).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            w.family(&f::RUNTIME_TASKS);
            w.sample(
                &f::RUNTIME_TASKS,
                &[],
                rt.metrics().num_alive_tasks() as u64,
            );
        }
        w.family(&f::SCHEDULER_LATENESS);
        self.lateness.write(w, &f::SCHEDULER_LATENESS, &[]);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A family with one series per endpoint and label value; `get` reads the
/// value at the label's index.
fn per_label(
    w: &mut TextWriter,
    eps: &[Arc<EndpointSeries>],
    family: &Family,
    labels: &[&str],
    get: impl Fn(&EndpointSeries, usize) -> u64,
) {
    w.family(family);
    for e in eps {
        for (i, v) in labels.iter().enumerate() {
            w.sample(family, &[&e.name, v], get(e, i));
        }
    }
}

/// A per-endpoint gauge family and how to read it.
type Gauge = (&'static Family, fn(&EndpointSeries) -> f64);

const GAUGES: [Gauge; 12] = [
    (&f::CIRCUIT_CONSECUTIVE_FAILURES, |e| {
        e.consecutive_failures.load(Ordering::Relaxed) as f64
    }),
    (&f::CIRCUIT_FAILURE_RATIO, |e| e.failure_ratio.get()),
    (&f::CIRCUIT_OPEN_DURATION, |e| e.open_duration.get()),
    (&f::CIRCUIT_STATE_CHANGE, |e| e.state_change.get()),
    (&f::CIRCUIT_ENFORCED, |e| {
        e.enforced.load(Ordering::Relaxed) as f64
    }),
    (&f::CIRCUIT_FAILURE_THRESHOLD, |e| {
        e.failure_threshold.load(Ordering::Relaxed) as f64
    }),
    (&f::CIRCUIT_FAILURE_RATE_THRESHOLD, |e| {
        e.failure_rate_threshold.get()
    }),
    (&f::CIRCUIT_SLOW_CALL_DURATION, |e| {
        e.slow_call_duration.get()
    }),
    (&f::PROBE_SUCCESS, |e| {
        e.success.load(Ordering::Relaxed) as f64
    }),
    (&f::PROBE_HTTP_STATUS, |e| {
        e.status.load(Ordering::Relaxed) as f64
    }),
    (&f::ENDPOINT_LATENCY_BASELINE, |e| e.latency_baseline.get()),
    (&f::ENDPOINT_LOADING_ESTIMATE, |e| e.loading.get()),
];

fn write_endpoints(w: &mut TextWriter, eps: &[Arc<EndpointSeries>]) {
    let r = Ordering::Relaxed;
    per_label(w, eps, &f::CIRCUIT_STATE, &State::LABELS, |e, i| {
        u64::from(e.state.load(r) as usize == i)
    });
    w.family(&f::CIRCUIT_TRANSITIONS);
    for e in eps {
        for from in State::ALL {
            for to in State::ALL {
                // Transitions appear on first use: 25 zero series per
                // endpoint would double the exposition.
                let n = e.transitions[from.index()][to.index()].load(r);
                if n > 0 {
                    w.sample(
                        &f::CIRCUIT_TRANSITIONS,
                        &[&e.name, from.as_str(), to.as_str()],
                        n,
                    );
                }
            }
        }
    }
    per_label(w, eps, &f::CIRCUIT_TRIPS, &TripReason::LABELS, |e, i| {
        e.trips[i].load(r)
    });
    for (family, get) in GAUGES {
        w.family(family);
        for e in eps {
            w.sample(family, &[&e.name], get(e));
        }
    }
    w.family(&f::ENDPOINT_INFO);
    for e in eps {
        w.sample(
            &f::ENDPOINT_INFO,
            &[&e.name, &e.host, e.kind, &e.model, e.probe],
            1u64,
        );
    }
    per_label(w, eps, &f::PROBES, &ProbeResult::LABELS, |e, i| {
        e.probes[i].load(r)
    });
    per_label(w, eps, &f::PROBE_FAILURES, &Reason::LABELS, |e, i| {
        e.failures[i].load(r)
    });
    w.family(&f::PROBE_DURATION);
    for e in eps {
        e.duration.write(w, &f::PROBE_DURATION, &[&e.name]);
    }
}

fn write_routes(w: &mut TextWriter, routes: &[(String, Arc<RouteSeries>)]) {
    let r = Ordering::Relaxed;
    w.family(&f::ROUTE_LEVEL);
    for (name, route) in routes {
        w.sample(&f::ROUTE_LEVEL, &[name], route.level.load(r));
    }
    w.family(&f::ROUTE_SERVING);
    for (name, route) in routes {
        let level = route.level.load(r);
        for (i, e) in route.chain.iter().enumerate() {
            w.sample(&f::ROUTE_SERVING, &[e, name], u64::from(level == i as i64));
        }
        w.sample(&f::ROUTE_SERVING, &["none", name], u64::from(level < 0));
    }
    w.family(&f::ROUTE_ENDPOINT_INFO);
    let mut position = String::new();
    for (name, route) in routes {
        for (i, e) in route.chain.iter().enumerate() {
            position.clear();
            position.push_str(&i.to_string());
            w.sample(&f::ROUTE_ENDPOINT_INFO, &[e, &position, name], 1u64);
        }
    }
    w.family(&f::ROUTE_LEVEL_SECONDS);
    for (name, route) in routes {
        for t in Tier::ALL {
            w.sample(
                &f::ROUTE_LEVEL_SECONDS,
                &[name, t.as_str()],
                route.seconds[t.index()].get(),
            );
        }
    }
    w.family(&f::ROUTE_SWITCHES);
    for (name, route) in routes {
        let switches = route.switches.lock().unwrap_or_else(|p| p.into_inner());
        for ((from, to), n) in switches.iter() {
            w.sample(&f::ROUTE_SWITCHES, &[from, name, to], *n);
        }
    }
}

impl EndpointMetrics {
    pub fn transition(&self, from: State, to: State) {
        self.0.transitions[from.index()][to.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_state(&self, state: State, unix_since: f64) {
        self.0.state.store(state as u64, Ordering::Relaxed);
        self.0.state_change.set(unix_since);
    }

    pub fn trip(&self, reason: TripReason) {
        self.0.trips[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn breaker_stats(&self, consecutive: u32, ratio: f64, open_seconds: f64) {
        self.0
            .consecutive_failures
            .store(u64::from(consecutive), Ordering::Relaxed);
        self.0.failure_ratio.set(ratio);
        self.0.open_duration.set(open_seconds);
    }

    /// The configured values the endpoint exports (`enforce`, thresholds),
    /// after a reload changed them; the slow-call threshold in force follows
    /// the breaker through [`EndpointMetrics::latency`].
    pub fn configured(&self, cfg: &EndpointConfig) {
        let s = &self.0;
        s.enforced.store(u64::from(cfg.enforce), Ordering::Relaxed);
        s.failure_threshold
            .store(u64::from(cfg.breaker.failure_threshold), Ordering::Relaxed);
        s.failure_rate_threshold
            .set(cfg.breaker.failure_rate_threshold);
    }

    /// The slow-call threshold in force and the learned baseline (None
    /// while warming up: NaN), both in seconds.
    pub fn latency(&self, slow_call_seconds: f64, baseline_seconds: Option<f64>) {
        self.0.slow_call_duration.set(slow_call_seconds);
        self.0
            .latency_baseline
            .set(baseline_seconds.unwrap_or(f64::NAN));
    }

    pub fn probe(&self, result: ProbeResult) {
        self.0.probes[result.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn probe_done(
        &self,
        result: ProbeResult,
        reason: Option<Reason>,
        seconds: f64,
        status: Option<u16>,
        loading: Option<f64>,
    ) {
        let s = &self.0;
        self.probe(result);
        if let Some(r) = reason {
            s.failures[r.index()].fetch_add(1, Ordering::Relaxed);
        }
        s.duration.observe(seconds);
        s.success
            .store(u64::from(result == ProbeResult::Success), Ordering::Relaxed);
        s.status
            .store(status.map_or(0, u64::from), Ordering::Relaxed);
        s.loading.set(if reason == Some(Reason::ModelLoading) {
            loading.unwrap_or(0.0)
        } else {
            0.0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_is_valid_text_format() {
        let m = Metrics::new();
        let cfg = crate::config::parse(
            "endpoints:\n  - {name: a, kind: openai, model: 'org/m\"x', probe: chat}\nroutes:\n  - {name: r, endpoints: [a]}\n",
            "x",
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap();
        let e = m.endpoint(&cfg.endpoints[0]);
        m.route_init("r", &cfg.routes[0].endpoints);
        e.probe_done(ProbeResult::Success, None, 0.03, Some(200), None);
        e.probe_done(
            ProbeResult::Failure,
            Some(Reason::Timeout),
            99.0,
            None,
            None,
        );
        e.transition(State::Closed, State::Open);
        m.route_switch("r", "a", "none");
        let text = String::from_utf8(m.render()).unwrap();
        let mut families = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap().to_string();
                assert!(
                    families.insert(current.clone()),
                    "family {current} declared twice"
                );
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(
                series.starts_with(&current),
                "{line} outside its family {current}"
            );
        }
        assert!(
            text.contains(
                "hfbreaker_probe_duration_seconds_bucket{endpoint=\"a\",le=\"0.05\"} 1\n"
            )
        );
        assert!(
            text.contains(
                "hfbreaker_probe_duration_seconds_bucket{endpoint=\"a\",le=\"+Inf\"} 2\n"
            )
        );
        assert!(text.contains("hfbreaker_probe_duration_seconds_count{endpoint=\"a\"} 2\n"));
        assert!(text.contains("hfbreaker_probe_duration_seconds_sum{endpoint=\"a\"} 99.03\n"));
        assert!(
            text.contains("model=\"org/m\\\"x\""),
            "label values are escaped"
        );
        assert!(text.contains(
            "hfbreaker_circuit_transitions_total{endpoint=\"a\",from=\"closed\",to=\"open\"} 1\n"
        ));
        assert!(
            !text.contains("to=\"half_open\""),
            "transitions appear on first use"
        );
        assert!(text.contains("hfbreaker_build_info{"));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}

#[cfg(test)]
mod exact {
    use super::*;

    /// The exposition of one endpoint in one route, without the `process_*`
    /// families (they read this process) and with the build labels fixed.
    fn one_endpoint() -> String {
        let m = Metrics::new();
        let cfg = crate::config::parse(
            "endpoints:\n  - {name: tgi-a, kind: tgi, url: 'http://h.example:8080', model: 'org/m\"x\\\\y ü', probe: chat}\nroutes:\n  - {name: r, endpoints: [tgi-a]}\n",
            "x",
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap();
        let e = m.endpoint(&cfg.endpoints[0]);
        m.route_init("r", &cfg.routes[0].endpoints);
        m.route_level("r", None);
        m.route_switch("r", "tgi-a", "none");
        m.route_time("r", Tier::Primary, 12.5);
        e.set_state(State::Open, 1_700_000_000.5);
        e.transition(State::Closed, State::Open);
        e.trip(TripReason::ConsecutiveFailures);
        e.breaker_stats(5, 0.25, 60.0);
        e.latency(0.075, Some(0.03));
        e.probe_done(ProbeResult::Success, None, 0.03, Some(200), None);
        e.probe_done(
            ProbeResult::Failure,
            Some(Reason::ModelLoading),
            99.0,
            Some(503),
            Some(1e308),
        );
        e.probe(ProbeResult::Rejected);
        m.reload(true, 1_700_000_001.0);
        m.scheduler_lateness(0.002);
        m.local_error(LocalOperation::Probe);
        let text = String::from_utf8(m.render()).unwrap();
        let build = format!(
            "hfbreaker_build_info{{revision=\"{}\",version=\"{}\"}} 1",
            env!("HFBREAKER_REVISION"),
            env!("CARGO_PKG_VERSION")
        );
        let mut out: String = text
            .split_inclusive('\n')
            .take_while(|l| !l.contains(" process_"))
            .collect();
        out = out.replace(
            &build,
            "hfbreaker_build_info{revision=\"R\",version=\"V\"} 1",
        );
        out
    }

    #[test]
    fn one_endpoint_exact_output() {
        let got = one_endpoint();
        assert_eq!(got, EXPECTED);
    }

    const EXPECTED: &str = r#"# HELP hfbreaker_circuit_state Breaker state, one-hot over the state label.
# TYPE hfbreaker_circuit_state gauge
hfbreaker_circuit_state{endpoint="tgi-a",state="closed"} 0
hfbreaker_circuit_state{endpoint="tgi-a",state="open"} 1
hfbreaker_circuit_state{endpoint="tgi-a",state="half_open"} 0
hfbreaker_circuit_state{endpoint="tgi-a",state="forced_open"} 0
hfbreaker_circuit_state{endpoint="tgi-a",state="forced_closed"} 0
# HELP hfbreaker_circuit_transitions_total Breaker state transitions.
# TYPE hfbreaker_circuit_transitions_total counter
hfbreaker_circuit_transitions_total{endpoint="tgi-a",from="closed",to="open"} 1
# HELP hfbreaker_circuit_trips_total Entries into open or forced_open, by reason.
# TYPE hfbreaker_circuit_trips_total counter
hfbreaker_circuit_trips_total{endpoint="tgi-a",reason="consecutive_failures"} 1
hfbreaker_circuit_trips_total{endpoint="tgi-a",reason="failure_rate"} 0
hfbreaker_circuit_trips_total{endpoint="tgi-a",reason="slow_calls"} 0
hfbreaker_circuit_trips_total{endpoint="tgi-a",reason="half_open_failure"} 0
hfbreaker_circuit_trips_total{endpoint="tgi-a",reason="manual"} 0
# HELP hfbreaker_circuit_consecutive_failures Failed probes in a row.
# TYPE hfbreaker_circuit_consecutive_failures gauge
hfbreaker_circuit_consecutive_failures{endpoint="tgi-a"} 5
# HELP hfbreaker_circuit_failure_ratio Share of failed probes in the breaker window (0 when empty).
# TYPE hfbreaker_circuit_failure_ratio gauge
hfbreaker_circuit_failure_ratio{endpoint="tgi-a"} 0.25
# HELP hfbreaker_circuit_open_duration_seconds Length of the current or last open period (the backoff).
# TYPE hfbreaker_circuit_open_duration_seconds gauge
hfbreaker_circuit_open_duration_seconds{endpoint="tgi-a"} 60
# HELP hfbreaker_circuit_state_change_timestamp_seconds Unix time of the last state change.
# TYPE hfbreaker_circuit_state_change_timestamp_seconds gauge
hfbreaker_circuit_state_change_timestamp_seconds{endpoint="tgi-a"} 1700000000.5
# HELP hfbreaker_circuit_enforced 1 when routes obey this breaker, 0 when observe-only.
# TYPE hfbreaker_circuit_enforced gauge
hfbreaker_circuit_enforced{endpoint="tgi-a"} 1
# HELP hfbreaker_circuit_failure_threshold Configured consecutive failures that trip the breaker.
# TYPE hfbreaker_circuit_failure_threshold gauge
hfbreaker_circuit_failure_threshold{endpoint="tgi-a"} 5
# HELP hfbreaker_circuit_failure_rate_threshold Configured failure ratio that trips the breaker.
# TYPE hfbreaker_circuit_failure_rate_threshold gauge
hfbreaker_circuit_failure_rate_threshold{endpoint="tgi-a"} 0.5
# HELP hfbreaker_circuit_slow_call_duration_seconds Duration above which a successful probe is a slow call: the configured one, or with slow_call_duration auto the learned one.
# TYPE hfbreaker_circuit_slow_call_duration_seconds gauge
hfbreaker_circuit_slow_call_duration_seconds{endpoint="tgi-a"} 0.075
# HELP hfbreaker_probe_success 1 if the last sent probe succeeded.
# TYPE hfbreaker_probe_success gauge
hfbreaker_probe_success{endpoint="tgi-a"} 0
# HELP hfbreaker_probe_http_status_code HTTP status of the last probe (0 when no answer).
# TYPE hfbreaker_probe_http_status_code gauge
hfbreaker_probe_http_status_code{endpoint="tgi-a"} 503
# HELP hfbreaker_endpoint_latency_baseline_seconds Learned typical probe latency (geometric mean of successful probes while closed); NaN until warmed up.
# TYPE hfbreaker_endpoint_latency_baseline_seconds gauge
hfbreaker_endpoint_latency_baseline_seconds{endpoint="tgi-a"} 0.03
# HELP hfbreaker_endpoint_loading_estimated_seconds Seconds until the model is loaded, as the server last said (0 when not loading).
# TYPE hfbreaker_endpoint_loading_estimated_seconds gauge
hfbreaker_endpoint_loading_estimated_seconds{endpoint="tgi-a"} 1e308
# HELP hfbreaker_endpoint_info Endpoint metadata; always 1.
# TYPE hfbreaker_endpoint_info gauge
hfbreaker_endpoint_info{endpoint="tgi-a",host="h.example:8080",kind="tgi",model="org/m\"x\\\\y ü",probe="chat"} 1
# HELP hfbreaker_probes_total Scheduled probes by result; rejected = not sent because the circuit was open.
# TYPE hfbreaker_probes_total counter
hfbreaker_probes_total{endpoint="tgi-a",result="success"} 1
hfbreaker_probes_total{endpoint="tgi-a",result="failure"} 1
hfbreaker_probes_total{endpoint="tgi-a",result="ignored"} 0
hfbreaker_probes_total{endpoint="tgi-a",result="rejected"} 1
# HELP hfbreaker_probe_failures_total Unsuccessful probes by reason, ignored reasons included.
# TYPE hfbreaker_probe_failures_total counter
hfbreaker_probe_failures_total{endpoint="tgi-a",reason="bad_response"} 0
hfbreaker_probe_failures_total{endpoint="tgi-a",reason="timeout"} 0
hfbreaker_probe_failures_total{endpoint="tgi-a",reason="connect"} 0
hfbreaker_probe_failures_total{endpoint="tgi-a",reason="http_5xx"} 0
hfbreaker_probe_failures_total{endpoint="tgi-a",reason="model_loading"} 1
hfbreaker_probe_failures_total{endpoint="tgi-a",reason="rate_limited"} 0
hfbreaker_probe_failures_total{endpoint="tgi-a",reason="auth"} 0
hfbreaker_probe_failures_total{endpoint="tgi-a",reason="client_error"} 0
hfbreaker_probe_failures_total{endpoint="tgi-a",reason="scaled_to_zero"} 0
hfbreaker_probe_failures_total{endpoint="tgi-a",reason="paused"} 0
hfbreaker_probe_failures_total{endpoint="tgi-a",reason="endpoint_failed"} 0
# HELP hfbreaker_probe_duration_seconds Duration of sent probes.
# TYPE hfbreaker_probe_duration_seconds histogram
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="0.01"} 0
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="0.025"} 0
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="0.05"} 1
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="0.1"} 1
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="0.25"} 1
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="0.5"} 1
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="1"} 1
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="2.5"} 1
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="5"} 1
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="10"} 1
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="20"} 1
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="30"} 1
hfbreaker_probe_duration_seconds_bucket{endpoint="tgi-a",le="+Inf"} 2
hfbreaker_probe_duration_seconds_sum{endpoint="tgi-a"} 99.03
hfbreaker_probe_duration_seconds_count{endpoint="tgi-a"} 2
# HELP hfbreaker_route_level Serving level: 0 primary, k the k-th fallback, -1 exhausted.
# TYPE hfbreaker_route_level gauge
hfbreaker_route_level{route="r"} -1
# HELP hfbreaker_route_serving Endpoint serving the route, one-hot (endpoint="none" when exhausted).
# TYPE hfbreaker_route_serving gauge
hfbreaker_route_serving{endpoint="tgi-a",route="r"} 0
hfbreaker_route_serving{endpoint="none",route="r"} 1
# HELP hfbreaker_route_endpoint_info Route membership: position 0 is the primary, k the k-th fallback; always 1.
# TYPE hfbreaker_route_endpoint_info gauge
hfbreaker_route_endpoint_info{endpoint="tgi-a",position="0",route="r"} 1
# HELP hfbreaker_route_level_seconds_total Seconds each route spent per tier.
# TYPE hfbreaker_route_level_seconds_total counter
hfbreaker_route_level_seconds_total{route="r",tier="primary"} 12.5
hfbreaker_route_level_seconds_total{route="r",tier="fallback"} 0
hfbreaker_route_level_seconds_total{route="r",tier="exhausted"} 0
# HELP hfbreaker_route_switches_total Changes of the serving endpoint.
# TYPE hfbreaker_route_switches_total counter
hfbreaker_route_switches_total{from="tgi-a",route="r",to="none"} 1
# HELP hfbreaker_build_info Build metadata; always 1.
# TYPE hfbreaker_build_info gauge
hfbreaker_build_info{revision="R",version="V"} 1
# HELP hfbreaker_config_last_reload_successful 1 if the last config load succeeded.
# TYPE hfbreaker_config_last_reload_successful gauge
hfbreaker_config_last_reload_successful 1
# HELP hfbreaker_config_last_reload_success_timestamp_seconds Unix time of the last successful config load.
# TYPE hfbreaker_config_last_reload_success_timestamp_seconds gauge
hfbreaker_config_last_reload_success_timestamp_seconds 1700000001
# HELP hfbreaker_local_errors_total Failures of this process (out of file descriptors or memory), never counted against an endpoint.
# TYPE hfbreaker_local_errors_total counter
hfbreaker_local_errors_total{operation="accept"} 0
hfbreaker_local_errors_total{operation="probe"} 1
hfbreaker_local_errors_total{operation="storage"} 0
hfbreaker_local_errors_total{operation="gateway"} 0
# HELP hfbreaker_scheduler_lateness_seconds How late scheduled probes started against their due time.
# TYPE hfbreaker_scheduler_lateness_seconds histogram
hfbreaker_scheduler_lateness_seconds_bucket{le="0.001"} 0
hfbreaker_scheduler_lateness_seconds_bucket{le="0.005"} 1
hfbreaker_scheduler_lateness_seconds_bucket{le="0.01"} 1
hfbreaker_scheduler_lateness_seconds_bucket{le="0.025"} 1
hfbreaker_scheduler_lateness_seconds_bucket{le="0.05"} 1
hfbreaker_scheduler_lateness_seconds_bucket{le="0.1"} 1
hfbreaker_scheduler_lateness_seconds_bucket{le="0.25"} 1
hfbreaker_scheduler_lateness_seconds_bucket{le="1"} 1
hfbreaker_scheduler_lateness_seconds_bucket{le="+Inf"} 1
hfbreaker_scheduler_lateness_seconds_sum 0.002
hfbreaker_scheduler_lateness_seconds_count 1
"#;
}
