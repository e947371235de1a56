//! `slow_call_duration: auto` and `breaker.adaptive` in the config: where
//! they apply, their defaults, their bounds (with file:line:col), and the
//! probe timeout as the ceiling of `adaptive.max`.

use std::collections::HashMap;
use std::time::Duration;

use hfbreaker::baseline::AdaptiveConfig;
use hfbreaker::config::{self, bounds, default_adaptive};

fn parse(yaml: &str) -> config::Config {
    config::parse(yaml, "a.yml", &HashMap::<String, String>::new())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn err(yaml: &str) -> String {
    match config::parse(yaml, "a.yml", &HashMap::<String, String>::new()) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

const EPS: &str = "endpoints:\n  - {name: a, kind: http, url: 'http://127.0.0.1:9/'}\n  - name: b\n    kind: http\n    url: 'http://127.0.0.1:9/'\n    timeout: 2s\n";

#[test]
fn fixed_by_default_auto_globally_or_per_endpoint() {
    let c = parse(EPS);
    assert!(c.endpoints.iter().all(|e| e.breaker.adaptive.is_none()));
    assert_eq!(c.endpoints[0].breaker.slow_call_rate_threshold, 1.0);

    let c = parse(&format!(
        "global:\n  breaker:\n    slow_call_duration: auto\n{EPS}"
    ));
    let a = c.endpoints[0].breaker.adaptive.expect("auto");
    assert_eq!(
        a,
        AdaptiveConfig {
            max: Duration::from_secs(10),
            ..default_adaptive()
        },
        "max defaults to the probe timeout"
    );
    assert_eq!(
        c.endpoints[1].breaker.adaptive.unwrap().max,
        Duration::from_secs(2)
    );
    // auto turns the slow-call rule on; the fixed value applies while warming up
    assert_eq!(c.endpoints[0].breaker.slow_call_rate_threshold, 0.5);
    assert_eq!(
        c.endpoints[0].breaker.slow_call_duration,
        Duration::from_secs(5)
    );

    // per endpoint, and a written rate (here or inherited) is kept
    let yaml = EPS.replace(
        "    timeout: 2s\n",
        "    timeout: 2s\n    breaker: {slow_call_duration: auto}\n",
    );
    let c = parse(&format!(
        "global:\n  breaker:\n    slow_call_rate_threshold: 0.8\n{yaml}"
    ));
    assert!(c.endpoints[0].breaker.adaptive.is_none());
    assert_eq!(c.endpoints[1].breaker.slow_call_rate_threshold, 0.8);
    assert!(c.endpoints[1].breaker.adaptive.is_some());

    // an endpoint may go back to a fixed threshold
    let yaml = EPS.replace(
        "    timeout: 2s\n",
        "    timeout: 2s\n    breaker: {slow_call_duration: 800ms}\n",
    );
    let c = parse(&format!(
        "global:\n  breaker:\n    slow_call_duration: auto\n{yaml}"
    ));
    assert!(c.endpoints[0].breaker.adaptive.is_some());
    assert!(c.endpoints[1].breaker.adaptive.is_none());
    assert_eq!(
        c.endpoints[1].breaker.slow_call_duration,
        Duration::from_millis(800)
    );
}

#[test]
fn knobs_are_inherited_and_max_never_exceeds_the_timeout() {
    let yaml = EPS.replace(
        "    timeout: 2s\n",
        "    timeout: 2s\n    breaker:\n      adaptive: {factor: 4, warmup_calls: 5}\n",
    );
    let c = parse(&format!(
        "global:\n  breaker:\n    slow_call_duration: auto\n    adaptive:\n      factor: 3\n      min: 50ms\n      max: 5s\n      half_life: 30m\n{yaml}"
    ));
    let a = c.endpoints[0].breaker.adaptive.unwrap();
    assert_eq!(
        (a.factor, a.min, a.max, a.warmup_calls, a.half_life),
        (
            3.0,
            Duration::from_millis(50),
            Duration::from_secs(5),
            20,
            Duration::from_secs(1800)
        )
    );
    let b = c.endpoints[1].breaker.adaptive.unwrap();
    assert_eq!((b.factor, b.warmup_calls), (4.0, 5));
    assert_eq!(b.max, Duration::from_secs(2), "clamped to the 2 s timeout");
    assert_eq!(b.half_life, Duration::from_secs(1800));
}

#[test]
fn bounds_and_mistakes_are_reported_with_position() {
    for (block, want) in [
        (
            "adaptive: {factor: 1.0}",
            "a.yml:3:24: global.breaker.adaptive.factor: must be between 1.1 and 100",
        ),
        (
            "adaptive: {factor: 101}",
            "a.yml:3:24: global.breaker.adaptive.factor: must be between 1.1 and 100",
        ),
        (
            "adaptive: {warmup_calls: 0}",
            "a.yml:3:30: global.breaker.adaptive.warmup_calls: must be between 1 and 100",
        ),
        (
            "adaptive: {warmup_calls: 101}",
            "a.yml:3:30: global.breaker.adaptive.warmup_calls: must be between 1 and 100",
        ),
        (
            "adaptive: {half_life: 59s}",
            "a.yml:3:27: global.breaker.adaptive.half_life: must be between 1m and 24h",
        ),
        (
            "adaptive: {half_life: 25h}",
            "a.yml:3:27: global.breaker.adaptive.half_life: must be between 1m and 24h",
        ),
        (
            "adaptive: {min: 0ms}",
            "a.yml:3:21: global.breaker.adaptive.min: must be between 1ms and 5m",
        ),
        (
            "adaptive: {max: 6m}",
            "a.yml:3:21: global.breaker.adaptive.max: must be between 1ms and 5m",
        ),
        (
            "adaptive: {min: 2s, max: 1s}",
            "a.yml:3:21: global.breaker.adaptive.min: must not be above adaptive.max",
        ),
        (
            "slow_call_duration: 0ms",
            "a.yml:3:25: global.breaker.slow_call_duration: must be between 1ms and 5m",
        ),
        (
            "adaptive: {speed: 1}",
            "a.yml:3:16: speed: unknown field `speed`, expected one of factor, min, max, warmup_calls, half_life",
        ),
    ] {
        let e = err(&format!("global:\n  breaker:\n    {block}\n{EPS}"));
        assert!(e.starts_with(want), "{block}:\n got {e}\nwant {want}");
    }
    let e = err(&format!(
        "global:\n  breaker:\n    slow_call_duration: automatic\n{EPS}"
    ));
    assert!(
        e.starts_with("a.yml:3:25: slow_call_duration: invalid duration") && e.contains("or auto"),
        "{e}"
    );
    // every bound is reachable
    let (lo, hi) = (
        bounds::ADAPTIVE_HALF_LIFE.min,
        bounds::ADAPTIVE_HALF_LIFE.max,
    );
    for hl in [lo, hi] {
        let c = parse(&format!(
            "global:\n  breaker:\n    slow_call_duration: auto\n    adaptive: {{half_life: {}s, factor: 1.1, warmup_calls: 100, min: 1ms, max: 5m}}\n{EPS}",
            hl.as_secs()
        ));
        assert_eq!(c.endpoints[0].breaker.adaptive.unwrap().half_life, hl);
    }
}
