//! CPU per probe at 2,000 probes/s against a fast local target, counting only
//! the prober's own process CPU (from /proc), side by side with
//! blackbox_exporter driven at the same rate through /probe, and wrk's client
//! CPU per request as the floor.
//!
//! hfbreaker is measured two ways: 2,000 endpoints at 1 s against
//! `hfbreaker simulate`, and 200 endpoints at 100 ms against nginx serving a
//! static `/health` (skipped when nginx is not installed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testkit::bench::{curl, endpoints_config, guard};
use testkit::procfs::{children_cpu, cpu_seconds};
use testkit::{Binary, Scrape, find_tool, start_blackbox, start_nginx, wait_http_ok};

const RATE: u64 = 2_000;
const MEASURE: Duration = Duration::from_secs(30);
/// One healthy TGI endpoint `t` to probe.
const TARGET: &str = "endpoints:\n  - {name: t, protocol: tgi}\n";

fn probes_total(base: &str) -> f64 {
    let (text, _) = curl(&format!("{base}/metrics"));
    let m = Scrape(text);
    m.sum("hfbreaker_probes_total", &[("result", "success")])
        + m.sum("hfbreaker_probes_total", &[("result", "failure")])
}

/// hfbreaker's CPU per probe and probe rate with `n` endpoints probing
/// `url` every `interval`.
fn hfbreaker_cost(bin: &Binary, n: usize, url: &str, interval: &str) -> (f64, f64) {
    let d = bin.daemon(
        &endpoints_config(n, url, interval, "  timeout: 5s\n"),
        &["--log.level=warn"],
        &[],
    );
    std::thread::sleep(Duration::from_secs(5));
    let (p0, c0) = (probes_total(&d.base()), cpu_seconds(d.pid()));
    std::thread::sleep(MEASURE);
    let (p1, c1) = (probes_total(&d.base()), cpu_seconds(d.pid()));
    let probes = p1 - p0;
    ((c1 - c0) / probes * 1e6, probes / MEASURE.as_secs_f64())
}

fn blackbox_cost(bin: &std::path::Path, target: &str) -> (f64, f64) {
    let bb = start_blackbox(
        bin,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n",
    )
    .unwrap();
    let pid = bb.pid();
    let url = format!(
        "{}/probe?module=http_2xx&target=http://{target}/t/health",
        bb.base()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        assert!(wait_http_ok(&format!("{}/-/healthy", bb.base()), Duration::from_secs(10)).await);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        let drive = |secs: Duration| {
            let client = client.clone();
            let url = url.clone();
            let done = done.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let start = Instant::now();
                while start.elapsed() < secs {
                    tick.tick().await;
                    let (c, u, d) = (client.clone(), url.clone(), done.clone());
                    tokio::spawn(async move {
                        if let Ok(r) = c.get(&u).send().await
                            && r.bytes().await.is_ok()
                        {
                            d.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            }
        };
        drive(Duration::from_secs(5)).await;
        let (n0, c0) = (done.load(Ordering::Relaxed), cpu_seconds(pid));
        drive(MEASURE).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (n1, c1) = (done.load(Ordering::Relaxed), cpu_seconds(pid));
        let n = (n1 - n0) as f64;
        ((c1 - c0) / n * 1e6, n / MEASURE.as_secs_f64())
    })
}

fn wrk_floor(target: &str) -> Option<(f64, f64)> {
    let wrk = find_tool(&["wrk"])?;
    let before = children_cpu();
    let out = std::process::Command::new(wrk)
        .args(["-t1", "-c16", "-d10s", &format!("http://{target}/t/health")])
        .output()
        .ok()?;
    let cpu = children_cpu() - before;
    let text = String::from_utf8_lossy(&out.stdout);
    let requests: f64 = text
        .lines()
        .find(|l| l.contains("requests in"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((cpu / requests * 1e6, requests / 10.0))
}

fn main() {
    if !guard("probe_cost", "see scripts/bench") {
        return;
    }
    let bin = testkit::binary!();
    let target = bin.simulate(TARGET);
    let target_addr = target.addr.to_string();
    // 2,000 endpoints probed once a second: 2,000 probes/s.
    let sim_url = format!("http://{target_addr}/t/health");
    let (hf, hf_rate) = hfbreaker_cost(&bin, RATE as usize, &sim_url, "1s");
    // 200 endpoints every 100 ms (the interval floor): 2,000 probes/s again.
    let nginx = find_tool(&["nginx"])
        .or_else(|| {
            let p = std::path::PathBuf::from("/usr/sbin/nginx");
            p.is_file().then_some(p)
        })
        .map(|b| start_nginx(&b).expect("nginx starts"));
    let hf_nginx = nginx.as_ref().map(|n| {
        hfbreaker_cost(
            &bin,
            RATE as usize / 10,
            &format!("{}/health", n.base()),
            "100ms",
        )
    });
    drop(nginx);
    let bb = find_tool(&["prometheus-blackbox-exporter", "blackbox_exporter"])
        .map(|b| blackbox_cost(&b, &target_addr));
    let floor = wrk_floor(&target_addr);
    println!(
        "\nCPU per probe, {RATE} probes/s against a local target (the target's CPU not counted), {} s",
        MEASURE.as_secs()
    );
    println!("| prober | target | CPU per probe | achieved rate |");
    println!("|---|---|---|---|");
    println!(
        "| hfbreaker, 2,000 endpoints at 1 s (scheduler, probe, breaker, metrics) | simulate | {hf:.1} µs | {hf_rate:.0} /s |"
    );
    match hf_nginx {
        Some((c, r)) => {
            println!("| hfbreaker, 200 endpoints at 100 ms | nginx | {c:.1} µs | {r:.0} /s |")
        }
        None => println!(
            "| hfbreaker, 200 endpoints at 100 ms | nginx not installed (scripts/bench installs it) | | |"
        ),
    }
    match bb {
        Some((c, r)) => {
            println!("| blackbox_exporter via /probe | simulate | {c:.1} µs | {r:.0} /s |")
        }
        None => println!("| blackbox_exporter | not installed (scripts/bench installs it) | | |"),
    }
    match floor {
        Some((c, r)) => {
            println!("| wrk client (floor: HTTP GET only) | simulate | {c:.1} µs | {r:.0} /s |")
        }
        None => println!("| wrk | not installed (scripts/bench installs it) | | |"),
    }
    if let Some((c, _)) = bb {
        println!(
            "hfbreaker uses {:.1}% of blackbox_exporter's CPU per probe (target: ≤ 60 µs on both methods)",
            100.0 * hf / c
        );
    }
}
