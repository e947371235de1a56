//! `hfbreaker demo` as a user runs it: within a minute every breaker state
//! and every route tier shows up on /metrics, the demo's gateway traffic
//! is answered from every tier too, a brownout trips on `slow_calls`, and
//! Ctrl-C stops it cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{STATES, client, require_tool, scrape_blocking};

#[test]
fn demo_shows_every_state_and_tier_within_a_minute() {
    let start = Instant::now();
    let mut demo = testkit::binary!().demo(&[]);
    let addr = demo.addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = client();
    let tiers = hfbreaker::tier::Tier::LABELS;
    let mut seen_states = std::collections::BTreeSet::new();
    let mut seen_levels = std::collections::BTreeSet::new();
    let last = loop {
        let s = scrape_blocking(&rt, &format!("http://{addr}"));
        seen_states.extend(s.states_held());
        for level in s.values("hfbreaker_route_level", &[]) {
            seen_levels.insert(level.to_string());
        }
        let all_tiers = tiers.iter().all(|t| {
            s.series("hfbreaker_route_level_seconds_total", &[("tier", t)])
                .any(|x| x.value != 0.0)
        });
        // A state may last less than a scrape interval (a half-open trial
        // takes milliseconds); its transition counter still shows it.
        let all_states = STATES.iter().all(|st| {
            seen_states.contains(st)
                || s.get("hfbreaker_circuit_transitions_total", &[("to", st)])
                    .is_some()
        });
        // The demo's own load through its gateway: served by the primaries,
        // failed over to the fallbacks, and answered 503 while exhausted.
        let gateway_tiers = tiers.iter().all(|t| {
            s.series("hfbreaker_gateway_requests_total", &[("tier", t)])
                .any(|x| x.value != 0.0)
        });
        // The brownout of the serverless embeddings trips their learned
        // slow-call threshold.
        let brownout = s
            .get(
                "hfbreaker_circuit_trips_total",
                &[("endpoint", "bge-serverless"), ("reason", "slow_calls")],
            )
            .is_some_and(|v| v >= 1.0);
        if all_tiers && all_states && gateway_tiers && brownout {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "after a minute: states seen {seen_states:?}, levels {seen_levels:?}\n{}",
            s.hfbreaker_lines()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "all states and tiers after {:.1}s; gauges seen at 1: {seen_states:?}; levels seen {seen_levels:?}",
        start.elapsed().as_secs_f64()
    );
    assert!(
        seen_states.len() >= 4,
        "most states are held long enough to be scraped: {seen_states:?}"
    );
    assert!(seen_levels.contains("-1") && seen_levels.contains("1") && seen_levels.contains("0"));
    assert!(
        last.val(
            "hfbreaker_probe_failures_total",
            &[("endpoint", "llama-status"), ("reason", "scaled_to_zero")]
        ) >= 1.0
    );
    assert!(
        last.val(
            "hfbreaker_probe_failures_total",
            &[
                ("endpoint", "zephyr-dedicated"),
                ("reason", "model_loading")
            ]
        ) >= 1.0
    );
    assert!(
        last.val(
            "hfbreaker_probe_failures_total",
            &[("endpoint", "bge-tei"), ("reason", "timeout")]
        ) >= 1.0
    );
    let (code, _) = rt.block_on(async {
        let r = client.get(format!("http://{addr}/")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(code, 200);

    demo.signal("INT");
    let status = demo
        .exit_within(Duration::from_secs(10))
        .expect("demo did not stop on Ctrl-C");
    assert_eq!(status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(100));
    let o = demo.stdout();
    assert!(
        o.contains("route assistant: zephyr-dedicated -> zephyr-serverless (fallback)"),
        "plain line output when not a TTY:\n{o}"
    );
    assert!(
        o.contains("bge-serverless: closed -> open (slow_calls)"),
        "the brownout's trip and its reason:\n{o}"
    );
    assert!(o.contains("hfbreaker demo: stopped"));
    assert!(
        o.contains("gateway (OpenAI-compatible, loopback only, no key) on http://127.0.0.1:"),
        "the gateway's URL is printed:\n{o}"
    );
    assert!(
        o.lines().count() < 200,
        "one line per event, not per request:\n{o}"
    );
}

/// On a terminal the demo redraws a table in place (run under `script`, which gives it a pty).
#[test]
fn demo_draws_a_live_table_on_a_terminal() {
    let Some(script) = require_tool("script (util-linux)", &["script"]) else {
        return;
    };
    let cmd = format!(
        "timeout -s INT 4 {} demo --web.listen-address=127.0.0.1:0",
        testkit::binary!().path().display()
    );
    let out = Command::new(script)
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.matches("\x1b[H\x1b[2J").count() >= 3,
        "redrawn in place several times:\n{text}"
    );
    for needle in [
        "ENDPOINT",
        "KIND/PROBE",
        "STATE",
        "LATENCY",
        "zephyr-dedicated",
        "tgi/generate",
        "ROUTE",
        "assistant",
        "Recent events:",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from the live view:\n{text}"
        );
    }
    assert!(
        text.contains("hfbreaker demo: stopped"),
        "Ctrl-C stops it cleanly:\n{text}"
    );
}
