//! Prometheus metrics. Names and labels are a contract shared with the
//! dashboards, the alert rules and users' queries: change them only with those.

use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
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

pub struct Metrics {
    pub registry: Registry,
    circuit_state: IntGaugeVec,
    transitions: IntCounterVec,
    trips: IntCounterVec,
    consecutive_failures: IntGaugeVec,
    failure_ratio: GaugeVec,
    open_duration: GaugeVec,
    state_change: GaugeVec,
    enforced: IntGaugeVec,
    failure_threshold: IntGaugeVec,
    failure_rate_threshold: GaugeVec,
    slow_call_duration: GaugeVec,
    probes: IntCounterVec,
    probe_failures: IntCounterVec,
    probe_duration: HistogramVec,
    probe_success: IntGaugeVec,
    probe_status: IntGaugeVec,
    loading_estimate: GaugeVec,
    endpoint_info: IntGaugeVec,
    route_level: IntGaugeVec,
    route_serving: IntGaugeVec,
    route_level_seconds: CounterVec,
    route_switches: IntCounterVec,
    route_endpoint: IntGaugeVec,
    reload_ok: IntGauge,
    reload_time: prometheus::Gauge,
}

/// Pre-resolved series of one endpoint: the probe path touches no hash map.
pub struct EndpointMetrics {
    name: String,
    /// Created lazily: 25 from/to pairs per endpoint would mostly stay empty.
    transitions: IntCounterVec,
    state: [IntGauge; 5],
    trips: [IntCounter; 5],
    consecutive_failures: IntGauge,
    failure_ratio: prometheus::Gauge,
    open_duration: prometheus::Gauge,
    state_change: prometheus::Gauge,
    probes: [IntCounter; 4],
    failures: [IntCounter; Reason::ALL.len()],
    duration: Histogram,
    success: IntGauge,
    status: IntGauge,
    loading: prometheus::Gauge,
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let g = |name: &str, help: &str, labels: &[&str]| {
            reg(&r, IntGaugeVec::new(Opts::new(name, help), labels).unwrap())
        };
        let f = |name: &str, help: &str, labels: &[&str]| {
            reg(&r, GaugeVec::new(Opts::new(name, help), labels).unwrap())
        };
        let c = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).unwrap(),
            )
        };
        let m = Metrics {
            circuit_state: g(
                "hfbreaker_circuit_state",
                "Breaker state, one-hot over the state label.",
                &["endpoint", "state"],
            ),
            transitions: c(
                "hfbreaker_circuit_transitions_total",
                "Breaker state transitions.",
                &["endpoint", "from", "to"],
            ),
            trips: c(
                "hfbreaker_circuit_trips_total",
                "Entries into open or forced_open, by reason.",
                &["endpoint", "reason"],
            ),
            consecutive_failures: g(
                "hfbreaker_circuit_consecutive_failures",
                "Failed probes in a row.",
                &["endpoint"],
            ),
            failure_ratio: f(
                "hfbreaker_circuit_failure_ratio",
                "Share of failed probes in the breaker window (0 when empty).",
                &["endpoint"],
            ),
            open_duration: f(
                "hfbreaker_circuit_open_duration_seconds",
                "Length of the current or last open period (the backoff).",
                &["endpoint"],
            ),
            state_change: f(
                "hfbreaker_circuit_state_change_timestamp_seconds",
                "Unix time of the last state change.",
                &["endpoint"],
            ),
            enforced: g(
                "hfbreaker_circuit_enforced",
                "1 when routes obey this breaker, 0 when observe-only.",
                &["endpoint"],
            ),
            failure_threshold: g(
                "hfbreaker_circuit_failure_threshold",
                "Configured consecutive failures that trip the breaker.",
                &["endpoint"],
            ),
            failure_rate_threshold: f(
                "hfbreaker_circuit_failure_rate_threshold",
                "Configured failure ratio that trips the breaker.",
                &["endpoint"],
            ),
            slow_call_duration: f(
                "hfbreaker_circuit_slow_call_duration_seconds",
                "Configured duration above which a successful probe is a slow call.",
                &["endpoint"],
            ),
            probes: c(
                "hfbreaker_probes_total",
                "Scheduled probes by result; rejected = not sent because the circuit was open.",
                &["endpoint", "result"],
            ),
            probe_failures: c(
                "hfbreaker_probe_failures_total",
                "Unsuccessful probes by reason, ignored reasons included.",
                &["endpoint", "reason"],
            ),
            probe_duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "hfbreaker_probe_duration_seconds",
                        "Duration of sent probes.",
                    )
                    .buckets(PROBE_DURATION_BUCKETS.to_vec()),
                    &["endpoint"],
                )
                .unwrap(),
            ),
            probe_success: g(
                "hfbreaker_probe_success",
                "1 if the last sent probe succeeded.",
                &["endpoint"],
            ),
            probe_status: g(
                "hfbreaker_probe_http_status_code",
                "HTTP status of the last probe (0 when no answer).",
                &["endpoint"],
            ),
            loading_estimate: f(
                "hfbreaker_endpoint_loading_estimated_seconds",
                "Seconds until the model is loaded, as the server last said (0 when not loading).",
                &["endpoint"],
            ),
            endpoint_info: g(
                "hfbreaker_endpoint_info",
                "Endpoint metadata; always 1.",
                &["endpoint", "kind", "probe", "host", "model"],
            ),
            route_level: g(
                "hfbreaker_route_level",
                "Serving level: 0 primary, k the k-th fallback, -1 exhausted.",
                &["route"],
            ),
            route_serving: g(
                "hfbreaker_route_serving",
                "Endpoint serving the route, one-hot (endpoint=\"none\" when exhausted).",
                &["route", "endpoint"],
            ),
            route_level_seconds: reg(
                &r,
                CounterVec::new(
                    Opts::new(
                        "hfbreaker_route_level_seconds_total",
                        "Seconds each route spent per tier.",
                    ),
                    &["route", "tier"],
                )
                .unwrap(),
            ),
            route_switches: c(
                "hfbreaker_route_switches_total",
                "Changes of the serving endpoint.",
                &["route", "from", "to"],
            ),
            route_endpoint: g(
                "hfbreaker_route_endpoint_info",
                "Route membership: position 0 is the primary, k the k-th fallback; always 1.",
                &["route", "endpoint", "position"],
            ),
            reload_ok: reg(
                &r,
                IntGauge::new(
                    "hfbreaker_config_last_reload_successful",
                    "1 if the last config load succeeded.",
                )
                .unwrap(),
            ),
            reload_time: reg(
                &r,
                prometheus::Gauge::new(
                    "hfbreaker_config_last_reload_success_timestamp_seconds",
                    "Unix time of the last successful config load.",
                )
                .unwrap(),
            ),
            registry: r,
        };
        let build = IntGaugeVec::new(
            Opts::new("hfbreaker_build_info", "Build metadata; always 1."),
            &["version", "revision"],
        )
        .unwrap();
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("HFBREAKER_REVISION")])
            .set(1);
        reg(&m.registry, build);
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics register once");
        m
    }

    /// Create (or re-create) every series of an endpoint, zeroed, so that
    /// `rate()` and `increase()` see counters from their first value.
    pub fn endpoint(&self, cfg: &EndpointConfig) -> EndpointMetrics {
        let n = cfg.name.as_str();
        self.endpoint_info
            .with_label_values(&[
                n,
                cfg.kind.as_str(),
                cfg.probe.as_str(),
                &cfg.host(),
                cfg.model.as_deref().unwrap_or(""),
            ])
            .set(1);
        self.enforced
            .with_label_values(&[n])
            .set(i64::from(cfg.enforce));
        self.failure_threshold
            .with_label_values(&[n])
            .set(i64::from(cfg.breaker.failure_threshold));
        self.failure_rate_threshold
            .with_label_values(&[n])
            .set(cfg.breaker.failure_rate_threshold);
        self.slow_call_duration
            .with_label_values(&[n])
            .set(cfg.breaker.slow_call_duration.as_secs_f64());
        EndpointMetrics {
            name: n.to_string(),
            transitions: self.transitions.clone(),
            state: State::ALL.map(|s| self.circuit_state.with_label_values(&[n, s.as_str()])),
            trips: TripReason::ALL.map(|t| self.trips.with_label_values(&[n, t.as_str()])),
            consecutive_failures: self.consecutive_failures.with_label_values(&[n]),
            failure_ratio: self.failure_ratio.with_label_values(&[n]),
            open_duration: self.open_duration.with_label_values(&[n]),
            state_change: self.state_change.with_label_values(&[n]),
            probes: ProbeResult::ALL.map(|p| self.probes.with_label_values(&[n, p.as_str()])),
            failures: Reason::ALL.map(|r| self.probe_failures.with_label_values(&[n, r.as_str()])),
            duration: self.probe_duration.with_label_values(&[n]),
            success: self.probe_success.with_label_values(&[n]),
            status: self.probe_status.with_label_values(&[n]),
            loading: self.loading_estimate.with_label_values(&[n]),
        }
    }

    /// Drop every series of an endpoint (removed or replaced by a reload).
    pub fn remove_endpoint(&self, cfg: &EndpointConfig) {
        let n = cfg.name.as_str();
        let _ = self.endpoint_info.remove_label_values(&[
            n,
            cfg.kind.as_str(),
            cfg.probe.as_str(),
            &cfg.host(),
            cfg.model.as_deref().unwrap_or(""),
        ]);
        for v in [
            &self.consecutive_failures,
            &self.enforced,
            &self.failure_threshold,
            &self.probe_success,
            &self.probe_status,
        ] {
            let _ = v.remove_label_values(&[n]);
        }
        for v in [
            &self.failure_ratio,
            &self.open_duration,
            &self.state_change,
            &self.loading_estimate,
            &self.failure_rate_threshold,
            &self.slow_call_duration,
        ] {
            let _ = v.remove_label_values(&[n]);
        }
        let _ = self.probe_duration.remove_label_values(&[n]);
        for s in State::ALL {
            let _ = self.circuit_state.remove_label_values(&[n, s.as_str()]);
            for t in State::ALL {
                let _ = self
                    .transitions
                    .remove_label_values(&[n, s.as_str(), t.as_str()]);
            }
        }
        for t in TripReason::ALL {
            let _ = self.trips.remove_label_values(&[n, t.as_str()]);
        }
        for p in ProbeResult::ALL {
            let _ = self.probes.remove_label_values(&[n, p.as_str()]);
        }
        for r in Reason::ALL {
            let _ = self.probe_failures.remove_label_values(&[n, r.as_str()]);
        }
    }

    pub fn route_level(&self, route: &str, level: i64) {
        self.route_level.with_label_values(&[route]).set(level);
    }

    /// One-hot: `serving` gets 1, every other endpoint of the chain (and `none`) 0.
    pub fn route_serving(&self, route: &str, chain: &[String], serving: Option<&str>) {
        for ep in chain.iter().map(String::as_str).chain(["none"]) {
            let v = i64::from(Some(ep) == serving || (ep == "none" && serving.is_none()));
            self.route_serving.with_label_values(&[route, ep]).set(v);
        }
    }

    pub fn route_time(&self, route: &str, tier: Tier, seconds: f64) {
        self.route_level_seconds
            .with_label_values(&[route, tier.as_str()])
            .inc_by(seconds);
    }

    /// Create a route's tier counters at 0 so that the fallback ratio has all
    /// its terms, and export its chain.
    pub fn route_init(&self, route: &str, chain: &[String]) {
        for (i, e) in chain.iter().enumerate() {
            self.route_endpoint
                .with_label_values(&[route, e, &i.to_string()])
                .set(1);
        }
        for t in Tier::ALL {
            self.route_level_seconds
                .with_label_values(&[route, t.as_str()]);
        }
    }

    pub fn route_switch(&self, route: &str, from: &str, to: &str) {
        self.route_switches
            .with_label_values(&[route, from, to])
            .inc();
    }

    pub fn remove_route(&self, route: &str, chain: &[String]) {
        self.remove_route_chain(route, chain, &[]);
        let _ = self.route_level.remove_label_values(&[route]);
        let names: Vec<&str> = chain.iter().map(String::as_str).chain(["none"]).collect();
        for a in &names {
            let _ = self.route_serving.remove_label_values(&[route, a]);
            for b in &names {
                let _ = self.route_switches.remove_label_values(&[route, a, b]);
            }
        }
        for t in Tier::ALL {
            let _ = self
                .route_level_seconds
                .remove_label_values(&[route, t.as_str()]);
        }
    }

    /// Forget a route's old chain: its membership series, and the serving
    /// series of endpoints that are not in `keep` (the new chain).
    pub fn remove_route_chain(&self, route: &str, old: &[String], keep: &[String]) {
        for (i, e) in old.iter().enumerate() {
            let _ = self
                .route_endpoint
                .remove_label_values(&[route, e, &i.to_string()]);
            if !keep.contains(e) {
                let _ = self.route_serving.remove_label_values(&[route, e]);
            }
        }
    }

    pub fn reload(&self, ok: bool, unix_now: f64) {
        self.reload_ok.set(i64::from(ok));
        if ok {
            self.reload_time.set(unix_now);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(64 * 1024);
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

impl EndpointMetrics {
    pub fn transition(&self, from: State, to: State) {
        self.transitions
            .with_label_values(&[self.name.as_str(), from.as_str(), to.as_str()])
            .inc();
    }

    pub fn set_state(&self, state: State, unix_since: f64) {
        for s in State::ALL {
            self.state[s.index()].set(i64::from(s == state));
        }
        self.state_change.set(unix_since);
    }

    pub fn trip(&self, reason: TripReason) {
        self.trips[reason as usize].inc();
    }

    pub fn breaker_stats(&self, consecutive: u32, ratio: f64, open_seconds: f64) {
        self.consecutive_failures.set(i64::from(consecutive));
        self.failure_ratio.set(ratio);
        self.open_duration.set(open_seconds);
    }

    pub fn probe(&self, result: ProbeResult) {
        self.probes[result as usize].inc();
    }

    pub fn probe_done(
        &self,
        result: ProbeResult,
        reason: Option<Reason>,
        seconds: f64,
        status: Option<u16>,
        loading: Option<f64>,
    ) {
        self.probe(result);
        if let Some(r) = reason {
            self.failures[r.index()].inc();
        }
        self.duration.observe(seconds);
        self.success.set(i64::from(result == ProbeResult::Success));
        self.status.set(status.map_or(0, i64::from));
        self.loading.set(if reason == Some(Reason::ModelLoading) {
            loading.unwrap_or(0.0)
        } else {
            0.0
        });
    }
}
