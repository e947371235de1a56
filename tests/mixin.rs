//! The monitoring mixin's _config is wired: overriding it changes the
//! generated rules, alerts and dashboards (jsonnet; scripts/test installs it).
//! That the committed files match the mixin is tests/alerting_files.rs.

use std::process::Command;

use serde_json::Value;
use testkit::require_tool;

fn render(overrides: &str) -> Option<Value> {
    let jsonnet = require_tool("jsonnet", &["jsonnet"])?;
    let code = format!(
        "local m = (import 'mixin.libsonnet') + {{ _config+:: {{ {overrides} }} }};
         {{ rules: m.prometheusRules, alerts: m.prometheusAlerts, dashboards: m.grafanaDashboards }}"
    );
    let out = Command::new(jsonnet)
        .args([
            "-J",
            concat!(env!("CARGO_MANIFEST_DIR"), "/mixin"),
            "-e",
            &code,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn rules(v: &Value, part: &str) -> Vec<Value> {
    v[part]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

/// Selectors of raw metrics (hfbreaker_… and up), with their matchers.
fn selectors(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in expr.match_indices('{') {
        let head = &expr[..i];
        let name_start = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |p| p + 1);
        let name = &head[name_start..];
        if name.starts_with("hfbreaker_") || name == "up" {
            let end = expr[i..].find('}').unwrap() + i;
            out.push(expr[name_start..=end].to_string());
        }
    }
    out
}

#[test]
fn a_config_override_changes_every_selector_threshold_and_url() {
    let Some(default) = render("") else { return };
    let Some(team) = render(
        r#"hfbreakerSelector: 'job="hfbreaker-team-a"', replicaMajority: 0.66,
           runbookURLPrefix: 'https://runbooks.example/hfbreaker#',
           dashboardURLPrefix: 'https://grafana.example', availabilityObjective: 0.995"#,
    ) else {
        return;
    };
    let all = |v: &Value| {
        let mut r = rules(v, "rules");
        r.extend(rules(v, "alerts"));
        r
    };
    let (before, after) = (all(&default), all(&team));
    assert_eq!(before.len(), 33);
    assert_eq!(before.len(), after.len());
    let mut seen = 0;
    for (b, a) in before.iter().zip(&after) {
        let (eb, ea) = (b["expr"].as_str().unwrap(), a["expr"].as_str().unwrap());
        for s in selectors(eb) {
            assert!(s.contains(r#"job=~"hfbreaker.*""#), "default: {s}");
        }
        for s in selectors(ea) {
            assert!(s.contains(r#"job="hfbreaker-team-a""#), "override: {s}");
            seen += 1;
        }
        assert!(!ea.contains("hfbreaker.*"), "{ea}");
        if eb.contains("> 0.5") && b["alert"] != "HfBreakerRouteOnFallback" {
            assert!(ea.contains("> 0.66") && !ea.contains("> 0.5"), "{ea}");
        }
        if let Some(name) = a["alert"].as_str() {
            assert_eq!(
                a["annotations"]["runbook_url"],
                format!("https://runbooks.example/hfbreaker#{}", name.to_lowercase())
            );
            assert!(
                a["annotations"]["dashboard_url"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://grafana.example/d/hfbreaker-")
            );
        }
    }
    assert!(seen >= 20, "{seen} selectors");
    let objective = after
        .iter()
        .find(|r| r["record"] == "hfbreaker:gateway_availability_objective")
        .unwrap();
    assert_eq!(objective["expr"], "vector(0.995)");
    for d in team["dashboards"].as_object().unwrap().values() {
        let job = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "job")
            .unwrap();
        assert_eq!(
            job["definition"],
            r#"label_values(hfbreaker_build_info{job="hfbreaker-team-a"}, job)"#
        );
    }
}
