//! Every duration, count and size has documented bounds (`config::bounds`),
//! checked at load; with values at and around every bound, a config either is
//! refused with `file:line:col: field: message` or runs the scheduler and
//! breaker arithmetic (clock additions, doubling backoff, wall-clock
//! timestamps) without a panic.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use hfbreaker::breaker::Outcome;
use hfbreaker::config::{self, Bounds, bounds};
use hfbreaker::metrics::Metrics;
use hfbreaker::schedule::{self, Action, Endpoint};
use proptest::prelude::*;

fn env() -> HashMap<String, String> {
    HashMap::new()
}

fn err(yaml: &str) -> String {
    match config::parse(yaml, "h.yml", &env()) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

const EP: &str = "endpoints:\n  - {name: a, kind: http, url: 'http://127.0.0.1:9/'}\n";

#[test]
fn hostile_values_from_the_issue_are_refused_with_position_and_field() {
    for (yaml, want) in [
        (
            "global:\n  interval: 500000000000y\n",
            "h.yml:2:13: global.interval: must be between 100ms and 24h",
        ),
        (
            "global:\n  confirm_interval: 500000000000y\n",
            "h.yml:2:21: global.confirm_interval: must be between 10ms and 1h",
        ),
        (
            "global:\n  breaker:\n    open_duration: 500000000y\n",
            "h.yml:3:20: global.breaker.open_duration: must be between 100ms and 24h",
        ),
        (
            "global:\n  interval: 1ns\n",
            "h.yml:2:13: global.interval: must be between 100ms and 24h",
        ),
        (
            "global:\n  max_body_bytes: 18446744073709551615\n",
            "h.yml:2:19: global.max_body_bytes: must be between 1024 and 67108864",
        ),
    ] {
        let e = err(&format!("{yaml}{EP}"));
        assert_eq!(e, want);
    }
    let e = err(
        "endpoints:\n  - {name: s, kind: endpoint-status, namespace: '..', endpoint_name: e}\n",
    );
    assert!(
        e.starts_with("h.yml:2:49: endpoints[0].namespace: must match"),
        "{e}"
    );
    for bad in ["a..b", ".hidden", "-x", "a/b", &"x".repeat(97)] {
        let e = err(&format!(
            "endpoints:\n  - {{name: s, kind: endpoint-status, namespace: ok, endpoint_name: '{bad}'}}\n"
        ));
        assert!(
            e.contains("endpoints[0].endpoint_name: must match"),
            "{bad}: {e}"
        );
    }
    let e = err(
        "endpoints:\n  - {name: s, kind: hf-inference, url: 'http://h', model: '../../admin'}\n",
    );
    assert!(e.contains("endpoints[0].model: must be a model id"), "{e}");
}

#[test]
fn an_empty_config_is_refused_unless_allowed() {
    let want = "h.yml:1:1: endpoints: no endpoints configured (an empty or truncated file?); \
                set global.allow_empty: true to run without endpoints";
    for text in ["", "\n  \n", "# only a comment\n# and another\n", "---\n"] {
        assert_eq!(err(text), want, "{text:?}");
    }
    assert_eq!(
        err("global:\n  interval: 15s\nendpoints: []\n"),
        "h.yml:3:12: endpoints: no endpoints configured (an empty or truncated file?); \
         set global.allow_empty: true to run without endpoints"
    );
    let c = config::parse("global:\n  allow_empty: true\n", "h.yml", &env()).unwrap();
    assert!(c.endpoints.is_empty());
}

#[test]
fn token_files_that_would_hang_or_grow_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let start = Instant::now();
    for (path, what) in [
        (fifo.display().to_string(), "a FIFO"),
        ("/dev/zero".to_string(), "a character device"),
        (dir.path().display().to_string(), "a directory"),
    ] {
        let e = err(&format!(
            "endpoints:\n  - name: a\n    kind: http\n    url: 'http://h'\n    token_file: '{path}'\n"
        ));
        assert_eq!(
            e,
            format!("h.yml:5:17: endpoints[0].token_file: {path}: not a regular file ({what})")
        );
    }
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn every_bound_is_reachable_and_its_neighbour_refused() {
    let d = |b: Bounds<Duration>| [b.min, b.max];
    let fields: [(&str, Bounds<Duration>); 6] = [
        ("interval", bounds::INTERVAL),
        ("timeout", bounds::TIMEOUT),
        ("confirm_interval", bounds::CONFIRM_INTERVAL),
        ("breaker.slow_call_duration", bounds::SLOW_CALL_DURATION),
        ("breaker.open_duration", bounds::OPEN_DURATION),
        ("breaker.max_open_duration", bounds::MAX_OPEN_DURATION),
    ];
    for (field, b) in fields {
        for (v, ok) in [
            (d(b)[0], true),
            (d(b)[1], true),
            (b.min - Duration::from_nanos(1), false),
            (b.max + Duration::from_nanos(1), false),
        ] {
            let mut g = Globals::default();
            g.set(field, v);
            // open_duration above max_open_duration's default is its own error.
            // The two open periods are also checked against each other.
            if field == "breaker.open_duration" {
                g.max_open_duration = b.max;
            }
            if field == "breaker.max_open_duration" {
                g.open_duration = b.min;
            }
            let res = config::parse(&g.yaml(), "h.yml", &env());
            assert_eq!(res.is_ok(), ok, "{field} = {v:?}: {res:?}");
            if let Err(e) = res {
                assert!(
                    e.to_string()
                        .contains(&format!("global.{field}: must be between")),
                    "{e}"
                );
            }
        }
    }
}

/// Global settings of one generated config.
#[derive(Clone, Debug)]
struct Globals {
    interval: Duration,
    timeout: Duration,
    confirm_interval: Duration,
    slow_call_duration: Duration,
    open_duration: Duration,
    max_open_duration: Duration,
    max_body_bytes: u64,
    failure_threshold: u64,
    window: u64,
    min_calls: u64,
    success_threshold: u64,
    max_tokens: u64,
}

impl Default for Globals {
    fn default() -> Self {
        Globals {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
            confirm_interval: Duration::from_secs(1),
            slow_call_duration: Duration::from_secs(5),
            open_duration: Duration::from_secs(60),
            max_open_duration: Duration::from_secs(600),
            max_body_bytes: 262144,
            failure_threshold: 5,
            window: 20,
            min_calls: 10,
            success_threshold: 2,
            max_tokens: 1,
        }
    }
}

impl Globals {
    fn set(&mut self, field: &str, v: Duration) {
        match field {
            "interval" => self.interval = v,
            "timeout" => self.timeout = v,
            "confirm_interval" => self.confirm_interval = v,
            "breaker.slow_call_duration" => self.slow_call_duration = v,
            "breaker.open_duration" => self.open_duration = v,
            _ => self.max_open_duration = v,
        }
    }

    fn yaml(&self) -> String {
        let h = |d: Duration| humantime::format_duration(d).to_string();
        format!(
            "global:\n  interval: '{}'\n  timeout: '{}'\n  confirm_interval: '{}'\n  \
             max_body_bytes: {}\n  max_tokens: {}\n  breaker:\n    slow_call_duration: '{}'\n    \
             open_duration: '{}'\n    max_open_duration: '{}'\n    failure_threshold: {}\n    \
             window: {}\n    min_calls: {}\n    success_threshold: {}\n{EP}",
            h(self.interval),
            h(self.timeout),
            h(self.confirm_interval),
            self.max_body_bytes,
            self.max_tokens,
            h(self.slow_call_duration),
            h(self.open_duration),
            h(self.max_open_duration),
            self.failure_threshold,
            self.window,
            self.min_calls,
            self.success_threshold,
        )
    }

    /// What the loader must accept: every value in its bounds, and the two
    /// pairs that depend on each other consistent.
    fn valid(&self) -> bool {
        let n = |v: u64, b: Bounds<u32>| (b.min as u64..=b.max as u64).contains(&v);
        bounds::INTERVAL.contains(&self.interval)
            && bounds::TIMEOUT.contains(&self.timeout)
            && bounds::CONFIRM_INTERVAL.contains(&self.confirm_interval)
            && bounds::SLOW_CALL_DURATION.contains(&self.slow_call_duration)
            && bounds::OPEN_DURATION.contains(&self.open_duration)
            && bounds::MAX_OPEN_DURATION.contains(&self.max_open_duration)
            && self.max_open_duration >= self.open_duration
            && bounds::MAX_BODY_BYTES.contains(&self.max_body_bytes)
            && n(self.failure_threshold, bounds::FAILURE_THRESHOLD)
            && n(self.window, bounds::WINDOW)
            && n(self.min_calls, bounds::MIN_CALLS)
            && self.min_calls <= self.window
            && n(self.success_threshold, bounds::SUCCESS_THRESHOLD)
            && n(self.max_tokens, bounds::MAX_TOKENS)
    }
}

/// Values at, just inside, just outside and far outside a duration's bounds;
/// mostly inside, so that most generated configs load and run.
fn around(b: Bounds<Duration>) -> impl Strategy<Value = Duration> {
    let ns = Duration::from_nanos(1);
    let lo = b.min.as_nanos() as u64;
    let hi = b.max.as_nanos() as u64;
    let inside = prop_oneof![
        Just(b.min),
        Just(b.max),
        Just(b.min + ns),
        Just(b.max - ns),
        (lo..=hi).prop_map(Duration::from_nanos),
    ];
    let outside = prop_oneof![
        Just(b.min - ns),
        Just(b.max + ns),
        Just(Duration::ZERO),
        // `500000000000y`, the issue's example.
        Just(Duration::from_secs(500_000_000_000 * 31_557_600)),
        Just(Duration::from_secs(u64::MAX / 4)),
    ];
    prop_oneof![12 => inside, 1 => outside]
}

fn around_n(min: u64, max: u64, huge: u64) -> impl Strategy<Value = u64> {
    let inside = prop_oneof![Just(min), Just(max), min..=max];
    let outside = prop_oneof![
        Just(min.saturating_sub(1)),
        Just(max + 1),
        Just(0u64),
        Just(huge),
    ];
    prop_oneof![12 => inside, 1 => outside]
}

fn globals() -> impl Strategy<Value = Globals> {
    let c = |b: Bounds<u32>| around_n(b.min as u64, b.max as u64, u32::MAX as u64 + 1);
    (
        (
            around(bounds::INTERVAL),
            around(bounds::TIMEOUT),
            around(bounds::CONFIRM_INTERVAL),
            around(bounds::SLOW_CALL_DURATION),
            around(bounds::OPEN_DURATION),
            around(bounds::MAX_OPEN_DURATION),
        ),
        (
            around_n(
                bounds::MAX_BODY_BYTES.min,
                bounds::MAX_BODY_BYTES.max,
                u64::MAX,
            ),
            c(bounds::FAILURE_THRESHOLD),
            c(bounds::WINDOW),
            c(bounds::MIN_CALLS),
            c(bounds::SUCCESS_THRESHOLD),
            c(bounds::MAX_TOKENS),
        ),
    )
        .prop_map(|((i, t, ci, s, o, mo), (mb, f, w, mc, st, mt))| Globals {
            interval: i,
            timeout: t,
            confirm_interval: ci,
            slow_call_duration: s,
            open_duration: o,
            max_open_duration: mo,
            max_body_bytes: mb,
            failure_threshold: f,
            window: w,
            min_calls: mc,
            success_threshold: st,
            max_tokens: mt,
        })
}

/// The arithmetic a running daemon does with a loaded config: the
/// scheduler's plan over simulated time with every probe failing (so the
/// backoff doubles up to its cap), and each planned time turned into a wall
/// clock timestamp as `/api/v1/breakers` and `/` print them.
fn run_arithmetic(cfg: config::EndpointConfig) {
    let t0 = Instant::now();
    let w0 = SystemTime::now();
    let m = Metrics::new();
    let em = m.endpoint(&cfg);
    let ep = Endpoint::new(cfg, em, t0, 7);
    let mut st = ep.lock();
    let mut now = t0;
    for _ in 0..400 {
        let (action, _, next) = schedule::plan(&mut st, now);
        if let Action::Probe(p) = action {
            st.breaker.record(p, Outcome::Failure, now);
        }
        for t in [Some(next), st.breaker.open_until()].into_iter().flatten() {
            let wall = w0 + t.saturating_duration_since(t0);
            let _ = humantime::format_rfc3339_millis(wall).to_string();
        }
        let _ = now + st.cfg.timeout + st.cfg.interval + st.cfg.confirm_interval;
        let _ = st.breaker.open_duration().as_secs_f64();
        now = next.max(now + Duration::from_millis(1));
    }
}

static LOADED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn configs_around_every_bound_load_iff_valid_and_never_overflow(g in globals()) {
        let res = config::parse(&g.yaml(), "h.yml", &env());
        match res {
            Ok(c) => {
                prop_assert!(g.valid(), "accepted out of bounds: {g:?}");
                prop_assert_eq!(c.endpoints[0].request.max_tokens as u64, g.max_tokens);
                run_arithmetic(c.endpoints[0].clone());
                LOADED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                prop_assert!(!g.valid(), "refused a valid config {g:?}: {e}");
                for line in e.to_string().lines() {
                    // file:line:col: field: message
                    let parts: Vec<&str> = line.splitn(5, ':').collect();
                    prop_assert_eq!(parts.len(), 5, "{}", line);
                    prop_assert_eq!(parts[0], "h.yml");
                    prop_assert!(parts[1].parse::<u64>().unwrap() > 0, "{}", line);
                }
            }
        }
    }
}

