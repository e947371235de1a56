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

/// `adaptive.min` above the probe timeout would lift the learned threshold
/// above the timeout, where a probe is a failure and never a slow call: the
/// slow-call rule would be off without a word. Refused, globally and per
/// endpoint (the timeout can be per endpoint), at the field of the level
/// that makes the conflict.
#[test]
fn min_above_the_probe_timeout_is_refused_with_position() {
    const AUTO: &str = "global:\n  breaker:\n    slow_call_duration: auto\n";
    const EP1: &str = "endpoints:\n  - {name: a, kind: http, url: 'http://127.0.0.1:9/'}\n";
    let b_breaker = |block: &str| {
        EPS.replace(
            "    timeout: 2s\n",
            &format!("    timeout: 2s\n    breaker: {block}\n"),
        )
    };
    for (yaml, want) in [
        (
            "global:\n  timeout: 2s\n  breaker:\n    slow_call_duration: auto\n    adaptive: {min: 3s}\n".to_string() + EP1,
            "a.yml:5:21: global.breaker.adaptive.min: must not be above the probe timeout (2s)",
        ),
        (
            format!("{AUTO}    adaptive: {{min: 3s}}\n{EPS}"),
            "a.yml:10:14: endpoints[1].timeout: must not be below breaker.adaptive.min (3s) with slow_call_duration: auto",
        ),
        (
            format!("{AUTO}{}", b_breaker("{adaptive: {min: 2500ms}}")),
            "a.yml:10:31: endpoints[1].breaker.adaptive.min: must not be above the probe timeout (2s)",
        ),
        // the endpoint's own timeout first, then its `auto`
        (
            format!(
                "global:\n  breaker:\n    adaptive: {{min: 3s}}\n{}",
                b_breaker("{slow_call_duration: auto}")
            ),
            "a.yml:9:14: endpoints[1].timeout: must not be below breaker.adaptive.min (3s) with slow_call_duration: auto",
        ),
        (
            "global:\n  timeout: 2s\n  breaker:\n    adaptive: {min: 3s}\n".to_string()
                + EP1.replace("'}", "', breaker: {slow_call_duration: auto}}").as_str(),
            "a.yml:6:85: endpoints[0].breaker.slow_call_duration: auto needs breaker.adaptive.min (3s) not above the probe timeout (2s)",
        ),
    ] {
        let e = err(&yaml);
        assert_eq!(e, want, "{yaml}");
    }
    // The global pair conflicts, but no endpoint inherits it: every one
    // has a timeout of its own above min, or a fixed threshold. Fine.
    parse(
        "global:\n  timeout: 2s\n  breaker:\n    slow_call_duration: auto\n    adaptive: {min: 3s}\n\
         endpoints:\n  - {name: a, kind: http, url: 'http://127.0.0.1:9/', timeout: 5s}\n\
         \x20 - {name: b, kind: http, url: 'http://127.0.0.1:9/', breaker: {slow_call_duration: 1s}}\n",
    );
    // equal to the timeout, or a fixed threshold (min unused): fine
    parse(&format!("{AUTO}    adaptive: {{min: 2s}}\n{EPS}"));
    parse(&format!(
        "global:\n  breaker:\n    adaptive: {{min: 3s}}\n{}",
        b_breaker("{slow_call_duration: 1s}")
    ));
}

/// Whatever is written, a loaded `auto` breaker has min <= max <= timeout,
/// so its threshold never exceeds the timeout, however slow the endpoint.
#[test]
fn the_learned_threshold_never_exceeds_the_probe_timeout() {
    use hfbreaker::breaker::{Breaker, Outcome};
    let ds = ["10ms", "500ms", "2s", "3s", "10s", "1m"];
    let mut loaded = 0;
    for min in ds {
        for max in ds
            .iter()
            .map(|m| format!(", max: {m}"))
            .chain([String::new()])
        {
            for timeout in ["10ms", "2s", "10s"] {
                let yaml = format!(
                    "global:\n  timeout: 1m\n  breaker:\n    slow_call_duration: auto\n    adaptive: {{min: {min}{max}, warmup_calls: 1}}\nendpoints:\n  - {{name: a, kind: http, url: 'http://127.0.0.1:9/', timeout: {timeout}}}\n"
                );
                let Ok(c) = config::parse(&yaml, "a.yml", &HashMap::<String, String>::new()) else {
                    continue;
                };
                loaded += 1;
                let e = &c.endpoints[0];
                let a = e.breaker.adaptive.unwrap();
                assert!(a.min <= a.max && a.max <= e.timeout, "{yaml}\n{a:?}");
                let now = std::time::Instant::now();
                let mut b = Breaker::new(e.breaker.clone(), now, 1);
                let (p, _) = b.try_acquire(now);
                let slow = Outcome::Success {
                    duration: Duration::from_secs(3600),
                };
                b.record(p.unwrap(), slow, now);
                assert!(b.slow_call_threshold() <= e.timeout, "{yaml}");
            }
        }
    }
    assert!(loaded >= 40, "{loaded}");
}
