//! Reloads (good and bad) and the guarded admin API, over real HTTP.

use std::time::Duration;

use hfbreaker::sim::{Mode, Protocol, VirtualSpec};
use testkit::*;

fn config(sim: &hfbreaker::sim::Sim, endpoints: &[&str], route: &[&str]) -> String {
    let mut y = format!("{FAST_GLOBAL}endpoints:\n");
    for e in endpoints {
        y.push_str(&format!(
            "  - {{name: {e}, kind: tgi, url: {}, probe: health}}\n",
            sim.url("tgi")
        ));
    }
    y.push_str(&format!(
        "routes:\n  - name: r\n    endpoints: [{}]\n",
        route.join(", ")
    ));
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reload_changes_nothing_and_good_reload_keeps_unchanged_breakers() {
    let sim = sim(vec![("tgi", VirtualSpec::new(Protocol::Tgi, "m"))]).await;
    let d = TestDaemon::start_with_admin(
        &config(&sim, &["a", "b", "gone"], &["a", "b"]),
        Some("admintok"),
    )
    .await;
    let lim = Duration::from_secs(10);
    d.until(lim, "first probes", |s| {
        s.get(
            "hfbreaker_probes_total",
            &[("endpoint", "a"), ("result", "success")],
        ) >= Some(1.0)
    })
    .await;
    let (code, _) = d
        .post("/api/v1/breakers/a/force-open", Some("admintok"))
        .await;
    assert_eq!(code, 200);
    let s = d.scrape().await;
    assert_eq!(s.val("hfbreaker_config_last_reload_successful", &[]), 1.0);
    let first_reload_ts = s.val(
        "hfbreaker_config_last_reload_success_timestamp_seconds",
        &[],
    );
    assert!(first_reload_ts > 1.7e9);

    // A bad file: unknown key on line 3. Running config kept, metric set to 0.
    std::fs::write(&d.config_path, "global:\n  interval: 1s\n  bogus: 1\n").unwrap();
    let (code, body) = d.post("/-/reload", None).await;
    assert_eq!(code, 500);
    assert!(
        body.contains("hfbreaker.yml:3:") && body.contains("bogus"),
        "{body}"
    );
    let s = d.scrape().await;
    assert_eq!(s.val("hfbreaker_config_last_reload_successful", &[]), 0.0);
    assert_eq!(
        s.val(
            "hfbreaker_config_last_reload_success_timestamp_seconds",
            &[]
        ),
        first_reload_ts
    );
    assert_eq!(s.state("a"), Some("forced_open"));
    assert!(
        s.get("hfbreaker_circuit_state", &[("endpoint", "gone")])
            .is_some()
    );
    let before = s.val(
        "hfbreaker_probes_total",
        &[("endpoint", "b"), ("result", "success")],
    );
    d.until(lim, "probing goes on after a bad reload", |s| {
        s.get(
            "hfbreaker_probes_total",
            &[("endpoint", "b"), ("result", "success")],
        ) > Some(before)
    })
    .await;

    // A good file: `gone` removed, `c` added, `b` changed, `a` unchanged.
    let mut good = config(&sim, &["a", "c"], &["a", "c"]);
    good.push_str("");
    let good = good.replace(
        "endpoints:\n",
        &format!(
            "endpoints:\n  - {{name: b, kind: tgi, url: {}, probe: generate}}\n",
            sim.url("tgi")
        ),
    );
    std::fs::write(&d.config_path, good).unwrap();
    let (code, body) = d.post("/-/reload", None).await;
    assert_eq!(code, 200, "{body}");
    let s = d.scrape().await;
    assert_eq!(s.val("hfbreaker_config_last_reload_successful", &[]), 1.0);
    assert_eq!(
        s.state("a"),
        Some("forced_open"),
        "unchanged endpoint keeps its breaker"
    );
    assert!(
        s.get("hfbreaker_circuit_state", &[("endpoint", "gone")])
            .is_none(),
        "removed endpoint's series are gone"
    );
    assert!(
        s.get("hfbreaker_endpoint_info", &[("endpoint", "gone")])
            .is_none()
    );
    assert!(
        s.get(
            "hfbreaker_endpoint_info",
            &[("endpoint", "b"), ("probe", "generate")]
        )
        .is_some()
    );
    assert!(
        s.get(
            "hfbreaker_endpoint_info",
            &[("endpoint", "b"), ("probe", "health")]
        )
        .is_none()
    );
    let s = d
        .until(lim, "new endpoint probed and route on c", |s| {
            s.get(
                "hfbreaker_probes_total",
                &[("endpoint", "c"), ("result", "success")],
            ) >= Some(1.0)
        })
        .await;
    assert_eq!(
        s.val(
            "hfbreaker_route_serving",
            &[("route", "r"), ("endpoint", "c")]
        ),
        1.0
    );
    assert_eq!(s.val("hfbreaker_route_level", &[("route", "r")]), 1.0);
    assert!(
        s.get(
            "hfbreaker_route_serving",
            &[("route", "r"), ("endpoint", "b")]
        )
        .is_none()
    );
    d.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_guarded_and_drives_breakers_and_routes() {
    let sim = sim(vec![("tgi", VirtualSpec::new(Protocol::Tgi, "m"))]).await;
    let d = TestDaemon::start_with_admin(
        &config(&sim, &["a", "b"], &["a", "b"]),
        Some("s3cret-admin"),
    )
    .await;
    let lim = Duration::from_secs(10);
    d.until(lim, "probed", |s| {
        s.get(
            "hfbreaker_probes_total",
            &[("endpoint", "a"), ("result", "success")],
        ) >= Some(1.0)
    })
    .await;

    assert_eq!(d.post("/api/v1/breakers/a/force-open", None).await.0, 401);
    assert_eq!(
        d.post("/api/v1/breakers/a/force-open", Some("wrong"))
            .await
            .0,
        401
    );
    assert_eq!(
        d.post("/api/v1/breakers/a/explode", Some("s3cret-admin"))
            .await
            .0,
        404
    );
    assert_eq!(
        d.post("/api/v1/breakers/nope/reset", Some("s3cret-admin"))
            .await
            .0,
        404
    );
    assert_eq!(
        d.scrape().await.state("a"),
        Some("closed"),
        "refused calls change nothing"
    );

    let (code, body) = d
        .post("/api/v1/breakers/a/force-open", Some("s3cret-admin"))
        .await;
    assert_eq!(code, 200);
    assert!(body.contains("forced_open"));
    let s = d.scrape().await;
    assert_eq!(s.state("a"), Some("forced_open"));
    assert_eq!(
        s.val(
            "hfbreaker_circuit_trips_total",
            &[("endpoint", "a"), ("reason", "manual")]
        ),
        1.0
    );
    assert_eq!(
        s.val(
            "hfbreaker_route_serving",
            &[("route", "r"), ("endpoint", "b")]
        ),
        1.0
    );
    let rejected = s.val(
        "hfbreaker_probes_total",
        &[("endpoint", "a"), ("result", "rejected")],
    );
    d.until(lim, "forced_open rejects probes", |s| {
        s.get(
            "hfbreaker_probes_total",
            &[("endpoint", "a"), ("result", "rejected")],
        ) > Some(rejected)
    })
    .await;
    // Healthy or not, forced_open holds.
    assert_eq!(d.scrape().await.state("a"), Some("forced_open"));

    assert_eq!(
        d.post("/api/v1/breakers/b/force-closed", Some("s3cret-admin"))
            .await
            .0,
        200
    );
    sim.set_mode("tgi", Mode::Status(500));
    let s = d
        .until(lim, "forced_closed keeps counting failures", |s| {
            s.get(
                "hfbreaker_circuit_consecutive_failures",
                &[("endpoint", "b")],
            ) >= Some(5.0)
        })
        .await;
    assert_eq!(
        s.state("b"),
        Some("forced_closed"),
        "forced_closed never trips"
    );
    assert_eq!(
        s.val(
            "hfbreaker_route_serving",
            &[("route", "r"), ("endpoint", "b")]
        ),
        1.0
    );

    sim.set_mode("tgi", Mode::Ok);
    assert_eq!(
        d.post("/api/v1/breakers/a/reset", Some("s3cret-admin"))
            .await
            .0,
        200
    );
    let s = d.scrape().await;
    assert_eq!(s.state("a"), Some("closed"));
    assert_eq!(
        s.val(
            "hfbreaker_route_serving",
            &[("route", "r"), ("endpoint", "a")]
        ),
        1.0
    );
    assert_eq!(
        s.val(
            "hfbreaker_circuit_transitions_total",
            &[("endpoint", "a"), ("from", "forced_open"), ("to", "closed")]
        ),
        1.0
    );
    d.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_writes_refused_without_token_file_and_readiness() {
    let sim = sim(vec![("tgi", VirtualSpec::new(Protocol::Tgi, "m"))]).await;
    let d = TestDaemon::start(&config(&sim, &["a"], &["a"])).await;
    let (code, body) = d
        .post("/api/v1/breakers/a/force-open", Some("anything"))
        .await;
    assert_eq!(code, 403);
    assert!(body.contains("--web.admin-token-file"));
    assert_eq!(d.get("/-/healthy").await.0, 200);
    assert_eq!(d.get("/-/ready").await.0, 200);
    d.shutdown().await;
    sim.shutdown().await;
}
