//! Prometheus metrics. Names and labels are a contract shared with the
//! dashboards, the alert rules and users' queries: change them only with those.
//!
//! Process-wide metrics (build info, reloads, scheduler lateness, the process
//! collector) live in a `prometheus` registry. Per-endpoint and per-route
//! series are plain atomics in one struct per endpoint or route, written
//! straight to the exposition text: with 10,000 endpoints (about 550,000
//! series) a label-map registry needed 450 MiB and a second per scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::breaker::{State, TripReason};
use crate::config::EndpointConfig;
use crate::probe::Reason;
use crate::route::Tier;

/// `result` label of `hfbreaker_probes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    Failure,
    Ignored,
    Rejected,
}

impl ProbeResult {
    pub const ALL: [ProbeResult; 4] = [
        ProbeResult::Success,
        ProbeResult::Failure,
        ProbeResult::Ignored,
        ProbeResult::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Success => "success",
            ProbeResult::Failure => "failure",
            ProbeResult::Ignored => "ignored",
            ProbeResult::Rejected => "rejected",
        }
    }
}

pub const PROBE_DURATION_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
];

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

/// Every series of one endpoint.
struct EndpointSeries {
    name: String,
    /// `kind`, `probe`, `host`, `model` labels of `hfbreaker_endpoint_info`, escaped.
    info: String,
    enforced: i64,
    failure_threshold: u32,
    failure_rate_threshold: f64,
    slow_call_duration: f64,
    state: AtomicU64,
    state_change: AtomicF64,
    transitions: [[AtomicU64; 5]; 5],
    trips: [AtomicU64; 5],
    consecutive_failures: AtomicU64,
    failure_ratio: AtomicF64,
    open_duration: AtomicF64,
    probes: [AtomicU64; 4],
    failures: [AtomicU64; Reason::ALL.len()],
    /// Non-cumulative counts per bucket, the last one +Inf.
    buckets: [AtomicU64; PROBE_DURATION_BUCKETS.len() + 1],
    duration_sum: AtomicF64,
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
    seconds: [AtomicF64; 3],
    switches: Mutex<BTreeMap<(String, String), u64>>,
}

