//! The shipped alert rules, Alertmanager example and dashboards: checked by
//! promtool and amtool, their unit tests run, and their conventions held.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use testkit::require_tool;

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn run(tool: &PathBuf, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .current_dir(repo("alerts"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{text}",
        tool.display()
    );
    text
}

fn rules() -> serde_json::Value {
    serde_saphyr::from_str(&std::fs::read_to_string(repo("alerts/hfbreaker.rules.yml")).unwrap())
        .unwrap()
}

fn alerts() -> Vec<serde_json::Value> {
    rules()["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

#[test]
fn promtool_checks_and_unit_tests_pass() {
    let Some(promtool) = require_tool("promtool", &["promtool"]) else {
        return;
    };
    let out = run(&promtool, &["check", "rules", "hfbreaker.rules.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run(&promtool, &["test", "rules", "hfbreaker.rules.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_is_unit_tested_firing_and_silent() {
    let tests = std::fs::read_to_string(repo("alerts/hfbreaker.rules.test.yml")).unwrap();
    for a in alerts() {
        let name = a["alert"].as_str().unwrap();
        let blocks: Vec<&str> = tests
            .split("alertname: ")
            .skip(1)
            .filter(|b| b.starts_with(&format!("{name}\n")))
            .collect();
        assert!(
            blocks.iter().any(|b| b.contains("exp_labels")),
            "{name} has no firing test"
        );
        assert!(
            blocks.iter().any(|b| b.contains("exp_alerts: []")),
            "{name} has no silent test"
        );
    }
}

#[test]
fn alerts_carry_severity_annotations_and_existing_runbooks() {
    let runbooks = std::fs::read_to_string(repo("docs/runbooks.md")).unwrap();
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let all = alerts();
    assert!(all.len() >= 10);
    for a in all {
        let name = a["alert"].as_str().unwrap();
        assert!(
            name.starts_with("HfBreaker"),
            "{name}: shared CamelCase prefix"
        );
        let sev = a["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&sev),
            "{name}: severity {sev:?}"
        );
        for key in ["summary", "description", "runbook_url", "dashboard_url"] {
            assert!(
                a["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: {key}"
            );
        }
        let anchor = a["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .split('#')
            .nth(1)
            .unwrap()
            .to_string();
        assert_eq!(anchor, name.to_lowercase());
        assert!(
            anchors.contains(&anchor),
            "docs/runbooks.md has no section {name}"
        );
        let dash = a["annotations"]["dashboard_url"].as_str().unwrap();
        assert!(
            dash.starts_with("/d/hfbreaker-overview/")
                || dash.starts_with("/d/hfbreaker-endpoint/"),
            "{name}: {dash}"
        );
    }
}

#[test]
fn alertmanager_example_is_valid_and_routes_by_severity() {
    let Some(amtool) = require_tool("amtool", &["amtool"]) else {
        return;
    };
    let out = run(&amtool, &["check-config", "alertmanager.example.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    let route = |labels: &[&str]| {
        let mut args = vec![
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.example.yml",
        ];
        args.extend_from_slice(labels);
        run(&amtool, &args)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(
        route(&["severity=critical", "alertname=HfBreakerRouteExhausted"]),
        "pager"
    );
    assert_eq!(
        route(&["severity=warning", "alertname=HfBreakerCircuitOpen"]),
        "tickets"
    );
}

fn dashboards() -> Vec<(String, serde_json::Value)> {
    ["hfbreaker-overview.json", "hfbreaker-endpoint.json"]
        .iter()
        .map(|f| {
            (
                f.to_string(),
                serde_json::from_str(
                    &std::fs::read_to_string(repo(&format!("dashboards/{f}"))).unwrap(),
                )
                .unwrap(),
            )
        })
        .collect()
}

fn walk<'a>(v: &'a serde_json::Value, key: &str, out: &mut Vec<&'a serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == key {
                    out.push(x);
                }
                walk(x, key, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, key, out)),
        _ => {}
    }
}

#[test]
fn dashboards_follow_the_conventions() {
    for (file, d) in dashboards() {
        let uid = d["uid"].as_str().unwrap();
        assert_eq!(
            format!("{uid}.json"),
            file,
            "stable uid named like the file"
        );
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 39,
            "{file}: current schemaVersion"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .expect("datasource variable");
        assert_eq!(ds["type"], "datasource");
        assert_eq!(ds["query"], "prometheus");
        for name in ["job", "instance"] {
            assert!(
                vars.iter().any(|v| v["name"] == name),
                "{file}: {name} variable"
            );
        }
        let mut sources = Vec::new();
        walk(&d, "datasource", &mut sources);
        for s in sources.iter().filter(|s| s.is_object()) {
            let uid = s["uid"].as_str().unwrap_or_default();
            assert!(
                uid == "${datasource}" || uid == "-- Grafana --",
                "{file}: hard-coded datasource uid {uid}"
            );
        }
        for p in d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["type"] != "row")
        {
            let title = p["title"].as_str().unwrap();
            assert!(
                p["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|u| !u.is_empty()),
                "{file}: panel {title:?} has no unit"
            );
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "{file}: panel {title:?} has no query"
            );
        }
        let other = if uid == "hfbreaker-overview" {
            "/d/hfbreaker-endpoint/"
        } else {
            "/d/hfbreaker-overview/"
        };
        assert!(
            d["links"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["url"].as_str().unwrap().starts_with(other)),
            "{file} links to the other dashboard"
        );
    }
}

/// The endpoint dashboard plots probe latency against the slow-call
/// threshold in force and the learned baseline, in one panel (issue 11).
#[test]
fn endpoint_dashboard_plots_latency_against_threshold_and_baseline() {
    let (_, d) = dashboards()
        .into_iter()
        .find(|(f, _)| f == "hfbreaker-endpoint.json")
        .unwrap();
    let wanted = [
        "hfbreaker_probe_duration_seconds_bucket",
        "hfbreaker_circuit_slow_call_duration_seconds",
        "hfbreaker_endpoint_latency_baseline_seconds",
    ];
    let panel = d["panels"].as_array().unwrap().iter().find(|p| {
        let exprs: Vec<&str> = p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str())
            .collect();
        wanted.iter().all(|m| exprs.iter().any(|e| e.contains(m)))
    });
    let panel = panel.expect("a panel with probe latency, the threshold and the baseline");
    assert_eq!(panel["type"], "timeseries");
    assert_eq!(panel["fieldConfig"]["defaults"]["unit"], "s");
}

/// The rules, dashboards and Kubernetes objects are what the mixin
/// generates: `scripts/mixin --check` diffs them (jsonnet; scripts/test
/// installs it, and under CI its absence fails).
#[test]
fn generated_files_match_the_mixin() {
    if require_tool("jsonnet", &["jsonnet"]).is_none() {
        return;
    }
    let out = Command::new(repo("scripts/mixin"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/mixin --check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every hfbreaker metric the rules and dashboards use is one the daemon exports.
#[test]
fn rules_and_dashboards_use_only_exported_metrics() {
    let m = hfbreaker::metrics::Metrics::new();
    let cfg = hfbreaker::config::parse(
        "endpoints:\n  - {name: a, kind: tgi, url: 'http://127.0.0.1:1'}\nroutes:\n  - {name: r, endpoints: [a]}\n",
        "x",
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap();
    let em = m.endpoint(&cfg.endpoints[0]);
    let now = std::time::Instant::now();
    let mut routes = hfbreaker::route::RouteTracker::new(&cfg.routes, now, |_| true, &m);
    // series created on first use: a transition and a route switch
    em.transition(
        hfbreaker::breaker::State::Closed,
        hfbreaker::breaker::State::Open,
    );
    routes.update(now, |_| false, &m);
    // the gateway's series, present while it runs (failovers need a second endpoint)
    m.gateway_route("r", &["a".to_string(), "b".to_string()]);
    let exported: BTreeSet<String> = String::from_utf8(m.render())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let mut text = std::fs::read_to_string(repo("alerts/hfbreaker.rules.yml")).unwrap();
    for (_, d) in dashboards() {
        text.push_str(&d.to_string());
    }
    let used: BTreeSet<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("hfbreaker_") && !w.ends_with('_'))
        .map(str::to_string)
        .collect();
    assert!(used.len() > 15);
    for u in &used {
        assert!(
            exported.contains(u),
            "{u} is used by rules or dashboards but not exported"
        );
    }
}