#[test]
fn most_generated_configs_load_and_run() {
    // Run the property here too, so that its count is known in this test.
    configs_around_every_bound_load_iff_valid_and_never_overflow();
    let n = LOADED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        n >= 50,
        "only {n} generated configs loaded: the arithmetic is barely exercised"
    );
}

#[test]
fn the_largest_values_allowed_stay_in_range_of_clocks_and_printing() {
    let worst = bounds::MAX_OPEN_DURATION.max.mul_f64(1.1) + bounds::TIMEOUT.max;
    let _ = Instant::now() + worst;
    let t = SystemTime::now() + worst;
    assert!(
        humantime::format_rfc3339_millis(t)
            .to_string()
            .starts_with("20")
    );
}

/// `: > hfbreaker.yml; kill -HUP`: the truncated file is a failed reload that
/// keeps the running config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_an_emptied_file_fails_and_keeps_the_running_config() {
    let sim = testkit::sim(vec![(
        "tgi",
        hfbreaker::sim::VirtualSpec::new(hfbreaker::sim::Protocol::Tgi, "m"),
    )])
    .await;
    let yaml = format!(
        "{}endpoints:\n  - {{name: a, kind: tgi, url: {}, probe: health}}\n",
        testkit::FAST_GLOBAL,
        sim.url("tgi")
    );
    let d = testkit::TestDaemon::start(&yaml).await;
    for empty in ["", "# nothing here yet\n"] {
        std::fs::write(&d.config_path, empty).unwrap();
        let (code, body) = d.post("/-/reload", None).await;
        assert_eq!(code, 500, "{body}");
        assert!(
            body.contains("hfbreaker.yml:1:1: endpoints: no endpoints configured"),
            "{body}"
        );
        let s = d.scrape().await;
        assert_eq!(s.val("hfbreaker_config_last_reload_successful", &[]), 0.0);
        assert!(s.state("a").is_some(), "the running endpoint is kept");
    }
}