pub struct Metrics {
    registry: Registry,
    lateness: Histogram,
    reload_ok: IntGauge,
    reload_time: prometheus::Gauge,
    endpoints: RwLock<BTreeMap<String, Arc<EndpointSeries>>>,
    routes: RwLock<BTreeMap<String, Arc<RouteSeries>>>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let lateness = Histogram::with_opts(
            HistogramOpts::new(
                "hfbreaker_scheduler_lateness_seconds",
                "How late scheduled probes started against their due time.",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
        )
        .expect("valid histogram");
        let reload_ok = IntGauge::new(
            "hfbreaker_config_last_reload_successful",
            "1 if the last config load succeeded.",
        )
        .expect("valid gauge");
        let reload_time = prometheus::Gauge::new(
            "hfbreaker_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
        )
        .expect("valid gauge");
        let build = IntGaugeVec::new(
            Opts::new("hfbreaker_build_info", "Build metadata; always 1."),
            &["version", "revision"],
        )
        .expect("valid gauge");
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("HFBREAKER_REVISION")])
            .set(1);
        for c in [
            Box::new(lateness.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reload_ok.clone()),
            Box::new(reload_time.clone()),
            Box::new(build),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics register once");
        Metrics {
            registry,
            lateness,
            reload_ok,
            reload_time,
            endpoints: RwLock::new(BTreeMap::new()),
            routes: RwLock::new(BTreeMap::new()),
        }
    }

    /// Create (or re-create) every series of an endpoint, zeroed, so that
    /// `rate()` and `increase()` see counters from their first value.
    pub fn endpoint(&self, cfg: &EndpointConfig) -> EndpointMetrics {
        let info = format!(
            "host=\"{}\",kind=\"{}\",model=\"{}\",probe=\"{}\"",
            escape(&cfg.host()),
            cfg.kind.as_str(),
            escape(cfg.model.as_deref().unwrap_or("")),
            cfg.probe.as_str()
        );
        let s = Arc::new(EndpointSeries {
            name: cfg.name.clone(),
            info,
            enforced: i64::from(cfg.enforce),
            failure_threshold: cfg.breaker.failure_threshold,
            failure_rate_threshold: cfg.breaker.failure_rate_threshold,
            slow_call_duration: cfg.breaker.slow_call_duration.as_secs_f64(),
            state: AtomicU64::new(State::Closed as u64),
            state_change: AtomicF64::default(),
            transitions: Default::default(),
            trips: Default::default(),
            consecutive_failures: AtomicU64::new(0),
            failure_ratio: AtomicF64::default(),
            open_duration: AtomicF64::default(),
            probes: Default::default(),
            failures: Default::default(),
            buckets: Default::default(),
            duration_sum: AtomicF64::default(),
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
        routes.insert(
            route.to_string(),
            Arc::new(RouteSeries {
                chain: chain.to_vec(),
                level: AtomicI64::new(0),
                // Counters survive a reload that keeps the route.
                seconds: [0, 1, 2].map(|i| {
                    let a = AtomicF64::default();
                    a.set(seconds.get(i).copied().unwrap_or(0.0));
                    a
                }),
                switches: Mutex::new(switches),
            }),
        );
    }

    pub fn route_level(&self, route: &str, level: i64) {
        if let Some(r) = self.route(route) {
            r.level.store(level, Ordering::Relaxed);
        }
    }

    /// The serving endpoint follows from the level; kept for callers that
    /// think in endpoints.
    pub fn route_serving(&self, route: &str, chain: &[String], serving: Option<&str>) {
        let level = serving
            .and_then(|s| chain.iter().position(|e| e == s))
            .map_or(-1, |i| i as i64);
        self.route_level(route, level);
    }

    pub fn route_time(&self, route: &str, tier: Tier, seconds: f64) {
        if let Some(r) = self.route(route) {
            r.seconds[tier as usize].add(seconds);
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

    pub fn scheduler_lateness(&self, seconds: f64) {
        self.lateness.observe(seconds);
    }

    pub fn reload(&self, ok: bool, unix_now: f64) {
        self.reload_ok.set(i64::from(ok));
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
        let mut out = String::with_capacity(4096 + eps.len() * 4200 + routes.len() * 600);
        render_endpoints(&mut out, &eps);
        render_routes(&mut out, &routes);
        let mut buf = out.into_bytes();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding to a Vec cannot fail");
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A family with one series per endpoint and value of `label`; `get` reads
/// the value at the label's index.
fn per_label<const N: usize>(
    out: &mut String,
    eps: &[Arc<EndpointSeries>],
    (name, kind, help): (&str, &str, &str),
    label: &str,
    values: [&str; N],
    get: impl Fn(&EndpointSeries, usize) -> u64,
) {
    family(out, name, kind, help);
    for e in eps {
        for (i, v) in values.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{endpoint=\"{}\",{label}=\"{v}\"}} {}",
                e.name,
                get(e, i)
            );
        }
    }
}

/// A per-endpoint gauge family: name, help, and how to read it.
type Gauge = (&'static str, &'static str, fn(&EndpointSeries) -> f64);

fn render_endpoints(out: &mut String, eps: &[Arc<EndpointSeries>]) {
    let r = Ordering::Relaxed;
    per_label(
        out,
        eps,
        (
            "hfbreaker_circuit_state",
            "gauge",
            "Breaker state, one-hot over the state label.",
        ),
        "state",
        State::ALL.map(State::as_str),
        |e, i| u64::from(e.state.load(Ordering::Relaxed) as usize == i),
    );
    family(
        out,
        "hfbreaker_circuit_transitions_total",
        "counter",
        "Breaker state transitions.",
    );
    for e in eps {
        for from in State::ALL {
            for to in State::ALL {
                let n = e.transitions[from.index()][to.index()].load(r);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "hfbreaker_circuit_transitions_total{{endpoint=\"{}\",from=\"{}\",to=\"{}\"}} {n}",
                        e.name,
                        from.as_str(),
                        to.as_str()
                    );
                }
            }
        }
    }
    per_label(
        out,
        eps,
        (
            "hfbreaker_circuit_trips_total",
            "counter",
            "Entries into open or forced_open, by reason.",
        ),
        "reason",
        TripReason::ALL.map(TripReason::as_str),
        |e, i| e.trips[i].load(Ordering::Relaxed),
    );
    let gauges: [Gauge; 10] = [
        (
            "hfbreaker_circuit_consecutive_failures",
            "Failed probes in a row.",
            |e| e.consecutive_failures.load(Ordering::Relaxed) as f64,
        ),
        (
            "hfbreaker_circuit_failure_ratio",
            "Share of failed probes in the breaker window (0 when empty).",
            |e| e.failure_ratio.get(),
        ),
        (
            "hfbreaker_circuit_open_duration_seconds",
            "Length of the current or last open period (the backoff).",
            |e| e.open_duration.get(),
        ),
        (
            "hfbreaker_circuit_state_change_timestamp_seconds",
            "Unix time of the last state change.",
            |e| e.state_change.get(),
        ),
        (
            "hfbreaker_circuit_enforced",
            "1 when routes obey this breaker, 0 when observe-only.",
            |e| e.enforced as f64,
        ),
        (
            "hfbreaker_circuit_failure_threshold",
            "Configured consecutive failures that trip the breaker.",
            |e| f64::from(e.failure_threshold),
        ),
        (
            "hfbreaker_circuit_failure_rate_threshold",
            "Configured failure ratio that trips the breaker.",
            |e| e.failure_rate_threshold,
        ),
        (
            "hfbreaker_circuit_slow_call_duration_seconds",
            "Configured duration above which a successful probe is a slow call.",
            |e| e.slow_call_duration,
        ),
        (
            "hfbreaker_probe_success",
            "1 if the last sent probe succeeded.",
            |e| e.success.load(Ordering::Relaxed) as f64,
        ),
        (
            "hfbreaker_probe_http_status_code",
            "HTTP status of the last probe (0 when no answer).",
            |e| e.status.load(Ordering::Relaxed) as f64,
        ),
    ];
    for (name, help, get) in gauges {
        family(out, name, "gauge", help);
        for e in eps {
            let _ = writeln!(out, "{name}{{endpoint=\"{}\"}} {}", e.name, get(e));
        }
    }
    family(
        out,
        "hfbreaker_endpoint_loading_estimated_seconds",
        "gauge",
        "Seconds until the model is loaded, as the server last said (0 when not loading).",
    );
    for e in eps {
        let _ = writeln!(
            out,
            "hfbreaker_endpoint_loading_estimated_seconds{{endpoint=\"{}\"}} {}",
            e.name,
            e.loading.get()
        );
    }
    family(
        out,
        "hfbreaker_endpoint_info",
        "gauge",
        "Endpoint metadata; always 1.",
    );
    for e in eps {
        let _ = writeln!(
            out,
            "hfbreaker_endpoint_info{{endpoint=\"{}\",{}}} 1",
            e.name, e.info
        );
    }
    per_label(
        out,
        eps,
        (
            "hfbreaker_probes_total",
            "counter",
            "Scheduled probes by result; rejected = not sent because the circuit was open.",
        ),
        "result",
        ProbeResult::ALL.map(ProbeResult::as_str),
        |e, i| e.probes[i].load(Ordering::Relaxed),
    );
    per_label(
        out,
        eps,
        (
            "hfbreaker_probe_failures_total",
            "counter",
            "Unsuccessful probes by reason, ignored reasons included.",
        ),
        "reason",
        Reason::ALL.map(Reason::as_str),
        |e, i| e.failures[i].load(Ordering::Relaxed),
    );
    family(
        out,
        "hfbreaker_probe_duration_seconds",
        "histogram",
        "Duration of sent probes.",
    );
    for e in eps {
        let mut cumulative = 0;
        for (i, le) in PROBE_DURATION_BUCKETS.iter().enumerate() {
            cumulative += e.buckets[i].load(r);
            let _ = writeln!(
                out,
                "hfbreaker_probe_duration_seconds_bucket{{endpoint=\"{}\",le=\"{le}\"}} {cumulative}",
                e.name
            );
        }
        cumulative += e.buckets[PROBE_DURATION_BUCKETS.len()].load(r);
        let _ = writeln!(
            out,
            "hfbreaker_probe_duration_seconds_bucket{{endpoint=\"{}\",le=\"+Inf\"}} {cumulative}",
            e.name
        );
        let _ = writeln!(
            out,
            "hfbreaker_probe_duration_seconds_sum{{endpoint=\"{}\"}} {}",
            e.name,
            e.duration_sum.get()
        );
        let _ = writeln!(
            out,
            "hfbreaker_probe_duration_seconds_count{{endpoint=\"{}\"}} {cumulative}",
            e.name
        );
    }
}

fn render_routes(out: &mut String, routes: &[(String, Arc<RouteSeries>)]) {
    family(
        out,
        "hfbreaker_route_level",
        "gauge",
        "Serving level: 0 primary, k the k-th fallback, -1 exhausted.",
    );
    for (name, r) in routes {
        let _ = writeln!(
            out,
            "hfbreaker_route_level{{route=\"{name}\"}} {}",
            r.level.load(Ordering::Relaxed)
        );
    }
    family(
        out,
        "hfbreaker_route_serving",
        "gauge",
        "Endpoint serving the route, one-hot (endpoint=\"none\" when exhausted).",
    );
    for (name, r) in routes {
        let level = r.level.load(Ordering::Relaxed);
        for (i, e) in r.chain.iter().enumerate() {
            let _ = writeln!(
                out,
                "hfbreaker_route_serving{{endpoint=\"{e}\",route=\"{name}\"}} {}",
                u8::from(level == i as i64)
            );
        }
        let _ = writeln!(
            out,
            "hfbreaker_route_serving{{endpoint=\"none\",route=\"{name}\"}} {}",
            u8::from(level < 0)
        );
    }
    family(
        out,
        "hfbreaker_route_endpoint_info",
        "gauge",
        "Route membership: position 0 is the primary, k the k-th fallback; always 1.",
    );
    for (name, r) in routes {
        for (i, e) in r.chain.iter().enumerate() {
            let _ = writeln!(
                out,
                "hfbreaker_route_endpoint_info{{endpoint=\"{e}\",position=\"{i}\",route=\"{name}\"}} 1"
            );
        }
    }
    family(
        out,
        "hfbreaker_route_level_seconds_total",
        "counter",
        "Seconds each route spent per tier.",
    );
    for (name, r) in routes {
        for t in Tier::ALL {
            let _ = writeln!(
                out,
                "hfbreaker_route_level_seconds_total{{route=\"{name}\",tier=\"{}\"}} {}",
                t.as_str(),
                r.seconds[t as usize].get()
            );
        }
    }
    family(
        out,
        "hfbreaker_route_switches_total",
        "counter",
        "Changes of the serving endpoint.",
    );
    for (name, r) in routes {
        for ((from, to), n) in r.switches.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "hfbreaker_route_switches_total{{from=\"{from}\",route=\"{name}\",to=\"{to}\"}} {n}"
            );
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
        self.0.trips[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn breaker_stats(&self, consecutive: u32, ratio: f64, open_seconds: f64) {
        self.0
            .consecutive_failures
            .store(u64::from(consecutive), Ordering::Relaxed);
        self.0.failure_ratio.set(ratio);
        self.0.open_duration.set(open_seconds);
    }

    pub fn probe(&self, result: ProbeResult) {
        self.0.probes[result as usize].fetch_add(1, Ordering::Relaxed);
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
        let bucket = PROBE_DURATION_BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(PROBE_DURATION_BUCKETS.len());
        s.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        s.duration_sum.add(seconds);
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
