//! A reload flood neither re-randomises nor repeats the probes of endpoints
//! it keeps: each is still probed every `interval`, on its own schedule.
//! (Before, every reload drew every endpoint's next probe afresh, so a
//! flood of reloads made probing irregular: some endpoints went unprobed,
//! others were probed several times an interval.)

use std::time::{Duration, Instant};

use hfbreaker::sim::{Protocol, VirtualSpec};
use testkit::TestDaemon;

const ENDPOINTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_keep_every_endpoint_on_its_interval() {
    let sim = testkit::sim(vec![("t", VirtualSpec::new(Protocol::Tgi, "m"))]).await;
    let mut yaml = String::from("global: {interval: 2s, timeout: 1s}\nendpoints:\n");
    for i in 0..ENDPOINTS {
        yaml.push_str(&format!(
            "  - {{name: e{i:02}, kind: tgi, probe: health, url: '{}'}}\n",
            sim.url("t")
        ));
    }
    let d = TestDaemon::start(&yaml).await;
    // Let every endpoint make its first, randomly placed probe.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = d.scrape().await;
    let start = Instant::now();
    let mut reloads = 0;
    while start.elapsed() < Duration::from_millis(5000) {
        d.daemon.reload().await.expect("the same config reloads");
        reloads += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = d.scrape().await;
    assert!(reloads > 50, "{reloads} reloads");
    for i in 0..ENDPOINTS {
        let name = format!("e{i:02}");
        let probes = |s: &testkit::Scrape| {
            s.val(
                "hfbreaker_probes_total",
                &[("endpoint", &name), ("result", "success")],
            )
        };
        let n = probes(&after) - probes(&before);
        // 5 s at a 2 s interval: 2 or 3 probes, whatever the reloads do.
        assert!(
            (2.0..=3.0).contains(&n),
            "{name}: {n} probes in 5 s during {reloads} reloads"
        );
    }
    d.shutdown().await;
    sim.shutdown().await;
}
