//! 10,000 endpoints at a 10 s interval for 2 minutes, scraped every 5 s:
//! RSS, probe start lateness, skipped probes, and /metrics render time.

use std::time::{Duration, Instant};

use testkit::Scrape;
use testkit::bench::{curl, endpoints_config, guard, median};
use testkit::procfs::rss_bytes;

const N: usize = 10_000;
const RUN: Duration = Duration::from_secs(120);
/// One healthy TGI endpoint `t` to probe.
const TARGET: &str = "endpoints:\n  - {name: t, protocol: tgi}\n";

fn main() {
    if !guard("scale", "see scripts/bench") {
        return;
    }
    let bin = testkit::binary!();
    let target = bin.simulate(TARGET);
    let url = format!("{}/t/health", target.base());
    let d = bin.daemon(
        &endpoints_config(N, &url, "10s", "  timeout: 5s\n"),
        &["--log.level=warn"],
        &[],
    );
    let metrics = format!("{}/metrics", d.base());
    let start = Instant::now();
    let mut renders = Vec::new();
    let mut rss_max = 0u64;
    let mut last = String::new();
    while start.elapsed() < RUN {
        std::thread::sleep(Duration::from_secs(5));
        let (text, took) = curl(&metrics);
        renders.push(took.as_secs_f64());
        rss_max = rss_max.max(rss_bytes(d.pid()));
        last = text;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let last = Scrape(last);
    let lateness_count = last.sum("hfbreaker_scheduler_lateness_seconds_count", &[]);
    let within_50ms = last.sum(
        "hfbreaker_scheduler_lateness_seconds_bucket",
        &[("le", "0.05")],
    );
    let within_10ms = last.sum(
        "hfbreaker_scheduler_lateness_seconds_bucket",
        &[("le", "0.01")],
    );
    let per_ep = last.values("hfbreaker_probes_total", &[("result", "success")]);
    let failures = last.sum("hfbreaker_probes_total", &[("result", "failure")]);
    let min_probes = per_ep.iter().cloned().fold(f64::INFINITY, f64::min);
    // Each endpoint starts within its first interval, then every 10 s.
    let expected_min = (elapsed / 10.0).floor() - 1.0;
    let mut r = renders.clone();
    r.sort_by(f64::total_cmp);
    println!("\n10,000 endpoints, 10 s interval, {elapsed:.0} s, /metrics scraped every 5 s");
    println!("| what | measured | target |");
    println!("|---|---|---|");
    println!(
        "| peak RSS | {:.1} MiB | ≤ 100 MiB |",
        rss_max as f64 / 1048576.0
    );
    println!(
        "| probe start lateness p99 | {} | ≤ 50 ms |",
        if within_50ms / lateness_count >= 0.99 {
            "≤ 50 ms".to_string()
        } else {
            "> 50 ms".to_string()
        }
    );
    println!(
        "| probes started within 10 ms / 50 ms | {:.2}% / {:.2}% of {lateness_count:.0} | |",
        100.0 * within_10ms / lateness_count,
        100.0 * within_50ms / lateness_count
    );
    println!(
        "| probes per endpoint (min) | {min_probes:.0} (≥ {expected_min:.0} expected), {failures:.0} failures | no probe skipped |"
    );
    println!(
        "| /metrics scrape (median / max of {}) | {:.0} ms / {:.0} ms | ≤ 300 ms |",
        r.len(),
        1000.0 * median(renders),
        1000.0 * r.last().unwrap()
    );
    println!("| /metrics size | {:.1} MB | |", last.0.len() as f64 / 1e6);
}
