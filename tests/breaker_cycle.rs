//! The daemon, through its real HTTP surface, against the simulator: a full
//! breaker cycle and the route falling back and returning.

use std::time::Duration;

use hfbreaker::sim::{Mode, Protocol, VirtualSpec};
use testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_cycles_and_route_falls_back_and_returns() {
    let sim = sim(vec![
        (
            "primary",
            VirtualSpec::new(Protocol::Tgi, "HuggingFaceH4/zephyr-7b-beta"),
        ),
        (
            "router",
            VirtualSpec::new(Protocol::Router, "HuggingFaceH4/zephyr-7b-beta"),
        ),
    ])
    .await;
    let yaml = format!(
        "{FAST_GLOBAL}endpoints:
  - name: primary
    kind: tgi
    url: {p}
    probe: generate
  - name: fallback
    kind: openai
    url: {r}/v1
    model: HuggingFaceH4/zephyr-7b-beta
    probe: chat
routes:
  - name: assistant
    endpoints: [primary, fallback]
",
        p = sim.url("primary"),
        r = sim.url("router")
    );
    let d = TestDaemon::start(&yaml).await;
    let lim = Duration::from_secs(10);

    let s = d
        .until(lim, "both endpoints probed successfully", |s| {
            s.get(
                "hfbreaker_probes_total",
                &[("endpoint", "primary"), ("result", "success")],
            ) >= Some(2.0)
                && s.get(
                    "hfbreaker_probes_total",
                    &[("endpoint", "fallback"), ("result", "success")],
                ) >= Some(1.0)
        })
        .await;
    assert_eq!(s.state("primary"), Some("closed"));
    assert_eq!(
        s.val("hfbreaker_route_level", &[("route", "assistant")]),
        0.0
    );
    assert_eq!(
        s.val(
            "hfbreaker_route_serving",
            &[("route", "assistant"), ("endpoint", "primary")]
        ),
        1.0
    );
    assert_eq!(
        s.val("hfbreaker_probe_success", &[("endpoint", "primary")]),
        1.0
    );
    assert_eq!(
        s.val(
            "hfbreaker_probe_http_status_code",
            &[("endpoint", "primary")]
        ),
        200.0
    );
    assert_eq!(
        s.val(
            "hfbreaker_endpoint_info",
            &[
                ("endpoint", "primary"),
                ("kind", "tgi"),
                ("probe", "generate"),
                ("host", &sim.addr().to_string()),
                ("model", "")
            ]
        ),
        1.0
    );

    // Outage: the primary answers 500.
    sim.set_mode("primary", Mode::Status(500));
    let s = d
        .until(lim, "primary open", |s| s.state("primary") == Some("open"))
        .await;
    assert_eq!(
        s.val(
            "hfbreaker_circuit_trips_total",
            &[("endpoint", "primary"), ("reason", "consecutive_failures")]
        ),
        1.0
    );
    assert!(
        s.val(
            "hfbreaker_probe_failures_total",
            &[("endpoint", "primary"), ("reason", "http_5xx")]
        ) >= 3.0
    );
    assert_eq!(
        s.val(
            "hfbreaker_probe_http_status_code",
            &[("endpoint", "primary")]
        ),
        500.0
    );
    assert_eq!(
        s.val("hfbreaker_route_level", &[("route", "assistant")]),
        1.0
    );
    assert_eq!(
        s.val(
            "hfbreaker_route_serving",
            &[("route", "assistant"), ("endpoint", "fallback")]
        ),
        1.0
    );
    assert_eq!(
        s.val(
            "hfbreaker_route_serving",
            &[("route", "assistant"), ("endpoint", "primary")]
        ),
        0.0
    );
    assert_eq!(
        s.val(
            "hfbreaker_route_switches_total",
            &[
                ("route", "assistant"),
                ("from", "primary"),
                ("to", "fallback")
            ]
        ),
        1.0
    );
    assert!(
        s.val(
            "hfbreaker_circuit_open_duration_seconds",
            &[("endpoint", "primary")]
        ) >= 0.72
    );

    // While open, scheduled probes are rejected, not sent.
    let sent_before = sim.requests("primary");
    let s = d
        .until(lim, "rejected probes while open", |s| {
            s.get(
                "hfbreaker_probes_total",
                &[("endpoint", "primary"), ("result", "rejected")],
            ) >= Some(2.0)
        })
        .await;
    if s.state("primary") == Some("open") {
        assert_eq!(
            sim.requests("primary"),
            sent_before,
            "no probe reaches an endpoint while its circuit is open"
        );
    }

    // The trial fails while the outage goes on: reopened with a longer period.
    let s = d
        .until(lim, "half-open failure", |s| {
            s.get(
                "hfbreaker_circuit_trips_total",
                &[("endpoint", "primary"), ("reason", "half_open_failure")],
            ) >= Some(1.0)
        })
        .await;
    assert!(
        s.val(
            "hfbreaker_circuit_open_duration_seconds",
            &[("endpoint", "primary")]
        ) >= 1.44,
        "backoff doubled"
    );
    assert_eq!(
        s.val(
            "hfbreaker_circuit_transitions_total",
            &[
                ("endpoint", "primary"),
                ("from", "half_open"),
                ("to", "open")
            ]
        ),
        1.0
    );

    // Recovery.
    sim.set_mode("primary", Mode::Ok);
    let s = d
        .until(lim, "primary closed again", |s| {
            s.state("primary") == Some("closed")
        })
        .await;
    for (from, to) in [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ] {
        assert!(
            s.val(
                "hfbreaker_circuit_transitions_total",
                &[("endpoint", "primary"), ("from", from), ("to", to)]
            ) >= 1.0,
            "{from} -> {to}"
        );
    }
    assert_eq!(
        s.val("hfbreaker_route_level", &[("route", "assistant")]),
        0.0
    );
    // half_open admits traffic, so every trial also moved the route back for a moment
    let back = s.val(
        "hfbreaker_route_switches_total",
        &[
            ("route", "assistant"),
            ("from", "fallback"),
            ("to", "primary"),
        ],
    );
    let away = s.val(
        "hfbreaker_route_switches_total",
        &[
            ("route", "assistant"),
            ("from", "primary"),
            ("to", "fallback"),
        ],
    );
    assert!(
        back >= 1.0 && back == away,
        "{back} returns, {away} fallbacks"
    );
    assert_eq!(
        s.val(
            "hfbreaker_circuit_consecutive_failures",
            &[("endpoint", "primary")]
        ),
        0.0
    );
    assert_eq!(
        s.val(
            "hfbreaker_circuit_state",
            &[("endpoint", "fallback"), ("state", "closed")]
        ),
        1.0
    );
    // Time per tier adds up: some primary and some fallback time.
    assert!(
        s.val(
            "hfbreaker_route_level_seconds_total",
            &[("route", "assistant"), ("tier", "primary")]
        ) > 0.0
    );
    assert!(
        s.val(
            "hfbreaker_route_level_seconds_total",
            &[("route", "assistant"), ("tier", "fallback")]
        ) > 0.5
    );
    assert_eq!(
        s.val(
            "hfbreaker_route_level_seconds_total",
            &[("route", "assistant"), ("tier", "exhausted")]
        ),
        0.0
    );

    // The API tells the same story.
    let (code, body) = d.get("/api/v1/breakers").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let primary = v["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "primary")
        .unwrap();
    assert_eq!(primary["state"], "closed");
    assert!(primary["counts"]["trips"].as_u64().unwrap() >= 2);
    assert!(primary["counts"]["rejected"].as_u64().unwrap() >= 2);
    assert_eq!(primary["last_probe"]["result"], "success");
    assert!(primary["next_probe_at"].is_string());
    let (_, body) = d.get("/api/v1/routes").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["routes"][0]["name"], "assistant");
    assert_eq!(v["routes"][0]["serving"], "primary");
    assert_eq!(v["routes"][0]["tier"], "primary");
    assert_eq!(v["routes"][0]["switches"].as_f64().unwrap(), back + away);

    d.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_exhausted_when_every_endpoint_is_open_and_observe_only_is_ignored() {
    let sim = sim(vec![
        (
            "a",
            VirtualSpec::new(Protocol::Tei, "BAAI/bge-small-en-v1.5"),
        ),
        (
            "b",
            VirtualSpec::new(Protocol::Tei, "BAAI/bge-small-en-v1.5"),
        ),
        (
            "c",
            VirtualSpec::new(Protocol::Tei, "BAAI/bge-small-en-v1.5"),
        ),
    ])
    .await;
    let yaml = format!(
        "{FAST_GLOBAL}endpoints:
  - {{name: a, kind: tei, url: {a}, probe: embed}}
  - {{name: b, kind: tei, url: {b}, probe: embed}}
  - name: c
    kind: tei
    url: {c}
    probe: embed
    breaker:
      enforce: false
routes:
  - name: embed
    endpoints: [a, b]
  - name: observed
    endpoints: [c]
",
        a = sim.url("a"),
        b = sim.url("b"),
        c = sim.url("c")
    );
    let d = TestDaemon::start(&yaml).await;
    let lim = Duration::from_secs(10);
    d.until(lim, "embeddings succeed", |s| {
        s.get(
            "hfbreaker_probes_total",
            &[("endpoint", "b"), ("result", "success")],
        ) >= Some(1.0)
    })
    .await;
    for ep in ["a", "b", "c"] {
        sim.set_mode(ep, Mode::Garbage);
    }
    let s = d
        .until(lim, "all open", |s| {
            ["a", "b", "c"].iter().all(|e| s.state(e) == Some("open"))
        })
        .await;
    assert_eq!(s.val("hfbreaker_route_level", &[("route", "embed")]), -1.0);
    assert_eq!(
        s.val(
            "hfbreaker_route_serving",
            &[("route", "embed"), ("endpoint", "none")]
        ),
        1.0
    );
    assert!(
        s.val(
            "hfbreaker_probe_failures_total",
            &[("endpoint", "a"), ("reason", "bad_response")]
        ) >= 3.0
    );
    // observe-only: open, exported, but the route keeps serving it
    assert_eq!(
        s.val("hfbreaker_circuit_enforced", &[("endpoint", "c")]),
        0.0
    );
    assert_eq!(
        s.val("hfbreaker_circuit_enforced", &[("endpoint", "a")]),
        1.0
    );
    assert_eq!(
        s.val("hfbreaker_route_level", &[("route", "observed")]),
        0.0
    );
    let s = d
        .until(lim, "exhausted time accrues", |s| {
            s.get(
                "hfbreaker_route_level_seconds_total",
                &[("route", "embed"), ("tier", "exhausted")],
            ) > Some(0.2)
        })
        .await;
    assert_eq!(
        s.val(
            "hfbreaker_route_switches_total",
            &[("route", "embed"), ("to", "none")]
        ),
        1.0
    );
    d.shutdown().await;
    sim.shutdown().await;
}
