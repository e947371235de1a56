//! Every metric family hfbreaker exports, described once. Names, types and
//! labels are a contract with the dashboards, the alert rules and users'
//! queries: change them only with those.

use super::text::{Family, MetricType::*};

const fn family(
    name: &'static str,
    kind: super::text::MetricType,
    help: &'static str,
    labels: &'static [&'static str],
) -> Family {
    Family {
        name,
        kind,
        help,
        labels,
    }
}

const E: &[&str] = &["endpoint"];

// Per endpoint.
pub const CIRCUIT_STATE: Family = family(
    "hfbreaker_circuit_state",
    Gauge,
    "Breaker state, one-hot over the state label.",
    &["endpoint", "state"],
);
pub const CIRCUIT_TRANSITIONS: Family = family(
    "hfbreaker_circuit_transitions_total",
    Counter,
    "Breaker state transitions.",
    &["endpoint", "from", "to"],
);
pub const CIRCUIT_TRIPS: Family = family(
    "hfbreaker_circuit_trips_total",
    Counter,
    "Entries into open or forced_open, by reason.",
    &["endpoint", "reason"],
);
pub const CIRCUIT_CONSECUTIVE_FAILURES: Family = family(
    "hfbreaker_circuit_consecutive_failures",
    Gauge,
    "Failed probes in a row.",
    E,
);
pub const CIRCUIT_FAILURE_RATIO: Family = family(
    "hfbreaker_circuit_failure_ratio",
    Gauge,
    "Share of failed probes in the breaker window (0 when empty).",
    E,
);
pub const CIRCUIT_OPEN_DURATION: Family = family(
    "hfbreaker_circuit_open_duration_seconds",
    Gauge,
    "Length of the current or last open period (the backoff).",
    E,
);
pub const CIRCUIT_STATE_CHANGE: Family = family(
    "hfbreaker_circuit_state_change_timestamp_seconds",
    Gauge,
    "Unix time of the last state change.",
    E,
);
pub const CIRCUIT_ENFORCED: Family = family(
    "hfbreaker_circuit_enforced",
    Gauge,
    "1 when routes obey this breaker, 0 when observe-only.",
    E,
);
pub const CIRCUIT_FAILURE_THRESHOLD: Family = family(
    "hfbreaker_circuit_failure_threshold",
    Gauge,
    "Configured consecutive failures that trip the breaker.",
    E,
);
pub const CIRCUIT_FAILURE_RATE_THRESHOLD: Family = family(
    "hfbreaker_circuit_failure_rate_threshold",
    Gauge,
    "Configured failure ratio that trips the breaker.",
    E,
);
pub const CIRCUIT_SLOW_CALL_DURATION: Family = family(
    "hfbreaker_circuit_slow_call_duration_seconds",
    Gauge,
    "Duration above which a successful probe is a slow call: the configured one, or with slow_call_duration auto the learned one.",
    E,
);
pub const PROBE_SUCCESS: Family = family(
    "hfbreaker_probe_success",
    Gauge,
    "1 if the last sent probe succeeded.",
    E,
);
pub const PROBE_HTTP_STATUS: Family = family(
    "hfbreaker_probe_http_status_code",
    Gauge,
    "HTTP status of the last probe (0 when no answer).",
    E,
);
pub const ENDPOINT_LATENCY_BASELINE: Family = family(
    "hfbreaker_endpoint_latency_baseline_seconds",
    Gauge,
    "Learned typical probe latency (geometric mean of successful probes while closed); NaN until warmed up.",
    E,
);
pub const ENDPOINT_LOADING_ESTIMATE: Family = family(
    "hfbreaker_endpoint_loading_estimated_seconds",
    Gauge,
    "Seconds until the model is loaded, as the server last said (0 when not loading).",
    E,
);
pub const ENDPOINT_INFO: Family = family(
    "hfbreaker_endpoint_info",
    Gauge,
    "Endpoint metadata; always 1.",
    &["endpoint", "host", "kind", "model", "probe"],
);
pub const PROBES: Family = family(
    "hfbreaker_probes_total",
    Counter,
    "Scheduled probes by result; rejected = not sent because the circuit was open.",
    &["endpoint", "result"],
);
pub const PROBE_FAILURES: Family = family(
    "hfbreaker_probe_failures_total",
    Counter,
    "Unsuccessful probes by reason, ignored reasons included.",
    &["endpoint", "reason"],
);
pub const PROBE_DURATION: Family = family(
    "hfbreaker_probe_duration_seconds",
    Histogram,
    "Duration of sent probes.",
    E,
);

