//! End to end with the real Prometheus and Alertmanager (Debian packages,
//! installed by scripts/test): the daemon probes the simulator, Prometheus
//! scrapes it every second and evaluates the shipped rules, Alertmanager
//! routes with the shipped example config to a webhook run here.
//!
//! The primary and the fallback of a route go down, under a steady load of
//! gateway requests: the critical page arrives; they come back: the
//! resolution arrives. Every PromQL expression of the rules and dashboards is
//! then evaluated by that Prometheus.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hfbreaker::sim::{Mode, Protocol, VirtualSpec};
use testkit::*;

fn repo(p: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Metric selectors (`name{matchers}` or bare names) in a PromQL expression.
fn selectors(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = (expr[i..].starts_with("hfbreaker")
            || expr[i..].starts_with("up{")
            || expr[i..].starts_with("process_"))
            && (i == 0
                || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':'));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':') {
            j += 1;
        }
        if j < b.len() && b[j] == b'{' {
            let close = expr[j..].find('}').map(|k| j + k + 1).unwrap_or(b.len());
            out.push(expr[i..close].to_string());
            i = close;
        } else {
            out.push(expr[i..j].to_string());
            i = j;
        }
    }
    out
}

/// The shipped Alertmanager example, pointed at `hook`, with test-speed grouping.
async fn example_alertmanager(bin: &std::path::Path, hook: &Webhook) -> Proc {
    let cfg = std::fs::read_to_string(repo("alerts/alertmanager.example.yml"))
        .unwrap()
        .replace("http://127.0.0.1:9095/", &hook.url("/"))
        .replace("group_wait: 10s", "group_wait: 1s")
        .replace("group_interval: 1m", "group_interval: 1s");
    let am = start_alertmanager(bin, &cfg).expect("alertmanager starts");
    assert!(
        wait_http_ok(&format!("{}/-/ready", am.base()), Duration::from_secs(30)).await,
        "alertmanager ready"
    );
    am
}

