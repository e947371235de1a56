//! Every fault of the classification table, through the real daemon and the
//! simulator: the right `reason`, the right verdict, and a bounded cost.

use std::time::Duration;

use hfbreaker::config::HumanDuration;
use hfbreaker::sim::{Mode, Protocol, VirtualSpec};
use testkit::*;

fn with_mode(protocol: Protocol, model: &str, mode: Mode) -> VirtualSpec {
    VirtualSpec {
        mode,
        ..VirtualSpec::new(protocol, model)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_classified() {
    const M: &str = "HuggingFaceH4/zephyr-7b-beta";
    let mut keyed = VirtualSpec::new(Protocol::Tgi, M);
    keyed.api_key = Some("the-right-key".into());
    let mut emb = with_mode(Protocol::HfInference, "BAAI/bge-small-en-v1.5", Mode::Ok);
    emb.embedding = true;
    let sim = sim(vec![
        ("e500", with_mode(Protocol::Tgi, M, Mode::Status(500))),
        ("e503", with_mode(Protocol::Tgi, M, Mode::Status(503))),
        ("hang", with_mode(Protocol::Tgi, M, Mode::Hang)),
        ("reset", with_mode(Protocol::Tei, M, Mode::Reset)),
        ("down", with_mode(Protocol::Tgi, M, Mode::Down)),
        ("garbage", with_mode(Protocol::Tgi, M, Mode::Garbage)),
        ("huge", with_mode(Protocol::Tei, M, Mode::HugeBody)),
        (
            "loading",
            with_mode(
                Protocol::HfInference,
                M,
                Mode::Loading {
                    estimated_time: 20.5,
                },
            ),
        ),
        (
            "limited",
            with_mode(Protocol::Router, M, Mode::RateLimited { retry_after: 3 }),
        ),
        (
            "limited2",
            with_mode(Protocol::Router, M, Mode::RateLimited { retry_after: 3 }),
        ),
        ("keyed", keyed),
        (
            "authfail",
            with_mode(Protocol::Router, M, Mode::AuthFailure),
        ),
        ("notfound", with_mode(Protocol::Tgi, M, Mode::Status(404))),
        (
            "slow",
            with_mode(
                Protocol::Tgi,
                M,
                Mode::Slow(HumanDuration(Duration::from_millis(260))),
            ),
        ),
        ("emb", emb),
        (
            "api-scaled",
            with_mode(Protocol::EndpointsApi, M, Mode::ScaledToZero),
        ),
        (
            "api-paused",
            with_mode(Protocol::EndpointsApi, M, Mode::Paused),
        ),
        (
            "api-init",
            with_mode(
                Protocol::EndpointsApi,
                M,
                Mode::Loading {
                    estimated_time: 1.0,
                },
            ),
        ),
        (
            "api-failed",
            with_mode(Protocol::EndpointsApi, M, Mode::Failed),
        ),
        (
            "api-running",
            with_mode(Protocol::EndpointsApi, M, Mode::Ok),
        ),
        ("sleepy", with_mode(Protocol::Tgi, M, Mode::ScaledToZero)),
    ])
    .await;
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-key\n").unwrap();
    let u = |n: &str| sim.url(n);
    let yaml = format!(
        "{FAST_GLOBAL}endpoints:
  - {{name: e500, kind: tgi, url: {}, probe: generate}}
  - {{name: e503, kind: tgi, url: {}, probe: health}}
  - {{name: hang, kind: tgi, url: {}, probe: generate}}
  - {{name: reset, kind: tei, url: {}, probe: embed}}
  - {{name: down, kind: tgi, url: {}, probe: chat}}
  - {{name: refused, kind: http, url: 'http://127.0.0.1:{closed_port}/health'}}
  - {{name: garbage, kind: tgi, url: {}, probe: generate}}
  - {{name: huge, kind: tei, url: {}, probe: embed}}
  - {{name: loading, kind: hf-inference, url: {}, model: {M}, probe: generate}}
  - {{name: limited, kind: openai, url: {}/v1, model: {M}, probe: chat}}
  - {{name: limited-ignored, kind: openai, url: {}/v1, model: {M}, probe: chat, ignore: [rate_limited]}}
  - {{name: keyed, kind: tgi, url: {}, probe: generate, token_file: {}}}
  - {{name: authfail, kind: openai, url: {}/v1, model: {M}, probe: models}}
  - {{name: notfound, kind: tgi, url: {}, probe: generate}}
  - {{name: slow, kind: tgi, url: {}, probe: chat_stream}}
  - {{name: emb, kind: hf-inference, url: {}, model: BAAI/bge-small-en-v1.5, probe: embed}}
  - {{name: st-scaled, kind: endpoint-status, url: {}, namespace: org, endpoint_name: sleepy, token_file: {w}}}
  - {{name: st-paused, kind: endpoint-status, url: {}, namespace: org, endpoint_name: x, token_file: {w}}}
  - {{name: st-init, kind: endpoint-status, url: {}, namespace: org, endpoint_name: x, token_file: {w}}}
  - {{name: st-failed, kind: endpoint-status, url: {}, namespace: org, endpoint_name: x, token_file: {w}}}
  - {{name: st-running, kind: endpoint-status, url: {}, namespace: org, endpoint_name: x, token_file: {w}}}
",
        u("e500"), u("e503"), u("hang"), u("reset"), u("down"), u("garbage"), u("huge"), u("loading"),
        u("limited"), u("limited2"), u("keyed"), wrong.display(), u("authfail"), u("notfound"), u("slow"), u("emb"),
        u("api-scaled"), u("api-paused"), u("api-init"), u("api-failed"), u("api-running"),
        w = wrong.display()
    );
    let d = TestDaemon::start(&yaml).await;

    // (endpoint, reason, breaker verdict)
    let expected = [
        ("e500", "http_5xx", "failure"),
        ("e503", "http_5xx", "failure"),
        ("hang", "timeout", "failure"),
        ("reset", "connect", "failure"),
        ("down", "connect", "failure"),
        ("refused", "connect", "failure"),
        ("garbage", "bad_response", "failure"),
        ("huge", "bad_response", "failure"),
        ("loading", "model_loading", "failure"),
        ("limited", "rate_limited", "failure"),
        ("limited-ignored", "rate_limited", "ignored"),
        ("keyed", "auth", "ignored"),
        ("authfail", "auth", "ignored"),
        ("notfound", "client_error", "ignored"),
        ("st-scaled", "scaled_to_zero", "ignored"),
        ("st-paused", "paused", "ignored"),
        ("st-init", "model_loading", "failure"),
        ("st-failed", "endpoint_failed", "failure"),
    ];
    let s = d
        .until(
            Duration::from_secs(15),
            "every fault seen and every failing breaker open",
            |s| {
                expected.iter().all(|(ep, reason, verdict)| {
                    s.get(
                        "hfbreaker_probe_failures_total",
                        &[("endpoint", ep), ("reason", reason)],
                    ) >= Some(1.0)
                        && (*verdict == "ignored" || s.state(ep) == Some("open"))
                }) && s.get(
                    "hfbreaker_probes_total",
                    &[("endpoint", "slow"), ("result", "success")],
                ) >= Some(1.0)
                    && s.get(
                        "hfbreaker_probes_total",
                        &[("endpoint", "st-running"), ("result", "success")],
                    ) >= Some(1.0)
                    && s.get(
                        "hfbreaker_probes_total",
                        &[("endpoint", "emb"), ("result", "success")],
                    ) >= Some(1.0)
            },
        )
        .await;

    for (ep, reason, verdict) in expected {
        let l = [("endpoint", ep)];
        let other_reasons: f64 = [
            "bad_response",
            "timeout",
            "connect",
            "http_5xx",
            "model_loading",
            "rate_limited",
            "auth",
            "client_error",
            "scaled_to_zero",
            "paused",
            "endpoint_failed",
        ]
        .iter()
        .filter(|r| **r != reason)
        .map(|r| {
            s.val(
                "hfbreaker_probe_failures_total",
                &[("endpoint", ep), ("reason", r)],
            )
        })
        .sum();
        assert_eq!(other_reasons, 0.0, "{ep}: only {reason}");
        let n = s.val(
            "hfbreaker_probes_total",
            &[("endpoint", ep), ("result", verdict)],
        );
        assert!(n >= 1.0, "{ep}: counted as {verdict}");
        if verdict == "ignored" {
            assert_eq!(
                s.state(ep),
                Some("closed"),
                "{ep}: ignored reasons never trip"
            );
            assert_eq!(
                s.val(
                    "hfbreaker_probes_total",
                    &[("endpoint", ep), ("result", "failure")]
                ),
                0.0,
                "{ep}"
            );
            assert_eq!(
                s.val("hfbreaker_circuit_consecutive_failures", &l),
                0.0,
                "{ep}"
            );
        } else {
            assert_eq!(s.state(ep), Some("open"), "{ep}: failures trip");
            assert_eq!(
                s.val(
                    "hfbreaker_probes_total",
                    &[("endpoint", ep), ("result", "ignored")]
                ),
                0.0,
                "{ep}"
            );
        }
    }
    assert_eq!(
        s.val(
            "hfbreaker_endpoint_loading_estimated_seconds",
            &[("endpoint", "loading")]
        ),
        20.5
    );
    assert_eq!(
        s.val(
            "hfbreaker_probe_http_status_code",
            &[("endpoint", "limited")]
        ),
        429.0
    );
    assert_eq!(
        s.val("hfbreaker_probe_http_status_code", &[("endpoint", "keyed")]),
        401.0
    );
    assert_eq!(
        s.val("hfbreaker_probe_http_status_code", &[("endpoint", "hang")]),
        0.0
    );
    assert_eq!(
        s.val("hfbreaker_probe_http_status_code", &[("endpoint", "huge")]),
        200.0
    );
    // slow answers are successes, and their duration lands in the histogram
    assert_eq!(s.state("slow"), Some("closed"));
    assert_eq!(
        s.val(
            "hfbreaker_probe_duration_seconds_bucket",
            &[("endpoint", "slow"), ("le", "0.25")]
        ),
        0.0
    );
    assert!(
        s.val(
            "hfbreaker_probe_duration_seconds_bucket",
            &[("endpoint", "slow"), ("le", "0.5")]
        ) >= 1.0
    );
    // the hang never took longer than its timeout (400ms) to count as a failure
    let hang_sum = s.val(
        "hfbreaker_probe_duration_seconds_sum",
        &[("endpoint", "hang")],
    );
    let hang_count = s.val(
        "hfbreaker_probe_duration_seconds_count",
        &[("endpoint", "hang")],
    );
    assert!(
        hang_sum / hang_count < 0.6,
        "mean hang probe {:.3}s",
        hang_sum / hang_count
    );
    // reading the management API never woke the scaled-to-zero endpoint
    assert!(sim.requests("api-scaled") >= 1);
    assert_eq!(sim.inference_requests("sleepy"), 0);
    assert_eq!(sim.inference_requests("api-scaled"), 0);
    // the daemon stays responsive: health, API and landing page answer
    assert_eq!(d.get("/-/healthy").await.0, 200);
    let (code, page) = d.get("/").await;
    assert_eq!(code, 200);
    assert!(
        page.contains("st-scaled") && page.contains("scaled_to_zero"),
        "landing page lists endpoints and reasons"
    );
    d.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_against_a_hanging_endpoint_stay_bounded() {
    let sim = sim(vec![("hang", with_mode(Protocol::Tgi, "m", Mode::Hang))]).await;
    // a long open period so the breaker stays open and the count is stable afterwards
    let yaml = format!(
        "global:
  interval: 1s
  timeout: 300ms
  confirm_interval: 50ms
  breaker:
    failure_threshold: 5
    open_duration: 1h
    max_open_duration: 1h
endpoints:
  - {{name: hang, kind: tgi, url: {}, probe: generate}}
",
        sim.url("hang")
    );
    let d = TestDaemon::start(&yaml).await;
    let s = d
        .until(Duration::from_secs(10), "hang trips", |s| {
            s.state("hang") == Some("open")
        })
        .await;
    // While confirming, probes overlap (one every 50ms, each up to 300ms) but
    // never more than timeout/confirm_interval + 1 at once.
    let sent = s.val(
        "hfbreaker_probes_total",
        &[("endpoint", "hang"), ("result", "failure")],
    );
    assert!(
        (5.0..=12.0).contains(&sent),
        "failures recorded before and while tripping: {sent}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reached = sim.requests("hang");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.requests("hang"), reached, "no probe sent while open");
    d.shutdown().await;
    sim.shutdown().await;
}

/// A probe's 429 or 503 with `Retry-After` holds the breaker it trips open
/// at least that long (at most `max_open_duration`), as a request's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_retry_after_holds_the_breaker_open() {
    const M: &str = "org/model";
    let sim = sim(vec![
        (
            "limited",
            with_mode(Protocol::Router, M, Mode::RateLimited { retry_after: 6 }),
        ),
        (
            "capped",
            with_mode(Protocol::Router, M, Mode::RateLimited { retry_after: 3600 }),
        ),
    ])
    .await;
    let yaml = format!(
        "global:
  interval: 150ms
  timeout: 400ms
  confirm_interval: 40ms
  breaker:
    failure_threshold: 1
    open_duration: 1s
    max_open_duration: 20s
endpoints:
  - {{name: limited, kind: openai, url: {}/v1, model: {M}, probe: chat}}
  - {{name: capped, kind: openai, url: {}/v1, model: {M}, probe: chat}}
",
        sim.url("limited"),
        sim.url("capped"),
    );
    let td = TestDaemon::start(&yaml).await;
    let start = std::time::Instant::now();
    let bs = loop {
        let (code, body) = td.get("/api/v1/breakers").await;
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let bs = v["breakers"].as_array().unwrap().clone();
        if bs.iter().all(|b| b["state"] == "open") {
            break bs;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{bs:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let period = |b: &serde_json::Value| {
        let t = |k: &str| humantime::parse_rfc3339(b[k].as_str().unwrap()).unwrap();
        t("open_until").duration_since(t("since")).unwrap()
    };
    // Without Retry-After: 1 s (±10% jitter).
    let limited = period(&bs[0]);
    assert!(
        (Duration::from_millis(5900)..=Duration::from_millis(6100)).contains(&limited),
        "{limited:?}: {}",
        bs[0]
    );
    assert_eq!(bs[0]["last_probe"]["reason"], "rate_limited");
    let capped = period(&bs[1]);
    assert!(
        (Duration::from_millis(19_900)..=Duration::from_millis(20_100)).contains(&capped),
        "{capped:?}: {}",
        bs[1]
    );
    // No trial before the held end.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = td.scrape().await;
    assert_eq!(m.state("limited"), Some("open"), "{}", m.hfbreaker_lines());
}