// Per route.
pub const ROUTE_LEVEL: Family = family(
    "hfbreaker_route_level",
    Gauge,
    "Serving level: 0 primary, k the k-th fallback, -1 exhausted.",
    &["route"],
);
pub const ROUTE_SERVING: Family = family(
    "hfbreaker_route_serving",
    Gauge,
    "Endpoint serving the route, one-hot (endpoint=\"none\" when exhausted).",
    &["endpoint", "route"],
);
pub const ROUTE_ENDPOINT_INFO: Family = family(
    "hfbreaker_route_endpoint_info",
    Gauge,
    "Route membership: position 0 is the primary, k the k-th fallback; always 1.",
    &["endpoint", "position", "route"],
);
pub const ROUTE_LEVEL_SECONDS: Family = family(
    "hfbreaker_route_level_seconds_total",
    Counter,
    "Seconds each route spent per tier.",
    &["route", "tier"],
);
pub const ROUTE_SWITCHES: Family = family(
    "hfbreaker_route_switches_total",
    Counter,
    "Changes of the serving endpoint.",
    &["from", "route", "to"],
);

// Per route, weighted by gateway requests (only while the gateway runs).
pub const GATEWAY_REQUESTS: Family = family(
    "hfbreaker_gateway_requests_total",
    Counter,
    "Gateway requests answered, by the endpoint that answered (none: no endpoint could), tier and status.",
    &["code", "endpoint", "route", "tier"],
);
pub const GATEWAY_ATTEMPTS: Family = family(
    "hfbreaker_gateway_attempts_total",
    Counter,
    "Gateway attempts per endpoint, by what the breaker made of them.",
    &["endpoint", "reason", "result", "route"],
);
pub const GATEWAY_FAILOVERS: Family = family(
    "hfbreaker_gateway_failovers_total",
    Counter,
    "Gateway requests retried on a later endpoint after a failed attempt.",
    &["from", "route", "to"],
);
pub const GATEWAY_DURATION: Family = family(
    "hfbreaker_gateway_request_duration_seconds",
    Histogram,
    "Duration of gateway requests, streams to their end.",
    &["route", "tier"],
);
pub const GATEWAY_FIRST_TOKEN: Family = family(
    "hfbreaker_gateway_time_to_first_token_seconds",
    Histogram,
    "Time from a streaming request to its first chunk.",
    &["route"],
);
pub const GATEWAY_IN_FLIGHT: Family = family(
    "hfbreaker_gateway_in_flight_requests",
    Gauge,
    "Gateway requests being answered.",
    &["route"],
);
pub const GATEWAY_CACHE_HITS: Family = family(
    "hfbreaker_gateway_cache_hits_total",
    Counter,
    "Gateway requests answered from the cache.",
    &["route"],
);

// The daemon.
pub const BUILD_INFO: Family = family(
    "hfbreaker_build_info",
    Gauge,
    "Build metadata; always 1.",
    &["revision", "version"],
);
pub const CONFIG_RELOAD_SUCCESSFUL: Family = family(
    "hfbreaker_config_last_reload_successful",
    Gauge,
    "1 if the last config load succeeded.",
    &[],
);
pub const CONFIG_RELOAD_TIMESTAMP: Family = family(
    "hfbreaker_config_last_reload_success_timestamp_seconds",
    Gauge,
    "Unix time of the last successful config load.",
    &[],
);
pub const LOCAL_ERRORS: Family = family(
    "hfbreaker_local_errors_total",
    Counter,
    "Failures of this process (out of file descriptors or memory), never counted against an endpoint.",
    &["operation"],
);
pub const RUNTIME_TASKS: Family = family(
    "hfbreaker_runtime_tasks",
    Gauge,
    "Tasks alive in the async runtime; steady growth is a leak.",
    &[],
);
pub const ALLOCATOR_BYTES: Family = family(
    "hfbreaker_allocator_bytes",
    Gauge,
    "Memory held by the allocator: in_use (heap chunks in use), free (kept in the heaps), mapped (large allocations); in_use growing is a leak, free growing is fragmentation.",
    &["kind"],
);
pub const SCHEDULER_LATENESS: Family = family(
    "hfbreaker_scheduler_lateness_seconds",
    Histogram,
    "How late scheduled probes started against their due time.",
    &[],
);

