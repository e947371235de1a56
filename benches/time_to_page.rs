//! Time to page, as users run it: 15 s scrape and evaluation interval,
//! Alertmanager group_wait 10 s, an outage starting at a random moment.
//! Measured side by side with the usual blackbox_exporter set-up (http_2xx
//! probe, `probe_success == 0` for 1m) watching the same endpoint.
//!
//! `cargo bench --bench time_to_page` (scripts/bench time-to-page installs the tools).
//! Under `cargo test` it only says how to run it.

use std::time::{Duration, Instant};

use hfbreaker::sim::{Mode, Protocol, VirtualSpec};
use testkit::bench::{guard, median};
use testkit::{
    TestDaemon, Webhook, find_tool, query, sim, start_alertmanager, start_blackbox,
    start_prometheus, wait_http_ok,
};

const TRIALS: usize = 5;
const REPO: &str = env!("CARGO_MANIFEST_DIR");

struct Tools {
    prometheus: std::path::PathBuf,
    alertmanager: std::path::PathBuf,
    blackbox: std::path::PathBuf,
}

fn am_config(hook: &Webhook) -> String {
    format!(
        "route:
  receiver: hook
  group_by: [alertname]
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 4h
receivers:
  - name: hook
    webhook_configs:
      - url: {}
        send_resolved: true
",
        hook.url("/alerts")
    )
}

fn prom_config(am_port: u16, rule_file: &str, scrape: &str) -> String {
    format!(
        "global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files: [{rule_file}]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:{am_port}']
scrape_configs:
{scrape}"
    )
}