/// The gateway in process, and a steady load through it: 10 chats a second to
/// `assistant`, every other one streamed.
async fn gateway_load(d: &TestDaemon) -> tokio::task::JoinHandle<()> {
    let gw = d.start_gateway().await;
    tokio::spawn(async move {
        let c = client();
        for n in 0u64.. {
            let body = serde_json::json!({
                "model": "assistant",
                "messages": [{"role": "user", "content": "Hello!"}],
                "max_tokens": 8,
                "stream": n % 2 == 0,
            });
            let req = c
                .post(format!("http://{gw}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(body.to_string());
            tokio::spawn(async move {
                if let Ok(r) = req.send().await {
                    let _ = r.bytes().await;
                }
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Grafana's variables, as a user with everything selected would have them.
fn substitute(expr: &str) -> String {
    expr.replace("$job", ".+")
        .replace("$instance", ".+")
        .replace("$endpoint", "primary")
        .replace("$__rate_interval", "10s")
        .replace("$__range", "2m")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_page_and_resolve_through_real_prometheus_and_alertmanager() {
    let Some(prom_bin) = require_tool("prometheus", &["prometheus"]) else {
        return;
    };
    let Some(am_bin) = require_tool("alertmanager", &["prometheus-alertmanager", "alertmanager"])
    else {
        return;
    };

    const M: &str = "HuggingFaceH4/zephyr-7b-beta";
    let mut auth = VirtualSpec::new(Protocol::Router, M);
    auth.mode = Mode::AuthFailure;
    let sim = sim(vec![
        ("primary", VirtualSpec::new(Protocol::Tgi, M)),
        ("fallback", VirtualSpec::new(Protocol::Router, M)),
        (
            "loader",
            VirtualSpec {
                mode: Mode::Loading {
                    estimated_time: 30.0,
                },
                ..VirtualSpec::new(Protocol::HfInference, M)
            },
        ),
        ("auth", auth),
        (
            "status",
            VirtualSpec {
                mode: Mode::ScaledToZero,
                ..VirtualSpec::new(Protocol::EndpointsApi, M)
            },
        ),
    ])
    .await;
    let yaml = format!(
        "global:
  interval: 500ms
  timeout: 500ms
  confirm_interval: 150ms
  breaker:
    failure_threshold: 3
    open_duration: 2s
    max_open_duration: 4s
    success_threshold: 2
endpoints:
  - {{name: primary, kind: tgi, url: {p}, probe: generate}}
  - {{name: fallback, kind: openai, url: {f}/v1, model: {M}, probe: chat}}
  - {{name: loader, kind: hf-inference, url: {l}, model: {M}, probe: generate}}
  - {{name: auth, kind: openai, url: {a}/v1, model: {M}, probe: models}}
  - {{name: status, kind: endpoint-status, url: {s}, namespace: org, endpoint_name: e}}
routes:
  - name: assistant
    endpoints: [primary, fallback]
gateway:
  allow_unauthenticated: true
  first_byte_timeout: 1s
",
        p = sim.url("primary"),
        f = sim.url("fallback"),
        l = sim.url("loader"),
        a = sim.url("auth"),
        s = sim.url("status"),
    );
    let d = TestDaemon::start(&yaml).await;
    let load = gateway_load(&d).await;
    let hook = Webhook::start().await.unwrap();

    let am = example_alertmanager(&am_bin, &hook).await;

    let prom_cfg = format!(
        "global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [hfbreaker.rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:{am}']
scrape_configs:
  - job_name: hfbreaker
    static_configs:
      - targets: ['{daemon}']
",
        am = am.port(),
        daemon = d.addr
    );
    let prom = start_prometheus(&prom_bin, &prom_cfg, &[&repo("alerts/hfbreaker.rules.yml")])
        .expect("prometheus starts");
    let p = prom.base();
    assert!(
        wait_http_ok(&format!("{p}/-/ready"), Duration::from_secs(30)).await,
        "prometheus ready"
    );
    let start = Instant::now();
    loop {
        let ok = query(
            &p,
            r#"hfbreaker_route_level{job="hfbreaker",route="assistant"} == 0"#,
        )
        .await
        .unwrap_or_default();
        if !ok.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "prometheus never scraped a healthy route"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Outage of the whole route.
    let onset = Instant::now();
    sim.set_mode("primary", Mode::Down);
    sim.set_mode("fallback", Mode::Status(503));
    let page = hook
        .wait_for(
            "HfBreakerRouteExhausted",
            "firing",
            onset,
            Duration::from_secs(60),
        )
        .await
        .expect("the critical page arrives");
    let to_page = page.at - onset;
    assert_eq!(page.body["receiver"], "pager");
    let alert = page.body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "HfBreakerRouteExhausted")
        .unwrap();
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["route"], "assistant");
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .ends_with("#hfbreakerrouteexhausted")
    );

    // While the route is exhausted, its endpoints' warnings are inhibited.
    let start = Instant::now();
    loop {
        let r = client()
            .get(format!("{}/api/v2/alerts", am.base()))
            .send()
            .await
            .unwrap();
        let alerts: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let opens: Vec<&serde_json::Value> = alerts
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| {
                a["labels"]["alertname"] == "HfBreakerCircuitOpen"
                    && a["labels"]["route"] == "assistant"
            })
            .collect();
        if opens.len() == 2
            && opens.iter().all(|a| {
                a["status"]["state"] == "suppressed"
                    && !a["status"]["inhibitedBy"].as_array().unwrap().is_empty()
            })
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "circuit-open warnings of the exhausted route are not inhibited: {opens:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every expression of the rules and dashboards, evaluated while things are broken.
    let mut exprs: Vec<(String, String)> = Vec::new();
    let rules: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo("alerts/hfbreaker.rules.yml")).unwrap(),
    )
    .unwrap();
    for r in rules["groups"][0]["rules"].as_array().unwrap() {
        let name = r
            .get("alert")
            .or(r.get("record"))
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        exprs.push((
            format!("rule {name}"),
            r["expr"].as_str().unwrap().to_string(),
        ));
    }
    let mut panel_exprs = Vec::new();
    let mut var_queries = Vec::new();
    for f in ["hfbreaker-overview.json", "hfbreaker-endpoint.json"] {
        let dash: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(repo(&format!("dashboards/{f}"))).unwrap(),
        )
        .unwrap();
        for panel in dash["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().into_iter().flatten() {
                let e = substitute(t["expr"].as_str().unwrap());
                panel_exprs.push((format!("{f}: {}", panel["title"]), e.clone()));
                exprs.push((format!("{f}: {}", panel["title"]), e));
            }
        }
        for v in dash["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["type"] == "query")
        {
            var_queries.push(v["definition"].as_str().unwrap().to_string());
        }
    }
    let mut checked_selectors = BTreeSet::new();
    for (what, e) in &exprs {
        query(&p, e)
            .await
            .unwrap_or_else(|err| panic!("{what}: {err}\n{e}"));
        for sel in selectors(e) {
            let sel = substitute(&sel);
            if checked_selectors.insert(sel.clone()) {
                let res = query(&p, &format!("count({sel})"))
                    .await
                    .unwrap_or_else(|err| panic!("{what}: {sel}: {err}"));
                assert!(
                    !res.is_empty(),
                    "{what}: selector {sel} matches no series (typo'd metric or label?)"
                );
            }
        }
    }
    for (what, e) in &panel_exprs {
        let res = query(&p, e).await.unwrap();
        assert!(!res.is_empty(), "{what}: no data\n{e}");
    }
    for v in &var_queries {
        // label_values(selector, label)
        let inner = v.trim_start_matches("label_values(").trim_end_matches(')');
        let (sel, label) = inner.rsplit_once(',').unwrap();
        let res = query(
            &p,
            &format!("count by ({}) ({})", label.trim(), substitute(sel)),
        )
        .await
        .unwrap();
        assert!(
            !res.is_empty() && res.iter().all(|r| r["metric"][label.trim()].is_string()),
            "variable query {v} returns no values"
        );
    }
    let r = client()
        .get(format!("{p}/api/v1/rules"))
        .send()
        .await
        .unwrap();
    let rules_state: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    for g in rules_state["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(
                r["health"], "ok",
                "rule {} evaluates with an error: {}",
                r["name"], r["lastError"]
            );
        }
    }
    let firing: BTreeSet<String> = rules_state["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "firing")
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        firing.contains("HfBreakerRouteExhausted") && firing.contains("HfBreakerCircuitOpen"),
        "{firing:?}"
    );

    // Recovery.
    let back = Instant::now();
    sim.set_mode("primary", Mode::Ok);
    sim.set_mode("fallback", Mode::Ok);
    let resolved = hook
        .wait_for(
            "HfBreakerRouteExhausted",
            "resolved",
            back,
            Duration::from_secs(90),
        )
        .await
        .expect("the resolution arrives");
    let to_resolve = resolved.at - back;
    let pages: Vec<_> = hook
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|n| {
            n.alerts()
                .iter()
                .any(|(a, s)| a == "HfBreakerRouteExhausted" && s == "firing")
        })
        .map(|n| n.at)
        .collect();
    println!(
        "time to page: {:.1}s from onset (1 s scrape and evaluation, group_wait 1 s); time to resolution: {:.1}s (keep_firing_for 30 s); {} page notification(s)",
        to_page.as_secs_f64(),
        to_resolve.as_secs_f64(),
        pages.len()
    );
    assert_eq!(pages.len(), 1, "one incident, one page");
    assert!(to_page < Duration::from_secs(20), "paged after {to_page:?}");
    assert!(
        to_resolve < Duration::from_secs(60),
        "resolved after {to_resolve:?}"
    );
    assert!(
        to_resolve >= Duration::from_secs(25),
        "keep_firing_for holds the alert through half-open trials"
    );

    load.abort();
    drop(prom);
    drop(am);
    d.shutdown().await;
    sim.shutdown().await;
}

/// The demo's scripted incident, watched by Prometheus with the shipped rules
/// and routed by the shipped Alertmanager example: one page and one
/// resolution per cycle, and nothing else pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_incident_pages_once_and_resolves_once() {
    let Some(prom_bin) = require_tool("prometheus", &["prometheus"]) else {
        return;
    };
    let Some(am_bin) = require_tool("alertmanager", &["prometheus-alertmanager", "alertmanager"])
    else {
        return;
    };
    let hook = Webhook::start().await.unwrap();
    let am = example_alertmanager(&am_bin, &hook).await;

    let started = Instant::now();
    let demo = testkit::binary!().demo(&[]);
    let prom_cfg = format!(
        "global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files: [hfbreaker.rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:{}']
scrape_configs:
  - job_name: hfbreaker
    static_configs:
      - targets: ['{}']
",
        am.port(),
        demo.addr
    );
    let prom = start_prometheus(&prom_bin, &prom_cfg, &[&repo("alerts/hfbreaker.rules.yml")])
        .expect("prometheus starts");
    assert!(wait_http_ok(&format!("{}/-/ready", prom.base()), Duration::from_secs(30)).await);

    // One 60 s cycle, and the 30 s keep_firing_for after the incident.
    // The demo's gateway traffic gets 503s while the embeddings route is
    // exhausted: the fast burn-rate page fires too (inhibited while the
    // exhausted route pages).
    let resolved = hook
        .wait_for(
            "HfBreakerRouteExhausted",
            "resolved",
            started,
            Duration::from_secs(75),
        )
        .await
        .expect("the demo's exhausted route resolves within its cycle");
    let burning = query(
        &prom.base(),
        r#"ALERTS{alertname="HfBreakerGatewayErrorBudgetBurnFast",route="embeddings",alertstate="firing"}"#,
    )
    .await
    .unwrap_or_default();
    let fallback = query(
        &prom.base(),
        r#"hfbreaker:gateway_fallback_ratio:rate5m{route="assistant"} > 0"#,
    )
    .await
    .unwrap_or_default();
    drop(demo);
    assert!(
        !burning.is_empty(),
        "the demo's 503s burn the embeddings route's error budget"
    );
    assert!(
        !fallback.is_empty(),
        "the demo's chats fail over: the request-weighted fallback ratio moves"
    );
    let notes = hook.received.lock().unwrap().clone();
    let critical_firing: Vec<(String, String)> = notes
        .iter()
        .filter(|n| n.body["receiver"] == "pager")
        .flat_map(|n| n.alerts())
        .filter(|(_, s)| s == "firing")
        .collect();
    let pages = notes
        .iter()
        .filter(|n| {
            n.at <= resolved.at
                && n.alerts()
                    .iter()
                    .any(|(a, s)| a == "HfBreakerRouteExhausted" && s == "firing")
        })
        .count();
    println!(
        "demo cycle: {pages} page(s), resolved {:.1}s after the demo started; critical notifications: {critical_firing:?}",
        (resolved.at - started).as_secs_f64()
    );
    assert_eq!(pages, 1, "one page for the incident");
    assert!(
        critical_firing
            .iter()
            .all(|(a, _)| a == "HfBreakerRouteExhausted"
                || a == "HfBreakerGatewayErrorBudgetBurnFast"),
        "nothing else pages: {critical_firing:?}"
    );
    assert!(
        (resolved.at - started) < Duration::from_secs(72),
        "resolved before the next cycle's incident"
    );
    drop(prom);
}