#[test]
fn route_cache_settings_are_bounded_and_refused_with_position() {
    let with = |cache: &str| format!("{EP}routes:\n  - name: r\n    endpoints: [a]\n    {cache}\n");
    let load = |cache: &str| config::parse(&with(cache), "h.yml", &env());
    // Absent: no cache; empty: the defaults.
    assert_eq!(load("").unwrap().routes[0].cache, None);
    assert_eq!(
        load("cache: {}").unwrap().routes[0].cache,
        Some(config::CacheConfig::default())
    );
    let d = |b: Bounds<Duration>| [b.min, b.max].map(config::format_bound);
    let (t, n, b) = (
        d(bounds::CACHE_TTL),
        bounds::CACHE_MAX_ENTRIES,
        bounds::CACHE_MAX_BYTES,
    );
    for (ttl, entries, bytes) in [(&t[0], n.min, b.min), (&t[1], n.max, b.max)] {
        let c = load(&format!(
            "cache: {{ttl: {ttl}, max_entries: {entries}, max_bytes: {bytes}}}"
        ))
        .unwrap()
        .routes[0]
            .cache
            .clone()
            .unwrap();
        assert_eq!((c.max_entries, c.max_bytes), (entries, bytes));
    }
    assert_eq!(
        load("cache: {ttl: 5m}").unwrap().routes[0]
            .cache
            .as_ref()
            .unwrap()
            .ttl,
        Duration::from_secs(300)
    );
    for (cache, want) in [
        (
            "cache: {ttl: 999ms}".to_string(),
            "h.yml:6:18: routes[0].cache.ttl: must be between 1s and 24h".to_string(),
        ),
        (
            "cache: {ttl: 25h}".into(),
            "h.yml:6:18: routes[0].cache.ttl: must be between 1s and 24h".into(),
        ),
        (
            "cache: {max_entries: 0}".into(),
            format!(
                "h.yml:6:26: routes[0].cache.max_entries: must be between 1 and {}",
                n.max
            ),
        ),
        (
            format!("cache: {{max_bytes: {}}}", b.max + 1),
            format!(
                "h.yml:6:24: routes[0].cache.max_bytes: must be between 1024 and {}",
                b.max
            ),
        ),
        (
            "cache: {max_bytes: 1023}".into(),
            format!(
                "h.yml:6:24: routes[0].cache.max_bytes: must be between 1024 and {}",
                b.max
            ),
        ),
    ] {
        assert_eq!(err(&with(&cache)), want, "{cache}");
    }
    let e = err(&with("cache: {ttl: 5m, size: 3}"));
    assert!(
        e.starts_with("h.yml:6:22: size: unknown field `size`"),
        "{e}"
    );
}