async fn wait_scraped(prom: &str, expr: &str) {
    let start = Instant::now();
    while query(prom, expr)
        .await
        .map(|r| r.is_empty())
        .unwrap_or(true)
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{expr} never scraped"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One outage: (hfbreaker delay, blackbox delay) from onset to the webhook.
async fn trial(t: &Tools, n: usize) -> (Duration, Duration) {
    let sim = sim(vec![("primary", VirtualSpec::new(Protocol::Tgi, "m"))]).await;
    // hfbreaker with its default timings (15 s interval, 1 s confirmations, 5 failures).
    let daemon = TestDaemon::start(&format!(
        "endpoints:\n  - {{name: primary, kind: tgi, url: {}, probe: generate}}\nroutes:\n  - {{name: assistant, endpoints: [primary]}}\n",
        sim.url("primary")
    ))
    .await;
    let daemon_addr = daemon.addr;
    let hf_hook = Webhook::start().await.unwrap();
    let bb_hook = Webhook::start().await.unwrap();
    let hf_am = start_alertmanager(&t.alertmanager, &am_config(&hf_hook)).unwrap();
    let bb_am = start_alertmanager(&t.alertmanager, &am_config(&bb_hook)).unwrap();
    let hf_prom = start_prometheus(
        &t.prometheus,
        &prom_config(
            hf_am.port(),
            "hfbreaker.rules.yml",
            &format!(
                "  - job_name: hfbreaker\n    static_configs:\n      - targets: ['{daemon_addr}']\n"
            ),
        ),
        &[std::path::Path::new(&format!(
            "{REPO}/alerts/hfbreaker.rules.yml"
        ))],
    )
    .unwrap();
    let bb = start_blackbox(
        &t.blackbox,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 10s\n",
    )
    .unwrap();
    let rules_dir = tempfile::tempdir().unwrap();
    let bb_rules = rules_dir.path().join("blackbox.rules.yml");
    std::fs::write(
        &bb_rules,
        "groups:\n  - name: blackbox\n    rules:\n      - alert: BlackboxProbeFailed\n        expr: probe_success == 0\n        for: 1m\n        labels: {severity: critical}\n",
    )
    .unwrap();
    let bb_prom = start_prometheus(
        &t.prometheus,
        &prom_config(
            bb_am.port(),
            "blackbox.rules.yml",
            &format!(
                "  - job_name: blackbox
    metrics_path: /probe
    params: {{module: [http_2xx]}}
    static_configs:
      - targets: ['{}/health']
    relabel_configs:
      - {{source_labels: [__address__], target_label: __param_target}}
      - {{source_labels: [__param_target], target_label: instance}}
      - {{target_label: __address__, replacement: '127.0.0.1:{}'}}
",
                sim.url("primary"),
                bb.port()
            ),
        ),
        &[&bb_rules],
    )
    .unwrap();
    for p in [&hf_prom, &bb_prom] {
        assert!(wait_http_ok(&format!("{}/-/ready", p.base()), Duration::from_secs(60)).await);
    }
    for a in [&hf_am, &bb_am] {
        assert!(wait_http_ok(&format!("{}/-/ready", a.base()), Duration::from_secs(60)).await);
    }
    wait_scraped(&hf_prom.base(), "hfbreaker_route_level == 0").await;
    wait_scraped(&bb_prom.base(), "probe_success == 1").await;
    // Steady state for a while, then the outage at a random moment.
    tokio::time::sleep(Duration::from_secs(20) + Duration::from_secs_f64(fastrand::f64() * 15.0))
        .await;
    let onset = Instant::now();
    sim.set_mode("primary", Mode::Down);
    let (hf, bbn) = tokio::join!(
        hf_hook.wait_for(
            "HfBreakerRouteExhausted",
            "firing",
            onset,
            Duration::from_secs(240)
        ),
        bb_hook.wait_for(
            "BlackboxProbeFailed",
            "firing",
            onset,
            Duration::from_secs(240)
        ),
    );
    let hf = hf.expect("hfbreaker paged").at - onset;
    let bbd = bbn.expect("blackbox paged").at - onset;
    eprintln!(
        "trial {n}: hfbreaker {:.1}s, blackbox_exporter {:.1}s",
        hf.as_secs_f64(),
        bbd.as_secs_f64()
    );
    daemon.shutdown().await;
    sim.shutdown().await;
    (hf, bbd)
}

fn main() {
    if !guard("time_to_page", "or scripts/bench time-to-page") {
        return;
    }
    let tool = |names: &[&str]| {
        find_tool(names).unwrap_or_else(|| {
            panic!("{names:?} not found: run scripts/bench time-to-page, which installs it")
        })
    };
    let t = Tools {
        prometheus: tool(&["prometheus"]),
        alertmanager: tool(&["prometheus-alertmanager", "alertmanager"]),
        blackbox: tool(&["prometheus-blackbox-exporter", "blackbox_exporter"]),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    // Independent trials, run side by side: each has its own random phase.
    let results: Vec<(Duration, Duration)> = rt.block_on(async {
        let t = std::sync::Arc::new(t);
        let handles: Vec<_> = (0..TRIALS)
            .map(|n| {
                let t = t.clone();
                tokio::spawn(async move { trial(&t, n + 1).await })
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.expect("trial ran"));
        }
        out
    });
    let hf: Vec<f64> = results.iter().map(|r| r.0.as_secs_f64()).collect();
    let bb: Vec<f64> = results.iter().map(|r| r.1.as_secs_f64()).collect();
    println!(
        "\nTime to page (onset to webhook), 15 s scrape and evaluation, group_wait 10 s, {TRIALS} outages at random moments"
    );
    println!(
        "| trial | hfbreaker (RouteExhausted) | blackbox_exporter (probe_success == 0 for 1m) |"
    );
    println!("|---|---|---|");
    for (i, (h, b)) in hf.iter().zip(&bb).enumerate() {
        println!("| {} | {h:.1} s | {b:.1} s |", i + 1);
    }
    let (mh, mb) = (median(hf), median(bb));
    println!("| **median** | **{mh:.1} s** | **{mb:.1} s** |");
    println!(
        "hfbreaker pages in {:.0}% of the blackbox set-up's time (target: median <= 40 s); took {:.0} s",
        100.0 * mh / mb,
        started.elapsed().as_secs_f64()
    );
}