// The process, with the names every Prometheus client library uses.
pub const PROCESS_CPU: Family = family(
    "process_cpu_seconds_total",
    Counter,
    "Total user and system CPU time spent in seconds.",
    &[],
);
pub const PROCESS_OPEN_FDS: Family = family(
    "process_open_fds",
    Gauge,
    "Number of open file descriptors.",
    &[],
);
pub const PROCESS_MAX_FDS: Family = family(
    "process_max_fds",
    Gauge,
    "Maximum number of open file descriptors.",
    &[],
);
pub const PROCESS_VIRTUAL_MEMORY: Family = family(
    "process_virtual_memory_bytes",
    Gauge,
    "Virtual memory size in bytes.",
    &[],
);
pub const PROCESS_RESIDENT_MEMORY: Family = family(
    "process_resident_memory_bytes",
    Gauge,
    "Resident memory size in bytes.",
    &[],
);
pub const PROCESS_START_TIME: Family = family(
    "process_start_time_seconds",
    Gauge,
    "Start time of the process since unix epoch in seconds.",
    &[],
);
pub const PROCESS_THREADS: Family = family(
    "process_threads",
    Gauge,
    "Number of OS threads in the process.",
    &[],
);

/// Every family, in exposition order.
pub const ALL: &[Family] = &[
    CIRCUIT_STATE,
    CIRCUIT_TRANSITIONS,
    CIRCUIT_TRIPS,
    CIRCUIT_CONSECUTIVE_FAILURES,
    CIRCUIT_FAILURE_RATIO,
    CIRCUIT_OPEN_DURATION,
    CIRCUIT_STATE_CHANGE,
    CIRCUIT_ENFORCED,
    CIRCUIT_FAILURE_THRESHOLD,
    CIRCUIT_FAILURE_RATE_THRESHOLD,
    CIRCUIT_SLOW_CALL_DURATION,
    PROBE_SUCCESS,
    PROBE_HTTP_STATUS,
    ENDPOINT_LATENCY_BASELINE,
    ENDPOINT_LOADING_ESTIMATE,
    ENDPOINT_INFO,
    PROBES,
    PROBE_FAILURES,
    PROBE_DURATION,
    ROUTE_LEVEL,
    ROUTE_SERVING,
    ROUTE_ENDPOINT_INFO,
    ROUTE_LEVEL_SECONDS,
    ROUTE_SWITCHES,
    GATEWAY_REQUESTS,
    GATEWAY_ATTEMPTS,
    GATEWAY_FAILOVERS,
    GATEWAY_DURATION,
    GATEWAY_FIRST_TOKEN,
    GATEWAY_IN_FLIGHT,
    GATEWAY_CACHE_HITS,
    BUILD_INFO,
    CONFIG_RELOAD_SUCCESSFUL,
    CONFIG_RELOAD_TIMESTAMP,
    LOCAL_ERRORS,
    RUNTIME_TASKS,
    SCHEDULER_LATENESS,
    PROCESS_CPU,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_VIRTUAL_MEMORY,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_START_TIME,
    PROCESS_THREADS,
    ALLOCATOR_BYTES,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_the_naming_guide() {
        let mut seen = std::collections::HashSet::new();
        for f in ALL {
            assert!(seen.insert(f.name), "{} twice", f.name);
            let valid = f
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            assert!(valid, "{}", f.name);
            assert_eq!(f.kind == Counter, f.name.ends_with("_total"), "{}", f.name);
            assert!(f.help.ends_with('.'), "{}", f.name);
            assert!(!f.labels.contains(&"le"), "{}", f.name);
        }
    }
}
