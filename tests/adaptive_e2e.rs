//! Learned slow-call thresholds end to end, in real time: the real daemon
//! probing `hfbreaker simulate`, whose endpoint answers through a latency
//! model. The endpoint learns its baseline within seconds, a brownout set
//! through the simulator's control API trips it on `slow_calls`, and a
//! reload that leaves the endpoint alone keeps what it learned.

use std::time::{Duration, Instant};

use testkit::{Proc, Scrape, client, scrape_url};

/// 100 ms answers with a little jitter. (Gauges are rendered to the
/// nanosecond, hence the 1e-6 tolerance of products.)
const SCENARIO: &str = "endpoints:
  - name: tgi
    protocol: tgi
    mode: {latency: {median: 100ms, jitter: 0.05}}
";

const MEDIAN: f64 = 0.1;
const FACTOR: f64 = 2.5;

/// `extra` is appended to the endpoint list.
fn config(sim: &str, extra: &str) -> String {
    format!(
        "global:
  interval: 250ms
  timeout: 3s
  confirm_interval: 250ms
  breaker:
    failure_threshold: 3
    window: 8
    min_calls: 4
    open_duration: 60s
    slow_call_duration: auto
    adaptive:
      factor: {FACTOR}
      warmup_calls: 8
      half_life: 1m
endpoints:
  - {{name: tgi, kind: tgi, url: '{sim}/tgi', probe: generate}}
{extra}"
    )
}

/// Scrape until `ok` holds, for at most `limit`.
async fn until(d: &Proc, limit: Duration, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        let s = scrape_url(&d.base()).await;
        if ok(&s) {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "{what} not within {limit:?}:\n{}\n{}",
            s.hfbreaker_lines(),
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn baseline(s: &Scrape) -> f64 {
    s.val(
        "hfbreaker_endpoint_latency_baseline_seconds",
        &[("endpoint", "tgi")],
    )
}

fn threshold(s: &Scrape) -> f64 {
    s.val(
        "hfbreaker_circuit_slow_call_duration_seconds",
        &[("endpoint", "tgi")],
    )
}

fn trips(s: &Scrape, reason: &str) -> f64 {
    s.val(
        "hfbreaker_circuit_trips_total",
        &[("endpoint", "tgi"), ("reason", reason)],
    )
}

fn open(s: &Scrape) -> bool {
    s.get(
        "hfbreaker_circuit_state",
        &[("endpoint", "tgi"), ("state", "open")],
    ) == Some(1.0)
}

#[tokio::test]
async fn learns_the_baseline_trips_on_a_brownout_and_keeps_it_across_a_reload() {
    let started = Instant::now();
    let bin = testkit::binary!();
    let sim = bin.simulate(SCENARIO);
    let d = bin.daemon(&config(&sim.base(), ""), &[], &[]);

    // 1. Warm-up: 8 probes at 250 ms, then factor x the learned baseline.
    let s = until(&d, Duration::from_secs(20), "a learned baseline", |s| {
        baseline(s).is_finite()
    })
    .await;
    let learned = baseline(&s);
    println!(
        "baseline {:.1} ms after {:.1}s",
        learned * 1e3,
        started.elapsed().as_secs_f64()
    );
    assert!(
        (0.8 * MEDIAN..1.6 * MEDIAN).contains(&learned),
        "baseline {learned} near the simulated {MEDIAN}"
    );
    assert!(
        (threshold(&s) / (FACTOR * learned) - 1.0).abs() < 1e-6,
        "threshold {} = {FACTOR} x {learned}",
        threshold(&s)
    );
    assert!(!open(&s));
    assert_eq!(trips(&s, "slow_calls"), 0.0);
    let api: serde_json::Value = serde_json::from_str(
        &client()
            .get(format!("{}/api/v1/breakers", d.base()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let b = &api["breakers"][0];
    assert_eq!(b["slow_call_duration_auto"], true, "{b}");
    // The API shows the learned values: its threshold is FACTOR x its
    // baseline (one reading of the breaker), and both are where /metrics
    // showed them a moment ago (a probe or two later: within 5%).
    let api_baseline = b["latency_baseline_seconds"].as_f64().unwrap();
    let api_threshold = b["slow_call_duration_seconds"].as_f64().unwrap();
    assert!(
        (api_threshold / (FACTOR * api_baseline) - 1.0).abs() < 1e-6,
        "{b}"
    );
    assert!(
        (api_baseline / learned - 1.0).abs() < 0.05,
        "{b} vs {learned}"
    );
    assert!(
        (api_threshold / threshold(&s) - 1.0).abs() < 0.05,
        "{b} vs {}",
        threshold(&s)
    );

    // 2. A brownout: the median climbs to 5x over 2 s (2.5x, the
    // threshold, after 0.75 s) and stays there.
    let r = client()
        .put(format!("{}/_sim/endpoints/tgi/mode", sim.base()))
        .body(
            r#"{"latency": {"median": "100ms", "jitter": 0.05,
                "brownout": {"start": "0s", "ramp": "2s", "peak": 5}}}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let brownout = Instant::now();
    let s = until(&d, Duration::from_secs(20), "a slow_calls trip", open).await;
    println!(
        "tripped {:.1}s after the brownout began",
        brownout.elapsed().as_secs_f64()
    );
    assert_eq!(trips(&s, "slow_calls"), 1.0, "{}", s.hfbreaker_lines());
    for reason in ["consecutive_failures", "failure_rate", "half_open_failure"] {
        assert_eq!(trips(&s, reason), 0.0, "{reason}");
    }
    assert_eq!(
        s.get(
            "hfbreaker_circuit_state",
            &[("endpoint", "tgi"), ("state", "closed")]
        ),
        Some(0.0)
    );
    let after_brownout = baseline(&s);
    assert!(
        (after_brownout / learned - 1.0).abs() < 0.1,
        "the brownout barely moved the baseline: {learned} -> {after_brownout}"
    );

    // 3. A reload that adds an endpoint and leaves `tgi` alone keeps its
    // baseline, its threshold, its state and its series.
    let other = format!(
        "  - {{name: other, kind: tgi, url: '{}/tgi', probe: health}}\n",
        sim.base()
    );
    std::fs::write(d.config_path(), config(&sim.base(), &other)).unwrap();
    d.signal("HUP");
    let s = until(&d, Duration::from_secs(10), "the reloaded config", |s| {
        s.get(
            "hfbreaker_circuit_state",
            &[("endpoint", "other"), ("state", "closed")],
        )
        .is_some()
    })
    .await;
    assert!(
        (baseline(&s) / after_brownout - 1.0).abs() < 1e-9,
        "baseline kept: {after_brownout} -> {}",
        baseline(&s)
    );
    assert!((threshold(&s) / (FACTOR * baseline(&s)) - 1.0).abs() < 1e-6);
    assert!(open(&s), "still open after the reload");
    assert_eq!(trips(&s, "slow_calls"), 1.0);
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    assert!(started.elapsed() < Duration::from_secs(60));
}
