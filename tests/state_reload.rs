//! A reload keeps breaker state for every endpoint whose identity (name,
//! kind, URL, probe) is unchanged, whatever else changed, and keeps route
//! switch counts; an endpoint that now probes something else starts fresh.

use std::time::{Duration, SystemTime};

use hfbreaker::sim::{Mode, Protocol, VirtualSpec};
use testkit::*;

fn config(sim: &hfbreaker::sim::Sim, breaker: &str, interval: &str, primary_url: &str) -> String {
    format!(
        "global:
  interval: {interval}
  timeout: 400ms
  confirm_interval: 40ms
  breaker:
{breaker}
endpoints:
  - {{name: primary, kind: tgi, url: {primary_url}, probe: health}}
  - {{name: fallback, kind: tgi, url: {ok}, probe: health}}
  - {{name: pinned, kind: tgi, url: {ok}, probe: health}}
routes:
  - name: r
    endpoints: [primary, fallback]
",
        ok = sim.url("ok"),
    )
}

const BEFORE: &str = "    failure_threshold: 3
    open_duration: 60s
    max_open_duration: 120s";
/// Every threshold changed, the exported ones included.
const AFTER: &str = "    failure_threshold: 4
    failure_rate_threshold: 0.6
    window: 7
    min_calls: 5
    slow_call_duration: 2s
    open_duration: 30s
    max_open_duration: 300s
    success_threshold: 3";

async fn breaker(d: &TestDaemon, name: &str) -> serde_json::Value {
    let (code, body) = d.get("/api/v1/breakers").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no breaker {name} in {body}"))
}

async fn switches(d: &TestDaemon) -> u64 {
    let (_, body) = d.get("/api/v1/routes").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["routes"][0]["switches"].as_u64().unwrap()
}

fn time(v: &serde_json::Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}"))).unwrap()
}

async fn reload(d: &TestDaemon, yaml: &str) {
    std::fs::write(&d.config_path, yaml).unwrap();
    let (code, body) = d.post("/-/reload", None).await;
    assert_eq!(code, 200, "{body}");
}

/// What a reload must keep, checked after each one.
async fn assert_kept(d: &TestDaemon, open_until: SystemTime, what: &str) {
    let p = breaker(d, "primary").await;
    assert_eq!(p["state"], "open", "{what}: {p}");
    let until = time(&p["open_until"]);
    let drift = until
        .duration_since(open_until)
        .unwrap_or_else(|e| e.duration());
    assert!(
        drift < Duration::from_millis(50),
        "{what}: open_until moved by {drift:?}"
    );
    assert_eq!(breaker(d, "pinned").await["state"], "forced_open", "{what}");
    assert_eq!(switches(d).await, 1, "{what}: switches in /api/v1/routes");
    let s = d.scrape().await;
    assert_eq!(s.state("primary"), Some("open"), "{what}");
    assert_eq!(s.state("pinned"), Some("forced_open"), "{what}");
    let switched = [("route", "r"), ("from", "primary"), ("to", "fallback")];
    assert_eq!(
        s.val("hfbreaker_route_switches_total", &switched),
        1.0,
        "{what}"
    );
    assert_eq!(
        s.val(
            "hfbreaker_route_serving",
            &[("route", "r"), ("endpoint", "fallback")]
        ),
        1.0,
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_thresholds_keeps_open_forced_and_switches() {
    let sim = sim(vec![
        ("ok", VirtualSpec::new(Protocol::Tgi, "m")),
        ("bad", VirtualSpec::new(Protocol::Tgi, "m")),
    ])
    .await;
    sim.set_mode("bad", Mode::Status(503));
    let bad = sim.url("bad");
    let d = TestDaemon::start_with_admin(&config(&sim, BEFORE, "150ms", &bad), Some("t")).await;
    let lim = Duration::from_secs(10);
    d.until(lim, "primary open", |s| s.state("primary") == Some("open"))
        .await;
    let (code, body) = d
        .post("/api/v1/breakers/pinned/force-open", Some("t"))
        .await;
    assert_eq!(code, 200, "{body}");
    let open_until = time(&breaker(&d, "primary").await["open_until"]);
    assert_kept(&d, open_until, "before any reload").await;

    // Every threshold and the interval change, the exported ones too: the
    // same breakers, the same series with the new values, and no counter
    // starts again (a reset would show in rate() as a dip, and a reload
    // every minute made 10,000 endpoints' series anew each time).
    let counters = |s: &Scrape| {
        (
            s.val(
                "hfbreaker_probes_total",
                &[("endpoint", "primary"), ("result", "failure")],
            ),
            s.val(
                "hfbreaker_circuit_trips_total",
                &[("endpoint", "primary"), ("reason", "consecutive_failures")],
            ),
            s.val(
                "hfbreaker_probe_duration_seconds_count",
                &[("endpoint", "primary")],
            ),
        )
    };
    let before = counters(&d.scrape().await);
    assert!(before.0 >= 3.0 && before.1 >= 1.0, "{before:?}");
    reload(&d, &config(&sim, AFTER, "200ms", &bad)).await;
    assert_kept(&d, open_until, "after a threshold reload").await;
    let s = d.scrape().await;
    for (name, want) in [
        ("hfbreaker_circuit_failure_threshold", 4.0),
        ("hfbreaker_circuit_failure_rate_threshold", 0.6),
    ] {
        assert_eq!(
            s.val(name, &[("endpoint", "primary")]),
            want,
            "the new thresholds are exported: {name}"
        );
    }
    let after = counters(&s);
    assert!(
        after.0 >= before.0 && after.1 >= before.1 && after.2 >= before.2,
        "counters kept across the reload: {before:?} -> {after:?}"
    );
    // Only unexported values (interval, window) change: the same endpoints.
    let quieter = AFTER.replace("window: 7", "window: 30");
    reload(&d, &config(&sim, &quieter, "300ms", &bad)).await;
    assert_kept(&d, open_until, "after an interval reload").await;
    // ... and the state keeps evolving under the new thresholds: still open,
    // probes rejected, nothing tripped again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_kept(&d, open_until, "a while later").await;

    // Another URL is another endpoint: a fresh breaker.
    let elsewhere = format!("{}/", sim.url("ok"));
    reload(&d, &config(&sim, &quieter, "300ms", &elsewhere)).await;
    assert_eq!(breaker(&d, "primary").await["state"], "closed");
    assert_eq!(breaker(&d, "pinned").await["state"], "forced_open");
    d.shutdown().await;
}
