//! The `/metrics` text, checked by Prometheus' own parser and linter
//! (`promtool check metrics`) for a config with awkward but valid names and
//! models: quotes, backslashes, line feeds and non-ASCII in label values.

use hfbreaker::breaker::{State, TripReason};
use hfbreaker::classify::Reason;
use hfbreaker::metrics::{Metrics, ProbeResult, gateway};
use hfbreaker::tier::Tier;
use testkit::{Scrape, promtool_check_metrics};

const AWKWARD: &str = r#"
endpoints:
  - name: quote-model
    kind: openai
    url: "http://[::1]:8080/v1"
    model: 'org/say "hi"'
    probe: chat
  - name: backslash_model
    kind: tgi
    url: "http://bücher.example:8080"
    model: 'C:\models\llama\'
    probe: chat
  - name: unicode-and-newline
    kind: hf-inference
    url: "http://127.0.0.1:9"
    model: "Ünïcødé/模型\nsecond line"
  - name: "0"
    kind: http
    url: "http://127.0.0.1:9/health?x=1&y=2"
routes:
  - name: r-1
    endpoints: [quote-model, backslash_model, unicode-and-newline]
  - name: "_"
    endpoints: ["0"]
"#;

/// Every series of the awkward config, with every counter and label value
/// touched at least once.
fn exposition() -> String {
    let cfg = hfbreaker::config::parse(
        AWKWARD,
        "awkward.yml",
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let m = Metrics::new();
    for ep in &cfg.endpoints {
        let e = m.endpoint(ep);
        for (i, to) in State::ALL.into_iter().enumerate() {
            e.transition(State::ALL[(i + 1) % State::ALL.len()], to);
            e.set_state(to, 1.7e9);
        }
        for t in TripReason::ALL {
            e.trip(t);
        }
        for r in ProbeResult::ALL {
            e.probe(r);
        }
        e.probe_done(ProbeResult::Success, None, f64::MAX, Some(200), None);
        for r in Reason::ALL {
            e.probe_done(ProbeResult::Failure, Some(r), 0.2, Some(503), None);
        }
        // The last answer said loading, with an absurd estimate.
        let loading = Some(Reason::ModelLoading);
        e.probe_done(ProbeResult::Failure, loading, 0.2, Some(503), Some(1e308));
        e.breaker_stats(3, 0.5, 60.0);
    }
    for r in &cfg.routes {
        m.route_init(&r.name, &r.endpoints);
        m.route_level(&r.name, None);
        m.route_switch(&r.name, &r.endpoints[0], "none");
        for t in Tier::ALL {
            m.route_time(&r.name, t, 1.5);
        }
        // The gateway's series, every request tier (cache included) used.
        let g = m.gateway_route(&r.name, &r.endpoints);
        for t in gateway::Tier::ALL {
            let ep = (t != gateway::Tier::Exhausted).then_some(0);
            g.request(ep, t, 200, 0.02);
        }
        g.cache_hit();
        g.attempt(0, gateway::AttemptResult::Failure, Some(Reason::Http5xx));
    }
    m.reload(true, 1.7e9);
    m.scheduler_lateness(0.003);
    String::from_utf8(m.render()).unwrap()
}

#[test]
fn promtool_accepts_the_exposition_of_awkward_names() {
    let text = exposition();
    if let Some(Err(said)) = promtool_check_metrics(&text) {
        panic!("promtool check metrics:\n{said}\n--- exposition:\n{text}");
    }
}

#[test]
fn awkward_values_round_trip_through_the_escaping() {
    let s = Scrape(exposition());
    let info = |endpoint: &str, label: &str| {
        s.samples()
            .find(|x| x.name == "hfbreaker_endpoint_info" && x.label("endpoint") == Some(endpoint))
            .and_then(|x| x.label(label).map(str::to_string))
    };
    // The parser undoes the escaping: what comes back is the config's value.
    assert_eq!(
        info("quote-model", "model").as_deref(),
        Some(r#"org/say "hi""#)
    );
    assert_eq!(
        info("backslash_model", "model").as_deref(),
        Some(r"C:\models\llama\")
    );
    assert_eq!(
        info("unicode-and-newline", "model").as_deref(),
        Some("Ünïcødé/模型\nsecond line")
    );
    assert!(
        s.0.contains(r#"model="org/say \"hi\"""#),
        "quotes are escaped"
    );
    assert!(
        s.0.contains(r#"model="C:\\models\\llama\\""#),
        "backslashes are escaped"
    );
    assert!(
        s.0.contains(r#"model="Ünïcødé/模型\nsecond line""#),
        "line feeds are escaped"
    );
    assert_eq!(info("quote-model", "host").as_deref(), Some("[::1]:8080"));
    assert_eq!(
        info("backslash_model", "host").as_deref(),
        Some("xn--bcher-kva.example:8080")
    );
    // No raw line feed inside a sample: every line is a comment or a sample.
    for line in s.0.lines() {
        assert!(
            line.starts_with('#')
                || line
                    .rsplit_once(' ')
                    .is_some_and(|(_, v)| v.parse::<f64>().is_ok() || v == "+Inf"),
            "{line:?}"
        );
    }
    assert!(s.0.contains("hfbreaker_endpoint_loading_estimated_seconds{endpoint=\"0\"} 1e308\n"));
    assert!(s.0.contains("hfbreaker_route_serving{endpoint=\"none\",route=\"_\"} 1\n"));
}
