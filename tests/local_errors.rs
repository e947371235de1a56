//! A failure of this process (out of file descriptors) is never counted
//! against an endpoint: the probe is not sent, `hfbreaker_local_errors_total`
//! counts it, and the circuit stays closed. (Before, every probe failed with
//! reason `connect` and every circuit opened.)
//!
//! This test lowers the process's own file-descriptor limit, so it lives in
//! a test binary of its own.

use std::time::{Duration, Instant};

use hfbreaker::daemon::Daemon;
use hfbreaker::sim::{Protocol, VirtualSpec};
use testkit::Scrape;

/// Open /dev/null until the process has no descriptor left; the files
/// give them back when dropped.
fn exhaust_file_descriptors() -> Vec<std::fs::File> {
    let mut held = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                return held;
            }
        }
    }
}

fn scrape(d: &Daemon) -> Scrape {
    Scrape(String::from_utf8(d.render_metrics()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_is_a_local_error_not_an_endpoint_failure() {
    // A low soft limit keeps the exhaustion quick.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let lowered = libc::rlimit {
        rlim_cur: limit.rlim_cur.min(512),
        rlim_max: limit.rlim_max,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);

    let sim = testkit::sim(vec![("ok", VirtualSpec::new(Protocol::Tgi, "m"))]).await;
    let yaml = format!(
        "global: {{interval: 1s, timeout: 1s, breaker: {{failure_threshold: 1}}}}\n\
         endpoints:\n  - {{name: ok, kind: tgi, probe: health, url: '{}'}}\n",
        sim.url("ok")
    );
    let cfg = hfbreaker::config::parse(
        &yaml,
        "local.yml",
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap();
    let daemon = Daemon::new(cfg, None, None);

    let held = exhaust_file_descriptors();
    daemon.start();
    let start = Instant::now();
    let local = loop {
        let s = scrape(&daemon);
        let n = s.val("hfbreaker_local_errors_total", &[("operation", "probe")]);
        if n >= 2.0 {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no local error counted:\n{}",
            s.0
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(held);
    assert_eq!(
        local.state("ok"),
        Some("closed"),
        "{}",
        local.hfbreaker_lines()
    );
    assert_eq!(
        local.val(
            "hfbreaker_probes_total",
            &[("endpoint", "ok"), ("result", "failure")]
        ),
        0.0
    );
    assert_eq!(
        local.sum("hfbreaker_probe_failures_total", &[("endpoint", "ok")]),
        0.0,
        "no reason is blamed on the endpoint"
    );

    // With descriptors back, the next probes go out and succeed.
    let start = Instant::now();
    loop {
        let s = scrape(&daemon);
        if s.val(
            "hfbreaker_probes_total",
            &[("endpoint", "ok"), ("result", "success")],
        ) >= 1.0
        {
            assert_eq!(s.state("ok"), Some("closed"));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no success after recovery:\n{}",
            s.0
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.stop();
    sim.shutdown().await;
}
